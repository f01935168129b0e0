"""A condition's taste as a point in the scorer's image-embedding space, which the generator can read.

Each attribute value (color=navy, pattern=striped, category=shirt, ...) gets a prototype: the mean
scorer image embedding (`Scorer.embed_images`) of the catalog items that have it. A condition's
attribute weights then place it in that space additively (one offset per attribute kind):

    embedding = normalize(center + sum_kind sum_value w[kind, value] * (prototype[kind, value] - center))

with `center` the mean embedding of all items and `w` the condition's weights normalised within each
kind. More weight on navy moves the point toward the navy prototype. Only the condition's attribute
weights are needed at inference; the prototypes travel inside the preference adapter's folder
(`PreferenceAdapter(taste_vocabulary=...)`), so the image-space adapter needs no catalog to run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from core.errors import InputError

if TYPE_CHECKING:
    from recommenders.catalog import Catalog

Vocabulary = list[list[str]]  # [[kind, value], ...], one row per prototype


@dataclass(frozen=True)
class TasteSpace:
    """Per-attribute-value prototypes (V, D) in an image-embedding space, their vocabulary and center."""

    vocabulary: Vocabulary
    prototypes: np.ndarray  # (V, D) float32
    center: np.ndarray  # (D,) float32
    spread: float = 1.0  # RMS distance of the users' (or items') embeddings from the center: the adapter's input scale

    @property
    def dim(self) -> int:
        return int(self.prototypes.shape[1])

    def weights(self, attributes: Mapping[str, Mapping[str, float]]) -> np.ndarray:
        """(V,) the condition's weights over the vocabulary, normalised to sum 1 within each kind (0 if unknown)."""
        return taste_weights(attributes, self.vocabulary)

    def embed(self, attributes: Mapping[str, Mapping[str, float]]) -> np.ndarray:
        """(D,) unit-norm embedding of a condition's attribute weights (the center when it names nothing known)."""
        return mix_prototypes(self.weights(attributes), self.prototypes, self.center)


def taste_weights(attributes: Mapping[str, Mapping[str, float]], vocabulary: Sequence[Sequence[str]]) -> np.ndarray:
    """Weights per vocabulary row: a kind's known values' weights (negatives as 0) divided by their sum."""
    w = np.zeros(len(vocabulary), np.float64)
    by_kind: dict[str, list[int]] = {}
    for j, (kind, value) in enumerate(vocabulary):
        by_kind.setdefault(kind, []).append(j)
        w[j] = max(float((attributes.get(kind) or {}).get(value, 0.0)), 0.0)
    for rows in by_kind.values():
        total = w[rows].sum()
        if total > 0:
            w[rows] /= total
    return w


def mix_prototypes(weights: np.ndarray, prototypes: np.ndarray, center: np.ndarray) -> np.ndarray:
    """center + weights @ (prototypes - center), L2-normalised (float32)."""
    prototypes = np.asarray(prototypes, np.float64)
    center = np.asarray(center, np.float64)
    x = center + np.asarray(weights, np.float64) @ (prototypes - center[None, :])
    return (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float32)


def build_taste_space(item_embeddings: np.ndarray, catalog: "Catalog", item_ids: Sequence[str]) -> TasteSpace:
    """Prototypes from items' image embeddings (rows aligned with `item_ids`): the mean per attribute value."""
    emb = np.asarray(item_embeddings, np.float64)
    if emb.ndim != 2 or len(emb) != len(item_ids) or not len(emb):
        raise InputError(f"need one image embedding per item, got {emb.shape} for {len(item_ids)} items")
    rows: dict[tuple[str, str], list[int]] = {}
    for r, iid in enumerate(item_ids):
        item = catalog[iid]
        for kind, value in [("category", item.category), *sorted(item.attributes.items())]:
            rows.setdefault((str(kind), str(value)), []).append(r)
    vocabulary = sorted(rows)
    prototypes = np.stack([emb[rows[key]].mean(0) for key in vocabulary])
    center = emb.mean(0)
    spread = float(np.sqrt(((emb - center) ** 2).sum(1).mean())) or 1.0
    return TasteSpace([list(key) for key in vocabulary], prototypes.astype(np.float32), center.astype(np.float32),
                      spread)


def with_spread(space: TasteSpace, embeddings: np.ndarray) -> TasteSpace:
    """The same space with `spread` measured on `embeddings` (e.g. the training users' tastes)."""
    x = np.asarray(embeddings, np.float64)
    spread = float(np.sqrt(((x - space.center[None, :]) ** 2).sum(1).mean())) if len(x) else 0.0
    return TasteSpace(space.vocabulary, space.prototypes, space.center, spread if spread > 0 else space.spread)


def taste_space_from_catalog(scorer, catalog: "Catalog", item_ids: Sequence[str] | None = None) -> TasteSpace:
    """Prototypes from the scorer's embeddings of the catalog's pictures (items without one are skipped)."""
    from .candidate_scores import CatalogEmbeddings

    ids = [i for i in (item_ids if item_ids is not None else catalog.item_ids) if catalog[i].image_path]
    if not ids:
        raise InputError("the catalog has no item pictures to build taste prototypes from", catalog.root)
    return build_taste_space(CatalogEmbeddings(scorer, catalog).get(ids), catalog, ids)
