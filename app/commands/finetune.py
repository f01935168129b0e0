"""`atelier finetune lora|reward|reward-loop|dpo|adapter|demo-model`: the fine-tuning commands.

Heavy libraries load inside each command so that `atelier --help` stays instant.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from app.commands import options

app = typer.Typer(help="Fine-tune: LoRA, DPO, reward model, preference adapter, demo model.", no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print the report as JSON on stdout.")
JSON_OUT_OPT = typer.Option(None, "--json-out", help="Also write the JSON report to this file (atomically).", callback=options.out_file)
THREADS_OPT = typer.Option(None, help="Torch CPU threads (default ATELIER_THREADS or 1).")
DEVICE_OPT = typer.Option(None, help="cpu, cuda, cuda:N (default: CUDA if present).", callback=options.device)
CLASSIFIER_OPT = typer.Option(None, help="Attribute classifier folder that reads generated images for the oracle "
                              "(default: the shipped demo one).")


_STARTED = [0.0]  # wall clock at the command's start, for the report's total_seconds


def _emit(report: dict, as_json: bool, json_out: Optional[Path], summary_keys: tuple[str, ...] = ()) -> None:
    """Print the report (JSON or a few lines) and write it atomically when asked."""
    import time

    from core.io import printable, write_results_json
    from pipelines.device import describe, pick_device

    report.setdefault("device", describe(pick_device(report.get("device"))))
    report["total_seconds"] = round(time.time() - _STARTED[0], 1)  # data loading and evaluation included

    if json_out:
        write_results_json(json_out, report)
    if as_json:
        typer.echo(json.dumps(printable(report), indent=2, sort_keys=True, default=str))
        return
    for key in summary_keys or tuple(report):
        if key in report:
            value = report[key]
            typer.echo(f"{key:>24}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


def _local_model(spec: str) -> str:
    """A local diffusers folder for a model spec ('demo', a path); training needs local weights."""
    from core.errors import InputError
    from pipelines.loading import resolve

    path, local = resolve(spec)
    if not local:
        raise InputError(f"{spec!r} is a hub id; download it to a local folder first, then train on that folder")
    return path


def _setup(threads: Optional[int], device: Optional[str]) -> Optional[str]:
    """Start the clock, set torch threads, validate --device."""
    import time

    from pipelines.device import pick_device, set_threads

    _STARTED[0] = time.time()
    set_threads(threads)
    return None if device is None else str(pick_device(device))


@app.command("lora")
def lora(
    data: Path = typer.Argument(..., help="Image+caption folder (x.png + x.txt, or metadata.jsonl) or a catalog."),
    base_model: str = typer.Option("demo", help="Base model: 'demo' or a local diffusers folder."),
    out: Path = typer.Option(Path("runs/lora"), help="Output folder: LoRA weights, checkpoints, validation images.", callback=options.out_dir),
    rank: int = typer.Option(8, help="LoRA rank."),
    alpha: Optional[float] = typer.Option(None, help="LoRA alpha (default: = rank)."),
    learning_rate: float = typer.Option(1e-4, help="Peak learning rate (cosine decay)."),
    steps: int = typer.Option(500, help="Optimizer steps."),
    batch_size: int = typer.Option(4, help="Images per micro-batch."),
    grad_accum: int = typer.Option(1, help="Micro-batches per optimizer step."),
    grad_checkpointing: bool = typer.Option(False, help="Trade compute for memory in the UNet."),
    caption_dropout: float = typer.Option(0.1, help="Share of captions replaced by '' (keeps guidance working)."),
    train_text_encoder: bool = typer.Option(False, help="Also put LoRA on the text encoder."),
    resolution: Optional[int] = typer.Option(None, help="Training size in pixels (default: the model's)."),
    seed: int = typer.Option(0, help="Seed for LoRA init, batches and noise.", callback=options.check_seed),
    checkpoint_every: int = typer.Option(100, help="Checkpoint every N steps (0: only at the end)."),
    checkpoint_limit: int = typer.Option(2, help="Keep at most this many checkpoints."),
    validate_every: int = typer.Option(0, help="Validation images every N steps (0: off)."),
    validation_prompt: List[str] = typer.Option([], help="Validation prompt (repeat for several)."),
    mixed_precision: str = typer.Option("no", help="no | bf16 | fp16 (fp16 needs a GPU)."),
    resume: Optional[str] = typer.Option(None, help="'latest' or a checkpoint folder to resume from."),
    device: Optional[str] = DEVICE_OPT,
    threads: Optional[int] = THREADS_OPT,
    as_json: bool = JSON_OPT,
    json_out: Optional[Path] = JSON_OUT_OPT,
) -> None:
    """Train a LoRA; the output loads with plain diffusers `pipe.load_lora_weights(OUT)`."""
    from finetune.data import load_examples
    from finetune.lora import LoraTrainConfig, train_lora

    device = _setup(threads, device)
    cfg = LoraTrainConfig(rank=rank, alpha=alpha, learning_rate=learning_rate, steps=steps, batch_size=batch_size,
                          grad_accum=grad_accum, grad_checkpointing=grad_checkpointing,
                          caption_dropout=caption_dropout, train_text_encoder=train_text_encoder,
                          resolution=resolution, seed=seed, checkpoint_every=checkpoint_every,
                          checkpoint_limit=checkpoint_limit, validate_every=validate_every,
                          validation_prompts=list(validation_prompt), mixed_precision=mixed_precision)
    examples = load_examples(data)
    report = train_lora(_local_model(base_model), examples, out, cfg, resume=resume, device=device)
    _emit(report, as_json, json_out, ("lora", "examples", "steps", "resumed_from_step", "last_loss", "seconds"))


@app.command("reward")
def reward(
    shop: Optional[Path] = typer.Option(None, help="A demo shop folder (default: the shipped one) for logs + oracle."),
    impressions: Optional[Path] = typer.Option(None, help="Your impressions CSV (impression_id,user_id,item_id,"
                                               "format,timestamp,click); needs --catalog and --interactions."),
    catalog: Optional[Path] = typer.Option(None, help="Catalog (.jsonl/.csv) of the items in --impressions."),
    interactions: Optional[Path] = typer.Option(None, help="Interactions CSV the user embeddings are fitted on."),
    scorer: str = typer.Option("demo", help="open_clip scorer for image embeddings: 'demo' or a folder."),
    recommender: str = typer.Option("ease", help="Recommender for user embeddings: ease | itemknn | mostpop."),
    user_embedding: str = typer.Option("taste", help="taste (attribute choice model over the history) | "
                                       "condition (the recommender's condition embedding) | profile (history mean)."),
    out: Path = typer.Option(Path("runs/reward"), help="Output folder for config.json + model.safetensors.", callback=options.out_dir),
    test_share: float = typer.Option(0.2, help="Latest share of impressions held out for AUC/log-loss."),
    probes: bool = typer.Option(True, help="Add attribute probes (per-kind value probabilities) to the image features."),
    probe_source: str = typer.Option("catalog", help="catalog (classifiers fitted on the catalog's images and "
                                     "labels) | text (zero-shot: the scorer's text embeddings of the words)."),
    epochs: int = typer.Option(150, help="Maximum epochs (early stopping on a validation slice)."),
    hidden_dim: int = typer.Option(4, help="Hidden width (4 with weight decay 0.01 had the lowest validation "
                                   "log-loss on the demo shop: benchmarks/results/finetune_reward_grid.json)."),
    learning_rate: float = typer.Option(1e-3, help="AdamW learning rate."),
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay."),
    seed: int = typer.Option(0, help="Seed.", callback=options.check_seed),
    threads: Optional[int] = THREADS_OPT,
    as_json: bool = JSON_OPT,
    json_out: Optional[Path] = JSON_OUT_OPT,
) -> None:
    """Train the CTR reward model on impression logs; report held-out AUC/log-loss (and the oracle's on the demo)."""
    from core.errors import InputError
    from finetune.data import UserConditions
    from finetune.reward_model import (
        RewardTrainConfig,
        attribute_probes,
        catalog_probes,
        fit_and_report,
        impression_features,
    )
    from pipelines.scorer import Scorer

    _setup(threads, None)
    if not 0 < test_share < 1:
        raise InputError(f"--test-share must be in (0, 1), got {test_share}")
    if probe_source not in ("catalog", "text"):
        raise InputError(f"--probe-source must be 'catalog' or 'text', not {probe_source!r}")
    if user_embedding not in ("condition", "profile", "taste"):
        raise InputError(f"--user-embedding must be 'condition', 'profile' or 'taste', not {user_embedding!r}")
    cfg = RewardTrainConfig(hidden_dim=hidden_dim, learning_rate=learning_rate, weight_decay=weight_decay,
                            epochs=epochs, seed=seed)  # bad values fail here, before minutes of loading
    oracle = None
    if impressions is not None:
        if catalog is None or interactions is None:
            raise InputError("--impressions needs --catalog and --interactions (for the user embeddings)")
        from recommenders.catalog import Catalog
        from recommenders.interactions import load_interactions_csv
        from recommenders.shop import ImpressionLog

        cat = Catalog.load(catalog)
        inter = load_interactions_csv(interactions, catalog=cat)
        log = ImpressionLog.load(impressions)
        source = str(impressions)
    else:
        from recommenders.shop import DemoShop

        demo = DemoShop.load(shop)
        cat, inter, log, oracle, source = demo.catalog, demo.interactions, demo.impressions, demo.oracle_ctr, str(demo.path)
    users = UserConditions(inter, cat, model=recommender)
    embedder = Scorer.load(scorer)
    features = impression_features(log, cat, users, embedder.embed_images, user_embedding=user_embedding)
    report = fit_and_report(features, cfg, out, test_share=test_share, oracle=oracle,
                            probes=None if not probes else (catalog_probes(cat, embedder.embed_images)
                                                            if probe_source == "catalog"
                                                            else attribute_probes(cat, embedder.embed_texts)),
                            inputs={"scorer": scorer, "user_source": recommender, "user_embedding": user_embedding,
                                    "user_layout": users.taste_layout if user_embedding == "taste" else []})
    report["impressions_source"] = source
    _emit(report, as_json, json_out, ("held_out", "oracle_held_out", "auc_gap_to_oracle", "model", "seconds"))


@app.command("dpo")
def dpo(
    pairs: Optional[Path] = typer.Option(None, help="Preference pairs JSONL (the A/B export: prompt, chosen, rejected)."),
    prompts: Optional[Path] = typer.Option(None, help="Without --pairs: a text file of prompts (one a line) whose "
                                           "base-model candidates are ranked by --judge into pairs (default: the "
                                           "demo's style+category prompts, a third held out for the win rate)."),
    judge: str = typer.Option("oracle", help="Who ranks and who scores the win rate: 'oracle' (demo shop) or a "
                              "reward model folder."),
    segment: str = typer.Option("classic", help="Demo audience segment whose users the judge scores for."),
    classifier: Optional[str] = CLASSIFIER_OPT,
    eval_prompts: Optional[Path] = typer.Option(None, help="Held-out prompts file for the win rate (default: none)."),
    base_model: str = typer.Option("demo", help="Base model: 'demo' or a local diffusers folder."),
    out: Path = typer.Option(Path("runs/dpo"), help="Output folder: LoRA weights, pairs, checkpoints.", callback=options.out_dir),
    candidates: int = typer.Option(8, help="Candidates per prompt when ranking."),
    pairs_per_prompt: int = typer.Option(4, help="Pairs per prompt: best vs worst, 2nd best vs 2nd worst, ..."),
    beta: float = typer.Option(2000.0, help="DPO temperature beta (Wallace et al. use 2000-5000)."),
    rank: int = typer.Option(8, help="LoRA rank."),
    learning_rate: float = typer.Option(2e-3, help="Peak learning rate (the demo model's; ~1e-4 for SD 1.5)."),
    steps: int = typer.Option(400, help="Optimizer steps."),
    batch_size: int = typer.Option(4, help="Pairs per step."),
    sample_steps: int = typer.Option(20, help="Denoising steps when generating candidates and for the win rate."),
    guidance: float = typer.Option(5.0, help="Guidance scale when generating."),
    eval_seeds: int = typer.Option(12, help="Seeds per held-out prompt for the win rate."),
    seed: int = typer.Option(0, help="Seed.", callback=options.check_seed),
    checkpoint_every: int = typer.Option(100, help="Checkpoint every N steps."),
    resume: Optional[str] = typer.Option(None, help="'latest' or a checkpoint folder to resume from."),
    device: Optional[str] = DEVICE_OPT,
    threads: Optional[int] = THREADS_OPT,
    as_json: bool = JSON_OPT,
    json_out: Optional[Path] = JSON_OUT_OPT,
) -> None:
    """Diffusion-DPO LoRA from A/B pairs or reward rankings; reports the win rate over the base on held-out prompts."""
    from finetune.data import load_preference_pairs
    from finetune.dpo import (
        DPOTrainConfig,
        demo_prompts,
        lora_pipeline,
        pairs_by_ranking,
        train_dpo,
        win_rate,
    )

    device = _setup(threads, device)
    cfg = DPOTrainConfig(rank=rank, learning_rate=learning_rate, steps=steps, batch_size=batch_size, beta=beta,
                         seed=seed, checkpoint_every=checkpoint_every)
    model_dir = _local_model(base_model)
    judge_fn = None
    if pairs is None or eval_prompts is not None:
        judge_fn = _judge(judge, segment, classifier)
    report_judge = {"judge": judge, "segment": segment}
    base = lora_pipeline(model_dir)
    size = base.unet.config.sample_size * base.vae_scale_factor
    train_prompts, held_prompts = demo_prompts(seed)
    if prompts is not None:
        train_prompts = _read_prompts(prompts)
    if eval_prompts is not None:
        held_prompts = _read_prompts(eval_prompts)
    elif pairs is not None or prompts is not None:
        held_prompts = []  # the user's own prompts: no demo held-out set unless --eval-prompts names one
    if pairs is not None:
        pair_list = load_preference_pairs(pairs)
    else:
        pair_list = pairs_by_ranking(base, train_prompts, judge_fn, out / "pairs", candidates=candidates,
                                     pairs_per_prompt=pairs_per_prompt, seed=seed, steps=sample_steps,
                                     guidance=guidance, size=size)
    report = train_dpo(model_dir, pair_list, out, cfg, resume=resume, device=device)
    if held_prompts:
        tuned = lora_pipeline(model_dir, out)
        report["held_out_prompts"] = held_prompts
        report["win_rate"] = win_rate(base, tuned, held_prompts, judge_fn,
                                      seeds=[10_000 + seed + k for k in range(eval_seeds)], steps=sample_steps,
                                      guidance=guidance, size=size)
        report.update(report_judge)
    _emit(report, as_json, json_out, ("lora", "pairs", "steps", "last_loss", "win_rate", "seconds"))


@app.command("reward-loop")
def reward_loop(
    segment: str = typer.Option("classic", help="Demo audience segment to tune for."),
    reward_model: str = typer.Option(..., help="Reward model folder (from `finetune reward`) that picks the "
                                     "candidates; 'oracle' picks by the true CTR instead (an upper bound)."),
    base_model: str = typer.Option("demo", help="Base model: 'demo' or a local diffusers folder."),
    prompts: Optional[Path] = typer.Option(None, help="Prompts file (default: one plain prompt per category)."),
    out: Path = typer.Option(Path("runs/reward-loop"), help="Output folder: kept images and one LoRA per round.", callback=options.out_dir),
    rounds: int = typer.Option(3, help="Rounds of generate -> filter -> LoRA-tune."),
    candidates: int = typer.Option(16, help="Candidates per prompt and round."),
    keep: float = typer.Option(0.25, help="Share of candidates kept (top predicted CTR)."),
    held_out_share: float = typer.Option(0.5, help="Share of the segment's users kept out for the oracle evaluation."),
    lora_steps: int = typer.Option(150, help="LoRA steps per round."),
    lora_rank: int = typer.Option(8, help="LoRA rank."),
    lora_lr: float = typer.Option(5e-4, help="LoRA learning rate."),
    batch_size: int = typer.Option(8, help="LoRA batch size."),
    sample_steps: int = typer.Option(20, help="Denoising steps per image."),
    guidance: float = typer.Option(5.0, help="Guidance scale."),
    eval_seeds: int = typer.Option(8, help="Fresh seeds per prompt for the evaluation."),
    format: str = typer.Option("product", help="Ad format the CTR is for: product | banner."),
    classifier: Optional[str] = CLASSIFIER_OPT,
    seed: int = typer.Option(0, help="Seed.", callback=options.check_seed),
    resume: Optional[str] = typer.Option(None, help="'latest': skip the rounds recorded as finished in --out "
                                         "(loop-state.json) and go on; the same options are required."),
    threads: Optional[int] = THREADS_OPT,
    as_json: bool = JSON_OPT,
    json_out: Optional[Path] = JSON_OUT_OPT,
) -> None:
    """CG4CTR-style loop: keep the top candidates by predicted CTR, LoRA-tune, repeat; oracle CTR per round."""
    from finetune.dpo import demo_caption
    from finetune.lora import LoraTrainConfig
    from finetune.reward_loop import (
        AudienceJudge,
        RewardLoopConfig,
        check_resume,
        run_reward_loop,
        segment_users,
        split_users,
    )
    from recommenders.shop import DemoShop
    from recommenders.shop.vocab import CATEGORIES

    _setup(threads, None)
    check_resume(resume)  # before the judges load
    shop = DemoShop.load()
    train_users, held_users = split_users(segment_users(shop, segment), held_out_share, seed)
    rm = None if reward_model == "oracle" else reward_model
    select = AudienceJudge.for_segment(segment, users=train_users, reward_model=rm, shop=shop, format=format,
                                       classifier=classifier)
    evaluate = AudienceJudge.for_segment(segment, users=held_users, shop=shop, format=format, classifier=classifier)
    prompt_list = _read_prompts(prompts) if prompts else [demo_caption(c) for c in CATEGORIES]
    cfg = RewardLoopConfig(rounds=rounds, candidates=candidates, keep=keep, sample_steps=sample_steps,
                           guidance=guidance, eval_seeds=eval_seeds, seed=seed,
                           lora=LoraTrainConfig(rank=lora_rank, learning_rate=lora_lr, steps=lora_steps,
                                                batch_size=batch_size, checkpoint_every=0))
    options = {"segment": segment, "selector": reward_model, "held_out_share": held_out_share, "format": format,
               "classifier": classifier}
    report = run_reward_loop(_local_model(base_model), prompt_list, select, evaluate, cfg, out, resume=resume,
                             options=options)
    report.update(segment=segment, selector=reward_model, train_users=len(train_users), held_out_users=len(held_users))
    _emit(report, as_json, json_out, ("base", "rounds", "best_relative_lift", "resumed_from_round", "seconds"))


@app.command("adapter")
def adapter(
    base_model: str = typer.Option("demo", help="Base model: 'demo' or a local diffusers folder (kept frozen)."),
    shop: Optional[Path] = typer.Option(None, help="Demo shop folder (default: the shipped one)."),
    catalog: Optional[Path] = typer.Option(None, help="Your catalog (with --interactions) instead of the demo shop."),
    interactions: Optional[Path] = typer.Option(None, help="Your interactions CSV (users' histories)."),
    recommender: str = typer.Option("ease", help="Recommender whose conditions the adapter reads."),
    out: Path = typer.Option(Path("runs/adapter"), help="Output folder: config.json + model.safetensors.", callback=options.out_dir),
    steps: int = typer.Option(600, help="Optimizer steps."),
    batch_size: int = typer.Option(16, help="Examples per step."),
    learning_rate: float = typer.Option(1e-3, help="Peak learning rate."),
    num_tokens: int = typer.Option(4, help="Preference tokens appended to the prompt."),
    items_per_user: int = typer.Option(2, help="Targets per training user."),
    targets: str = typer.Option("taste", help="What the tokens learn to draw: 'taste' (catalog items drawn by the "
                                "condition's estimated taste) or 'latest' (each user's latest liked items)."),
    taste_power: float = typer.Option(1.0, help="Exponent on the taste weights when drawing 'taste' targets "
                                      "(> 1 sharpens toward the condition's top values)."),
    token_scale: float = typer.Option(1.0, help="The saved adapter's token scale at inference (0 < s <= 2)."),
    scorer: str = typer.Option("demo", help="open_clip scorer whose image space holds the taste prototypes."),
    validation_users: int = typer.Option(0, help="Keep this many training-side users out of training and report "
                                         "color match on them (for choosing settings without the held-out users)."),
    checkpoint_every: int = typer.Option(200, help="Checkpoint every N steps."),
    held_out_share: float = typer.Option(0.2, help="With your own data: share of users kept out of training."),
    eval_users: int = typer.Option(50, help="Held-out demo users (the block `atelier eval personalization` uses) "
                                   "for the color-match evaluation (0: skip)."),
    sample_steps: int = typer.Option(20, help="Denoising steps in the evaluation."),
    classifier: Optional[str] = CLASSIFIER_OPT,
    seed: int = typer.Option(0, help="Seed.", callback=options.check_seed),
    resume: Optional[str] = typer.Option(None, help="'latest' or a checkpoint folder to resume from."),
    device: Optional[str] = DEVICE_OPT,
    threads: Optional[int] = THREADS_OPT,
    as_json: bool = JSON_OPT,
    json_out: Optional[Path] = JSON_OUT_OPT,
) -> None:
    """Train the preference adapter (taste in the scorer's image space -> tokens) toward its targets, base frozen."""
    from core.errors import InputError
    from finetune.adapter import AdapterTrainConfig, color_match, train_adapter
    from finetune.data import UserConditions
    from finetune.reward_loop import split_users

    device = _setup(threads, device)
    cfg = AdapterTrainConfig(num_tokens=num_tokens, learning_rate=learning_rate, steps=steps, batch_size=batch_size,
                             items_per_user=items_per_user, checkpoint_every=checkpoint_every, seed=seed,
                             targets=targets, taste_power=taste_power)
    if not 0 < token_scale <= 2:
        raise InputError(f"--token-scale must be in (0, 2], got {token_scale}")
    if validation_users < 0:
        raise InputError(f"--validation-users must be >= 0, got {validation_users}")
    demo = None
    if catalog is not None or interactions is not None:
        if catalog is None or interactions is None:
            raise InputError("give both --catalog and --interactions (or neither, for the demo shop)")
        from recommenders.catalog import Catalog
        from recommenders.interactions import load_interactions_csv

        cat = Catalog.load(catalog)
        inter = load_interactions_csv(interactions, catalog=cat)
    else:
        from recommenders.shop import DemoShop

        demo = DemoShop.load(shop)
        cat, inter = demo.catalog, demo.interactions
    users = UserConditions(inter, cat, model=recommender)
    if demo is not None:
        from recommenders.shop.heldout import heldout_block, heldout_users

        # the personalization evaluation's held-out block (the last ids) never trains the adapter
        block = set(heldout_block(users.user_ids))
        train_users = [u for u in users.user_ids if u not in block]
    else:
        train_users, _ = split_users(users.user_ids, held_out_share, seed)
    if validation_users >= len(train_users):
        raise InputError(f"--validation-users {validation_users} leaves no training user ({len(train_users)} in all)")
    validation = train_users[len(train_users) - validation_users:] if validation_users else []
    train_users = train_users[:len(train_users) - validation_users]
    model_dir = _local_model(base_model)
    from pipelines.scorer import Scorer
    from pipelines.taste_embedding import taste_space_from_catalog

    space = taste_space_from_catalog(Scorer.load(scorer, device=device), cat)
    report = train_adapter(model_dir, users, train_users, out, cfg, resume=resume, device=device, space=space,
                           token_scale=token_scale)
    if demo is not None and (eval_users > 0 or validation):
        from finetune.dpo import lora_pipeline
        from pipelines.attribute_classifier import AttributeClassifier
        from pipelines.conditioning import PreferenceAdapter

        pipe, tuned = lora_pipeline(model_dir), PreferenceAdapter.from_pretrained(out)
        classify = AttributeClassifier.load(classifier).predict
        if validation:
            report["validation_color_match"] = color_match(pipe, tuned, users, validation, demo, classify,
                                                           seed=seed, steps=sample_steps)
        if eval_users > 0:
            report["color_match"] = color_match(pipe, tuned, users, heldout_users(users.user_ids, eval_users, seed),
                                                demo, classify, seed=seed, steps=sample_steps)
    _emit(report, as_json, json_out, ("adapter", "targets", "examples", "steps", "last_loss", "validation_color_match",
                                       "color_match", "seconds"))


def _read_prompts(path: Path) -> list[str]:
    from core.errors import InputError

    if not path.is_file():
        raise InputError("prompts file not found", path)
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = [ln for ln in lines if ln and not ln.startswith("#")]
    if not prompts:
        raise InputError("prompts file has no prompts", path)
    return prompts


def _judge(spec: str, segment: str, classifier: Optional[str] = None):
    """The oracle (demo) or a reward model, scoring images for the users of one demo segment."""
    from finetune.reward_loop import AudienceJudge

    return AudienceJudge.for_segment(segment, reward_model=None if spec == "oracle" else spec, classifier=classifier)


@app.command("demo-model")
def demo_model(
    what: str = typer.Option("all", help="vae | decoder | classifier | clip | unet | controlnet | upscaler | all (in that order)."),
    out: Path = typer.Option(Path("runs/demo"), help="Run folder: checkpoints, caches and the trained folders.", callback=options.out_dir),
    steps: Optional[int] = typer.Option(None, help="Training steps of each chosen stage (default: the shipped run's)."),
    seed: int = typer.Option(0, help="Seed for data, initialization and batches.", callback=options.check_seed),
    resume: Optional[str] = typer.Option(None, help="'latest' or a checkpoint folder to resume from."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: CUDA if present).", callback=options.device),
    install: bool = typer.Option(False, help="Copy the finished folders into assets/models/ (the shipped demo)."),
    threads: Optional[int] = typer.Option(None, help="Torch CPU threads (default ATELIER_THREADS or 1)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the training report here.", callback=options.out_file),
) -> None:
    """Train the demo Stable Diffusion, ControlNet, open_clip scorer and attribute classifier from scratch."""
    from core.io import printable, write_results_json
    from finetune.demo_model import train_demo_models
    from finetune.demo_model.export import install as install_models
    from pipelines.device import pick_device, set_threads

    set_threads(threads)
    pick_device(device)  # validates --device before minutes of data preparation
    report = train_demo_models(what, out, steps=steps, seed=seed, resume=resume, device=device)
    if install:
        report["installed"] = [str(p) for p in install_models(out, report=report)]
    if json_out:
        write_results_json(json_out, report)
    typer.echo(json.dumps(printable(report), indent=2, sort_keys=True, default=str))
