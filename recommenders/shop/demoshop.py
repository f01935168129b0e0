"""Loading a built demo shop, its ground truth, and the oracle click model over it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from core.errors import InputError
from core.tabular import iter_csv_rows, iter_jsonl_objects, parse_float, parse_id

from ..catalog import Catalog, Item
from ..interactions import Interactions, load_interactions_csv
from .tastes import FORMATS, Taste, click_probability
from .vocab import ATTRIBUTE_KINDS

# The shipped shop: `build_shop(seed=0)`; `assets/` sits beside the `recommenders/` package.
DEMO_SHOP_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo_shop"


@dataclass
class ImpressionLog:
    """Ad impressions as parallel columns: who saw which item, in which format, and whether they clicked."""

    impression_id: list[str]
    user_id: list[str]
    item_id: list[str]
    format: list[str]
    timestamp: np.ndarray  # int64 Unix seconds
    click: np.ndarray  # int8 0/1

    def __len__(self) -> int:
        return len(self.impression_id)

    @classmethod
    def load(cls, path: str | Path) -> "ImpressionLog":
        path = Path(path)
        cols: dict[str, list] = {k: [] for k in ("impression_id", "user_id", "item_id", "format", "timestamp", "click")}
        for line, row in iter_csv_rows(path, required=set(cols), optional=set()):
            for key in ("impression_id", "user_id", "item_id"):
                cols[key].append(parse_id(row[key], key, path, line))
            if row["format"] not in FORMATS:
                raise InputError(f"format must be one of {', '.join(FORMATS)}, got {row['format']!r}", path, line)
            if row["click"] not in ("0", "1"):
                raise InputError(f"click must be 0 or 1, got {row['click']!r}", path, line)
            cols["format"].append(row["format"])
            cols["timestamp"].append(parse_float(row["timestamp"], "timestamp", path, line))
            cols["click"].append(int(row["click"]))
        return cls(cols["impression_id"], cols["user_id"], cols["item_id"], cols["format"],
                   np.asarray(cols["timestamp"], np.int64), np.asarray(cols["click"], np.int8))


class DemoShop:
    """A built demo shop: catalog, users with known tastes, interactions, outfits and impressions."""

    def __init__(self, path: Path, catalog: Catalog, interactions: Interactions, users: dict[str, Taste],
                 outfits: list[dict], impressions: ImpressionLog, info: dict):
        self.path = path
        self.catalog = catalog
        self.interactions = interactions
        self.users = users
        self.outfits = outfits
        self.impressions = impressions
        self.info = info

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DemoShop":
        """Load a shop folder (default: the shipped `assets/demo_shop`)."""
        path = Path(path) if path is not None else DEMO_SHOP_DIR
        if not (path / "shop.json").is_file():
            hint = " (run `atelier shop build --seed 0 --out assets/demo_shop`)" if path == DEMO_SHOP_DIR else ""
            raise InputError(f"not a demo shop folder: shop.json is missing{hint}", path)
        info = json.loads((path / "shop.json").read_text(encoding="utf-8"))
        catalog = Catalog.load(path / "catalog.jsonl")
        interactions = load_interactions_csv(path / "interactions.csv", catalog=catalog)
        users = {}
        for line, obj in iter_jsonl_objects(path / "users.jsonl"):
            try:
                taste = Taste.from_dict(obj)
            except (KeyError, TypeError, ValueError) as e:
                raise InputError(f"not a demo-shop user record ({type(e).__name__}: {e})", path / "users.jsonl", line) from None
            users[taste.user_id] = taste
        outfits = [obj for _, obj in iter_jsonl_objects(path / "outfits.jsonl")]
        impressions = ImpressionLog.load(path / "impressions.csv")
        return cls(path, catalog, interactions, users, outfits, impressions, info)

    def taste(self, user_id: str) -> Taste:
        """The ground-truth taste of one user."""
        try:
            return self.users[str(user_id)]
        except KeyError:
            raise InputError(f"unknown demo-shop user {user_id!r} (ids look like {next(iter(self.users))!r})") from None

    def segment_of(self, user_id: str) -> str:
        """The shopper segment a user's taste was drawn around."""
        return self.taste(user_id).segment

    def true_top_attributes(self, user_id: str, n: int = 3) -> dict[str, list[str]]:
        """The user's `n` favourite values per attribute kind (color, pattern, category, style), best first."""
        taste = self.taste(user_id)
        return {kind: taste.top(kind, n) for kind in ATTRIBUTE_KINDS}

    def history(self, user_id: str) -> list[str]:
        """The user's interacted item ids in time order."""
        inter = self.interactions
        try:
            u = inter.user_ids.index(str(user_id))
        except ValueError:
            raise InputError(f"user {user_id!r} has no interactions") from None
        return [inter.item_ids[i] for i in inter.user_sequences()[u]]

    def attributes_of(self, item: str | Item | Mapping[str, str]) -> dict[str, str]:
        """Attribute dict (with the category) of an item id, an Item, or a dict passed through."""
        if isinstance(item, Item):
            return {"category": item.category, **item.attributes}
        if isinstance(item, str):
            it = self.catalog[item]
            return {"category": it.category, **it.attributes}
        if isinstance(item, Mapping):
            return {str(k): str(v) for k, v in item.items()}
        raise InputError(f"expected an item id, an Item or an attribute dict, got {type(item).__name__}")

    def oracle_ctr(self, user: str | Taste, item_or_attributes: str | Item | Mapping[str, str],
                   format: str = "product") -> float:
        """True click probability of `user` for an ad showing this item (or any image with these attributes)."""
        taste = user if isinstance(user, Taste) else self.taste(user)
        return click_probability(taste, self.attributes_of(item_or_attributes), format)


@lru_cache(maxsize=4)
def _cached_shop(path: str) -> DemoShop:
    return DemoShop.load(path)


def oracle_ctr(user: str | Taste, item_or_attributes: str | Item | Mapping[str, str], format: str = "product",
               shop: DemoShop | None = None) -> float:
    """True CTR of `user` (id or Taste) for an item id, Item, or attribute dict such as {"color": "navy"}.

    Ids are looked up in `shop` (default: the shipped demo shop, loaded once). Attribute kinds that
    are absent count as indifferent, so a generated image's predicted attributes can be scored as is.
    """
    if isinstance(user, Taste) and isinstance(item_or_attributes, Mapping):
        return click_probability(user, {str(k): str(v) for k, v in item_or_attributes.items()}, format)
    if isinstance(user, Taste) and isinstance(item_or_attributes, Item):
        return click_probability(user, {"category": item_or_attributes.category, **item_or_attributes.attributes}, format)
    shop = shop if shop is not None else _cached_shop(str(DEMO_SHOP_DIR))
    return shop.oracle_ctr(user, item_or_attributes, format)
