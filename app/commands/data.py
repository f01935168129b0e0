"""`atelier data info PATH`: counts for any supported data set."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


def _is_catalog(p: Path) -> bool:
    """A .jsonl file, or a CSV whose header names a title column, is a catalog."""
    if not p.is_file():
        return False
    if p.suffix.lower() == ".jsonl":
        return True
    if p.suffix.lower() == ".csv":
        with open(p, "rb") as f:
            head = f.readline(65536).decode("utf-8", "replace")
        return "title" in [c.strip() for c in head.split(",")]
    return False


@app.command("info")
def info(
    path: str = typer.Argument(..., help="A benchmark folder, an interactions CSV, a catalog (.csv/.jsonl) or 'demo'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print users, items and split sizes of a data set (or item counts of a catalog)."""
    from recommenders.catalog import Catalog
    from recommenders.datasets import dataset_info

    p = Path(path)
    if _is_catalog(p):
        cat = Catalog.load(p)
        result = {"format": "catalog", "items": len(cat), "categories": len(cat.categories()),
                  "attributes": {k: len(cat.attribute_values(k)) for k in cat.attribute_names()}}
    else:
        result = dataset_info(path)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        for k, v in result.items():
            typer.echo(f"{k:>14}: {v}")
