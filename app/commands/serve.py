"""`atelier serve`: the Gradio UI and the A/B HTTP API on one loopback port (safe defaults)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.commands import options

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serve(
    host: Annotated[str, typer.Option(
        help="Interface to bind; anything but loopback exposes the UI to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 7860,
    auth: Annotated[Optional[str], typer.Option(
        help="user:password for the UI and the API (or env ATELIER_AUTH).")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="SD base model: 'demo', a diffusers folder, or a hub id (env ATELIER_MODEL).")] = None,
    controlnet: Annotated[Optional[str], typer.Option(
        help="ControlNet for backgrounds (env ATELIER_CONTROLNET; default: the demo one with the demo model, "
             "else inpainting).")] = None,
    upscale: Annotated[bool, typer.Option(
        "--upscale/--no-upscale", help="Apply the model's own 2x upscaler when it has one (the demo model: 128 px "
                                       "images).")] = True,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder, the only folder the UI serves files from (env ATELIER_OUT; default outputs/ui).")] = None,
    ab_db: Annotated[Optional[str], typer.Option(
        "--ab-db", help="A/B store: a SQLite file or a postgresql:// DSN (env ATELIER_AB_DB; default "
                        "outputs/ab.sqlite).")] = None,
    shop: Annotated[Optional[str], typer.Option(help="Demo shop folder (default: the shipped one).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N or auto.", callback=options.device)] = None,
    steps: Annotated[int, options.steps("Denoising steps per image.")] = 20,
    queue_size: Annotated[int, typer.Option(min=1, help="Most requests waiting in the queue; more are refused.")] = 32,
    concurrency: Annotated[int, typer.Option(
        min=1, help="Requests of one kind served at once (image generation always runs one job at a time).")] = 1,
    max_file_size: Annotated[str, typer.Option(help="Largest upload, e.g. 20mb.")] = "20mb",
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads (env ATELIER_THREADS, default 1).")] = None,
) -> None:
    """Start the Gradio UI (and the A/B HTTP API at /api/ab, OpenAPI at /docs) on 127.0.0.1."""
    from core.args import check_out_dir, parse_bytes

    parse_bytes(max_file_size, "--max-file-size")  # a bad size fails here, not when Gradio starts
    check_out_dir(out, "--out")
    from app.ui.server import parse_auth

    credentials = parse_auth(auth if auth is not None else os.environ.get("ATELIER_AUTH"))
    if host not in LOOPBACK and credentials is None:
        print(f"warning: serving on {host} without --auth: anyone who can reach this port can use the UI and API",
              file=sys.stderr)
    import uvicorn

    from app.ab.db import redact
    from app.ui.server import ServerLimits, build_app
    from app.ui.workspace import UIConfig
    from pipelines.device import set_threads

    set_threads(threads)
    config = UIConfig.from_env(model=model, controlnet=controlnet, out_dir=out, ab_db=ab_db, shop=shop,
                               device=device, steps=steps, upscale=upscale)
    app = build_app(config, auth=credentials,
                    limits=ServerLimits(queue_size=queue_size, concurrency=concurrency, max_file_size=max_file_size))
    shown = f"[{host}]" if ":" in host else host
    print(f"Atelier UI on http://{shown}:{port}/  (A/B API http://{shown}:{port}/api/ab, docs /docs; "
          f"outputs {config.out_dir}; A/B store {redact(str(config.ab_db))})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
