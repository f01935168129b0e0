"""`atelier finetune ...`: training commands (demo models here; LoRA, DPO, reward, adapter beside them).

Heavy libraries are imported inside each command so that `atelier --help` stays instant.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Fine-tune: LoRA, DPO, reward model, preference adapter, demo model.", no_args_is_help=True)


@app.command("demo-model")
def demo_model(
    what: str = typer.Option("all", help="vae | decoder | classifier | clip | unet | controlnet | all (in that order)."),
    out: Path = typer.Option(Path("runs/demo"), help="Run folder: checkpoints, caches and the trained folders."),
    steps: Optional[int] = typer.Option(None, help="Training steps of each chosen stage (default: the shipped run's)."),
    seed: int = typer.Option(0, help="Seed for data, initialization and batches."),
    resume: Optional[str] = typer.Option(None, help="'latest' or a checkpoint folder to resume from."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: CUDA if present)."),
    install: bool = typer.Option(False, help="Copy the finished folders into assets/models/ (the shipped demo)."),
    threads: Optional[int] = typer.Option(None, help="Torch CPU threads (default ATELIER_THREADS or 1)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the training report here."),
) -> None:
    """Train the demo Stable Diffusion, ControlNet, open_clip scorer and attribute classifier from scratch."""
    from finetune.demo_model import train_demo_models
    from finetune.demo_model.export import install as install_models
    from pipelines.device import pick_device, set_threads
    from recommenders.io import atomic_write_json

    set_threads(threads)
    pick_device(device)  # validates --device before minutes of data preparation
    report = train_demo_models(what, out, steps=steps, seed=seed, resume=resume, device=device)
    if install:
        report["installed"] = [str(p) for p in install_models(out, report=report)]
    if json_out:
        atomic_write_json(json_out, report)
    typer.echo(json.dumps(report, indent=2, sort_keys=True, default=str))


def _register_method_commands() -> None:
    """Add lora / reward / reward-loop / dpo / adapter (kept in their own module) to this group."""
    try:
        from app.commands.finetune_commands import register
    except ModuleNotFoundError as e:
        if e.name != "app.commands.finetune_commands":
            raise
        return
    register(app)


_register_method_commands()
