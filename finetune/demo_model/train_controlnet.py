"""Train the demo ControlNet: Canny edges of a product -> an image of that product on a scene.

The ControlNet starts as a copy of the trained UNet's encoder (`ControlNetModel.from_unet`, as in
Zhang et al. 2023), with zero-initialized output convolutions, and learns while the UNet and text
encoder stay frozen. Its conditioning embedding downsamples by the VAE's factor (8).
The edges are computed from the product alone (on mid-gray), exactly as `data.edge_map` does at
generation time, so the model learns "keep this silhouette, paint the named scene around it".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from finetune.loop import TrainLoop, cosine_schedule

from .common import set_seed, shop_images, to_tensor, tokenize, tokenizer
from .configs import CONTROLNET_EXTRA, DEFAULT_SETTINGS, NOISE_SCHEDULE
from .data import VOCAB, edge_map
from .train_unet import latent_cache, min_snr_weights


def edge_tensor(products: np.ndarray) -> torch.Tensor:
    """Edge maps (N, 3, H, W) in [0, 1], the range diffusers' ControlNet pipelines feed the model."""
    edges = np.stack([edge_map(p) for p in products])
    return torch.from_numpy(edges).permute(0, 3, 1, 2).float() / 255.0


def train_controlnet(out_dir: str | Path, *, steps: int | None = None, seed: int = 0, resume: str | None = None,
                     device: str | None = None, progress: bool = True, base: str | Path | None = None) -> dict:
    """Train into `OUT/controlnet/`; `base` is a folder with vae/, unet/, text_encoder/ (default OUT)."""
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDPMScheduler,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    cfg = DEFAULT_SETTINGS["controlnet"]
    steps = steps or cfg.steps
    out_dir = Path(out_dir)
    base = Path(base) if base else out_dir
    for part in ("vae", "unet", "text_encoder"):
        if not (base / part).is_dir():
            raise FileNotFoundError(f"train the {part} first: {base / part} is missing")
    data = shop_images(out_dir, seed=seed, progress=progress)
    vae = AutoencoderKL.from_pretrained(base / "vae").eval()
    unet = UNet2DConditionModel.from_pretrained(base / "unet").eval().requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder").eval().requires_grad_(False)
    latents = latent_cache(out_dir, vae, to_tensor(data.images))
    edges = edge_tensor(data.products)
    edges = torch.cat([edges, edges.flip(-1)])
    tok = tokenizer()
    # no style words: the silhouette must come from the edges, not from "formal" / "sporty"
    styles = set(VOCAB["style"])
    captions = [" ".join(w for w in c.split(" ") if w not in styles) for c in data.captions]
    with torch.no_grad():  # the text encoder is frozen: encode every caption once
        ids = tokenize(tok, captions)
        cond_all = torch.cat([text_encoder(ids[i : i + 512]).last_hidden_state for i in range(0, len(ids), 512)])
        empty = text_encoder(tokenize(tok, [""])).last_hidden_state[0]
    cond_all = torch.cat([cond_all, cond_all])
    noise_sched = DDPMScheduler(**NOISE_SCHEDULE)

    set_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, **CONTROLNET_EXTRA)
    opt = torch.optim.AdamW(controlnet.parameters(), lr=cfg.lr, weight_decay=1e-2)
    loop = TrainLoop(out_dir / "controlnet-train", models={"controlnet": controlnet}, optimizer=opt, max_steps=steps,
                     seed=seed, lr_scheduler=cosine_schedule(opt, steps, 50), checkpoint_every=cfg.checkpoint_every,
                     device=device, desc="controlnet", progress=progress)
    controlnet = loop.models["controlnet"]
    dev = loop.device
    unet = unet.to(dev)

    def step_fn(step: int, gen: torch.Generator):
        idx = torch.randint(0, len(latents), (cfg.batch_size,), generator=gen)
        x0, ctrl, cond = latents[idx].to(dev), edges[idx].to(dev), cond_all[idx].clone()
        # half the prompts dropped, as in the ControlNet paper, so the edges alone must carry the shape
        cond[torch.rand(cfg.batch_size, generator=gen) < cfg.extra["caption_dropout"]] = empty
        cond = cond.to(dev)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen).to(dev)
        xt = noise_sched.add_noise(x0, noise, t)
        down, mid = controlnet(xt, t, encoder_hidden_states=cond, controlnet_cond=ctrl, return_dict=False)
        pred = unet(xt, t, cond, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        return (per_sample * min_snr_weights(noise_sched, t, 5.0)).mean()

    result = loop.run(step_fn, resume=resume)
    raw = loop.accelerator.unwrap_model(controlnet)
    raw.save_pretrained(out_dir / "controlnet")
    return {"stage": "controlnet", **result.to_dict(), "params": sum(p.numel() for p in raw.parameters())}
