"""Attribute taste from a history: which colors, patterns, categories... a shopper prefers.

Counting the attribute values of a user's history ("majority color") confuses taste with supply:
a shopper who already bought the few items in her favourite color and style must browse other
colors next. This estimator is a conditional-logit choice model (McFadden 1974) over the catalog,
fitted per user: at each step of the history the shopper picks one not-yet-chosen item with
probability proportional to exp(sum over kinds of theta[kind][value of the item]), i.e. a
Plackett-Luce sequence without replacement. The per-kind softmax of theta is the user's estimated
weight over that kind's values. An L2 prior keeps short histories close to indifferent.

The normaliser needs no (steps x items) mask: the mass of the items not yet chosen at step t is the
total mass minus the running sum of the chosen items' masses, so a fit costs O(users x (items + steps)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.errors import InputError


@dataclass
class TasteEstimate:
    """Per-user estimated attribute weights: `weights[kind][value]` sums to 1 over each kind's values."""

    weights: dict[str, dict[str, float]]
    n_events: int

    def top(self, kind: str) -> str:
        w = self.weights[kind]
        return max(sorted(w), key=w.__getitem__)

    def vector(self, vocab: dict[str, list[str]]) -> np.ndarray:
        """Log-weights relative to indifference, log(K w), concatenated in `vocab` order (a user embedding)."""
        parts = []
        for kind, values in vocab.items():
            w = self.weights.get(kind, {})
            k = len(values)
            parts.append([float(np.log(max(k * w.get(v, 1.0 / k), 1e-6))) for v in values])
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def attribute_table(catalog, item_ids: Sequence[str] | None = None) -> tuple[list[str], dict[str, list[str]], dict[str, np.ndarray]]:
    """(item ids, vocabulary per kind, integer codes per kind) for the catalog's category + attributes."""
    ids = list(item_ids) if item_ids is not None else list(catalog.item_ids)
    kinds: dict[str, set[str]] = {}
    for iid in ids:
        item = catalog[iid]
        for kind, value in [("category", item.category), *item.attributes.items()]:
            if value not in (None, ""):
                kinds.setdefault(kind, set()).add(str(value))
    if not kinds:
        raise InputError("the catalog has no categories or attributes to estimate a taste over")
    vocab = {k: sorted(v) for k, v in sorted(kinds.items())}
    codes = {}
    for kind, values in vocab.items():
        pos = {v: j for j, v in enumerate(values)}
        # -1: the item has no value of this kind (it then contributes nothing for that kind)
        codes[kind] = np.array([pos.get(str(_value(catalog[i], kind)), -1) for i in ids], np.int64)
    return ids, vocab, codes


def _value(item, kind: str):
    return item.category if kind == "category" else item.attributes.get(kind)


def fit_attribute_taste(histories: Sequence[Sequence[str]], catalog, *, item_ids: Sequence[str] | None = None,
                        l2: float = 1.0, recency: float = 0.0, max_iter: int = 100, max_len: int = 500,
                        chunk: int = 512) -> list[TasteEstimate]:
    """Fit the choice model to each time-ordered history (item ids; unknown ids are skipped).

    `l2` is the prior precision on theta (per user, per value); `max_len` keeps the latest events.
    `recency` > 0 down-weights old events (event t of n weighs exp(-recency * (n - 1 - t) / n)), for
    tastes that drift.
    Users are fitted independently, `chunk` at a time, with L-BFGS in float64.
    """
    import torch

    if l2 <= 0:
        raise InputError(f"l2 must be > 0, got {l2}")
    ids, vocab, codes = attribute_table(catalog, item_ids)
    index = {iid: j for j, iid in enumerate(ids)}
    seqs = []
    for h in histories:
        seen: set[int] = set()
        seq = []
        for iid in h:
            j = index.get(str(iid))
            if j is not None and j not in seen:  # a repeat is not a new choice
                seen.add(j)
                seq.append(j)
        seqs.append(seq[-max_len:])
    sizes = [len(v) for v in vocab.values()]
    offsets = np.cumsum([0, *sizes[:-1]])
    # (n_items, n_kinds) columns into one flat parameter vector per user; -1 -> a zero pad column
    n_par = int(sum(sizes))
    cols = np.stack([np.where(codes[k] >= 0, codes[k] + o, n_par) for k, o in zip(vocab, offsets)], axis=1)
    cols_t = torch.as_tensor(cols)
    out: list[TasteEstimate] = []
    for start in range(0, len(seqs), chunk):
        part = seqs[start:start + chunk]
        theta = _fit_chunk(part, cols_t, n_par, l2, recency, max_iter)
        for u, seq in enumerate(part):
            weights = {}
            for kind, o, size in zip(vocab, offsets, sizes):
                w = torch.softmax(theta[u, o:o + size], 0).tolist()
                weights[kind] = {v: float(x) for v, x in zip(vocab[kind], w)}
            out.append(TasteEstimate(weights, len(seq)))
    return out


def _fit_chunk(seqs: list[list[int]], cols, n_par: int, l2: float, recency: float, max_iter: int):
    import torch

    n_users, t_max = len(seqs), max((len(s) for s in seqs), default=0)
    if t_max == 0:
        return torch.zeros(n_users, n_par + 1, dtype=torch.float64)  # last column: the pad, kept at 0
    seq = torch.zeros(n_users, t_max, dtype=torch.long)
    valid = torch.zeros(n_users, t_max, dtype=torch.float64)
    weight = torch.zeros(n_users, t_max, dtype=torch.float64)
    for u, s in enumerate(seqs):
        seq[u, :len(s)] = torch.as_tensor(s)
        n = len(s)
        valid[u, :n] = 1.0
        weight[u, :n] = torch.exp(-recency * (n - 1 - torch.arange(n, dtype=torch.float64)) / max(n, 1))
    param = torch.zeros(n_users, n_par, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([param], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def nll():
        full = torch.cat([param, torch.zeros(n_users, 1, dtype=torch.float64)], 1)
        util = full[:, cols].sum(-1)  # (U, N)
        shift = util.max(1, keepdim=True).values.detach()
        mass = torch.exp(util - shift)
        total = mass.sum(1, keepdim=True)
        chosen = util.gather(1, seq) - shift  # (U, T) log-mass of each chosen item
        before = torch.cumsum(torch.exp(chosen) * valid, 1) - torch.exp(chosen) * valid  # mass already taken
        remaining = (total - before).clamp_min(1e-300)
        ll = ((chosen - torch.log(remaining)) * weight).sum()
        return -ll + l2 * (param ** 2).sum()

    def closure():
        opt.zero_grad()
        loss = nll()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return torch.cat([param.detach(), torch.zeros(n_users, 1, dtype=torch.float64)], 1)
