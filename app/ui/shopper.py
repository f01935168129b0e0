"""Shopper tab: a demo user (or an uploaded history), their recommendations, and images made for them.

The plain functions (`user_history`, `history_from_csv`, `recommend`, `personalize`) are what the
callbacks run; they call the recommenders and the product pipeline exactly as the CLI does.
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError

from .cancel import JOBS, Cancelled, cancel_handler, cancelled_status
from .engine import GENERATION_EVENT
from .waiting import gradio_waiting, reporting
from .workspace import Unavailable, Workspace, session_id

MAX_UPLOAD_BYTES = 2_000_000  # a "small interaction history": refuse anything bigger before parsing
N_SHOWN_HISTORY = 12


def demo_users(ws: Workspace, n: int | None = None) -> list[tuple[str, str]]:
    """(label, user id) of the demo shoppers (all by default), labelled with their segment; the dropdown
    filters on what is typed, so "u0500" finds u0500."""
    shop = ws.shop()
    ids = sorted(shop.users)[:n]
    return [(f"{u} ({shop.segment_of(u)})", u) for u in ids]


def tab_choices(ws: Workspace) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """What a shopper-facing tab offers: demo shoppers, recommenders and categories ("any" first); raises
    `Unavailable` when the shop or the models are missing."""
    return demo_users(ws), ws.available_models(), ["any"] + list(ws.catalog().categories())


def pick_user(ws: Workspace, typed: str | None) -> str | None:
    """The shopper id a dropdown value or typed text names: an exact id, a label "u0500 (segment)", or
    a unique id prefix; None for empty text. Unknown text is an InputError naming what was typed."""
    if typed is None or not str(typed).strip():
        return None
    text = str(typed).strip().split(" ")[0]
    users = ws.shop().users
    if text in users:
        return text
    matches = sorted(u for u in users if u.startswith(text))
    if len(matches) == 1:
        return matches[0]
    raise InputError(f"no shopper {text!r}" + (f" ({len(matches)} ids start with it)" if matches else ""))


def user_history(ws: Workspace, user_id: str) -> list[str]:
    """A demo shopper's interacted item ids, oldest first."""
    return ws.shop().history(user_id)


def history_from_csv(ws: Workspace, path: str | Path) -> list[str]:
    """Item ids of an uploaded `user_id,item_id,timestamp` CSV (one shopper), oldest first."""
    from recommenders.interactions import load_interactions_csv

    path = Path(path)
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise InputError(f"history file is larger than {MAX_UPLOAD_BYTES // 1000} kB; upload one shopper's rows", path)
    inter = load_interactions_csv(path, catalog=ws.catalog())
    if len(inter) == 0:
        raise InputError("the history has no rows", path)
    if inter.n_users > 1:
        raise InputError(f"the history holds {inter.n_users} users; upload one shopper's rows", path)
    order = np.argsort(inter.timestamp, kind="stable")
    return [inter.item_ids[i] for i in inter.item_index[order]]


def recommend(ws: Workspace, model: str, history: list[str], *, user_id: str = "upload", k: int = 12):
    """The backbone's PreferenceCondition for a shopper given their history (the one preference path)."""
    from recommenders.preference import ShopperEvents, preference

    if not history:
        raise InputError("the shopper has no history to recommend from")
    backbone = ws.recommender(model)
    return preference(backbone, ShopperEvents(user_id, list(history)), catalog=ws.catalog(), k=k)


def item_gallery(ws: Workspace, item_ids: list[str], scores: dict[str, float] | None = None) -> list[tuple]:
    """(image, caption) pairs for a gallery: the catalog image and title (and score) of each item."""
    cat = ws.catalog()
    out = []
    for iid in item_ids:
        caption = f"{iid}: {cat[iid].title}"
        if scores is not None and iid in scores:
            caption += f" ({scores[iid]:.3f})"
        out.append((on_white(cat.load_image(iid)), caption))
    return out


def on_white(image):
    """An RGBA product picture flattened on white (transparent pixels would show black)."""
    from PIL import Image

    if image.mode != "RGBA":
        return image.convert("RGB")
    canvas = Image.new("RGB", image.size, (255, 255, 255))
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas


def condition_summary(condition, truth: dict[str, list[str]] | None = None) -> str:
    """Markdown lines: why (backbone, top color and pattern, the shares of history / backbone / prior), the
    condition's heaviest attributes, and the shopper's true taste when known."""
    from recommenders.preference import why_line

    parts = []
    for kind, weights in condition.attributes.items():
        top = list(weights.items())[:2]
        parts.append(f"**{kind}**: " + ", ".join(f"{v} {w:.2f}" for v, w in top))
    text = f"**Why:** {why_line(condition)}\n\nPreference from `{condition.source}`: " + "; ".join(parts)
    if truth:
        text += "\n\nTrue taste (demo shop ground truth): " + "; ".join(
            f"**{kind}**: {', '.join(values)}" for kind, values in truth.items())
    return text


def true_taste(ws: Workspace, user_id: str, n: int = 2) -> dict[str, list[str]] | None:
    """A demo shopper's favourite values per attribute (None for uploaded histories)."""
    try:
        return ws.shop().true_top_attributes(user_id, n=n)
    except (InputError, Unavailable):
        return None


def personalize(ws: Workspace, condition, out_dir: Path, *, category: str | None = None, n_candidates: int = 4,
                seed: int = 0) -> list[Any]:
    """Personalized product images for a condition, best first, saved with a manifest in `out_dir`."""
    from . import engine

    if not 1 <= n_candidates <= ws.config.max_candidates:
        raise InputError(f"candidates must be 1..{ws.config.max_candidates}, got {n_candidates}")
    return engine.product_images(ws, condition, out_dir, category=category, n_candidates=n_candidates, seed=seed)


def creative_gallery(creatives: list[Any], out_dir: Path) -> list[tuple[str, str]]:
    """(image path, caption with scores) of saved creatives."""
    out = []
    for c in creatives:
        path = Path(c.image_path)
        path = path if path.is_absolute() else Path(out_dir) / path
        score = ", ".join(f"{k} {v:.3f}" for k, v in sorted(c.scores.items()))
        out.append((str(path), f"seed {c.seed}" + (f": {score}" if score else "")))
    return out


def loop_store(ws: Workspace):
    """The A/B store the app was started with (`--ab-db`): the loop's answers are feedback events there."""
    from app.ab.store import ABStore

    return ABStore(ws.config.ab_db)


def loop_shop(ws: Workspace) -> str:
    """The shop spec `app.ab.feedback.shopper_posterior` reads (histories and the population prior)."""
    return str(ws.config.shop) if ws.config.shop else "demo"


def loop_pool(ws: Workspace):
    """The creatives the loop shows (catalog renders read by the scorer's probes), once per process."""
    from app.feedback_loop import ensure_pool

    return ws.cached(f"loop-pool:{ws.config.ab_db}", lambda: ensure_pool(loop_store(ws), ws.catalog()))


def with_feedback(ws: Workspace, condition, user_id: str):
    """The condition updated by the shopper's stored answers and A/B votes (unchanged without any)."""
    from app.feedback_loop import feedback_condition

    return feedback_condition(condition, loop_store(ws), user_id, loop_shop(ws))


def loop_question(ws: Workspace, user_id: str, seed: int = 0) -> tuple[tuple[str, str], str]:
    """The next pair to ask a shopper about (elicit policy) and a line on her current condition."""
    from app.feedback_loop import next_pair, posterior, question_line

    _, post = posterior(loop_store(ws), user_id, loop_shop(ws))
    pair = next_pair(loop_pool(ws), post, seed, len(post.choices))
    return pair, question_line(user_id, len(post.choices), post.weights())


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    try:
        users, models, categories = tab_choices(ws)
    except Unavailable as e:
        gr.Markdown(f"**Not available:** {e}")
        return
    with gr.Row():
        with gr.Column(scale=1):
            user = gr.Dropdown(users, value=users[0][1] if users else None, label="Demo shopper (type an id)",
                               elem_id="shopper-user", filterable=True, allow_custom_value=True)
            upload = gr.File(label="…or upload a history CSV (user_id,item_id,timestamp)", file_types=[".csv"])
            model = gr.Dropdown(models, value=models[0] if models else None, label="Recommender backbone",
                                elem_id="shopper-model", filterable=True)
            category = gr.Dropdown(categories, value="any", label="Product category")
            with gr.Row():
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="shopper-seed")
                n_cand = gr.Slider(1, ws.config.max_candidates, value=4, step=1, label="Candidates")
            with gr.Row():
                recommend_btn = gr.Button("Recommend", elem_id="shopper-recommend")
                generate_btn = gr.Button("Generate images", variant="primary", elem_id="shopper-generate")
                stop_btn = gr.Button("Cancel", variant="stop", elem_id="shopper-cancel")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="shopper-status")
            why = gr.Markdown(elem_id="shopper-why")
            history = gr.Gallery(label="History (latest)", columns=6, height=200, elem_id="shopper-history",
                                 object_fit="contain")
            recs = gr.Gallery(label="Recommendations (score)", columns=6, height=200, elem_id="shopper-recs",
                              object_fit="contain")
            images = gr.Gallery(label="Personalized product images (best first)", columns=4, height=300,
                                object_fit="contain",
                                elem_id="shopper-images")
            with gr.Row():
                send_btn = gr.Button("Send to Studio (the selected image, or the first)", size="sm",
                                     elem_id="shopper-send-studio", scale=0)
                send_status = gr.Markdown(elem_id="shopper-send-status")
    with gr.Group():
        gr.Markdown("### Which do you prefer?\nTwo creatives chosen to tell the most about what is still "
                    "uncertain; each answer is stored and updates the shopper's condition.")
        with gr.Row():
            loop_start = gr.Button("Ask me", elem_id="shopper-loop-start")
            loop_gen = gr.Button("Generate from updated condition", elem_id="shopper-loop-generate")
        loop_status = gr.Markdown(elem_id="shopper-loop-status")
        with gr.Row():
            loop_a = gr.Image(label="A", type="pil", height=220, interactive=False, elem_id="shopper-loop-a")
            loop_b = gr.Image(label="B", type="pil", height=220, interactive=False, elem_id="shopper-loop-b")
        with gr.Row():
            pick_a = gr.Button("A", elem_id="shopper-loop-pick-a")
            pick_b = gr.Button("B", elem_id="shopper-loop-pick-b")
        loop_change = gr.Markdown(elem_id="shopper-loop-change")
    condition = gr.State(None)
    base_condition = gr.State(None)  # the backbone's condition before any feedback (what answers update)
    loop_pair = gr.State(None)
    last = shared["last_generation"]

    def resolve_history(user_id, upload_path):
        if upload_path:
            return "upload", history_from_csv(ws, upload_path)
        uid = pick_user(ws, user_id)
        if not uid:
            raise InputError("pick a demo shopper or upload a history")
        return uid, user_history(ws, uid)

    def on_recommend(user_id, upload_path, model_name, progress=gr.Progress(track_tqdm=True)):
        try:
            uid, hist = resolve_history(user_id, upload_path)
            progress(0, desc=f"{model_name}: loading or training on the demo shop")
            cond = recommend(ws, model_name, hist, user_id=uid)
            base = cond
            if uid != "upload":  # her stored answers and votes (Shopper loop, A/B tab) update it
                cond = with_feedback(ws, cond, uid)
        except (InputError, Unavailable) as e:
            return f"Error: {e}", "", [], [], None, None
        from recommenders.preference import why_line

        scores = dict(cond.item_scores)
        return (condition_summary(cond, true_taste(ws, uid)), why_line(cond),
                item_gallery(ws, hist[::-1][:N_SHOWN_HISTORY]),
                item_gallery(ws, [i for i, _ in cond.item_scores[:N_SHOWN_HISTORY]], scores), cond.to_dict(),
                base.to_dict())

    def show_pair(pair):
        cat = ws.catalog()
        return on_white(cat.load_image(pair[0])), on_white(cat.load_image(pair[1]))

    def on_loop_start(user_id, upload_path, seed_, progress=gr.Progress()):
        try:
            if upload_path:
                raise InputError("the loop asks a demo shopper: clear the uploaded history first")
            uid = pick_user(ws, user_id)
            if not uid:
                raise InputError("pick a demo shopper")
            progress(0, desc="reading the creatives through the scorer's probes (first time only)")
            pair, line = loop_question(ws, uid, int(seed_ or 0))
        except (InputError, Unavailable) as e:
            return f"Error: {e}", None, None, None
        import uuid

        return line, *show_pair(pair), {"user": uid, "pair": list(pair), "token": uuid.uuid4().hex}

    def on_loop_pick(side, pair, base, user_id, upload_path, model_name, seed_):
        from app.feedback_loop import answer
        from recommenders.condition import PreferenceCondition

        try:
            if not pair:
                raise InputError("press 'Ask me' first")
            uid = pair["user"]
            if base is None or base.get("user_id") != uid:
                base = recommend(ws, model_name, user_history(ws, uid), user_id=uid).to_dict()
            chosen, other = pair["pair"] if side == 0 else pair["pair"][::-1]
            r = answer(loop_store(ws), loop_pool(ws), uid, chosen, other, PreferenceCondition.from_dict(base),
                       shop=loop_shop(ws), seed=int(seed_ or 0), event_id=pair["token"])
        except (InputError, Unavailable) as e:
            return (f"Error: {e}", gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update(),
                    gr.update())
        import uuid

        nxt = {"user": uid, "pair": list(r.next_pair), "token": uuid.uuid4().hex}
        return (r.question(uid), *show_pair(r.next_pair), nxt, r.text(chosen, other), r.condition.to_dict(), base,
                condition_summary(r.condition, true_taste(ws, uid)))

    def on_generate(cond, user_id, upload_path, model_name, category_, seed_, n_, request: gr.Request,
                    progress=gr.Progress(track_tqdm=True)):
        from recommenders.condition import PreferenceCondition

        try:
            with JOBS.job(session_id(request), "shopper"), reporting(gradio_waiting(progress)):
                if cond is None:
                    uid, hist = resolve_history(user_id, upload_path)
                    cond = recommend(ws, model_name, hist, user_id=uid).to_dict()
                out_dir = ws.session_dir(session_id(request), "shopper")
                creatives = personalize(ws, PreferenceCondition.from_dict(cond), out_dir,
                                        category=None if category_ == "any" else category_,
                                        n_candidates=int(n_), seed=int(seed_ or 0))
        except (InputError, Unavailable) as e:
            return f"Error: {e}", [], cond, gr.update()
        except Cancelled:
            return cancelled_status("shopper"), [], cond, gr.update()
        segment = None
        try:
            segment = ws.shop().segment_of(cond["user_id"])
        except (InputError, Unavailable):
            pass
        record = {"creatives": [c.to_dict() for c in creatives], "segment": segment, "out_dir": str(out_dir)}
        shown = out_dir.relative_to(ws.config.out_dir) if ws.inside_output(out_dir) else out_dir
        summary = condition_summary(PreferenceCondition.from_dict(cond), true_taste(ws, cond["user_id"]))
        return (f"Made {len(creatives)} image(s) for `{cond['user_id']}` in `{shown}`.\n\n{summary}",
                creative_gallery(creatives, out_dir), cond, record)

    inputs = [user, upload, model]
    rec_outputs = [status, why, history, recs, condition, base_condition]
    rec_event = recommend_btn.click(on_recommend, inputs, rec_outputs, api_name="shopper_recommend")
    for changed in (user, model, upload):  # a new shopper or model: show their history and recommendations
        changed.change(on_recommend, inputs, rec_outputs, api_visibility="private")
    loop_start.click(on_loop_start, [user, upload, seed], [loop_status, loop_a, loop_b, loop_pair],
                     api_name="shopper_loop_ask")
    pick_outputs = [loop_status, loop_a, loop_b, loop_pair, loop_change, condition, base_condition, status]
    pick_inputs = [loop_pair, base_condition, user, upload, model, seed]

    def on_pick_a(pair, base, user_id, upload_path, model_name, seed_):
        return on_loop_pick(0, pair, base, user_id, upload_path, model_name, seed_)

    def on_pick_b(pair, base, user_id, upload_path, model_name, seed_):
        return on_loop_pick(1, pair, base, user_id, upload_path, model_name, seed_)

    pick_a.click(on_pick_a, pick_inputs, pick_outputs, api_name="shopper_loop_pick_a")
    pick_b.click(on_pick_b, pick_inputs, pick_outputs, api_name="shopper_loop_pick_b")
    gen_event = generate_btn.click(on_generate, [condition, user, upload, model, category, seed, n_cand],
                                   [status, images, condition, last], **GENERATION_EVENT,
                                   api_name="shopper_generate")
    loop_gen_event = loop_gen.click(on_generate, [condition, user, upload, model, category, seed, n_cand],
                                    [status, images, condition, last], **GENERATION_EVENT,
                                    api_name="shopper_loop_generate")
    # Cancel only this session's events: Gradio scopes `cancels` to the session that clicked, and
    # `cancel_handler` stops this session's running denoising loop at its next step.
    stop_btn.click(cancel_handler("shopper"), None, None, cancels=[rec_event, gen_event, loop_gen_event], queue=False,
                   api_visibility="private")
    shared["loaders"].append((on_recommend, inputs, rec_outputs))

    selected = gr.State(None)  # the gallery position last clicked (None: the first image)

    def on_select(evt: gr.SelectData):
        return evt.index

    images.select(on_select, None, [selected], queue=False, api_visibility="private")
    images.change(lambda: None, None, [selected], queue=False, api_visibility="private")
    shared["send_to_studio"] = (send_btn, selected)  # wired to the Studio by app.ui.send_to_studio.link
    shared["send_status"] = send_status
