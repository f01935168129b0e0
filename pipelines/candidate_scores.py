"""Rank generated candidates for one shopper: personalization, prompt fidelity, predicted CTR.

- personalization: mean cosine similarity between a candidate's image embedding and the user's
  history items' image embeddings (the scorer's space), as in the DESIGN's scoring section;
- clip: CLIP score of the candidate against its prompt (the scorer's own definition);
- ctr: the reward model's click probability, when one is given.
Scales differ, so the final order is by mean rank across the available scores (a Borda count),
unless a CTR model is present, which then decides (ties broken by the other scores).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from recommenders.catalog import Catalog
    from recommenders.condition import PreferenceCondition


def as_unit_rows(x) -> np.ndarray:
    """Embeddings as a float64 numpy array with unit-norm rows."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class CatalogEmbeddings:
    """Scorer image embeddings of catalog items, computed once per item and cached."""

    def __init__(self, scorer, catalog: "Catalog", batch_size: int = 64):
        self.scorer, self.catalog, self.batch_size = scorer, catalog, batch_size
        self._cache: dict[str, np.ndarray] = {}

    def get(self, item_ids: Sequence[str]) -> np.ndarray:
        """(len(item_ids), D) unit embeddings of the items' pictures."""
        todo = [i for i in dict.fromkeys(item_ids) if i not in self._cache]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            emb = as_unit_rows(self.scorer.embed_images([self.catalog.load_image(i) for i in chunk]))
            self._cache.update(zip(chunk, emb))
        if not item_ids:
            return np.zeros((0, 0))
        return np.stack([self._cache[i] for i in item_ids])

    def nearest(self, query, candidates: Sequence[str], exclude: Sequence[str] = ()) -> tuple[str, float]:
        """The candidate item most similar to one query embedding, and its cosine similarity."""
        pool = [i for i in candidates if i not in set(exclude)]
        if not pool:
            return "", float("nan")
        sims = self.get(pool) @ as_unit_rows(query)[0]
        j = int(np.argmax(sims))
        return pool[j], float(sims[j])


def history_items(condition: "PreferenceCondition", catalog: "Catalog | None", n: int = 8) -> list[str]:
    """Items standing for the user's taste: the history references, else the top recommendations."""
    if catalog is None:
        return []
    ids = list(condition.reference_items) or [i for i, _ in condition.item_scores]
    return [i for i in ids if i in catalog and catalog[i].image_path][:n]


def score_candidates(images: list["Image.Image"], prompts: list[str], condition: "PreferenceCondition | None",
                     *, scorer, catalog: "Catalog | None" = None, reward_model=None,
                     index: CatalogEmbeddings | None = None, reward_format: str = "product") -> list[dict[str, float]]:
    """Per-image scores: personalization, clip and (with a reward model) ctr for the ad `reward_format`."""
    img_emb = as_unit_rows(scorer.embed_images(images))
    clip = np.asarray(_to_numpy(scorer.clip_score(images, prompts)), dtype=np.float64).reshape(-1)
    scores = [{"clip": float(c)} for c in clip]
    refs = history_items(condition, catalog) if condition is not None else []
    if refs:
        index = index or CatalogEmbeddings(scorer, catalog)
        personal = (img_emb @ index.get(refs).T).mean(axis=1)
        for s, p in zip(scores, personal):
            s["personalization"] = float(p)
    if reward_model is not None and condition is not None:
        ctr = _to_numpy(reward_model.predict(img_emb, condition, format=reward_format))
        ctr = np.asarray(ctr, dtype=np.float64).reshape(-1)
        for s, c in zip(scores, ctr):
            s["ctr"] = float(c)
    return scores


def rank_order(scores: list[dict[str, float]]) -> list[int]:
    """Indices best first: by CTR when present, else by mean rank over the available scores."""
    n = len(scores)
    if n == 0:
        return []
    keys = sorted({k for s in scores for k in s})
    ranks = np.zeros(n)
    for k in keys:
        vals = np.array([s.get(k, -np.inf) for s in scores])
        ranks += np.argsort(np.argsort(-vals, kind="stable"), kind="stable")
    mean_rank = ranks / max(1, len(keys))
    if "ctr" in keys:
        return sorted(range(n), key=lambda i: (-scores[i]["ctr"], mean_rank[i], i))
    return sorted(range(n), key=lambda i: (mean_rank[i], i))


def rank_output(output, condition, *, scorer, catalog=None, reward_model=None, index=None,
                reward_format: str = "product"):
    """Score a PipelineOutput's images, store the scores on the Creatives and sort both, best first."""
    if scorer is None or not output.images:
        return output
    prompts = [c.prompt for c in output.creatives]
    scores = score_candidates(output.images, prompts, condition, scorer=scorer, catalog=catalog,
                              reward_model=reward_model, index=index, reward_format=reward_format)
    order = rank_order(scores)
    for rank, i in enumerate(order):
        output.creatives[i].scores.update({k: round(v, 6) for k, v in scores[i].items()})
        output.creatives[i].scores["rank"] = rank
    output.images = [output.images[i] for i in order]
    output.creatives = [output.creatives[i] for i in order]
    return output


def _to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return x
