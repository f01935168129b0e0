"""Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference Optimization").

For a pair (prompt, chosen x_w, rejected x_l) both images are noised with the same noise and
timestep; the loss is

    -log sigmoid( -beta/2 * [ (err_theta(x_w) - err_ref(x_w)) - (err_theta(x_l) - err_ref(x_l)) ] )

where err is the per-image noise-prediction MSE, theta the UNet with a LoRA and ref the same UNet
with the LoRA switched off (the frozen reference). The trained LoRA is saved like any other, so
`pipe.load_lora_weights` loads it. Pairs come from the A/B export (`{"prompt","chosen","rejected"}`)
or from ranking the base model's own candidates with a reward model or the demo oracle.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from core.errors import InputError
from core.io import append_jsonl, atomic_save_image, atomic_write_json
from core.settings import Dropout, PositiveFloat, settings

from .data import PreferencePair
from .lora import (
    LoraTrainConfig,
    LoraWeights,
    SDComponents,
    add_lora,
    batch_indices,
    denoising_errors,
    encode_images,
    encode_text,
    load_sd_components,
    noise_and_timesteps,
    sample_latents,
    save_lora_weights,
)

# scores images for one prompt; higher is better (a reward model's CTR, the oracle's CTR, ...)
Judge = Callable[[list, str], list[float]]


@settings
class DPOTrainConfig(LoraTrainConfig):
    """LoRA hyperparameters plus the DPO temperature `beta` (the paper uses 2000-5000 for SD 1.5)."""

    beta: PositiveFloat = 2000.0
    caption_dropout: Dropout = 0.0
    snr_gamma: PositiveFloat | None = None


def diffusion_dpo_loss(model_w: torch.Tensor, model_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
                       beta: float, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The Diffusion-DPO loss from per-example errors of the trained and the reference model (eq. 14 of the paper)."""
    margin = (model_w - ref_w) - (model_l - ref_l)  # < 0 when the model moved toward the chosen image
    inside = -0.5 * beta * margin
    losses = -F.logsigmoid(inside)
    if weight is not None:
        losses = losses * weight / weight.mean().clamp_min(1e-8)
    stats = {"implicit_acc": float((inside > 0).float().mean()), "margin": float(margin.mean().detach())}
    return losses.mean(), stats


class DPOTrainer:
    """Diffusion-DPO on a LoRA, with the LoRA-disabled UNet as the reference, on `finetune.loop.TrainLoop`."""

    def __init__(self, parts: SDComponents, pairs: Sequence[PreferencePair], cfg: DPOTrainConfig,
                 out_dir: str | Path, progress: bool = True, device: str | None = None):
        from .loop import TrainLoop, cosine_schedule

        if not pairs:
            raise InputError("no preference pairs to train on")
        self.parts, self.pairs, self.cfg = parts, list(pairs), cfg
        self.out_dir = Path(out_dir)
        self.resolution = cfg.resolution or parts.image_size
        torch.manual_seed(cfg.seed)
        self.params = add_lora(parts, cfg)
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=1e-2)
        self.loop = TrainLoop(
            self.out_dir, models={"unet_lora": LoraWeights(parts.unet)}, optimizer=self.optimizer,
            max_steps=cfg.steps, seed=cfg.seed,
            lr_scheduler=cosine_schedule(self.optimizer, cfg.steps, warmup=cfg.warmup_steps, floor=0.1),
            checkpoint_every=cfg.checkpoint_every, checkpoint_limit=cfg.checkpoint_limit,
            max_grad_norm=cfg.max_grad_norm, mixed_precision=cfg.mixed_precision, device=device,
            desc="dpo", progress=progress)
        for m in (parts.vae, parts.unet, parts.text_encoder):
            m.to(self.loop.device)
        images = [p.chosen for p in self.pairs] + [p.rejected for p in self.pairs]
        from .data import CaptionedImage

        mean, std = encode_images(parts.vae, [CaptionedImage(im, "") for im in images], self.resolution,
                                  progress=progress)
        n = len(self.pairs)
        self.w_mean, self.w_std, self.l_mean, self.l_std = mean[:n], std[:n], mean[n:], std[n:]
        prompts = sorted({p.prompt for p in self.pairs})
        with torch.no_grad():
            emb = torch.cat([encode_text(parts.text_encoder, parts.tokenizer, prompts[i:i + 32])
                             for i in range(0, len(prompts), 32)])
        self.prompt_emb = dict(zip(prompts, emb))
        self.weights = torch.tensor([p.weight for p in self.pairs], dtype=torch.float32)

    def step_fn(self, step: int, gen: torch.Generator):
        """One DPO step: same noise and timestep for chosen and rejected, reference without the LoRA."""
        cfg, unet = self.cfg, self.parts.unet
        idx = batch_indices(len(self.pairs), cfg.seed, step, cfg.batch_size)
        lat_w = sample_latents(self.w_mean[idx], self.w_std[idx], self.parts.vae, gen)
        lat_l = sample_latents(self.l_mean[idx], self.l_std[idx], self.parts.vae, gen)
        noise, t = noise_and_timesteps(lat_w, self.parts.noise_scheduler, gen)
        cond = torch.stack([self.prompt_emb[self.pairs[i].prompt] for i in idx])
        latents, noise2, t2, cond2 = (torch.cat([lat_w, lat_l]), torch.cat([noise, noise]), torch.cat([t, t]),
                                      torch.cat([cond, cond]))
        sched = self.parts.noise_scheduler
        with self.loop.accelerator.autocast():
            model_err = denoising_errors(unet, sched, latents, cond2, noise2, t2)
            with torch.no_grad():
                unet.disable_adapters()
                try:
                    ref_err = denoising_errors(unet, sched, latents, cond2, noise2, t2)
                finally:
                    unet.enable_adapters()
        b = len(idx)
        loss, stats = diffusion_dpo_loss(model_err[:b], model_err[b:], ref_err[:b], ref_err[b:], cfg.beta,
                                         self.weights[idx].to(model_err.device))
        return loss, {"acc": f"{stats['implicit_acc']:.2f}"}

    def run(self, resume: str | None = None):
        return self.loop.run(self.step_fn, resume=resume)


def train_dpo(model_dir: str | Path, pairs: Sequence[PreferencePair], out_dir: str | Path, cfg: DPOTrainConfig,
              *, resume: str | None = None, progress: bool = True, parts: SDComponents | None = None,
              device: str | None = None) -> dict:
    """Train a Diffusion-DPO LoRA; write `pytorch_lora_weights.safetensors` + `dpo_config.json`; return a summary."""
    t0 = time.time()
    parts = parts or load_sd_components(model_dir)
    trainer = DPOTrainer(parts, pairs, cfg, out_dir, progress=progress, device=device)
    result = trainer.run(resume=resume)
    weights = save_lora_weights(parts, out_dir)
    atomic_write_json(Path(out_dir) / "dpo_config.json", {"base_model": str(model_dir), "config": asdict(cfg),
                                                          "pairs": len(trainer.pairs)})
    return {"lora": str(weights), "pairs": len(trainer.pairs), "steps": result.steps,
            "resumed_from_step": result.resumed_from, "last_loss": result.last_loss,
            "mean_loss_last_100": result.mean_loss_last_100, "seconds": round(time.time() - t0, 2),
            "config": asdict(cfg)}


def demo_caption(category: str, *words: str) -> str:
    """A prompt worded like the demo catalog's titles ("a formal shirt", "formal trousers")."""
    text = " ".join([*words, category])
    return text if category in ("trousers", "shoes") else f"a {text}"


def demo_prompts(seed: int = 0, held_out_share: float = 1 / 3) -> tuple[list[str], list[str]]:
    """Demo-shop prompts with a style and a category but no color or pattern, split into train / held-out.

    The judge rewards colors and patterns, so the model must learn them, not read them; held-out
    prompts are (style, category) pairs never trained on.
    """
    import random

    from recommenders.shop.vocab import CATEGORIES, STYLES

    combos = [(s, c) for c in CATEGORIES for s in STYLES]
    random.Random(seed).shuffle(combos)
    prompts = [demo_caption(c, s) for s, c in combos]
    cut = max(1, int(round(len(prompts) * held_out_share)))
    return prompts[cut:], prompts[:cut]


# -- pairs from a ranking -------------------------------------------------------------------------
def generate(pipe, prompt: str, seeds: Sequence[int], steps: int, guidance: float, size: int) -> list:
    """One image per seed for a prompt (each seed its own generator, so any image can be redone alone)."""
    return [pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                 generator=torch.Generator(device="cpu").manual_seed(int(s))).images[0] for s in seeds]


def pairs_by_ranking(pipe, prompts: Sequence[str], judge: Judge, out_dir: str | Path, *, candidates: int = 4,
                     pairs_per_prompt: int = 1, seed: int = 0, steps: int = 20, guidance: float = 5.0,
                     size: int = 64, min_margin: float = 0.0, progress: bool = True) -> list[PreferencePair]:
    """Pairs from the base model's own candidates ranked by `judge`: best vs worst, 2nd best vs 2nd worst, ...

    Images and a `pairs.jsonl` in the A/B export format are written to `out_dir` so a run can be audited.
    """
    if candidates < 2 or not 1 <= pairs_per_prompt <= candidates // 2:
        raise InputError(f"need --candidates >= 2 and 1 <= --pairs-per-prompt <= candidates/2, got {candidates} "
                         f"and {pairs_per_prompt}")
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    pairs = []
    for p_idx, prompt in enumerate(tqdm(prompts, desc="rank candidates", disable=not progress)):
        seeds = [seed + 1000 * p_idx + k for k in range(candidates)]
        images = generate(pipe, prompt, seeds, steps, guidance, size)
        scores = judge(images, prompt)
        order = sorted(range(len(images)), key=lambda k: -scores[k])
        for j in range(pairs_per_prompt):
            best, worst = order[j], order[-1 - j]
            margin = scores[best] - scores[worst]
            if margin <= min_margin:
                continue
            paths = [atomic_save_image(images[k], out_dir / "images" / f"p{p_idx:04d}-s{seeds[k]}.png")
                     for k in (best, worst)]
            pairs.append(PreferencePair(prompt, paths[0], paths[1], float(margin)))
            append_jsonl(out_dir / "pairs.jsonl", {"prompt": prompt, "chosen": str(paths[0]),
                                                   "rejected": str(paths[1]), "source": "reward",
                                                   "weight": round(float(margin), 6)})
    if not pairs:
        raise InputError("the judge scored every candidate equally; no preference pairs could be made")
    return pairs


# -- evaluation ------------------------------------------------------------------------------------
def win_rate(base_pipe, tuned_pipe, prompts: Sequence[str], judge: Judge, *, seeds: Sequence[int] = (0,),
             steps: int = 20, guidance: float = 5.0, size: int = 64, tie: float = 1e-6,
             progress: bool = True) -> dict:
    """Share of (prompt, seed) where the tuned model's image beats the base model's (ties count half)."""
    from tqdm.auto import tqdm

    wins = ties = losses = 0
    base_scores, tuned_scores = [], []
    for prompt in tqdm(prompts, desc="win rate", disable=not progress):
        b = judge(generate(base_pipe, prompt, seeds, steps, guidance, size), prompt)
        t = judge(generate(tuned_pipe, prompt, seeds, steps, guidance, size), prompt)
        for sb, st in zip(b, t):
            base_scores.append(sb)
            tuned_scores.append(st)
            if abs(st - sb) <= tie:
                ties += 1
            elif st > sb:
                wins += 1
            else:
                losses += 1
    n = wins + ties + losses
    return {"win_rate": (wins + 0.5 * ties) / max(n, 1), "wins": wins, "ties": ties, "losses": losses, "n": n,
            "mean_score_base": sum(base_scores) / max(n, 1), "mean_score_tuned": sum(tuned_scores) / max(n, 1)}


def lora_pipeline(model_dir: str | Path, lora_dir: str | Path | None = None):
    """A plain diffusers pipeline on CPU, with a LoRA folder loaded when given (how users will load it)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    if lora_dir is not None:
        pipe.load_lora_weights(str(lora_dir))
    return pipe
