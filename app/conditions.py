"""Where the app gets a shopper's PreferenceCondition: the shop's data and recommender, or a JSON file.

`atelier generate`, the evaluation, the demo job and the benchmarks ask here; batch campaigns use
the same `ShopData` for their audience. This is the one door to swap when conditions come from
`recommenders.preference` (a backbone + a shopper's events) instead of `ShopData.condition`.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import InputError


def load_shop_data(shop: str, recommender: str, base_dir: str | Path | None = None):
    """The shop's catalog, histories and fitted recommender (`shop`: "demo" or a folder under `base_dir`)."""
    from app.batch.audience import ShopData

    return ShopData(shop, Path(base_dir) if base_dir is not None else Path.cwd(), recommender)


def user_condition(data, user: str):
    """A user's PreferenceCondition from the shop's recommender."""
    from app.batch.jobs import AudienceMember

    if user not in data.history:
        some = ", ".join(list(data.history)[:3])
        raise InputError(f"unknown user {user!r} (no interactions in the shop; ids look like {some})")
    return data.condition(AudienceMember(user, "user", (user,)))


def read_condition(path: Path):
    """A PreferenceCondition from a JSON file (as written by `PreferenceCondition.to_dict`), read strictly."""
    from core.jsonio import read_json
    from recommenders.condition import PreferenceCondition

    if not path.is_file():
        raise InputError("condition file not found", path)
    data = read_json(path, what="condition")
    try:
        return PreferenceCondition.from_dict(data)
    except InputError as e:
        raise InputError(e.problem, path) from None

