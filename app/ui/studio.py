"""Background & banner studio: a product (a catalog item, or a picture) in, personalized scenes and banners out.

The upload (PNG with alpha, or any picture plus a mask) is checked and stored as an RGBA PNG in
the session folder first, so every Creative's record points at a file that will still be there
to regenerate it. Headline and scene follow the product's own words (a catalog item's attributes,
or what the shipped attribute classifier reads off an upload); the shopper adds style and scene.
The prompt, negative prompt, steps, guidance, size and seed are on the page, as A1111 users expect,
and a PNG that Atelier (or A1111) wrote restores them (`core.pnginfo`).
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
from pathlib import Path
from typing import Any

import random
import tempfile

import numpy as np

from core import limits
from core.errors import InputError
from core.validate import check_prompt

from .cancel import JOBS, Cancelled
from .engine import GENERATION_EVENT, run
from .progress import RunProgress, gradio_reporter
from .waiting import gradio_waiting, reporting
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


def product_words(ws: Workspace, item_id: str | None, product_path: str | Path | None) -> dict[str, str]:
    """The product's own category and attributes: the catalog's for an item, the classifier's for an upload.

    {} when neither is known (no classifier in this build): then nothing about the product is made up.
    """
    if item_id:
        item = ws.catalog()[item_id]
        return {"category": item.category, **item.attributes}
    if product_path is None:
        return {}
    try:
        from PIL import Image

        from pipelines.attribute_classifier import AttributeClassifier

        model = ws.cached("attribute-classifier", AttributeClassifier.load)
        with Image.open(product_path) as im:
            rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)  # the classifier saw products on plain grounds, not on transparency
        return dict(model.predict([white.convert("RGB")])[0])
    except (ImportError, InputError, OSError):
        return {}


def product_phrase(words: dict[str, str]) -> str:
    """'red checked trousers' from the product's words ('' when none are known)."""
    from pipelines.conditioning import keyword_prompt

    return keyword_prompt(None, "a {color} {pattern} {category}", **words) if words else ""


def studio_texts(condition, words: dict[str, str], title: str | None) -> dict[str, str]:
    """Background prompt, banner backdrop prompt and headline for a product: its words, the shopper's scene."""
    from pipelines.banner import default_headline
    from pipelines.conditioning import keyword_prompt

    if words:
        background = keyword_prompt(condition, "background", **words)
        banner = keyword_prompt(condition, "banner", **words)
    else:  # nothing known about the product: no color or pattern borrowed from the shopper
        background = banner = keyword_prompt(condition, "background_plain")
    name = title or product_phrase(words)
    return {"background": background, "banner": banner,
            "headline": default_headline(None, name) if name else "New in, picked for you"}


def user_message(e: InputError, names: dict[str, str]) -> str:
    """The error as the user should read it: their own file names, never a server or temporary upload path."""
    path = e.path
    if path is not None:
        if path in names:
            path = names[path]
        elif _is_temp(path):
            path = Path(path).name
    text = str(InputError(e.problem, path, e.line))
    for server_path, name in names.items():
        text = text.replace(server_path, name)
    return text


def _is_temp(path: str) -> bool:
    try:
        Path(path).resolve().relative_to(Path(tempfile.gettempdir()).resolve())
        return True
    except (ValueError, OSError):
        return False


def parse_background_size(text: str | None) -> tuple[int | None, int | None]:
    """'' -> the model's size; 'WxH' -> (W, H) within the bounds every surface uses."""
    from core.validate import parse_size

    if not text or not str(text).strip():
        return None, None
    return parse_size(str(text).strip(), what="background size")


def make_creatives(ws: Workspace, condition, product_path: Path | None, out_dir: Path, *, sizes: list[str],
                   backgrounds: int, seed: int, headline: str | None, cta: str, item_id: str | None = None,
                   prompt: str | None = None, negative_prompt: str | None = None, steps: int | None = None,
                   guidance: float = 7.5, size: str | None = None, on_part=None) -> dict[str, list]:
    """Backgrounds (product pixels kept) and banners at `sizes` for one shopper, saved in `out_dir`.

    Each background seed and each banner size is its own pipeline call, saved as soon as it is done:
    a Cancel keeps every finished image (`on_part(kind, creatives)` is told after each).
    """
    if not 0 <= backgrounds <= ws.config.max_candidates:
        raise InputError(f"backgrounds must be 0..{ws.config.max_candidates}, got {backgrounds}")
    if len(sizes) > MAX_SIZES:
        raise InputError(f"at most {MAX_SIZES} banner sizes at once")
    headline = check_text(headline, "headline", limits.HEADLINE_CHARS)
    cta = check_text(cta, "call to action", limits.CTA_CHARS)
    prompt = check_prompt(prompt, what="the prompt", allow_empty=True, max_chars=limits.PROMPT_CHARS) or None
    negative = check_prompt(negative_prompt, what="the negative prompt", allow_empty=True,
                            max_chars=limits.NEGATIVE_PROMPT_CHARS)
    steps = int(limits.STEPS.check(int(steps or ws.config.steps), "steps"))
    guidance = float(limits.GUIDANCE.check(float(guidance), "guidance"))
    seed = int(limits.SEED.check(int(seed), "seed"))
    width, height = parse_background_size(size)
    title = ws.catalog()[item_id].title if item_id else None
    texts = studio_texts(condition, product_words(ws, item_id, product_path), title)
    source = {"item_id": item_id} if item_id else {"product_path": str(product_path)}
    common = dict(steps=steps, guidance=guidance, **({"negative_prompt": negative} if negative is not None else {}))
    out: dict[str, list] = {"background": [], "banner": [], "texts": texts}
    for i in range(backgrounds):
        made = run(ws, "background", out_dir, condition, **source, num_candidates=1, seed=seed + i,
                   prompt=prompt or texts["background"], width=width, height=height, **common)
        out["background"] += made
        if on_part is not None:
            on_part("background", made)
    for banner_size in sizes:
        made = run(ws, "banner", out_dir, condition, **source, sizes=[banner_size], num_candidates=1, seed=seed,
                   headline=headline or texts["headline"], cta=cta or "Shop now", prompt=prompt or texts["banner"],
                   **common)
        out["banner"] += made
        if on_part is not None:
            on_part("banner", made)
    return out


def total_steps(backgrounds: int, sizes: list[str], steps: int) -> int:
    """Denoising steps of one Studio run: one scene per background seed and per banner size."""
    return max(1, (int(backgrounds) + len(sizes)) * int(steps))


def gallery(creatives: list, out_dir: Path) -> list[tuple[str, str]]:
    """(image path, caption) for saved creatives: what it is, its size and seed."""
    items = []
    for c in creatives:
        p = Path(c.image_path)
        items.append((str(p if p.is_absolute() else Path(out_dir) / p),
                      f"{c.pipeline} {c.width}x{c.height} · seed {c.seed}"))
    return items


def finished(out_dir: Path) -> dict[str, list]:
    """The creatives already saved in a Studio folder (what a Cancel keeps)."""
    from core.creative import Manifest

    out: dict[str, list] = {"background": [], "banner": []}
    path = Path(out_dir) / "manifest.jsonl"
    if path.is_file():
        for c in Manifest(path).load():
            out.setdefault(c.pipeline, []).append(c)
    return out


def item_choices(ws: Workspace) -> list[tuple[str, str]]:
    """(title (id), id) for every catalog item, the choices of the product picker (as the CLI's --item)."""
    cat = ws.catalog()
    return [(f"{cat[i].title} ({i})", i) for i in cat.item_ids]


def restore_settings(path: str | Path, shown_name: str) -> dict[str, Any]:
    """The settings of a dropped PNG (`core.pnginfo`), with the user's file name in any error."""
    from core.pnginfo import read_png_parameters

    return read_png_parameters(path, shown_name=shown_name)


# The folder of each session's running Studio job, so its Cancel can show what was finished.
_RUNNING: dict[str, Path] = {}


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    from .batch_tab import zip_folder
    from .shopper import demo_users, recommend, user_history

    try:
        users = demo_users(ws)
        models = ws.available_models()
        items = item_choices(ws)
        from pipelines.conditioning import NEGATIVE_PROMPT
        from pipelines.layout import BANNER_SIZES
    except (Unavailable, ImportError) as e:
        gr.Markdown(f"**Not available:** {e}")
        return
    user_values = {v for _, v in users}
    with gr.Row():
        with gr.Column(scale=1):
            item = gr.Dropdown(items, value=None, label="Catalog product (as the CLI's --item; or upload below)",
                               elem_id="studio-item", filterable=True)
            with gr.Row():
                product = gr.File(label="…or a product PNG with alpha (or any picture + a mask)",
                                  file_types=["image"], elem_id="studio-product", height=140)
                thumb = gr.Image(label="Product", interactive=False, height=140, elem_id="studio-thumb",
                                 buttons=[])
            with gr.Accordion("Mask (optional, for a picture without alpha)", open=False):
                mask = gr.File(label="Mask (white = product)", file_types=["image"], elem_id="studio-mask",
                               height=120)
            user = gr.Dropdown([("(no personalization)", "")] + users, value=users[0][1] if users else "",
                               label="For shopper", elem_id="studio-user")
            sizes = gr.CheckboxGroup(list(BANNER_SIZES), value=list(DEFAULT_SIZES), label="Banner sizes",
                                     elem_id="studio-sizes")
            n_bg = gr.Slider(0, 4, value=2, step=1, label="Backgrounds", elem_id="studio-n-bg")
            with gr.Row():
                headline = gr.Textbox(label="Headline (empty: from the product)", max_length=limits.HEADLINE_CHARS,
                                      elem_id="studio-headline")
                cta = gr.Textbox("Shop now", label="Call to action", max_length=limits.CTA_CHARS)
            prompt = gr.Textbox(label="Prompt (empty: the product's words and the shopper's scene)", lines=2,
                                max_length=limits.PROMPT_CHARS, elem_id="studio-prompt")
            negative = gr.Textbox(NEGATIVE_PROMPT, label="Negative prompt", lines=1,
                                  max_length=limits.NEGATIVE_PROMPT_CHARS, elem_id="studio-negative")
            with gr.Row():
                steps = gr.Slider(1, 150, value=ws.config.steps, step=1, label="Steps", elem_id="studio-steps")
                guidance = gr.Slider(0, 20, value=7.5, step=0.5, label="Guidance (CFG scale)",
                                     elem_id="studio-guidance")
            with gr.Row():
                size = gr.Textbox(label="Background size WxH (empty: the model's)", elem_id="studio-size")
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=limits.SEED.high,
                                 elem_id="studio-seed")
                random_seed = gr.Button("Random seed", size="sm", elem_id="studio-random-seed")
                reuse_seed = gr.Button("Reuse last seed", size="sm", elem_id="studio-reuse-seed")
            settings_png = gr.File(label="Drop a PNG made by Atelier or A1111 to restore its settings",
                                   file_types=[".png"], elem_id="studio-pnginfo", height=100)
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="studio-generate")
                stop = gr.Button("Cancel", variant="stop", elem_id="studio-cancel")
            status = gr.Markdown(elem_id="studio-status")  # next to the buttons: errors show where the click was
        with gr.Column(scale=2):
            used = gr.Markdown(elem_id="studio-used")
            bg_gallery = gr.Gallery(label="Backgrounds (product pixels unchanged)", columns=4, height=300,
                                    object_fit="contain", elem_id="studio-backgrounds")
            banner_gallery = gr.Gallery(label="Banners", columns=2, height=380, elem_id="studio-banners",
                                        object_fit="contain")
            download = gr.File(label="Download all (zip)", interactive=False, elem_id="studio-zip")
    last_seed = gr.State(None)
    shared["studio"] = {"product": product, "item": item, "prompt": prompt, "user": user, "status": status,
                        "user_values": user_values | {""}}  # what the Shopper's "Send to Studio" fills

    def on_product(item_id, upload):
        if upload:
            return str(upload)
        if item_id:
            return str(ws.catalog().image_file(item_id))
        return None

    def on_generate(item_, product_, mask_, user_, sizes_, n_bg_, headline_, cta_, prompt_, negative_, steps_,
                    guidance_, size_, seed_, request: gr.Request, progress=gr.Progress()):
        names = {str(p): Path(p).name for p in (product_, mask_) if p}
        sid = session_id(request)
        shown_bg: list = []
        shown_banner: list = []
        try:
            if not product_ and not item_:
                raise InputError("pick a catalog product or upload a product picture first")
            sizes_ = list(sizes_ or [])
            out_dir = ws.session_dir(sid, "studio")
            product_path = None
            if not item_:
                product_path = prepare_product(product_, mask_, out_dir)
                names[str(product_path)] = Path(product_).name
            _RUNNING[sid] = out_dir
            total = total_steps(int(n_bg_), sizes_, int(steps_ or ws.config.steps))
            tracker = RunProgress(total, gradio_reporter(progress))
            progress(0, desc=progress_line_start(total))
            seed_value = int(seed_ or 0)
            condition = None
            if user_:
                with JOBS.job(sid, "studio"):
                    condition = recommend(ws, models[0], user_history(ws, user_), user_id=user_)
            kinds = [("background", seed_value + i) for i in range(int(n_bg_))] + [("banner", s) for s in sizes_]
            texts = None
            for kind, part in kinds:  # one pipeline call per image: each is on screen (and kept) once done
                with JOBS.job(sid, "studio"), reporting(gradio_waiting(progress)), tracker.counting():
                    made = make_creatives(
                        ws, condition, product_path, out_dir, item_id=item_ or None,
                        sizes=[part] if kind == "banner" else [], backgrounds=1 if kind == "background" else 0,
                        seed=part if kind == "background" else seed_value, headline=headline_, cta=cta_,
                        prompt=prompt_, negative_prompt=negative_, steps=steps_, guidance=guidance_, size=size_)
                texts = made["texts"]
                shown_bg += made["background"]
                shown_banner += made["banner"]
                yield (f"Made {len(shown_bg) + len(shown_banner)} of {len(kinds)} image(s)…",
                       gallery(shown_bg, out_dir), gallery(shown_banner, out_dir), None, seed_value,
                       used_text(shown_bg, shown_banner, texts))
            archive = zip_folder(out_dir, out_dir.parent / f"{out_dir.name}.zip") if kinds else None
        except (InputError, Unavailable) as e:
            message = user_message(e, names) if isinstance(e, InputError) else str(e)
            yield f"Error: {message}", gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
            return
        except Cancelled:
            return
        finally:
            _RUNNING.pop(sid, None)
        n = len(shown_bg) + len(shown_banner)
        shown = out_dir.relative_to(ws.config.out_dir) if ws.inside_output(out_dir) else out_dir
        yield (f"Made {n} image(s) in `{shown}` (seed {seed_value}).", gallery(shown_bg, out_dir),
               gallery(shown_banner, out_dir), str(archive) if archive else None, seed_value,
               used_text(shown_bg, shown_banner, texts))

    def cancel_studio(request: gr.Request):
        sid = session_id(request)
        JOBS.cancel(sid, "studio")
        out_dir = _RUNNING.get(sid)
        if out_dir is None:
            return "Cancelled.", gr.update(), gr.update(), gr.update()
        kept = finished(out_dir)
        n = len(kept["background"]) + len(kept["banner"])
        archive = zip_folder(out_dir, out_dir.parent / f"{out_dir.name}.zip") if n else None
        return (f"Cancelled: kept the {n} finished image(s); the job stopped at its next denoising step.",
                gallery(kept["background"], out_dir), gallery(kept["banner"], out_dir),
                str(archive) if archive else None)

    def on_settings_png(path):
        keep = gr.update()
        if not path:
            return (keep,) * 9
        try:
            got = restore_settings(path, Path(path).name)
        except InputError as e:
            return (f"Error: {user_message(e, {str(path): Path(path).name})}",) + (keep,) * 8
        size_text = f"{got['width']}x{got['height']}" if "width" in got else None
        is_banner = got.get("pipeline") == "banner" and size_text in BANNER_SIZES
        notes = [f"steps {got['steps']}"] + [f"{k} {got[k]}" for k in ("guidance", "seed") if k in got]
        if size_text:
            notes.append(f"size {size_text}")
        return (f"Restored the settings of `{Path(path).name}`: " + ", ".join(notes) + ".",
                got["prompt"], got["negative_prompt"], got["steps"], got.get("guidance", keep), got.get("seed", keep),
                keep if is_banner or not size_text else size_text, [size_text] if is_banner else keep,
                got["user"] if got.get("user") in user_values else keep)

    for source in (item, product):
        source.change(on_product, [item, product], [thumb], api_visibility="private", queue=False)
    random_seed.click(lambda: random.randrange(limits.SEED.high + 1), None, [seed], queue=False,
                      api_visibility="private")
    reuse_seed.click(lambda last, now: now if last is None else last, [last_seed, seed], [seed], queue=False,
                     api_visibility="private")
    settings_png.upload(on_settings_png, [settings_png],
                        [status, prompt, negative, steps, guidance, seed, size, sizes, user],
                        api_visibility="private")
    event = go.click(on_generate, [item, product, mask, user, sizes, n_bg, headline, cta, prompt, negative, steps,
                                   guidance, size, seed],
                     [status, bg_gallery, banner_gallery, download, last_seed, used], **GENERATION_EVENT,
                     api_name="studio_generate", show_progress_on=[status])
    stop.click(cancel_studio, None, [status, bg_gallery, banner_gallery, download], cancels=[event], queue=False,
               api_visibility="private")


def progress_line_start(total: int) -> str:
    """The line shown before the first step: the run's size in steps."""
    return f"step 0/{total} · 0%"


def used_text(backgrounds: list, banners: list, texts: dict | None) -> str:
    """What the images were made from: the prompts and headline, so nothing is hidden in the manifest."""
    lines = []
    for what, made in (("Background prompt", backgrounds), ("Banner backdrop prompt", banners)):
        if made:
            lines.append(f"**{what}:** {made[0].prompt}")
    if banners:
        lines.append(f"**Headline:** {banners[0].extra.get('params', {}).get('headline', '')}")
    if (backgrounds or banners) and (backgrounds or banners)[0].negative_prompt:
        lines.append(f"**Negative prompt:** {(backgrounds or banners)[0].negative_prompt}")
    return "\n\n".join(lines)
