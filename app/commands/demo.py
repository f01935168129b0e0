"""`atelier demo`: the main job on the shipped demo shop; for now, contact sheets of its catalog and shoppers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo outputs.")] = Path("outputs/demo"),
) -> Path:
    """Write outputs/demo/catalog.png and users.png from the shipped demo shop, and print the folder."""
    from recommenders.io import atomic_save_image
    from recommenders.shop import DemoShop
    from recommenders.shop.sheets import catalog_sheet, pick_users, users_sheet

    out = Path(out)
    shop = DemoShop.load()
    atomic_save_image(catalog_sheet(shop), out / "catalog.png")
    atomic_save_image(users_sheet(shop, pick_users(shop, 3)), out / "users.png")
    typer.echo(str(out.resolve()))
    return out
