"""Atomic writes (temp file + fsync + rename) and safe weight loading, used for every result we write."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)



@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results should be readable like any other
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes so that readers see either the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomic UTF-8 text write."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Atomic JSON write with sorted keys, so equal objects give equal bytes."""
    return atomic_write_text(path, dumps_json(obj, indent=indent) + "\n")


def write_results_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Atomic write of a results/report JSON with machine paths made relative (`portable`), so a
    results file reads the same on every clone."""
    return atomic_write_json(path, portable(obj), indent=indent)


_ABS_PATH = re.compile(r"(?<![\w.~])/(?:[\w.@+-]+/)*[\w.@+-]+")


def printable(obj: Any) -> Any:
    """What a command prints with --json: like `portable`, but temp-folder paths stay absolute, because a
    user must be able to open every printed path from where the command ran (`$TMPDIR/...` is for files
    that travel, not for an answer)."""
    return portable(obj, keep_tmp=True)


def portable(obj: Any, base: str | Path | None = None, keep_tmp: bool = False) -> Any:
    """`obj` with every absolute path inside its strings (also inside a printed command) rewritten
    relative to `base` (default: the working directory), e.g. /work/shared/data/x -> ../shared/data/x.

    Paths that share a top folder with `base` become relative; scratch paths under the temp folder
    become `$TMPDIR/...`; system paths (/usr, /dev...) stay as they are."""
    root = Path(base if base is not None else Path.cwd()).resolve()
    top = root.parts[1] if len(root.parts) > 1 else None
    tmp = tempfile.gettempdir().rstrip("/") + "/"

    def fix(text: str) -> str:
        def one(m: re.Match) -> str:
            p = m.group(0)
            if p.startswith(str(root) + "/"):
                return os.path.relpath(p, root)
            if p.startswith(tmp):
                return p if keep_tmp else "$TMPDIR/" + p[len(tmp):]
            parts = Path(p).parts
            if top is None or len(parts) < 2 or parts[1] != top:
                return p
            return os.path.relpath(p, root)
        return _ABS_PATH.sub(one, text) if "/" in text else text

    if isinstance(obj, str):
        return fix(obj)
    if isinstance(obj, Path):
        return fix(str(obj))
    if isinstance(obj, dict):
        return {portable(k, root, keep_tmp) if isinstance(k, str) else k: portable(v, root, keep_tmp)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v, root, keep_tmp) for v in obj]
    return obj


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """Valid JSON text always (sorted keys): a NaN or infinity that slipped into a record is written as
    null, never as the bare `NaN` that no other JSON reader accepts."""
    try:
        return json.dumps(obj, indent=indent, sort_keys=True, default=_json_default, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(json.loads(json.dumps(obj, sort_keys=True, default=_json_default))),
                          indent=indent, sort_keys=True, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def atomic_save_image(img, path: str | Path, **save_kwargs) -> Path:
    """Save a PIL image atomically; the format comes from the file suffix."""
    path = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **save_kwargs)
    return path


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line and fsync it: a crash loses at most this line, never earlier ones."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = dumps_json(record) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file; a torn last line (from a crash mid-append) is ignored, other bad lines raise."""
    return [obj for _, obj in read_jsonl_lines(path)]


def read_jsonl_lines(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) of every record of a JSONL file, read strictly (`core.jsonio`); a torn last
    line is ignored, any other bad line, or a line that is not an object, is one InputError."""
    from .jsonio import decode, loads

    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise InputError("is a folder, expected a JSONL file", path)
    text = decode(path.read_bytes(), path, "JSONL file")
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")  # the last line was never finished
    out: list[tuple[int, dict]] = []
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = loads(raw, path=path, line=i, what="record")
        except InputError:
            if torn_tail and i == len(lines):
                continue
            raise
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, found {type(obj).__name__}", path, i)
        out.append((i, obj))
    return out


def read_json_object(path: str | Path, what: str | None = None) -> dict:
    """A JSON object from a file, read strictly (`core.jsonio`: no NaN, repeated keys, huge numbers or
    deep nesting); a missing file, invalid JSON (with its line) or another value is one InputError."""
    from .jsonio import read_json

    path = Path(path)
    return read_json(path, what=what or path.name, expect=dict)


def read_config(folder: str | Path, what: str) -> dict:
    """The `config.json` of a saved folder (a model, an adapter...): `what` names the folder in errors."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError(f"not a {what} folder (no config.json)", folder)
    return read_json_object(folder / "config.json")


def save_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save torch tensors as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def check_not_pickle(path: str | Path, allow_unsafe: bool = False) -> None:
    """Refuse pickle checkpoints: loading one can run arbitrary code from whoever made the file.

    A folder is checked by what its loader would read (`core.weights.check_weights`), so a LoRA folder
    holding only `pytorch_lora_weights.bin` is refused like the file itself.
    """
    from .weights import check_weights, is_pickle_name

    path = Path(path)
    if path.is_dir():
        check_weights(path, allow_unsafe=allow_unsafe)
    elif is_pickle_name(path) and not allow_unsafe:
        raise InputError(
            "refusing to load a pickle checkpoint (it can run arbitrary code); convert it to safetensors "
            "or pass --allow-unsafe-weights if you trust its source",
            path,
        )


def load_safetensors(path: str | Path, device: str = "cpu") -> dict:
    """Load a safetensors file into torch tensors; anything else is refused with a clear error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    check_not_pickle(path)
    if not path.is_file():
        raise InputError("weights file not found", path)
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"not a valid safetensors file ({e})", path) from None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (checksums in manifests, states and configs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
