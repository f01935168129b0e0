"""Outfit tab: pick the items a shopper already has, get the missing pieces and real items to buy."""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
from pathlib import Path
from typing import Any

from core.errors import InputError

from .cancel import JOBS, Cancelled, cancel_handler, cancelled_status
from .engine import GENERATION_EVENT, run
from .waiting import gradio_waiting, reporting
from .workspace import Unavailable, Workspace, session_id

MAX_PRESENT = 4


def item_choices(ws: Workspace) -> list[tuple[str, str]]:
    """(label, item id) of every catalog item, grouped by category, for a multi-select."""
    cat = ws.catalog()
    items = sorted(cat, key=lambda it: (it.category, it.item_id))
    return [(f"{it.item_id}: {it.title}", it.item_id) for it in items]


def complete_outfit(ws: Workspace, condition, present: list[str], out_dir: Path, *, seed: int = 0) -> list[Any]:
    """Generated pieces (one per missing category) with their retrieved catalog item, saved in `out_dir`."""
    if not present:
        raise InputError("choose at least one item of the outfit")
    if len(present) > MAX_PRESENT:
        raise InputError(f"choose at most {MAX_PRESENT} items")
    return run(ws, "outfit", out_dir, condition, list(present), num_candidates=1, seed=seed)


def pieces_and_items(ws: Workspace, creatives: list[Any], out_dir: Path) -> tuple[list[tuple], list[tuple]]:
    """Gallery entries: the generated pieces, and the real catalog item retrieved for each."""
    from .shopper import on_white

    cat = ws.catalog()
    pieces, items = [], []
    for c in creatives:
        p = Path(c.image_path)
        pieces.append((str(p if p.is_absolute() else Path(out_dir) / p), f"generated {c.extra.get('category', '')}"))
        iid = c.extra.get("retrieved_item")
        if iid:
            sim = c.extra.get("retrieval_similarity")
            items.append((on_white(cat.load_image(iid)), f"{iid}: {cat[iid].title}"
                          + (f" (similarity {sim:.2f})" if isinstance(sim, (int, float)) else "")))
    return pieces, items


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    from .shopper import demo_users, item_gallery, recommend, user_history

    try:
        users = demo_users(ws)
        choices = item_choices(ws)
        models = ws.available_models()
    except Unavailable as e:
        gr.Markdown(f"**Not available:** {e}")
        return
    with gr.Row():
        with gr.Column(scale=1):
            user = gr.Dropdown([("(no personalization)", "")] + users, value=users[0][1] if users else "",
                               label="For shopper")
            present = gr.Dropdown(choices, multiselect=True, max_choices=MAX_PRESENT, label="Items in the outfit",
                                  elem_id="outfit-items")
            seed = gr.Number(0, label="Seed", precision=0, minimum=0)
            with gr.Row():
                go = gr.Button("Complete the outfit", variant="primary", elem_id="outfit-generate")
                stop = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2):
            status = gr.Markdown()
            chosen = gr.Gallery(object_fit="contain", label="Chosen items", columns=4, height=200)
            pieces = gr.Gallery(label="Generated pieces", columns=4, height=240, elem_id="outfit-pieces",
                                object_fit="contain")
            items = gr.Gallery(label="Real catalog items to buy (nearest to each piece)", columns=4, height=200,
                               object_fit="contain",
                               elem_id="outfit-items-to-buy")

    def on_generate(user_, present_, seed_, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        try:
            with JOBS.job(session_id(request), "outfit"), reporting(gradio_waiting(progress)):
                condition = recommend(ws, models[0], user_history(ws, user_), user_id=user_) if user_ else None
                out_dir = ws.session_dir(session_id(request), "outfit")
                creatives = complete_outfit(ws, condition, list(present_ or []), out_dir, seed=int(seed_ or 0))
        except (InputError, Unavailable) as e:
            return f"Error: {e}", [], [], []
        except Cancelled:
            return cancelled_status("outfit"), [], [], []
        made, bought = pieces_and_items(ws, creatives, out_dir)
        return (f"Completed with {len(creatives)} piece(s).", item_gallery(ws, list(present_)), made, bought)

    event = go.click(on_generate, [user, present, seed], [status, chosen, pieces, items],
                     **GENERATION_EVENT, api_name="outfit_complete")
    stop.click(cancel_handler("outfit"), None, None, cancels=[event], queue=False, api_visibility="private")
