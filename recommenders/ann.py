"""Approximate top-k retrieval over an item embedding table: an inverted-file (IVF) index.

The coarse quantiser of IVF (Jégou, Douze & Schmid, "Product quantization for nearest neighbor
search", TPAMI 2011; FAISS's IndexIVFFlat, Johnson, Douze & Jégou, "Billion-scale similarity search
with GPUs", IEEE TBD 2019): k-means splits the items into `n_clusters` lists; a query scores the
centroids, keeps its `n_probe` best lists and scores exactly only the items in them. Scores are inner
products, the same ranking as exact scoring (`queries @ vectors.T`): pass the vectors that are
scored against (for cosine scoring, the unit item embeddings). With `n_probe == n_clusters` the result
equals exact top-k.

Everything is batched: the lists are padded to one (n_clusters, cap, dim) tensor, a batch of queries
groups its (query, list) pairs by list and scores each list once against all the queries that
probe it (a loop over the lists, never over rows).
Dependency-free (torch only); the index is rebuilt from the embeddings in well under a second, so
models keep it in memory instead of saving it.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


class TopK(NamedTuple):
    """Best-first scores and item indices, each (B, k)."""

    scores: torch.Tensor
    ids: torch.Tensor


def topk_rows(scores: torch.Tensor, k: int) -> TopK:
    """The k largest entries of each row, best first: `scores.topk(k, dim=1)`, faster on a CPU.

    On a CPU, torch.topk costs about 5 us per row for k = 50 of ~500 candidates, as much as scoring
    them; numpy's introselect (argpartition) followed by a sort of the k selected takes a half to a
    third of that (not for thousands of columns: there torch.topk is as fast). Equal scores may be
    returned in another order than torch's, deterministically. Other devices use torch.topk.
    """
    k = min(int(k), scores.shape[1])
    if scores.device.type != "cpu" or k == 0:
        top = scores.topk(k, dim=1)
        return TopK(top.values, top.indices)
    a = scores.detach().numpy()
    part = np.argpartition(a, a.shape[1] - k, axis=1)[:, a.shape[1] - k:]        # the k largest, unordered
    vals = np.take_along_axis(a, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")                               # best first
    return TopK(torch.from_numpy(np.take_along_axis(vals, order, 1)),
                torch.from_numpy(np.take_along_axis(part, order, 1)))


def kmeans(x: torch.Tensor, n_clusters: int, *, n_iter: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in squared L2: (centroids (C, D), assignment (N,)), seeded, deterministic.

    Initial centroids are `n_clusters` distinct random points; a cluster that empties is re-seeded
    with the point farthest from its centroid (an empty list would only waste a probe, never fail).
    """
    x = x.detach().float()
    n = len(x)
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in 1..{n}, got {n_clusters}")
    gen = torch.Generator().manual_seed(seed)
    centroids = x[torch.randperm(n, generator=gen)[:n_clusters]].clone()
    sq = (x * x).sum(1)
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(max(1, n_iter)):
        # argmin ||x - c||^2 = argmin (||c||^2 - 2 x.c); ||x||^2 is the same for every centroid
        d = (centroids * centroids).sum(1)[None] - 2 * x @ centroids.T
        dist, assign = d.min(1)
        counts = torch.bincount(assign, minlength=n_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None].float())
        if empty.any():  # re-seed empty clusters with the worst-served points, then reassign next round
            far = (dist + sq).topk(int(empty.sum())).indices
            centroids[empty] = x[far]
    d = (centroids * centroids).sum(1)[None] - 2 * x @ centroids.T
    return centroids, d.argmin(1)


class IVFIndex:
    """Inverted-file index for maximum-inner-product top-k over `vectors` (N, D).

    `n_clusters` defaults to round(sqrt(N)). `topk(queries, k, n_probe)` returns the k best items of
    the union of each query's n_probe best lists (by inner product with the centroids), best first.
    """

    def __init__(self, vectors: torch.Tensor, n_clusters: int | None = None, *, n_iter: int = 10, seed: int = 0):
        vectors = vectors.detach().float().contiguous()
        n, dim = vectors.shape
        self.n_items, self.dim = n, dim
        self.n_clusters = int(n_clusters or max(1, round(math.sqrt(n))))
        self.centroids, assign = kmeans(vectors, self.n_clusters, n_iter=n_iter, seed=seed)
        self.sizes = torch.bincount(assign, minlength=self.n_clusters)
        cap = int(self.sizes.max())
        # items of each list in increasing index order, padded to `cap`: ids -1, vectors 0, bias -inf
        order = torch.argsort(assign * n + torch.arange(n))  # stable: by list, then by item index
        starts = torch.cumsum(self.sizes, 0) - self.sizes
        slot = torch.arange(n) - starts[assign[order]]
        self.lists = torch.full((self.n_clusters, cap), -1, dtype=torch.long)
        self.lists[assign[order], slot] = order
        real = self.lists >= 0
        self.blocks = torch.zeros(self.n_clusters, cap, dim)
        self.blocks[real] = vectors[self.lists[real]]
        self.pad_bias = torch.zeros(self.n_clusters, cap).masked_fill_(~real, float("-inf"))
        self._smallest = torch.sort(self.sizes).values.cumsum(0)  # for the fewest lists that hold k items

    @property
    def cap(self) -> int:
        """Padded list length (the largest cluster)."""
        return self.lists.shape[1]

    def _score_lists(self, q: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
        """Inner products of each query with every slot of its probed lists, (b, P, cap).

        The (query, list) pairs are grouped by list, so each list's block is multiplied once with
        all the queries that probe it (one matrix product per non-empty list): no per-row loop and
        no copy of the items' vectors per query, which made the gather-and-bmm form slower than
        exact scoring on a CPU.
        """
        b, n_probe = probe.shape
        flat = probe.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.n_clusters).tolist()
        qs = q.index_select(0, torch.div(order, n_probe, rounding_mode="floor"))  # queries, grouped by list
        out = torch.empty(len(flat), self.cap)
        start = 0
        for c, n in enumerate(counts):
            if n:  # padding slots get -inf from the bias row
                torch.addmm(self.pad_bias[c], qs[start:start + n], self.blocks[c].T, out=out[start:start + n])
                start += n
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        return out.index_select(0, inverse).view(b, n_probe, self.cap)

    def min_probe(self, k: int) -> int:
        """The fewest lists that always hold at least k items (whichever lists are probed)."""
        return min(int((self._smallest < k).sum()) + 1, self.n_clusters)

    @torch.inference_mode()
    def topk(self, queries: torch.Tensor, k: int, n_probe: int, *, exclude: torch.Tensor | None = None,
             max_chunk_bytes: int = 32 << 20) -> TopK:
        """Approximate top-k by inner product: scores and item indices (B, k), best first.

        n_probe is raised to `min_probe(k)` so that k real items are always returned (k is capped at
        the number of items). `exclude` (B, m) holds item indices to leave out per row (e.g. the
        history; entries outside 0..N-1, such as a pad id, are ignored); excluded items get -inf and
        are only returned if fewer than k other candidates exist. Rows are processed in chunks so
        the candidate scores stay under `max_chunk_bytes`.
        """
        queries = queries.float()
        if queries.dim() != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (B, {self.dim}), got {tuple(queries.shape)}")
        k = min(int(k), self.n_items)
        n_probe = max(min(int(n_probe), self.n_clusters), self.min_probe(k), 1)
        width = n_probe * self.cap
        rows = max(1, max_chunk_bytes // (width * 4 * 4))  # a few (b, P*cap) float tensors
        scores = torch.empty(len(queries), k)
        ids = torch.empty(len(queries), k, dtype=torch.long)
        for i in range(0, len(queries), rows):  # chunks of many rows, bounded memory
            q = queries[i:i + rows]
            b = len(q)
            probe = (q @ self.centroids.T).topk(n_probe, dim=1).indices                  # (b, P)
            s = self._score_lists(q, probe).view(b, width)                               # (b, P*cap)
            if exclude is not None:
                cand = self.lists[probe].view(b, width)
                ex = exclude[i:i + rows]
                s.masked_fill_((cand[:, :, None] == ex[:, None, :]).any(2) & (cand >= 0), float("-inf"))
            top = topk_rows(s, k)
            scores[i:i + rows] = top.scores
            # position j of a row's candidates is slot j % cap of its (j // cap)-th probed list
            lists = probe.gather(1, torch.div(top.ids, self.cap, rounding_mode="floor"))
            ids[i:i + rows] = self.lists[lists, top.ids % self.cap]
        return TopK(scores, ids)


def exact_topk(queries: torch.Tensor, vectors: torch.Tensor, k: int, *,
               exclude: torch.Tensor | None = None) -> TopK:
    """Exact top-k by inner product (the reference IVF is compared against), same `exclude` rule."""
    s = queries.float() @ vectors.float().T
    if exclude is not None:
        ex = exclude.clone()
        valid = (ex >= 0) & (ex < s.shape[1])
        rows = torch.arange(len(s))[:, None].expand_as(ex)
        s[rows[valid], ex[valid]] = float("-inf")
    top = s.topk(min(k, s.shape[1]), dim=1)
    return TopK(top.values, top.indices)


def recall_at_k(approx_ids: torch.Tensor, exact_ids: torch.Tensor) -> float:
    """Mean share of each row's exact top-k found in its approximate top-k."""
    hit = (approx_ids[:, :, None] == exact_ids[:, None, :]).any(1)
    return float(hit.float().mean())
