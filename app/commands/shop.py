"""`atelier shop build|info`: generate the demo shop deterministically, or print a shop's counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.commands import options

app = typer.Typer(help="Build and inspect the demo shop.", no_args_is_help=True)


def shop_counts(path: Path | None = None) -> dict:
    """Counts measured from a shop folder's files (not copied from its shop.json)."""
    from recommenders.shop import DemoShop

    shop = DemoShop.load(path)
    cat = shop.catalog
    return {
        "path": str(shop.path),
        "seed": shop.info.get("seed"),
        "generator_version": shop.info.get("generator_version"),
        "items": len(cat),
        "categories": len(cat.categories()),
        "colors": len(cat.attribute_values("color")),
        "patterns": len(cat.attribute_values("pattern")),
        "styles": len(cat.attribute_values("style")),
        "users": len(shop.users),
        "interactions": len(shop.interactions),
        "outfits": len(shop.outfits),
        "impressions": len(shop.impressions),
        "impression_ctr": round(float(shop.impressions.click.mean()), 4) if len(shop.impressions) else 0.0,
        "size_mb": round(sum(f.stat().st_size for f in shop.path.rglob("*") if f.is_file()) / 2**20, 2),
    }


def _print(result: dict, as_json: bool, json_out: Optional[Path]) -> None:
    from core.io import printable, write_results_json

    if json_out is not None:
        write_results_json(json_out, result)
    if as_json:
        typer.echo(json.dumps(printable(result), indent=2, sort_keys=True))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>18}: {value}")


@app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", help="Folder to create (must be absent or empty).", callback=options.out_dir)],
    seed: Annotated[int, typer.Option("--seed", help="Random seed; 0 gives the shipped assets/demo_shop.", callback=options.check_seed)] = 0,
    users: Annotated[int, typer.Option("--users", min=1, help="Number of shoppers.")] = 1200,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing demo shop folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json-out", help="Also write the counts to this JSON file.", callback=options.out_file)] = None,
) -> None:
    """Generate the demo shop into a temp folder beside OUT, then rename it into place."""
    from recommenders.shop import build_shop

    build_shop(seed, out, overwrite=force, n_users=users, progress=not as_json)
    _print(shop_counts(out), as_json, json_out)


@app.command("info")
def info(
    path: Annotated[Optional[Path], typer.Option("--path", help="A shop folder (default: the shipped demo shop).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json-out", help="Also write the counts to this JSON file.", callback=options.out_file)] = None,
) -> None:
    """Print the shop's counts: items, categories, colors, patterns, styles, users, interactions, outfits, impressions."""
    _print(shop_counts(path), as_json, json_out)
