"""Sampling the demo shop's world: which products exist, and the logs its shoppers leave.

Everything is drawn from explicit numpy Generators so the same seed gives the same world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .tastes import FORMATS, Taste, click_probability
from .vocab import (
    ACCESSORIES,
    ATTRIBUTE_KINDS,
    BOLD_COLORS,
    BOTTOMS,
    CATEGORIES,
    COLORS,
    PATTERNS,
    STYLES,
    TOPS,
    vocabulary,
)

PLURAL_CATEGORIES = {"trousers", "shoes"}

# Browsing model (see `sample_interactions`).
BROWSING_MODEL = {
    "interactions_per_user": [30, 60],
    "session_continue": 0.8,          # chance the next event stays in the same session
    "similarity_boost": 0.9,          # log-boost per attribute shared with the previous item, in-session
    "gap_in_session_s": 150.0,        # mean seconds between events in a session
    "gap_between_sessions_s": 3 * 86400.0,
    "start": 1767225600,              # 2026-01-01T00:00:00Z
    "start_spread_s": 60 * 86400,
}
IMPRESSION_MODEL = {"per_user": [10, 30], "targeted_share": 0.5, "after_last_event_s": 14 * 86400,
                    "format_probs": {"product": 0.6, "banner": 0.4}}
OUTFIT_MODEL = {"n_outfits": 600, "bag_prob": 0.6, "hat_prob": 0.4, "dress_prob": 0.35}


@dataclass(frozen=True)
class Product:
    """One product of the demo catalog, before it is drawn and written."""

    item_id: str
    category: str
    color: str
    pattern: str
    style: str

    @property
    def title(self) -> str:
        article = "" if self.category in PLURAL_CATEGORIES else "a "
        return f"{article}{self.style} {self.color} {self.pattern} {self.category}"

    @property
    def attributes(self) -> dict[str, str]:
        return {"color": self.color, "pattern": self.pattern, "style": self.style}

    def value(self, kind: str) -> str:
        return self.category if kind == "category" else self.attributes[kind]


def design_catalog(rng: np.random.Generator, per_color: int = 6) -> list[Product]:
    """Each category gets every color `per_color` times, with distinct random (pattern, style) pairs."""
    pairs = [(p, s) for p in PATTERNS for s in STYLES]
    combos = []
    for category in CATEGORIES:
        for color in COLORS:
            for k in rng.choice(len(pairs), size=per_color, replace=False):
                combos.append((category, color, *pairs[k]))
    order = rng.permutation(len(combos))  # shuffled ids, so any id range is a fair sample
    return [Product(f"p{n + 1:04d}", *combos[k]) for n, k in enumerate(order)]


class _ItemTable:
    """Products as integer attribute columns, for vectorised scoring."""

    def __init__(self, products: list[Product]):
        self.products = products
        self.codes = {kind: np.array([vocabulary(kind).index(p.value(kind)) for p in products])
                      for kind in ATTRIBUTE_KINDS}
        matrix = np.stack([self.codes[k] for k in ATTRIBUTE_KINDS], axis=1)  # (n_items, n_kinds)
        # shared[i, j]: how many attributes (category, color, pattern, style) items i and j have in common
        self.shared = (matrix[:, None, :] == matrix[None, :, :]).sum(axis=2).astype(np.float64)


def _taste_matrix(tastes: list[Taste], kind: str, start: bool = False) -> np.ndarray:
    """(n_users, n_values) weights of one kind, now or at the start of each history."""
    return np.array([[(t.start_weights if start else t.weights)[kind][v] for v in vocabulary(kind)] for t in tastes])


def _draw_rows(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One categorical draw per row of `logits` (inverse CDF); -inf entries are never drawn."""
    n_rows, n_cols = logits.shape
    cdf = np.cumsum(np.exp(logits - logits.max(axis=1, keepdims=True)), axis=1)
    cdf /= cdf[:, -1:]  # each row ends at exactly 1.0
    r = 1.0 - rng.random(n_rows)  # in (0, 1], so an item with zero mass is never the first cdf >= r
    # Offset row k by k so one searchsorted over the flattened, increasing array serves every row.
    rows = np.arange(n_rows)
    flat = np.searchsorted((cdf + rows[:, None]).ravel(), rows + r, side="left")
    return np.minimum(flat - rows * n_cols, n_cols - 1)


def sample_appeal(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """Per-item log-appeal: a heavy-tailed popularity that taste-neutral shoppers follow."""
    return np.round(rng.normal(0.0, 1.0, n_items), 4)


def sample_interactions(rng: np.random.Generator, products: list[Product], tastes: list[Taste],
                        appeal: np.ndarray, progress: bool = True) -> list[tuple[str, str, int, int]]:
    """Time-ordered clicks per user: (user_id, item_id, unix_seconds, click=1).

    Each event picks an unseen item with probability proportional to
    prod_kind w_t[kind][value] * exp(popularity_bias * appeal) * exp(boost * shared attributes with the
    previous item, inside a session), where w_t moves linearly from the start taste to the current one.
    Drift and the in-session similarity give sequence models signal beyond a static profile.
    All users advance one event per step, vectorised.
    """
    m = BROWSING_MODEL
    table = _ItemTable(products)
    n_users = len(tastes)
    lo, hi = m["interactions_per_user"]
    n_events = rng.integers(lo, hi + 1, size=n_users)
    start = {k: _taste_matrix(tastes, k, start=True) for k in ATTRIBUTE_KINDS}
    now = {k: _taste_matrix(tastes, k) for k in ATTRIBUTE_KINDS}
    popularity = np.array([t.popularity_bias for t in tastes])[:, None] * appeal[None, :]
    clock = (m["start"] + rng.integers(0, m["start_spread_s"], size=n_users)).astype(np.float64)
    seen = np.zeros((n_users, len(products)), bool)
    prev = np.full(n_users, -1)
    rows = []
    for step in tqdm(range(hi), desc="interactions", disable=not progress):
        active = step < n_events
        f = (step / np.maximum(n_events - 1, 1))[:, None]
        logits = popularity.copy()
        for kind in ATTRIBUTE_KINDS:
            w = (1 - f) * start[kind] + f * now[kind]
            logits += np.log(np.maximum(w, 1e-9))[:, table.codes[kind]]
        in_session = (prev >= 0) & (rng.random(n_users) < m["session_continue"])
        if step > 0:
            logits += m["similarity_boost"] * table.shared[prev] * in_session[:, None]
            gap = np.where(in_session, rng.exponential(m["gap_in_session_s"], n_users) + 1,
                           rng.exponential(m["gap_between_sessions_s"], n_users) + 600)
            clock += gap
        logits[seen] = -np.inf
        items = _draw_rows(rng, logits)
        users = np.flatnonzero(active)
        seen[users, items[users]] = True
        prev = np.where(active, items, prev)
        rows += [(tastes[u].user_id, products[items[u]].item_id, int(clock[u]), 1) for u in users]
    return rows


def sample_impressions(rng: np.random.Generator, products: list[Product], tastes: list[Taste],
                       appeal: np.ndarray, last_event: dict[str, int], progress: bool = True
                       ) -> list[tuple[str, str, str, str, int, int]]:
    """Ad impressions after each user's history: half random items, half taste-targeted; clicks ~ oracle CTR.

    Rows are (impression_id, user_id, item_id, format, unix_seconds, click), in time order, ids in that order.
    """
    m = IMPRESSION_MODEL
    table = _ItemTable(products)
    formats = list(m["format_probs"])
    format_cdf = np.cumsum([m["format_probs"][f] for f in formats])
    assert set(formats) <= set(FORMATS)
    rows = []
    for taste in tqdm(tastes, desc="impressions", disable=not progress):
        n = int(rng.integers(m["per_user"][0], m["per_user"][1] + 1))
        targeted = sum(np.log(np.maximum(_taste_matrix([taste], k)[0], 1e-9))[table.codes[k]] for k in ATTRIBUTE_KINDS)
        targeted = targeted + taste.popularity_bias * appeal
        times = np.sort(rng.integers(1, m["after_last_event_s"], size=n)) + last_event[taste.user_id]
        picks = np.where(rng.random(n) < m["targeted_share"],
                         _draw_rows(rng, np.tile(targeted, (n, 1))), rng.integers(len(products), size=n))
        fmts = np.searchsorted(format_cdf, rng.random(n) * format_cdf[-1], side="right")
        coins = rng.random(n)
        for t, item, fmt, coin in zip(times, picks, fmts, coins):
            product = products[item]
            p_click = click_probability(taste, {"category": product.category, **product.attributes}, formats[fmt])
            rows.append((taste.user_id, product.item_id, formats[fmt], int(t), int(coin < p_click)))
    rows.sort(key=lambda r: (r[3], r[0], r[1]))
    return [(f"i{k + 1:06d}", *r) for k, r in enumerate(rows)]


def sample_outfits(rng: np.random.Generator, products: list[Product]) -> list[dict]:
    """Compatible sets: one style throughout, at most one bold color and at most one non-solid pattern.

    Each outfit is top + bottom or a dress, then shoes, and sometimes a bag and a hat.
    """
    m = OUTFIT_MODEL
    by_slot: dict[tuple[str, str], list[Product]] = {}
    for p in products:
        by_slot.setdefault((p.category, p.style), []).append(p)
    outfits, seen = [], set()
    attempts = 0
    while len(outfits) < m["n_outfits"] and attempts < 50 * m["n_outfits"]:
        attempts += 1
        style = STYLES[rng.integers(len(STYLES))]
        if rng.random() < m["dress_prob"]:
            slots = ["dress"]
        else:
            slots = [TOPS[rng.integers(len(TOPS))], BOTTOMS[rng.integers(len(BOTTOMS))]]
        slots.append("shoes")
        slots += [c for c, prob in (("bag", m["bag_prob"]), ("hat", m["hat_prob"])) if rng.random() < prob]
        assert set(slots) - {"dress", *TOPS, *BOTTOMS} <= set(ACCESSORIES)
        chosen: list[Product] = []
        for slot in slots:
            bold_used = any(p.color in BOLD_COLORS for p in chosen)
            pattern_used = any(p.pattern != "solid" for p in chosen)
            fits = [p for p in by_slot.get((slot, style), [])
                    if not (bold_used and p.color in BOLD_COLORS) and not (pattern_used and p.pattern != "solid")]
            if not fits:
                break
            chosen.append(fits[rng.integers(len(fits))])
        else:
            key = tuple(sorted(p.item_id for p in chosen))
            if key in seen:
                continue
            seen.add(key)
            outfits.append({"outfit_id": f"o{len(outfits) + 1:04d}", "style": style,
                            "item_ids": [p.item_id for p in chosen], "categories": [p.category for p in chosen]})
    return outfits
