"""`atelier demo-model eval`: prompt fidelity of the shipped demo model on held-out captions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from app.commands import options

app = typer.Typer(help="Evaluate the shipped demo text-to-image model.", no_args_is_help=True)


@app.command("eval")
def eval_cmd(
    model: str = typer.Option("demo", help="'demo', a local diffusers folder, or a hub id (online only)."),
    n: int = typer.Option(200, help="Images to generate (cycling over the held-out captions)."),
    steps: int = typer.Option(20, help="DDIM steps."),
    guidance: float = typer.Option(4.0, help="Classifier-free guidance scale."),
    seed: int = typer.Option(0, help="Image i uses seed + i.", callback=options.check_seed),
    classifier: Optional[Path] = typer.Option(None, help="Attribute-classifier folder (default: the shipped one)."),
    scorer: str = typer.Option("demo", help="open_clip scorer: 'demo', a folder, or 'none'."),
    controlnet: str = typer.Option("demo-controlnet", help="ControlNet whose edge fidelity to measure, or 'none'."),
    sheet: Optional[Path] = typer.Option(None, help="Write a contact sheet PNG of the first 60 images here."),
    upscale: bool = typer.Option(True, "--upscale/--no-upscale",
                                 help="Apply the model's own 2x upscaler when it has one (the demo model does)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: CUDA if present).", callback=options.device),
    threads: Optional[int] = typer.Option(None, help="Torch CPU threads (default ATELIER_THREADS or 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the metrics JSON here.", callback=options.out_file),
) -> None:
    """Generate held-out captions and read color / category / pattern back with the attribute classifier."""
    from core.errors import InputError
    from core.io import printable, write_results_json
    from finetune.demo_model.evaluate import (
        contact_sheet,
        controlnet_fidelity,
        fidelity,
    )
    from pipelines.attribute_classifier import AttributeClassifier
    from pipelines.device import describe, pick_device, set_threads
    from pipelines.loading import find_upscaler, load_controlnet, load_sd_pipeline, load_upscaler, resolve
    from pipelines.scorer import Scorer

    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    if steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")
    set_threads(threads)
    dev = pick_device(device)
    pipe = load_sd_pipeline(model, device=str(dev))
    source, local = resolve(model)
    sr_folder = find_upscaler(source) if (upscale and local) else None
    upscaler = None if sr_folder is None else load_upscaler(sr_folder, device=str(dev))
    judge = AttributeClassifier.load(classifier, device=str(dev))
    clip = None if scorer == "none" else Scorer.load(scorer, device=str(dev))
    metrics, images, prompts = fidelity(pipe, judge, n=n, seed=seed, steps=steps, guidance=guidance, scorer=clip,
                                        progress=not as_json, upscaler=upscaler)
    if controlnet != "none":
        cn = load_controlnet(controlnet, device=str(dev))
        metrics["controlnet"], _ = controlnet_fidelity(pipe, cn, judge, seed=seed, steps=steps, guidance=guidance)
        metrics["controlnet"]["model"] = controlnet
    metrics.update(model=model, upscaler=None if sr_folder is None else sr_folder.name, device=describe(dev),
                   targets={"color_accuracy": 0.8, "category_accuracy": 0.8, "pattern_accuracy": 0.6})
    if sheet:
        metrics["sheet"] = str(contact_sheet(images, prompts, sheet, judge.predict(images)))
    if json_out:
        write_results_json(json_out, metrics)
    if as_json:
        typer.echo(json.dumps(printable(metrics), indent=2, sort_keys=True))
    else:
        for k in ("color_accuracy", "category_accuracy", "pattern_accuracy", "clip_score"):
            if k in metrics:
                typer.echo(f"{k:>20}: {metrics[k]}")
