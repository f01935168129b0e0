"""Banner layout: where the product, headline and call-to-action go, and text that stays readable.

Readability is measured, not hoped for: WCAG 2.x contrast ratio between the text color and every
pixel under the text (relative luminance of sRGB, https://www.w3.org/TR/WCAG22/#dfn-contrast-ratio).
A placement that misses 4.5:1 (level AA for body text) moves to another arrangement; when no
arrangement passes, the text gets an opaque backing panel whose contrast is then guaranteed.
Text is fitted (shrunk, wrapped, ellipsized) inside a box that lies inside the canvas, so it can
never leave the canvas. The font is DejaVu Sans as shipped inside matplotlib (no font file copied).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WCAG_AA = 4.5
BANNER_SIZES: dict[str, tuple[int, int]] = {
    "300x250": (300, 250),
    "728x90": (728, 90),
    "1200x628": (1200, 628),
    "1080x1080": (1080, 1080),
}
DARK, LIGHT = (17, 17, 17), (255, 255, 255)
MIN_FONT_PX = 8

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


# -- color math --------------------------------------------------------------------------------
def relative_luminance(rgb) -> np.ndarray:
    """WCAG relative luminance of sRGB values in 0..255 (any shape ending in 3)."""
    c = np.asarray(rgb, dtype=np.float64)[..., :3] / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(rgb_a, rgb_b) -> float:
    """WCAG contrast ratio (1..21) between two colors."""
    la, lb = float(relative_luminance(rgb_a)), float(relative_luminance(rgb_b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def worst_contrast(image: Image.Image, box: Box, color) -> float:
    """Lowest contrast between `color` and any pixel of `image` inside `box` (the text's worst spot)."""
    region = np.asarray(image.convert("RGB").crop(box))
    lum = relative_luminance(region.reshape(-1, 3))
    lc = float(relative_luminance(color))
    lo, hi = float(lum.min()), float(lum.max())
    # the worst pixel is the one whose luminance is closest to the text's
    if lo <= lc <= hi:
        return 1.0
    nearest = hi if lc > hi else lo
    return (max(lc, nearest) + 0.05) / (min(lc, nearest) + 0.05)


def readable_text_color(image: Image.Image, box: Box) -> tuple[tuple[int, int, int], float]:
    """Dark or light text, whichever has the better worst-case contrast over `box`."""
    options = [(c, worst_contrast(image, box, c)) for c in (DARK, LIGHT)]
    return max(options, key=lambda o: o[1])


def button_colors(accent) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A call-to-action (button, text) color pair near `accent` with contrast >= 4.5."""
    base = np.asarray(accent, dtype=np.float64)
    for t in np.linspace(0.0, 1.0, 21):  # blend toward black until white text reads (always ends at 21:1)
        button = tuple(int(round(v)) for v in base * (1 - t))
        text = max((DARK, LIGHT), key=lambda c: contrast_ratio(c, button))
        if contrast_ratio(text, button) >= WCAG_AA:
            return button, text
    return (0, 0, 0), LIGHT


# -- text fitting ------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def font_file(bold: bool = True) -> str:
    """Path of DejaVu Sans (bold or regular) inside the installed matplotlib."""
    from matplotlib import font_manager

    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return font_manager.findfont(props, fallback_to_default=False)


@lru_cache(maxsize=512)
def load_font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_file(bold), size)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str] | None:
    """Greedy word wrap; None when it needs more than `max_lines` lines or a word is too wide."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(trial) <= width:
            lines[-1] = trial
        elif font.getlength(word) <= width:
            lines.append(word)
        else:
            return None
    return lines if len(lines) <= max_lines else None


def _ellipsize(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return (text.rstrip() + "…") if text else ""


@dataclass
class TextBlock:
    """One piece of text placed on a banner: its lines, font, ink box, colors and measured contrast."""

    role: str
    text: str
    lines: list[str]
    font_px: int
    box: Box  # the ink box the text is drawn in (inside the canvas)
    color: tuple[int, int, int]
    panel: tuple[int, int, int] | None = None
    panel_box: Box | None = None
    contrast: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def fit_text(text: str, region: Box, *, role: str, max_lines: int = 2, align: str = "left",
             max_font_px: int | None = None) -> TextBlock:
    """The largest font size (DejaVu Sans Bold) at which `text` fits `region`, wrapped to `max_lines`."""
    x0, y0, x1, y1 = region
    width, height = x1 - x0, y1 - y0
    size = min(max_font_px or height, height)
    lines, font = None, None
    while size >= MIN_FONT_PX:
        font = load_font(size)
        lines = _wrap(text, font, width, max_lines)
        if lines and len(lines) * _line_height(font) <= height:
            break
        size -= 1 if size < 24 else max(1, size // 12)
    else:  # nothing fits: smallest size, one ellipsized line
        size = MIN_FONT_PX
        font = load_font(size)
        lines = [_ellipsize(text, font, width)]
    ink_w = int(np.ceil(max(font.getlength(line) for line in lines)))
    ink_h = len(lines) * _line_height(font)
    left = x0 if align == "left" else x0 + (width - ink_w) // 2
    top = y0 + (height - ink_h) // 2
    box = (left, top, min(left + ink_w, x1), min(top + ink_h, y1))
    return TextBlock(role=role, text=text, lines=lines, font_px=size, box=box, color=DARK)


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


# -- arrangements ------------------------------------------------------------------------------
@dataclass
class Arrangement:
    """Regions for the product, the headline and the call-to-action on one canvas."""

    product: Box
    headline: Box
    cta: Box


def arrangements(width: int, height: int) -> list[Arrangement]:
    """Candidate layouts for a canvas, best first; regions never overlap and keep a margin."""
    m = max(4, round(0.06 * min(width, height)))
    aspect = width / height
    out = []
    if aspect >= 3:  # leaderboard strips (728x90): product | headline | button
        side = height - 2 * m
        cta_w = round(0.22 * width)
        cta = (m, round(height * 0.2), m + cta_w, round(height * 0.8))
        out.append(Arrangement((m, m, m + side, m + side), (2 * m + side, m, width - 2 * m - cta_w, height - m),
                               (width - m - cta_w, cta[1], width - m, cta[3])))
        out.append(Arrangement((width - m - side, m, width - m, m + side),
                               (2 * m + cta_w, m, width - 2 * m - side, height - m), cta))
    elif aspect >= 1.3:  # landscape (1200x628): text column beside the product
        half = width // 2
        side = min(height - 2 * m, half - 2 * m)
        for text_left in (True, False):
            tx0, tx1 = (m, half - m) if text_left else (half + m, width - m)
            px0 = half + (half - side) // 2 if text_left else (half - side) // 2
            py0 = (height - side) // 2
            out.append(Arrangement((px0, py0, px0 + side, py0 + side), (tx0, m, tx1, round(height * 0.62)),
                                   (tx0, round(height * 0.68), tx0 + round(0.7 * (tx1 - tx0)), height - m)))
    else:  # square-ish (300x250, 1080x1080): stacked
        free = height - 4 * m  # margins above, between and below the three rows
        prod_h, head_h = round(0.56 * free), round(0.26 * free)
        cta_h = free - prod_h - head_h
        side = min(prod_h, width - 2 * m)  # tall canvases: the product row is wider than the canvas
        px0, dy = (width - side) // 2, (prod_h - side) // 2
        cta_w = round(0.6 * width)
        cta = ((width - cta_w) // 2, height - m - cta_h, (width + cta_w) // 2, height - m)
        # product on top, headline under it
        top = m + dy
        out.append(Arrangement((px0, top, px0 + side, top + side),
                               (m, 2 * m + prod_h, width - m, 2 * m + prod_h + head_h), cta))
        # headline on top, product under it
        top = 2 * m + head_h + dy
        out.append(Arrangement((px0, top, px0 + side, top + side), (m, m, width - m, m + head_h), cta))
    return out


# -- the layout --------------------------------------------------------------------------------
@dataclass
class BannerLayout:
    """Everything needed to draw a banner's foreground, with the contrast each text achieved."""

    width: int
    height: int
    product_box: Box
    headline: TextBlock
    cta: TextBlock
    tried: list[float] = field(default_factory=list)  # headline contrast of each arrangement tried

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "product_box": list(self.product_box),
                "headline": self.headline.to_dict(), "cta": self.cta.to_dict(), "tried": self.tried}


def paste_product(canvas: Image.Image, product: Image.Image, box: Box) -> Image.Image:
    """Paste an RGBA product scaled to fit `box` (aspect kept, centered) onto a copy of the canvas."""
    out = canvas.convert("RGB").copy()
    prod = product.convert("RGBA")
    bw, bh = box[2] - box[0], box[3] - box[1]
    scale = min(bw / prod.width, bh / prod.height)
    size = (max(1, round(prod.width * scale)), max(1, round(prod.height * scale)))
    prod = prod.resize(size, Image.LANCZOS)
    out.paste(prod, (box[0] + (bw - size[0]) // 2, box[1] + (bh - size[1]) // 2), prod)
    return out


def plan_banner(background: Image.Image, product: Image.Image, headline: str, cta: str,
                accent=(30, 30, 30)) -> tuple[BannerLayout, Image.Image]:
    """Choose an arrangement where the headline reads on the scene, else add a panel.

    Returns the layout and the canvas under the text (scene + product + panels), on which each
    text's contrast was measured.
    """
    width, height = background.size
    tried, candidates = [], []
    for arr in arrangements(width, height):
        canvas = paste_product(background, product, arr.product)
        block = fit_text(headline, arr.headline, role="headline", max_lines=2 if height >= 120 else 1,
                         max_font_px=max(MIN_FONT_PX, round(0.11 * min(width, height * 2))))
        block.color, block.contrast = readable_text_color(canvas, _measure_box(block, canvas.size))
        tried.append(round(block.contrast, 3))
        candidates.append((arr, canvas, block))
        if block.contrast >= WCAG_AA:
            break
    arr, canvas, block = candidates[-1]
    if block.contrast < WCAG_AA:  # no place reads on the scene: back the first arrangement's headline
        arr, canvas, block = candidates[0]
        pad = max(2, block.font_px // 4)
        block.panel_box = _pad(_measure_box(block, canvas.size), pad, canvas.size)
        mean_lum = float(relative_luminance(np.asarray(canvas.crop(block.panel_box)).reshape(-1, 3)).mean())
        block.panel, block.color = ((24, 24, 24), LIGHT) if mean_lum < 0.18 else ((250, 250, 250), DARK)

    button, text_color = button_colors(accent)
    cta_block = fit_text(cta, _pad(arr.cta, -max(2, (arr.cta[3] - arr.cta[1]) // 5), canvas.size), role="cta",
                         max_lines=1, align="center")
    cta_block.panel, cta_block.panel_box, cta_block.color = button, arr.cta, text_color

    under = draw_panels(canvas, [block, cta_block])
    for b in (block, cta_block):
        b.contrast = round(worst_contrast(under, _measure_box(b, under.size), b.color), 3)
    layout = BannerLayout(width, height, arr.product, block, cta_block, tried)
    return layout, under


def _measure_box(block: TextBlock, size: tuple[int, int]) -> Box:
    """The pixels under a text: its layout box and its glyphs' ink, plus one pixel of anti-aliasing."""
    ink = text_ink_box(block)
    union = (min(ink[0], block.box[0]), min(ink[1], block.box[1]), max(ink[2], block.box[2]), max(ink[3], block.box[3]))
    return _pad(union, 1, size)


def _pad(box: Box, pad: int, size: tuple[int, int]) -> Box:
    """Grow (or shrink, pad < 0) a box, clipped to the canvas."""
    return (max(0, box[0] - pad), max(0, box[1] - pad), min(size[0], box[2] + pad), min(size[1], box[3] + pad))


def draw_panels(canvas: Image.Image, blocks: list[TextBlock]) -> Image.Image:
    """Draw the opaque backing panels (and buttons) of text blocks on a copy of the canvas."""
    out = canvas.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    for b in blocks:
        if b.panel is not None and b.panel_box is not None:
            x0, y0, x1, y1 = b.panel_box
            # the corner radius stays inside the padding, so every pixel under the ink is panel
            pad = min(b.box[0] - x0, b.box[1] - y0, x1 - b.box[2], y1 - b.box[3], (y1 - y0) // 2)
            draw.rounded_rectangle((x0, y0, x1 - 1, y1 - 1), radius=max(0, pad), fill=b.panel)
    return out


def draw_text(canvas: Image.Image, blocks: list[TextBlock]) -> Image.Image:
    """Draw each block's lines inside its ink box on a copy of the canvas."""
    out = canvas.copy()
    draw = ImageDraw.Draw(out)
    for b in blocks:
        font = load_font(b.font_px)
        lh = _line_height(font)
        for i, line in enumerate(b.lines):
            x = b.box[0] + (b.box[2] - b.box[0] - font.getlength(line)) / 2 if b.role == "cta" else b.box[0]
            draw.text((x, b.box[1] + i * lh), line, font=font, fill=b.color)
    return out


def text_ink_box(block: TextBlock) -> Box:
    """The pixels the drawn glyphs can touch (for bounds checks), from the font's own metrics."""
    font = load_font(block.font_px)
    lh = _line_height(font)
    x0s, y0s, x1s, y1s = [], [], [], []
    for i, line in enumerate(block.lines):
        w = font.getlength(line)
        x = block.box[0] + (block.box[2] - block.box[0] - w) / 2 if block.role == "cta" else block.box[0]
        l, t, r, btm = font.getbbox(line)
        x0s.append(x + l); y0s.append(block.box[1] + i * lh + t)
        x1s.append(x + r); y1s.append(block.box[1] + i * lh + btm)
    return (int(np.floor(min(x0s))), int(np.floor(min(y0s))), int(np.ceil(max(x1s))), int(np.ceil(max(y1s))))
