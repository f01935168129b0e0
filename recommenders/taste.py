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
                        chunk: int = 512, choices: Sequence[Sequence] | None = None) -> list[TasteEstimate]:
    """Fit the choice model to each time-ordered history (item ids; unknown ids are skipped).

    `l2` is the prior precision on theta (per user, per value); `max_len` keeps the latest events.
    `recency` > 0 down-weights old events (event t of n weighs exp(-recency * (n - 1 - t) / n)), for
    tastes that drift.
    Users are fitted independently, `chunk` at a time, with L-BFGS in float64.
    `choices` (optional, one sequence per history): answers to shown creatives, each with `.chosen`
    (attributes of the picked option, or None for "nothing") and `.rejected` (the others shown), and
    an optional `.weight`; they are more choice sets of the same model, over the same vocabulary
    (`recommenders.feedback`). Without `choices` the fit is exactly the history-only fit.
    """
    ids, vocab, offsets, sizes, thetas, n_events = fit_attribute_thetas(
        histories, catalog, item_ids=item_ids, l2=l2, recency=recency, max_iter=max_iter, max_len=max_len,
        chunk=chunk, choices=choices)
    out: list[TasteEstimate] = []
    for theta, n in zip(thetas, n_events):
        out.append(TasteEstimate(theta_weights(theta, vocab), n))
    return out


def theta_weights(theta, vocab: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Per-kind softmax of one flat parameter vector (kinds in `vocab` order): the taste's weights."""
    import torch

    theta = torch.as_tensor(np.asarray(theta, dtype=np.float64))
    weights, o = {}, 0
    for kind, values in vocab.items():
        w = torch.softmax(theta[o:o + len(values)], 0).tolist()
        weights[kind] = {v: float(x) for v, x in zip(values, w)}
        o += len(values)
    return weights


def option_features(option, vocab: dict[str, list[str]]) -> np.ndarray:
    """One shown option as a flat feature row: one-hot per kind for {kind: value}, the probabilities for
    {kind: {value: p}} (an image read by soft probes); None is "nothing": every kind at 1/K (indifferent).
    Kinds or values outside `vocab` contribute nothing."""
    row, o = [], 0
    for kind, values in vocab.items():
        part = np.zeros(len(values))
        if option is None:
            part[:] = 1.0 / len(values)
        else:
            v = option.get(kind)
            if isinstance(v, dict):
                for name, p in v.items():
                    if name in values:
                        part[values.index(name)] = float(p)
            elif v is not None and str(v) in values:
                part[values.index(str(v))] = 1.0
        row.append(part)
    return np.concatenate(row)


def choice_arrays(choices: Sequence, vocab: dict[str, list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, S, P) features (the chosen option first), (C, S) mask of real options, (C,) weights."""
    n_par = sum(len(v) for v in vocab.values())
    c = len(choices)
    s_max = max((1 + len(ch.rejected) for ch in choices), default=1)
    x = np.zeros((c, s_max, n_par))
    mask = np.zeros((c, s_max), bool)
    w = np.zeros(c)
    for k, ch in enumerate(choices):
        opts = [ch.chosen, *ch.rejected]
        for j, opt in enumerate(opts):
            x[k, j] = option_features(opt, vocab)
        mask[k, :len(opts)] = True
        w[k] = float(getattr(ch, "weight", 1.0))
    return x, mask, w


def fit_attribute_thetas(histories: Sequence[Sequence[str]], catalog, *, item_ids: Sequence[str] | None = None,
                         l2: float = 1.0, recency: float = 0.0, max_iter: int = 100, max_len: int = 500,
                         chunk: int = 512, choices: Sequence[Sequence] | None = None):
    """The fit behind `fit_attribute_taste`, returning the raw parameters:
    (item ids, vocab, offsets, sizes, one flat theta per user (numpy, kinds in vocab order), events per user)."""
    import torch

    if l2 <= 0:
        raise InputError(f"l2 must be > 0, got {l2}")
    if choices is not None and len(choices) != len(histories):
        raise InputError(f"choices must hold one sequence per history: {len(choices)} for {len(histories)}")
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
    thetas, n_events = [], []
    for start in range(0, len(seqs), chunk):
        part = seqs[start:start + chunk]
        extra = None
        if choices is not None:
            extra = [list(c) for c in choices[start:start + chunk]]
            extra = None if not any(extra) else _choice_tensors(extra, vocab)
        theta = _fit_chunk(part, cols_t, n_par, l2, recency, max_iter, extra)
        for u, seq in enumerate(part):
            thetas.append(theta[u, :n_par].numpy().copy())
            n_events.append(len(seq) + (len(choices[start + u]) if choices is not None else 0))
    return ids, vocab, [int(o) for o in offsets], sizes, thetas, n_events


def _choice_tensors(per_user: list[list], vocab: dict[str, list[str]]):
    """Padded (U, C, S, P) features, (U, C, S) option mask and (U, C) weights of each user's choices."""
    import torch

    n_par = sum(len(v) for v in vocab.values())
    c_max = max(len(c) for c in per_user)
    s_max = max((1 + len(ch.rejected) for c in per_user for ch in c), default=1)
    x = np.zeros((len(per_user), c_max, s_max, n_par))
    mask = np.zeros((len(per_user), c_max, s_max), bool)
    w = np.zeros((len(per_user), c_max))
    for u, c in enumerate(per_user):
        if c:
            xu, mu, wu = choice_arrays(c, vocab)
            x[u, :len(c), :xu.shape[1]] = xu
            mask[u, :len(c), :mu.shape[1]] = mu
            w[u, :len(c)] = wu
    mask[..., 0] = True  # padded choices: one option, weight 0, so they add nothing
    return torch.as_tensor(x), torch.as_tensor(mask), torch.as_tensor(w)


def _fit_chunk(seqs: list[list[int]], cols, n_par: int, l2: float, recency: float, max_iter: int, extra=None):
    import torch

    n_users, t_max = len(seqs), max((len(s) for s in seqs), default=0)
    if t_max == 0 and extra is None:
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
        if extra is not None:  # shown-creative choice sets: log softmax of the chosen (first) option
            x, mask, w = extra
            util_c = torch.einsum("ucsp,up->ucs", x, param).masked_fill(~mask, float("-inf"))
            ll = ll + ((util_c[..., 0] - torch.logsumexp(util_c, -1)) * w).sum()
        return -ll + l2 * (param ** 2).sum()

    def closure():
        opt.zero_grad()
        loss = nll()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return torch.cat([param.detach(), torch.zeros(n_users, 1, dtype=torch.float64)], 1)
