"""Assemble trained parts into the shipped folders (standard diffusers / open_clip formats).

`OUT/demo-sd/` is a `StableDiffusionPipeline` folder (VAE, UNet, CLIP text encoder, the real CLIP
tokenizer, a DDIM scheduler, no safety checker); `OUT/demo-controlnet/` a `ControlNetModel`
folder. UNet, VAE and ControlNet weights are stored in fp16 to keep the assets small; diffusers
loads them into fp32 modules unless a dtype is asked for. The text encoder stays fp32, because
transformers would keep an fp16 text encoder in fp16.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.io import atomic_write_json

from .common import tokenizer
from .configs import SCHEDULER_CONFIG

MODELS_DIR = Path(__file__).resolve().parents[2] / "assets" / "models"


def assemble_sd(out_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Write `dest` (default OUT/demo-sd) from OUT/vae, OUT/unet, OUT/text_encoder."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    out_dir = Path(out_dir)
    dest = Path(dest) if dest else out_dir / "demo-sd"
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(out_dir / "vae").half(),
        text_encoder=CLIPTextModel.from_pretrained(out_dir / "text_encoder"),
        tokenizer=tokenizer(),
        unet=UNet2DConditionModel.from_pretrained(out_dir / "unet").half(),
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    if dest.exists():
        shutil.rmtree(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    return dest


def assemble_controlnet(out_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Write `dest` (default OUT/demo-controlnet) from OUT/controlnet, in fp16."""
    from diffusers import ControlNetModel

    out_dir = Path(out_dir)
    dest = Path(dest) if dest else out_dir / "demo-controlnet"
    if dest.exists():
        shutil.rmtree(dest)
    ControlNetModel.from_pretrained(out_dir / "controlnet").half().save_pretrained(dest, safe_serialization=True)
    return dest


def assemble_upscaler(out_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Write `dest` (default OUT/demo-upscaler) from OUT/upscaler (fp32: it is small), with its output projected
    onto the input's box average (`consistency=True`): trained without, shipped with (see `pipelines.upscale`)."""
    from pipelines.upscale import Upscaler

    out_dir = Path(out_dir)
    dest = Path(dest) if dest else out_dir / "demo-upscaler"
    if dest.exists():
        shutil.rmtree(dest)
    model = Upscaler.from_pretrained(out_dir / "upscaler")
    model.register_to_config(consistency=True)
    model.save_pretrained(dest, safe_serialization=True)
    config = json.loads((dest / "config.json").read_text())
    config.pop("_name_or_path", None)  # a path on the training machine
    atomic_write_json(dest / "config.json", config)
    return dest


def install(out_dir: str | Path, models_dir: str | Path = MODELS_DIR, report: dict | None = None) -> list[Path]:
    """Copy the finished folders into `assets/models/` (what `load_sd_pipeline("demo")` reads)."""
    out_dir, models_dir = Path(out_dir), Path(models_dir)
    copied = []
    for name in ("demo-sd", "demo-controlnet", "demo-clip", "attribute-classifier", "demo-upscaler"):
        src = out_dir / name
        if not src.is_dir():
            continue
        dest = models_dir / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
        copied.append(dest)
    if report is not None:
        atomic_write_json(models_dir / "training_report.json", report)
    return copied
