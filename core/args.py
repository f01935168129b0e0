"""Early checks of command-line values that would otherwise fail late (after models load) or in a
traceback: seeds, device names, output paths and byte sizes. Plain Python only (nothing heavy is
imported), so a bad flag is refused in milliseconds.

`app/commands/options.py` runs them as typer callbacks, so a flag is checked while the command
line is parsed, before the command body runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import limits
from .errors import InputError

SEED_MAX = limits.SEED.high  # one bound per setting: core.limits
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d{1,2}|mps|xpu|xpu:\d{1,2}|auto)$")
_BYTES = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,3})?)\s*(b|kb|kib|k|mb|mib|m|gb|gib|g)?\s*$", re.I)
_UNITS = {None: 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def check_seed(seed: int | None, what: str = "--seed", count: int = 1) -> int | None:
    """A seed in 0..2**32-1; with `count` candidates seeded seed..seed+count-1, the last must fit too."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"{what} must be a whole number, got {seed!r}")
    if seed < 0 or seed + max(count, 1) - 1 > SEED_MAX:
        raise InputError(f"{what} must be between 0 and {SEED_MAX} (seed + candidates - 1 too), got {seed}")
    return seed


def check_device(device: str | None, what: str = "--device") -> str | None:
    """cpu, cuda, cuda:N, mps or auto (whether CUDA is present is checked when torch loads)."""
    if device is None or device == "":
        return None
    if not isinstance(device, str) or not _DEVICE.match(device.strip()):
        raise InputError(f"unknown {what} {device!r} (use cpu, cuda, cuda:N, mps or auto)")
    return device.strip()


def check_out_dir(path: Path | None, what: str = "--out") -> Path | None:
    """An output folder: it may exist as a folder or not at all; a file there (or above it) is refused."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} names an existing file; give a folder", path)
    _check_parents(path, what)
    return path


def check_out_file(path: Path | None, what: str = "--json-out") -> Path | None:
    """An output file: it may exist as a file or not at all; a folder of that name is refused."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} names an existing folder; give a file name", path)
    if path.exists() and not path.is_file():
        raise InputError(f"{what} is not a regular file", path)
    _check_parents(path, what)
    return path


def _check_parents(path: Path, what: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what}: {parent} is a file, so nothing can be written under it", path)
            return


_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")


def check_size(text: str, what: str = "--size", low: int = 32, high: int = 4096) -> tuple[int, int]:
    """'300x250' -> (300, 250), each side in [low, high] pixels."""
    m = _SIZE.match(str(text))
    if not m:
        raise InputError(f"{what} must look like 300x250, got {str(text)[:40]!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (low <= w <= high and low <= h <= high):
        raise InputError(f"{what} {w}x{h} must be between {low} and {high} pixels a side")
    return w, h


def parse_bytes(text: str | int, what: str = "size", *, low: int = 1024, high: int = 64 * 1000**3) -> int:
    """'20mb', '512kb', '1gib' or a number of bytes -> bytes, within [low, high]."""
    if isinstance(text, int) and not isinstance(text, bool):
        n = text
    else:
        m = _BYTES.match(str(text))
        if not m:
            raise InputError(f"{what} must be a size such as 20mb, 512kb or 1gb, got {str(text)[:40]!r}")
        n = int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower() or None])
    if not low <= n <= high:
        raise InputError(f"{what} must be between {low} bytes and {high // 1000**3} GB, got {n} bytes")
    return n
