"""Reward-filtered LoRA loop for an audience (after CG4CTR, Yang et al. KDD 2024).

Each round: generate candidates for the audience's prompts with the current model, keep the top
fraction by the CTR reward model's prediction for the audience's (training) users, LoRA-tune the
base model on everything kept so far, and measure the mean **oracle** CTR of freshly generated
creatives for held-out users of the same audience, next to the base model's.

Judges are plain callables `(images, prompt) -> scores`: `AudienceJudge` asks the demo oracle
(attributes read off the image by the attribute classifier, so the generator is never graded by
the scorer it was filtered with); `RewardJudge` asks a trained reward model.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recommenders.errors import InputError
from recommenders.io import atomic_save_image, atomic_write_json

from .data import CaptionedImage
from .dpo import generate, lora_pipeline
from .lora import LoraTrainConfig, train_lora

Judge = Callable[[list, str], list[float]]


class AudienceJudge:
    """Mean oracle CTR over a set of demo-shop users of images whose attributes a classifier reads."""

    def __init__(self, tastes: Sequence, classify: Callable[[list], list[dict]], format: str = "product"):
        from recommenders.shop.tastes import click_probability

        if not tastes:
            raise InputError("the audience has no users")
        self.tastes, self.classify, self.format = list(tastes), classify, format
        self._ctr = click_probability

    def __call__(self, images: list, prompt: str = "") -> list[float]:
        attrs = self.classify(images)
        return [float(np.mean([self._ctr(t, a, self.format) for t in self.tastes])) for a in attrs]

    @classmethod
    def for_segment(cls, segment: str, *, users: Sequence[str] | None = None, reward_model: str | None = None,
                    shop=None, format: str = "product", scorer: str = "demo", classifier: str | None = None):
        """The demo oracle (default) or a reward model (a folder) judging for one segment's users."""
        from recommenders.shop import DemoShop

        shop = shop or DemoShop.load()
        users = list(users) if users is not None else segment_users(shop, segment)
        if reward_model is not None:
            from pipelines.scorer import Scorer

            from .data import UserConditions
            from .reward_model import RewardModel

            model = RewardModel.from_pretrained(reward_model)
            conditions = UserConditions(shop.interactions, shop.catalog, model=model.config.user_source)
            emb = conditions.embeddings(users, kind=model.config.user_embedding)
            return RewardJudge(model, Scorer.load(model.config.scorer or scorer).embed_images, emb, format)
        from pipelines.attribute_classifier import AttributeClassifier

        reader = AttributeClassifier.load(classifier)
        return cls([shop.taste(u) for u in users], reader.predict, format)


class RewardJudge:
    """Mean predicted CTR of a reward model over a set of user embeddings."""

    def __init__(self, model, embed_images: Callable[[list], object], user_embeddings: np.ndarray,
                 format: str = "product"):
        self.model, self.embed_images, self.format = model, embed_images, format
        self.users = np.asarray(user_embeddings, np.float32)

    def __call__(self, images: list, prompt: str = "") -> list[float]:
        emb = _np(self.embed_images(images))
        scores = np.zeros(len(images))
        for u in self.users:
            scores += self.model.predict(emb, u, self.format)
        return list(scores / len(self.users))


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, np.float32)


def segment_users(shop, segment: str) -> list[str]:
    """Ids of the demo users drawn around `segment`, sorted."""
    users = sorted(u for u, t in shop.users.items() if t.segment == segment)
    if not users:
        known = sorted({t.segment for t in shop.users.values()})
        raise InputError(f"unknown segment {segment!r} (the demo shop has {', '.join(known)})")
    return users


def split_users(users: Sequence[str], held_out_share: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of an audience into users the loop may use and held-out users it is evaluated on."""
    rng = np.random.default_rng(seed)
    order = [users[i] for i in rng.permutation(len(users))]
    cut = int(round(len(order) * (1 - held_out_share)))
    if cut < 1 or cut >= len(order):
        raise InputError(f"cannot hold out {held_out_share:.0%} of {len(order)} users")
    return sorted(order[:cut]), sorted(order[cut:])


@dataclass
class RewardLoopConfig:
    """Rounds, candidates and the LoRA run of each round."""

    rounds: int = 3
    candidates: int = 16  # per prompt and round
    keep: float = 0.25  # top share by predicted CTR
    sample_steps: int = 20
    guidance: float = 5.0
    eval_seeds: int = 4  # fresh seeds per prompt for the evaluation
    seed: int = 0
    lora: LoraTrainConfig = field(default_factory=lambda: LoraTrainConfig(rank=8, learning_rate=3e-4, steps=150,
                                                                         batch_size=8, checkpoint_every=0))

    def check(self) -> None:
        if self.rounds < 1 or self.candidates < 2:
            raise InputError("--rounds must be >= 1 and --candidates >= 2")
        if not 0 < self.keep <= 1:
            raise InputError(f"--keep must be in (0, 1], got {self.keep}")
        self.lora.check()


def evaluate_model(pipe, prompts: Sequence[str], judge: Judge, seeds: Sequence[int], steps: int,
                   guidance: float, size: int) -> dict:
    """Mean judge score of fresh images: one per (prompt, seed)."""
    scores = []
    for prompt in prompts:
        scores += judge(generate(pipe, prompt, seeds, steps, guidance, size), prompt)
    return {"mean": float(np.mean(scores)), "n": len(scores)}


def run_reward_loop(model_dir: str | Path, prompts: Sequence[str], select: Judge, evaluate: Judge,
                    cfg: RewardLoopConfig, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Run the loop; return per-round oracle CTR of fresh creatives against the base model's."""
    from tqdm.auto import tqdm

    cfg.check()
    t0 = time.time()
    out_dir = Path(out_dir)
    base = lora_pipeline(model_dir)
    size = base.unet.config.sample_size * base.vae_scale_factor
    eval_seeds = [1_000_000 + cfg.seed + k for k in range(cfg.eval_seeds)]
    base_eval = evaluate_model(base, prompts, evaluate, eval_seeds, cfg.sample_steps, cfg.guidance, size)
    report = {"prompts": list(prompts), "base": base_eval, "rounds": [], "config": asdict(cfg)}
    kept: list[CaptionedImage] = []
    current = base
    for r in range(1, cfg.rounds + 1):
        t_round = time.time()
        picked, predicted = [], []
        for p_idx, prompt in enumerate(tqdm(prompts, desc=f"round {r} candidates", disable=not progress)):
            seeds = [cfg.seed + 100_000 * r + 1000 * p_idx + k for k in range(cfg.candidates)]
            images = generate(current, prompt, seeds, cfg.sample_steps, cfg.guidance, size)
            scores = np.asarray(select(images, prompt))
            n_keep = max(1, int(round(cfg.keep * len(images))))
            top = np.argsort(-scores, kind="stable")[:n_keep]
            predicted.append((float(scores.mean()), float(scores[top].mean())))
            for k in top:
                path = atomic_save_image(images[k], out_dir / f"round-{r}" / "kept" / f"p{p_idx:03d}-s{seeds[k]}.png")
                picked.append(CaptionedImage(path, prompt))
        kept += picked
        lora_dir = out_dir / f"round-{r}"
        lora_cfg = LoraTrainConfig(**{**asdict(cfg.lora), "seed": cfg.seed + r})
        train = train_lora(model_dir, kept, lora_dir, lora_cfg, progress=progress)
        current = lora_pipeline(model_dir, lora_dir)
        tuned_eval = evaluate_model(current, prompts, evaluate, eval_seeds, cfg.sample_steps, cfg.guidance, size)
        report["rounds"].append({
            "round": r, "kept": len(picked), "train_examples": len(kept),
            "predicted_ctr_candidates": float(np.mean([p[0] for p in predicted])),
            "predicted_ctr_kept": float(np.mean([p[1] for p in predicted])),
            "eval": tuned_eval, "relative_lift": tuned_eval["mean"] / base_eval["mean"] - 1.0,
            "lora": str(lora_dir), "lora_last_loss": train["last_loss"], "seconds": round(time.time() - t_round, 1)})
        atomic_write_json(out_dir / "report.json", report)
    report["best_relative_lift"] = max(r["relative_lift"] for r in report["rounds"])
    report["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(out_dir / "report.json", report)
    return report
