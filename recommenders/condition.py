"""PreferenceCondition: what a recommender hands to generation for one user."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class PreferenceCondition:
    """A user's estimated preference in the forms generation can use.

    `attributes` maps an attribute kind to weighted keywords, e.g. {"color": {"navy": 0.6}};
    `embedding` lives in the item-embedding space of the model that made it (`source`).
    """

    user_id: str
    item_scores: list[tuple[str, float]] = field(default_factory=list)
    embedding: list[float] | None = None
    attributes: dict[str, dict[str, float]] = field(default_factory=dict)
    reference_items: list[str] = field(default_factory=list)
    source: str = ""

    def top_keywords(self, n: int = 1, kinds: Sequence[str] | None = None) -> dict[str, list[str]]:
        """The `n` heaviest keywords of each attribute kind."""
        out = {}
        for kind, weights in self.attributes.items():
            if kinds is not None and kind not in kinds:
                continue
            out[kind] = [k for k, _ in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["item_scores"] = [[i, float(s)] for i, s in self.item_scores]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreferenceCondition":
        """A condition from its JSON form, every field checked for type, size and finiteness (a user may
        have written it): one InputError naming the field, never a crash deep in generation."""
        from core.errors import InputError

        if not isinstance(d, dict):
            raise InputError(f"a condition must be a JSON object, found {type(d).__name__}")
        unknown = set(d) - {"user_id", "item_scores", "embedding", "attributes", "reference_items", "source"}
        if unknown:
            raise InputError(f"unknown condition field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
        if "user_id" not in d:
            raise InputError("condition has no user_id")
        item_scores = _list(d.get("item_scores"), "item_scores", MAX_CONDITION_ITEMS)
        pairs = []
        for k, pair in enumerate(item_scores):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise InputError(f"item_scores[{k}] must be an [item_id, score] pair")
            pairs.append((_text(pair[0], f"item_scores[{k}] item id"), _number(pair[1], f"item_scores[{k}] score")))
        embedding = d.get("embedding")
        if embedding is not None:
            embedding = [_number(x, f"embedding[{k}]")
                         for k, x in enumerate(_list(embedding, "embedding", MAX_EMBEDDING_DIM))]
        attributes = d.get("attributes") or {}
        if not isinstance(attributes, dict) or len(attributes) > MAX_CONDITION_ITEMS:
            raise InputError("attributes must be an object of {kind: {keyword: weight}}")
        attrs = {}
        for kind, weights in attributes.items():
            if not isinstance(weights, dict) or len(weights) > MAX_CONDITION_ITEMS:
                raise InputError(f"attributes.{str(kind)[:40]} must be an object of {{keyword: weight}}")
            attrs[_text(kind, "attribute kind")] = {_text(k, f"attributes.{kind} keyword"):
                                                    _number(v, f"attributes.{kind}.{k}") for k, v in weights.items()}
        refs = [_text(i, f"reference_items[{k}]")
                for k, i in enumerate(_list(d.get("reference_items"), "reference_items", MAX_CONDITION_ITEMS))]
        source = d.get("source", "")
        return cls(user_id=_text(d["user_id"], "user_id"), item_scores=pairs, embedding=embedding,
                   attributes=attrs, reference_items=refs, source=_text(source, "source", allow_empty=True))


MAX_CONDITION_ITEMS = 10_000  # scored items, attribute kinds, keywords, reference items
MAX_EMBEDDING_DIM = 65_536
MAX_ID_CHARS = 1_000


def _list(value, what: str, limit: int) -> list:
    from core.errors import InputError

    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{what} must be a list, found {type(value).__name__}")
    if len(value) > limit:
        raise InputError(f"{what} has {len(value)} entries; the limit is {limit}")
    return value


def _text(value, what: str, allow_empty: bool = False) -> str:
    from core.errors import InputError

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{what} must be text, found {type(value).__name__}")
    text = str(value)
    if (not text.strip() and not allow_empty) or len(text) > MAX_ID_CHARS or any(ord(c) < 32 for c in text):
        raise InputError(f"{what} must be non-empty text without control characters, at most {MAX_ID_CHARS} "
                         "characters")
    return text


def _number(value, what: str) -> float:
    import math

    from core.errors import InputError

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what} must be a number, found {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise InputError(f"{what} must be a finite number, got {value}")
    return x


# The choice model's prior and recency weighting: the best color + pattern accuracy on the demo shop's
# first 1,000 users over l2 0.1..3 x recency 0..2 (`python benchmarks/taste_estimators.py`).
TASTE_FIT = {"l2": 0.1, "recency": 1.0}


def _softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    z = (x - x.max()) / max(temperature, 1e-8)
    e = np.exp(z)
    return e / e.sum()


def condition_from_scores(
    user_id: str,
    scores: np.ndarray,
    item_ids: Sequence[str],
    *,
    source: str,
    item_emb: np.ndarray | None = None,
    catalog=None,
    history: Sequence[str] = (),
    k: int = 20,
    temperature: float | None = None,
    embedding: np.ndarray | None = None,
    n_reference: int = 4,
    history_prior: float = 5.0,
    history_taste: str = "choice",
    choice_prior: float = 1.0,
) -> PreferenceCondition:
    """Build a condition the same way for every model.

    - `item_scores`: the top-k *unseen* items (what to recommend next).
    - `attributes` / `embedding` (the taste): a blend of the user's history profile and the model's
      top-k items over *all* items (seen included: the model's reconstruction of the taste), with the
      history weighted n / (n + history_prior) for n history items, so long histories speak for
      themselves and short ones lean on the model. Measured on the demo shop (EASE, 200 users): the
      condition's top color matched the true favourite for 6.5% of users from unseen top-k alone,
      49% from the history alone, 51.5% with this blend (history_prior=5).
    - `history_taste`: how the history speaks for attributes. "choice" (default) fits the choice model
      of `recommenders.taste` to the time-ordered history, which separates taste from what the catalog
      had left to choose, and weighs it n / (n + choice_prior) against the model's top-k; "count"
      counts the history items' values (weight n / (n + history_prior)). On the demo shop's first
      1,000 users (the 200 held-out users untouched), the EASE condition's top color names the true
      favourite for 62% (choice) against 52% (count): `python benchmarks/taste_estimators.py`.
      choice_prior 1 was chosen there over 5 (59%) and 0 (63%, but no model left for short histories).
    Model weights are a softmax over top-k scores (temperature = their std by default), so a model's
    confidence, not its score scale, decides how peaked the condition is.
    """
    scores = np.asarray(scores, dtype=np.float64)
    index = {iid: j for j, iid in enumerate(item_ids)}
    hist_idx = [index[h] for h in dict.fromkeys(str(h) for h in history) if h in index]

    # 1. recommendations: top-k unseen items
    unseen = scores.copy()
    unseen[hist_idx] = -np.inf
    k_rec = min(k, int(np.isfinite(unseen).sum()))
    top = np.argsort(-unseen, kind="stable")[:k_rec]

    # 2. the model's taste: top-k over all items, softmax-weighted
    k_all = min(k, int(np.isfinite(scores).sum()))
    top_all = np.argsort(-scores, kind="stable")[:k_all]
    temp = temperature if temperature is not None else float(scores[top_all].std()) or 1.0
    w_model = _softmax(scores[top_all], temp) if k_all else np.zeros(0)

    # 3. blend with the history profile (uniform over history items)
    alpha = len(hist_idx) / (len(hist_idx) + history_prior) if hist_idx else 0.0
    taste_items = np.concatenate([top_all, np.asarray(hist_idx, dtype=np.int64)])
    taste_w = np.concatenate([(1 - alpha) * w_model, np.full(len(hist_idx), alpha / max(len(hist_idx), 1))])

    emb = embedding
    if emb is None and item_emb is not None and len(taste_items):
        emb = (taste_w[:, None] * np.asarray(item_emb)[taste_items]).sum(0)
    if history_taste not in ("choice", "count"):
        raise ValueError(f"history_taste must be 'choice' or 'count', not {history_taste!r}")
    attributes: dict[str, dict[str, float]] = {}
    use_choice = catalog is not None and history_taste == "choice" and len(hist_idx) > 0
    if use_choice:
        from .taste import fit_attribute_taste

        known = [i for i in item_ids if i in catalog]
        ordered = [h for h in (str(x) for x in history) if h in index and h in catalog]
        estimate = fit_attribute_taste([ordered], catalog, item_ids=known, **TASTE_FIT)[0]
        beta = len(hist_idx) / (len(hist_idx) + choice_prior)
        for kind, weights in estimate.weights.items():
            attributes[kind] = {v: beta * w for v, w in weights.items()}
    if catalog is not None:
        # with the choice model the history already spoke through `estimate`: only the model's items remain
        counted = zip((1 - beta) * w_model, top_all) if use_choice else zip(taste_w, taste_items)
        for weight, j in counted:
            if weight <= 0:
                continue
            item = catalog[item_ids[j]]
            for kind, value in [("category", item.category), *item.attributes.items()]:
                bucket = attributes.setdefault(kind, {})
                bucket[value] = bucket.get(value, 0.0) + float(weight)
    refs = [item_ids[j] for j in hist_idx[::-1]][:n_reference]
    return PreferenceCondition(
        user_id=str(user_id),
        item_scores=[(str(item_ids[j]), float(unseen[j])) for j in top],
        embedding=None if emb is None else [float(x) for x in np.asarray(emb).ravel()],
        attributes={kind: dict(sorted(v.items(), key=lambda kv: -kv[1])) for kind, v in attributes.items()},
        reference_items=refs,
        source=source,
    )
