"""Beta-Bernoulli bandit statistics: Thompson sampling, probability to beat control, stopping rule.

Each creative's click-through rate gets a Beta(alpha + clicks, beta + impressions - clicks)
posterior. Thompson sampling (Thompson 1933; Chapelle & Li 2011, "An Empirical Evaluation of
Thompson Sampling") serves the creative whose posterior draw is highest, so traffic moves to the
better creatives as evidence comes in. The stopping rule is the expected-loss rule used for
Bayesian A/B tests: stop when the current leader is the best with high probability and choosing
it would cost, in expectation, less than a CTR difference nobody cares about.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _posterior(clicks, impressions, prior: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    clicks = np.asarray(clicks, dtype=np.float64)
    impressions = np.asarray(impressions, dtype=np.float64)
    if clicks.shape != impressions.shape or clicks.ndim != 1 or clicks.size == 0:
        raise ValueError("clicks and impressions must be non-empty 1-D arrays of the same length")
    if np.any(clicks < 0) or np.any(clicks > impressions):
        raise ValueError("need 0 <= clicks <= impressions for every arm")
    a, b = prior
    return a + clicks, b + impressions - clicks


def thompson_choice(
    clicks, impressions, rng: np.random.Generator, prior: tuple[float, float] = (1.0, 1.0)
) -> int:
    """Index of the arm to serve next: the argmax of one draw from each arm's Beta posterior."""
    alpha, beta = _posterior(clicks, impressions, prior)
    return int(np.argmax(rng.beta(alpha, beta)))


def posterior_samples(
    clicks, impressions, n_samples: int, rng: np.random.Generator, prior: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray:
    """(n_samples, n_arms) CTR draws from the arms' Beta posteriors."""
    alpha, beta = _posterior(clicks, impressions, prior)
    return rng.beta(alpha, beta, size=(n_samples, alpha.size))


@dataclass
class ArmSummary:
    """Posterior summary of one arm."""

    index: int
    clicks: int
    impressions: int
    ctr: float  # posterior mean
    ctr_low: float  # 2.5% posterior quantile
    ctr_high: float  # 97.5% posterior quantile
    prob_best: float
    prob_beat_control: float | None  # None for the control itself
    expected_loss: float  # E[max CTR - this CTR]: what picking this arm now would cost


@dataclass
class StopDecision:
    """Whether an experiment can stop, and why."""

    stop: bool
    winner: int | None
    reason: str

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


def summarize(
    clicks,
    impressions,
    *,
    control: int = 0,
    n_samples: int = 20000,
    seed: int = 0,
    prior: tuple[float, float] = (1.0, 1.0),
) -> list[ArmSummary]:
    """Monte Carlo posterior summary of every arm (probability best, beat control, expected loss)."""
    clicks = np.asarray(clicks, dtype=np.int64)
    impressions = np.asarray(impressions, dtype=np.int64)
    if not 0 <= control < clicks.size:
        raise ValueError(f"control index {control} out of range for {clicks.size} arms")
    samples = posterior_samples(clicks, impressions, n_samples, np.random.default_rng(seed), prior)
    alpha, beta = _posterior(clicks, impressions, prior)
    best = samples.argmax(axis=1)
    top = samples.max(axis=1)
    low, high = np.quantile(samples, [0.025, 0.975], axis=0)
    out = []
    for i in range(clicks.size):
        beat = None if i == control else float(np.mean(samples[:, i] > samples[:, control]))
        out.append(
            ArmSummary(
                index=i,
                clicks=int(clicks[i]),
                impressions=int(impressions[i]),
                ctr=float(alpha[i] / (alpha[i] + beta[i])),
                ctr_low=float(low[i]),
                ctr_high=float(high[i]),
                prob_best=float(np.mean(best == i)),
                prob_beat_control=beat,
                expected_loss=float(np.mean(top - samples[:, i])),
            )
        )
    return out


def stopping_rule(
    summary: list[ArmSummary],
    *,
    prob_threshold: float = 0.95,
    loss_threshold: float = 0.001,
    min_impressions: int = 100,
) -> StopDecision:
    """Stop when every arm has `min_impressions`, and the leader is best with `prob_threshold`
    and its expected loss is under `loss_threshold` (absolute CTR)."""
    if min(s.impressions for s in summary) < min_impressions:
        return StopDecision(False, None, f"every creative needs {min_impressions} impressions first")
    leader = max(summary, key=lambda s: (s.prob_best, -s.expected_loss))
    if leader.prob_best < prob_threshold:
        return StopDecision(
            False, None, f"leader is best with p={leader.prob_best:.3f} < {prob_threshold}"
        )
    if leader.expected_loss > loss_threshold:
        return StopDecision(
            False, None, f"expected loss {leader.expected_loss:.4g} > {loss_threshold} for the leader"
        )
    return StopDecision(
        True,
        leader.index,
        f"arm {leader.index} is best with p={leader.prob_best:.3f}, expected loss {leader.expected_loss:.2g}",
    )
