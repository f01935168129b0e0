"""Contact sheets of the demo shop (PIL only): the catalog, and users' histories beside their true tastes."""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from .demoshop import DemoShop
from .vocab import ATTRIBUTE_KINDS, CATEGORIES, COLORS, STYLES

BACKGROUND = (250, 250, 248)
TEXT = (25, 25, 30)
MUTED = (110, 110, 118)
BAR = (70, 110, 200)
TASTE_COLUMN = 240  # px per attribute kind in the taste panel


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's built-in scalable font: nothing to ship or download.
    return ImageFont.load_default(size=size)


def _thumb(shop: DemoShop, item_id: str, size: int) -> Image.Image:
    return shop.catalog.load_image(item_id).resize((size, size), Image.Resampling.LANCZOS)


def catalog_sheet(shop: DemoShop, thumb: int = 64, columns: int = 24) -> Image.Image:
    """Every product, one band per category, sorted by style then color so the vocabulary is easy to scan."""
    color_rank = {c: k for k, c in enumerate(COLORS)}
    bands = []
    for category in CATEGORIES:
        items = [it for it in shop.catalog if it.category == category]
        items.sort(key=lambda it: (STYLES.index(it.attributes["style"]) if it.attributes.get("style") in STYLES else 9,
                                   color_rank.get(it.attributes.get("color", ""), 99), it.item_id))
        bands.append((category, items))
    label_h, pad = 26, 8
    rows = [max(1, -(-len(items) // columns)) for _, items in bands]
    width = pad * 2 + columns * thumb
    height = 50 + sum(label_h + r * thumb + pad for r in rows)
    sheet = Image.new("RGBA", (width, height), BACKGROUND + (255,))
    draw = ImageDraw.Draw(sheet)
    c = shop.info.get("counts", {})
    draw.text((pad, 12), f"Demo shop catalog: {len(shop.catalog)} products, {c.get('categories', '?')} categories, "
              f"{c.get('colors', '?')} colors, {c.get('patterns', '?')} patterns, {c.get('styles', '?')} styles "
              f"(seed {shop.info.get('seed', '?')})", fill=TEXT, font=_font(20))
    y = 50
    for (category, items), n_rows in zip(bands, rows):
        draw.text((pad, y + 4), f"{category} ({len(items)})", fill=MUTED, font=_font(16))
        y += label_h
        for k, it in enumerate(items):
            sheet.alpha_composite(_thumb(shop, it.item_id, thumb), (pad + (k % columns) * thumb, y + (k // columns) * thumb))
        y += n_rows * thumb + pad
    return sheet.convert("RGB")


def pick_users(shop: DemoShop, n: int = 3) -> list[str]:
    """The first user of each of `n` different segments (stable for a given shop)."""
    picked, segments = [], set()
    for user_id, taste in shop.users.items():
        if taste.segment not in segments:
            picked.append(user_id)
            segments.add(taste.segment)
        if len(picked) == n:
            break
    return picked


def _taste_panel(draw: ImageDraw.ImageDraw, shop: DemoShop, user_id: str, x: int, y: int, top: int = 4) -> None:
    taste = shop.taste(user_id)
    col_w, bar_w = TASTE_COLUMN, 90
    for k, kind in enumerate(ATTRIBUTE_KINDS):
        cx = x + k * col_w
        draw.text((cx, y), f"true {kind}", fill=MUTED, font=_font(14))
        for r, value in enumerate(taste.top(kind, top)):
            weight = taste.weights[kind][value]
            ry = y + 24 + r * 26
            tx = cx
            if kind == "color":
                draw.rectangle([cx, ry + 2, cx + 16, ry + 18], fill=COLORS[value], outline=TEXT)
                tx = cx + 22
            draw.text((tx, ry + 2), value, fill=TEXT, font=_font(14))
            bx = cx + 100
            draw.rectangle([bx, ry + 5, bx + bar_w, ry + 15], outline=(200, 200, 205))
            draw.rectangle([bx, ry + 5, bx + max(1, int(bar_w * weight)), ry + 15], fill=BAR)
            draw.text((bx + bar_w + 4, ry + 3), f"{weight:.2f}", fill=MUTED, font=_font(11))


def users_sheet(shop: DemoShop, user_ids: Sequence[str], last: int = 20, thumb: int = 56) -> Image.Image:
    """For each user: the last `last` history items (oldest to newest) beside their ground-truth taste."""
    per_row = 10
    hist_w = per_row * thumb
    block_h = 40 + 2 * thumb + 24
    width = 24 + hist_w + 30 + 4 * TASTE_COLUMN
    sheet = Image.new("RGBA", (width, 50 + block_h * len(user_ids)), BACKGROUND + (255,))
    draw = ImageDraw.Draw(sheet)
    draw.text((12, 12), "Shoppers: recent history (left, oldest to newest) and the true taste it was drawn from (right)",
              fill=TEXT, font=_font(20))
    for b, user_id in enumerate(user_ids):
        y = 50 + b * block_h
        taste = shop.taste(user_id)
        history = shop.history(user_id)
        draw.line([(12, y - 4), (width - 12, y - 4)], fill=(215, 215, 220), width=1)
        draw.text((12, y + 4), f"{user_id}  segment: {taste.segment}   popularity bias {taste.popularity_bias:.2f}   "
                  f"{len(history)} interactions (showing the last {min(last, len(history))})",
                  fill=TEXT, font=_font(16))
        for k, item_id in enumerate(history[-last:]):
            sheet.alpha_composite(_thumb(shop, item_id, thumb), (12 + (k % per_row) * thumb, y + 32 + (k // per_row) * thumb))
        _taste_panel(draw, shop, user_id, 12 + hist_w + 30, y + 32)
    return sheet.convert("RGB")
