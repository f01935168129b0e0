"""X/Y plot tab (A1111's "X/Y plot" script): one shopper's product image over a grid of two settings.

Each axis is one of backbone (the recommender), seed, steps or guidance, its values a comma list
("1, 2, 3"); every other setting is the page's. Each cell is one product image (one candidate),
made exactly as the Shopper tab makes them; the cells come back as a gallery and as one labelled
sheet (`pipelines.grid.xy_grid`), saved with the manifest in the session's folder.
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
from pathlib import Path
from typing import Any, Callable

from core import limits
from core.errors import InputError

from .cancel import JOBS, Cancelled, cancel_handler, cancelled_status
from .engine import GENERATION_EVENT
from .waiting import gradio_waiting, reporting
from .workspace import Unavailable, Workspace, session_id

AXES = ("backbone", "seed", "steps", "guidance")
NO_AXIS = "(none)"
MAX_CELLS = 16  # images of one grid: each is a full generation


def parse_axis(kind: str, text: str | None, models: list[str]) -> list[Any]:
    """The values of one axis from a comma list, checked by the bounds every surface uses."""
    if kind not in AXES:
        raise InputError(f"an axis is one of {', '.join(AXES)}, not {kind!r}")
    words = [w.strip() for w in str(text or "").split(",") if w.strip()]
    if not words:
        raise InputError(f"give the {kind} values as a comma list, e.g. {_example(kind, models)}")
    values: list[Any] = []
    for w in words:
        if kind == "backbone":
            if w not in models:
                raise InputError(f"no recommender {w!r}; choose among {', '.join(models)}")
            values.append(w)
            continue
        try:
            number = float(w) if kind == "guidance" else int(w)
        except ValueError:
            raise InputError(f"{kind} value {w!r} is not a {'number' if kind == 'guidance' else 'whole number'}") \
                from None
        bound = {"seed": limits.SEED, "steps": limits.STEPS, "guidance": limits.GUIDANCE}[kind]
        values.append(bound.check(number, kind))
    if len(set(values)) != len(values):
        raise InputError(f"the {kind} values repeat one another: {', '.join(words)}")
    return values


def _example(kind: str, models: list[str]) -> str:
    return {"backbone": ", ".join(models[:2]) or "ease", "seed": "1, 2, 3", "steps": "10, 20",
            "guidance": "3, 7.5"}[kind]


def plan(x_kind: str, x_text: str, y_kind: str, y_text: str, models: list[str]) -> tuple[list[Any], list[Any]]:
    """X and Y values (Y is [None] with no Y axis); at most `MAX_CELLS` cells."""
    if y_kind == x_kind:
        raise InputError(f"X and Y are both {x_kind}: pick two different settings (or no Y axis)")
    xs = parse_axis(x_kind, x_text, models)
    ys = [None] if y_kind in (None, "", NO_AXIS) else parse_axis(y_kind, y_text, models)
    if len(xs) * len(ys) > MAX_CELLS:
        raise InputError(f"{len(xs)} x {len(ys)} = {len(xs) * len(ys)} images is too many; the most is {MAX_CELLS}")
    return xs, ys


def cell_settings(base: dict[str, Any], x_kind: str, x: Any, y_kind: str | None, y: Any) -> dict[str, Any]:
    """The settings of one cell: the page's `base` (backbone, seed, steps, guidance) with the two axes set."""
    out = dict(base)
    out[x_kind] = x
    if y is not None and y_kind in AXES:
        out[y_kind] = y
    return out


def axis_label(kind: str | None, value: Any) -> str:
    """'seed: 3' ('' for no axis)."""
    return "" if value is None or kind not in AXES else f"{kind}: {value}"


def run_grid(ws: Workspace, history: list[str], user_id: str, base: dict[str, Any], x_kind: str, xs: list[Any],
             y_kind: str | None, ys: list[Any], out_dir: Path, *, category: str | None = None,
             on_cell: Callable[[int, Any], None] | None = None) -> tuple[list[Any], Path]:
    """Make every cell (row by row), then the labelled sheet `out_dir/xy_grid.png`; returns (creatives, sheet)."""
    from PIL import Image

    from core.io import atomic_save_image
    from pipelines.grid import xy_grid

    from . import engine
    from .shopper import recommend

    conditions: dict[str, Any] = {}
    creatives = []
    for y in ys:
        for x in xs:
            s = cell_settings(base, x_kind, x, y_kind, y)
            if s["backbone"] not in conditions:
                conditions[s["backbone"]] = recommend(ws, s["backbone"], history, user_id=user_id)
            made = engine.run(ws, "product", out_dir, conditions[s["backbone"]], category=category,
                              num_candidates=1, seed=int(s["seed"]), steps=int(s["steps"]),
                              guidance=float(s["guidance"]))[0]
            made.extra["xy"] = {"x": axis_label(x_kind, x), "y": axis_label(y_kind, y)}
            creatives.append(made)
            if on_cell is not None:
                on_cell(len(creatives), made)
    images = []
    for c in creatives:
        with Image.open(_path(c, out_dir)) as im:
            images.append(im.convert("RGB"))
    sheet = xy_grid(images, [axis_label(x_kind, x) for x in xs], [axis_label(y_kind, y) for y in ys])
    return creatives, atomic_save_image(sheet, Path(out_dir) / "xy_grid.png")


def _path(creative, out_dir: Path) -> Path:
    p = Path(creative.image_path)
    return p if p.is_absolute() else Path(out_dir) / p


def cell_gallery(creatives: list[Any], out_dir: Path) -> list[tuple[str, str]]:
    """(image path, 'seed: 1 · steps: 10') of each cell."""
    out = []
    for c in creatives:
        xy = c.extra.get("xy", {})
        out.append((str(_path(c, out_dir)), " · ".join(t for t in (xy.get("x"), xy.get("y")) if t)))
    return out


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    from .progress import RunProgress, gradio_reporter, progress_line
    from .shopper import pick_user, tab_choices, user_history

    try:
        users, models, categories = tab_choices(ws)
    except Unavailable as e:
        gr.Markdown(f"**Not available:** {e}")
        return
    gr.Markdown(f"One product image per cell: pick two settings and their values (comma lists), at most "
                f"{MAX_CELLS} cells. Settings not on an axis are the ones below.")
    with gr.Row():
        with gr.Column(scale=1):
            user = gr.Dropdown(users, value=users[0][1] if users else None, label="Demo shopper (type an id)",
                               elem_id="xy-user", filterable=True, allow_custom_value=True)
            category = gr.Dropdown(categories, value="any", label="Product category", elem_id="xy-category")
            with gr.Row():
                x_kind = gr.Dropdown(list(AXES), value="seed", label="X axis", elem_id="xy-x-kind")
                x_values = gr.Textbox("0, 1", label="X values (comma list)", elem_id="xy-x-values")
            with gr.Row():
                y_kind = gr.Dropdown([NO_AXIS, *AXES], value="steps", label="Y axis", elem_id="xy-y-kind")
                y_values = gr.Textbox(f"{max(1, ws.config.steps // 2)}, {ws.config.steps}",
                                      label="Y values (comma list)", elem_id="xy-y-values")
            with gr.Row():
                backbone = gr.Dropdown(models, value=models[0] if models else None, label="Recommender backbone",
                                       elem_id="xy-backbone")
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=limits.SEED.high,
                                 elem_id="xy-seed")
            with gr.Row():
                steps = gr.Slider(1, 150, value=ws.config.steps, step=1, label="Steps", elem_id="xy-steps")
                guidance = gr.Slider(0, 20, value=7.5, step=0.5, label="Guidance (CFG scale)",
                                     elem_id="xy-guidance")
            with gr.Row():
                go = gr.Button("Make the grid", variant="primary", elem_id="xy-generate")
                stop = gr.Button("Cancel", variant="stop", elem_id="xy-cancel")
            status = gr.Markdown(elem_id="xy-status")
        with gr.Column(scale=2):
            sheet = gr.Image(label="X/Y grid", type="filepath", interactive=False, elem_id="xy-grid")
            cells = gr.Gallery(label="Cells", columns=4, height=300, object_fit="contain", elem_id="xy-cells")

    def on_generate(user_, category_, xk, xv, yk, yv, backbone_, seed_, steps_, guidance_, request: gr.Request,
                    progress=gr.Progress()):
        sid = session_id(request)
        try:
            xs, ys = plan(xk, xv, yk, yv, models)
            uid = pick_user(ws, user_)
            if not uid:
                raise InputError("pick a demo shopper")
            base = {"backbone": backbone_ or models[0], "seed": int(seed_ or 0),
                    "steps": int(steps_ or ws.config.steps), "guidance": float(guidance_)}
            total = sum(int(cell_settings(base, xk, x, yk, y)["steps"]) for y in ys for x in xs)
            tracker = RunProgress(total, gradio_reporter(progress))
            progress(0, desc=progress_line(0, total, 0))
            out_dir = ws.session_dir(sid, "xy")
            with JOBS.job(sid, "xy"), reporting(gradio_waiting(progress)), tracker.counting():
                made, sheet_path = run_grid(ws, user_history(ws, uid), uid, base, xk, xs, yk, ys, out_dir,
                                            category=None if category_ == "any" else category_)
        except (InputError, Unavailable) as e:
            return f"Error: {e}", gr.update(), gr.update()
        except Cancelled:
            return cancelled_status("X/Y plot"), gr.update(), gr.update()
        shown = out_dir.relative_to(ws.config.out_dir) if ws.inside_output(out_dir) else out_dir
        return (f"Made a {len(xs)} x {len(ys)} grid ({len(made)} image(s)) for `{uid}` in `{shown}`.",
                str(sheet_path), cell_gallery(made, out_dir))

    event = go.click(on_generate, [user, category, x_kind, x_values, y_kind, y_values, backbone, seed, steps,
                                   guidance], [status, sheet, cells], **GENERATION_EVENT,
                     api_name="xy_generate", show_progress_on=[status])
    stop.click(cancel_handler("xy"), None, None, cancels=[event], queue=False, api_visibility="private")
