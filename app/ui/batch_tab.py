"""Batch tab: pick a shipped example campaign (or upload one), edit it in the page, run it with the same runner
as `atelier batch`, see the images and the contact sheet, download the results.

A campaign run from the browser may only use what the server already offers: catalog products,
the demo shop, and the server's model (or the demo model). It cannot name files elsewhere on the
server, and it writes only into the session's folder under the output root: one folder per
campaign name, so a rerun (after a Cancel, say) resumes where the last one stopped.
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
import re
import zipfile
from pathlib import Path
from typing import Any

from core.errors import InputError

from .cancel import JOBS, Cancelled
from .engine import GENERATION_EVENT, generation_turn
from .waiting import gradio_waiting, reporting
from .workspace import Unavailable, Workspace, session_id


def check_campaign(ws: Workspace, path: Path):
    """Validate an uploaded campaign and refuse anything that reaches outside what the server offers."""
    from app.batch.campaign import load_campaign

    campaign = load_campaign(path)
    if campaign.shop != "demo":
        raise InputError("campaigns run from the UI use the demo shop (shop: demo)", path)
    if any(p.image is not None for p in campaign.products):
        raise InputError("campaigns run from the UI take catalog products (item: ID); run image products "
                         "with `atelier batch` on the server", path)
    if campaign.model.base not in ("demo", ws.config.model):
        raise InputError(f"campaigns run from the UI use the server's model ({ws.config.model}) or 'demo', "
                         f"not {campaign.model.base!r}", path)
    if campaign.model.lora is not None:
        raise InputError("campaigns run from the UI cannot load a LoRA file; use `atelier batch` on the server", path)
    return campaign


EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "campaigns"
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def example_campaigns() -> list[tuple[str, str]]:
    """(file name, path) of the shipped example campaigns."""
    return [(p.name, str(p)) for p in sorted(EXAMPLES_DIR.glob("*.yaml"))]


def read_example(path: str | Path | None) -> str:
    """The text of a shipped example (only files in the examples folder) or of an uploaded YAML, for the editor."""
    from core import limits

    if not path:
        return ""
    path = Path(path)
    if path.stat().st_size > limits.MAX_YAML_BYTES:
        raise InputError(f"campaign file is larger than {limits.MAX_YAML_BYTES} bytes", path.name)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("campaign file is not UTF-8 text", path.name) from None


def campaign_problems(path: Path) -> list[str]:
    """Every problem of a campaign file, one line each ('line N: ...'); [] when it validates."""
    from pydantic import ValidationError

    from app.batch.campaign import Campaign, _format_error
    from core.yamlio import read_yaml

    try:
        doc = read_yaml(path, what="campaign")
    except InputError as e:
        return [e.problem if e.line is None else f"line {e.line}: {e.problem}"]
    if not isinstance(doc.data, dict):
        return []  # load_campaign gives the one message
    try:
        Campaign.model_validate(doc.data)
    except ValidationError as e:
        out = []
        for err in e.errors():
            line = doc.line_of(tuple(err["loc"]))
            out.append(f"line {line}: {_format_error(err)}" if line else _format_error(err))
        return out
    return []


def campaign_dir(ws: Workspace, session: str | None, text: str) -> Path:
    """The session's folder for a campaign (by its name): the same on every rerun, so a run resumes."""
    name = re.search(r"^name:\s*['\"]?([^'\"#\n]+)", text, re.M)
    key = _SAFE.sub("-", (name.group(1).strip() if name else "campaign"))[:48].strip("-") or "campaign"
    sid = _SAFE.sub("", session or "")[:32] or "anonymous"
    path = ws.config.out_dir / "sessions" / sid / f"batch-{key}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_campaign_text(text: str, job_dir: Path) -> Path:
    """The editor's YAML as `campaign.yaml` in the job folder (atomically), size-checked first."""
    from core import limits
    from core.io import atomic_write_text

    if not (text or "").strip():
        raise InputError("the campaign is empty: pick an example or upload a YAML first")
    if len(text.encode("utf-8")) > limits.MAX_YAML_BYTES:
        raise InputError(f"the campaign is over {limits.MAX_YAML_BYTES} bytes")
    return atomic_write_text(Path(job_dir) / "campaign.yaml", text)


def run_campaign_text(ws: Workspace, text: str, job_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the edited campaign in `job_dir` (resumable, same runner as the CLI) and zip the output."""
    from app.batch.runner import run_campaign

    campaign_file = write_campaign_text(text, job_dir)
    problems = campaign_problems(campaign_file)
    if len(problems) > 1:  # every problem listed, not "(and 1 more problem)"
        raise InputError("the campaign has {} problems: {}".format(len(problems), "; ".join(problems)))
    check_campaign(ws, campaign_file)
    with generation_turn():  # the whole campaign is one turn (its runner builds its own pipelines)
        summary = run_campaign(campaign_file, output_root=job_dir, device=ws.config.device, progress=progress)
    out_dir = Path(summary.output_dir)
    return {**summary.to_dict(), "zip": str(zip_folder(out_dir, job_dir / f"{out_dir.name}.zip"))}


def run_uploaded_campaign(ws: Workspace, upload: str | Path, job_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Run an uploaded campaign YAML in `job_dir` (see `run_campaign_text`)."""
    return run_campaign_text(ws, read_example(upload), job_dir, progress=progress)


def finished_run(job_dir: Path) -> tuple[Path | None, int]:
    """The campaign folder in a job folder and how many images its manifest holds (what a Cancel kept)."""
    from app.batch.runner import _manifest_files, _read_records

    for out_dir in sorted(p for p in Path(job_dir).iterdir() if p.is_dir()) if Path(job_dir).is_dir() else []:
        files = _manifest_files(out_dir)
        if files:
            return out_dir, sum(len(_read_records(f)) for f in files)
    return None, 0


def zip_folder(folder: Path, zip_path: Path) -> Path:
    """Zip a result folder (images, manifest, contact sheet) atomically for download."""
    from core.io import atomic_path

    folder = Path(folder)
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(folder.rglob("*")):
                if f.is_file() and not f.name.startswith("."):
                    zf.write(f, f.relative_to(folder.parent))
    return Path(zip_path)


def preview(out_dir: Path, limit: int = 24) -> list[tuple[str, str]]:
    """(image path, caption) of the first creatives in a campaign's manifest (its shards too, after a Cancel)."""
    from app.batch.runner import _manifest_files, _read_records

    out = []
    for f in _manifest_files(Path(out_dir)):
        for r in _read_records(f):
            if len(out) >= limit:
                return out
            size = f"{r.get('width')}x{r.get('height')}"
            out.append((str(Path(out_dir) / r.get("image_path", "")),
                        f"{r.get('user_id') or ''} {r.get('pipeline')} {size} seed {r.get('seed')}".strip()))
    return out


def sheet_html(sheet: str | Path | None) -> str:
    """The campaign's contact sheet (`index.html`) for the page: its style and body, links served by Gradio."""
    import html

    if not sheet or not Path(sheet).is_file():
        return ""
    folder = Path(sheet).resolve().parent
    text = Path(sheet).read_text(encoding="utf-8")
    style = re.search(r"<style>.*?</style>", text, re.S)
    body = re.search(r"<body>(.*)</body>", text, re.S)

    def served(m: re.Match) -> str:
        target = (folder / html.unescape(m.group(2))).resolve()
        if folder not in target.parents:
            return m.group(0)  # the sheet only links its own folder
        return f'{m.group(1)}="/gradio_api/file={html.escape(str(target))}"'

    inner = re.sub(r'(src|href)="([^"]+)"', served, body.group(1) if body else "")
    return (style.group(0) if style else "") + f'<div class="contact-sheet">{inner}</div>'


# The job folder of each session's running campaign, so its Cancel can show what was finished.
_RUNNING: dict[str, Path] = {}


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    try:
        import app.batch.runner  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"the batch runner is missing ({e})") from None
    examples = example_campaigns()
    gr.Markdown("Pick an example campaign or upload one, edit it here, and run it with the same runner as "
                "`atelier batch`: resumable (a rerun of the same campaign continues where it stopped), one "
                "manifest line per image, a contact sheet at the end.")
    with gr.Row():
        with gr.Column(scale=1):
            example = gr.Dropdown(examples, value=examples[0][1] if examples else None, label="Example campaign",
                                  elem_id="batch-example")
            upload = gr.File(label="…or upload a campaign YAML", file_types=[".yaml", ".yml"], elem_id="batch-upload",
                             height=120)
            with gr.Row():
                run_btn = gr.Button("Run campaign", variant="primary", elem_id="batch-run")
                stop_btn = gr.Button("Cancel", variant="stop", elem_id="batch-cancel")
            status = gr.Markdown(elem_id="batch-status")  # by the buttons: errors show where the click was
        with gr.Column(scale=2):
            editor = gr.Code(read_example(examples[0][1]) if examples else "", language="yaml",
                             label="Campaign (edit before running)", interactive=True, lines=18,
                             elem_id="batch-editor")
    gallery = gr.Gallery(object_fit="contain", label="Results (first images)", columns=6, height=300,
                         elem_id="batch-gallery")
    with gr.Row():
        sheet = gr.HTML(label="Contact sheet", elem_id="batch-sheet", max_height=500)
        download = gr.File(label="Download results (zip)", interactive=False, elem_id="batch-zip")

    def on_example(path):
        try:
            return read_example(path)
        except (InputError, OSError):
            return gr.update()

    def on_upload(path):
        if not path:
            return gr.update(), gr.update()
        try:
            return read_example(path), f"Loaded `{Path(path).name}` into the editor."
        except (InputError, OSError) as e:
            return gr.update(), f"Error: {Path(path).name}: {getattr(e, 'problem', e)}"

    def on_run(text, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        sid = session_id(request)
        yield "Running the campaign…", [], "", None  # the previous run's summary goes as this one starts
        try:
            job_dir = campaign_dir(ws, sid, text or "")
            _RUNNING[sid] = job_dir
            with JOBS.job(sid, "batch"), reporting(gradio_waiting(progress)):
                res = run_campaign_text(ws, text, job_dir)
        except InputError as e:  # the editor is the file: its line numbers, never the server's path
            yield f"Error: {InputError(e.problem, 'campaign.yaml' if e.line else None, e.line)}", [], "", None
            return
        except Unavailable as e:
            yield f"Error: {e}", [], "", None
            return
        except Cancelled:
            return
        finally:
            _RUNNING.pop(sid, None)
        resumed = f" (resumed: {res['skipped']} were already done)" if res["skipped"] else ""
        text_ = (f"Campaign **{res['campaign']}**: {res['jobs']} jobs, {res['rendered']} rendered, "
                 f"{res['skipped']} already done, {res['creatives']} images in {res['seconds']} s{resumed}.")
        yield text_, preview(Path(res["output_dir"])), sheet_html(res.get("sheet")), res["zip"]

    def cancel_batch(request: gr.Request):
        sid = session_id(request)
        JOBS.cancel(sid, "batch")
        job_dir = _RUNNING.get(sid)
        out_dir, n = finished_run(job_dir) if job_dir is not None else (None, 0)
        if out_dir is None or n == 0:
            return "Cancelled: no image was finished yet.", [], "", None
        archive = zip_folder(out_dir, job_dir / f"{out_dir.name}.zip")
        return (f"Cancelled: kept the {n} finished image(s) (in the zip below); run again to resume from there.",
                preview(out_dir), "", str(archive))

    example.input(on_example, [example], [editor], api_visibility="private", queue=False)
    upload.upload(on_upload, [upload], [editor, status], api_visibility="private", queue=False)
    event = run_btn.click(on_run, [editor], [status, gallery, sheet, download], **GENERATION_EVENT,
                          api_name="batch_run", show_progress_on=[status])
    stop_btn.click(cancel_batch, None, [status, gallery, sheet, download], cancels=[event], queue=False,
                   api_visibility="private")
