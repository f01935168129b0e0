"""A campaign's audience resolved to users, and each audience member's PreferenceCondition.

Users come from the shop's interaction log. A segment is listed users, users whose estimated favourite
values (`recommenders.taste`) are the given ones (`where: {color: navy}`), or a segment the demo shop defines.
A segment gets one condition: its members' conditions from `recommenders.preference` averaged, so one
set of creatives speaks to the whole group (what a marketer sends to a segment).
"""

from __future__ import annotations

from pathlib import Path


from core.errors import InputError
from recommenders.catalog import Catalog
from recommenders.condition import PreferenceCondition

from .campaign import Campaign, SegmentSpec
from .jobs import AudienceMember


class ShopData:
    """A shop (`recommenders.preference.ShopSource`), its backbone and (for a demo shop) the shoppers' segments.

    `recommender` is a registry name fitted on the shop's train split (every CF and sequential model);
    `recommender_dir` a folder written by `atelier rec train` (relative to `base_dir`), which wins.
    """

    def __init__(self, spec: str, base_dir: Path, recommender: str = "ease", recommender_dir: str | Path | None = None,
                 progress: bool = False, feedback_db: str | None = None):
        from recommenders.base import model_class
        from recommenders.preference import load_backbone, load_shop

        self.source = load_shop(spec, base_dir)
        self.shop = self.source.demo
        self.catalog: Catalog = self.source.catalog
        self.history: dict[str, list[str]] = self.source.history
        self._favourite_cache: dict[str, dict[str, str]] | None = None
        self._backbone = None
        self._spec = spec if spec == "demo" or Path(spec).is_absolute() else str(Path(base_dir) / spec)
        self._feedback = None
        if feedback_db is not None:  # a missing store fails now, before anything renders
            from app.feedback_loop import open_feedback_store

            as_given = "://" in feedback_db or Path(feedback_db).is_absolute()
            db = feedback_db if as_given else Path(base_dir) / feedback_db
            self._feedback = open_feedback_store(db)
        if recommender_dir is not None:
            folder = Path(recommender_dir)
            folder = folder if folder.is_absolute() else Path(base_dir) / folder
            self._load = lambda: load_backbone(self.source, folder=folder)
            self._backbone = self._load()  # a bad folder fails now, before anything renders
        else:
            model_class(recommender)  # an unknown name fails now; fitting waits for the first condition
            self._load = lambda: load_backbone(self.source, recommender, progress=progress)

    @property
    def backbone(self):
        """The backbone (fitted or loaded once per process, at first use)."""
        if self._backbone is None:
            self._backbone = self._load()
        return self._backbone

    @property
    def model_name(self) -> str:
        return self.backbone.label

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
        """The member's condition from the one preference path (a segment: its members' fused conditions
        averaged, `recommenders.preference.group_preference`)."""
        from recommenders.preference import group_preference

        events = [self.source.events(u) for u in member.user_ids]
        cond = group_preference(self.backbone, events, key=member.key, catalog=self.catalog, k=k)
        if self._feedback is not None and member.kind == "user":  # her stored answers update her condition
            from app.feedback_loop import feedback_condition

            cond = feedback_condition(cond, self._feedback, member.user_ids[0], self._spec)
        return cond
