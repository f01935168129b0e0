"""The web app: Gradio Blocks with one tab per use, mounted with the A/B HTTP API on one FastAPI app.

Safe defaults (see SECURITY in the README): loopback bind unless told otherwise, optional
username/password for both the UI and the API, a bounded queue where each event has its own
concurrency limit (so one session's job or cancel never touches another's), an upload size
limit, and Gradio file access limited to the output folder.
"""

from __future__ import annotations

import importlib
import secrets
from dataclasses import dataclass
from typing import Any

from core.args import parse_bytes
from core.errors import InputError

from .http_limits import API_BODY_BYTES, BodyLimit
from .workspace import UIConfig, Unavailable, Workspace

TABS = (  # (module in app.ui, tab label, elem id)
    ("shopper", "Shopper", "tab-shopper"),
    ("studio", "Background & banner studio", "tab-studio"),
    ("outfit", "Outfit", "tab-outfit"),
    ("ab_tab", "A/B ranking", "tab-ab"),
    ("batch_tab", "Batch", "tab-batch"),
    ("xy_plot", "X/Y plot", "tab-xy"),
    ("history", "History", "tab-history"),
)


@dataclass
class ServerLimits:
    """Queue and upload limits of one server."""

    queue_size: int = 32  # waiting events beyond this are refused with "queue full"
    # callbacks running at once per event; generation events let `waiting.WAITING_ROOM` in, where they take turns
    # one pipeline call at a time, first come first served, each told its place (`app.ui.waiting`)
    concurrency: int = 1
    max_file_size: str | int = "20mb"  # a size such as 20mb, or bytes


def parse_auth(spec: str | None) -> tuple[str, str] | None:
    """'user:password' -> (user, password); None or '' -> no auth."""
    if not spec:
        return None
    user, sep, password = spec.partition(":")
    if not sep or not user or not password:
        raise InputError("auth must look like user:password (from --auth or ATELIER_AUTH)")
    return user, password


def build_blocks(ws: Workspace):
    """The Gradio Blocks app; a tab whose module is missing shows why instead of failing the app."""
    import gradio as gr

    # delete_cache: Gradio's copies of served files older than a day go, checked hourly.
    with gr.Blocks(title="Atelier", analytics_enabled=False, delete_cache=(3600, 86400)) as blocks:
        gr.Markdown("## Atelier: personalized product images, banners and outfits")
        shared: dict[str, Any] = {"last_generation": gr.State(None), "loaders": []}
        with gr.Tabs() as tabs:
            shared["tabs"] = tabs
            for module, label, elem_id in TABS:
                with gr.Tab(label, id=elem_id, elem_id=elem_id):
                    try:
                        importlib.import_module(f"app.ui.{module}").build(ws, shared)
                    except (ImportError, Unavailable) as e:
                        gr.Markdown(f"**Not available in this build:** {e}")
        _link_tabs(ws, shared)
        for fn, inputs, outputs in shared["loaders"]:
            blocks.load(fn, inputs, outputs, api_visibility="private")
    return blocks


def _link_tabs(ws: Workspace, shared: dict[str, Any]) -> None:
    """Events that span two tabs, wired once every tab is built (Shopper's "Send to Studio")."""
    try:
        from .send_to_studio import link
    except ImportError:
        return
    link(ws, shared)


def _api_router(auth: tuple[str, str] | None, ws: Workspace):
    """The A/B HTTP API router, behind HTTP basic auth when the UI has auth; None when not built yet."""
    try:
        api = importlib.import_module("app.ab.api")
    except ImportError:
        return None
    make = getattr(api, "make_router", None)
    router = make(ws.config.ab_db) if make is not None else getattr(api, "router", None)
    if router is None:
        return None
    return router, _auth_dependencies(auth)


def _auth_dependencies(auth: tuple[str, str] | None) -> list:
    """FastAPI dependencies that require HTTP basic auth with `auth` (none without auth)."""
    if auth is None:
        return []
    from fastapi import Depends, HTTPException, status
    from fastapi.security import HTTPBasic, HTTPBasicCredentials

    basic = HTTPBasic()

    def check(credentials: HTTPBasicCredentials = Depends(basic)) -> None:
        ok_user = secrets.compare_digest(credentials.username.encode(), auth[0].encode())
        ok_pass = secrets.compare_digest(credentials.password.encode(), auth[1].encode())
        if not (ok_user and ok_pass):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad credentials", {"WWW-Authenticate": "Basic"})

    return [Depends(check)]


def _docs_routes(app, deps: list) -> None:
    """/openapi.json, /docs and /redoc behind the same credentials as the API (FastAPI's own are off)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import JSONResponse

    @app.get("/openapi.json", include_in_schema=False, dependencies=deps)
    def openapi_json():
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=deps)
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API")

    @app.get("/redoc", include_in_schema=False, dependencies=deps)
    def redoc():
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - API")


def build_app(config: UIConfig, *, auth: tuple[str, str] | None = None, limits: ServerLimits | None = None):
    """One FastAPI app: the A/B API at /api/ab (OpenAPI at /docs) and the Gradio UI at /."""
    import gradio as gr
    from fastapi import FastAPI

    limits = limits or ServerLimits()
    ws = Workspace(config)
    blocks = build_blocks(ws)
    blocks.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    # Under --auth, the API's documentation is behind the same credentials as the API itself.
    app = FastAPI(title="Atelier", description="A/B ranking API and the Atelier UI.", version="0.1.0",
                  docs_url=None if auth else "/docs", redoc_url=None if auth else "/redoc",
                  openapi_url=None if auth else "/openapi.json")
    if auth is not None:
        _docs_routes(app, _auth_dependencies(auth))
    api = _api_router(auth, ws)
    if api is not None:
        router, deps = api
        app.include_router(router, prefix="/api/ab", dependencies=deps)
    app.state.workspace = ws
    app.state.ab_api = api is not None
    max_bytes = parse_bytes(limits.max_file_size, "--max-file-size")
    served = gr.mount_gradio_app(
        app,
        blocks,
        path="",
        auth=auth,
        allowed_paths=[str(config.out_dir)],
        max_file_size=max_bytes,
        footer_links=["api"],
        ssr_mode=False,
        mcp_server=False,
        show_error=True,
    )
    # Bodies bounded before they are read: uploads by --max-file-size (+ multipart framing), the JSON API
    # by 1 MiB, everything else by the upload limit.
    app.add_middleware(BodyLimit, default=max_bytes + (1 << 20), limits={"/api/": API_BODY_BYTES})
    return served
