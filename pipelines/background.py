"""Product-preserving backgrounds: a new scene around a product whose own pixels stay exactly as shot.

The product's mask comes from its alpha channel (or a mask the user gives). The scene is generated
around it, either by the ControlNet on the product's Canny edges (OpenCV, as in diffusers' docs)
so the scene respects the silhouette, or by inpainting everything outside the mask. Then the
original product pixels are pasted back over the scene: where the product is opaque (or the mask is
set) the output equals the input, byte for byte; only semi-transparent edge pixels are blended.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from core import limits
from core.errors import InputError
from recommenders.condition import PreferenceCondition

from .candidate_scores import rank_output
from .conditioning import NEGATIVE_PROMPT, keyword_prompt
from .personalized import PersonalizedPipeline, PipelineOutput, progress_bar

MODES = ("controlnet", "inpaint")
BACKDROP = (127, 127, 127)  # what the product is flattened on for edges and inpainting


# -- helpers (pure image code, tested on their own) --------------------------------------------
def product_layers(product: Image.Image, mask: Image.Image | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 HxWx3, alpha float HxW in 0..1) of a product from its alpha channel or a given mask."""
    rgb = np.asarray(product.convert("RGB"))
    if mask is not None:
        if mask.size != product.size:
            raise InputError(f"mask is {mask.size[0]}x{mask.size[1]} but the product image is "
                             f"{product.size[0]}x{product.size[1]}")
        alpha = (np.asarray(mask.convert("L")) >= 128).astype(np.float64)
    elif product.mode in ("RGBA", "LA") or "transparency" in product.info:
        alpha = np.asarray(product.convert("RGBA").getchannel("A"), dtype=np.float64) / 255.0
    else:
        raise InputError("the product image has no alpha channel; give a mask (white = product)")
    if alpha.max() <= 0:
        raise InputError("the product mask is empty (no product pixels)")
    if alpha.min() >= 1:
        raise InputError("the product mask covers the whole image; leave room for a background")
    return rgb, alpha


def pad_product(rgb: np.ndarray, alpha: np.ndarray, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """Place the product in the middle of a larger canvas (`padding` x its side on each edge)."""
    h, w = alpha.shape
    py, px = round(h * padding), round(w * padding)
    canvas = np.full((h + 2 * py, w + 2 * px, 3), BACKDROP, dtype=np.uint8)
    canvas[py:py + h, px:px + w] = rgb
    a = np.zeros((h + 2 * py, w + 2 * px))
    a[py:py + h, px:px + w] = alpha
    return canvas, a


def flatten(rgb: np.ndarray, alpha: np.ndarray, backdrop=BACKDROP) -> Image.Image:
    """The product over a flat backdrop (what ControlNet's edges and inpainting see)."""
    out = rgb * alpha[..., None] + np.asarray(backdrop, dtype=np.float64) * (1 - alpha[..., None])
    return Image.fromarray(np.round(out).astype(np.uint8))


def canny_edges(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """Canny edges as a 3-channel image, the conditioning a Canny ControlNet expects."""
    import cv2

    edges = cv2.Canny(np.asarray(image.convert("L")), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def paste_back(scene: Image.Image, rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
    """Scene resized to the product canvas, with the product's pixels copied back over it.

    Opaque pixels are copied (identical); partly transparent ones are alpha-blended over the scene.
    """
    h, w = alpha.shape
    bg = np.asarray(scene.convert("RGB").resize((w, h), Image.BICUBIC), dtype=np.float64)
    a = alpha[..., None]
    out = np.round(rgb * a + bg * (1 - a)).astype(np.uint8)
    opaque = alpha >= 1.0
    out[opaque] = rgb[opaque]
    return Image.fromarray(out)


class BackgroundPipeline(PersonalizedPipeline):
    """Scene generation around a product (ControlNet on its edges, or inpainting), product pasted back."""

    name = "background"

    def __init__(self, sd_pipe, *, controlnet=None, controlnet_path: str | None = None, **kwargs):
        super().__init__(sd_pipe, **kwargs)
        self.controlnet = controlnet
        self.controlnet_path = controlnet_path or (controlnet.config.get("_name_or_path") if controlnet else None)

    def __call__(self, condition: PreferenceCondition | None, product: Image.Image | None = None, *,
                 mask: Image.Image | None = None, product_path: str | None = None, mask_path: str | None = None,
                 item_id: str | None = None, mode: str | None = None, padding: float = 0.25,
                 num_candidates: int = 2, seed: int = 0, steps: int = 25, guidance: float = 7.5,
                 width: int | None = None, height: int | None = None, prompt: str | None = None,
                 negative_prompt: str = NEGATIVE_PROMPT, control_scale: float = 1.0,
                 progress: bool = True) -> PipelineOutput:
        # 1. check inputs: a product from a file, a catalog item, or an image in memory
        mode = mode or ("controlnet" if self.controlnet is not None else "inpaint")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "controlnet" and self.controlnet is None:
            raise InputError("mode 'controlnet' needs a ControlNet (--controlnet); or use --mode inpaint")
        limits.PADDING.check(padding, "padding (a share of the product's size)")
        self.check_settings(num_candidates=num_candidates, steps=steps, guidance=guidance)
        source = {"product_path": product_path, "mask_path": mask_path, "item_id": item_id}
        if product is None:
            product, mask = self.load_product(**source)
        rgb, alpha = pad_product(*product_layers(product, mask), padding)
        aspect = alpha.shape[1] / alpha.shape[0]
        if width is None or height is None:
            width, height = self.fit_size(aspect)
        self.check_size(width, height)

        # 2. the scene prompt: the product's words and a scene the shopper's style suggests
        if prompt is None and item_id and self.catalog is not None:  # the product's own words, the user's scene
            item = self.catalog[item_id]
            prompt = keyword_prompt(condition, "background", category=item.category, **item.attributes)
        prompt = prompt or keyword_prompt(condition, "background_plain")
        params = {"mode": mode, "padding": padding, "control_scale": control_scale, **source}

        # 3. one scene per candidate seed, product pasted back each time
        out = PipelineOutput()
        bar = progress_bar(num_candidates, "background", progress)
        for i in range(num_candidates):
            kw = dict(prompt=prompt, negative_prompt=negative_prompt, seed=seed + i, steps=steps,
                      guidance=guidance, width=width, height=height, condition=condition)
            out.images.append(self.compose(rgb, alpha, **kw, mode=mode, control_scale=control_scale))
            out.creatives.append(self.creative(**kw, params=params, extra={
                "controlnet": self.controlnet_path, "output_size": [alpha.shape[1], alpha.shape[0]]}))
            bar.update()
        bar.close()

        # 4. rank (the product is the same in all; the scene decides)
        return rank_output(out, condition, scorer=self.scorer, catalog=self.catalog, reward_model=self.reward_model)

    def compose(self, rgb: np.ndarray, alpha: np.ndarray, *, mode: str, control_scale: float,
                width: int, height: int, **kw) -> Image.Image:
        """Generate the scene at a model-friendly size, then paste the product back at full size."""
        gen_w, gen_h = self.generation_size(width, height)  # what the model draws (an upscaler makes the rest)
        flat = flatten(rgb, alpha).resize((gen_w, gen_h), Image.BICUBIC)
        if mode == "controlnet":
            pipe = self.variant("controlnet", controlnet=self.controlnet)
            scene = self.sample("controlnet", pipe=pipe, image=canny_edges(flat), width=width, height=height,
                                controlnet_conditioning_scale=float(control_scale), **kw)
        else:
            keep = Image.fromarray(((alpha >= 0.5) * 255).astype(np.uint8)).resize((gen_w, gen_h), Image.NEAREST)
            repaint = Image.fromarray(255 - np.asarray(keep))  # white = generate
            scene = self.sample("inpaint", image=flat, mask_image=repaint, width=width, height=height, **kw)
        return paste_back(scene, rgb, alpha)

    def load_product(self, product_path: str | None = None, mask_path: str | None = None,
                     item_id: str | None = None) -> tuple[Image.Image, Image.Image | None]:
        """The product (and mask) named in a record: a file or a catalog item."""
        if product_path:
            return _open(product_path), (_open(mask_path) if mask_path else None)
        if item_id:
            if self.catalog is None or item_id not in self.catalog:
                raise InputError(f"unknown product {item_id!r} (no such item in the catalog)")
            return self.catalog.load_image(item_id), None
        raise InputError("give a product image (with alpha, or with a mask) or a catalog item id")

    def render(self, *, prompt: str, negative_prompt: str, seed: int, steps: int, guidance: float, width: int,
               height: int, condition: PreferenceCondition | None, mode: str, padding: float,
               control_scale: float, product_path=None, mask_path=None, item_id=None) -> Image.Image:
        product, mask = self.load_product(product_path, mask_path, item_id)
        rgb, alpha = pad_product(*product_layers(product, mask), padding)
        return self.compose(rgb, alpha, mode=mode, control_scale=control_scale, width=width, height=height,
                            prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps,
                            guidance=guidance, condition=condition)


def _open(path: str) -> Image.Image:
    p = Path(path)
    if not p.is_file():
        raise InputError("image not found", p)
    try:
        with Image.open(p) as im:
            im.load()
            return im.copy()
    except OSError as e:
        raise InputError(f"not a readable image ({e})", p) from None
