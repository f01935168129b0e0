"""Send to Studio: a Shopper image (and its prompt) becomes the Background & banner studio's product upload.

The Studio keeps a product's pixels and needs its outline, so the image is cut out of its plain
background first (`pipelines.cutout`) and stored as an RGBA PNG in a fresh session folder; the
Studio's own checks then treat it as any upload (a picture without a plain background is refused
there with the advice to add a mask).
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
from pathlib import Path
from typing import Any

from core.errors import InputError

from .workspace import Workspace, session_id

STUDIO_TAB = "tab-studio"


def picked_creative(record: dict | None, index: int | None) -> tuple[dict, Path]:
    """The creative record shown at gallery position `index` of the last Shopper run, and its image file."""
    if not record or not record.get("creatives"):
        raise InputError("generate images in the Shopper tab first")
    creatives = record["creatives"]
    if index is None:
        index = 0
    if not 0 <= int(index) < len(creatives):
        raise InputError(f"no image {int(index) + 1} in the last run (it made {len(creatives)})")
    creative = creatives[int(index)]
    path = Path(creative["image_path"])
    return creative, path if path.is_absolute() else Path(record["out_dir"]) / path


def studio_product(ws: Workspace, record: dict | None, index: int | None, session: str) -> dict[str, Any]:
    """The picked image as a Studio product: {'path' (RGBA PNG), 'prompt', 'user', 'note'}."""
    from PIL import Image

    from core.io import atomic_save_image
    from pipelines.cutout import has_cutout, plain_background_cutout

    creative, image_path = picked_creative(record, index)
    if not ws.inside_output(image_path) or not image_path.is_file():
        raise InputError("that image is no longer in the output folder: generate again")
    with Image.open(image_path) as im:
        rgba = plain_background_cutout(im)
    out = atomic_save_image(rgba, ws.session_dir(session, "send") / f"{creative['creative_id']}.png")
    note = ("cut out of its plain background" if has_cutout(rgba)
            else "no plain background found: add a mask under 'Mask' before generating")
    return {"path": str(out), "prompt": creative.get("prompt", ""), "user": creative.get("user_id") or "",
            "note": f"From the Shopper: image {int(index or 0) + 1} (seed {creative.get('seed')}), {note}; "
                    f"its prompt is in the Prompt box."}


def link(ws: Workspace, shared: dict[str, Any]) -> None:
    """Wire the Shopper's 'Send to Studio' button to the Studio's product, prompt and shopper (after both tabs)."""
    import gradio as gr

    send = shared.get("send_to_studio")
    studio = shared.get("studio")
    if send is None or studio is None:
        return
    button, selected = send

    def on_send(record, index, request: gr.Request):
        try:
            got = studio_product(ws, record, index, session_id(request))
        except InputError as e:
            return f"Error: {e}", gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        users = studio["user_values"]
        return ("", got["path"], None, got["prompt"], got["user"] if got["user"] in users else gr.update(),
                got["note"], gr.Tabs(selected=STUDIO_TAB))

    button.click(on_send, [shared["last_generation"], selected],
                 [shared["send_status"], studio["product"], studio["item"], studio["prompt"], studio["user"],
                  studio["status"], shared["tabs"]], api_visibility="private")
