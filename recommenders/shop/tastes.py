"""Ground-truth shopper tastes and the oracle click model that every demo-shop log is drawn from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from core.errors import InputError

from .vocab import ATTRIBUTE_KINDS, SEGMENTS, vocabulary

# Dirichlet concentrations: values a segment favours vs. the rest, plus one personal favourite.
TASTE_MODEL = {"alpha_segment": 2.0, "alpha_other": 0.25, "alpha_personal": 1.5,
               "drift_kinds": ["color", "pattern"], "drift_share": 0.6, "drift_mix": 0.6,
               "popularity_bias_range": [0.0, 1.0]}

# Logistic click model: logit = bias[format] + slope * affinity, affinity = sum over kinds of
# clip(log(K * w[value])) (0 for a value the user is indifferent to, i.e. w = 1/K).
CLICK_MODEL = {"bias": {"product": -2.5, "banner": -3.0}, "slope": 0.55, "clip": [-3.0, 2.0]}
FORMATS = tuple(CLICK_MODEL["bias"])


@dataclass
class Taste:
    """A user's true preference: per kind, weights over the vocabulary (each sums to 1).

    `weights` is the taste now (what impressions and `oracle_ctr` use); `start_weights` the taste
    at the user's first interaction: histories drift linearly from one to the other.
    """

    user_id: str
    segment: str
    weights: dict[str, dict[str, float]]
    popularity_bias: float
    start_weights: dict[str, dict[str, float]] = field(default_factory=dict)

    def top(self, kind: str, n: int = 3) -> list[str]:
        """The `n` values of one kind this user likes most (ties broken by name)."""
        return [v for v, _ in sorted(self.weights[kind].items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def bottom(self, kind: str, n: int = 3) -> list[str]:
        """The `n` values of one kind this user likes least."""
        return [v for v, _ in sorted(self.weights[kind].items(), key=lambda kv: (kv[1], kv[0]))[:n]]

    def to_dict(self) -> dict:
        return {"user_id": self.user_id, "segment": self.segment, "taste": self.weights,
                "taste_start": self.start_weights, "popularity_bias": self.popularity_bias}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Taste":
        return cls(user_id=str(d["user_id"]), segment=str(d["segment"]), weights=d["taste"],
                   popularity_bias=float(d["popularity_bias"]), start_weights=d.get("taste_start", {}))


def _round_weights(w: np.ndarray, values: tuple[str, ...]) -> dict[str, float]:
    # 5 decimals keep the JSON short and identical on every platform.
    return {v: round(float(x), 5) for v, x in zip(values, w)}


def _segment_draw(rng: np.random.Generator, segment: str, kind: str) -> np.ndarray:
    values = vocabulary(kind)
    favoured = SEGMENTS[segment][kind]
    alpha = np.array([TASTE_MODEL["alpha_segment"] if v in favoured else TASTE_MODEL["alpha_other"] for v in values])
    alpha[rng.integers(len(values))] += TASTE_MODEL["alpha_personal"]
    return rng.dirichlet(alpha)


def sample_taste(rng: np.random.Generator, user_id: str) -> Taste:
    """Draw one user's taste around a random segment; some users drift from another segment's colors/patterns."""
    segments = list(SEGMENTS)
    segment = segments[rng.integers(len(segments))]
    weights, start = {}, {}
    drifts = rng.random() < TASTE_MODEL["drift_share"]
    other = segments[rng.integers(len(segments))]
    for kind in ATTRIBUTE_KINDS:
        values = vocabulary(kind)
        w = _segment_draw(rng, segment, kind)
        s = w
        if kind in TASTE_MODEL["drift_kinds"]:
            past = _segment_draw(rng, other, kind)
            if drifts:
                s = (1 - TASTE_MODEL["drift_mix"]) * w + TASTE_MODEL["drift_mix"] * past
        weights[kind] = _round_weights(w, values)
        start[kind] = _round_weights(s, values)
    lo, hi = TASTE_MODEL["popularity_bias_range"]
    bias = round(float(rng.uniform(lo, hi)), 4)
    return Taste(user_id=user_id, segment=segment, weights=weights, popularity_bias=bias, start_weights=start)


def preference(taste_weights: Mapping[str, float], value: str, kind: str) -> float:
    """How much more (> 0) or less (< 0) than indifferent a user likes one value: clip(log(K * w))."""
    if value not in taste_weights:
        raise InputError(f"unknown {kind} {value!r}; the demo shop knows {', '.join(sorted(taste_weights))}")
    k = len(taste_weights)
    lo, hi = CLICK_MODEL["clip"]
    return min(hi, max(lo, math.log(max(k * float(taste_weights[value]), 1e-12))))


def affinity(taste: Taste, attributes: Mapping[str, str]) -> float:
    """Sum of per-kind preferences over the kinds present in `attributes` (others count as indifferent)."""
    return sum(preference(taste.weights[kind], str(attributes[kind]), kind)
               for kind in ATTRIBUTE_KINDS if kind in attributes)


def click_probability(taste: Taste, attributes: Mapping[str, str], format: str = "product") -> float:
    """The true probability that this user clicks an ad showing a product with these attributes."""
    if format not in CLICK_MODEL["bias"]:
        raise InputError(f"unknown ad format {format!r}; expected one of {', '.join(FORMATS)}")
    logit = CLICK_MODEL["bias"][format] + CLICK_MODEL["slope"] * affinity(taste, attributes)
    return 1.0 / (1.0 + math.exp(-logit))
