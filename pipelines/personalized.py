"""What every Atelier pipeline shares: its components, seeded sampling, Creatives and regeneration.

A pipeline holds a loaded diffusers `StableDiffusionPipeline` and builds the img2img, ControlNet
and inpainting variants from the same modules (`pipe.components`), so weights are loaded once per
process. Each candidate is sampled alone with its own `torch.Generator` seeded `seed + i`: a
Creative's record (prompt, seed, steps, guidance, size, condition, `extra["params"]`) is enough to
call `regenerate` and get the same pixels on the same device.

With an `upscaler` (the shipped demo model has one, `pipelines.upscale`), sizes are output sizes:
the model draws at 1/scale of them and the upscaler makes the rest, so a 64 px demo model's
product images come out at 128 px; Creatives record `extra["upscaler"]`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from core import limits
from core.creative import Creative, Manifest
from core.errors import InputError
from core.pnginfo import save_creative_png
from core.paths import safe_name
from recommenders.condition import PreferenceCondition

from .conditioning import PreferenceAdapter, encode_prompts, ip_adapter_embeds


@dataclass
class PipelineOutput:
    """Images and their Creative records, best first (index i of one matches index i of the other)."""

    images: list[Image.Image] = field(default_factory=list)
    creatives: list[Creative] = field(default_factory=list)

    def save(self, out_dir: str | Path, manifest: Manifest | None = None) -> list[Path]:
        """Write each image as `<creative_id>.png` (atomically) and append its record to the manifest."""
        out_dir = Path(out_dir)
        paths = []
        for image, creative in zip(self.images, self.creatives):
            path = save_creative_png(image, out_dir / f"{safe_name(creative.creative_id)}.png", creative)
            creative.image_path = path.name if manifest is None else _relative(path, manifest.path.parent)
            if manifest is not None:
                manifest.append(creative)
            paths.append(path)
        return paths


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


class PersonalizedPipeline:
    """Base of the product, background, banner and outfit pipelines (components in, Creatives out)."""

    name = "base"

    def __init__(self, sd_pipe, *, scorer=None, catalog=None, adapter: PreferenceAdapter | None = None,
                 reward_model=None, base_model: str | None = None, lora: list[dict] | None = None,
                 ip_adapter: str | None = None, upscaler=None, upscaler_path: str | None = None):
        self.sd = sd_pipe
        self.upscaler = upscaler  # a `pipelines.upscale.Upscaler`, or None (images at the model's own size)
        self.upscaler_path = upscaler_path or (None if upscaler is None else "upscaler")
        self.scorer = scorer
        self.catalog = catalog
        self.adapter = adapter
        self.reward_model = reward_model
        self.base_model = base_model or str(sd_pipe.config.get("_name_or_path", ""))
        self.lora = list(lora or [])
        self.ip_adapter = ip_adapter  # path of loaded IP-Adapter weights, or None
        self._variants: dict[str, Any] = {}
        sd_pipe.set_progress_bar_config(disable=True)  # we show one bar over candidates instead

    # -- components ----------------------------------------------------------------------------
    def variant(self, kind: str, **extra_components):
        """The img2img / controlnet / inpaint pipeline built on this pipeline's loaded modules."""
        key = kind + "".join(f":{id(v)}" for v in extra_components.values())
        if key not in self._variants:
            import diffusers

            classes = {"text2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
                       "controlnet": "StableDiffusionControlNetPipeline", "inpaint": "StableDiffusionInpaintPipeline"}
            comps = {k: v for k, v in self.sd.components.items() if k != "controlnet"}
            pipe = self.sd if kind == "text2img" else getattr(diffusers, classes[kind])(**comps, **extra_components)
            pipe.set_progress_bar_config(disable=True)
            self._variants[key] = pipe
        return self._variants[key]

    @property
    def device(self) -> torch.device:
        return self.sd._execution_device

    @property
    def scale(self) -> int:
        """How much larger the output is than what the model draws (the upscaler's factor, else 1)."""
        return 1 if self.upscaler is None else int(self.upscaler.config.scale)

    @property
    def size_multiple(self) -> int:
        """Output sides must be multiples of this: the VAE's factor times the UNet's downsampling (and 8),
        times the upscaler's factor."""
        from .loading import size_multiple

        return self.scale * size_multiple(self.sd.vae.config.block_out_channels, self.sd.unet.config.block_out_channels)

    @property
    def default_size(self) -> int:
        """The output side: the model's native side, times the upscaler's factor."""
        return self.scale * int(self.sd.unet.config.sample_size) * self.sd.vae_scale_factor

    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the model draws for an output of `width` x `height`."""
        return width // self.scale, height // self.scale

    def check_size(self, width: int, height: int) -> None:
        m = self.size_multiple
        if width <= 0 or height <= 0 or width % m or height % m:
            raise InputError(f"image size {width}x{height} must be positive multiples of {m} for this model")

    @staticmethod
    def check_settings(*, num_candidates: int, steps: int, guidance: float) -> None:
        """What every pipeline call takes, within the bounds a campaign and a flag accept (`core.limits`)."""
        limits.CANDIDATES.check(num_candidates, "num_candidates")
        limits.STEPS.check(steps, "steps")
        limits.GUIDANCE.check(guidance, "guidance")

    def fit_size(self, aspect: float) -> tuple[int, int]:
        """The model-friendly size with about the native area and the given width/height aspect."""
        m, area = self.size_multiple, self.default_size ** 2
        w = max(m, round((area * aspect) ** 0.5 / m) * m)
        h = max(m, round((area / aspect) ** 0.5 / m) * m)
        return int(w), int(h)

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, kind: str, *, seed: int, **kwargs) -> Image.Image:
        """One seeded image from the chosen variant (see `sample_batch`)."""
        return self.sample_batch(kind, seeds=[seed], **kwargs)[0]

    def sample_batch(self, kind: str, *, prompt: str, negative_prompt: str, seeds: list[int], steps: int,
                     guidance: float, width: int, height: int, condition: PreferenceCondition | None,
                     use_adapter: bool = True, reference: Image.Image | None = None, pipe=None,
                     **call_kwargs) -> list[Image.Image]:
        """Images for `seeds` in one batch (one generator each), with keywords, preference tokens, IP-Adapter.

        A batch is faster than one call per seed on a CPU, but its floating-point sums differ in the
        last bits from a batch of one, so a record stores its batch's seeds to be regenerated exactly.
        """
        pipe = pipe or self.variant(kind)
        n = len(seeds)
        embedding = None  # the adapter says which space it reads (image-space taste, or the condition's own)
        if condition is not None and use_adapter and self.adapter is not None:
            embedding = self.adapter.condition_embedding(condition)
        cond, uncond = encode_prompts(pipe, prompt, negative_prompt, guidance=guidance,
                                      adapter=self.adapter if use_adapter else None, embedding=embedding)
        cond = cond.repeat(n, 1, 1)
        uncond = None if uncond is None else uncond.repeat(n, 1, 1)
        if self.ip_adapter is not None:
            ref = reference if reference is not None else Image.new("RGB", (width, height), (255, 255, 255))
            call_kwargs["ip_adapter_image_embeds"] = ip_adapter_embeds(pipe, ref, guidance, n)
        gen_w, gen_h = self.generation_size(width, height)
        if kind != "img2img":
            call_kwargs.update(width=gen_w, height=gen_h)
        for name, resample in (("image", Image.BOX), ("mask_image", Image.NEAREST)):  # inputs at the drawn size
            im = call_kwargs.get(name)
            if isinstance(im, Image.Image) and im.size != (gen_w, gen_h):
                call_kwargs[name] = im.resize((gen_w, gen_h), resample)
        generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        out = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, num_inference_steps=int(steps),
                   guidance_scale=float(guidance), generator=generators, output_type="pil", **call_kwargs)
        images = list(out.images)
        if self.upscaler is not None:
            from .upscale import upscale_images

            images = upscale_images(self.upscaler, images)
        return images

    # -- records -------------------------------------------------------------------------------
    def creative(self, *, prompt: str, negative_prompt: str, seed: int, steps: int, guidance: float,
                 width: int, height: int, condition: PreferenceCondition | None, params: dict,
                 extra: dict | None = None) -> Creative:
        """A Creative whose `extra["params"]` holds every argument `render` needs besides the shared ones."""
        cond = condition.to_dict() if condition is not None else None
        record = dict(pipeline=self.name, base_model=self.base_model, prompt=prompt, negative_prompt=negative_prompt,
                      seed=int(seed), steps=int(steps), guidance=float(guidance), width=int(width), height=int(height),
                      lora=self.lora, condition=cond, params=params,
                      adapter=None if self.adapter is None else getattr(self.adapter, "source", "adapter"),
                      ip_adapter=self.ip_adapter)
        if self.upscaler is not None:  # the same size drawn and upscaled is another image than one drawn at it
            record["upscaler"] = self.upscaler_path
        digest = hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:10]
        user = condition.user_id if condition is not None else "anon"
        return Creative(
            creative_id=f"{self.name}-{_safe(user)}-{digest}", pipeline=self.name, base_model=self.base_model,
            prompt=prompt, negative_prompt=negative_prompt, seed=int(seed), steps=int(steps),
            guidance=float(guidance), width=int(width), height=int(height), lora=self.lora, condition=cond,
            extra={"params": params, "adapter": record["adapter"], "ip_adapter": self.ip_adapter,
                   "sampler": type(getattr(self.sd, "scheduler", None)).__name__,
                   **({"upscaler": self.upscaler_path, "upscale": self.scale} if self.upscaler is not None else {}),
                   **(extra or {})},
            user_id=None if condition is None else condition.user_id, device=str(self.device),
        )

    def render(self, *, prompt: str, negative_prompt: str, seed: int, steps: int, guidance: float,
               width: int, height: int, condition: PreferenceCondition | None, **params) -> Image.Image:
        raise NotImplementedError

    def regenerate(self, creative: Creative) -> Image.Image:
        """Re-render a Creative from its record alone (same pixels on the same device)."""
        if creative.pipeline != self.name:
            raise InputError(f"creative {creative.creative_id} was made by the {creative.pipeline} pipeline, "
                             f"not {self.name}")
        condition = PreferenceCondition.from_dict(creative.condition) if creative.condition else None
        return self.render(prompt=creative.prompt, negative_prompt=creative.negative_prompt, seed=creative.seed,
                           steps=creative.steps, guidance=creative.guidance, width=creative.width,
                           height=creative.height, condition=condition, **creative.extra.get("params", {}))


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))[:40]


def progress_bar(total: int, desc: str, enabled: bool = True):
    """tqdm over candidates (Gradio's `Progress(track_tqdm=True)` picks it up)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)
