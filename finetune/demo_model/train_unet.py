"""Train the demo UNet and CLIP text encoder together on cached VAE latents of the shop images.

Recipe (what made learning fast on a shared CPU, DESIGN.md section 10): latents computed once
with the trained VAE (and their horizontal flips), epsilon prediction with min-SNR-gamma loss
weighting (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy"),
10% caption dropout so classifier-free guidance works, EMA weights, warmup + cosine LR.
"""
from __future__ import annotations

from pathlib import Path

import torch

from finetune.loop import EMA, TrainLoop, cosine_schedule

from .common import set_seed, shop_images, to_tensor, tokenize, tokenizer
from .configs import (
    DEFAULT_SETTINGS,
    NOISE_SCHEDULE,
    SCHEDULER_CONFIG,
    TEXT_ENCODER_CONFIG,
    UNET_CONFIG,
)


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Scaled VAE latent means of `images` (N, 3, H, W) in [-1, 1]."""
    out = [vae.encode(images[i : i + batch]).latent_dist.mean for i in range(0, len(images), batch)]
    return torch.cat(out) * vae.config.scaling_factor


def latent_cache(out_dir: Path, vae, images: torch.Tensor) -> torch.Tensor:
    """Latents of the images and of their mirror images, computed once per VAE."""
    from core.io import load_safetensors, save_safetensors

    path = out_dir / "data" / "latents.safetensors"
    if path.exists():
        cached = load_safetensors(path)
        if cached["latents"].shape[0] == 2 * len(images):
            return cached["latents"]
    latents = torch.cat([encode_latents(vae, images), encode_latents(vae, images.flip(-1))])
    save_safetensors({"latents": latents}, path)
    return latents


def negative_prompt() -> str:
    """The negative prompt Atelier's pipelines send; the demo model learns it as "unconditional"."""
    try:
        from pipelines.conditioning import NEGATIVE_PROMPT
    except ImportError:
        return ""
    return NEGATIVE_PROMPT


def caption_variants(data) -> list[list[str]]:
    """Per image: its caption, the caption without color, without pattern, and 'a product <scene>'.

    Partial prompts ("a shirt", "a product on a beach") are what pipelines send when they know
    less; training on them keeps such prompts in distribution.
    """
    from .backgrounds import SCENES
    from .data import VOCAB

    out = []
    for i, text in enumerate(data.captions):
        color = VOCAB["color"][int(data.labels["color"][i])]
        pattern = VOCAB["pattern"][int(data.labels["pattern"][i])]
        scene = SCENES[int(data.labels["scene"][i])]
        words = text.split(" ")
        out.append([text, " ".join(w for w in words if w != color), " ".join(w for w in words if w != pattern),
                    f"a product {scene}"])
    return out


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """min(SNR, gamma) / SNR per sample: caps the weight of easy low-noise steps (epsilon target)."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    return torch.clamp(snr, max=gamma) / snr


def train_unet(out_dir: str | Path, *, steps: int | None = None, seed: int = 0, resume: str | None = None,
               device: str | None = None, progress: bool = True, validate_every: int | None = None) -> dict:
    """Train into `OUT/unet/` and `OUT/text_encoder/` (EMA weights); needs `OUT/vae/`."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = DEFAULT_SETTINGS["unet"]
    steps = steps or cfg.steps
    out_dir = Path(out_dir)
    if not (out_dir / "vae" / "config.json").exists():
        raise FileNotFoundError(f"train the VAE first: {out_dir / 'vae'} is missing")
    data = shop_images(out_dir, seed=seed, progress=progress)
    vae = AutoencoderKL.from_pretrained(out_dir / "vae").eval()
    latents = latent_cache(out_dir, vae, to_tensor(data.images))
    tok = tokenizer()
    variants = caption_variants(data)  # (N, 4) texts: full, no color, no pattern, "a product <scene>"
    ids = tokenize(tok, [t for row in variants for t in row]).view(len(variants), len(variants[0]), -1)
    ids = torch.cat([ids, ids])  # the mirrored latents share captions
    uncond = tokenize(tok, ["", negative_prompt()])  # both mean "no caption" to the model
    variant_p = torch.tensor(cfg.extra["variant_p"])
    noise_sched = DDPMScheduler(**NOISE_SCHEDULE)

    set_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER_CONFIG))
    opt = torch.optim.AdamW([
        {"params": unet.parameters(), "lr": cfg.lr},
        {"params": text_encoder.parameters(), "lr": cfg.extra["text_lr"], "weight_decay": 0.0},
    ], weight_decay=1e-2)
    ema = {"unet": EMA(unet, cfg.extra["ema_decay"]), "text_encoder": EMA(text_encoder, cfg.extra["ema_decay"])}
    loop = TrainLoop(out_dir / "unet-train", models={"unet": unet, "text_encoder": text_encoder}, optimizer=opt,
                     max_steps=steps, seed=seed, lr_scheduler=cosine_schedule(opt, steps, cfg.warmup), ema=ema,
                     checkpoint_every=cfg.checkpoint_every, device=device,
                     validate_every=cfg.extra["validate_every"] if validate_every is None else validate_every,
                     desc="unet", progress=progress)
    unet, text_encoder = loop.models["unet"], loop.models["text_encoder"]
    dev = loop.device

    def step_fn(step: int, gen: torch.Generator):
        idx = torch.randint(0, len(latents), (cfg.batch_size,), generator=gen)
        x0 = latents[idx].to(dev)
        which = torch.multinomial(variant_p, cfg.batch_size, replacement=True, generator=gen)
        tokens = ids[idx, which].clone()
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.extra["caption_dropout"]
        tokens[drop] = uncond[torch.randint(0, len(uncond), (int(drop.sum()),), generator=gen)]
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen).to(dev)
        xt = noise_sched.add_noise(x0, noise, t)
        cond = text_encoder(tokens.to(dev)).last_hidden_state
        pred = unet(xt, t, cond).sample
        per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        return (per_sample * min_snr_weights(noise_sched, t, cfg.extra["snr_gamma"])).mean()

    validate = held_out_validator(loop, out_dir, vae, tok)
    result = loop.run(step_fn, validate=validate, resume=resume)
    return export_unet(loop, out_dir, result)


def held_out_validator(loop: TrainLoop, out_dir: Path, vae, tok):
    """Every `validate_every` steps: EMA weights -> 42 held-out prompts -> classifier accuracy + a sheet.

    Needs a trained attribute classifier in OUT (the `classifier` stage); without one, no validation.
    """
    import copy

    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from pipelines.attribute_classifier import AttributeClassifier

    from .evaluate import contact_sheet, fidelity

    if not (out_dir / "attribute-classifier" / "config.json").exists():
        return None
    judge = AttributeClassifier.load(out_dir / "attribute-classifier")

    def validate(step: int) -> dict:
        unet = copy.deepcopy(loop.accelerator.unwrap_model(loop.models["unet"]))
        text_encoder = copy.deepcopy(loop.accelerator.unwrap_model(loop.models["text_encoder"]))
        loop.ema["unet"].copy_to(unet)
        loop.ema["text_encoder"].copy_to(text_encoder)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder.eval(), tokenizer=tok, unet=unet.eval(),
                                       scheduler=DDIMScheduler(**SCHEDULER_CONFIG), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False).to(loop.device)
        metrics, images, prompts = fidelity(pipe, judge, n=42, seed=10_000)
        contact_sheet(images, prompts, loop.out_dir / f"val-{step:06d}.png", judge.predict(images), cols=7)
        return {k: v for k, v in metrics.items() if k.endswith("accuracy")}

    return validate


def export_unet(loop: TrainLoop, out_dir: Path, result) -> dict:
    """Save the EMA weights of the UNet and text encoder as diffusers/transformers folders."""
    unet = loop.accelerator.unwrap_model(loop.models["unet"])
    text_encoder = loop.accelerator.unwrap_model(loop.models["text_encoder"])
    loop.ema["unet"].copy_to(unet)
    loop.ema["text_encoder"].copy_to(text_encoder)
    unet.save_pretrained(out_dir / "unet")
    text_encoder.save_pretrained(out_dir / "text_encoder")
    return {"stage": "unet", **result.to_dict(),
            "params_unet": sum(p.numel() for p in unet.parameters()),
            "params_text_encoder": sum(p.numel() for p in text_encoder.parameters())}
