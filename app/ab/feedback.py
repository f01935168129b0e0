"""A shopper's condition updated by her stored feedback events (recomputed, so a restart keeps it).

The base is her history's taste posterior on the demo shop (or any catalog + log the app loaded),
or the population prior when she has no history. Each stored event becomes a choice
(`recommenders.feedback.event_choice`) over what its creatives show: the creative's
`record["attributes"]` (the scorer's probe reading, {kind: value} or {kind: {value: p}}, written
when the creative is added), else the catalog item of the same id. Replaying the same events from
the store gives the same posterior, bit for bit, in any process.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from core.errors import InputError


def creative_attributes(store, experiment_id: str, creative_id: str, catalog=None) -> dict[str, Any]:
    """What a creative shows: its record's `attributes`, else the catalog item with the same id."""
    rec = store.creative_record(experiment_id, creative_id)
    attrs = rec["record"].get("attributes")
    if isinstance(attrs, dict) and attrs:
        return attrs
    if catalog is not None and creative_id in set(catalog.item_ids):
        item = catalog[creative_id]
        return {"category": item.category, **item.attributes}
    raise InputError(f"creative {creative_id!r} of experiment {experiment_id!r} has no attributes: add it with a "
                     "record holding 'attributes' (the scorer's probe reading) or use a catalog item id")


def event_choices(store, events: list[dict], catalog=None) -> list:
    """The choices the stored events mean (impressions mean none), in stored order."""
    from recommenders.feedback import event_choice

    out = []
    for ev in events:
        attrs = [creative_attributes(store, ev["experiment_id"], c, catalog) for c in ev["creative_ids"]]
        ch = event_choice(ev["kind"], attrs)
        if ch is not None:
            out.append(ch)
    return out


@lru_cache(maxsize=2)
def _shop(shop: str):
    from recommenders.shop import DemoShop

    return DemoShop.load(None if shop == "demo" else shop)


@lru_cache(maxsize=2)
def population(shop: str):
    """The cold-start prior of a shop: the population of its training (non-held-out) shoppers' histories."""
    from recommenders.condition import TASTE_FIT
    from recommenders.feedback import population_prior
    from recommenders.shop.heldout import heldout_block

    demo = _shop(shop)
    held = set(heldout_block(demo.users))
    train = [u for u in sorted(demo.users) if u not in held]
    return population_prior([demo.history(u) for u in train], demo.catalog, **TASTE_FIT)


def shopper_posterior(store, user_id: str, *, shop: str = "demo", cold: bool = False):
    """(base posterior, updated posterior, events) of one shopper: history (or population) + her events."""
    from recommenders.condition import TASTE_FIT
    from recommenders.feedback import history_posterior

    demo = _shop(shop)
    history = [] if cold else _history(demo, user_id)
    base = history_posterior(history, demo.catalog, **TASTE_FIT) if history else population(shop)
    events = store.feedback(user_id=user_id)
    # her A/B votes are choices too: the winner over the loser (votes on creatives without attributes are skipped)
    votes = [{"experiment_id": v.experiment_id, "kind": "choice", "creative_ids": [v.winner_id, v.loser_id]}
             for v in store.votes_of(user_id)]
    votes = [v for v in votes if _readable(store, v, demo.catalog)]
    return base, base.update(event_choices(store, events + votes, demo.catalog)), events + votes


def _readable(store, event: dict, catalog) -> bool:
    try:
        for c in event["creative_ids"]:
            creative_attributes(store, event["experiment_id"], c, catalog)
    except InputError:
        return False
    return True


def _history(demo, user_id: str) -> list[str]:
    try:
        return demo.history(user_id)
    except InputError:
        return []  # a shopper without a history starts cold


def condition_summary(base, post, n: int = 3) -> dict[str, Any]:
    """Top values per kind before and after the events, with the weights (what `feedback show` prints)."""
    before, after = base.weights(), post.weights()
    out = {}
    for kind in after:
        top = sorted(after[kind], key=lambda v: (-after[kind][v], v))[:n]
        out[kind] = {"before": base.top(kind, n), "after": top,
                     "weights_after": {v: round(after[kind][v], 4) for v in top},
                     "weights_before": {v: round(before[kind][v], 4) for v in top}}
    return out
