"""Checks for untrusted user input shared by every entry point: images, prompts and output paths."""

from __future__ import annotations

import re
import unicodedata
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError
from .limits import IMAGE_SIDE, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from .limits import PROMPT_CHARS as MAX_PROMPT_CHARS

_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")


def _check_file(path: str | Path) -> Path:
    """The file exists and its size is within bounds (checked before PIL reads a byte)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("image not found", path)
    size = path.stat().st_size
    if size == 0:
        raise InputError("image file is empty (0 bytes)", path)
    if size > MAX_IMAGE_BYTES:
        raise InputError(f"image file is {size / 2**20:.0f} MB; the limit is {MAX_IMAGE_BYTES // 2**20} MB", path)
    return path


@contextmanager
def _open_image(path: Path, max_pixels: int):
    """PIL-open a checked file, refuse oversized images from the header, and turn PIL's errors into
    one-line InputErrors (shared by the full loader and the header-only check)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise InputError(f"image is {w}x{h} pixels; the limit is {max_pixels} pixels (possible decompression bomb)", path)
            yield im
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError("not an image file PIL can read (is the extension lying?)", path) from None
    except Image.DecompressionBombError as e:
        raise InputError(f"image too large ({e})", path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"image is damaged or truncated ({e})", path) from None


def load_user_image(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS):
    """Open a user's image safely and return it as RGBA (8 bits per channel, first frame).

    Refuses empty files, non-images, truncated files, oversized images (decompression bombs)
    and animations; converts grayscale, palette, CMYK and 16-bit images.
    """
    path = _check_file(path)
    with _open_image(path, max_pixels) as im:
        if getattr(im, "n_frames", 1) > 1:
            raise InputError("animated images are not supported; export a single frame as PNG", path)
        im.load()
        return _to_rgba8(im)


def _to_rgba8(im):
    """Any PIL mode -> 8-bit RGBA; 16-bit and float modes are scaled, not clipped."""
    import numpy as np
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return im.convert("RGBA")


def check_prompt(text: str | None, *, what: str = "prompt", allow_empty: bool = False,
                 max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Normalise a user prompt: strip control characters (refused), trim, and bound its length."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"{what} must be text")
    bad = [c for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t"]
    if bad:
        raise InputError(f"{what} contains control characters (e.g. {ord(bad[0]):#04x}); remove them")
    text = " ".join(text.split())
    if not text and not allow_empty:
        raise InputError(f"{what} is empty")
    if len(text) > max_chars:
        raise InputError(f"{what} is {len(text)} characters; the limit is {max_chars} (CLIP reads only ~77 tokens anyway)")
    return text


def parse_size(size: str | tuple[int, int], *, what: str = "size") -> tuple[int, int]:
    """'300x250' (or a (w, h) pair) -> (300, 250), each side within `core.limits.IMAGE_SIDE`.

    One parser for every requested size (campaign formats, `--size`, the UI's banner sizes, the banner
    pipeline), so a size one of them accepts never fails in another.
    """
    if isinstance(size, str):
        m = _SIZE.match(size)
        if not m:
            raise InputError(f"{what} must look like 512x512, got {size!r}")
        w, h = int(m.group(1)), int(m.group(2))
    else:
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InputError(f"{what} must be a (width, height) pair, got {size!r}") from None
    if w not in IMAGE_SIDE or h not in IMAGE_SIDE:
        raise InputError(f"{what} {w}x{h} must be between {IMAGE_SIDE.low} and {IMAGE_SIDE.high} pixels a side")
    return w, h


def safe_output_path(root: str | Path, relative: str | Path) -> Path:
    """Resolve `relative` under `root`, refusing absolute paths and `..` that would escape it."""
    root = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise InputError(f"output path {str(relative)!r} must be relative to the output folder {root}")
    out = (root / rel).resolve()
    if out != root and root not in out.parents:
        raise InputError(f"output path {str(relative)!r} escapes the output folder {root}")
    return out


def check_product_image(path: str | Path, mask: str | Path | None = None, *, need_alpha: bool = True):
    """Check a product picture (and its mask) before any model loads; return it as RGBA.

    Products are cut out by their alpha channel or by a mask (white = product), so one of the two
    must exist and agree in size; everything `load_user_image` refuses is refused here too.
    """
    image = load_user_image(path)
    if mask is not None:
        m = load_user_image(mask)
        if m.size != image.size:
            raise InputError(f"mask is {m.size[0]}x{m.size[1]} but the product image is "
                             f"{image.size[0]}x{image.size[1]}", mask)
    elif need_alpha and image.getchannel("A").getextrema()[0] == 255:
        raise InputError("the product image has no transparent background (no alpha); give a PNG with alpha, "
                         "or a mask (white = product)", path)
    return image


def check_image_file(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """Cheap check from the header only (no decoding), for folders of many images: exists, not empty,
    an image PIL can identify, and not a decompression bomb. Returns (width, height)."""
    path = _check_file(path)
    with _open_image(path, max_pixels) as im:
        return im.size
