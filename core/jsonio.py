"""The one strict JSON reader for everything a user hands us: condition files, catalogs (JSONL),
manifests, model configs, safetensors headers.

Python's `json` accepts more than JSON and fails in ways a user cannot read: `NaN`/`Infinity`
(not JSON; they would be written back into manifests as bare `NaN`), repeated keys (the last one
silently wins), 5,000-digit numbers (a ValueError from int conversion, or a float that becomes
inf) and deep nesting (a RecursionError). `loads` refuses each of them, before building anything
deep, with one `InputError` naming the file and line.

    data = read_json(path, what="condition", expect=dict)
    obj = loads(line, path=path, line=7)
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from .errors import InputError

MAX_DEPTH = 64  # configs and records are a few levels deep; deeper is an attack or a bug
MAX_NUMBER_CHARS = 64  # longer number literals are refused (no 5,000-digit ints, no inf from digits)
MAX_JSON_BYTES = 64 * 1024 * 1024  # one JSON document (a whole file); JSONL lines are read one by one

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


class _Refused(ValueError):
    """Raised from inside the decoder hooks; turned into an InputError with the position."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"duplicate key {k!r}")
        out[k] = v
    return out


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"number with {len(text)} digits (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    x = float(text)
    if not math.isfinite(x):
        raise _Refused(f"number {text[:20]} is out of range")
    return x


def _constant(name: str) -> None:
    raise _Refused(f"{name} is not valid JSON (numbers must be finite)")


def depth(text: str) -> int:
    """The deepest nesting of arrays/objects in JSON text (strings skipped), without parsing it."""
    best = level = 0
    for m in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        if m.group() in "[{":
            level += 1
            best = max(best, level)
        else:
            level -= 1
    return best


def loads(text: str, *, path: str | Path | None = None, line: int | None = None, what: str = "JSON",
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse strict JSON: finite numbers of bounded length, unique keys, bounded depth."""
    import json

    if ("[" in text or "{" in text) and text.count("[") + text.count("{") > max_depth and depth(text) > max_depth:
        raise InputError(f"{what} is nested more than {max_depth} levels deep", path, line)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_int, parse_float=_float,
                          parse_constant=_constant)
    except _Refused as e:
        raise InputError(f"{what}: {e}", path, line) from None
    except json.JSONDecodeError as e:
        where = line if line is not None else e.lineno
        col = f" at column {e.colno}" if line is not None else ""
        raise InputError(f"invalid JSON ({e.msg}{col})", path, where) from None
    except (RecursionError, ValueError) as e:  # belt and braces: the checks above should catch these first
        raise InputError(f"{what} cannot be read ({type(e).__name__})", path, line) from None


def decode(data: bytes, path: str | Path | None = None, what: str = "file") -> str:
    """UTF-8 text of `data` (a BOM allowed); another encoding is one InputError naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(f"{what} is not UTF-8 text (byte 0x{data[e.start]:02x}); save it as UTF-8", path,
                         line) from None


def read_json(path: str | Path, *, what: str = "JSON file", expect: type | None = dict,
              max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read a whole JSON file strictly; `expect` (dict, list or None) is the required top-level type."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found" if not path.is_dir() else f"{what} is a folder, expected a file", path)
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{what} is {size / 2**20:.0f} MB; the limit is {max_bytes // 2**20} MB", path)
    data = loads(decode(path.read_bytes(), path, what), path=path, what=what)
    if expect is not None and not isinstance(data, expect):
        names = {dict: "a JSON object", list: "a JSON array"}
        raise InputError(f"{what} must be {names.get(expect, expect.__name__)}, found {_kind(data)}", path)
    return data


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")
