"""A campaign's audience resolved to users, and each audience member's PreferenceCondition.

Users come from the shop's interaction log. A segment is listed users, users whose estimated favourite
values (`recommenders.taste`) are the given ones (`where: {color: navy}`), or a segment the demo shop defines.
A segment gets one condition: the recommender's scores averaged over its members, so one set of
creatives speaks to the whole group (what a marketer sends to a segment).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import InputError
from recommenders.catalog import Catalog
from recommenders.condition import PreferenceCondition, condition_from_scores

from .campaign import Campaign, SegmentSpec
from .jobs import AudienceMember


class ShopData:
    """Catalog, interactions, a fitted recommender and (for a demo shop) the shoppers' segments."""

    def __init__(self, spec: str, base_dir: Path, recommender: str):
        from recommenders.base import model_class
        from recommenders.datasets import load_cf

        self.shop = None
        self._favourite_cache: dict[str, dict[str, str]] | None = None
        if spec == "demo":
            from recommenders.shop import DemoShop

            self.shop = DemoShop.load()
            self.catalog: Catalog = self.shop.catalog
            interactions = self.shop.interactions
            data_spec: str | Path = "demo"
        else:
            folder = Path(spec) if Path(spec).is_absolute() else base_dir / spec
            if not folder.is_dir():
                raise InputError("shop folder not found (give 'demo' or a folder with catalog + interactions.csv)", folder)
            if (folder / "shop.json").is_file():
                from recommenders.shop import DemoShop

                self.shop = DemoShop.load(folder)
                self.catalog, interactions = self.shop.catalog, self.shop.interactions
            else:
                from recommenders.interactions import load_interactions_csv

                cat_file = next((folder / n for n in ("catalog.jsonl", "catalog.csv") if (folder / n).is_file()), None)
                if cat_file is None:
                    raise InputError("no catalog.jsonl or catalog.csv in the shop folder", folder)
                self.catalog = Catalog.load(cat_file)
                interactions = load_interactions_csv(folder / "interactions.csv", catalog=self.catalog)
            data_spec = folder
        self.history: dict[str, list[str]] = {}
        seqs = interactions.user_sequences()
        for u, uid in enumerate(interactions.user_ids):
            self.history[uid] = [interactions.item_ids[i] for i in seqs[u]]
        self.data = load_cf(data_spec)
        self.model_name = recommender
        klass = model_class(recommender)
        from recommenders.base import CFRecommender

        if not issubclass(klass, CFRecommender):
            raise InputError(f"campaigns need a collaborative-filtering recommender (e.g. ease, diffrec), "
                             f"not the sequential {recommender!r}")
        self.model = _fitted(klass, recommender, self.data, demo=spec == "demo")

    # --- audience ----------------------------------------------------------------------------
    def members(self, campaign: Campaign) -> list[AudienceMember]:
        """Users first (listed, then top-N by activity, without repeats), then segments, in YAML order."""
        out: list[AudienceMember] = []
        seen: set[str] = set()
        for k, uid in enumerate(campaign.audience.users):
            if uid not in self.history:
                raise campaign.error(f"user {uid!r} has no interactions in the shop", "audience", "users", k)
            if uid not in seen:
                seen.add(uid)
                out.append(AudienceMember(uid, "user", (uid,)))
        if campaign.audience.top_users:
            for uid in self.most_active(campaign.audience.top_users):
                if uid not in seen:
                    seen.add(uid)
                    out.append(AudienceMember(uid, "user", (uid,)))
        for k, seg in enumerate(campaign.audience.segments):
            try:
                users = self.segment_users(seg)
            except InputError as e:
                raise campaign.error(e.problem, "audience", "segments", k) from None
            out.append(AudienceMember(f"segment-{seg.name}", "segment", tuple(users)))
        return out

    def most_active(self, n: int) -> list[str]:
        """The n users with the most interactions (ties by id, so the choice is stable)."""
        return sorted(self.history, key=lambda u: (-len(self.history[u]), u))[:n]

    def segment_users(self, seg: SegmentSpec) -> list[str]:
        """Members of one segment, most active first, at most `max_users`."""
        if seg.users is not None:
            unknown = [u for u in seg.users if u not in self.history]
            if unknown:
                raise InputError(f"segment {seg.name!r}: users without interactions: {', '.join(unknown[:5])}")
            users = list(dict.fromkeys(seg.users))
        elif seg.where is not None:
            users = [u for u in self.history if self._matches(u, seg.where)]
        else:
            if self.shop is None:
                raise InputError(f"segment {seg.name!r} needs 'users' or 'where' (this shop defines no segments)")
            users = [u for u in self.history if u in self.shop.users and self.shop.segment_of(u) == seg.name]
            if not users:
                known = sorted({t.segment for t in self.shop.users.values()})
                raise InputError(f"unknown shop segment {seg.name!r} (known: {', '.join(known)})")
        if not users:
            raise InputError(f"segment {seg.name!r} matches no users")
        # The most active members represent the segment when it is capped.
        return sorted(users, key=lambda u: (-len(self.history[u]), u))[: seg.max_users]

    def _matches(self, uid: str, where: dict[str, str]) -> bool:
        """Whether the user's estimated favourite value of each named attribute is the one asked for.

        The estimate is the choice model of `recommenders.taste` (the one conditions use), fitted to all
        users' histories at once on first use: counting a history's values confuses taste with supply.
        """
        favourites = self._favourites()
        if uid not in favourites:
            return False
        return all(favourites[uid].get(kind) == value for kind, value in where.items())

    def _favourites(self) -> dict[str, dict[str, str]]:
        if self._favourite_cache is None:
            from recommenders.condition import TASTE_FIT
            from recommenders.taste import fit_attribute_taste

            users = [u for u, h in self.history.items() if h]
            histories = [[i for i in self.history[u] if i in self.catalog] for u in users]
            estimates = fit_attribute_taste(histories, self.catalog, **TASTE_FIT)
            self._favourite_cache = {u: {kind: e.top(kind) for kind in e.weights} for u, e in zip(users, estimates)}
        return self._favourite_cache

    # --- conditions --------------------------------------------------------------------------
    def condition(self, member: AudienceMember, k: int = 20) -> PreferenceCondition:
        """The member's condition (for a segment: from the mean of its members' scores)."""
        import scipy.sparse as sp

        index = {iid: j for j, iid in enumerate(self.data.item_ids)}
        rows = []
        for uid in member.user_ids:
            cols = sorted({index[i] for i in self.history[uid] if i in index})
            rows.append(sp.csr_matrix((np.ones(len(cols), np.float32), (np.zeros(len(cols), np.int64), cols)),
                                      shape=(1, len(self.data.item_ids))))
        hist = sp.vstack(rows).tocsr()
        scores = np.asarray(self.model.score(np.zeros(len(rows), np.int64), history=hist), dtype=np.float64)
        history = self.history[member.user_ids[0]] if member.kind == "user" else ()
        return condition_from_scores(member.key, scores.mean(axis=0), self.data.item_ids, source=self.model_name,
                                     item_emb=self.data.item_emb, catalog=self.catalog, history=history, k=k)


def _fitted(klass: type, name: str, data, *, demo: bool):
    """The shipped fitted model for the demo shop when there is one, else fitted now (seed 0)."""
    if demo:
        import assets

        shipped = Path(assets.__file__).parent / "models" / "recommenders" / name
        if (shipped / "config.json").is_file():
            return klass.load(shipped)
    model = klass()
    model.fit(data, seed=0, progress=False)
    return model
