"""PIL drawings of the demo shop's products: a bold silhouette per category and style, filled with a pattern.

Drawn at 2x on a 256x256 canvas and box-downscaled to 128x128 RGBA with a transparent background.
Silhouettes fill most of the canvas and patterns are coarse so color, pattern and shape survive a
further downscale to 64x64 (the demo text-to-image model's resolution).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .vocab import CATEGORIES, COLORS, PATTERNS, STYLES

SIZE = 128  # shipped image size
_S = 2 * SIZE  # drawing canvas (2x supersampling)

OUTLINE = (30, 30, 34)
SOLE = (236, 234, 226)
GOLD = (214, 172, 52)
_DARK_INK = (30, 30, 40)
_LIGHT_INK = (246, 246, 242)

Point = tuple[float, float]


def ink_for(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Pattern and trim color that contrasts with a base color (dark on light, light on dark)."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return _DARK_INK if luminance > 150 else _LIGHT_INK


class _Canvas:
    """A silhouette mask plus detail strokes painted over the patterned fill, in unit coordinates."""

    def __init__(self, scale: float, base: tuple[int, int, int]):
        self.scale = scale
        self.base = base
        self.accent = ink_for(base)
        self.mask = Image.new("L", (_S, _S), 0)
        self._mask_draw = ImageDraw.Draw(self.mask)
        self.overlays: list[Callable[[ImageDraw.ImageDraw], None]] = []

    def px(self, x: float, y: float) -> tuple[float, float]:
        # Scale about the center so a smaller jitter keeps the item centered.
        return ((0.5 + (x - 0.5) * self.scale) * _S, (0.5 + (y - 0.5) * self.scale) * _S)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [*self.px(x0, y0), *self.px(x1, y1)]

    def w(self, width: float) -> int:
        return max(1, round(width * _S * self.scale))

    # Shape parts: added to (or cut from) the silhouette, so they get the pattern and the outline.
    def poly(self, pts: Sequence[Point], cut: bool = False) -> None:
        self._mask_draw.polygon([self.px(*p) for p in pts], fill=0 if cut else 255)

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, cut: bool = False) -> None:
        self._mask_draw.ellipse(self.box(x0, y0, x1, y1), fill=0 if cut else 255)

    def rounded(self, x0: float, y0: float, x1: float, y1: float, r: float) -> None:
        self._mask_draw.rounded_rectangle(self.box(x0, y0, x1, y1), radius=self.w(r), fill=255)

    def chord(self, x0: float, y0: float, x1: float, y1: float, start: float, end: float) -> None:
        self._mask_draw.chord(self.box(x0, y0, x1, y1), start, end, fill=255)

    def band(self, pts: Sequence[Point], width: float) -> None:
        self._mask_draw.line([self.px(*p) for p in pts], fill=255, width=self.w(width), joint="curve")

    def arc(self, x0: float, y0: float, x1: float, y1: float, start: float, end: float, width: float) -> None:
        self._mask_draw.arc(self.box(x0, y0, x1, y1), start, end, fill=255, width=self.w(width))

    # Solid parts: part of the silhouette but painted in a fixed color over the pattern.
    def solid_poly(self, pts: Sequence[Point], color: tuple[int, int, int]) -> None:
        self.poly(pts)
        xy = [self.px(*p) for p in pts]
        self.overlays.append(lambda d: d.polygon(xy, fill=color))

    def solid_rounded(self, x0: float, y0: float, x1: float, y1: float, r: float, color: tuple[int, int, int]) -> None:
        self.rounded(x0, y0, x1, y1, r)
        box, radius = self.box(x0, y0, x1, y1), self.w(r)
        self.overlays.append(lambda d: d.rounded_rectangle(box, radius=radius, fill=color))

    # Details: strokes and dots painted on top (seams, buttons, trims).
    def line(self, pts: Sequence[Point], width: float = 0.016, color: tuple[int, int, int] = OUTLINE) -> None:
        xy, w = [self.px(*p) for p in pts], self.w(width)
        self.overlays.append(lambda d: d.line(xy, fill=color, width=w, joint="curve"))

    def dot(self, x: float, y: float, r: float, color: tuple[int, int, int] = OUTLINE) -> None:
        box = self.box(x - r, y - r, x + r, y + r)
        self.overlays.append(lambda d: d.ellipse(box, fill=color))

    def outline_arc(self, x0: float, y0: float, x1: float, y1: float, start: float, end: float,
                    width: float = 0.016, color: tuple[int, int, int] = OUTLINE) -> None:
        box, w = self.box(x0, y0, x1, y1), self.w(width)
        self.overlays.append(lambda d: d.arc(box, start, end, fill=color, width=w))


# ---------------------------------------------------------------------------------------------
# Silhouettes: one function per category; the style picks a visibly different cut.


def _shirt(c: _Canvas, style: str) -> None:
    if style == "casual":  # crew-neck t-shirt, short sleeves
        c.poly([(0.40, 0.08), (0.22, 0.13), (0.03, 0.35), (0.15, 0.47), (0.26, 0.39), (0.26, 0.94),
                (0.74, 0.94), (0.74, 0.39), (0.85, 0.47), (0.97, 0.35), (0.78, 0.13), (0.60, 0.08)])
        c.ellipse(0.39, 0.01, 0.61, 0.16, cut=True)
        c.outline_arc(0.37, -0.01, 0.63, 0.18, 0, 180, 0.02)
    elif style == "formal":  # button-up shirt: collar, placket, long sleeves
        c.poly([(0.40, 0.06), (0.24, 0.11), (0.11, 0.28), (0.03, 0.88), (0.16, 0.91), (0.27, 0.42),
                (0.27, 0.95), (0.73, 0.95), (0.73, 0.42), (0.84, 0.91), (0.97, 0.88), (0.89, 0.28),
                (0.76, 0.11), (0.60, 0.06)])
        c.poly([(0.43, 0.06), (0.50, 0.19), (0.57, 0.06)], cut=True)
        c.line([(0.40, 0.06), (0.36, 0.19), (0.48, 0.17), (0.50, 0.21)], 0.016)
        c.line([(0.60, 0.06), (0.64, 0.19), (0.52, 0.17), (0.50, 0.21)], 0.016)
        c.line([(0.50, 0.21), (0.50, 0.95)], 0.014)
        for y in (0.30, 0.44, 0.58, 0.72, 0.86):
            c.dot(0.535, y, 0.018)
        c.line([(0.04, 0.82), (0.16, 0.85)], 0.014)
        c.line([(0.96, 0.82), (0.84, 0.85)], 0.014)
    else:  # sporty tank top with contrast trims
        c.poly([(0.36, 0.05), (0.29, 0.06), (0.28, 0.20), (0.17, 0.34), (0.19, 0.94), (0.81, 0.94),
                (0.83, 0.34), (0.72, 0.20), (0.71, 0.06), (0.64, 0.05)])
        c.ellipse(0.35, -0.10, 0.65, 0.22, cut=True)
        c.line([(0.29, 0.07), (0.28, 0.20), (0.18, 0.34)], 0.03, c.accent)
        c.line([(0.71, 0.07), (0.72, 0.20), (0.82, 0.34)], 0.03, c.accent)
        c.outline_arc(0.35, -0.10, 0.65, 0.22, 0, 180, 0.03, c.accent)
        c.line([(0.19, 0.89), (0.81, 0.89)], 0.03, c.accent)


def _trousers(c: _Canvas, style: str) -> None:
    if style == "casual":  # straight jeans with pockets and fly
        c.poly([(0.27, 0.04), (0.73, 0.04), (0.77, 0.96), (0.55, 0.96), (0.50, 0.36), (0.45, 0.96),
                (0.23, 0.96)])
        c.line([(0.27, 0.11), (0.73, 0.11)], 0.016)
        c.line([(0.50, 0.11), (0.50, 0.30)], 0.014)
        c.line([(0.29, 0.11), (0.38, 0.21), (0.40, 0.11)], 0.014)
        c.line([(0.71, 0.11), (0.62, 0.21), (0.60, 0.11)], 0.014)
        c.line([(0.24, 0.90), (0.45, 0.90)], 0.012)
        c.line([(0.55, 0.90), (0.76, 0.90)], 0.012)
    elif style == "formal":  # slim tailored trousers: belt with buckle, pressed creases
        c.poly([(0.31, 0.04), (0.69, 0.04), (0.68, 0.96), (0.535, 0.96), (0.50, 0.34), (0.465, 0.96),
                (0.32, 0.96)])
        c.solid_poly([(0.305, 0.04), (0.695, 0.04), (0.694, 0.10), (0.306, 0.10)], OUTLINE)
        c.solid_poly([(0.46, 0.035), (0.54, 0.035), (0.54, 0.105), (0.46, 0.105)], GOLD)
        c.line([(0.40, 0.14), (0.395, 0.96)], 0.012)
        c.line([(0.60, 0.14), (0.605, 0.96)], 0.012)
    else:  # sporty joggers: elastic waist, drawstring, side stripes, cuffed ankles
        c.poly([(0.25, 0.06), (0.75, 0.06), (0.78, 0.40), (0.69, 0.88), (0.555, 0.88), (0.50, 0.38),
                (0.445, 0.88), (0.31, 0.88), (0.22, 0.40)])
        c.solid_poly([(0.25, 0.04), (0.75, 0.04), (0.755, 0.12), (0.245, 0.12)], c.accent)
        c.solid_poly([(0.31, 0.86), (0.445, 0.86), (0.44, 0.96), (0.315, 0.96)], c.accent)
        c.solid_poly([(0.555, 0.86), (0.69, 0.86), (0.685, 0.96), (0.56, 0.96)], c.accent)
        c.line([(0.47, 0.11), (0.45, 0.24)], 0.014)
        c.line([(0.53, 0.11), (0.55, 0.24)], 0.014)
        c.line([(0.25, 0.13), (0.245, 0.40), (0.32, 0.86)], 0.035, c.accent)
        c.line([(0.75, 0.13), (0.755, 0.40), (0.68, 0.86)], 0.035, c.accent)


def _skirt(c: _Canvas, style: str) -> None:
    if style == "casual":  # A-line skirt
        c.poly([(0.32, 0.14), (0.68, 0.14), (0.91, 0.86), (0.72, 0.895), (0.50, 0.905), (0.28, 0.895),
                (0.09, 0.86)])
        c.line([(0.315, 0.21), (0.685, 0.21)], 0.016)
        c.line([(0.42, 0.30), (0.36, 0.86)], 0.010)
        c.line([(0.58, 0.30), (0.64, 0.86)], 0.010)
    elif style == "formal":  # pencil skirt with a back slit
        c.poly([(0.30, 0.07), (0.70, 0.07), (0.74, 0.40), (0.69, 0.95), (0.31, 0.95), (0.26, 0.40)])
        c.line([(0.30, 0.14), (0.70, 0.14)], 0.016)
        c.dot(0.62, 0.105, 0.02)
        c.line([(0.50, 0.76), (0.50, 0.95)], 0.018)
    else:  # sporty pleated tennis skirt
        c.poly([(0.28, 0.20), (0.72, 0.20), (0.93, 0.76), (0.07, 0.76)])
        c.solid_poly([(0.28, 0.19), (0.72, 0.19), (0.735, 0.27), (0.265, 0.27)], c.accent)
        for i in range(1, 8):
            t = i / 8
            c.line([(0.28 + 0.44 * t, 0.28), (0.07 + 0.86 * t, 0.76)], 0.010)
        c.line([(0.085, 0.71), (0.915, 0.71)], 0.025, c.accent)


def _dress(c: _Canvas, style: str) -> None:
    if style == "casual":  # sundress: thin straps, fitted bodice, flared skirt
        c.band([(0.38, 0.03), (0.37, 0.20)], 0.03)
        c.band([(0.62, 0.03), (0.63, 0.20)], 0.03)
        c.poly([(0.33, 0.18), (0.67, 0.18), (0.64, 0.42), (0.87, 0.96), (0.13, 0.96), (0.36, 0.42)])
        c.line([(0.36, 0.42), (0.64, 0.42)], 0.016)
    elif style == "formal":  # floor-length gown with a dark sash
        c.poly([(0.30, 0.04), (0.70, 0.04), (0.67, 0.22), (0.62, 0.42), (0.66, 0.60), (0.93, 0.98),
                (0.07, 0.98), (0.34, 0.60), (0.38, 0.42), (0.33, 0.22)])
        c.ellipse(0.38, -0.02, 0.62, 0.09, cut=True)
        c.solid_poly([(0.375, 0.39), (0.625, 0.39), (0.623, 0.46), (0.377, 0.46)], OUTLINE)
        c.line([(0.50, 0.46), (0.45, 0.62)], 0.016)
        c.line([(0.50, 0.46), (0.55, 0.62)], 0.016)
    else:  # sporty tennis dress: racer top, contrast waistband, pleated skirt
        c.poly([(0.36, 0.04), (0.31, 0.05), (0.30, 0.16), (0.25, 0.27), (0.33, 0.46), (0.13, 0.95),
                (0.87, 0.95), (0.67, 0.46), (0.75, 0.27), (0.70, 0.16), (0.69, 0.05), (0.64, 0.04)])
        c.ellipse(0.37, -0.08, 0.63, 0.18, cut=True)
        c.solid_poly([(0.33, 0.43), (0.67, 0.43), (0.68, 0.49), (0.32, 0.49)], c.accent)
        for i in range(1, 6):
            t = i / 6
            c.line([(0.32 + 0.36 * t, 0.50), (0.13 + 0.74 * t, 0.95)], 0.010)
        c.line([(0.30, 0.06), (0.30, 0.16), (0.25, 0.27)], 0.025, c.accent)
        c.line([(0.70, 0.06), (0.70, 0.16), (0.75, 0.27)], 0.025, c.accent)


def _shoes(c: _Canvas, style: str) -> None:
    if style == "casual":  # low sneaker, side view, laces
        c.poly([(0.05, 0.70), (0.05, 0.42), (0.12, 0.35), (0.30, 0.39), (0.40, 0.30), (0.50, 0.34),
                (0.70, 0.47), (0.88, 0.55), (0.96, 0.64), (0.96, 0.70)])
        c.solid_poly([(0.03, 0.68), (0.97, 0.68), (0.96, 0.77), (0.90, 0.80), (0.06, 0.80), (0.03, 0.76)], SOLE)
        c.line([(0.03, 0.68), (0.97, 0.68)], 0.014)
        for x in (0.44, 0.52, 0.60):  # laces cross the tongue, whose top runs (0.40, 0.30)-(0.70, 0.47)
            y = 0.30 + 0.57 * (x - 0.40)
            c.line([(x - 0.02, y + 0.03), (x - 0.07, y + 0.12)], 0.018)
        c.line([(0.12, 0.36), (0.14, 0.66)], 0.012)
    elif style == "formal":  # high-heeled pump, pointed toe
        c.poly([(0.07, 0.30), (0.14, 0.30), (0.30, 0.45), (0.55, 0.55), (0.80, 0.60), (0.98, 0.70),
                (0.96, 0.75), (0.62, 0.76), (0.22, 0.58), (0.09, 0.56)])
        c.poly([(0.08, 0.52), (0.21, 0.57), (0.17, 0.92), (0.12, 0.92)])
        c.solid_poly([(0.15, 0.29), (0.29, 0.44), (0.50, 0.52), (0.42, 0.55), (0.22, 0.48), (0.13, 0.36)], OUTLINE)
        c.line([(0.22, 0.58), (0.62, 0.76), (0.96, 0.75)], 0.014)
    else:  # sporty high-top: tall collar, chunky sole, side swoosh
        c.poly([(0.07, 0.70), (0.07, 0.16), (0.27, 0.12), (0.31, 0.32), (0.43, 0.28), (0.62, 0.43),
                (0.86, 0.51), (0.96, 0.62), (0.96, 0.70)])
        c.solid_poly([(0.03, 0.67), (0.98, 0.67), (0.98, 0.81), (0.03, 0.81)], SOLE)
        c.line([(0.03, 0.67), (0.98, 0.67)], 0.014)
        c.line([(0.03, 0.755), (0.98, 0.755)], 0.012)
        c.line([(0.14, 0.60), (0.45, 0.50), (0.80, 0.56)], 0.04, c.accent)
        c.line([(0.07, 0.22), (0.27, 0.18)], 0.025, c.accent)


def _bag(c: _Canvas, style: str) -> None:
    if style == "casual":  # tote with two handles
        c.poly([(0.16, 0.36), (0.84, 0.36), (0.91, 0.95), (0.09, 0.95)])
        c.arc(0.22, 0.12, 0.58, 0.60, 180, 360, 0.05)
        c.arc(0.42, 0.12, 0.78, 0.60, 180, 360, 0.05)
        c.line([(0.16, 0.44), (0.84, 0.44)], 0.012)
    elif style == "formal":  # clutch: flap, gold clasp, chain strap
        c.outline_arc(0.12, 0.06, 0.88, 0.80, 180, 360, 0.02, GOLD)
        c.rounded(0.05, 0.40, 0.95, 0.84, 0.06)
        c.line([(0.06, 0.42), (0.50, 0.66), (0.94, 0.42)], 0.02)
        c.dot(0.50, 0.66, 0.045, GOLD)
    else:  # sporty backpack: top loop, side straps, zipped front pocket
        c.arc(0.39, 0.02, 0.61, 0.26, 180, 360, 0.035)
        c.rounded(0.13, 0.26, 0.23, 0.82, 0.04)
        c.rounded(0.77, 0.26, 0.87, 0.82, 0.04)
        c.rounded(0.20, 0.12, 0.80, 0.95, 0.14)
        c.line([(0.30, 0.56), (0.70, 0.56), (0.70, 0.88), (0.30, 0.88), (0.30, 0.56)], 0.02, c.accent)
        c.line([(0.30, 0.62), (0.70, 0.62)], 0.025, c.accent)


def _hat(c: _Canvas, style: str) -> None:
    if style == "casual":  # bucket hat
        c.poly([(0.31, 0.24), (0.36, 0.20), (0.64, 0.20), (0.69, 0.24), (0.75, 0.62), (0.25, 0.62)])
        c.poly([(0.25, 0.58), (0.75, 0.58), (0.95, 0.82), (0.05, 0.82)])
        c.line([(0.25, 0.60), (0.75, 0.60)], 0.016)
        c.line([(0.16, 0.72), (0.84, 0.72)], 0.010)
    elif style == "formal":  # fedora: wide brim, pinched crown, dark ribbon
        c.ellipse(0.01, 0.56, 0.99, 0.82)
        c.poly([(0.25, 0.66), (0.27, 0.30), (0.40, 0.18), (0.50, 0.25), (0.60, 0.18), (0.73, 0.30),
                (0.75, 0.66)])
        c.solid_poly([(0.256, 0.52), (0.744, 0.52), (0.747, 0.62), (0.253, 0.62)], OUTLINE)
        c.line([(0.50, 0.25), (0.50, 0.40)], 0.012)
    else:  # sporty baseball cap, side view, bill to the right
        c.chord(0.10, 0.20, 0.80, 1.00, 180, 360)
        c.poly([(0.62, 0.56), (0.93, 0.60), (0.99, 0.66), (0.96, 0.70), (0.62, 0.64)])
        c.dot(0.45, 0.205, 0.035)
        c.line([(0.45, 0.22), (0.30, 0.60)], 0.012)
        c.line([(0.45, 0.22), (0.58, 0.60)], 0.012)
        c.line([(0.10, 0.60), (0.80, 0.60)], 0.03, c.accent)


_SILHOUETTES: dict[str, Callable[[_Canvas, str], None]] = {
    "shirt": _shirt, "trousers": _trousers, "skirt": _skirt, "dress": _dress,
    "shoes": _shoes, "bag": _bag, "hat": _hat,
}
assert tuple(_SILHOUETTES) == CATEGORIES


# ---------------------------------------------------------------------------------------------
# Patterns: coarse on purpose (a stripe is ~5 px wide at 64x64).


def _pattern_texture(pattern: str, base: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    tex = Image.new("RGB", (_S, _S), base)
    draw = ImageDraw.Draw(tex)
    ink = ink_for(base)
    if pattern == "striped":
        period = int(rng.integers(38, 46))
        phase = int(rng.integers(0, period))
        for y in range(phase - period, _S, period):
            draw.rectangle([0, y, _S, y + period // 2 - 1], fill=ink)
    elif pattern == "dotted":
        spacing = int(rng.integers(38, 44))
        radius = int(rng.integers(10, 13))
        ox, oy = int(rng.integers(0, spacing)), int(rng.integers(0, spacing))
        for row, y in enumerate(range(oy - spacing, _S + spacing, spacing)):
            shift = spacing // 2 if row % 2 else 0
            for x in range(ox - spacing + shift, _S + spacing, spacing):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=ink)
    elif pattern == "checked":
        period = int(rng.integers(44, 52))
        band = period * 2 // 7
        half = tuple((a + b) // 2 for a, b in zip(base, ink))
        ox, oy = int(rng.integers(0, period)), int(rng.integers(0, period))
        for x in range(ox - period, _S, period):
            draw.rectangle([x, 0, x + band - 1, _S], fill=half)
        for y in range(oy - period, _S, period):
            draw.rectangle([0, y, _S, y + band - 1], fill=half)
        for x in range(ox - period, _S, period):
            for y in range(oy - period, _S, period):
                draw.rectangle([x, y, x + band - 1, y + band - 1], fill=ink)
    elif pattern == "zigzag":
        period = int(rng.integers(40, 48))
        wave = int(rng.integers(36, 44))
        amp = wave // 3
        oy = int(rng.integers(0, period))
        for y in range(oy - period, _S + period, period):
            pts = [(x, y + (amp if (x // (wave // 2)) % 2 else -amp)) for x in range(-wave, _S + wave, wave // 2)]
            draw.line(pts, fill=ink, width=11)
    elif pattern != "solid":
        raise KeyError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
    return tex


def draw_product(category: str, color: str, pattern: str, style: str, rng: np.random.Generator) -> Image.Image:
    """Draw one product as a 128x128 RGBA image; `rng` only jitters size and pattern phase."""
    if category not in _SILHOUETTES:
        raise KeyError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    if style not in STYLES:
        raise KeyError(f"unknown style {style!r}; expected one of {STYLES}")
    base = COLORS[color]
    canvas = _Canvas(scale=float(rng.uniform(0.94, 1.0)), base=base)
    _SILHOUETTES[category](canvas, style)

    image = Image.new("RGBA", (_S, _S), (0, 0, 0, 0))
    image.paste(_pattern_texture(pattern, base, rng), (0, 0), canvas.mask)
    # Outline = the silhouette grown by 4 px minus itself, so white items stand out on white pages.
    ring = ImageChops.subtract(canvas.mask.filter(ImageFilter.MaxFilter(9)), canvas.mask)
    image.paste(OUTLINE + (255,), (0, 0), ring)
    draw = ImageDraw.Draw(image)
    for paint in canvas.overlays:
        paint(draw)
    return image.reduce(2)
