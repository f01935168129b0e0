"""Batch tab: upload a campaign YAML, run it with the same runner as `atelier batch`, download the results.

A campaign run from the browser may only use what the server already offers: catalog products,
the demo shop, and the server's model (or the demo model). It cannot name files elsewhere on the
server, and it writes only into the session's folder under the output root.
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
import shutil
import zipfile
from pathlib import Path
from typing import Any

from core.errors import InputError

from .cancel import JOBS, Cancelled, cancel_handler, cancelled_status, check_cancelled
from .engine import CONCURRENCY_ID, GENERATION_LOCK
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


def run_uploaded_campaign(ws: Workspace, upload: str | Path, job_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Copy the upload into `job_dir`, run it there (resumable, same runner as the CLI) and zip the output."""
    from app.batch.runner import run_campaign

    job_dir = Path(job_dir)
    campaign_file = job_dir / "campaign.yaml"
    shutil.copyfile(upload, campaign_file)
    check_campaign(ws, campaign_file)
    with GENERATION_LOCK:
        check_cancelled()  # cancelled while another session's job ran: start nothing
        summary = run_campaign(campaign_file, output_root=job_dir, device=ws.config.device, progress=progress)
    out_dir = Path(summary.output_dir)
    return {**summary.to_dict(), "zip": str(zip_folder(out_dir, job_dir / f"{out_dir.name}.zip"))}


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
    """(image path, caption) of the first creatives in a campaign's manifest."""
    from core.creative import Manifest

    out = []
    for c in Manifest(Path(out_dir) / "manifest.jsonl").load()[:limit]:
        out.append((str(Path(out_dir) / c.image_path), f"{c.user_id or ''} {c.pipeline} seed {c.seed}".strip()))
    return out


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    try:
        import app.batch.runner  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"the batch runner is missing ({e})") from None
    gr.Markdown("Upload a campaign YAML (see `assets/campaigns/demo.yaml`). It runs with the same runner as "
                "`atelier batch`: resumable, one manifest line per image, a contact sheet at the end.")
    with gr.Row():
        upload = gr.File(label="Campaign YAML", file_types=[".yaml", ".yml"], elem_id="batch-upload")
        with gr.Column():
            run_btn = gr.Button("Run campaign", variant="primary", elem_id="batch-run")
            stop_btn = gr.Button("Cancel", variant="stop")
    status = gr.Markdown(elem_id="batch-status")
    gallery = gr.Gallery(object_fit="contain", label="Results (first images)", columns=6, height=300)
    download = gr.File(label="Download results (zip)", interactive=False)

    def on_run(path, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        if not path:
            return "Error: upload a campaign YAML first", [], None
        try:
            with JOBS.job(session_id(request), "batch"):
                res = run_uploaded_campaign(ws, path, ws.session_dir(session_id(request), "batch"))
        except (InputError, Unavailable) as e:
            return f"Error: {e}", [], None
        except Cancelled:
            return cancelled_status("batch") + " Images finished before it are kept in the manifest.", [], None
        text = (f"Campaign **{res['campaign']}**: {res['jobs']} jobs, {res['rendered']} rendered, "
                f"{res['skipped']} already done, {res['creatives']} images in {res['seconds']} s.")
        return text, preview(Path(res["output_dir"])), res["zip"]

    event = run_btn.click(on_run, [upload], [status, gallery, download], concurrency_id=CONCURRENCY_ID,
                          api_name="batch_run")
    stop_btn.click(cancel_handler("batch"), None, None, cancels=[event], queue=False, api_visibility="private")
