"""Training of the shipped demo models on the demo shop, from scratch.

    train_demo_models("all", out="runs/demo", seed=0)   # vae, ..., unet, controlnet, upscaler

Stages and their folders under OUT: `vae/` (then its decoder sharpened), `attribute-classifier/`, `demo-clip/`, `unet/` +
`text_encoder/` (assembled into `demo-sd/`), `controlnet/` (assembled into `demo-controlnet/`), `upscaler/`
(the 2x super-resolution stage, trained on VAE-decoded 64 px images; copied to `demo-upscaler/`).
Each stage checkpoints under `OUT/<stage>-train/checkpoints/` and resumes with `resume="latest"`.
"""
from __future__ import annotations

import time
from pathlib import Path

STAGES = ("vae", "decoder", "classifier", "clip", "unet", "controlnet", "upscaler")


def train_demo_models(what: str = "all", out: str | Path = "runs/demo", *, steps: int | None = None, seed: int = 0,
                      resume: str | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Train one stage or all of them in order; `steps` overrides every stage's default step count."""
    from core.errors import InputError

    from . import export

    if what != "all" and what not in STAGES:
        raise InputError(f"unknown --what {what!r}; choose one of {', '.join(STAGES)} or all")
    out = Path(out)
    report: dict = {"seed": seed, "stages": {}}
    for stage in STAGES if what == "all" else (what,):
        start = time.time()
        if stage == "vae":
            from .train_vae import train_vae as fn
        elif stage == "decoder":
            from .train_vae import train_decoder as fn
        elif stage == "classifier":
            from .train_classifier import train_classifier as fn
        elif stage == "clip":
            from .train_clip import train_clip as fn
        elif stage == "unet":
            from .train_unet import train_unet as fn
        elif stage == "controlnet":
            from .train_controlnet import train_controlnet as fn
        else:
            from .train_upscaler import train_upscaler as fn
        try:
            result = fn(out, steps=steps, seed=seed, resume=resume, device=device, progress=progress)
        except FileNotFoundError as e:
            raise InputError(str(e)) from None
        if stage == "unet":
            result["folder"] = str(export.assemble_sd(out))
        elif stage == "controlnet":
            result["folder"] = str(export.assemble_controlnet(out))
        elif stage == "upscaler":
            result["folder"] = str(export.assemble_upscaler(out))
        result["wall_seconds"] = round(time.time() - start, 1)
        report["stages"][stage] = result
    report["total_seconds"] = round(sum(s["wall_seconds"] for s in report["stages"].values()), 1)
    return report
