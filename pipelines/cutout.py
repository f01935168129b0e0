"""A product picture on a plain background (what the product pipeline draws) as an RGBA cut-out.

The background is the region connected to the picture's border whose color is within `tolerance`
of the border pixels it grows from (a flood fill from every border pixel); it becomes transparent,
everything else keeps its pixels. A picture with no plain border comes back fully opaque: the
Studio then asks for a mask instead of guessing.
"""

from __future__ import annotations

from PIL import Image, ImageDraw


def border_is_plain(image: Image.Image, spread: float = 20.0) -> bool:
    """True when the pixels along the picture's edge are of one color (per-channel spread below `spread`)."""
    import numpy as np

    a = np.asarray(image.convert("RGB"), dtype=np.float32)
    edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return bool(edge.std(axis=0).max() < spread)


def plain_background_cutout(image: Image.Image, tolerance: int = 40, step: int = 8) -> Image.Image:
    """RGBA copy of `image` with its plain, border-connected background transparent (seeds every `step` px);
    fully opaque when the edge is not of one color (there is no plain background to remove)."""
    rgba = image.convert("RGB").convert("RGBA")
    if not border_is_plain(rgba):
        return rgba
    w, h = rgba.size
    seeds = {(x, y) for x in range(0, w, step) for y in (0, h - 1)} | {(x, y) for y in range(0, h, step)
                                                                       for x in (0, w - 1)}
    for xy in sorted(seeds):
        if rgba.getpixel(xy)[3] == 255:  # not filled by an earlier seed
            ImageDraw.floodfill(rgba, xy, (255, 255, 255, 0), thresh=tolerance)
    return rgba


def has_cutout(rgba: Image.Image) -> bool:
    """True when some but not all pixels are transparent (a usable product cut-out)."""
    low, high = rgba.getchannel("A").getextrema()
    return low == 0 and high == 255
