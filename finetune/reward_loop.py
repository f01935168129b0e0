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

import json
import time
from dataclasses import asdict, field
from pathlib import Path
from typing import Annotated, Callable, Sequence

import numpy as np
from pydantic import Field

from core import limits
from core.errors import InputError
from core.io import atomic_save_image, atomic_write_json, sha256_file
from core.settings import Count, Guidance, Seed, Steps, settings

from .data import CaptionedImage
from .dpo import generate, lora_pipeline
from .lora import LORA_WEIGHT_NAME, LoraTrainConfig, train_lora

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
            from pipelines.reward import RewardModel
            from pipelines.scorer import Scorer

            from .data import UserConditions

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


@settings
class RewardLoopConfig:
    """Rounds, candidates and the LoRA run of each round (checked by pydantic when made)."""

    rounds: Count = 3
    candidates: Annotated[int, Field(ge=2, le=limits.CANDIDATES.high)] = 16  # per prompt and round
    keep: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25  # top share by predicted CTR
    sample_steps: Steps = 20
    guidance: Guidance = 5.0
    eval_seeds: Count = 4  # fresh seeds per prompt for the evaluation
    seed: Seed = 0
    lora: LoraTrainConfig = field(default_factory=lambda: LoraTrainConfig(rank=8, learning_rate=3e-4, steps=150,
                                                                         batch_size=8, checkpoint_every=0))


def evaluate_model(pipe, prompts: Sequence[str], judge: Judge, seeds: Sequence[int], steps: int,
                   guidance: float, size: int) -> dict:
    """Mean judge score of fresh images: one per (prompt, seed)."""
    scores = []
    for prompt in prompts:
        scores += judge(generate(pipe, prompt, seeds, steps, guidance, size), prompt)
    return {"mean": float(np.mean(scores)), "n": len(scores)}


STATE_FILE = "loop-state.json"


def run_reward_loop(model_dir: str | Path, prompts: Sequence[str], select: Judge, evaluate: Judge,
                    cfg: RewardLoopConfig, out_dir: str | Path, *, resume: str | None = None,
                    options: dict | None = None, progress: bool = True) -> dict:
    """Run the loop; return per-round oracle CTR of fresh creatives against the base model's.

    After the base evaluation and after each round, `OUT/loop-state.json` records (atomically) what is
    done: the base numbers, each finished round's report entry and kept images. `resume="latest"` reads it,
    skips finished rounds, loads the last round's LoRA and goes on; a round cut off mid-way is redone from
    its start. Every seed in a round is a function of (`cfg.seed`, round, prompt, candidate), so a resumed
    run ends with the same numbers and LoRA bytes as an uninterrupted one. `options` (the judges' settings,
    which the callables cannot tell) are recorded with the config; a resume with other values is refused.
    """
    from tqdm.auto import tqdm

    t0 = time.time()
    out_dir = Path(out_dir)
    run = _fingerprint({"config": asdict(cfg), "prompts": list(prompts), "base_model": str(model_dir),
                        **(options or {})})
    state = _load_state(out_dir, run) if check_resume(resume) else None
    _remove_temp_files(out_dir)
    if state is None:
        (out_dir / STATE_FILE).unlink(missing_ok=True)  # a fresh run never resumes an older one
    resumed_from = len(state["rounds"]) if state else 0
    size, current = None, None
    eval_seeds = [1_000_000 + cfg.seed + k for k in range(cfg.eval_seeds)]
    if state is None:
        current = lora_pipeline(model_dir)
        size = current.unet.config.sample_size * current.vae_scale_factor
        state = {"run": run, "base": evaluate_model(current, prompts, evaluate, eval_seeds, cfg.sample_steps,
                                                    cfg.guidance, size), "rounds": [], "kept": []}
        atomic_write_json(out_dir / STATE_FILE, state)
    base_eval = state["base"]
    kept = [CaptionedImage(out_dir / path, prompt) for done in state["kept"] for path, prompt in done]
    for r in range(resumed_from + 1, cfg.rounds + 1):
        t_round = time.time()
        if current is None:  # the base model, or the last finished round's LoRA on a resumed run
            current = lora_pipeline(model_dir, out_dir / f"round-{r - 1}" if r > 1 else None)
            size = current.unet.config.sample_size * current.vae_scale_factor
        kept_dir = out_dir / f"round-{r}" / "kept"
        for stale in kept_dir.glob("*.png") if kept_dir.is_dir() else []:  # from a cut-off try of this round
            stale.unlink()
        picked, predicted = [], []
        for p_idx, prompt in enumerate(tqdm(prompts, desc=f"round {r} candidates", disable=not progress)):
            seeds = [cfg.seed + 100_000 * r + 1000 * p_idx + k for k in range(cfg.candidates)]
            images = generate(current, prompt, seeds, cfg.sample_steps, cfg.guidance, size)
            scores = np.asarray(select(images, prompt))
            n_keep = max(1, int(round(cfg.keep * len(images))))
            top = np.argsort(-scores, kind="stable")[:n_keep]
            predicted.append((float(scores.mean()), float(scores[top].mean())))
            for k in top:
                path = atomic_save_image(images[k], kept_dir / f"p{p_idx:03d}-s{seeds[k]}.png")
                picked.append(CaptionedImage(path, prompt))
        kept += picked
        lora_dir = out_dir / f"round-{r}"
        lora_cfg = LoraTrainConfig(**{**asdict(cfg.lora), "seed": cfg.seed + r})
        train = train_lora(model_dir, kept, lora_dir, lora_cfg, progress=progress)
        current = lora_pipeline(model_dir, lora_dir)
        tuned_eval = evaluate_model(current, prompts, evaluate, eval_seeds, cfg.sample_steps, cfg.guidance, size)
        state["rounds"].append({
            "round": r, "kept": len(picked), "train_examples": len(kept),
            "predicted_ctr_candidates": float(np.mean([p[0] for p in predicted])),
            "predicted_ctr_kept": float(np.mean([p[1] for p in predicted])),
            "eval": tuned_eval, "relative_lift": tuned_eval["mean"] / base_eval["mean"] - 1.0,
            "lora": str(lora_dir), "lora_last_loss": train["last_loss"],
            "lora_sha256": sha256_file(Path(train["lora"])), "seconds": round(time.time() - t_round, 1)})
        state["kept"].append([[str(Path(c.image).relative_to(out_dir)), c.caption] for c in picked])
        atomic_write_json(out_dir / STATE_FILE, state)  # the round counts as done from here on
        atomic_write_json(out_dir / "report.json", _report(state, prompts, cfg, resumed_from))
    report = _report(state, prompts, cfg, resumed_from)
    report["best_relative_lift"] = max(r["relative_lift"] for r in report["rounds"])
    report["seconds"] = round(time.time() - t0, 1)  # this process's time; per-round seconds are as recorded
    atomic_write_json(out_dir / "report.json", report)
    return report


def _report(state: dict, prompts: Sequence[str], cfg: RewardLoopConfig, resumed_from: int) -> dict:
    return {"prompts": list(prompts), "base": state["base"], "rounds": list(state["rounds"]), "config": asdict(cfg),
            "resumed_from_round": resumed_from}


def check_resume(resume: str | None) -> bool:
    """True for "latest", False for None; anything else is an input error."""
    if resume is None:
        return False
    if resume != "latest":
        raise InputError(f"--resume takes 'latest' (the run recorded in the output folder), got {resume!r}")
    return True


def _fingerprint(options: dict) -> dict:
    """The run's options as they read back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(options, sort_keys=True, default=str))


def _load_state(out_dir: Path, run: dict) -> dict | None:
    """The recorded state of an earlier run with the same options (None if there is none)."""
    path = out_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
        recorded = state["run"]
    except (ValueError, KeyError, TypeError):
        raise InputError("not a reward-loop state file; rerun without --resume", path) from None
    if recorded != run:
        was, now = _flat(recorded), _flat(run)
        diff = ", ".join(f"{k}: {_short(was.get(k))} -> {_short(now.get(k))}"
                         for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k))
        raise InputError(f"cannot resume: the recorded run had other options ({diff}); use the same options, "
                         "or drop --resume to start over", path)
    for done, images in zip(state["rounds"], state["kept"]):
        weights = out_dir / f"round-{done['round']}" / LORA_WEIGHT_NAME
        if not weights.is_file() or sha256_file(weights) != done["lora_sha256"]:
            raise InputError(f"cannot resume: round {done['round']}'s LoRA is missing or changed; drop --resume "
                             "to start over", weights)
        missing = [p for p, _ in images if not (out_dir / p).is_file()]
        if missing:
            raise InputError(f"cannot resume: {len(missing)} kept image(s) of round {done['round']} are missing "
                             f"(e.g. {missing[0]}); drop --resume to start over", out_dir)
    return state


def _remove_temp_files(out_dir: Path) -> None:
    """Temp files of writes a kill interrupted (`core.io.atomic_path` names), in what this loop writes."""
    for tmp in [*out_dir.glob(".*.tmp"), *out_dir.glob("round-*/**/.*.tmp")]:
        if tmp.is_file():
            tmp.unlink()


def _flat(options: dict, prefix: str = "") -> dict:
    """{"config": {"lora": {"rank": 8}}} -> {"config.lora.rank": 8}, so a refusal names the option that differs."""
    out = {}
    for k, v in options.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
