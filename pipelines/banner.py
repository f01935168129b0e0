"""Ad banners at standard sizes: a generated scene, the product, a headline and a call-to-action.

The scene is generated at the model's native area with the banner's aspect, then cover-resized to
the exact banner size. `layout.plan_banner` places product and text so that every text's WCAG
contrast against the pixels under it is at least 4.5:1 (moving it or adding a backing panel) and
no text leaves the canvas; both checks are measured and stored in each Creative's `extra`.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

from core.errors import InputError
from core.validate import parse_size
from recommenders.condition import PreferenceCondition

from .candidate_scores import rank_output
from .conditioning import NEGATIVE_PROMPT, keyword_prompt
from .layout import BANNER_SIZES, WCAG_AA, draw_text, plan_banner, text_ink_box
from .personalized import PersonalizedPipeline, PipelineOutput, progress_bar

# Accent colors for the call-to-action button, by the shopper's favourite color keyword.
ACCENTS: dict[str, tuple[int, int, int]] = {
    "navy": (24, 38, 110), "red": (205, 30, 40), "black": (28, 28, 30), "white": (90, 90, 96),
    "gray": (96, 96, 100), "beige": (150, 120, 80), "brown": (118, 70, 36), "green": (34, 120, 60),
    "yellow": (160, 120, 0), "pink": (200, 60, 120), "purple": (118, 48, 160), "orange": (200, 90, 10),
    "blue": (30, 80, 200),
}
DEFAULT_ACCENT = (30, 30, 30)


def parse_sizes(sizes) -> list[tuple[int, int]]:
    """Banner sizes from names like "300x250" (or (w, h) pairs), within the shared `core.limits.IMAGE_SIDE`."""
    out = [parse_size(s, what="banner size") for s in sizes]
    if not out:
        raise InputError("no banner sizes given")
    return out


def default_headline(condition: PreferenceCondition | None, title: str | None) -> str:
    """A short headline from the product title or the shopper's keywords."""
    if title:
        return f"Picked for you: {title}"
    words = keyword_prompt(condition, "{color} {pattern}").strip()
    return f"New {words} styles for you" if words else "New in, picked for you"


class BannerPipeline(PersonalizedPipeline):
    """Scene + product + headline + call-to-action, one Creative per size and candidate."""

    name = "banner"

    def __call__(self, condition: PreferenceCondition | None, product: Image.Image | None = None, *,
                 item_id: str | None = None, product_path: str | None = None, headline: str | None = None,
                 cta: str = "Shop now", sizes=tuple(BANNER_SIZES), num_candidates: int = 1, seed: int = 0,
                 steps: int = 25, guidance: float = 7.5, prompt: str | None = None,
                 negative_prompt: str = NEGATIVE_PROMPT, blur: float = 0.015, progress: bool = True) -> PipelineOutput:
        # 1. check inputs
        sizes = parse_sizes(sizes)
        self.check_settings(num_candidates=num_candidates, steps=steps, guidance=guidance)
        if product is None:
            product = self.load_product(item_id=item_id, product_path=product_path)
        if not cta.strip():
            raise InputError("the call-to-action text is empty")
        title = self.catalog[item_id].title if (item_id and self.catalog is not None) else None
        headline = (headline or default_headline(condition, title)).strip()

        # 2. the backdrop prompt from the shopper's keywords; the button takes their favourite color
        category = self.catalog[item_id].category if (item_id and self.catalog is not None) else None
        prompt = prompt or keyword_prompt(condition, "banner", category=category)
        params = {"headline": headline, "cta": cta, "item_id": item_id, "product_path": product_path, "blur": blur}

        # 3. one banner per size and candidate seed
        out = PipelineOutput()
        bar = progress_bar(len(sizes) * num_candidates, "banner", progress)
        for width, height in sizes:
            for i in range(num_candidates):
                kw = dict(prompt=prompt, negative_prompt=negative_prompt, seed=seed + i, steps=steps,
                          guidance=guidance, width=width, height=height, condition=condition)
                image, layout = self.compose(product, headline=headline, cta=cta, blur=blur, **kw)
                out.images.append(image)
                out.creatives.append(self.creative(**kw, params=params, extra=banner_checks(layout)))
                bar.update()
        bar.close()

        # 4. rank within the request (the scene and layout differ between candidates)
        return rank_output(out, condition, scorer=self.scorer, catalog=self.catalog, reward_model=self.reward_model,
                           reward_format="banner")

    def compose(self, product: Image.Image, *, headline: str, cta: str, width: int, height: int,
                condition: PreferenceCondition | None, blur: float = 0.015, **kw):
        """Scene at the model's size -> cover-resize -> soft blur (a backdrop) -> layout -> text."""
        gen_w, gen_h = self.fit_size(width / height)
        scene = self.sample("text2img", width=gen_w, height=gen_h, condition=condition, **kw)
        scene = ImageOps.fit(scene, (width, height), Image.BICUBIC)
        if blur > 0:  # the real product goes on top; the backdrop only sets color and mood
            scene = scene.filter(ImageFilter.GaussianBlur(blur * min(width, height)))
        layout, under_text = plan_banner(scene, product, headline, cta, accent=accent_for(condition))
        return draw_text(under_text, [layout.headline, layout.cta]), layout

    def load_product(self, item_id: str | None = None, product_path: str | None = None) -> Image.Image:
        if product_path:
            p = Path(product_path)
            if not p.is_file():
                raise InputError("product image not found", p)
            try:
                with Image.open(p) as im:
                    return im.convert("RGBA")
            except OSError as e:
                raise InputError(f"not a readable image ({e})", p) from None
        if item_id:
            if self.catalog is None or item_id not in self.catalog:
                raise InputError(f"unknown product {item_id!r} (no such item in the catalog)")
            return self.catalog.load_image(item_id)
        raise InputError("a banner needs a product: a catalog item id or an image file")

    def render(self, *, prompt: str, negative_prompt: str, seed: int, steps: int, guidance: float, width: int,
               height: int, condition: PreferenceCondition | None, headline: str, cta: str,
               item_id: str | None = None, product_path: str | None = None, blur: float = 0.015) -> Image.Image:
        product = self.load_product(item_id=item_id, product_path=product_path)
        image, _ = self.compose(product, headline=headline, cta=cta, blur=blur, width=width, height=height,
                                prompt=prompt,
                                negative_prompt=negative_prompt, seed=seed, steps=steps, guidance=guidance,
                                condition=condition)
        return image


def accent_for(condition: PreferenceCondition | None) -> tuple[int, int, int]:
    """The call-to-action color: the shopper's favourite color when it has a name we know."""
    if condition is None:
        return DEFAULT_ACCENT
    top = condition.top_keywords(1, kinds=("color",)).get("color", [])
    return ACCENTS.get(top[0], DEFAULT_ACCENT) if top else DEFAULT_ACCENT


def banner_checks(layout) -> dict:
    """The measured readability and bounds of a banner's texts, for its Creative record."""
    inside = all(_inside(text_ink_box(b), layout.width, layout.height) for b in (layout.headline, layout.cta))
    contrast = min(layout.headline.contrast, layout.cta.contrast)
    return {"layout": layout.to_dict(), "min_contrast": contrast, "contrast_ok": contrast >= WCAG_AA,
            "text_inside": inside, "size_name": f"{layout.width}x{layout.height}"}


def _inside(box, width: int, height: int) -> bool:
    return box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
