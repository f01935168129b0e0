"""The generation pipelines the UI runs, assembled once per process (`pipelines.assemble`) and used by
one job at a time.

Diffusers pipelines keep mutable state (the scheduler's timesteps), so two requests must never
run one pipeline at the same moment: every run takes its turn in the waiting line
(`app.ui.waiting.LINE`, first come first served, each waiter told its place) and then holds
`GENERATION_LOCK`. The UI gives all generation events one Gradio concurrency group of
`WAITING_ROOM` callbacks. A session's Cancel stops its own running job at the next denoising step,
or takes it out of the line (`app.ui.cancel`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from core.errors import InputError

from .cancel import check_cancelled
from .waiting import LINE, WAITING_ROOM, current_report
from .workspace import Unavailable, Workspace

GENERATION_LOCK = threading.Lock()
CONCURRENCY_ID = "generation"  # Gradio concurrency group shared by every event that runs a pipeline
# The keyword arguments of every generation event: one group, `WAITING_ROOM` callbacks let in (Gradio keeps the
# group's lowest limit, so all of them must say the same), each waiting in `LINE` for its turn.
GENERATION_EVENT = {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": WAITING_ROOM}


@contextmanager
def generation_turn() -> Iterator[None]:
    """This thread's turn at the pipelines: wait in line (position told to `waiting.reporting`), then the lock."""
    with LINE.turn(current_report()):
        check_cancelled()
        with GENERATION_LOCK:
            check_cancelled()  # cancelled while waiting: start nothing
            yield


def spec(ws: Workspace):
    """The server's `PipelineSpec`: its `--model`, its ControlNet, the model's upscaler (unless --no-upscale) and
    the demo scorer."""
    try:
        from pipelines.assemble import AUTO, PipelineSpec
    except ImportError as e:
        raise Unavailable(f"model loading is not available in this build ({e})") from None
    return PipelineSpec(model=ws.config.model, controlnet=ws.config.controlnet, scorer="demo", device=ws.config.device,
                        upscaler=AUTO if ws.config.upscale else None)


def parts(ws: Workspace):
    """The process's one assembly of the server's models (`pipelines.assemble`)."""
    from pipelines.assemble import assemble

    return assemble(spec(ws))


def sd_pipeline(ws: Workspace):
    """The base Stable Diffusion pipeline named by the server's `--model`."""
    try:
        return parts(ws).sd()
    except InputError as e:
        hint = ""
        if ws.config.model == "demo":
            hint = " (the demo model is not built yet: start the server with --model PATH)"
        raise Unavailable(f"cannot load the image model {ws.config.model!r}: {e}{hint}") from None


def _catalog(ws: Workspace):
    try:
        return ws.catalog()
    except Unavailable:
        return None


def controlnet(ws: Workspace):
    """The ControlNet for backgrounds, or None (then backgrounds are inpainted)."""
    def make():
        try:
            return parts(ws).controlnet()
        except (InputError, TypeError):
            return None  # no usable ControlNet: the background pipeline falls back to inpainting
    return ws.cached("controlnet", make)


def pipeline(ws: Workspace, kind: str):
    """A product / background / banner / outfit pipeline over the shared base model."""
    sd_pipeline(ws)  # a missing model is a message in the UI, not a traceback
    overrides = {"controlnet": controlnet(ws)} if kind == "background" else {}
    try:
        return parts(ws).pipeline(kind, catalog=_catalog(ws), **overrides)
    except ImportError as e:
        raise Unavailable(f"the {kind} pipeline is not available in this build ({e})") from None


def run(ws: Workspace, kind: str, out_dir: Path, *args: Any, **kwargs: Any) -> list[Any]:
    """Run one pipeline call under the lock, save its images and manifest in `out_dir`, return Creatives."""
    from core.creative import Manifest

    pipe = pipeline(ws, kind)
    kwargs.setdefault("steps", ws.config.steps)
    check_cancelled()
    with generation_turn():
        out = pipe(*args, **kwargs)
    out.save(out_dir, Manifest(Path(out_dir) / "manifest.jsonl"))
    return out.creatives


def product_images(ws: Workspace, condition, out_dir: Path, *, category: str | None, n_candidates: int,
                   seed: int) -> list[Any]:
    """Personalized product images for a condition (best first), saved in `out_dir`."""
    return run(ws, "product", out_dir, condition, category=category, num_candidates=n_candidates, seed=seed)
