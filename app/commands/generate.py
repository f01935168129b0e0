"""`atelier generate product|background|banner|outfit --user U`: personalized images + a JSONL manifest.

Every subcommand checks the user's files (`PipelineSpec.check`), resolves the user's PreferenceCondition
(`app.conditions`: the shop's recommender, or a `--condition` JSON file), gets its pipeline from the one
assembler (`pipelines.assemble`), writes PNGs atomically and appends one `Creative` record per image to
`OUT/manifest.jsonl`. Heavy imports live inside the functions so `atelier --help` stays instant.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from app.commands import options
from core import limits
from core.errors import InputError
from core.validate import check_prompt, parse_size

app = typer.Typer(help="Generate personalized product images, backgrounds, banners and outfits.",
                  no_args_is_help=True)

# -- shared options ----------------------------------------------------------------------------
User = Annotated[Optional[str], typer.Option("--user", help="Shopper id (its condition comes from the recommender).")]
ConditionFile = Annotated[Optional[Path], typer.Option("--condition", help="A PreferenceCondition JSON file instead of --user.")]
Shop = Annotated[str, typer.Option("--shop", help="'demo' or a shop folder (catalog + interactions.csv).")]
Recommender = Annotated[str, typer.Option("--recommender", help="Backbone that makes the condition: any registered "
                                          "recommender (mostpop, itemknn, ease, multivae, diffrec, ldiffrec, giffcf, "
                                          "seq-mostpop, sasrec, gru4rec, dreamrec), fitted on the shop.")]
RecommenderDir = Annotated[Optional[Path], typer.Option("--recommender-dir", help="A folder written by `atelier rec "
                                                        "train` (instead of fitting --recommender).")]
Model = Annotated[str, typer.Option("--model", help="Base model: 'demo', a diffusers folder, or a hub id (online only).")]
Lora = Annotated[Optional[Path], typer.Option("--lora", help="LoRA weights to load into the base model.")]
LoraScale = Annotated[float, options.lora_scale()]
Adapter = Annotated[Optional[Path], typer.Option("--adapter", help="Preference adapter folder (preference tokens).")]
IPAdapter = Annotated[Optional[Path], typer.Option("--ip-adapter", help="IP-Adapter .safetensors (image_encoder/ beside it).")]
Reward = Annotated[Optional[Path], typer.Option("--reward", help="CTR reward model folder: candidates are ranked by predicted CTR.")]
Device = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N (default: CUDA when present).", callback=options.device)]
Dtype = Annotated[Optional[str], typer.Option("--dtype", help="fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on CPU).")]
Seed = Annotated[int, options.seed()]
Steps = Annotated[int, options.steps()]
Guidance = Annotated[float, options.guidance()]
Candidates = Annotated[int, options.candidates()]
Out = Annotated[Path, typer.Option("--out", help="Output folder (PNGs + manifest.jsonl).", callback=options.out_dir)]
Score = Annotated[bool, typer.Option("--score/--no-score", help="Rank candidates with the scorer when one is installed.")]
Upscale = Annotated[bool, typer.Option("--upscale/--no-upscale", help="Apply the model's own 2x upscaler when it has "
                                       "one (the demo model does: 128 px images); --no-upscale: the model's size.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the Creative records as JSON.")]
JsonOut = Annotated[Optional[Path], typer.Option("--json-out", help="Also write the records to this JSON file.", callback=options.out_file)]
FeedbackDb = Annotated[Optional[str], typer.Option("--feedback-db", help="An A/B store (SQLite file or postgresql:// "
                                                 "DSN): the shopper's stored feedback events and votes update her "
                                                 "condition (`atelier feedback show`); shoppers without events keep theirs.")]
AllowUnsafe = Annotated[bool, typer.Option("--allow-unsafe-weights", help="Also load pickle weights (.bin/.pt/.ckpt) "
                                           "you trust; unpickling them can run arbitrary code.")]


@dataclass
class Request:
    """What one `atelier generate` call works with: the shop's catalog, the shopper's condition and the
    assembled components (`pipelines.assemble`)."""

    catalog: Any
    condition: Any
    parts: Any

    def pipeline(self, kind: str):
        return self.parts.pipeline(kind, catalog=self.catalog)


def prepare(spec, *, user, condition_file, shop, recommender, recommender_dir: Optional[Path] = None,
            image: Optional[Path] = None,
            mask: Optional[Path] = None, need_alpha: bool = True, category: Optional[str] = None,
            items: tuple = (), feedback_db: Optional[str] = None) -> Request:
    """Check every file first (weights, model folder, product pictures, the condition file), then load
    the shop and check the catalog ids and category asked for, then assemble the models (each loaded
    once for this process, at the first pipeline call)."""
    from app.conditions import load_shop_data, read_condition, user_condition
    from core.validate import check_product_image
    from pipelines.assemble import assemble
    from pipelines.device import set_threads

    spec.check()
    if mask is not None and image is None:
        raise InputError("--mask goes with --image")
    if image is not None:
        check_product_image(image, mask, need_alpha=need_alpha)
    if (user is None) == (condition_file is None):
        raise InputError("give exactly one of --user or --condition")
    condition = read_condition(condition_file) if condition_file is not None else None
    set_threads()
    data = load_shop_data(shop, recommender, recommender_dir=recommender_dir)
    if category is not None and category not in data.catalog.categories():
        raise InputError(f"unknown category {category!r} (the catalog has {', '.join(data.catalog.categories())})")
    for item in items:
        if item is not None and item not in data.catalog:
            raise InputError(f"unknown item id {item!r} (not in the shop's catalog)")
    if condition is None:
        condition = user_condition(data, user)
        if feedback_db is not None:
            from app.feedback_loop import feedback_condition, open_feedback_store

            condition = feedback_condition(condition, open_feedback_store(feedback_db), user, shop)
    elif feedback_db is not None:
        raise InputError("--feedback-db goes with --user (a --condition file is used as given)")
    return Request(catalog=data.catalog, condition=condition, parts=assemble(spec))


def pipeline_spec(*, model, lora, lora_scale, adapter, reward, device, dtype, score, allow_unsafe,
                  ip_adapter=None, controlnet=None, upscale=True):
    """The `PipelineSpec` of the shared flags (paths kept as the user typed them: Creatives record them)."""
    from pipelines.assemble import AUTO, PipelineSpec

    def name(p):
        return None if p is None else str(p)

    return PipelineSpec(model=model, lora=name(lora), lora_scale=lora_scale, adapter=name(adapter),
                        ip_adapter=name(ip_adapter), controlnet=controlnet, scorer="demo" if score else None,
                        reward=name(reward), device=device, dtype=dtype, allow_unsafe=allow_unsafe,
                        upscaler=AUTO if upscale else None)


def finish(output, out: Path, as_json: bool, json_out: Optional[Path]) -> list[dict]:
    """Write images + manifest, then print a short table or the JSON records."""
    from core.creative import Manifest
    from core.io import printable, write_results_json

    manifest = Manifest(out / "manifest.jsonl")
    paths = output.save(out, manifest)
    records = [c.to_dict() for c in output.creatives]
    if json_out is not None:
        write_results_json(json_out, records)
    if as_json:
        typer.echo(json.dumps(printable(records), indent=2, sort_keys=True))
    else:
        for c, p in zip(output.creatives, paths):
            scores = " ".join(f"{k}={v:.3f}" for k, v in sorted(c.scores.items()) if k != "rank")
            typer.echo(f"{p}  seed={c.seed}  {c.prompt!r}  {scores}")
        typer.echo(f"manifest: {manifest.path}")
    return records


def _items(text: Optional[str]) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _choice(value: Optional[str], allowed: tuple[str, ...], flag: str) -> None:
    if value is not None and value not in allowed:
        raise InputError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")


# -- commands ----------------------------------------------------------------------------------
@app.command("product")
def product(
    user: User = None, condition: ConditionFile = None,
    category: Annotated[Optional[str], typer.Option("--category", help="Category to draw (e.g. shirt).")] = None,
    item: Annotated[Optional[str], typer.Option("--item", help="A catalog product to personalize (img2img).")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="none, history or product (img2img source).")] = None,
    strength: Annotated[float, typer.Option("--strength", help="img2img strength (0..1].")] = 0.7,
    plain: Annotated[bool, typer.Option("--plain", help="Non-personalized prompt (a baseline).")] = False,
    shop: Shop = "demo", recommender: Recommender = "ease", recommender_dir: RecommenderDir = None,
    model: Model = "demo", lora: Lora = None,
    lora_scale: LoraScale = 1.0, adapter: Adapter = None, ip_adapter: IPAdapter = None, reward: Reward = None,
    device: Device = None,
    dtype: Dtype = None, seed: Seed = 0, steps: Steps = 25, guidance: Guidance = 7.5, candidates: Candidates = 4,
    out: Out = Path("outputs/generate"), score: Score = True, upscale: Upscale = True, as_json: AsJson = False,
    json_out: JsonOut = None,
    allow_unsafe_weights: AllowUnsafe = False, feedback_db: FeedbackDb = None,
) -> None:
    """Personalized images of a category or a given product, ranked for the user."""
    if category is None and item is None:
        raise InputError("give --category or --item")
    _choice(reference, ("none", "history", "product"), "--reference")
    if not 0.0 < strength <= 1.0:
        raise InputError(f"--strength must be in (0, 1], got {strength}")
    spec = pipeline_spec(model=model, lora=lora, lora_scale=lora_scale, adapter=adapter, ip_adapter=ip_adapter,
                         reward=reward, device=device, dtype=dtype, score=score, allow_unsafe=allow_unsafe_weights,
                         upscale=upscale)
    req = prepare(spec, user=user, condition_file=condition, shop=shop, recommender=recommender,
                  feedback_db=feedback_db, recommender_dir=recommender_dir, category=category,
                  items=(item,))
    output = req.pipeline("product")(
        req.condition, category=category, item_id=item, num_candidates=candidates, seed=seed, steps=steps,
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
    shop: Shop = "demo", recommender: Recommender = "ease", recommender_dir: RecommenderDir = None,
    model: Model = "demo", lora: Lora = None,
    lora_scale: LoraScale = 1.0, adapter: Adapter = None, reward: Reward = None, device: Device = None,
    dtype: Dtype = None,
    seed: Seed = 0, steps: Steps = 25, guidance: Guidance = 7.5, candidates: Candidates = 2,
    out: Out = Path("outputs/generate"), score: Score = True, upscale: Upscale = True, as_json: AsJson = False,
    json_out: JsonOut = None,
    allow_unsafe_weights: AllowUnsafe = False, feedback_db: FeedbackDb = None,
) -> None:
    """A new scene around a product; the product's own pixels stay exactly as given."""
    from pipelines.assemble import AUTO

    if (item is None) == (image is None):
        raise InputError("give exactly one of --item or --image")
    _choice(mode, ("controlnet", "inpaint"), "--mode")
    spec = pipeline_spec(model=model, lora=lora, lora_scale=lora_scale, adapter=adapter, reward=reward,
                         device=device, dtype=dtype, score=score, allow_unsafe=allow_unsafe_weights,
                         upscale=upscale,
                         controlnet=controlnet or (AUTO if mode != "inpaint" else None))
    req = prepare(spec, user=user, condition_file=condition, shop=shop, recommender=recommender,
                  feedback_db=feedback_db, recommender_dir=recommender_dir, image=image,
                  mask=mask, items=(item,))
    output = req.pipeline("background")(
        req.condition, item_id=item, product_path=str(image.resolve()) if image else None,
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
    shop: Shop = "demo", recommender: Recommender = "ease", recommender_dir: RecommenderDir = None,
    model: Model = "demo", lora: Lora = None,
    lora_scale: LoraScale = 1.0, adapter: Adapter = None, reward: Reward = None, device: Device = None,
    dtype: Dtype = None,
    seed: Seed = 0, steps: Steps = 25, guidance: Guidance = 7.5, candidates: Candidates = 1,
    out: Out = Path("outputs/generate"), score: Score = True, upscale: Upscale = True, as_json: AsJson = False,
    json_out: JsonOut = None,
    allow_unsafe_weights: AllowUnsafe = False, feedback_db: FeedbackDb = None,
) -> None:
    """Ad banners at standard sizes with readable (WCAG AA) text that stays on the canvas."""
    from pipelines.layout import BANNER_SIZES

    if (item is None) == (image is None):
        raise InputError("give exactly one of --item or --image")
    if headline is not None:
        headline = check_prompt(headline, what="--headline", max_chars=limits.HEADLINE_CHARS)
    cta = check_prompt(cta, what="--cta", max_chars=limits.CTA_CHARS)
    sizes = [parse_size(s, what="--size") for s in size] if size else list(BANNER_SIZES)
    spec = pipeline_spec(model=model, lora=lora, lora_scale=lora_scale, adapter=adapter, reward=reward,
                         device=device, dtype=dtype, score=score, allow_unsafe=allow_unsafe_weights,
                         upscale=upscale)
    req = prepare(spec, user=user, condition_file=condition, shop=shop, recommender=recommender,
                  feedback_db=feedback_db, recommender_dir=recommender_dir, image=image,
                  need_alpha=False, items=(item,))
    output = req.pipeline("banner")(
        req.condition, item_id=item, product_path=str(image.resolve()) if image else None, headline=headline, cta=cta,
        sizes=sizes, num_candidates=candidates, seed=seed, steps=steps, guidance=guidance)
    finish(output, out, as_json, json_out)


@app.command("outfit")
def outfit(
    user: User = None, condition: ConditionFile = None,
    items: Annotated[str, typer.Option("--items", help="Comma-separated catalog ids already in the outfit.")] = "",
    categories: Annotated[Optional[str], typer.Option("--categories", help="Comma-separated categories to generate (default: what completes the outfit).")] = None,
    reference: Annotated[str, typer.Option("--reference", help="none or history (img2img from a history item).")] = "none",
    shop: Shop = "demo", recommender: Recommender = "ease", recommender_dir: RecommenderDir = None,
    model: Model = "demo", lora: Lora = None,
    lora_scale: LoraScale = 1.0, adapter: Adapter = None, reward: Reward = None, device: Device = None,
    dtype: Dtype = None,
    seed: Seed = 0, steps: Steps = 25, guidance: Guidance = 7.5, candidates: Candidates = 1,
    out: Out = Path("outputs/generate"), score: Score = True, upscale: Upscale = True, as_json: AsJson = False,
    json_out: JsonOut = None,
    allow_unsafe_weights: AllowUnsafe = False, feedback_db: FeedbackDb = None,
) -> None:
    """Generate the missing pieces of an outfit for the user and retrieve real items to buy."""
    from core.io import atomic_save_image
    from core.paths import safe_name
    from pipelines.outfit import outfit_board

    present = _items(items)
    if not present:
        raise InputError("give the outfit's present items with --items ID[,ID...]")
    _choice(reference, ("none", "history"), "--reference")
    spec = pipeline_spec(model=model, lora=lora, lora_scale=lora_scale, adapter=adapter, reward=reward,
                         device=device, dtype=dtype, score=score, allow_unsafe=allow_unsafe_weights,
                         upscale=upscale)
    req = prepare(spec, user=user, condition_file=condition, shop=shop, recommender=recommender,
                  feedback_db=feedback_db, recommender_dir=recommender_dir, items=tuple(present))
    output = req.pipeline("outfit")(
        req.condition, present, categories=_items(categories) or None, num_candidates=candidates, seed=seed,
        steps=steps, guidance=guidance, reference=reference)
    records = finish(output, out, as_json, json_out)
    board = atomic_save_image(outfit_board(req.catalog, present, output),
                              out / f"outfit-{safe_name(req.condition.user_id)}.png")  # user ids are not paths
    if not as_json:
        typer.echo(f"outfit board: {board}  retrieved: "
                   + ", ".join(f"{r['extra']['category']}={r['extra']['retrieved_item']}" for r in records))
