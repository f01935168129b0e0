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

import os
from pathlib import Path

from core.errors import InputError
from core.io import read_json_object

from .device import pick_device, pick_dtype

MODELS_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"
DEMO = {"demo": "demo-sd", "demo-sd": "demo-sd", "demo-controlnet": "demo-controlnet", "demo-clip": "demo-clip",
        "demo-upscaler": "demo-upscaler"}
UPSCALER_SUBFOLDER = "upscaler"  # a pipeline folder's own upscaler (not in model_index.json: diffusers ignores it)
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
    """Refuse a model folder whose weights would be read from a pickle (loading one can run code), unless
    allowed: the one check of `core.weights` on the files diffusers would open."""
    from core.weights import check_weights

    check_weights(folder, kind="model", allow_unsafe=allow_unsafe, what=what)


def _config(path: Path, what: str | None = None) -> dict:
    """A config.json / model_index.json read strictly (malformed or not an object: one InputError)."""
    from core.jsonio import read_json

    data = read_json(path, what=what or path.name)
    cls = data.get("_class_name")
    if cls is not None and not isinstance(cls, str):
        raise InputError(f"{path.name}: _class_name must be a string, found {type(cls).__name__}", path)
    return data


MAX_NATIVE_SIDE = 4096  # the largest image side Atelier draws (core.validate's pixel limit)


def _check_native_size(folder: Path) -> None:
    """The UNet's sample size times the VAE's factor is the default image side: bound it before any latents
    of that size are allocated."""
    unet, vae = folder / "unet" / "config.json", folder / "vae" / "config.json"
    if not (unet.is_file() and vae.is_file()):
        return
    u, v = _config(unet, "unet/config.json"), _config(vae, "vae/config.json")
    sample, blocks = u.get("sample_size", 64), v.get("block_out_channels", [0])
    sides = sample if isinstance(sample, list) else [sample]
    if not (isinstance(blocks, list) and 0 < len(blocks) <= 8
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= 2**16 for x in sides)):
        raise InputError("unet/config.json sample_size or vae/config.json block_out_channels is malformed", folder)
    native = max(sides) * 2 ** (len(blocks) - 1)
    if native > MAX_NATIVE_SIDE:
        raise InputError(f"the model's native image side would be {native} px (unet sample_size {max(sides)}); "
                         f"the limit is {MAX_NATIVE_SIDE}", unet)


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
            cls = _config(config).get("_class_name", "a single model")
            raise InputError(f"this is a {cls} folder, not a pipeline (no model_index.json); "
                             "give the folder of the whole pipeline", folder)
        raise InputError("not a diffusers pipeline folder (no model_index.json)", folder)
    meta = _config(index)
    cls = meta.get("_class_name")
    if cls not in TEXT_TO_IMAGE:
        raise InputError(f"model_index.json names {cls!r}; Atelier loads {' or '.join(TEXT_TO_IMAGE)} folders", index)
    for part in ("unet", "vae", "text_encoder"):
        if part in meta and not (folder / part).is_dir():
            raise InputError(f"pipeline folder is missing its {part}/ subfolder", folder)
    for part in ("unet", "vae"):
        _weights_check(folder / part, f"{part}/", allow_unsafe)  # pickles first: the most important refusal
        if not (folder / part / "config.json").is_file():
            raise InputError(f"pipeline folder's {part}/ has no config.json", folder / part)
    from core.weights import pipeline_components

    for part in pipeline_components(folder):  # every component with weights: unet, vae, text encoders, ...
        _config(part / "config.json", f"{part.name}/config.json")
        _weights_check(part, f"{part.name}/", allow_unsafe)
    _check_native_size(folder)
    return meta


def check_model_memory(folder: str | Path, meta: dict, dtype) -> None:
    """Build every component on the meta device from its config (nothing allocated) and refuse when
    their sizes would not fit in the memory left: a config's sizes are checked before diffusers allocates."""
    import importlib

    from core.weights import check_fits_in_memory, module_bytes

    folder, total = Path(folder), 0
    for name, value in meta.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] not in ("diffusers", "transformers"):
            continue
        cfg_file = folder / name / "config.json"
        if not cfg_file.is_file():
            continue
        cfg = _config(cfg_file, f"{name}/config.json")
        try:
            klass = getattr(importlib.import_module(value[0]), value[1])
            if value[0] == "diffusers":
                def build(k=klass, c=cfg):
                    return k.from_config(c)
            else:
                def build(k=klass, c=cfg):
                    return k(k.config_class.from_dict(c))
            n = module_bytes(build)
        except (AttributeError, TypeError, ValueError, KeyError, ImportError, RuntimeError) as e:
            raise InputError(f"{name}/config.json does not describe a {value[1]} ({str(e).splitlines()[0][:160]})",
                             cfg_file) from None
        total += n * getattr(dtype, "itemsize", 4) // 4  # module_bytes counts float32 parameters
    check_fits_in_memory(total, "the model's configs", folder)


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

    if local:
        check_model_memory(source, meta, torch_dtype)

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


def check_controlnet_folder(folder: str | Path) -> None:
    """Validate a local ControlNet folder (config.json naming ControlNetModel, safetensors weights)."""
    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file():
        hint = " (this is a pipeline folder; give its ControlNet)" if (folder / "model_index.json").exists() else ""
        raise InputError(f"not a ControlNet folder (no config.json){hint}", folder)
    cls = _config(config).get("_class_name")
    if cls != "ControlNetModel":
        raise InputError(f"config.json names {cls!r}, not ControlNetModel", config)
    _weights_check(folder, "ControlNet folder")


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
        check_controlnet_folder(source)
    from diffusers import ControlNetModel

    if local:
        from core.weights import check_fits_in_memory, module_bytes

        cfg = _config(Path(source) / "config.json")
        try:
            n = module_bytes(lambda: ControlNetModel.from_config(cfg))
        except (TypeError, ValueError, KeyError, RuntimeError) as e:
            raise InputError(f"config.json does not describe a ControlNetModel ({str(e).splitlines()[0][:160]})",
                             Path(source) / "config.json") from None
        check_fits_in_memory(n, "the ControlNet's config", source)
    try:
        model = ControlNetModel.from_pretrained(source, dtype=torch_dtype, use_safetensors=True)
    except (OSError, ValueError, EnvironmentError) as e:
        raise InputError(f"could not load the ControlNet: {str(e).splitlines()[0]}", source) from None
    model = model.to(dev)
    if cache:
        _CACHE[key] = model
    return model


def size_multiple(vae_blocks, unet_blocks) -> int:
    """Image sides must be multiples of this: the VAE's factor times the UNet's downsampling (and 8)."""
    import math

    return math.lcm(8, 2 ** (len(vae_blocks) - 1) * 2 ** (len(unet_blocks) - 1))


def folder_geometry(folder: str | Path) -> dict:
    """From a checked pipeline folder's configs alone (no weights loaded): the size multiple, the native
    image side and the UNet's cross-attention width, so sizes and adapters can be checked before loading."""
    folder = Path(folder)
    unet, vae = read_json_object(folder / "unet" / "config.json"), read_json_object(folder / "vae" / "config.json")
    try:
        vae_blocks, unet_blocks = vae["block_out_channels"], unet["block_out_channels"]
        native = int(unet["sample_size"]) * 2 ** (len(vae_blocks) - 1)
        cross = unet.get("cross_attention_dim")
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"the unet/ or vae/ config.json lacks {e}", folder) from None
    return {"size_multiple": size_multiple(vae_blocks, unet_blocks), "native_size": native,
            "cross_attention_dim": cross if isinstance(cross, int) else None}


def resolve_scorer(spec: str | Path = "demo") -> tuple[Path | None, str | None, str | None]:
    """(open_clip folder, None, None) or (None, architecture, weights file) for a scorer spec, checked.

    A spec is "demo" (the shipped assets/models/demo-clip), an open_clip `local-dir` folder, or
    `ARCH:weights.safetensors`; anything else, pickle weights or a missing file is one InputError.
    """
    from core.io import check_not_pickle

    spec = str(spec or "demo")
    folder = demo_path("demo-clip") if spec in ("demo", "demo-clip") else Path(spec).expanduser()
    if folder.is_dir():
        if not (folder / "open_clip_config.json").is_file():
            raise InputError("not an open_clip folder (no open_clip_config.json)", folder)
        if not list(folder.glob("*.safetensors")):
            raise InputError("open_clip folder has no *.safetensors weights", folder)
        return folder, None, None
    if ":" in spec and not spec.startswith("local-dir:"):
        arch, weights = spec.split(":", 1)
        check_not_pickle(weights)
        if not Path(weights).is_file():
            raise InputError("open_clip weights file not found", weights)
        return None, arch, weights
    raise InputError("scorer must be 'demo', an open_clip folder, or ARCH:weights.safetensors", spec)


def find_upscaler(source: str | Path) -> Path | None:
    """The upscaler that comes with a loaded model folder: its `upscaler/` subfolder, or for the shipped
    demo model `assets/models/demo-upscaler` beside `demo-sd`; None when it has none (or is a hub id)."""
    folder = Path(source)
    own = folder / UPSCALER_SUBFOLDER
    if (own / "config.json").is_file():
        return own
    demo = demo_path("demo-upscaler")
    if folder.is_dir() and folder.resolve() == demo_path("demo").resolve() and (demo / "config.json").is_file():
        return demo
    return None


def check_upscaler_folder(folder: str | Path) -> None:
    """Validate an upscaler folder (config.json naming Upscaler, safetensors weights) without loading torch."""
    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file():
        raise InputError("not an upscaler folder (no config.json)", folder)
    cls = _config(config).get("_class_name")
    if cls != "Upscaler":
        raise InputError(f"config.json names {cls!r}, not Upscaler", config)
    _weights_check(folder, "upscaler folder")


def load_upscaler(folder: str | Path, device: str | None = None, dtype: str | None = None, cache: bool = True):
    """A `pipelines.upscale.Upscaler` from its folder, on the device and dtype the pipeline uses."""
    check_upscaler_folder(folder)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    key = ("upscaler", str(Path(folder).resolve()), str(dev), str(torch_dtype))
    if cache and key in _CACHE:
        return _CACHE[key]
    from .upscale import load_upscaler as load

    model = load(folder, device=dev, dtype=torch_dtype)
    if cache:
        _CACHE[key] = model
    return model


def clear_cache() -> None:
    """Forget cached models (tests; or to free memory)."""
    _CACHE.clear()
