"""An X/Y plot sheet (as A1111's "X/Y plot" script makes): images in a grid with column and row labels.

    sheet = xy_grid(images, ["seed: 1", "seed: 2"], ["steps: 10", "steps: 20"])   # images row by row

Pure PIL: the images are pasted at one cell size (the largest image's), the X labels sit above the
columns and the Y labels left of the rows, so a reader compares one setting at a time.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from core.errors import InputError

PAD = 6  # pixels around each label and between cells


def _font():
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    """`text`, shortened with '…' until it fits in `width` pixels."""
    if _text_size(draw, text, font)[0] <= width:
        return text
    while len(text) > 1 and _text_size(draw, text + "…", font)[0] > width:
        text = text[:-1]
    return text + "…"


def xy_grid(images: list[Image.Image], x_labels: list[str], y_labels: list[str], *,
            background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """One RGB sheet: `images` (row by row: len(y_labels) rows of len(x_labels)) under X and beside Y labels."""
    nx, ny = len(x_labels), len(y_labels)
    if nx < 1 or ny < 1:
        raise InputError("an X/Y grid needs at least one X and one Y value")
    if len(images) != nx * ny:
        raise InputError(f"an X/Y grid of {nx}x{ny} needs {nx * ny} images, got {len(images)}")
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_h = max(_text_size(probe, t or " ", font)[1] for t in [*x_labels, *y_labels]) + 2 * PAD
    left_w = min(max(_text_size(probe, t, font)[0] for t in y_labels) + 2 * PAD, max(cell_w, 160))
    width = left_w + nx * (cell_w + PAD) + PAD
    height = label_h + ny * (cell_h + PAD) + PAD
    sheet = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(sheet)
    for i, text in enumerate(x_labels):
        x0 = left_w + PAD + i * (cell_w + PAD)
        shown = _fit(text, draw, font, cell_w)
        w = _text_size(draw, shown, font)[0]
        draw.text((x0 + (cell_w - w) // 2, PAD), shown, fill=(0, 0, 0), font=font)
    for j, text in enumerate(y_labels):
        y0 = label_h + j * (cell_h + PAD)
        shown = _fit(text, draw, font, left_w - 2 * PAD)
        h = _text_size(draw, shown, font)[1]
        draw.text((PAD, y0 + (cell_h - h) // 2), shown, fill=(0, 0, 0), font=font)
    for k, image in enumerate(images):
        j, i = divmod(k, nx)
        x0 = left_w + PAD + i * (cell_w + PAD) + (cell_w - image.width) // 2
        y0 = label_h + j * (cell_h + PAD) + (cell_h - image.height) // 2
        sheet.paste(image.convert("RGB"), (x0, y0))
    return sheet


def cell_box(sheet: Image.Image, images: list[Image.Image], n_x: int, index: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of cell `index` (row by row) in a sheet `xy_grid` made of `images`."""
    n_y = len(images) // n_x
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    left_w = sheet.width - n_x * (cell_w + PAD) - PAD
    label_h = sheet.height - n_y * (cell_h + PAD) - PAD
    j, i = divmod(index, n_x)
    x0 = left_w + PAD + i * (cell_w + PAD)
    y0 = label_h + j * (cell_h + PAD)
    return x0, y0, x0 + cell_w, y0 + cell_h
