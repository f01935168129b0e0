"""Strict CSV/JSONL row readers that turn every malformed line into one InputError naming file and line."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterator

from .errors import InputError

MAX_FIELD_CHARS = 1 << 20  # a 1 MB cell is already absurd; beyond it we report an error, not hang
csv.field_size_limit(MAX_FIELD_CHARS)
MAX_COLUMNS = 256


def read_text(path: str | Path) -> str:
    """Read a whole text file as UTF-8 (BOM allowed), with clear errors for missing/empty/binary files."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a folder, expected a file", path)
    data = path.read_bytes()
    if not data.strip():
        raise InputError("file is empty", path)
    if b"\x00" in data:
        raise InputError("file contains NUL bytes; is it a binary file?", path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8", path, line) from None


def iter_csv_rows(
    path: str | Path, required: set[str], optional: set[str], prefix_ok: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row dict) from a comma-separated file with a header, validating its shape."""
    path = Path(path)
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as e:
        raise InputError(f"malformed CSV header ({e})", path, 1) from None
    header = [h.strip() for h in header]
    if len(header) > MAX_COLUMNS:
        raise InputError(f"header has {len(header)} columns; at most {MAX_COLUMNS} are supported", path, 1)
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        sep = next(s for s in (";", "\t", "|") if s in header[0])
        raise InputError(f"header looks {sep!r}-separated; Atelier expects comma-separated CSV", path, 1)
    seen: set[str] = set()
    for name in header:
        if not name:
            raise InputError("header has an empty column name", path, 1)
        if name in seen:
            raise InputError(f"column {name!r} appears twice in the header", path, 1)
        seen.add(name)
        if name not in required and name not in optional and not name.startswith(prefix_ok or ("\0",)):
            allowed = ", ".join(sorted(required | optional) + [p + "*" for p in prefix_ok])
            raise InputError(f"unknown column {name!r} (allowed: {allowed})", path, 1)
    missing = sorted(required - seen)
    if missing:
        raise InputError(f"missing required column(s): {', '.join(missing)}", path, 1)
    n_rows = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise InputError(f"malformed CSV ({e})", path, reader.line_num) from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise InputError(f"expected {len(header)} fields, found {len(row)}", path, reader.line_num)
        n_rows += 1
        yield reader.line_num, {k: v.strip() for k, v in zip(header, row)}
    if n_rows == 0:
        raise InputError("no data rows after the header", path)


def iter_jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) from a JSON-lines file; every line must be a JSON object, read strictly
    (`core.jsonio`: no NaN, no repeated keys, bounded numbers and depth), with text values of at most
    1 MB like a CSV cell."""
    from .jsonio import loads

    path = Path(path)
    text = read_text(path)
    n = 0
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        obj = loads(raw, path=path, line=i, what="record")
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, found {type(obj).__name__}", path, i)
        for key, value in obj.items():
            if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                raise InputError(f"field {key[:40]!r} is {len(value)} characters; the limit is {MAX_FIELD_CHARS}",
                                 path, i)
        n += 1
        yield i, obj
    if n == 0:
        raise InputError("no records in file", path)


def parse_id(value: object, what: str, path: Path, line: int) -> str:
    """Validate an external id: non-empty text, not NaN, not a negative number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise InputError(f"{what} is missing", path, line)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{what} must be text or an integer, got {type(value).__name__}", path, line)
    text = str(value).strip()
    if not text:
        raise InputError(f"{what} is empty", path, line)
    if text.lower() in {"nan", "none", "null"}:
        raise InputError(f"{what} is {text!r}, not an id", path, line)
    try:
        negative = float(text) < 0
    except ValueError:
        negative = False
    if negative:
        raise InputError(f"{what} {text!r} is negative", path, line)
    if any(ord(c) < 32 for c in text):
        raise InputError(f"{what} contains control characters", path, line)
    return text


def parse_float(value: str, what: str, path: Path, line: int, hint: str = "") -> float:
    """Parse a finite number or raise a one-line error saying which field and line."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a number{hint}", path, line) from None
    if not math.isfinite(x):
        raise InputError(f"{what} {value!r} is not a finite number", path, line)
    return x
