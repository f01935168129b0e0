"""Floor 1: data contracts, loaders, the demo shop, recommender models and metrics.

Light imports only; models are imported lazily via `recommenders.base.model_class`.
"""

from core import _offline  # noqa: F401  (sets offline defaults before any hub library loads)
from core.creative import Creative, Manifest
from core.errors import InputError

from .catalog import Catalog, Item
from .condition import PreferenceCondition

__all__ = ["Catalog", "Item", "PreferenceCondition", "Creative", "Manifest", "InputError"]
