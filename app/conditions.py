"""Where the app gets a shopper's PreferenceCondition: the one preference path, or a JSON file.

`atelier generate`, campaigns, the evaluation, the demo job, the UI and the benchmarks ask here (or
through `ShopData`, which holds the same `recommenders.preference` shop and backbone): a backbone
(any registered recommender fitted on the shop, or a `rec train` folder) + a shopper's events ->
`recommenders.preference.preference`.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import InputError


def load_shop_data(shop: str, recommender: str = "ease", base_dir: str | Path | None = None,
                   recommender_dir: str | Path | None = None, progress: bool = False):
    """The shop's catalog, histories and backbone (`shop`: "demo" or a folder under `base_dir`;
    `recommender_dir`: a folder written by `atelier rec train`, used instead of fitting `recommender`)."""
    from app.batch.audience import ShopData

    return ShopData(shop, Path(base_dir) if base_dir is not None else Path.cwd(), recommender,
                    recommender_dir=recommender_dir, progress=progress)


def user_condition(data, user: str, history: list[str] | None = None):
    """A user's PreferenceCondition from the shop's backbone (`history`: other events than the logged ones)."""
    from recommenders.preference import ShopperEvents, preference

    events = data.source.events(user) if history is None else ShopperEvents(user, list(history))
    return preference(data.backbone, events, catalog=data.catalog)


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
