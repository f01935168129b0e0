"""PreferenceCondition: what a recommender hands to generation for one user."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence



@dataclass
class PreferenceCondition:
    """A user's estimated preference in the forms generation can use.

    `attributes` maps an attribute kind to weighted keywords, e.g. {"color": {"navy": 0.6}};
    `embedding` lives in the item-embedding space of the model that made it (`source`); `why` says where
    the condition came from (`recommenders.preference`: backbone, top attributes, the shares of the
    backbone, the history's taste fit and the prior); conditions written before it have none.
    """

    user_id: str
    item_scores: list[tuple[str, float]] = field(default_factory=list)
    embedding: list[float] | None = None
    attributes: dict[str, dict[str, float]] = field(default_factory=dict)
    reference_items: list[str] = field(default_factory=list)
    source: str = ""
    why: dict | None = None

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
        unknown = set(d) - {"user_id", "item_scores", "embedding", "attributes", "reference_items", "source", "why"}
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
        why = d.get("why")
        if why is not None:
            if not isinstance(why, dict):
                raise InputError(f"why must be an object, found {type(why).__name__}")
            why = _json_value(why, "why", 0)
        return cls(user_id=_text(d["user_id"], "user_id"), item_scores=pairs, embedding=embedding,
                   attributes=attrs, reference_items=refs, source=_text(source, "source", allow_empty=True),
                   why=why)


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


MAX_WHY_DEPTH = 4
MAX_WHY_ENTRIES = 200


def _json_value(value, what: str, depth: int):
    """A small JSON value (provenance): text, finite numbers, booleans, null, short lists and objects."""
    from core.errors import InputError

    if depth > MAX_WHY_DEPTH:
        raise InputError(f"{what} is nested deeper than {MAX_WHY_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _number(value, what)
    if isinstance(value, str):
        return _text(value, what, allow_empty=True)
    if isinstance(value, list):
        return [_json_value(v, f"{what}[{k}]", depth + 1) for k, v in enumerate(_list(value, what, MAX_WHY_ENTRIES))]
    if isinstance(value, dict):
        if len(value) > MAX_WHY_ENTRIES:
            raise InputError(f"{what} has {len(value)} entries; the limit is {MAX_WHY_ENTRIES}")
        return {_text(k, f"{what} key"): _json_value(v, f"{what}.{k}", depth + 1) for k, v in value.items()}
    raise InputError(f"{what} must be JSON text, number, list or object, found {type(value).__name__}")


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
