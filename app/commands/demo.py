"""`atelier demo`: the main job on the shipped demo shop (see `app/demo_job.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.commands import options


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo outputs.", callback=options.out_dir)] = Path("outputs/demo"),
    users: Annotated[int, typer.Option("--users", min=1, max=20, help="How many shoppers to show.")] = 3,
    candidates: Annotated[int, options.candidates("Product candidates per shopper.")] = 4,
    steps: Annotated[int, options.steps()] = 20,
    seed: Annotated[int, options.seed("Seed of the first candidate.")] = 0,
    recommender: Annotated[str, typer.Option("--recommender", help="CF recommender for the conditions.")] = "ease",
    model: Annotated[str, typer.Option("--model", help="Base model: 'demo' or a diffusers folder.")] = "demo",
    upscale: Annotated[bool, typer.Option("--upscale/--no-upscale", help="Apply the model's own 2x upscaler when it "
                                          "has one (the demo model: 128 px images).")] = True,
) -> Path:
    """Recommendations, ranked personalized images, banners and an outfit for demo shoppers -> index.html."""
    from app.demo_job import run_demo

    page = run_demo(out, n_users=users, candidates=candidates, steps=steps, seed=seed, recommender=recommender,
                    model=model, upscale=upscale, echo=typer.echo)
    typer.echo(f"demo written: {page.resolve()}")
    return page
