"""Generation parameters inside each PNG, the way AUTOMATIC1111's web UI writes them (a `parameters` text chunk).

A1111 and ComfyUI users expect to drag a PNG back into the app and get its settings. Every creative
PNG Atelier writes goes through `save_creative_png`, which adds one `parameters` chunk:

    red checked trousers, on a beach
    Negative prompt: blurry, text
    Steps: 20, Sampler: DPMSolverMultistepScheduler, CFG scale: 7.5, Seed: 42, Size: 300x250, Model: demo,
    Atelier pipeline: banner, Atelier backbone: ease, Atelier user: u0001

(the last line is one line in the file). An image made through an upscaler also says so, as A1111's hires fix
does: `Hires upscale: 2, Hires upscaler: demo-upscaler`. `read_png_parameters` reads it back strictly: a bounded
chunk, parsed by a small grammar (no eval), every value checked against `core.limits`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import limits
from .errors import InputError
from .io import atomic_path

KEY = "parameters"  # A1111's chunk name
MAX_CHARS = limits.PROMPT_CHARS + limits.NEGATIVE_PROMPT_CHARS + 2000  # prompt + negative + settings line
NEGATIVE = "Negative prompt:"
# `Key: value` pairs of the settings line; a value is a quoted string (A1111 quotes ones holding commas) or
# runs to the next comma.
_PAIR = re.compile(r'\s*([A-Za-z][A-Za-z0-9 _\-/]{0,40}):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")


def _value(text: str) -> str:
    """One value for the settings line: quoted (A1111 style) when it holds a comma, colon or quote."""
    text = " ".join(str(text).split())
    if any(ch in text for ch in ',:"'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def parameters_text(creative: Any) -> str:
    """The A1111 `parameters` text of a Creative: prompt, negative prompt, then one line of settings."""
    extra = getattr(creative, "extra", None) or {}
    condition = getattr(creative, "condition", None) or {}
    pairs = [("Steps", creative.steps), ("Sampler", extra.get("sampler") or "unknown"),
             ("CFG scale", f"{float(creative.guidance):g}"), ("Seed", creative.seed),
             ("Size", f"{creative.width}x{creative.height}"), ("Model", creative.base_model or "unknown"),
             ("Atelier pipeline", creative.pipeline)]
    if extra.get("upscaler"):
        pairs += [("Hires upscale", extra.get("upscale", 2)), ("Hires upscaler", extra["upscaler"])]
    if condition.get("source"):
        pairs.append(("Atelier backbone", condition["source"]))
    if getattr(creative, "user_id", None):
        pairs.append(("Atelier user", creative.user_id))
    lines = [" ".join(str(creative.prompt).splitlines())]
    if creative.negative_prompt:
        lines.append(f"{NEGATIVE} {' '.join(str(creative.negative_prompt).splitlines())}")
    lines.append(", ".join(f"{k}: {_value(v)}" for k, v in pairs))
    return "\n".join(lines)


def save_creative_png(image, path: str | Path, creative: Any) -> Path:
    """Write `image` as a PNG at `path` (atomically) with the creative's `parameters` chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(KEY, parameters_text(creative))  # tEXt when Latin-1, iTXt otherwise (as PIL decides)
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path


def png_bytes(image, creative: Any | None = None) -> bytes:
    """A PNG's bytes, with the creative's `parameters` chunk when one is given."""
    import io

    from PIL.PngImagePlugin import PngInfo

    buf = io.BytesIO()
    info = None
    if creative is not None:
        info = PngInfo()
        info.add_text(KEY, parameters_text(creative))
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_parameters(text: str, where: str | Path | None = None) -> dict[str, Any]:
    """A `parameters` text -> {prompt, negative_prompt, steps, guidance, seed, width, height, sampler, model, ...}.

    Strict: at most `MAX_CHARS` characters, a settings line of `Key: value` pairs, numbers within the
    bounds every surface uses; anything else is one InputError.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("the PNG's parameters are empty", where)
    if len(text) > MAX_CHARS:
        raise InputError(f"the PNG's parameters are {len(text)} characters; the most read is {MAX_CHARS}", where)
    lines = text.strip("\n").split("\n")
    settings_line = lines[-1] if len(lines) > 1 or _PAIR.match(lines[-1] or "") else ""
    head = lines[:-1] if settings_line else lines
    pairs: dict[str, str] = {}
    pos = 0
    while pos < len(settings_line):
        m = _PAIR.match(settings_line, pos)
        if m is None or m.end() == pos:
            raise InputError("the PNG's settings line is not `Key: value, ...`", where)
        pairs[m.group(1).strip()] = _unquote(m.group(2))
        pos = m.end()
    if "Steps" not in pairs:
        raise InputError("the PNG's parameters hold no `Steps:` (not made by Atelier or A1111?)", where)
    prompt, negative = [], []
    for line in head:
        if line.startswith(NEGATIVE) or negative:
            negative.append(line[len(NEGATIVE):].strip() if not negative else line)
        else:
            prompt.append(line)
    out: dict[str, Any] = {"prompt": "\n".join(prompt).strip(), "negative_prompt": "\n".join(negative).strip()}
    out["steps"] = int(limits.STEPS.check(_number(pairs["Steps"], int, "Steps", where), "Steps"))
    if "CFG scale" in pairs:
        out["guidance"] = float(limits.GUIDANCE.check(_number(pairs["CFG scale"], float, "CFG scale", where),
                                                      "CFG scale"))
    if "Seed" in pairs:
        out["seed"] = int(limits.SEED.check(_number(pairs["Seed"], int, "Seed", where), "Seed"))
    if "Size" in pairs:
        m = _SIZE.fullmatch(pairs["Size"].strip())
        if m is None:
            raise InputError(f"the PNG's Size is {pairs['Size'][:40]!r}, not WIDTHxHEIGHT", where)
        out["width"], out["height"] = (int(limits.IMAGE_SIDE.check(int(v), "Size")) for v in m.groups())
    for key, name in (("Sampler", "sampler"), ("Model", "model"), ("Atelier pipeline", "pipeline"),
                      ("Atelier backbone", "backbone"), ("Atelier user", "user"), ("Hires upscaler", "upscaler")):
        if key in pairs:
            out[name] = pairs[key][:200]
    if len(out["prompt"]) > limits.PROMPT_CHARS:
        raise InputError(f"the PNG's prompt is over {limits.PROMPT_CHARS} characters", where)
    if len(out["negative_prompt"]) > limits.NEGATIVE_PROMPT_CHARS:
        raise InputError(f"the PNG's negative prompt is over {limits.NEGATIVE_PROMPT_CHARS} characters", where)
    return out


def _number(text: str, kind: type, what: str, where) -> float:
    try:
        return kind(text.strip())
    except ValueError:
        raise InputError(f"the PNG's {what} is {text.strip()[:40]!r}, not a number", where) from None


def read_png_parameters(path: str | Path, shown_name: str | None = None) -> dict[str, Any]:
    """The settings stored in a PNG's `parameters` chunk (see `parse_parameters`), or InputError.

    Only the chunks before the image data are read (PIL's `info`; its own cap on text chunk size
    applies), the pixels are never decoded. `shown_name` is the name to put in messages (the
    user's file name rather than a temporary upload path).
    """
    from PIL import Image, UnidentifiedImageError

    where = shown_name or path
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", where)
    if path.stat().st_size > limits.MAX_IMAGE_BYTES:
        raise InputError(f"the file is over {limits.MAX_IMAGE_BYTES // (1 << 20)} MiB", where)
    try:
        with Image.open(path) as im:
            fmt, text = im.format, im.info.get(KEY)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError("not a readable PNG", where) from None
    if fmt != "PNG":
        raise InputError(f"settings are read from PNG files; this is {fmt or 'not an image'}", where)
    if text is None:
        raise InputError("this PNG holds no generation parameters (no `parameters` chunk)", where)
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return parse_parameters(str(text), where)
