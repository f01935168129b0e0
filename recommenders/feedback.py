"""Feedback on shown creatives updates a shopper's taste; elicitation picks the next pair to show.

A shown set of creatives is one more choice set of the history's choice model
(`recommenders.taste`: a conditional logit over attribute values, McFadden 1974): the shopper picks
option i with probability softmax_i(x_i . theta), where x_i is what the image shows (one-hot, or
the scorer's soft probe probabilities). Events become choices as follows:

- choice "A over B, C":   chosen A, rejected B, C (weight 1).
- click / like on A:      chosen A over "nothing" (weight 1): "nothing" is the indifferent option,
                          every kind at 1/K, so a click says A is liked above average.
- skip on A:              "nothing" over A (weight 1).
- impression:             stored, no choice on its own (a shown-not-clicked ad is mostly inattention).

`TastePosterior` is a Gaussian (Laplace) posterior over the flat theta. The base is the history's
posterior (MAP + Hessian of the same objective, `history_posterior`) or, for a shopper without a
history, the population prior (`population_prior`: the law of total variance over training users'
history posteriors). `update(choices)` re-solves base prior + all choices by Newton steps warm-started
at the current mean (27 parameters on the demo shop: well under a millisecond per step), so a restart
that replays the stored events gives the same posterior.

Elicitation (`pick_pair`): "elicit" scores candidate pairs by the expected information gain of the
answer about the top color and the top pattern (mutual information estimated on posterior samples),
over a candidate set made of each sample's best creative (Thompson sampling, Thompson 1933 / Chapelle &
Li 2011) plus random ones; "random" shows a random pair; "exploit" shows the current best and runner-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from core.errors import InputError

EVENT_KINDS = ("impression", "click", "choice", "like", "skip")
POLICIES = ("elicit", "random", "exploit")
TARGET_KINDS = ("color", "pattern")

Option = Optional[Mapping]  # {kind: value} or {kind: {value: p}}; None = "nothing"


@dataclass(frozen=True)
class Choice:
    """One answer: the chosen option over the rejected ones (None = "nothing"), with a weight."""

    chosen: Option
    rejected: tuple = ()
    weight: float = 1.0


def event_choice(kind: str, creatives: Sequence[Option]) -> Choice | None:
    """The choice an event means: choice = creatives[0] over the rest; click/like = it over nothing;
    skip = nothing over it; impression = none."""
    if kind not in EVENT_KINDS:
        raise InputError(f"unknown feedback event {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
    if not creatives:
        raise InputError(f"a {kind} event needs at least one creative")
    if kind == "impression":
        return None
    if kind == "choice":
        if len(creatives) < 2:
            raise InputError("a choice event needs the chosen creative and at least one other shown")
        return Choice(creatives[0], tuple(creatives[1:]))
    if len(creatives) != 1:
        raise InputError(f"a {kind} event is about one creative, got {len(creatives)}")
    if kind == "skip":
        return Choice(None, (creatives[0],))
    return Choice(creatives[0], (None,))


def features(options: Sequence[Option], vocab: dict[str, list[str]]) -> np.ndarray:
    """(n, P) feature rows of options, in `vocab` order."""
    from .taste import option_features

    return np.stack([option_features(o, vocab) for o in options]) if options else np.zeros((0, n_params(vocab)))


def n_params(vocab: dict[str, list[str]]) -> int:
    return int(sum(len(v) for v in vocab.values()))


@dataclass
class TastePosterior:
    """Gaussian over theta: `mean`, `precision`; `prior_mean`/`prior_precision` are the base the
    choices were added to, `choices` the answers folded in so far."""

    vocab: dict[str, list[str]]
    mean: np.ndarray
    precision: np.ndarray
    prior_mean: np.ndarray
    prior_precision: np.ndarray
    choices: list = field(default_factory=list)
    source: str = "history"

    @classmethod
    def from_prior(cls, vocab, mean, precision, source: str) -> "TastePosterior":
        mean, precision = np.asarray(mean, float), np.asarray(precision, float)
        return cls(vocab, mean.copy(), precision.copy(), mean.copy(), precision.copy(), [], source)

    def update(self, new: Sequence[Choice], steps: int = 8, tol: float = 1e-8) -> "TastePosterior":
        """A new posterior with `new` choices added: Newton on prior + all choices, from the current mean."""
        choices = [*self.choices, *new]
        mean, precision = newton_fit(self.prior_mean, self.prior_precision, choices, self.vocab,
                                     start=self.mean, steps=steps, tol=tol)
        return TastePosterior(self.vocab, mean, precision, self.prior_mean, self.prior_precision, choices, self.source)

    def weights(self) -> dict[str, dict[str, float]]:
        """Per-kind weights of the posterior mean (the condition's attribute weights)."""
        from .taste import theta_weights

        return theta_weights(self.mean, self.vocab)

    def top(self, kind: str, n: int = 1) -> list[str]:
        w = self.weights()[kind]
        return [v for v, _ in sorted(w.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, P) draws from N(mean, precision^-1)."""
        chol = np.linalg.cholesky(self.precision)
        z = rng.standard_normal((n, len(self.mean)))
        return self.mean + np.linalg.solve(chol.T, z.T).T

    def condition(self, user_id: str):
        """The shopper's `PreferenceCondition` from this posterior (attribute weights only)."""
        from .condition import PreferenceCondition

        return PreferenceCondition(user_id, attributes=self.weights(),
                                   source=f"feedback ({self.source} + {len(self.choices)} choices)")


def newton_fit(prior_mean: np.ndarray, prior_precision: np.ndarray, choices: Sequence[Choice],
               vocab: dict[str, list[str]], *, start: np.ndarray | None = None, steps: int = 8,
               tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """MAP and Laplace precision of N(prior) x prod softmax choice likelihoods (damped Newton)."""
    from .taste import choice_arrays

    theta = np.array(prior_mean if start is None else start, dtype=float)
    if not choices:
        return np.array(prior_mean, float), np.array(prior_precision, float)
    x, mask, w = choice_arrays(list(choices), vocab)

    def objective(t):
        u = np.where(mask, x @ t, -np.inf)
        m = u.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(u - m).sum(1))
        d = t - prior_mean
        return 0.5 * d @ prior_precision @ d - (w * (u[:, 0] - lse)).sum()

    def grad_hess(t):
        u = np.where(mask, x @ t, -np.inf)
        p = np.exp(u - u.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        xbar = np.einsum("cs,csp->cp", p, x)
        g = prior_precision @ (t - prior_mean) - (w[:, None] * (x[:, 0] - xbar)).sum(0)
        second = np.einsum("c,cs,csp,csq->pq", w, p, x, x) - np.einsum("c,cp,cq->pq", w, xbar, xbar)
        return g, prior_precision + second

    f = objective(theta)
    for _ in range(steps):
        g, h = grad_hess(theta)
        step = np.linalg.solve(h, g)
        a = 1.0
        while a > 1e-4:  # backtracking keeps each step a descent step
            cand = theta - a * step
            fc = objective(cand)
            if fc <= f + 1e-12:
                break
            a *= 0.5
        theta, f_old, f = cand, f, fc
        if abs(f_old - f) < tol:
            break
    _, h = grad_hess(theta)
    return theta, h


def history_hessian(history: Sequence[str], catalog, theta: np.ndarray, *, item_ids=None, l2: float,
                    recency: float, max_len: int = 500) -> np.ndarray:
    """Hessian of the history's negative log-posterior (`fit_attribute_taste`'s objective) at theta.

    Plackett-Luce step t chooses among the items left: its Hessian is the weighted covariance of the
    remaining items' features, kept in closed form as totals minus running sums of the chosen ones.
    """
    from .taste import attribute_table

    ids, vocab, codes = attribute_table(catalog, item_ids)
    index = {iid: j for j, iid in enumerate(ids)}
    seen, seq = set(), []
    for iid in history:
        j = index.get(str(iid))
        if j is not None and j not in seen:
            seen.add(j)
            seq.append(j)
    seq = seq[-max_len:]
    p = n_params(vocab)
    h = 2.0 * l2 * np.eye(p)
    if not seq:
        return h
    x = np.zeros((len(ids), p))
    o = 0
    for kind, values in vocab.items():
        rows = np.flatnonzero(codes[kind] >= 0)
        x[rows, o + codes[kind][rows]] = 1.0
        o += len(values)
    u = x @ theta
    m = np.exp(u - u.max())
    s0, s1, s2 = m.sum(), m @ x, (x * m[:, None]).T @ x
    n = len(seq)
    wt = np.exp(-recency * (n - 1 - np.arange(n)) / n)
    xc, mc = x[seq], m[seq]
    c0 = np.concatenate([[0.0], np.cumsum(mc)[:-1]])
    c1 = np.vstack([np.zeros(p), np.cumsum(mc[:, None] * xc, 0)[:-1]])
    c2 = np.concatenate([np.zeros((1, p, p)), np.cumsum(mc[:, None, None] * xc[:, :, None] * xc[:, None, :], 0)[:-1]])
    r0 = np.maximum(s0 - c0, 1e-300)
    mu = (s1 - c1) / r0[:, None]
    cov = (s2 - c2) / r0[:, None, None] - mu[:, :, None] * mu[:, None, :]
    return h + np.einsum("t,tpq->pq", wt, cov)


def history_posterior(history: Sequence[str], catalog, *, l2: float, recency: float) -> TastePosterior:
    """The Laplace posterior of one shopper's history under the history's choice model."""
    from .taste import fit_attribute_thetas

    _, vocab, _, _, thetas, _ = fit_attribute_thetas([list(history)], catalog, l2=l2, recency=recency)
    theta = thetas[0]
    return TastePosterior.from_prior(vocab, theta, history_hessian(history, catalog, theta, l2=l2, recency=recency),
                                     "history")


def history_posteriors(histories: Sequence[Sequence[str]], catalog, *, l2: float, recency: float) -> list[TastePosterior]:
    """`history_posterior` for many shoppers, the MAPs fitted together (one batched L-BFGS)."""
    from .taste import fit_attribute_thetas

    _, vocab, _, _, thetas, _ = fit_attribute_thetas([list(h) for h in histories], catalog, l2=l2, recency=recency)
    return [TastePosterior.from_prior(vocab, t, history_hessian(h, catalog, t, l2=l2, recency=recency), "history")
            for h, t in zip(histories, thetas)]


def population_prior(histories: Sequence[Sequence[str]], catalog, *, l2: float, recency: float,
                     ridge: float = 1e-3) -> TastePosterior:
    """Cold start: N(mean of the training shoppers' MAPs, covariance of the MAPs + their mean posterior
    covariance), i.e. the law of total variance over history posteriors; estimated from histories only."""
    posts = history_posteriors(histories, catalog, l2=l2, recency=recency)
    if not posts:
        raise InputError("a population prior needs at least one training history")
    thetas = np.stack([p.mean for p in posts])
    cov = np.cov(thetas.T) if len(posts) > 1 else np.zeros((thetas.shape[1],) * 2)
    cov = cov + np.mean([np.linalg.inv(p.precision) for p in posts], axis=0) + ridge * np.eye(thetas.shape[1])
    return TastePosterior.from_prior(posts[0].vocab, thetas.mean(0), np.linalg.inv(cov), "population")


def _top_index(samples: np.ndarray, vocab: dict[str, list[str]], kind: str) -> np.ndarray:
    o = 0
    for k, values in vocab.items():
        if k == kind:
            return samples[:, o:o + len(values)].argmax(1)
        o += len(values)
    raise InputError(f"the taste has no {kind!r} values")


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def pair_information(pairs: np.ndarray, pool_x: np.ndarray, samples: np.ndarray, vocab, kinds=TARGET_KINDS) -> np.ndarray:
    """Expected information (nats) of the answer to each pair (a, b) about each kind's top value, summed
    over `kinds`: I(Y; T) = H(Y) - sum_t P(t) H(Y | T = t), estimated on posterior samples."""
    util = pool_x @ samples.T  # (N, S)
    p = 1.0 / (1.0 + np.exp(-(util[pairs[:, 0]] - util[pairs[:, 1]])))  # (pairs, S): P(a chosen | sample)
    py = p.mean(1)
    info = _entropy(py)[:, None].repeat(len(kinds), 1)
    for k, kind in enumerate(kinds):
        top = _top_index(samples, vocab, kind)
        classes = np.unique(top)
        onehot = (top[:, None] == classes[None, :]).astype(float)
        share = onehot.mean(0)
        p_class = (p @ onehot) / onehot.sum(0)
        info[:, k] -= (_entropy(p_class) * share).sum(1)
    return info.sum(1)


def matched_pairs(pool_x: np.ndarray, vocab: dict[str, list[str]], kinds=TARGET_KINDS) -> np.ndarray:
    """(M, 2) pool pairs that read (probe argmax) the same on every kind but one of `kinds`: the answer to
    such a pair speaks about that kind alone, as a paired comparison should."""
    reads, o = [], 0
    for kind, values in vocab.items():
        reads.append(pool_x[:, o:o + len(values)].argmax(1))
        o += len(values)
    reads = np.stack(reads, 1)
    names = list(vocab)
    out = []
    for kind in kinds:
        if kind not in names:
            continue
        k = names.index(kind)
        others = np.delete(reads, k, axis=1)
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(map(tuple, others)):
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    if reads[members[a], k] != reads[members[b], k]:
                        out.append((members[a], members[b]))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def pick_pair(policy: str, post: TastePosterior, pool_x: np.ndarray, rng: np.random.Generator, *,
              n_samples: int = 64, n_candidates: int = 24, pairs: np.ndarray | None = None) -> tuple[int, int]:
    """Indices into the pool (rows of `pool_x`, probe-read features) of the next pair to show.

    `pairs` (elicit only): extra candidate pairs, e.g. `matched_pairs(pool_x, vocab)`, scored beside
    the pairs among the Thompson candidates."""
    n = len(pool_x)
    if n < 2:
        raise InputError("elicitation needs a pool of at least two creatives")
    if policy == "random":
        a, b = rng.choice(n, size=2, replace=False)
        return int(a), int(b)
    if policy == "exploit":
        order = np.argsort(-(pool_x @ post.mean), kind="stable")
        return int(order[0]), int(order[1])
    if policy != "elicit":
        raise InputError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    samples = post.sample(n_samples, rng)
    best = np.unique((pool_x @ samples.T).argmax(0))  # each sample's favourite creative (Thompson)
    extra = rng.choice(n, size=min(n, max(0, n_candidates - len(best))), replace=False)
    cand = np.unique(np.concatenate([best, extra]))
    ii, jj = np.triu_indices(len(cand), 1)
    cands = np.stack([cand[ii], cand[jj]], 1)
    if pairs is not None and len(pairs):
        cands = np.concatenate([cands, np.asarray(pairs, np.int64)])
    info = pair_information(cands, pool_x, samples, post.vocab)
    a, b = cands[int(np.argmax(info))]
    return int(a), int(b)


def apply_feedback(condition, post: TastePosterior):
    """The condition with its attribute weights replaced by the feedback-updated taste (other fields kept):
    the one call the preference path makes once a shopper has answered creatives."""
    from dataclasses import replace

    attrs = {**condition.attributes, **post.weights()}
    return replace(condition, attributes=attrs, source=f"{condition.source} + feedback ({len(post.choices)} choices)")
