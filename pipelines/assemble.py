"""The one place a generation pipeline is put together, for the CLI, the UI, batch campaigns and the evaluation.

    spec = PipelineSpec(model="demo", lora="style.safetensors", lora_scale=0.8, adapter="runs/adapter")
    spec.check()                       # every file, format and size, before torch or diffusers load
    parts = assemble(spec)             # loaded once per process and spec, then shared
    pipe = parts.pipeline("product", catalog=catalog)
    out = pipe(condition, category="shirt", num_candidates=4, seed=0)

A `PipelineSpec` names the components as the user gave them: the base model, a LoRA and its
scale, a preference adapter, an IP-Adapter, a ControlNet, a 2x upscaler, the scorer that ranks candidates and a
CTR reward model. `Assembly` loads each one at its first use and keeps it, so every pipeline of a
process shares one copy; `pipeline(kind)` hands out the product, background, banner or outfit
pipeline over those components (overrides as keywords, like diffusers' `from_pipe`). Creatives
record the names as given; relative paths resolve against `root` (a campaign's folder) or the
working directory.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import limits
from core.errors import InputError

from .device import DTYPES
from .loading import (
    DEMO,
    check_controlnet_folder,
    check_pipeline_folder,
    demo_path,
    folder_geometry,
    resolve,
)

KINDS = {"product": ("pipelines.product", "ProductPipeline"),
         "background": ("pipelines.background", "BackgroundPipeline"),
         "banner": ("pipelines.banner", "BannerPipeline"),
         "outfit": ("pipelines.outfit", "OutfitPipeline")}
AUTO = "auto"  # ControlNet: the shipped demo ControlNet with the demo model (when installed), else none
DEMO_SCORER = ("demo", "demo-clip")  # the shipped scorer: used when installed, else candidates keep seed order
LORA_ADAPTER_NAME = "lora"


class SpecError(InputError):
    """A problem with one component of a spec; `field` names it (campaigns map it to their own key)."""

    def __init__(self, field: str, problem: str, path: str | Path | None = None, line: int | None = None):
        self.field = field
        super().__init__(problem, path, line)


@dataclass(frozen=True)
class PipelineSpec:
    """What to assemble. Paths are strings as the user wrote them; `None` leaves a component out."""

    model: str = "demo"  # "demo", a local diffusers folder, or a hub id (online only)
    lora: str | None = None  # LoRA weights: a .safetensors file or a folder holding one
    lora_scale: float = 1.0
    adapter: str | None = None  # preference adapter folder (preference tokens)
    ip_adapter: str | None = None  # IP-Adapter .safetensors (image_encoder/ beside it) or its folder
    controlnet: str | None = AUTO  # a ControlNet folder, "demo-controlnet", "auto" or None
    scorer: str | None = "demo"  # "demo", an open_clip folder, ARCH:weights.safetensors, or None
    reward: str | None = None  # CTR reward model folder: candidates ranked by predicted CTR (needs the scorer)
    upscaler: str | None = AUTO  # "auto" (the model folder's own, e.g. the demo's), an Upscaler folder, or None (off)
    device: str | None = None  # cpu, cuda, cuda:N (None: CUDA when present)
    dtype: str | None = None  # fp32, fp16, bf16 (None: fp16 on CUDA, fp32 on CPU)
    allow_unsafe: bool = False  # also load pickle weights the user trusts
    root: str | None = None  # the folder relative paths resolve against (None: the working directory)

    # -- paths --------------------------------------------------------------------------------------
    def path(self, value: str | Path) -> Path:
        """A path from the spec: absolute as given, else under `root` (or the working directory)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() or self.root is None else Path(self.root) / p

    def source(self, name: str) -> str:
        """A model name as loading takes it: a demo name, an existing folder under `root`, or the name as given
        (a hub id, or a path that `loading.resolve` will report as missing)."""
        if name in DEMO or self.root is None:
            return name
        p = self.path(name)
        return str(p) if p.exists() else name

    def model_source(self) -> str:
        """What `load_sd_pipeline` gets."""
        return self.source(self.model)

    def controlnet_name(self) -> str | None:
        """The ControlNet to load ("auto" resolved), or None."""
        if self.controlnet == AUTO:
            return "demo-controlnet" if self.model == "demo" else None
        return self.controlnet

    def upscaler_folder(self) -> Path | None:
        """The upscaler folder to load ("auto" resolved against the model folder), or None."""
        if self.upscaler is None:
            return None
        if self.upscaler != AUTO:
            return self.path(self.upscaler)
        from .loading import find_upscaler

        try:
            source, local = resolve(self.model_source())
        except InputError:
            return None  # the model's own error is reported by its check
        return find_upscaler(source) if local else None

    def upscaler_name(self) -> str | None:
        """The upscaler as Creatives record it: the name given, or for "auto" the found folder's name."""
        folder = self.upscaler_folder()
        if folder is None:
            return None
        if self.upscaler != AUTO:
            return self.upscaler
        return "demo-upscaler" if folder == demo_path("demo-upscaler") else f"{self.model}/{folder.name}"

    def key(self) -> tuple:
        """The cache key: the spec as given (Creatives record its names) and every path resolved."""
        resolved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "root"}
        for name in ("lora", "adapter", "ip_adapter", "reward", "upscaler"):
            if resolved[name] is not None and resolved[name] != AUTO:
                resolved[name] = str(self.path(resolved[name]).resolve())
        resolved["model"] = self.model_source()
        if resolved["model"] not in DEMO and Path(resolved["model"]).exists():
            resolved["model"] = str(Path(resolved["model"]).resolve())
        return (self, tuple(sorted(resolved.items())))

    # -- checks -------------------------------------------------------------------------------------
    def check(self) -> dict:
        """Validate every component's files, formats and shapes from their configs alone: nothing heavy
        is imported or loaded, so a wrong path fails in milliseconds. Returns what it learned of the
        model ({"size_multiple", "native_size", "cross_attention_dim"}; empty for a hub id)."""
        _as_field("lora_scale", limits.LORA_SCALE.check, self.lora_scale, "lora_scale")
        if self.dtype not in (None, "", "auto") and self.dtype not in DTYPES:
            raise SpecError("dtype", f"unknown dtype {self.dtype!r} (use {', '.join(sorted(DTYPES))})")
        # the user's weight files first: a pickle is refused before anything else is looked at
        if self.lora is not None:
            self._check_weights("lora", "LoRA weights", self.path(self.lora))
        if self.ip_adapter is not None:
            ip_adapter_weight(self.path(self.ip_adapter), self.allow_unsafe)
        geometry = self._check_model()
        geometry = self._check_upscaler(geometry)
        if self.adapter is not None:
            self._check_adapter(geometry)
        if self.controlnet_name() is not None and not self._optional_controlnet():
            self._check_controlnet()
        if self.scorer is not None and self.scorer not in DEMO_SCORER:
            from .loading import resolve_scorer

            _as_field("scorer", resolve_scorer, self.scorer)
        if self.reward is not None:
            _config_folder("reward", self.path(self.reward), "reward model")  # the folder itself first
            if self.scorer is None or (self.scorer in DEMO_SCORER and not demo_path("demo-clip").is_dir()):
                raise SpecError("reward", "--reward needs the scorer (its image embeddings are the reward model's "
                                "input)")
        return geometry

    def _check_model(self) -> dict:
        source, local = _as_field("model", resolve, self.model_source())
        if not local:
            return {}
        _as_field("model", check_pipeline_folder, source, self.allow_unsafe)
        return _as_field("model", folder_geometry, source)

    def _check_upscaler(self, geometry: dict) -> dict:
        """The upscaler's folder checked; output sizes are then its factor times the model's."""
        folder = self.upscaler_folder()
        if folder is None:
            return geometry
        from core.io import read_json_object

        from .loading import check_upscaler_folder

        _as_field("upscaler", check_upscaler_folder, folder)
        scale = _as_field("upscaler", read_json_object, folder / "config.json").get("scale", 2)
        if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 8:
            raise SpecError("upscaler", f"config.json scale must be an integer 1-8, found {scale!r}", folder)
        geometry = dict(geometry)
        for key in ("size_multiple", "native_size"):
            if geometry.get(key):
                geometry[key] *= scale
        return {**geometry, "upscale": scale}

    def _check_weights(self, field: str, what: str, path: Path) -> None:
        """What the loader would read from `path` (a file or a folder): safetensors with a valid header;
        pickles only with `allow_unsafe` (`core.weights`, the one weights-format check)."""
        if not path.exists():
            raise SpecError(field, f"{what} not found", path)
        check_weights_format(field, what, path, self.allow_unsafe, kind="lora" if field == "lora" else "auto")

    def _check_adapter(self, geometry: dict) -> None:
        folder = self.path(self.adapter)
        config = _config_folder("adapter", folder, "preference adapter")
        if not any(folder.glob("*.safetensors")):
            raise SpecError("adapter", "preference adapter folder has no *.safetensors weights", folder)
        want = geometry.get("cross_attention_dim")
        if want is not None and config.get("cross_attention_dim") not in (None, want):
            raise SpecError("adapter", f"the adapter makes {config['cross_attention_dim']}-wide tokens; this model's "
                            f"UNet reads {want}-wide ones (an adapter trained for another base model)", folder)

    def _optional_controlnet(self) -> bool:
        """The automatic choice is optional: without the shipped ControlNet, backgrounds are inpainted."""
        return self.controlnet == AUTO

    def _check_controlnet(self) -> None:
        source, local = _as_field("controlnet", resolve, self.source(self.controlnet_name()), "demo-controlnet")
        if local:
            _as_field("controlnet", check_controlnet_folder, source)


def check_weights_format(field: str, what: str, path: Path, allow_unsafe: bool = False, kind: str = "auto") -> None:
    """The one weights-format check of the user's files, on what the loader would actually read."""
    from core.weights import check_weights

    try:
        check_weights(path, kind=kind, allow_unsafe=allow_unsafe, what=what)
    except InputError as e:
        raise SpecError(field, f"{what} must be .safetensors: {e.problem}", e.path) from None


def ip_adapter_weight(path: Path, allow_unsafe: bool = False) -> Path:
    """The IP-Adapter weight file of `path` (a .safetensors file, or a folder holding one), with its
    `image_encoder/` beside it, both checked (`core.weights.check_ip_adapter`); InputError otherwise."""
    from core.weights import check_ip_adapter

    return _as_field("ip_adapter", lambda p: check_ip_adapter(p, allow_unsafe=allow_unsafe), path)


def _config_folder(field: str, folder: Path, what: str) -> dict:
    from core.io import read_config

    return _as_field(field, read_config, folder, what)


def _as_field(field: str, fn, *args):
    """Call a check and tag its InputError with the spec field it is about."""
    try:
        return fn(*args)
    except SpecError:
        raise
    except InputError as e:
        raise SpecError(field, e.problem, e.path, e.line) from None


class Assembly:
    """The components of one spec, each loaded once at first use, and the pipelines built over them."""

    def __init__(self, spec: PipelineSpec):
        self.spec = spec
        self._lock = threading.RLock()  # UI sessions ask from several threads; each component loads once
        self._parts: dict[str, Any] = {}
        self._pipes: dict[tuple, tuple[Any, Any]] = {}

    def _once(self, name: str, make):
        with self._lock:
            if name not in self._parts:
                self._parts[name] = make()
            return self._parts[name]

    # -- components ---------------------------------------------------------------------------------
    def sd(self):
        """The base diffusers pipeline with the LoRA and IP-Adapter loaded into it."""
        return self._once("sd", self._load_sd)

    def _load_sd(self):
        from .loading import load_sd_pipeline

        s = self.spec
        # A LoRA or an IP-Adapter changes the modules: a private copy, not the process-wide cached one.
        sd = load_sd_pipeline(s.model_source(), device=s.device, dtype=s.dtype,
                              cache=s.lora is None and s.ip_adapter is None, allow_unsafe=s.allow_unsafe)
        if s.lora is not None:
            lora = s.path(s.lora)
            if not lora.exists():
                raise SpecError("lora", "LoRA weights not found", lora)
            try:
                # use_safetensors: no silent fallback to a pickle .bin beside the file
                sd.load_lora_weights(str(lora), adapter_name=LORA_ADAPTER_NAME,
                                     use_safetensors=None if s.allow_unsafe else True)
                sd.set_adapters([LORA_ADAPTER_NAME], adapter_weights=[s.lora_scale])
            except (OSError, ValueError, KeyError) as e:
                raise SpecError("lora", f"cannot load LoRA weights ({e})", lora) from None
        if s.ip_adapter is not None:
            from .conditioning import load_ip_adapter

            self._parts["ip_adapter"] = load_ip_adapter(sd, s.path(s.ip_adapter))
        return sd

    def ip_adapter(self) -> str | None:
        """The loaded IP-Adapter weight file (recorded in Creatives), or None."""
        if self.spec.ip_adapter is None:
            return None
        self.sd()
        return self._parts["ip_adapter"]

    def lora_record(self) -> list[dict]:
        """The LoRA as Creatives record it: the path as given and its scale."""
        s = self.spec
        return [] if s.lora is None else [{"path": s.lora, "scale": s.lora_scale}]

    def adapter(self):
        """The preference adapter (condition embedding -> extra prompt tokens), or None."""
        if self.spec.adapter is None:
            return None

        def make():
            from .conditioning import PreferenceAdapter

            return _as_field("adapter", PreferenceAdapter.from_pretrained, self.spec.path(self.spec.adapter))
        return self._once("adapter", make)

    def controlnet(self):
        """The ControlNet for backgrounds, or None (then backgrounds are inpainted)."""
        name = self.spec.controlnet_name()
        if name is None:
            return None

        def make():
            from .loading import load_controlnet

            try:
                return load_controlnet(self.spec.source(name), device=self.spec.device, dtype=self.spec.dtype)
            except (ImportError, AttributeError, InputError, OSError, TypeError):
                if self.spec._optional_controlnet():
                    return None
                raise
        return self._once("controlnet", make)

    def scorer(self):
        """The open_clip scorer that ranks candidates, or None (then candidates keep seed order).

        The shipped demo scorer is optional: when it is not installed (or open_clip is missing) there
        is no ranking. A scorer the user named must load."""
        s = self.spec
        if s.scorer is None:
            return None

        def make():
            from .scorer import Scorer

            if s.scorer in DEMO_SCORER:
                if not demo_path("demo-clip").is_dir():
                    return None
                try:
                    return Scorer.load(s.scorer, device=s.device)
                except (ImportError, AttributeError, InputError, OSError):
                    return None
            return _as_field("scorer", Scorer.load, s.scorer, s.device)
        return self._once("scorer", make)

    def upscaler(self):
        """The 2x upscaler the pipelines apply after the model (the model folder's own, or the one named), or None."""
        folder = self.spec.upscaler_folder()
        if folder is None:
            return None

        def make():
            from .loading import load_upscaler

            return _as_field("upscaler", load_upscaler, folder, self.spec.device, self.spec.dtype)
        return self._once("upscaler", make)

    def reward_model(self):
        """The CTR reward model that ranks candidates by predicted clicks, or None."""
        if self.spec.reward is None:
            return None

        def make():
            from .reward import RewardModel

            if self.scorer() is None:
                raise SpecError("reward", "--reward needs the scorer (its image embeddings are the reward model's "
                                "input)")
            return _as_field("reward", RewardModel.from_pretrained, self.spec.path(self.spec.reward))
        return self._once("reward", make)

    # -- pipelines ----------------------------------------------------------------------------------
    def components(self, kind: str, catalog=None, **overrides) -> dict:
        """The keyword arguments a pipeline of `kind` is built with (an override is not loaded)."""
        makers = dict(scorer=self.scorer, adapter=self.adapter, reward_model=self.reward_model,
                      lora=self.lora_record, ip_adapter=self.ip_adapter, upscaler=self.upscaler,
                      upscaler_path=self.spec.upscaler_name)
        if kind == "background":
            makers.update(controlnet=self.controlnet)
        parts = {name: overrides[name] if name in overrides else make() for name, make in makers.items()}
        parts.update(catalog=catalog, base_model=self.spec.model)
        if kind == "background" and "controlnet_path" not in overrides:
            parts["controlnet_path"] = self.spec.controlnet_name() if parts["controlnet"] is not None else None
        return {**parts, **overrides}

    def pipeline(self, kind: str, *, catalog=None, **overrides):
        """The `kind` pipeline ("product", "background", "banner", "outfit") over this spec's components,
        built once per catalog and overrides (e.g. `scorer=None` for unranked candidates)."""
        if kind not in KINDS:
            raise InputError(f"unknown pipeline {kind!r} (use {', '.join(KINDS)})")
        key = (kind, id(catalog), tuple(sorted((k, id(v)) for k, v in overrides.items())))
        with self._lock:
            if key not in self._pipes:
                import importlib

                module, name = KINDS[kind]
                klass = getattr(importlib.import_module(module), name)
                sd = self.sd()
                kwargs = self.components(kind, catalog, **overrides)
                # the catalog and overrides are kept with the pipe, so their ids stay theirs while cached
                self._pipes[key] = (klass(sd, **kwargs), (catalog, overrides))
            return self._pipes[key][0]


_ASSEMBLIES: dict[tuple, Assembly] = {}
_ASSEMBLIES_LOCK = threading.Lock()


def assemble(spec: PipelineSpec) -> Assembly:
    """The process's one `Assembly` for `spec` (the same files give the same one)."""
    key = spec.key()
    with _ASSEMBLIES_LOCK:
        if key not in _ASSEMBLIES:
            _ASSEMBLIES[key] = Assembly(spec)
        return _ASSEMBLIES[key]


def clear_cache() -> None:
    """Forget every assembly and cached model (tests; or to free memory)."""
    from .loading import clear_cache as clear_models

    with _ASSEMBLIES_LOCK:
        _ASSEMBLIES.clear()
    clear_models()
