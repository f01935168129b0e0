"""`atelier generate product|background|banner|outfit --user U`: personalized images + a JSONL manifest.

Every subcommand resolves the user's PreferenceCondition (from the shop's recommender, or a
`--condition` JSON file), loads the base model once, runs one pipeline, writes PNGs atomically and
appends one `Creative` record per image to `OUT/manifest.jsonl`. Heavy imports live inside the
functions so `atelier --help` stays instant.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from app.commands import options

from core.errors import InputError
from core.args import check_size
from core.validate import check_prompt

app = typer.Typer(help="Generate personalized product images, backgrounds, banners and outfits.",
                  no_args_is_help=True)

# -- shared options ----------------------------------------------------------------------------
User = Annotated[Optional[str], typer.Option("--user", help="Shopper id (its condition comes from the recommender).")]
ConditionFile = Annotated[Optional[Path], typer.Option("--condition", help="A PreferenceCondition JSON file instead of --user.")]
Shop = Annotated[str, typer.Option("--shop", help="'demo' or a shop folder (catalog + interactions.csv).")]
Recommender = Annotated[str, typer.Option("--recommender", help="Recommender that makes the condition (ease, diffrec, ...).")]
Model = Annotated[str, typer.Option("--model", help="Base model: 'demo', a diffusers folder, or a hub id (online only).")]
Lora = Annotated[Optional[Path], typer.Option("--lora", help="LoRA weights to load into the base model.")]
LoraScale = Annotated[float, typer.Option("--lora-scale", help="LoRA strength.")]
Adapter = Annotated[Optional[Path], typer.Option("--adapter", help="Preference adapter folder (preference tokens).")]
IPAdapter = Annotated[Optional[Path], typer.Option("--ip-adapter", help="IP-Adapter .safetensors (image_encoder/ beside it).")]
Reward = Annotated[Optional[Path], typer.Option("--reward", help="CTR reward model folder: candidates are ranked by predicted CTR.")]
Device = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N (default: CUDA when present).", callback=options.device)]
Dtype = Annotated[Optional[str], typer.Option("--dtype", help="fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on CPU).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the first candidate; candidate i uses seed + i.", callback=options.seed)]
Steps = Annotated[int, typer.Option("--steps", min=1, max=1000, help="Denoising steps.")]
Guidance = Annotated[float, typer.Option("--guidance", min=0.0, help="Classifier-free guidance scale.")]
Candidates = Annotated[int, typer.Option("--candidates", "-n", min=1, max=256, help="Candidates per request.")]
Out = Annotated[Path, typer.Option("--out", help="Output folder (PNGs + manifest.jsonl).", callback=options.out_dir)]
Score = Annotated[bool, typer.Option("--score/--no-score", help="Rank candidates with the scorer when one is installed.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the Creative records as JSON.")]
JsonOut = Annotated[Optional[Path], typer.Option("--json-out", help="Also write the records to this JSON file.", callback=options.out_file)]
AllowUnsafe = Annotated[bool, typer.Option("--allow-unsafe-weights", help="Also load pickle weights (.bin/.pt/.ckpt) "
                                           "you trust; unpickling them can run arbitrary code.")]


@dataclass
class Context:
    """What one `atelier generate` call loaded: data, the user's condition and the models."""

    catalog: Any
    condition: Any
    sd: Any
    base_model: str
    scorer: Any = None
    adapter: Any = None
    ip_adapter: str | None = None
    lora: list[dict] = field(default_factory=list)
    reward_model: Any = None

    def common(self) -> dict:
        return dict(scorer=self.scorer, catalog=self.catalog, adapter=self.adapter, base_model=self.base_model,
                    lora=self.lora, ip_adapter=self.ip_adapter, reward_model=self.reward_model)


def load_shop_data(shop: str, recommender: str):
    """The shop's catalog, histories and fitted recommender (shared with batch campaigns)."""
    from app.batch.audience import ShopData

    return ShopData(shop, Path.cwd(), recommender)


def user_condition(data, user: str):
    """A user's PreferenceCondition from the shop's recommender."""
    from app.batch.jobs import AudienceMember

    if user not in data.history:
        some = ", ".join(list(data.history)[:3])
        raise InputError(f"unknown user {user!r} (no interactions in the shop; ids look like {some})")
    return data.condition(AudienceMember(user, "user", (user,)))


def read_condition(path: Path):
    """A PreferenceCondition from a JSON file (as written by `PreferenceCondition.to_dict`), read strictly."""
    from core.jsonio import read_json
    from recommenders.condition import PreferenceCondition

    if not path.is_file():
        raise InputError("condition file not found", path)
    data = read_json(path, what="condition")
    try:
        return PreferenceCondition.from_dict(data)
    except InputError as e:
        raise InputError(e.problem, path) from None


def load_scorer(spec: str = "demo", device: str | None = None):
    """The open_clip scorer, or None when the demo scorer is not installed (candidates keep seed order)."""
    from pipelines.scorer import DEMO_CLIP, Scorer

    if spec in ("demo", "demo-clip") and not DEMO_CLIP.is_dir():
        return None
    return Scorer.load(spec, device=device)


def load_context(*, user, condition_file, shop, recommender, model, lora, lora_scale, adapter, ip_adapter,
                 device, dtype, score, reward=None, scorer="demo", allow_unsafe=False, check_catalog=None) -> Context:
    """Check every model file first, resolve the condition (and `check_catalog(catalog)`), then load
    each model once for this process."""
    check_model_files(model=model, lora=lora, ip_adapter=ip_adapter, adapter=adapter, reward=reward, dtype=dtype,
                      allow_unsafe=allow_unsafe)
    if (user is None) == (condition_file is None):
        raise InputError("give exactly one of --user or --condition")
    condition = read_condition(condition_file) if condition_file is not None else None
    from pipelines.conditioning import PreferenceAdapter, load_ip_adapter
    from pipelines.device import set_threads
    from pipelines.loading import load_sd_pipeline

    set_threads()
    data = load_shop_data(shop, recommender)
    if condition is None:
        condition = user_condition(data, user)
    if check_catalog is not None:
        check_catalog(data.catalog)
    sd = load_sd_pipeline(model, device=device, dtype=dtype, cache=lora is None and ip_adapter is None,
                          allow_unsafe=allow_unsafe)
    lora_record = []
    if lora is not None:
        if not lora.exists():
            raise InputError("LoRA weights not found", lora)
        try:  # use_safetensors=True: diffusers must not fall back to unpickling a .bin
            sd.load_lora_weights(str(lora), adapter_name="user", use_safetensors=None if allow_unsafe else True)
            sd.set_adapters(["user"], adapter_weights=[lora_scale])
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"cannot load LoRA weights ({e})", lora) from None
        lora_record = [{"path": str(lora), "scale": lora_scale}]
    ctx = Context(catalog=data.catalog, condition=condition, sd=sd, base_model=model, lora=lora_record)
    if adapter is not None:
        ctx.adapter = PreferenceAdapter.from_pretrained(adapter)
    if ip_adapter is not None:
        ctx.ip_adapter = load_ip_adapter(sd, ip_adapter, allow_unsafe=allow_unsafe)
    if score:
        ctx.scorer = load_scorer(scorer, device=device)
    if reward is not None:
        from pipelines.reward import RewardModel

        if ctx.scorer is None:
            raise InputError("--reward needs the scorer (its image embeddings are the reward model's input)")
        ctx.reward_model = RewardModel.from_pretrained(reward)
    return ctx


def finish(output, out: Path, as_json: bool, json_out: Optional[Path]) -> list[dict]:
    """Write images + manifest, then print a short table or the JSON records."""
    from core.creative import Manifest
    from core.io import atomic_write_json

    manifest = Manifest(out / "manifest.jsonl")
    paths = output.save(out, manifest)
    records = [c.to_dict() for c in output.creatives]
    if json_out is not None:
        atomic_write_json(json_out, records)
    if as_json:
        typer.echo(json.dumps(records, indent=2, sort_keys=True))
    else:
        for c, p in zip(output.creatives, paths):
            scores = " ".join(f"{k}={v:.3f}" for k, v in sorted(c.scores.items()) if k != "rank")
            typer.echo(f"{p}  seed={c.seed}  {c.prompt!r}  {scores}")
        typer.echo(f"manifest: {manifest.path}")
    return records


def _items(text: Optional[str]) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def check_model_files(*, model=None, lora=None, ip_adapter=None, adapter=None, reward=None, controlnet=None, dtype=None,
                      allow_unsafe: bool = False) -> None:
    """Every model file the flags name, checked from its configs and headers alone (nothing heavy is
    imported): what each loader would read is safetensors, configs are valid JSON objects."""
    from core.weights import check_ip_adapter, check_weights
    from pipelines.device import DTYPES
    from pipelines.loading import check_controlnet_folder, check_pipeline_folder, resolve

    if dtype not in (None, "", "auto") and dtype not in DTYPES:
        raise InputError(f"unknown --dtype {dtype!r} (use {', '.join(sorted(DTYPES))})")
    if lora is not None:
        check_weights(lora, kind="lora", allow_unsafe=allow_unsafe, what="--lora")
    if ip_adapter is not None:
        check_ip_adapter(ip_adapter, allow_unsafe=allow_unsafe)
    source, local = resolve(model) if model is not None else (None, False)
    if local:
        check_pipeline_folder(source, allow_unsafe)
    for flag, folder, weights in (("--adapter", adapter, "adapter.safetensors"),
                                  ("--reward", reward, "model.safetensors")):
        if folder is not None:
            _check_config_folder(Path(folder), flag, weights)
    if controlnet is not None and controlnet != "demo-controlnet":
        source, local = resolve(controlnet, default="demo-controlnet")
        if local:
            check_controlnet_folder(source)


def _check_config_folder(folder: Path, flag: str, weights: str) -> None:
    """An Atelier model folder: config.json (a JSON object) and its safetensors weights."""
    from core.jsonio import read_json
    from core.weights import safetensors_header

    if not folder.is_dir():
        raise InputError(f"{flag} folder not found", folder)
    read_json(folder / "config.json", what=f"{flag} config.json")
    if not (folder / weights).is_file():
        raise InputError(f"{flag} folder has no {weights}", folder)
    safetensors_header(folder / weights)


def preflight(*, weights=(), allow_unsafe: bool = False, image: Optional[Path] = None, mask: Optional[Path] = None,
              need_alpha: bool = True) -> None:
    """Check the user's pictures before any model loads (weights: `check_model_files`, from `load_context`)."""
    from core.validate import check_product_image

    if mask is not None and image is None:
        raise InputError("--mask goes with --image")
    if image is not None:
        check_product_image(image, mask, need_alpha=need_alpha)


def _choice(value: Optional[str], allowed: tuple[str, ...], flag: str) -> None:
    if value is not None and value not in allowed:
        raise InputError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")


def _catalog_check(*, category: Optional[str] = None, items: tuple = ()):
    """A check of catalog ids and categories, run once the shop is loaded and before any model loads."""
    def check(catalog) -> None:
        if category is not None and category not in catalog.categories():
            raise InputError(f"unknown category {category!r} (the catalog has {', '.join(catalog.categories())})")
        for item in items:
            if item is not None and item not in catalog:
                raise InputError(f"unknown item id {item!r} (not in the shop's catalog)")
    return check


# -- commands ----------------------------------------------------------------------------------
@app.command("product")
def product(
    user: User = None, condition: ConditionFile = None,
    category: Annotated[Optional[str], typer.Option("--category", help="Category to draw (e.g. shirt).")] = None,
    item: Annotated[Optional[str], typer.Option("--item", help="A catalog product to personalize (img2img).")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="none, history or product (img2img source).")] = None,
    strength: Annotated[float, typer.Option("--strength", help="img2img strength (0..1].")] = 0.7,
    plain: Annotated[bool, typer.Option("--plain", help="Non-personalized prompt (a baseline).")] = False,
    shop: Shop = "demo", recommender: Recommender = "ease", model: Model = "demo", lora: Lora = None,
    lora_scale: LoraScale = 1.0, adapter: Adapter = None, ip_adapter: IPAdapter = None, reward: Reward = None,
    device: Device = None,
    dtype: Dtype = None, seed: Seed = 0, steps: Steps = 25, guidance: Guidance = 7.5, candidates: Candidates = 4,
    out: Out = Path("outputs/generate"), score: Score = True, as_json: AsJson = False, json_out: JsonOut = None,
    allow_unsafe_weights: AllowUnsafe = False,
) -> None:
    """Personalized images of a category or a given product, ranked for the user."""
    if category is None and item is None:
        raise InputError("give --category or --item")
    _choice(reference, ("none", "history", "product"), "--reference")
    if not 0.0 < strength <= 1.0:
        raise InputError(f"--strength must be in (0, 1], got {strength}")
    preflight()
    ctx = load_context(user=user, condition_file=condition, shop=shop, recommender=recommender, model=model,
                       lora=lora, lora_scale=lora_scale, adapter=adapter, ip_adapter=ip_adapter, device=device,
                       dtype=dtype, score=score, reward=reward, allow_unsafe=allow_unsafe_weights,
                       check_catalog=_catalog_check(category=category, items=(item,)))
    from pipelines.product import ProductPipeline  # after every check: it imports torch

    output = ProductPipeline(ctx.sd, **ctx.common())(
        ctx.condition, category=category, item_id=item, num_candidates=candidates, seed=seed, steps=steps,
        guidance=guidance, reference=reference, strength=strength, personalize=not plain)
    finish(output, out, as_json, json_out)


@app.command("background")
def background(
    user: User = None, condition: ConditionFile = None,
    item: Annotated[Optional[str], typer.Option("--item", help="A catalog product (its picture has alpha).")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Product image file (RGBA, or give --mask).")] = None,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Mask file: white = product pixels to keep.")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="controlnet (edges) or inpaint.")] = None,
    controlnet: Annotated[Optional[str], typer.Option("--controlnet", help="ControlNet: 'demo-controlnet' or a folder.")] = None,
    padding: Annotated[float, typer.Option("--padding", help="Scene around the product, as a share of its size.")] = 0.25,
    shop: Shop = "demo", recommender: Recommender = "ease", model: Model = "demo", lora: Lora = None,
    lora_scale: LoraScale = 1.0, adapter: Adapter = None, reward: Reward = None, device: Device = None,
    dtype: Dtype = None,
    seed: Seed = 0, steps: Steps = 25, guidance: Guidance = 7.5, candidates: Candidates = 2,
    out: Out = Path("outputs/generate"), score: Score = True, as_json: AsJson = False, json_out: JsonOut = None,
    allow_unsafe_weights: AllowUnsafe = False,
) -> None:
    """A new scene around a product; the product's own pixels stay exactly as given."""
    if (item is None) == (image is None):
        raise InputError("give exactly one of --item or --image")
    _choice(mode, ("controlnet", "inpaint"), "--mode")
    check_model_files(controlnet=controlnet)
    preflight(image=image, mask=mask)
    ctx = load_context(user=user, condition_file=condition, shop=shop, recommender=recommender, model=model,
                       lora=lora, lora_scale=lora_scale, adapter=adapter, ip_adapter=None, device=device,
                       dtype=dtype, score=score, reward=reward, allow_unsafe=allow_unsafe_weights,
                       check_catalog=_catalog_check(items=(item,)))
    from pipelines.background import BackgroundPipeline  # after every check: it imports torch
    from pipelines.loading import load_controlnet

    cn_spec = controlnet or ("demo-controlnet" if model == "demo" and mode != "inpaint" else None)
    cn = load_controlnet(cn_spec, device=device, dtype=dtype) if cn_spec else None
    output = BackgroundPipeline(ctx.sd, controlnet=cn, controlnet_path=cn_spec, **ctx.common())(
        ctx.condition, item_id=item, product_path=str(image.resolve()) if image else None,
        mask_path=str(mask.resolve()) if mask else None, mode=mode, padding=padding, num_candidates=candidates, seed=seed,
        steps=steps, guidance=guidance)
    finish(output, out, as_json, json_out)


@app.command("banner")
def banner(
    user: User = None, condition: ConditionFile = None,
    item: Annotated[Optional[str], typer.Option("--item", help="A catalog product to feature.")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Product image file (RGBA preferred).")] = None,
    headline: Annotated[Optional[str], typer.Option("--headline", help="Headline text (default: from the product/taste).")] = None,
    cta: Annotated[str, typer.Option("--cta", help="Call-to-action button text.")] = "Shop now",
    size: Annotated[Optional[list[str]], typer.Option("--size", help="WIDTHxHEIGHT; repeat for several (default: 300x250, 728x90, 1200x628, 1080x1080).")] = None,
    shop: Shop = "demo", recommender: Recommender = "ease", model: Model = "demo", lora: Lora = None,
    lora_scale: LoraScale = 1.0, adapter: Adapter = None, reward: Reward = None, device: Device = None,
    dtype: Dtype = None,
    seed: Seed = 0, steps: Steps = 25, guidance: Guidance = 7.5, candidates: Candidates = 1,
    out: Out = Path("outputs/generate"), score: Score = True, as_json: AsJson = False, json_out: JsonOut = None,
    allow_unsafe_weights: AllowUnsafe = False,
) -> None:
    """Ad banners at standard sizes with readable (WCAG AA) text that stays on the canvas."""
    if (item is None) == (image is None):
        raise InputError("give exactly one of --item or --image")
    preflight(image=image, need_alpha=False)
    if headline is not None:
        headline = check_prompt(headline, what="--headline", max_chars=120)
    cta = check_prompt(cta, what="--cta", max_chars=40)
    for text in size or ():
        check_size(text, "--size")
    ctx = load_context(user=user, condition_file=condition, shop=shop, recommender=recommender, model=model,
                       lora=lora, lora_scale=lora_scale, adapter=adapter, ip_adapter=None, device=device,
                       dtype=dtype, score=score, reward=reward, allow_unsafe=allow_unsafe_weights,
                       check_catalog=_catalog_check(items=(item,)))
    from pipelines.banner import BannerPipeline  # after every check: it imports torch
    from pipelines.layout import BANNER_SIZES

    output = BannerPipeline(ctx.sd, **ctx.common())(
        ctx.condition, item_id=item, product_path=str(image.resolve()) if image else None, headline=headline, cta=cta,
        sizes=size or list(BANNER_SIZES), num_candidates=candidates, seed=seed, steps=steps, guidance=guidance)
    finish(output, out, as_json, json_out)


@app.command("outfit")
def outfit(
    user: User = None, condition: ConditionFile = None,
    items: Annotated[str, typer.Option("--items", help="Comma-separated catalog ids already in the outfit.")] = "",
    categories: Annotated[Optional[str], typer.Option("--categories", help="Comma-separated categories to generate (default: what completes the outfit).")] = None,
    reference: Annotated[str, typer.Option("--reference", help="none or history (img2img from a history item).")] = "none",
    shop: Shop = "demo", recommender: Recommender = "ease", model: Model = "demo", lora: Lora = None,
    lora_scale: LoraScale = 1.0, adapter: Adapter = None, reward: Reward = None, device: Device = None,
    dtype: Dtype = None,
    seed: Seed = 0, steps: Steps = 25, guidance: Guidance = 7.5, candidates: Candidates = 1,
    out: Out = Path("outputs/generate"), score: Score = True, as_json: AsJson = False, json_out: JsonOut = None,
    allow_unsafe_weights: AllowUnsafe = False,
) -> None:
    """Generate the missing pieces of an outfit for the user and retrieve real items to buy."""
    from core.io import atomic_save_image
    from core.paths import safe_name

    present = _items(items)
    if not present:
        raise InputError("give the outfit's present items with --items ID[,ID...]")
    _choice(reference, ("none", "history"), "--reference")
    ctx = load_context(user=user, condition_file=condition, shop=shop, recommender=recommender, model=model,
                       lora=lora, lora_scale=lora_scale, adapter=adapter, ip_adapter=None, device=device,
                       dtype=dtype, score=score, reward=reward, allow_unsafe=allow_unsafe_weights,
                       check_catalog=_catalog_check(items=tuple(present)))
    from pipelines.outfit import OutfitPipeline, outfit_board  # after every check: it imports torch

    output = OutfitPipeline(ctx.sd, **ctx.common())(
        ctx.condition, present, categories=_items(categories) or None, num_candidates=candidates, seed=seed,
        steps=steps, guidance=guidance, reference=reference)
    records = finish(output, out, as_json, json_out)
    board = atomic_save_image(outfit_board(ctx.catalog, present, output),
                              out / f"outfit-{safe_name(ctx.condition.user_id)}.png")  # user ids are not paths
    if not as_json:
        typer.echo(f"outfit board: {board}  retrieved: "
                   + ", ".join(f"{r['extra']['category']}={r['extra']['retrieved_item']}" for r in records))
