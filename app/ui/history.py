"""History tab: the past runs found in the output folder, newest first, each opened to its images and settings.

A run is one job folder `<out>/sessions/<session>/<kind>-<time>-<id>/` with its `manifest.jsonl`
(what every tab writes); the list is read from those manifests, so runs of earlier server
processes are there too. A folder whose manifest is unreadable is left out of the list.
"""

# No `from __future__ import annotations` here: Gradio injects `gr.SelectData` by the evaluated annotation.
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError

from .workspace import Unavailable, Workspace

MAX_RUNS = 100  # the newest ones; older runs stay on disk
PROMPT_CHARS_SHOWN = 80


@dataclass
class Run:
    """One past job: its folder and the creatives its manifest lists."""

    folder: Path
    kind: str
    time: float
    creatives: list[Any] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        return self.creatives[0].prompt if self.creatives else ""

    @property
    def backbone(self) -> str:
        """The recommender the run's conditions came from ('' when none)."""
        for c in self.creatives:
            source = (c.condition or {}).get("source")
            if source:
                return str(source)
        return ""

    def image(self, creative) -> Path:
        p = Path(creative.image_path)
        return p if p.is_absolute() else self.folder / p

    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))


def read_run(folder: Path) -> Run | None:
    """The run in `folder` (None when its manifest is missing, empty or unreadable)."""
    from core.creative import Manifest

    path = Path(folder) / "manifest.jsonl"
    try:
        creatives = Manifest(path).load()
    except (InputError, OSError, ValueError):
        return None
    if not creatives:
        return None
    kind = Path(folder).name.split("-")[0] or creatives[0].pipeline
    return Run(Path(folder), kind, max(c.created_at for c in creatives), creatives)


def past_runs(ws: Workspace, limit: int = MAX_RUNS) -> list[Run]:
    """The runs under the output folder's sessions, newest first (at most `limit`)."""
    manifests = (ws.config.out_dir / "sessions").glob("*/*/manifest.jsonl")
    newest = sorted(manifests, key=lambda p: p.stat().st_mtime, reverse=True)[: 2 * limit]
    runs = [r for r in (read_run(m.parent) for m in newest) if r is not None]
    return sorted(runs, key=lambda r: r.time, reverse=True)[:limit]


def _short(text: str, n: int = PROMPT_CHARS_SHOWN) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def run_rows(runs: list[Run]) -> list[list[Any]]:
    """Table rows: time, kind, backbone, images, prompt."""
    return [[r.when(), r.kind, r.backbone or "—", len(r.creatives), _short(r.prompt)] for r in runs]


def run_thumbnails(runs: list[Run]) -> list[tuple[str, str]]:
    """(first image, 'time · kind · backbone') of each run, for the list gallery."""
    return [(str(r.image(r.creatives[0])), " · ".join(t for t in (r.when(), r.kind, r.backbone) if t)) for r in runs]


def run_details(run: Run, out_root: Path) -> tuple[list[tuple[str, str]], str]:
    """The run's images (captioned) and its parameters as Markdown."""
    images = [(str(run.image(c)), f"{c.pipeline} {c.width}x{c.height} · seed {c.seed}") for c in run.creatives]
    first = run.creatives[0]
    try:
        shown = run.folder.relative_to(out_root)
    except ValueError:
        shown = run.folder.name
    seeds = ", ".join(str(s) for s in sorted({c.seed for c in run.creatives}))
    lines = [f"**{run.kind}** run of {run.when()} in `{shown}`: {len(run.creatives)} image(s)",
             f"**Prompt:** {first.prompt}"]
    if first.negative_prompt:
        lines.append(f"**Negative prompt:** {first.negative_prompt}")
    model = Path(first.base_model).name if Path(first.base_model).is_absolute() else first.base_model
    lines.append(f"**Model:** {model} · **steps** {first.steps} · **guidance** {first.guidance} · "
                 f"**size** {first.width}x{first.height} · **seeds** {seeds}")
    if run.backbone or first.user_id:
        lines.append(f"**Shopper:** {first.user_id or '—'} · **backbone:** {run.backbone or '—'}")
    return images, "\n\n".join(lines)


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    gr.Markdown("Past runs found in the output folder (every tab's jobs, newest first). Click one to see its "
                "images and settings.")
    refresh = gr.Button("Refresh", elem_id="history-refresh", size="sm")
    listing = gr.Markdown(elem_id="history-status")
    table = gr.Dataframe(headers=["time", "kind", "backbone", "images", "prompt"], interactive=False,
                         elem_id="history-table", wrap=True)
    thumbs = gr.Gallery(label="Runs (first image of each)", columns=8, height=180, object_fit="contain",
                        elem_id="history-runs", allow_preview=False)
    with gr.Row():
        images = gr.Gallery(label="Images of the run", columns=4, height=300, object_fit="contain",
                            elem_id="history-images", scale=2)
        details = gr.Markdown(elem_id="history-details")
    folders = gr.State([])

    def on_refresh():
        try:
            runs = past_runs(ws)
        except (OSError, Unavailable) as e:
            return f"Error: {e}", [], [], []
        line = f"{len(runs)} run(s)." if runs else "No runs yet: generate something in another tab, then Refresh."
        return line, run_rows(runs), run_thumbnails(runs), [str(r.folder) for r in runs]

    def show(folders_, index):
        if index is None or not 0 <= index < len(folders_):
            return gr.update(), gr.update()
        folder = Path(folders_[index])
        run = read_run(folder) if ws.inside_output(folder) else None
        if run is None:
            return [], "This run is gone (its folder was removed): press Refresh."
        return run_details(run, ws.config.out_dir)

    def on_thumb(folders_, evt: gr.SelectData):
        return show(folders_, evt.index)

    def on_row(folders_, evt: gr.SelectData):
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return show(folders_, index)

    outputs = [listing, table, thumbs, folders]
    refresh.click(on_refresh, None, outputs, api_name="history_refresh")
    thumbs.select(on_thumb, [folders], [images, details], api_visibility="private")
    table.select(on_row, [folders], [images, details], api_visibility="private")
    shared["loaders"].append((on_refresh, None, outputs))
