"""Background & banner studio: a product picture in, personalized scenes and ad banners out, zipped.

The upload (PNG with alpha, or any picture plus a mask) is checked and stored as an RGBA PNG in
the session folder first, so every Creative's record points at a file that will still be there
to regenerate it.
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
from pathlib import Path
from typing import Any

import numpy as np

from core import limits
from core.errors import InputError
from core.validate import check_prompt

from .cancel import JOBS, Cancelled, cancel_handler, cancelled_status
from .engine import CONCURRENCY_ID, run
from .workspace import Unavailable, Workspace, session_id

MAX_SIDE = limits.UPLOAD_SIDE  # pixels; bigger uploads are refused before any work
DEFAULT_SIZES = ("300x250", "728x90")
MAX_SIZES = limits.BANNER_SIZES_PER_REQUEST


def check_text(text: str | None, what: str, max_len: int) -> str | None:
    """Banner text as typed: the CLI's prompt check (`core.validate.check_prompt`), on one line."""
    if text is None:
        return None
    if any(ch in text for ch in "\n\r\t"):
        raise InputError(f"the {what} holds line breaks or tabs; type it on one line")
    return check_prompt(text, what=f"the {what}", allow_empty=True, max_chars=max_len) or None


def load_upload_image(path: str | Path, *, what: str = "image"):
    """Open an uploaded picture with the CLI's validator (`core.validate.load_user_image`), or raise InputError.

    The UI refuses what the CLI refuses (empty, non-image, truncated, decompression bomb, animated)
    with the same message, and adds one bound of its own: at most `MAX_SIDE` pixels a side, read
    from the header before decoding. Returns RGBA, or L for a mask.
    """
    from PIL import Image, UnidentifiedImageError

    from core.validate import load_user_image

    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        w = h = 0  # load_user_image below gives the message
    if max(w, h) > MAX_SIDE:
        raise InputError(f"{what} is {w}x{h} pixels; the most is {MAX_SIDE} a side", path)
    image = load_user_image(path)
    return image.convert("L") if what == "mask" else image


def prepare_product(upload: str | Path, mask: str | Path | None, out_dir: Path) -> Path:
    """The product as an RGBA PNG in `out_dir`: alpha from the PNG, or from the mask (white = product)."""

    from core.io import atomic_save_image

    product = load_upload_image(upload, what="product image")
    if mask is not None:
        m = load_upload_image(mask, what="mask")
        if m.size != product.size:
            raise InputError(f"mask is {m.size[0]}x{m.size[1]} but the product is {product.size[0]}x{product.size[1]}",
                             mask)
        product.putalpha(m.point(lambda v: 255 if v >= 128 else 0))
    alpha = np.asarray(product.getchannel("A"))
    if alpha.min() == 255:
        raise InputError("the product has no transparent background: upload a PNG with alpha, or add a mask", upload)
    if alpha.max() == 0:
        raise InputError("the product is fully transparent (or the mask is empty)", upload)
    return atomic_save_image(product, Path(out_dir) / "product.png")


def make_creatives(ws: Workspace, condition, product_path: Path, out_dir: Path, *, sizes: list[str],
                   backgrounds: int, seed: int, headline: str | None, cta: str) -> dict[str, list]:
    """Backgrounds (product pixels kept) and banners at `sizes` for one shopper, saved in `out_dir`."""
    if not 0 <= backgrounds <= ws.config.max_candidates:
        raise InputError(f"backgrounds must be 0..{ws.config.max_candidates}, got {backgrounds}")
    if len(sizes) > MAX_SIZES:
        raise InputError(f"at most {MAX_SIZES} banner sizes at once")
    headline = check_text(headline, "headline", limits.HEADLINE_CHARS)
    cta = check_text(cta, "call to action", limits.CTA_CHARS)
    out: dict[str, list] = {"background": [], "banner": []}
    if backgrounds > 0:
        out["background"] = run(ws, "background", out_dir, condition, product_path=str(product_path),
                                num_candidates=backgrounds, seed=seed)
    if sizes:
        out["banner"] = run(ws, "banner", out_dir, condition, product_path=str(product_path), sizes=list(sizes),
                            num_candidates=1, seed=seed, headline=headline or None, cta=cta or "Shop now")
    return out


def gallery(creatives: list, out_dir: Path) -> list[tuple[str, str]]:
    """(image path, caption) for saved creatives."""
    items = []
    for c in creatives:
        p = Path(c.image_path)
        items.append((str(p if p.is_absolute() else Path(out_dir) / p), f"{c.width}x{c.height} seed {c.seed}"))
    return items


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    from .batch_tab import zip_folder
    from .shopper import demo_users, recommend, user_history

    try:
        users = demo_users(ws)
        models = ws.available_models()
        from pipelines.layout import BANNER_SIZES
    except (Unavailable, ImportError) as e:
        gr.Markdown(f"**Not available:** {e}")
        return
    with gr.Row():
        with gr.Column(scale=1):
            product = gr.File(label="Product PNG with alpha (or any picture + a mask)", file_types=["image"],
                              elem_id="studio-product")
            mask = gr.File(label="Mask (optional, white = product)", file_types=["image"])
            user = gr.Dropdown([("(no personalization)", "")] + users, value=users[0][1] if users else "",
                               label="For shopper")
            sizes = gr.CheckboxGroup(list(BANNER_SIZES), value=list(DEFAULT_SIZES), label="Banner sizes")
            n_bg = gr.Slider(0, 4, value=2, step=1, label="Backgrounds")
            with gr.Row():
                headline = gr.Textbox(label="Headline (empty: from the shopper's taste)",
                                      max_length=limits.HEADLINE_CHARS)
                cta = gr.Textbox("Shop now", label="Call to action", max_length=limits.CTA_CHARS)
            seed = gr.Number(0, label="Seed", precision=0, minimum=0)
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="studio-generate")
                stop = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2):
            status = gr.Markdown()
            bg_gallery = gr.Gallery(label="Backgrounds (product pixels unchanged)", columns=4, height=260,
                                    object_fit="contain",
                                    elem_id="studio-backgrounds")
            banner_gallery = gr.Gallery(label="Banners", columns=2, height=360, elem_id="studio-banners",
                                        object_fit="contain")
            download = gr.File(label="Download all (zip)", interactive=False)

    def on_generate(product_, mask_, user_, sizes_, n_bg_, headline_, cta_, seed_, request: gr.Request,
                    progress=gr.Progress(track_tqdm=True)):
        try:
            if not product_:
                raise InputError("upload a product picture first")
            out_dir = ws.session_dir(session_id(request), "studio")
            product_path = prepare_product(product_, mask_, out_dir)
            with JOBS.job(session_id(request), "studio"):
                condition = recommend(ws, models[0], user_history(ws, user_), user_id=user_) if user_ else None
                made = make_creatives(ws, condition, product_path, out_dir, sizes=list(sizes_ or []),
                                      backgrounds=int(n_bg_), seed=int(seed_ or 0), headline=headline_, cta=cta_)
            archive = zip_folder(out_dir, out_dir.parent / f"{out_dir.name}.zip")
        except (InputError, Unavailable) as e:
            return f"Error: {e}", [], [], None
        except Cancelled:
            return cancelled_status("studio"), [], [], None
        n = len(made["background"]) + len(made["banner"])
        shown = out_dir.relative_to(ws.config.out_dir) if ws.inside_output(out_dir) else out_dir
        return (f"Made {n} image(s) in `{shown}`.", gallery(made["background"], out_dir),
                gallery(made["banner"], out_dir), str(archive))

    event = go.click(on_generate, [product, mask, user, sizes, n_bg, headline, cta, seed],
                     [status, bg_gallery, banner_gallery, download], concurrency_id=CONCURRENCY_ID,
                     api_name="studio_generate")
    stop.click(cancel_handler("studio"), None, None, cancels=[event], queue=False, api_visibility="private")
