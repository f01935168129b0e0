"""LoRA fine-tuning of a Stable Diffusion UNet (optionally its text encoder) on image+caption examples.

The method is Hu et al. 2021 (LoRA) applied to the UNet's attention projections, trained with
the usual noise-prediction loss of latent diffusion (Rombach et al. 2022) and optional min-SNR
weighting (Hang et al. 2023). The output is one `pytorch_lora_weights.safetensors` in diffusers'
format, so plain `StableDiffusionPipeline.load_lora_weights(out_dir)` loads it.

Every random draw of step `s` (noise, timesteps, caption dropout, batch order) comes from a
generator seeded with `(seed, s)`, so a run resumed from a checkpoint continues exactly as the
uninterrupted run would have: same seed, same final weights.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field

from core.errors import InputError
from core.io import atomic_write_json
from core.settings import Count, Dropout, PositiveFloat, Seed, Steps, settings

from .data import CaptionedImage, image_to_tensor

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


@settings
class LoraTrainConfig:
    """Hyperparameters of one LoRA run (saved next to the weights as `lora_config.json`); pydantic checks
    each value when the config is made, so a bad one is an InputError naming its flag."""

    rank: Count = 8
    alpha: PositiveFloat | None = None  # None: alpha = rank (scale 1)
    learning_rate: PositiveFloat = 1e-4
    steps: Count = 500
    batch_size: Count = 4
    grad_accum: Count = 1
    grad_checkpointing: bool = False
    caption_dropout: Dropout = 0.1
    train_text_encoder: bool = False
    text_encoder_lr: PositiveFloat | None = None
    resolution: Count | None = None  # None: the UNet's native size
    snr_gamma: PositiveFloat | None = 5.0  # min-SNR weighting; None turns it off
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    max_grad_norm: PositiveFloat = 1.0
    seed: Seed = 0
    checkpoint_every: Annotated[int, Field(ge=0)] = 100
    checkpoint_limit: Count = 2
    validate_every: Annotated[int, Field(ge=0)] = 0
    validation_prompts: list[str] = field(default_factory=list)
    validation_steps: Steps = 20
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # fp16 needs a GPU


# -- model pieces --------------------------------------------------------------------------------
@dataclass
class SDComponents:
    """The parts of a Stable Diffusion folder that training needs."""

    model_dir: str
    vae: torch.nn.Module
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    noise_scheduler: object

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size) * (2 ** (len(self.vae.config.block_out_channels) - 1))


def load_sd_components(model_dir: str | Path) -> SDComponents:
    """Load VAE, UNet, text encoder, tokenizer and a DDPM training scheduler from a diffusers folder, all frozen."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from pipelines.loading import check_pipeline_folder

    model_dir = Path(model_dir)
    meta = check_pipeline_folder(model_dir)  # one clear error for files, pickles, half folders
    if meta.get("_class_name") != "StableDiffusionPipeline":
        raise InputError(f"training supports SD 1.x/2.x pipelines, this folder holds a {meta.get('_class_name')}",
                         model_dir)
    parts = SDComponents(
        model_dir=str(model_dir),
        vae=AutoencoderKL.from_pretrained(model_dir, subfolder="vae"),
        unet=UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet"),
        text_encoder=CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer"),
        noise_scheduler=DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler"),
    )
    from pipelines.tokenizer import check_tokenizer

    check_tokenizer(parts.tokenizer, path=model_dir / "tokenizer")  # the offline-load trap
    for m in (parts.vae, parts.unet, parts.text_encoder):
        m.requires_grad_(False)
        m.eval()
    return parts


def add_lora(parts: SDComponents, cfg: LoraTrainConfig) -> list[torch.nn.Parameter]:
    """Attach fresh LoRA adapters (peft) to the UNet and optionally the text encoder; return the trainable parameters."""
    from peft import LoraConfig

    alpha = cfg.alpha if cfg.alpha is not None else cfg.rank
    # Gaussian A and zero B: the adapted model starts exactly equal to the base model.
    parts.unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                      target_modules=list(UNET_TARGETS)))
    if cfg.train_text_encoder:
        add_text_encoder_lora(parts.text_encoder, LoraConfig(r=cfg.rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                                             target_modules=list(TEXT_TARGETS)))
    params = trainable_parameters(parts)
    if not params:
        raise InputError("no attention projections found for LoRA in this UNet", parts.model_dir)
    return params


def add_text_encoder_lora(text_encoder: torch.nn.Module, config) -> None:
    """Inject LoRA into a transformers CLIP text encoder with peft directly.

    transformers 5's `add_adapter` demands peft >= 0.22; peft's own injection works with ours and
    gives the same module names, so diffusers' `load_lora_weights` reads the result.
    """
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, text_encoder, adapter_name="default")
    text_encoder.peft_config = {"default": config}


def trainable_parameters(parts: SDComponents) -> list[torch.nn.Parameter]:
    """Parameters that require grad, UNet first, in a stable order (the optimizer's order)."""
    return [p for m in (parts.unet, parts.text_encoder) for p in m.parameters() if p.requires_grad]


def save_lora_weights(parts: SDComponents, out_dir: str | Path) -> Path:
    """Write `pytorch_lora_weights.safetensors` in diffusers' format (what `pipe.load_lora_weights` reads), atomically.

    The file's bytes are a function of the weights alone: see `canonical_safetensors`.
    """
    import shutil
    import tempfile

    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from core.io import atomic_write_bytes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".lora-*"):  # left by a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(parts.unet))
    kwargs = {"unet_lora_adapter_metadata": _adapter_metadata(parts.unet)}
    if getattr(parts.text_encoder, "peft_config", None):
        kwargs["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(parts.text_encoder))
        kwargs["text_encoder_lora_adapter_metadata"] = _adapter_metadata(parts.text_encoder)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".lora-") as tmp:
        StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=unet_layers, safe_serialization=True,
                                                  weight_name=LORA_WEIGHT_NAME, **kwargs)
        data = canonical_safetensors((Path(tmp) / LORA_WEIGHT_NAME).read_bytes())
    return atomic_write_bytes(out_dir / LORA_WEIGHT_NAME, data)


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its `__metadata__` keys sorted, so equal weights give equal bytes.

    safetensors (0.8) keeps the metadata in a Rust HashMap, whose order is random per process
    (safetensors/safetensors#584). diffusers writes two keys (`format`, `lora_adapter_metadata`),
    so identical LoRA weights came out as one of two byte strings. Tensor entries and data keep
    their order and offsets; only the header is rewritten (padded to 8 bytes as safetensors does).
    """
    import json

    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    if meta is not None:
        header = {"__metadata__": dict(sorted(meta.items())), **header}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def _adapter_metadata(model) -> dict:
    """peft config as JSON-able data, stored in the file so alpha != rank loads with the right scale."""
    cfg = model.peft_config["default"].to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}


# -- data ------------------------------------------------------------------------------------------
@torch.no_grad()
def encode_images(vae, examples: Sequence[CaptionedImage], resolution: int, batch_size: int = 16,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE posterior mean and std of every example, computed once so the VAE stays out of the training loop."""
    from tqdm.auto import tqdm

    means, stds = [], []
    for i in tqdm(range(0, len(examples), batch_size), desc="encode images", disable=not progress, leave=False):
        pixels = torch.stack([image_to_tensor(e.image, resolution) for e in examples[i:i + batch_size]])
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    return torch.cat(means), torch.cat(stds)


def sample_latents(mean: torch.Tensor, std: torch.Tensor, vae, gen: torch.Generator) -> torch.Tensor:
    """One latent draw from the cached posterior, scaled as the UNet expects."""
    eps = torch.randn(mean.shape, generator=gen)
    latents = mean + std * eps
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def tokenize(tokenizer, captions: Sequence[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's length (77 for CLIP)."""
    return tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def encode_text(text_encoder, tokenizer, captions: Sequence[str]) -> torch.Tensor:
    """Prompt embeddings (last hidden state), the UNet's cross-attention input."""
    ids = tokenize(tokenizer, captions).to(text_encoder.device)
    return text_encoder(ids)[0]


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """The one source of randomness for training step `step`: resume-safe by construction."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + salt) % (2**63 - 1))


def batch_indices(n: int, seed: int, step: int, batch_size: int) -> list[int]:
    """Example indices of one micro-batch: epochs are seeded permutations, walked in order."""
    out = []
    start = step * batch_size
    for pos in range(start, start + batch_size):
        epoch, k = divmod(pos, n)
        perm = torch.randperm(n, generator=step_generator(seed, epoch, salt=17))
        out.append(int(perm[k]))
    return out


# -- loss -------------------------------------------------------------------------------------------
def noise_and_timesteps(latents: torch.Tensor, noise_scheduler, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian noise and uniform training timesteps for a batch of latents."""
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen)
    return noise, t


def denoising_errors(unet, noise_scheduler, latents: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor,
                     t: torch.Tensor, snr_gamma: float | None = None) -> torch.Tensor:
    """Per-example noise-prediction MSE (the latent-diffusion loss), optionally min-SNR weighted."""
    from diffusers.training_utils import compute_snr

    device = next(unet.parameters()).device
    latents, noise, t = latents.to(device), noise.to(device), t.to(device)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    pred = unet(noisy, t, encoder_hidden_states=cond.to(device)).sample
    err = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma:
        # min-SNR-gamma (Hang et al. 2023): down-weight easy low-noise steps
        snr = compute_snr(noise_scheduler, t)
        weight = torch.clamp(snr, max=snr_gamma) / snr
        if noise_scheduler.config.prediction_type == "v_prediction":
            weight = torch.clamp(snr, max=snr_gamma) / (snr + 1)
        err = err * weight
    return err


class LoraWeights(torch.nn.Module):
    """A model's LoRA tensors seen as a module, so `TrainLoop` checkpoints hold only them, not the frozen base."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:  # noqa: D102 (nn.Module API)
        from peft.utils import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        from peft.utils import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, dict(state_dict))
        bad = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
        if bad:
            raise InputError(f"checkpoint LoRA tensors do not fit this model: {bad[:3]}")
        return result


class LoraTrainer:
    """One LoRA run on `finetune.loop.TrainLoop`: cached latents and prompt embeddings, a seeded step, validation images."""

    def __init__(self, parts: SDComponents, examples: Sequence[CaptionedImage], cfg: LoraTrainConfig,
                 out_dir: str | Path, progress: bool = True, device: str | None = None):
        from .loop import TrainLoop, cosine_schedule

        if not examples:
            raise InputError("no training examples")
        self.parts, self.examples, self.cfg, self.progress = parts, list(examples), cfg, progress
        self.out_dir = Path(out_dir)
        self.resolution = cfg.resolution or parts.image_size
        torch.manual_seed(cfg.seed)  # LoRA A matrices start Gaussian: seeded, so two runs start equal
        self.params = add_lora(parts, cfg)
        if cfg.grad_checkpointing:
            parts.unet.enable_gradient_checkpointing()
            if cfg.train_text_encoder:
                parts.text_encoder.gradient_checkpointing_enable()
        groups = [{"params": [p for p in parts.unet.parameters() if p.requires_grad], "lr": cfg.learning_rate}]
        text_params = [p for p in parts.text_encoder.parameters() if p.requires_grad]
        if text_params:
            groups.append({"params": text_params, "lr": cfg.text_encoder_lr or cfg.learning_rate})
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=1e-2)
        models = {"unet_lora": LoraWeights(parts.unet)}
        if text_params:
            models["text_encoder_lora"] = LoraWeights(parts.text_encoder)
        self.loop = TrainLoop(
            self.out_dir, models=models, optimizer=self.optimizer, max_steps=cfg.steps, seed=cfg.seed,
            lr_scheduler=cosine_schedule(self.optimizer, cfg.steps, warmup=cfg.warmup_steps, floor=0.1),
            checkpoint_every=cfg.checkpoint_every, checkpoint_limit=cfg.checkpoint_limit,
            validate_every=cfg.validate_every, max_grad_norm=cfg.max_grad_norm,
            mixed_precision=cfg.mixed_precision, device=device, desc="lora", progress=progress)
        for m in (parts.vae, parts.unet, parts.text_encoder):
            m.to(self.loop.device)
        self.lat_mean, self.lat_std = encode_images(parts.vae, self.examples, self.resolution, progress=progress)
        self.captions = [e.caption for e in self.examples]
        self._text_cache: dict[str, torch.Tensor] = {}
        if not cfg.train_text_encoder:
            # all at once, in a fixed order: a resumed run then sees bit-identical embeddings
            unique = sorted(set(self.captions) | {""})
            with torch.no_grad():
                for i in range(0, len(unique), 32):
                    chunk = unique[i:i + 32]
                    emb = encode_text(parts.text_encoder, parts.tokenizer, chunk)
                    self._text_cache.update(zip(chunk, emb))

    def prompt_embeds(self, captions: Sequence[str]) -> torch.Tensor:
        """Prompt embeddings: cached when the text encoder is frozen, computed with grad when it trains."""
        if self.cfg.train_text_encoder:
            return encode_text(self.parts.text_encoder, self.parts.tokenizer, captions)
        return torch.stack([self._text_cache[c] for c in captions])

    def micro_batch_loss(self, micro: int, gen: torch.Generator) -> torch.Tensor:
        """Loss of one micro-batch: examples from the seeded epoch order, noise from the step's generator."""
        cfg = self.cfg
        idx = batch_indices(len(self.examples), cfg.seed, micro, cfg.batch_size)
        latents = sample_latents(self.lat_mean[idx], self.lat_std[idx], self.parts.vae, gen)
        drop = torch.rand(len(idx), generator=gen) < cfg.caption_dropout
        captions = ["" if d else self.captions[i] for i, d in zip(idx, drop.tolist())]
        noise, t = noise_and_timesteps(latents, self.parts.noise_scheduler, gen)
        with self.loop.accelerator.autocast():
            err = denoising_errors(self.parts.unet, self.parts.noise_scheduler, latents,
                                   self.prompt_embeds(captions), noise, t, cfg.snr_gamma)
        return err.mean()

    def step_fn(self, step: int, gen: torch.Generator):
        """One optimizer step's loss; with `grad_accum` > 1 the earlier micro-batches are back-propagated here."""
        accum = self.cfg.grad_accum
        total = 0.0
        for k in range(accum - 1):
            loss = self.micro_batch_loss(step * accum + k, gen) / accum
            self.loop.accelerator.backward(loss)
            total += float(loss.detach())
        loss = self.micro_batch_loss(step * accum + accum - 1, gen) / accum
        return (loss, {"batch_loss": f"{total + float(loss.detach()):.4f}"}) if accum > 1 else loss

    def validate(self, step: int) -> dict:
        """Generate the validation prompts with fixed seeds into `validation/step-N/`."""
        from core.io import atomic_save_image

        pipe = build_pipeline(self.parts)
        paths = []
        for i, prompt in enumerate(self.cfg.validation_prompts):
            img = pipe(prompt, num_inference_steps=self.cfg.validation_steps, height=self.resolution,
                       width=self.resolution, generator=torch.Generator().manual_seed(self.cfg.seed + i)).images[0]
            path = self.out_dir / "validation" / f"step-{step:06d}" / f"{i:02d}.png"
            paths.append(str(atomic_save_image(img, path)))
        return {"images": paths}

    def run(self, resume: str | None = None):
        """Train to `cfg.steps` (resuming when asked) and return the loop's result."""
        validate = self.validate if self.cfg.validation_prompts else None
        return self.loop.run(self.step_fn, validate=validate, resume=resume)

def build_pipeline(parts: SDComponents, scheduler=None):
    """A `StableDiffusionPipeline` sharing the (possibly LoRA-adapted) modules, for sampling during training."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=scheduler or DDIMScheduler.from_config(parts.noise_scheduler.config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def train_lora(model_dir: str | Path, examples: Sequence[CaptionedImage], out_dir: str | Path,
               cfg: LoraTrainConfig, *, resume: str | None = None, progress: bool = True,
               parts: SDComponents | None = None, device: str | None = None) -> dict:
    """Train a LoRA; write `pytorch_lora_weights.safetensors` and `lora_config.json` to `out_dir`; return a summary."""
    t0 = time.time()
    out_dir = Path(out_dir)
    parts = parts or load_sd_components(model_dir)
    trainer = LoraTrainer(parts, examples, cfg, out_dir, progress=progress, device=device)
    result = trainer.run(resume=resume)
    weights = save_lora_weights(parts, out_dir)
    atomic_write_json(out_dir / "lora_config.json", {"base_model": str(model_dir), "config": asdict(cfg)})
    return {
        "base_model": str(model_dir),
        "lora": str(weights),
        "examples": len(trainer.examples),
        "steps": result.steps,
        "resumed_from_step": result.resumed_from,
        "last_loss": result.last_loss,
        "mean_loss_last_100": result.mean_loss_last_100,
        "checkpoint": result.checkpoint,
        "validation": result.validation,
        "seconds": round(time.time() - t0, 2),
        "config": asdict(cfg),
    }
