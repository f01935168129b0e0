"""Interaction logs (user, item, timestamp, optional rating/click) with dense id maps and splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InputError
from core.tabular import iter_csv_rows, parse_float, parse_id


@dataclass
class Interactions:
    """Events as parallel arrays over dense indices; `user_ids`/`item_ids` map indices back to external ids."""

    user_index: np.ndarray
    item_index: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    timestamp: np.ndarray | None = None
    rating: np.ndarray | None = None
    click: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user_index)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def to_csr(self, mask=None):
        """Binary user x item matrix (float32), duplicates collapsed."""
        import scipy.sparse as sp

        u, i = self.user_index, self.item_index
        if mask is not None:
            u, i = u[mask], i[mask]
        m = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(self.n_users, self.n_items))
        m.data[:] = 1.0
        return m

    def _order(self) -> np.ndarray:
        """Event order: by user, then time (stable, so ties keep the file's order)."""
        t = self.timestamp if self.timestamp is not None else np.arange(len(self), dtype=np.float64)
        return np.lexsort((np.arange(len(self)), t, self.user_index))

    def user_sequences(self) -> list[np.ndarray]:
        """Each user's item indices in time order."""
        order = self._order()
        users = self.user_index[order]
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        items = self.item_index[order]
        return [items[bounds[u]:bounds[u + 1]] for u in range(self.n_users)]

    def to_cf_splits(self, ratios: tuple[float, float, float] = (0.7, 0.2, 0.1), name: str = "interactions"):
        """Per-user temporal split: each user's earliest events train, later ones validate, the last ones test."""
        from .splits import CFSplits

        if len(ratios) != 3 or abs(sum(ratios) - 1) > 1e-6 or min(ratios) < 0:
            raise InputError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
        order = self._order()
        users = self.user_index[order]
        part = np.zeros(len(order), np.int8)
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        for u in range(self.n_users):  # O(users) bookkeeping only; no model work here
            s, e = bounds[u], bounds[u + 1]
            n = e - s
            if n == 0:
                continue
            c1 = max(1, int(round(n * ratios[0])))
            c2 = max(c1, int(round(n * (ratios[0] + ratios[1]))))
            part[s + c1:s + c2] = 1
            part[s + c2:e] = 2
        split = np.empty_like(part)
        split[order] = part
        return CFSplits(
            name=name, train=self.to_csr(split == 0), valid=self.to_csr(split == 1), test=self.to_csr(split == 2),
            item_emb=None, user_ids=list(self.user_ids), item_ids=list(self.item_ids),
        )

    def to_seq_splits(self, max_len: int = 10, name: str = "interactions"):
        """Next-item rows: history (last `max_len` items) -> next item; each user's last target is test, the one before valid."""
        from .splits import SeqSplit, SeqSplits

        pad = self.n_items
        rows = {0: ([], []), 1: ([], []), 2: ([], [])}
        for seq in self.user_sequences():
            n = len(seq)
            for t in range(1, n):
                part = 2 if t == n - 1 else 1 if t == n - 2 else 0
                hist = seq[max(0, t - max_len):t]
                rows[part][0].append(np.pad(hist, (0, max_len - len(hist)), constant_values=pad))
                rows[part][1].append(seq[t])

        def make(part: int) -> SeqSplit:
            hs, ts = rows[part]
            seq = np.stack(hs).astype(np.int64) if hs else np.zeros((0, max_len), np.int64)
            return SeqSplit(seq=seq, seq_len=(seq != pad).sum(1).astype(np.int64), target=np.asarray(ts, np.int64))

        return SeqSplits(name=name, n_items=self.n_items, train=make(0), valid=make(1), test=make(2),
                         item_ids=list(self.item_ids))


def load_interactions_csv(path: str | Path, catalog=None) -> Interactions:
    """Load `user_id,item_id,timestamp[,rating][,click]`; items must exist in `catalog` when one is given."""
    path = Path(path)
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    if catalog is not None:
        items = {iid: k for k, iid in enumerate(catalog.item_ids)}
    u_idx, i_idx, ts, ratings, clicks = [], [], [], [], []
    seen: dict[tuple[str, str, float], int] = {}
    has_rating = has_click = False
    for line, row in iter_csv_rows(path, required={"user_id", "item_id", "timestamp"}, optional={"rating", "click"}):
        user = parse_id(row["user_id"], "user_id", path, line)
        item = parse_id(row["item_id"], "item_id", path, line)
        t = parse_float(row["timestamp"], "timestamp", path, line, hint=" (expected Unix seconds)")
        key = (user, item, t)
        if key in seen:
            raise InputError(f"duplicate row (same user, item and timestamp as line {seen[key]})", path, line)
        seen[key] = line
        if catalog is not None and item not in items:
            raise InputError(f"item_id {item!r} is not in the catalog", path, line)
        u_idx.append(users.setdefault(user, len(users)))
        i_idx.append(items.setdefault(item, len(items)))
        ts.append(t)
        if "rating" in row:
            has_rating = True
            ratings.append(parse_float(row["rating"], "rating", path, line) if row["rating"] else np.nan)
        if "click" in row:
            has_click = True
            if row["click"] not in ("0", "1"):
                raise InputError(f"click must be 0 or 1, got {row['click']!r}", path, line)
            clicks.append(float(row["click"]))
    return Interactions(
        user_index=np.asarray(u_idx, np.int64), item_index=np.asarray(i_idx, np.int64),
        user_ids=list(users), item_ids=list(items), timestamp=np.asarray(ts, np.float64),
        rating=np.asarray(ratings, np.float32) if has_rating else None,
        click=np.asarray(clicks, np.float32) if has_click else None,
    )
