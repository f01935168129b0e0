"""Load base models: the shipped demo model, any local diffusers folder, or a hub id.

    pipe = load_sd_pipeline("demo")                          # assets/models/demo-sd
    pipe = load_sd_pipeline("/models/stable-diffusion-v1-5")  # any local diffusers folder
    pipe = load_sd_pipeline("org/model")                     # only when HF_HUB_OFFLINE is not set

A path that is not a usable diffusers folder is reported as one clear `InputError` (no
model_index.json, a ControlNet or UNet folder given as a pipeline, pickle-only weights, a
single-file checkpoint), never as a deep traceback. Loaded models are cached per process, keyed
by (path, device, dtype), so the UI, the CLI and benchmarks share one copy.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from core.errors import InputError

from .device import pick_device, pick_dtype

MODELS_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"
DEMO = {"demo": "demo-sd", "demo-sd": "demo-sd", "demo-controlnet": "demo-controlnet", "demo-clip": "demo-clip"}
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
TEXT_TO_IMAGE = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")

_CACHE: dict[tuple, object] = {}


def demo_path(name: str = "demo") -> Path:
    """Folder of a shipped demo model ("demo", "demo-controlnet", "demo-clip", ...)."""
    return MODELS_DIR / DEMO.get(name, name)


def hub_allowed() -> bool:
    """Hub downloads happen only when the user turned offline mode off."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() in ("0", "false", "no", "")


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~")) and "\\" not in spec


def resolve(spec: str | Path, default: str = "demo") -> tuple[str, bool]:
    """(local folder or hub id, is_local) for a model spec; raises InputError when neither."""
    spec = str(spec or default)
    if spec in DEMO:
        path = demo_path(spec)
        if not path.is_dir():
            raise InputError(f"the demo model is not installed (expected it at {path}); "
                             "train it with `atelier finetune demo-model --what all`")
        return str(path), True
    path = Path(spec).expanduser()
    if path.exists():
        return str(path.resolve()), True
    if _looks_like_hub_id(spec):
        if not hub_allowed():
            raise InputError(f"{spec!r} is not a local folder, and hub downloads are off (HF_HUB_OFFLINE=1); "
                             "give a local diffusers folder, or set HF_HUB_OFFLINE=0 to download it")
        return spec, False
    raise InputError("model folder not found", spec)


def _weights_check(folder: Path, what: str, allow_unsafe: bool = False) -> None:
    """Refuse folders whose weights exist only as pickles (loading a pickle can run code), unless allowed."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    if any(p.suffix == ".safetensors" for p in files):
        return
    pickles = [p for p in files if p.suffix in PICKLE_SUFFIXES]
    if pickles and allow_unsafe:
        return  # the user passed --allow-unsafe-weights
    if pickles:
        raise InputError(f"{what} has only pickle weights ({pickles[0].name}); refusing to load them because a "
                         "pickle can run arbitrary code. Convert them to safetensors first", folder)
    raise InputError(f"{what} has no weights (*.safetensors)", folder)


def check_pipeline_folder(folder: str | Path, allow_unsafe: bool = False) -> dict:
    """Validate a local diffusers pipeline folder and return its model_index.json."""
    folder = Path(folder)
    if folder.is_file():
        hint = " (a single-file checkpoint: convert it with diffusers' conversion scripts first)" \
            if folder.suffix in (".safetensors", *PICKLE_SUFFIXES) else ""
        raise InputError(f"expected a diffusers folder, got a file{hint}", folder)
    index = folder / "model_index.json"
    if not index.is_file():
        config = folder / "config.json"
        if config.is_file():
            cls = json.loads(config.read_text()).get("_class_name", "a single model")
            raise InputError(f"this is a {cls} folder, not a pipeline (no model_index.json); "
                             "give the folder of the whole pipeline", folder)
        raise InputError("not a diffusers pipeline folder (no model_index.json)", folder)
    try:
        meta = json.loads(index.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"model_index.json is not valid JSON ({e.msg})", index, e.lineno) from None
    cls = meta.get("_class_name")
    if cls not in TEXT_TO_IMAGE:
        raise InputError(f"model_index.json names {cls!r}; Atelier loads {' or '.join(TEXT_TO_IMAGE)} folders", index)
    for part in ("unet", "vae", "text_encoder"):
        if part in meta and not (folder / part).is_dir():
            raise InputError(f"pipeline folder is missing its {part}/ subfolder", folder)
    for part in ("unet", "vae"):
        _weights_check(folder / part, f"{part}/", allow_unsafe)
    return meta


def load_sd_pipeline(spec: str | Path = "demo", device: str | None = None, dtype: str | None = None,
                     cache: bool = True, allow_unsafe: bool = False):
    """A diffusers text-to-image pipeline (SD 1.x/2.x, or SDXL) on `device`, safety checker off for the demo."""
    source, local = resolve(spec)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    key = ("sd", source, str(dev), str(torch_dtype))
    if cache and key in _CACHE:
        return _CACHE[key]
    meta = check_pipeline_folder(source, allow_unsafe) if local else {}
    import diffusers  # after the checks: a wrong path is reported without loading diffusers

    cls = getattr(diffusers, meta["_class_name"]) if local else diffusers.DiffusionPipeline
    kwargs = {"dtype": torch_dtype, "use_safetensors": None if allow_unsafe else True}
    if local and "safety_checker" in meta and meta["safety_checker"][0] is None:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError, EnvironmentError) as e:
        raise InputError(f"could not load the pipeline: {str(e).splitlines()[0]}", source) from None
    check_tokenizer_of(pipe)
    pipe = pipe.to(dev)
    if cache:
        _CACHE[key] = pipe
    return pipe


def check_tokenizer_of(pipe) -> None:
    """Catch the offline trap in each tokenizer of a loaded pipeline."""
    from .tokenizer import check_tokenizer

    for name in ("tokenizer", "tokenizer_2"):
        tok = getattr(pipe, name, None)
        if tok is not None:
            check_tokenizer(tok, f"pipeline's {name}")


def load_controlnet(spec: str | Path = "demo-controlnet", device: str | None = None, dtype: str | None = None,
                    cache: bool = True):
    """A diffusers `ControlNetModel` from the shipped demo, a local folder, or a hub id."""
    source, local = resolve(spec, default="demo-controlnet")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    key = ("controlnet", source, str(dev), str(torch_dtype))
    if cache and key in _CACHE:
        return _CACHE[key]
    if local:
        config = Path(source) / "config.json"
        if not config.is_file():
            hint = " (this is a pipeline folder; give its ControlNet)" if (Path(source) / "model_index.json").exists() else ""
            raise InputError(f"not a ControlNet folder (no config.json){hint}", source)
        cls = json.loads(config.read_text()).get("_class_name")
        if cls != "ControlNetModel":
            raise InputError(f"config.json names {cls!r}, not ControlNetModel", config)
        _weights_check(Path(source), "ControlNet folder")
    from diffusers import ControlNetModel

    try:
        model = ControlNetModel.from_pretrained(source, dtype=torch_dtype, use_safetensors=True)
    except (OSError, ValueError, EnvironmentError) as e:
        raise InputError(f"could not load the ControlNet: {str(e).splitlines()[0]}", source) from None
    model = model.to(dev)
    if cache:
        _CACHE[key] = model
    return model


def clear_cache() -> None:
    """Forget cached models (tests; or to free memory)."""
    _CACHE.clear()
