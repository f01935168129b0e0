"""The generation pipelines the UI runs, loaded once per process and used by one job at a time.

Diffusers pipelines keep mutable state (the scheduler's timesteps), so two requests must never
run one pipeline at the same moment: every run holds `GENERATION_LOCK`, and the UI gives all
generation events one Gradio concurrency group, so waiting jobs queue in order per session.
A session's Cancel stops its own running job at the next denoising step (`app.ui.cancel`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from core.errors import InputError

from .cancel import check_cancelled
from .workspace import Unavailable, Workspace

GENERATION_LOCK = threading.Lock()
CONCURRENCY_ID = "generation"  # Gradio concurrency group shared by every event that runs a pipeline


def _import(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Unavailable(f"{what} is not available in this build ({e})") from None


def sd_pipeline(ws: Workspace):
    """The base Stable Diffusion pipeline named by the server's `--model`."""
    loading = _import("pipelines.loading", "model loading")

    def make():
        try:
            return loading.load_sd_pipeline(ws.config.model, device=ws.config.device)
        except InputError as e:
            hint = ""
            if ws.config.model == "demo":
                hint = " (the demo model is not built yet: start the server with --model PATH)"
            raise Unavailable(f"cannot load the image model {ws.config.model!r}: {e}{hint}") from None
    return ws.cached("sd", make)


def controlnet(ws: Workspace):
    """The ControlNet for backgrounds, or None (then backgrounds are inpainted)."""
    if not ws.config.controlnet:
        return None
    loading = _import("pipelines.loading", "model loading")

    def make():
        try:
            return loading.load_controlnet(ws.config.controlnet, device=ws.config.device)
        except (InputError, TypeError):
            return None  # no ControlNet: the background pipeline falls back to inpainting
    return ws.cached("controlnet", make)


def scorer(ws: Workspace):
    """The open_clip scorer used to rank candidates, or None when none is available."""
    def make():
        try:
            from pipelines.scorer import Scorer

            return Scorer.load("demo", device=ws.config.device)
        except (ImportError, InputError, OSError):
            return None  # candidates are then shown unranked
    return ws.cached("scorer", make)


def _catalog(ws: Workspace):
    try:
        return ws.catalog()
    except Unavailable:
        return None


def pipeline(ws: Workspace, kind: str):
    """A product / background / banner / outfit pipeline over the shared base model."""
    def make():
        sd = sd_pipeline(ws)
        common: dict[str, Any] = dict(scorer=scorer(ws), catalog=_catalog(ws), base_model=ws.config.model)
        if kind == "product":
            return _import("pipelines.product", "the product pipeline").ProductPipeline(sd, **common)
        if kind == "background":
            return _import("pipelines.background", "the background pipeline").BackgroundPipeline(
                sd, controlnet=controlnet(ws), **common)
        if kind == "banner":
            return _import("pipelines.banner", "the banner pipeline").BannerPipeline(sd, **common)
        if kind == "outfit":
            return _import("pipelines.outfit", "the outfit pipeline").OutfitPipeline(sd, **common)
        raise InputError(f"unknown pipeline {kind!r}")
    return ws.cached(f"pipe:{kind}", make)


def run(ws: Workspace, kind: str, out_dir: Path, *args: Any, **kwargs: Any) -> list[Any]:
    """Run one pipeline call under the lock, save its images and manifest in `out_dir`, return Creatives."""
    from core.creative import Manifest

    pipe = pipeline(ws, kind)
    kwargs.setdefault("steps", ws.config.steps)
    check_cancelled()
    with GENERATION_LOCK:
        check_cancelled()  # cancelled while waiting for another session's job: start nothing
        out = pipe(*args, **kwargs)
    out.save(out_dir, Manifest(Path(out_dir) / "manifest.jsonl"))
    return out.creatives


def product_images(ws: Workspace, condition, out_dir: Path, *, category: str | None, n_candidates: int,
                   seed: int) -> list[Any]:
    """Personalized product images for a condition (best first), saved in `out_dir`."""
    return run(ws, "product", out_dir, condition, category=category, num_candidates=n_candidates, seed=seed)
