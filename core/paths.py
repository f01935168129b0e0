"""The one path-safety helper: file names made from ids, and paths that must stay inside a folder.

Ids come from users (a shop's interactions.csv, a `--condition` file, a campaign, the UI), so an id
such as `x/../../ESCAPED` must never become a path. `safe_name` turns any id into one file-name
component (ids that are already safe keep their name); `inside` resolves a relative path under a
root and refuses absolute paths, `..` and symlinks that lead out of the root.

    out / f"outfit-{safe_name(user_id)}.png"        # never leaves `out`
    inside(catalog_dir, item.image_path, what="image_path")
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import InputError

MAX_NAME_CHARS = 96  # leaves room for prefixes and suffixes under the usual 255-byte file-name limit
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(value: object, *, max_chars: int = MAX_NAME_CHARS) -> str:
    """One file-name component for any id: letters, digits, `.`, `_` and `-` only, never `.`/`..`/hidden.

    An id that is already such a name is returned unchanged, so ordinary ids keep their file names.
    Anything else is rewritten (unsafe runs become `_`) and gets 8 hex digits of the id's SHA-256, so
    two different ids never share a file name.
    """
    text = str(value)
    if (text and len(text) <= max_chars and all(_SAFE.match(c) for c in text)
            and not text.startswith(".")):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem = _UNSAFE_RUN.sub("_", text).lstrip(".")[: max_chars - 9].strip("_") or "id"
    return f"{stem}-{digest}"


def slug(value: object, limit: int = 48) -> str:
    """A short file-name-safe part of an id, for names that carry their own hash (job and creative ids):
    unsafe runs become `_`, no leading dots, at most `limit` characters, never empty."""
    s = _UNSAFE_CHAR.sub("_", str(value)).lstrip(".")[:limit]
    return s or "_"


def inside(root: str | Path, relative: str | Path, *, what: str = "path") -> Path:
    """`root / relative`, resolved, or InputError when it would leave `root`.

    Refused: absolute paths, NUL bytes, any `..` component, and paths whose resolved target (after
    following every symlink, in `relative` or above its file) is outside the resolved `root`.
    """
    text = os.fspath(relative)
    if "\x00" in text:
        raise InputError(f"{what} {text!r} contains a NUL byte")
    rel = Path(text)
    if rel.is_absolute() or text.startswith(("~", "\\")):
        raise InputError(f"{what} {text!r} must be relative to {Path(root)} and stay inside it")
    if ".." in rel.parts:
        raise InputError(f"{what} {text!r} must stay inside {Path(root)} (no '..')")
    real_root = Path(root).resolve()
    target = (real_root / rel).resolve()
    if not is_within(target, real_root):
        raise InputError(f"{what} {text!r} leads outside {Path(root)} (through a symlink to {target})")
    return target


def is_within(path: str | Path, root: str | Path) -> bool:
    """True when the resolved `path` is `root` or below it (both resolved, symlinks followed)."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p == r or r in p.parents


def file_in(folder: str | Path, name: str) -> Path:
    """`folder / name` for a file name built by Atelier (e.g. from `safe_name`); refuses separators."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise InputError(f"{name!r} is not a plain file name")
    return Path(folder) / name
