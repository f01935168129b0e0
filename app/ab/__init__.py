"""A/B ranking: SQLite store, Thompson sampling, Bradley-Terry votes, DPO pair export, simulation."""

from .bandit import ArmSummary, StopDecision, stopping_rule, summarize, thompson_choice
from .bradley_terry import BTResult, fit_bradley_terry, fit_votes
from .export import pairs_from_reward, preference_pairs, write_pairs
from .prescreen import rank_candidates
from .service import choose_arm, choose_creative, results, serve_once, vote_pair
from .store import ABStore, ArmStats, Experiment, Vote

__all__ = [
    "ABStore",
    "ArmStats",
    "ArmSummary",
    "BTResult",
    "Experiment",
    "StopDecision",
    "Vote",
    "choose_arm",
    "choose_creative",
    "fit_bradley_terry",
    "fit_votes",
    "pairs_from_reward",
    "preference_pairs",
    "rank_candidates",
    "results",
    "serve_once",
    "stopping_rule",
    "summarize",
    "thompson_choice",
    "vote_pair",
    "write_pairs",
]
