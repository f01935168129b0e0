"""Train the demo `AutoencoderKL`: 64 px RGB <-> 4x16x16 latents, L1 + small KL.

The shipped VAE's `scaling_factor` is set from the latents' measured std after training, the
same convention SD uses (latents * scaling_factor have unit variance for the UNet).
"""
from __future__ import annotations

from pathlib import Path

import torch

from finetune.loop import TrainLoop, cosine_schedule

from .common import image_grid, set_seed, shop_images, to_tensor, to_uint8
from .configs import DEFAULT_SETTINGS, VAE_CONFIG


def _reconstruction_validator(vae, val, loop, n_val: int):
    """Validation shared by the VAE stages: a grid of inputs over reconstructions, and their L1."""

    def validate(step: int) -> dict:
        rec = vae.decode(vae.encode(val.to(loop.device)).latent_dist.mean).sample.cpu()
        image_grid(torch.cat([to_uint8_t(val), to_uint8_t(rec)]).numpy(), cols=n_val).save(
            loop.out_dir / f"val-{step:06d}.png")
        return {"val_l1": round(float((rec - val).abs().mean()), 5)}

    return validate

def train_vae(out_dir: str | Path, *, steps: int | None = None, seed: int = 0, resume: str | None = None,
              device: str | None = None, progress: bool = True) -> dict:
    """Train the VAE into `OUT/vae/` (diffusers folder) and return its metrics."""
    from diffusers import AutoencoderKL

    cfg = DEFAULT_SETTINGS["vae"]
    steps = steps or cfg.steps
    out_dir = Path(out_dir)
    data = shop_images(out_dir, seed=seed, progress=progress)
    images = to_tensor(data.images)
    set_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    loop = TrainLoop(out_dir / "vae-train", models={"vae": vae}, optimizer=opt, max_steps=steps, seed=seed,
                     lr_scheduler=cosine_schedule(opt, steps, cfg.warmup), checkpoint_every=cfg.checkpoint_every,
                     device=device, desc="vae", progress=progress)
    vae = loop.models["vae"]
    n_val = 16
    val = images[:: max(1, len(images) // n_val)][:n_val]

    def step_fn(step: int, gen: torch.Generator):
        # (first step, crop, batch): the VAE is fully convolutional, so crops teach it too, cheaper
        _, crop, batch = [p for p in cfg.extra["phases"] if p[0] <= step][-1]
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        ox, oy = (int(v) for v in torch.randint(0, images.shape[-1] - crop + 1, (2,), generator=gen))
        x = images[idx, :, oy : oy + crop, ox : ox + crop].to(loop.device)
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(-1)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(loop.device)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        kl = post.kl().mean() / x[0].numel()
        return l1 + cfg.extra["kl_weight"] * kl, {"l1": f"{l1.item():.4f}"}

    result = loop.run(step_fn, validate=_reconstruction_validator(vae, val, loop, n_val), resume=resume)
    raw = loop.accelerator.unwrap_model(vae).eval()
    with torch.no_grad():  # SD convention: latents * scaling_factor have unit std
        zs = torch.cat([raw.encode(images[i : i + 256].to(loop.device)).latent_dist.mean.cpu()
                        for i in range(0, min(len(images), 2048), 256)])
    scale = float(1.0 / zs.std())
    raw.register_to_config(scaling_factor=round(scale, 5))
    raw.save_pretrained(out_dir / "vae")
    return {"stage": "vae", **result.to_dict(), "scaling_factor": scale,
            "params": sum(p.numel() for p in raw.parameters())}


def to_uint8_t(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(to_uint8(x))


def train_decoder(out_dir: str | Path, *, steps: int | None = None, seed: int = 0, resume: str | None = None,
                  device: str | None = None, progress: bool = True) -> dict:
    """Sharpen the VAE decoder (encoder frozen) with an extra loss on 4x-pooled colors.

    Freezing the encoder leaves every latent unchanged, so this can run before, during or after
    UNet training with the same result; it fixes colors that the joint run left muddy.
    """
    import torch.nn.functional as F
    from diffusers import AutoencoderKL

    cfg = DEFAULT_SETTINGS["decoder"]
    steps = steps or cfg.steps
    out_dir = Path(out_dir)
    data = shop_images(out_dir, seed=seed, progress=progress)
    images = to_tensor(data.images)
    vae = AutoencoderKL.from_pretrained(out_dir / "vae")
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    loop = TrainLoop(out_dir / "decoder-train", models={"vae": vae}, optimizer=opt, max_steps=steps, seed=seed,
                     lr_scheduler=cosine_schedule(opt, steps, 50), checkpoint_every=cfg.checkpoint_every,
                     device=device, desc="decoder", progress=progress)
    vae = loop.models["vae"]
    n_val = 16
    val = images[:: max(1, len(images) // n_val)][:n_val]

    def step_fn(step: int, gen: torch.Generator):
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=gen)
        x = images[idx].to(loop.device)
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(-1)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        color = (F.avg_pool2d(rec, 4) - F.avg_pool2d(x, 4)).abs().mean()
        return l1 + cfg.extra["color_weight"] * color, {"l1": f"{l1.item():.4f}"}

    result = loop.run(step_fn, validate=_reconstruction_validator(vae, val, loop, n_val), resume=resume)
    raw = loop.accelerator.unwrap_model(vae).eval()
    raw.save_pretrained(out_dir / "vae")
    return {"stage": "decoder", **result.to_dict()}
