"""`atelier feedback ...`: record shoppers' answers to creatives and print their updated condition.

Events live in the A/B store's `feedback` table (`app.ab.store.ABStore.record_feedback`); the
condition is recomputed from them (`app.ab.feedback.shopper_posterior`), so it survives restarts.
"""
from __future__ import annotations

import json
from typing import List, Optional

import typer

app = typer.Typer(help="Feedback on creatives: record clicks, choices, likes, skips; show a shopper's condition.",
                  no_args_is_help=True)

DbOpt = typer.Option("outputs/ab.sqlite", "--db", envvar="ATELIER_AB_DB",
                     help="The A/B store: a SQLite file, or a PostgreSQL DSN (postgresql://user@host/db).")
JsonOpt = typer.Option(False, "--json", help="Print JSON to stdout.")


def _store(db: str):
    from app.ab.store import ABStore

    return ABStore(db)


@app.command("add-creative")
def add_creative(
    experiment: str = typer.Argument(..., help="Experiment id (created with `atelier ab create`)."),
    creative_id: str = typer.Argument(..., help="Creative id."),
    attr: List[str] = typer.Option([], "--attr", help="What it shows, KIND=VALUE (repeat), e.g. --attr color=red."),
    image: Optional[str] = typer.Option(None, help="Image file of the creative (stored as given)."),
    db: str = DbOpt,
) -> None:
    """Add a creative with the attributes it shows (the scorer's reading), so feedback on it can update tastes."""
    from core.errors import InputError

    attrs = {}
    for a in attr:
        kind, sep, value = a.partition("=")
        if not sep or not kind.strip() or not value.strip():
            raise InputError(f"--attr must be KIND=VALUE, got {a!r}")
        attrs[kind.strip()] = value.strip()
    _store(db).add_creative(experiment, creative_id, image_path=image, record={"attributes": attrs} if attrs else {})
    typer.echo(f"added {creative_id} to {experiment}" + (f" showing {attrs}" if attrs else ""))


@app.command("record")
def record(
    experiment: str = typer.Argument(..., help="Experiment id."),
    kind: str = typer.Argument(..., help="impression, click, like, skip (one creative) or choice (chosen first)."),
    creatives: List[str] = typer.Argument(..., help="Creative id(s): for a choice, the chosen one, then the others shown."),
    user: str = typer.Option(..., "--user", help="The shopper."),
    event_id: Optional[str] = typer.Option(None, "--event-id", help="Idempotency key: a retry is stored once."),
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record one feedback event."""
    rec = _store(db).record_feedback(experiment, user, kind, list(creatives), event_id=event_id)
    out = {"event_id": str(rec), "duplicate": rec.duplicate}
    typer.echo(json.dumps(out) if as_json else f"feedback {rec}" + (" (duplicate: already recorded)" if rec.duplicate else ""))


@app.command("show")
def show(
    user: str = typer.Option(..., "--user", help="The shopper."),
    shop: str = typer.Option("demo", "--shop", help="'demo' or a demo-shop folder (her history and the population prior)."),
    cold: bool = typer.Option(False, "--cold", help="Ignore her history: start from the population prior."),
    top: int = typer.Option(3, "--top", min=1, max=20, help="Values shown per attribute kind."),
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print the shopper's condition (top attributes) before and after her stored feedback."""
    from app.ab.feedback import condition_summary, shopper_posterior

    base, post, events = shopper_posterior(_store(db), user, shop=shop, cold=cold)
    summary = condition_summary(base, post, top)
    out = {"user": user, "start": base.source, "events": len(events), "choices": len(post.choices),
           "attributes": summary}
    if as_json:
        typer.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    typer.echo(f"{user}: start {base.source}, {len(events)} events ({len(post.choices)} choices)")
    for kind, row in summary.items():
        after = ", ".join(f"{v} {row['weights_after'][v]:.3f}" for v in row["after"])
        changed = "" if row["after"] == row["before"] else f"   (before: {', '.join(row['before'])})"
        typer.echo(f"  {kind:<9} {after}{changed}")
