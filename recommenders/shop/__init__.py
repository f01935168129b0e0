"""The demo shop: a generated fashion catalog, shoppers with known tastes, their logs, and an oracle CTR.

`build_shop(seed, out_dir)` writes one; `DemoShop.load()` reads the shipped `assets/demo_shop`
(which is `build_shop(seed=0)`); `oracle_ctr(user, item_or_attributes)` is the true click model.
"""

from .build import build_shop
from .demoshop import DEMO_SHOP_DIR, DemoShop, ImpressionLog, oracle_ctr
from .tastes import Taste

__all__ = ["build_shop", "DemoShop", "ImpressionLog", "oracle_ctr", "DEMO_SHOP_DIR", "Taste"]
