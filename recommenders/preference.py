"""The one preference path: (a backbone, a shopper's events) -> the `PreferenceCondition` generation reads.

Every surface (generate, campaigns, the UI, the evaluation, fine-tuning data) calls `preference` here.

- `ShopSource`: a shop's catalog and time-ordered interactions (the demo shop or a folder of
  catalog + interactions.csv), with the CF / next-item splits `atelier rec train` would build from it.
- `Backbone`: a fitted recommender and what it needs to score a shopper: fitted on the fly on the
  shop's train split (`load_backbone(shop, name)`, once per process per (shop, name)) or read from a
  folder written by `atelier rec train` (`load_backbone(shop, folder=DIR)`).
- `ShopperEvents`: a shopper's time-ordered item ids (timestamps optional); `choices` is the slot for
  answers to shown creatives (feedback choice sets), not read by this module yet.
- `preference(backbone, events, catalog=...)`: CF backbones score the history row, sequential ones
  read the time-ordered sequence (right-padded; ids the model does not know are skipped). The
  condition's attribute weights are a mixture of (a) the history's choice-model taste fit
  (`recommenders.taste`), (b) the backbone's predicted distribution over attribute values (softmax
  over its top unseen items) and (c) the population prior (attribute frequencies of all events).
  All three are taste-space distributions (what is liked): (b) and (c) describe choices, so they are
  divided by what was on offer (a choice is taste x supply), then mixed: q = w_a a + w_b b + w_c c.
  The weights are learned per
  (shop, backbone, attribute kind, history length) from what every shop has: each training shopper's
  history is cut where the backbone's training data ends, the prefix feeds (a) and (b), and the
  attributes of the items chosen next (held-out time) are the targets, whose log-likelihood under
  P(v) ∝ q(v) x supply(v) a few hundred Adam steps on the simplex weights maximise (the
  conditional-logit choice model of `recommenders.taste`, McFadden 1974, one level up).
  The demo shop's true tastes are never read here.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.errors import InputError

from .catalog import Catalog
from .condition import TASTE_FIT, PreferenceCondition

K_TOP = 20  # items the backbone's distribution is read from (and recommendations shown)
LENGTH_BUCKETS = (0, 5, 15, 40)  # history-length buckets with mixture weights of their own
MIN_BUCKET_TARGETS = 200  # a bucket with fewer held-out choices uses the kind's overall weights
PARTS = ("history", "backbone", "prior")


@dataclass
class ShopperEvents:
    """One shopper's time-ordered events: item ids (oldest first), optional Unix timestamps, and room for
    answers to shown creatives (`choices`: feedback choice sets from `recommenders.feedback`)."""

    user_id: str
    items: list[str]
    timestamps: list[float] | None = None
    choices: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.items = [str(i) for i in self.items]
        if self.timestamps is not None and len(self.timestamps) != len(self.items):
            raise InputError(f"{len(self.timestamps)} timestamps for {len(self.items)} events")


class ShopSource:
    """A shop's catalog, its interactions in time order per shopper, and (demo shops) their known tastes."""

    def __init__(self, catalog: Catalog, interactions, *, name: str, data_spec: str | Path | None, demo=None):
        self.catalog, self.interactions, self.name = catalog, interactions, name
        self.data_spec, self.demo = data_spec, demo
        seqs = interactions.user_sequences()
        self.history: dict[str, list[str]] = {
            uid: [interactions.item_ids[i] for i in seqs[u]] for u, uid in enumerate(interactions.user_ids)}
        digest = hashlib.sha256()
        digest.update("\n".join(catalog.item_ids).encode())
        for arr in (interactions.user_index, interactions.item_index):
            digest.update(np.ascontiguousarray(arr).tobytes())
        digest.update("\n".join(interactions.user_ids).encode() + b"\0" + "\n".join(interactions.item_ids).encode())
        self.fingerprint = digest.hexdigest()[:16]
        self._lock = threading.Lock()
        self._cf = self._seq = None
        self._prior: dict[str, np.ndarray] | None = None
        self._counts: dict[str, int] | None = None

    def prior(self) -> dict[str, np.ndarray]:
        """The population prior over each attribute kind's values (computed once)."""
        if self._prior is None:
            self._prior = population_prior(self, _vocab(self.catalog))
        return self._prior

    def item_counts(self) -> dict[str, int]:
        """How often each item id occurs in the shop's events (computed once)."""
        if self._counts is None:
            from collections import Counter

            self._counts = dict(Counter(i for h in self.history.values() for i in h))
        return self._counts

    def events(self, user_id: str) -> ShopperEvents:
        """A logged shopper's events (InputError naming a few known ids for an unknown one)."""
        if user_id not in self.history:
            some = ", ".join(list(self.history)[:3])
            raise InputError(f"unknown user {user_id!r} (no interactions in the shop; ids look like {some})")
        return ShopperEvents(user_id, list(self.history[user_id]))

    def cf_data(self):
        """The collaborative-filtering splits `atelier rec train --data <this shop>` trains on."""
        from .datasets import load_cf

        with self._lock:
            if self._cf is None:
                self._cf = load_cf(self.data_spec) if self.data_spec is not None else self._aligned().to_cf_splits(
                    name=self.name)
            return self._cf

    def seq_data(self):
        """The next-item splits `atelier rec train --data <this shop>` trains sequential models on."""
        from .datasets import load_seq

        with self._lock:
            if self._seq is None:
                self._seq = load_seq(self.data_spec) if self.data_spec is not None else self._aligned().to_seq_splits(
                    name=self.name)
            return self._seq

    def _aligned(self):
        """The interactions with item indices in catalog order (what `load_cf("demo")` trains on)."""
        from .datasets import _align_to_catalog

        return _align_to_catalog(self.interactions, self.catalog)


def load_shop(spec: str, base_dir: str | Path | None = None) -> ShopSource:
    """'demo' (the shipped shop), a demo-shop folder (with shop.json) or a user's folder of catalog.jsonl
    or catalog.csv + interactions.csv (relative folders under `base_dir`), read once per process."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    key = "demo" if spec == "demo" else str((Path(spec) if Path(spec).is_absolute() else base / spec).resolve())
    with _LOCK:
        lock = _KEY_LOCKS.setdefault(("shop", key), threading.Lock())
    with lock:
        if key not in _SHOPS:
            _SHOPS[key] = _read_shop(spec, Path(key))
        return _SHOPS[key]


def shop_from_parts(catalog: Catalog, interactions, name: str = "interactions") -> ShopSource:
    """A ShopSource for a catalog + interactions already loaded: the process's own shop object when they
    are a loaded shop's (so every surface shares one backbone and its fusion), else a new one."""
    probe = ShopSource(catalog, interactions, name=name, data_spec=None)
    with _LOCK:
        known = [s for s in _SHOPS.values() if s.fingerprint == probe.fingerprint]
    if known:
        return known[0]
    root = Path(getattr(catalog, "root", None) or ".")
    if (root / "shop.json").is_file():
        from .shop import DEMO_SHOP_DIR

        shop = load_shop("demo" if root.resolve() == Path(DEMO_SHOP_DIR).resolve() else str(root))
        if shop.fingerprint == probe.fingerprint:
            return shop
    return probe


def _read_shop(spec: str, folder: Path) -> ShopSource:
    if spec == "demo":
        from .shop import DemoShop

        demo = DemoShop.load()
        return ShopSource(demo.catalog, demo.interactions, name="demo", data_spec="demo", demo=demo)
    if not folder.is_dir():
        raise InputError("shop folder not found (give 'demo' or a folder with catalog + interactions.csv)", folder)
    if (folder / "shop.json").is_file():
        from .shop import DemoShop

        demo = DemoShop.load(folder)
        return ShopSource(demo.catalog, demo.interactions, name=folder.name, data_spec=folder, demo=demo)
    from .interactions import load_interactions_csv

    cat_file = next((folder / n for n in ("catalog.jsonl", "catalog.csv") if (folder / n).is_file()), None)
    if cat_file is None:
        raise InputError("no catalog.jsonl or catalog.csv in the shop folder", folder)
    if not (folder / "interactions.csv").is_file():
        raise InputError("no interactions.csv in the shop folder", folder)
    catalog = Catalog.load(cat_file)
    interactions = load_interactions_csv(folder / "interactions.csv", catalog=catalog)
    return ShopSource(catalog, interactions, name=folder.name, data_spec=folder)


# -- backbones ---------------------------------------------------------------------------------------
class Backbone:
    """A fitted recommender plus what it needs to score a shopper of one shop.

    `item_ids` are the model's columns; `item_emb` the attribute embeddings of those items (the space
    conditions' embeddings live in); `fusion` the learned mixture weights (learned on first use).
    """

    def __init__(self, model, item_ids: Sequence[str], *, name: str, origin: str, shop: ShopSource | None = None,
                 item_emb: np.ndarray | None = None):
        from .base import SequentialRecommender

        self.model, self.item_ids, self.name, self.origin, self.shop = model, list(item_ids), name, origin, shop
        self.sequential = isinstance(model, SequentialRecommender)
        self.index = {iid: j for j, iid in enumerate(self.item_ids)}
        if item_emb is None and shop is not None:
            item_emb = _attribute_embeddings(shop.catalog, self.item_ids)
        self.item_emb = item_emb
        self._fusion: Fusion | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_model(cls, model, item_ids: Sequence[str] | None = None, *, shop: ShopSource | None = None,
                   item_emb: np.ndarray | None = None) -> "Backbone":
        """Wrap an already fitted model (its own item ids when it keeps them)."""
        ids = item_ids if item_ids is not None else getattr(model, "item_ids", None)
        if ids is None:
            n = model.config.n_items if hasattr(model.config, "n_items") else model.n_items
            ids = [str(j) for j in range(n)]
        return cls(model, ids, name=model.name, origin="given", shop=shop, item_emb=item_emb)

    @property
    def label(self) -> str:
        """How the backbone is named in a condition's `source` and provenance."""
        return self.name if self.origin in ("fitted", "given") else f"{self.name} ({Path(self.origin).name})"

    def score_histories(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """Scores (len(histories), n_items) over the model's columns; CF rows are multi-hot, sequences
        right-padded with the last `max_len` known items (unknown ids skipped)."""
        n = len(self.item_ids)
        if self.sequential:
            cfg = self.model.config
            seq = np.full((len(histories), cfg.max_len), cfg.n_items, np.int64)
            lens = np.ones(len(histories), np.int64)
            for r, h in enumerate(histories):
                idx = [self.index[i] for i in h if i in self.index][-cfg.max_len:]
                seq[r, :len(idx)] = idx
                lens[r] = max(len(idx), 1)
            return np.asarray(self.model.score(seq, lens), np.float64)
        import scipy.sparse as sp

        rows, cols = [], []
        for r, h in enumerate(histories):
            c = sorted({self.index[i] for i in h if i in self.index})
            rows += [r] * len(c)
            cols += c
        x = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(histories), n))
        return np.asarray(self.model.score(np.zeros(len(histories), np.int64), history=x), np.float64)

    def fusion(self) -> "Fusion":
        """The learned mixture weights (learned once, on first use; uniform without shop data)."""
        with self._lock:
            if self._fusion is None:
                self._fusion = learn_fusion(self) if self.shop is not None else Fusion.uniform()
            return self._fusion


_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple, threading.Lock] = {}
_SHOPS: dict[str, ShopSource] = {}
_BACKBONES: dict[tuple, Backbone] = {}


def load_backbone(shop: ShopSource, name: str | None = None, *, folder: str | Path | None = None,
                  progress: bool = False, overrides: dict | None = None) -> Backbone:
    """The shop's backbone: registry `name` fitted on the shop's train split (seed 0, the shop's YAML
    hyperparameters + `overrides`), or the `rec train` folder `folder`; cached per process."""
    from .base import model_class

    if (name is None) == (folder is None):
        raise InputError("give a recommender name or a trained recommender folder, not both")
    if folder is not None:
        path = Path(folder).resolve()
        cfg = path / "config.json"
        stamp = cfg.stat().st_mtime_ns if cfg.is_file() else 0
        key = (shop.fingerprint, "dir", str(path), stamp)
    else:
        model_class(name)  # InputError for unknown names, before any fitting
        name = name.strip().lower()
        key = (shop.fingerprint, "name", name, tuple(sorted((overrides or {}).items())))
    with _LOCK:
        if key in _BACKBONES:
            return _BACKBONES[key]
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _BACKBONES:
            _BACKBONES[key] = (_from_folder(shop, Path(folder)) if folder is not None
                               else _fit(shop, name, progress, overrides or {}))
        return _BACKBONES[key]


def is_sequential_name(name: str) -> bool:
    """Whether the registry name is a next-item model (reads the time-ordered sequence)."""
    from .base import SequentialRecommender, model_class

    return issubclass(model_class(name), SequentialRecommender)


def _fit(shop: ShopSource, name: str, progress: bool, overrides: dict) -> Backbone:
    from .base import model_class

    if is_sequential_name(name):
        from .seq_bench import load_bench_config, resolve_model

        data = shop.seq_data()
        _, base, params = resolve_model(name, load_bench_config(data.name))  # demo_seq.yaml when none of its own
        model = model_class(base)(**{**params, **overrides})
        model.fit(data, seed=0, progress=progress)
        return Backbone(model, data.item_ids, name=name, origin="fitted", shop=shop)
    from .bench import load_model_configs, make_model

    data = shop.cf_data()
    configs = load_model_configs(data.name) or load_model_configs("demo")  # small-shop defaults
    model = make_model(name, {**configs.get(name, {}), **overrides})
    model.fit(data, seed=0, progress=progress)
    return Backbone(model, data.item_ids, name=name, origin="fitted", shop=shop)


def _from_folder(shop: ShopSource, folder: Path) -> Backbone:
    from .base import SequentialRecommender, _Saveable

    model = _Saveable.from_pretrained(folder)
    if isinstance(model, SequentialRecommender):
        ids = shop.seq_data().item_ids
        if model.item_ids is not None and list(model.item_ids) != list(ids):
            raise InputError(f"the model's item ids do not match the shop's {len(ids)} items "
                             "(trained on another shop?)", folder)
        if model.config.n_items != len(ids):
            raise InputError(f"the model has {model.config.n_items} items, the shop {len(ids)}", folder)
    else:
        ids = shop.cf_data().item_ids
        if model.n_items != len(ids):
            raise InputError(f"the model has {model.n_items} items, the shop {len(ids)} (trained on another shop?)",
                             folder)
    return Backbone(model, ids, name=model.name, origin=str(folder), shop=shop)


def _attribute_embeddings(catalog: Catalog, item_ids: Sequence[str]) -> np.ndarray:
    """Attribute embeddings (recommenders.datasets) in the model's column order; unknown ids get zeros."""
    from .datasets import attribute_embeddings

    emb = attribute_embeddings(catalog)
    out = np.zeros((len(item_ids), emb.shape[1]), np.float32)
    for r, iid in enumerate(item_ids):
        if iid in catalog:
            out[r] = emb[catalog.index_of(iid)]
    return out


# -- the three parts and their fusion -----------------------------------------------------------
def _vocab(catalog: Catalog) -> dict[str, list[str]]:
    """Each attribute kind's values (category included), cached per catalog object."""
    from .taste import attribute_table

    key = id(catalog)
    hit = _VOCABS.get(key)
    if hit is None or hit[0] is not catalog:
        hit = _VOCABS[key] = (catalog, attribute_table(catalog)[1])
    return hit[1]


_VOCABS: dict = {}


def _value(item, kind: str):
    return item.category if kind == "category" else item.attributes.get(kind)


def _item_distributions(backbone: Backbone, scores: np.ndarray, seen: Sequence[set[str]], catalog: Catalog,
                        vocab: dict[str, list[str]], k: int = K_TOP):
    """Per row: top-k unseen columns, their softmax weights (temperature = the top scores' std), and the
    backbone's distribution over each kind's values (the weights summed per value)."""
    out = []
    for r in range(len(scores)):
        s = scores[r].copy()
        for i in seen[r]:
            j = backbone.index.get(i)
            if j is not None:
                s[j] = -np.inf
        finite = int(np.isfinite(s).sum())
        top = np.argsort(-s, kind="stable")[:min(k, finite)]
        z = s[top]
        temp = float(z.std()) or 1.0
        w = np.exp((z - z.max()) / temp) if len(z) else np.zeros(0)
        w = w / w.sum() if w.sum() > 0 else w
        dist = {kind: np.zeros(len(vals)) for kind, vals in vocab.items()}
        pos = {kind: {v: j for j, v in enumerate(vals)} for kind, vals in vocab.items()}
        for weight, j in zip(w, top):
            iid = backbone.item_ids[j]
            if iid not in catalog:
                continue
            for kind in vocab:
                v = _value(catalog[iid], kind)
                if v is not None and str(v) in pos[kind]:
                    dist[kind][pos[kind][str(v)]] += weight
        out.append((top, w, s, dist))
    return out


def _taste_distributions(histories: Sequence[Sequence[str]], catalog: Catalog, vocab: dict[str, list[str]]):
    """The choice-model taste fit of each history, as arrays over each kind's values (None: empty history)."""
    from .taste import fit_attribute_taste

    keep = [[i for i in h if i in catalog] for h in histories]
    fitted = fit_attribute_taste([h for h in keep if h], catalog, **TASTE_FIT) if any(keep) else []
    it = iter(fitted)
    out = []
    for h in keep:
        if not h:
            out.append(None)
            continue
        est = next(it)
        out.append({kind: np.asarray([est.weights.get(kind, {}).get(v, 0.0) for v in vals])
                    for kind, vals in vocab.items()})
    return out


def population_prior(shop: ShopSource, vocab: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """How often each attribute value was chosen over all the shop's events (add-one smoothed)."""
    out = {}
    pos = {kind: {v: j for j, v in enumerate(vals)} for kind, vals in vocab.items()}
    counts = {kind: np.ones(len(vals)) for kind, vals in vocab.items()}
    for hist in shop.history.values():
        for iid in hist:
            if iid not in shop.catalog:
                continue
            item = shop.catalog[iid]
            for kind in vocab:
                v = _value(item, kind)
                if v is not None and str(v) in pos[kind]:
                    counts[kind][pos[kind][str(v)]] += 1
    for kind, c in counts.items():
        out[kind] = c / c.sum()
    return out


def _bucket(n: int) -> int:
    return int(np.searchsorted(LENGTH_BUCKETS, n, side="right") - 1)


@dataclass
class Fusion:
    """Learned simplex weights over (history, backbone, prior) per attribute kind and history-length bucket."""

    weights: dict[str, list[list[float]]]  # kind -> per bucket [w_history, w_backbone, w_prior]
    overall: dict[str, list[float]]  # kind -> [w_history, w_backbone, w_prior] over all buckets
    n_users: int = 0
    n_targets: int = 0
    log_likelihood: dict[str, float] = field(default_factory=dict)  # per kind, mean per held-out choice
    learned: bool = True

    @classmethod
    def uniform(cls) -> "Fusion":
        return cls(weights={}, overall={}, learned=False)

    def of(self, kind: str, n_history: int) -> np.ndarray:
        """[w_history, w_backbone, w_prior] for one kind and history length (uniform when never learned)."""
        if kind not in self.weights:
            return np.full(3, 1 / 3)
        return np.asarray(self.weights[kind][_bucket(n_history)])


def _supply(catalog: Catalog, vocab: dict[str, list[str]], seen: set[str]) -> dict[str, np.ndarray]:
    """How many catalog items of each value the shopper has not chosen yet (what is left to choose from)."""
    ids, codes = _codes(catalog)
    keep = np.asarray([i not in seen for i in ids])
    return {kind: np.bincount(codes[kind][keep & (codes[kind] >= 0)], minlength=len(vals)).astype(np.float64)
            for kind, vals in vocab.items()}


def _codes(catalog: Catalog):
    """(item ids, value index per kind) of the catalog, cached like `_vocab`."""
    from .taste import attribute_table

    key = ("codes", id(catalog))
    hit = _VOCABS.get(key)
    if hit is None or hit[0] is not catalog:
        ids, _, codes = attribute_table(catalog)
        hit = _VOCABS[key] = (catalog, (ids, codes))
    return hit[1]


def _as_taste(dist: np.ndarray, supply: np.ndarray) -> np.ndarray:
    """A distribution over chosen values turned into one over liked values: divided by what was on offer
    (a choice is taste x supply), renormalised."""
    t = dist / np.maximum(supply, 1.0)
    return t / t.sum() if t.sum() > 0 else np.full(len(t), 1 / len(t))


def _fit_weights(parts: np.ndarray, supply: np.ndarray, target: np.ndarray, steps: int = 200):
    """Simplex weights w (softmax of 3 logits) maximising the held-out choices' log-likelihood under
    P(value v) = q(v) s(v) / sum_v' q(v') s(v'), q = sum_m w_m parts[m] the taste mixture, s the supply.

    parts: (T, 3, V) taste-space distributions, supply: (T, V), target: (T,) value index. Adam steps on
    the logits (the supply's normaliser leaves no closed-form EM step). Returns (w, mean log-likelihood).
    """
    import torch

    p = torch.as_tensor(parts, dtype=torch.float64)
    s = torch.as_tensor(supply, dtype=torch.float64).clamp_min(1e-9)
    t = torch.as_tensor(target, dtype=torch.long)
    logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)

    def nll():
        q = torch.einsum("m,tmv->tv", torch.softmax(logits, 0), p)
        choice = q * s
        choice = choice / choice.sum(1, keepdim=True).clamp_min(1e-300)
        return -torch.log(choice.gather(1, t[:, None])[:, 0].clamp_min(1e-300)).mean()

    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = nll()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return torch.softmax(logits, 0).numpy(), -float(nll())


def learn_fusion(backbone: Backbone) -> Fusion:
    """Learn the mixture weights on the backbone's shop: each shopper's history is cut where the
    backbone's training data ends (CF: the train split's share of the events; sequential: all but the
    last two, whose first is the valid next item), the prefix feeds the taste fit and the backbone, and
    the attributes of the items chosen next are the held-out targets. Demo shops leave their held-out
    evaluation block out."""
    shop, catalog = backbone.shop, backbone.shop.catalog
    vocab = _vocab(catalog)
    users = [u for u, h in shop.history.items() if len(h) >= 3]
    if shop.demo is not None:
        from .shop.heldout import heldout_block

        block = set(heldout_block(shop.history))
        users = [u for u in users if u not in block]
    prefixes, targets = [], []
    if backbone.sequential:
        for u in users:
            h = shop.history[u]
            prefixes.append(h[:-2])
            targets.append([h[-2]])
    else:
        cf = shop.cf_data()
        row_of = {uid: r for r, uid in enumerate(cf.user_ids or [])}
        for u in users:
            r = row_of.get(u)
            if r is None:
                continue
            train = {cf.item_ids[j] for j in cf.train[r].indices}
            valid = [cf.item_ids[j] for j in cf.valid[r].indices]
            prefix = [i for i in shop.history[u] if i in train]
            if prefix and valid:
                prefixes.append(prefix)
                targets.append(valid)
    if not prefixes:
        return Fusion.uniform()
    prior = shop.prior()
    taste = _taste_distributions(prefixes, catalog, vocab)
    back = []
    for start in range(0, len(prefixes), 256):
        chunk = prefixes[start:start + 256]
        scores = backbone.score_histories(chunk)
        back += [d for *_, d in _item_distributions(backbone, scores, [set(p) for p in chunk], catalog, vocab)]
    weights, overall, ll = {}, {}, {}
    n_targets = 0
    supplies = [_supply(catalog, vocab, set(p)) for p in prefixes]
    for kind, vals in vocab.items():
        pos = {v: j for j, v in enumerate(vals)}
        parts, sup, tgt, buckets = [], [], [], []
        for p, t, a, b, sp_ in zip(prefixes, targets, taste, back, supplies):
            if a is None:
                continue
            s_k = sp_[kind]
            stack = np.stack([a[kind], _as_taste(b[kind], s_k), _as_taste(prior[kind], s_k)])
            for iid in t:
                v = _value(catalog[iid], kind) if iid in catalog else None
                if v is None or str(v) not in pos:
                    continue
                parts.append(stack)
                sup.append(s_k)
                tgt.append(pos[str(v)])
                buckets.append(_bucket(len(p)))
        if not parts:
            continue
        parts, sup, tgt, buckets = np.asarray(parts), np.asarray(sup), np.asarray(tgt), np.asarray(buckets)
        n_targets = max(n_targets, len(parts))
        w_all, ll[kind] = _fit_weights(parts, sup, tgt)
        overall[kind] = [round(float(x), 4) for x in w_all]
        per = []
        for bk in range(len(LENGTH_BUCKETS)):
            sel = buckets == bk
            w_b = _fit_weights(parts[sel], sup[sel], tgt[sel])[0] if sel.sum() >= MIN_BUCKET_TARGETS else w_all
            per.append([round(float(x), 4) for x in w_b])
        weights[kind] = per
    return Fusion(weights, overall, n_users=len(prefixes), n_targets=n_targets,
                  log_likelihood={k: round(v, 4) for k, v in ll.items()})


# -- the condition -------------------------------------------------------------------------------
def preference(backbone: Backbone, events: ShopperEvents, *, catalog: Catalog | None = None, k: int = K_TOP,
               n_reference: int = 4) -> PreferenceCondition:
    """The shopper's condition: the backbone's top unseen items, the learned fusion of taste fit,
    backbone and prior as attribute weights, an embedding in the attribute-embedding space, and `why`."""
    return group_preference(backbone, [events], key=events.user_id, catalog=catalog, k=k, n_reference=n_reference)


def group_preference(backbone: Backbone, members: Sequence[ShopperEvents], *, key: str,
                     catalog: Catalog | None = None, k: int = K_TOP, n_reference: int = 4) -> PreferenceCondition:
    """One condition for a group (a campaign segment): each member's fused distributions and scores,
    averaged, so one set of creatives speaks to the whole group. One member: `preference`."""
    if not members:
        raise InputError(f"{key}: no shoppers to build a condition for")
    catalog = catalog if catalog is not None else (backbone.shop.catalog if backbone.shop is not None else None)
    histories = [[i for i in m.items if i in backbone.index] for m in members]
    scores = backbone.score_histories(histories)
    mean_scores = scores.mean(0)
    seen = set().union(*map(set, histories)) if len(members) == 1 else set()
    unseen = mean_scores.copy()
    for i in seen:
        unseen[backbone.index[i]] = -np.inf
    top = np.argsort(-unseen, kind="stable")[:min(k, int(np.isfinite(unseen).sum()))]
    item_scores = [(backbone.item_ids[j], float(unseen[j])) for j in top]
    refs = list(dict.fromkeys(histories[0][::-1]))[:n_reference] if len(members) == 1 else []
    if catalog is None:  # a bare model: recommendations, and its own next-item vector or its top items' mean
        emb = _own_embedding(backbone, histories[0]) if len(members) == 1 else None
        if emb is None and backbone.item_emb is not None and len(top):
            z = unseen[top]
            w = np.exp((z - z.max()) / (float(z.std()) or 1.0))
            emb = [float(x) for x in (w[:, None] * backbone.item_emb[top]).sum(0) / w.sum()]
        return PreferenceCondition(str(key), item_scores=item_scores, embedding=emb, reference_items=refs,
                                   source=backbone.label)
    vocab = _vocab(catalog)
    fusion = backbone.fusion()
    prior = backbone.shop.prior() if backbone.shop is not None else {
        kind: np.full(len(v), 1 / len(v)) for kind, v in vocab.items()}
    taste = _taste_distributions(histories, catalog, vocab)
    items = _item_distributions(backbone, scores, [set(h) for h in histories], catalog, vocab, k)
    fused = {kind: np.zeros(len(v)) for kind, v in vocab.items()}
    shares = {kind: np.zeros(3) for kind in vocab}
    for h, a, (_, _, _, b) in zip(histories, taste, items):
        supply = _supply(catalog, vocab, set(h))
        for kind in vocab:
            w = fusion.of(kind, len(h)).copy()
            if a is None:  # no history: its share goes to the other parts, in proportion
                w[0] = 0.0
            w = w / w.sum()
            parts = np.stack([a[kind] if a is not None else np.full(len(vocab[kind]), 1 / len(vocab[kind])),
                              _as_taste(b[kind], supply[kind]), _as_taste(prior[kind], supply[kind])])
            fused[kind] += (w[:, None] * parts).sum(0) / len(members)
            shares[kind] += w / len(members)
    attributes = {kind: {v: float(x) for v, x in sorted(zip(vals, fused[kind]), key=lambda t: (-t[1], t[0]))
                         if x > 0}
                  for kind, vals in vocab.items()}
    share = np.mean([shares[kind] for kind in vocab], axis=0)
    emb = None
    if backbone.item_emb is not None:
        emb = _fused_embedding(backbone, histories, items, share)
    why = {
        "backbone": backbone.label,
        "origin": "fitted on the shop" if backbone.origin == "fitted" else
                  ("given model" if backbone.origin == "given" else Path(backbone.origin).name),
        "top": {kind: [[v, round(w, 4)] for v, w in list(attributes[kind].items())[:3]] for kind in attributes},
        "shares": {p: round(float(x), 4) for p, x in zip(PARTS, share)},
        "shares_by_kind": {kind: {p: round(float(x), 4) for p, x in zip(PARTS, shares[kind])} for kind in vocab},
        "fusion": ("learned on the next choices of {} shoppers".format(fusion.n_users) if fusion.learned
                   else "uniform (no shop data to learn from)"),
        "members": len(members),
    }
    if backbone.name == "dreamrec":
        why["next_item_embedding"] = "scores are the generated next-item embedding's inner products with the items"
    return PreferenceCondition(str(key), item_scores=item_scores, embedding=emb, attributes=attributes,
                               reference_items=refs, source=backbone.label, why=why)


def _own_embedding(backbone: Backbone, history: Sequence[str]):
    """A next-item model's own generated vector (DreamRec), for conditions without a catalog."""
    if not backbone.sequential:
        return None
    cfg = backbone.model.config
    idx = [backbone.index[i] for i in history][-cfg.max_len:]
    seq = np.full((1, cfg.max_len), cfg.n_items, np.int64)
    seq[0, :len(idx)] = idx
    vec = backbone.model.next_item_embedding(seq, np.asarray([max(len(idx), 1)]))
    return None if vec is None else [float(x) for x in np.asarray(vec).ravel()]


def _fused_embedding(backbone: Backbone, histories, items, share: np.ndarray) -> list[float]:
    """The embedding mixed like the attributes: history items' mean, the backbone's softmax-weighted top
    items, the population's mean item (all in the attribute-embedding space)."""
    emb = backbone.item_emb
    pop = emb.mean(0)
    if backbone.shop is not None:
        seen = backbone.shop.item_counts()
        counts = np.asarray([seen.get(i, 0) for i in backbone.item_ids], np.float64)
        if counts.sum() > 0:
            pop = (counts[:, None] * emb).sum(0) / counts.sum()
    out = np.zeros(emb.shape[1])
    for h, (top, w, _, _) in zip(histories, items):
        hist = emb[[backbone.index[i] for i in h]].mean(0) if h else pop
        model = (w[:, None] * emb[top]).sum(0) if len(top) else pop
        out += (share[0] * hist + share[1] * model + share[2] * pop) / len(histories)
    return [float(x) for x in out]


def taste_condition(events: ShopperEvents, catalog: Catalog) -> PreferenceCondition:
    """The floor every backbone is measured against: the history's choice-model taste fit alone."""
    vocab = _vocab(catalog)
    taste = _taste_distributions([[i for i in events.items if i in catalog]], catalog, vocab)[0]
    attributes = {} if taste is None else {
        kind: {v: float(x) for v, x in sorted(zip(vals, taste[kind]), key=lambda t: (-t[1], t[0]))}
        for kind, vals in vocab.items()}
    refs = list(dict.fromkeys(events.items[::-1]))[:4]
    return PreferenceCondition(events.user_id, attributes=attributes, reference_items=refs, source="taste fit",
                               why={"backbone": "none", "shares": {"history": 1.0, "backbone": 0.0, "prior": 0.0},
                                    "fusion": "the history's taste fit alone (the floor)"})


def why_line(condition: PreferenceCondition, kinds: Sequence[str] = ("color", "pattern")) -> str:
    """One readable line: 'ease: navy 0.41, striped 0.33 — 70% history, 25% ease, 5% prior'."""
    top = []
    for kind in kinds:
        weights = condition.attributes.get(kind) or {}
        if weights:
            v, w = next(iter(sorted(weights.items(), key=lambda t: (-t[1], t[0]))))
            top.append(f"{v} {w:.2f}")
    text = f"{condition.source or 'condition'}: " + (", ".join(top) or "no attributes")
    shares = (condition.why or {}).get("shares")
    if shares:
        name = (condition.why or {}).get("backbone", condition.source)
        text += (f" — {shares['history']:.0%} history, {shares['backbone']:.0%} {name}, "
                 f"{shares['prior']:.0%} prior")
    return text
