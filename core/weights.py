"""The one weights-format check, on what the loaders will actually read.

A path's suffix says little: `--lora DIR` names a folder, and for a folder that holds only
`pytorch_lora_weights.bin` diffusers falls back to unpickling it; a `.safetensors` name that is
really a pickle makes diffusers' LoRA loader fall back to `torch.load` of the same file. So
`check_weights` lists the files diffusers (or Atelier's own loaders) would open for a file, a LoRA
folder, a model component folder (unet/, vae/, text_encoder/, a ControlNet) or a whole pipeline
folder, refuses pickles among them unless the user passed `--allow-unsafe-weights`, and checks
each safetensors header (its declared tensors must fit in the file) before anything is loaded.

    files = check_weights(path, kind="lora", allow_unsafe=False, what="--lora")
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from .errors import InputError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFETENSORS = ".safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
# file names diffusers / transformers read from a model component folder, in the order they look
MODEL_SAFE_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
MODEL_SAFE_INDEXES = ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")
MODEL_PICKLE_NAMES = ("diffusion_pytorch_model.bin", "pytorch_model.bin", "diffusion_pytorch_model.ckpt",
                      "diffusion_pytorch_model.bin.index.json", "pytorch_model.bin.index.json")
LORA_SAFE = "pytorch_lora_weights.safetensors"
LORA_PICKLE = "pytorch_lora_weights.bin"
_NOT_LORA = ("scheduler", "optimizer", "checkpoint")  # diffusers skips these names when guessing
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1,
                "F6_E2M3": 1, "F6_E3M2": 1, "C64": 8}
UNSAFE_HINT = ("refusing to load a pickle (unpickling can run arbitrary code); convert it to safetensors, "
               "or pass --allow-unsafe-weights if you trust its source")


def is_pickle_name(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(PICKLE_SUFFIXES) or name.endswith(".bin.index.json")


def weight_files(path: str | Path, kind: str = "auto") -> list[Path]:
    """The files a loader would read for `path` (a file, or a folder of `kind`): lora | model | pipeline |
    folder (any *.safetensors, else pickles) | auto (guessed from the folder's contents)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("weights not found", path)
    if kind == "auto":
        kind = _guess_kind(path)
    if kind == "pipeline":
        return [f for part in pipeline_components(path) for f in weight_files(part, "model")]
    if kind == "model":
        return _model_files(path)
    if kind == "lora":
        return _lora_files(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SAFETENSORS))
    return files or sorted(p for p in path.iterdir() if p.is_file() and is_pickle_name(p))


def _guess_kind(folder: Path) -> str:
    if (folder / "model_index.json").is_file():
        return "pipeline"
    names = {p.name for p in folder.iterdir()}
    if names & {*MODEL_SAFE_NAMES, *MODEL_SAFE_INDEXES, *MODEL_PICKLE_NAMES}:
        return "model"
    if names & {LORA_SAFE, LORA_PICKLE}:
        return "lora"
    return "folder"


def pipeline_components(folder: Path) -> list[Path]:
    """The component folders of a diffusers pipeline that hold weights (those with a config.json)."""
    from .jsonio import read_json

    index = read_json(folder / "model_index.json", what="model_index.json")
    parts = []
    for name, value in sorted(index.items()):
        if name.startswith("_") or not isinstance(value, list):
            continue  # settings such as requires_safety_checker
        if len(value) != 2:
            raise InputError(f"model_index.json: {name!r} must be [library, class], found {value!r}"[:200],
                             folder / "model_index.json")
        if value[0] is None:
            continue  # a component left out (e.g. safety_checker: [null, null])
        if (folder / name / "config.json").is_file():
            parts.append(folder / name)
    return parts


def _model_files(folder: Path) -> list[Path]:
    """diffusers/transformers `from_pretrained` of one model folder: safetensors first, else pickles."""
    for name in MODEL_SAFE_NAMES:
        if (folder / name).is_file():
            return [folder / name]
    for name in MODEL_SAFE_INDEXES:
        if (folder / name).is_file():
            return [folder / name, *_shards(folder / name)]
    return [folder / n for n in MODEL_PICKLE_NAMES if (folder / n).is_file()]


def _shards(index: Path) -> list[Path]:
    from .jsonio import read_json

    weight_map = read_json(index, what=index.name).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InputError("the shard index has no weight_map of file names", index)
    from .paths import inside

    return [inside(index.parent, name, what="shard") for name in sorted(set(weight_map.values()))]


def _lora_files(folder: Path) -> list[Path]:
    """What `load_lora_weights(folder)` reads: pytorch_lora_weights.safetensors, else the first other
    *.safetensors, else (falling back) pytorch_lora_weights.bin or the first *.bin."""
    for suffix, preferred in ((SAFETENSORS, LORA_SAFE), (".bin", LORA_PICKLE)):
        names = sorted(f for f in os.listdir(folder) if f.endswith(suffix) and (folder / f).is_file()
                       and not any(s in f for s in _NOT_LORA))
        if preferred in names:
            return [folder / preferred]
        if names:
            return [folder / names[0]]
    return []


def check_weights(path: str | Path, *, kind: str = "auto", allow_unsafe: bool = False,
                  what: str = "weights") -> list[Path]:
    """The files `path` would be loaded from, each checked: a pickle is refused unless `allow_unsafe`, a
    safetensors file must have a valid header whose tensors fit in the file. InputError otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path)
    files = weight_files(path, kind)
    if not files:
        raise InputError(f"{what}: no weights found (expected *.safetensors)", path)
    for f in files:
        if is_pickle_name(f):
            if not allow_unsafe:
                raise InputError(f"{what} has only pickle weights where the loader reads ({f.name}); {UNSAFE_HINT}", f)
        elif f.name.endswith(SAFETENSORS):
            safetensors_header(f)
        elif f.name.endswith(".index.json"):
            continue
        elif not allow_unsafe:
            raise InputError(f"{what} must be a .safetensors file (found {f.name}); {UNSAFE_HINT}", f)
    return files


def check_ip_adapter(path: str | Path, *, allow_unsafe: bool = False) -> Path:
    """What diffusers' `load_ip_adapter` reads for `path` (a .safetensors file, or a folder holding one):
    that file and the `image_encoder/` model folder beside it; both checked. Returns the weight file."""
    path = Path(path)
    if not path.exists():
        raise InputError("IP-Adapter weights not found", path)
    weight = path if path.is_file() else next(iter(sorted(path.glob("*" + SAFETENSORS))), None)
    if weight is None and path.is_dir():
        check_weights(path, kind="folder", allow_unsafe=allow_unsafe, what="IP-Adapter folder")
    if weight is None or not weight.name.endswith(SAFETENSORS):
        if weight is not None and is_pickle_name(weight) and not allow_unsafe:
            raise InputError(f"IP-Adapter weights: {weight.name} is a pickle checkpoint; {UNSAFE_HINT}", weight)
        raise InputError("IP-Adapter weights must be a .safetensors file (or a folder holding one)", path)
    safetensors_header(weight)
    encoder = weight.parent / "image_encoder"
    if not encoder.is_dir():
        raise InputError("IP-Adapter needs its image encoder in an `image_encoder` folder beside the weights",
                         weight.parent)
    check_weights(encoder, kind="model", allow_unsafe=allow_unsafe, what="IP-Adapter image_encoder/")
    return weight


def safetensors_header(path: str | Path) -> dict:
    """The tensor table of a safetensors file, checked against the file's size (nothing is allocated
    beyond the header): a file that is not safetensors (e.g. a renamed pickle) is refused."""
    from .jsonio import decode, loads

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError("not a safetensors file (shorter than its 8-byte header length)", path)
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise InputError(f"not a safetensors file (its header claims {n} bytes in a {size}-byte file; "
                             "a pickle or another format renamed?)", path)
        raw = f.read(n)
    if not raw.lstrip().startswith(b"{"):
        raise InputError("not a safetensors file (the header is not JSON; a renamed pickle?)", path)
    header = loads(decode(raw, path, "safetensors header"), path=path, what="safetensors header")
    if not isinstance(header, dict):
        raise InputError("not a safetensors file (the header is not a JSON object)", path)
    data_bytes = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            numel = 1
            for d in shape:
                if not isinstance(d, int) or d < 0:
                    raise ValueError
                numel *= d
            nbytes = numel * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"safetensors header: tensor {name!r} has no valid dtype/shape/offsets"[:200], path) from None
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_bytes) \
                or end - begin != nbytes:
            raise InputError(f"safetensors header: tensor {name!r} declares {nbytes} bytes outside the "
                             f"{data_bytes} bytes of data in the file"[:240], path)
    return header


# --- memory ----------------------------------------------------------------------------------------
def available_memory() -> int:
    """Bytes of RAM this process can still get (MemAvailable, else physical RAM)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_fits_in_memory(nbytes: int, what: str, path: str | Path | None = None) -> None:
    """Refuse to allocate what a config declares when it would not fit in the RAM left (before allocating)."""
    free = available_memory()
    if nbytes > free:
        raise InputError(f"{what} would need {nbytes / 2**30:.1f} GiB; only {free / 2**30:.1f} GiB of memory "
                         "is available (a config with absurd sizes?)", path)


def module_bytes(build) -> int:
    """Bytes of the parameters and buffers of the torch module `build()` makes, built on the meta device
    (no memory allocated), so a config's sizes can be checked before the real model exists."""
    import torch

    with torch.device("meta"):
        module = build()
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
