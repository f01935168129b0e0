"""Floor 1: data contracts, loaders, the demo shop, recommender models and metrics.

Light imports only; models are imported lazily via `recommenders.base.model_class`.
"""

from . import _offline  # noqa: F401  (sets offline defaults before any hub library loads)
from .catalog import Catalog, Item
from .condition import PreferenceCondition, condition_from_scores
from .creative import Creative, Manifest
from .errors import InputError

__all__ = ["Catalog", "Item", "PreferenceCondition", "condition_from_scores", "Creative", "Manifest", "InputError"]
