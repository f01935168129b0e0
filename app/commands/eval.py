"""`atelier eval personalization`: do generated images match what each shopper truly likes?

On the demo shop every user's taste is known. For held-out users we generate product images of
the user's favourite category from (a) the user's own condition, (b) another random user's
condition and (c) a plain, non-personalized prompt, and let the demo attribute classifier (trained
only on catalog renders, never on generated images) read each image's color and pattern. The
share matching the user's true favourite is the headline number; the scorer adds personalization
(similarity to the user's history) and CLIP score. Outfits: the share of retrieved real items whose
color is among the user's three favourites, against random items of the same categories.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.commands import options

from core.errors import InputError

app = typer.Typer(help="Evaluate personalization end to end on the demo shop.", no_args_is_help=True)

HELDOUT_USERS = 200  # the highest user ids; trainers (e.g. the preference adapter) should leave them out
VARIANTS = ("own", "other", "plain", "oracle")  # oracle: a condition made from the true taste (diagnostic)
TARGETS = {"own_color_match_min": 0.8, "other_color_match_max": 0.3, "plain_color_match_max": 0.3}


def heldout_users(user_ids, n: int, seed: int) -> list[str]:
    """`n` users drawn (seeded) from the held-out block: the last HELDOUT_USERS ids in sorted order."""
    import numpy as np

    block = sorted(user_ids)[-HELDOUT_USERS:]
    if n > len(block):
        raise InputError(f"at most {len(block)} held-out users can be evaluated, asked for {n}")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(block, size=n, replace=False).tolist())


def derangement(users: list[str], seed: int) -> dict[str, str]:
    """Another random user for each user (never itself), seeded."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    while True:
        perm = rng.permutation(len(users))
        if len(users) < 2 or all(perm[i] != i for i in range(len(users))):
            return {u: users[j] for u, j in zip(users, perm)}


def evaluate_personalization(*, shop: str = "demo", recommender: str = "ease", model: str = "demo",
                             adapter: Optional[Path] = None, n_users: int = 50, candidates: int = 2,
                             steps: int = 20, guidance: float = 7.5, seed: int = 0, device: Optional[str] = None,
                             outfits: bool = True, progress: bool = True, classifier: Optional[Path] = None,
                             scorer="demo") -> dict:
    """Run the evaluation and return its results as a JSON-ready dict (`scorer`: a spec or a loaded scorer)."""
    from collections import Counter

    import numpy as np
    from tqdm.auto import tqdm

    from app.commands.generate import load_scorer, load_shop_data, user_condition
    from pipelines.attribute_classifier import DEMO_PATH, AttributeClassifier
    from pipelines.candidate_scores import (
        CatalogEmbeddings,
        as_unit_rows,
        history_items,
    )
    from pipelines.conditioning import PreferenceAdapter
    from pipelines.device import describe, pick_device, set_threads
    from pipelines.loading import load_sd_pipeline
    from pipelines.product import ProductPipeline
    from recommenders.condition import PreferenceCondition

    t0 = time.time()
    set_threads()
    if classifier is None and not DEMO_PATH.is_dir():  # fail before the slow loading
        raise InputError(f"the demo attribute classifier is not installed (expected {DEMO_PATH}); "
                         "train it with `atelier finetune demo-model` or pass --classifier")
    data = load_shop_data(shop, recommender)
    if data.shop is None:
        raise InputError("personalization needs a demo shop (users with known tastes), e.g. --shop demo")
    truth_shop, catalog = data.shop, data.catalog
    users = heldout_users([u for u in data.history if u in truth_shop.users], n_users, seed)
    conditions = {u: user_condition(data, u) for u in users}
    other = derangement(users, seed)

    dev = pick_device(device)
    sd = load_sd_pipeline(model, device=device)
    judge = AttributeClassifier.load(classifier, device=str(dev))
    scorer = load_scorer(scorer, device=device) if isinstance(scorer, str) else scorer
    index = CatalogEmbeddings(scorer, catalog) if scorer is not None else None
    ad = PreferenceAdapter.from_pretrained(adapter) if adapter is not None else None
    product = ProductPipeline(sd, catalog=catalog, adapter=ad, base_model=model)

    rows = {v: {"color": [], "pattern": [], "personalization": [], "clip": [], "clip_own_prompt": [],
                "prompt_color": []} for v in VARIANTS}
    condition_right, history_right = [], []  # how often the condition (or the raw history) names the favourite
    examples = []
    bar = tqdm(total=len(users), desc="personalization", disable=not progress)
    for k, u in enumerate(users):
        own = conditions[u]
        fav = truth_shop.true_top_attributes(u, n=1)
        category = (own.top_keywords(1, kinds=("category",)).get("category") or [catalog.categories()[0]])[0]
        refs = history_items(own, catalog)
        ref_emb = index.get(refs) if (index is not None and refs) else None
        own_prompt = None
        condition_right.append(own.top_keywords(1, kinds=("color",)).get("color", [None])[0] == fav["color"][0])
        colors = Counter(catalog[i].attributes.get("color") for i in data.history[u])
        history_right.append(max(sorted(colors), key=lambda c: colors[c]) == fav["color"][0])
        oracle = PreferenceCondition(u, embedding=own.embedding, reference_items=own.reference_items,
                                     attributes=truth_shop.taste(u).weights, source="true taste")
        for variant in VARIANTS:
            cond, personalize = {"own": (own, True), "other": (conditions[other[u]], True), "plain": (own, False),
                                 "oracle": (oracle, True)}[variant]
            out = product(cond, category=category, num_candidates=candidates, seed=seed + 1000 * k, steps=steps,
                          guidance=guidance, personalize=personalize, batch_size=candidates, progress=False)
            prompt = out.creatives[0].prompt
            own_prompt = prompt if variant == "own" else own_prompt
            preds = judge.predict(out.images)
            rows[variant]["color"] += [p["color"] == fav["color"][0] for p in preds]
            rows[variant]["pattern"] += [p["pattern"] == fav["pattern"][0] for p in preds]
            asked = cond.top_keywords(1, kinds=("color",)).get("color", [None])[0] if personalize else None
            if asked is not None:  # fidelity: did the image show the color the prompt asked for?
                rows[variant]["prompt_color"] += [p["color"] == asked for p in preds]
            if scorer is not None:
                emb = as_unit_rows(scorer.embed_images(out.images))
                if ref_emb is not None:
                    rows[variant]["personalization"] += (emb @ ref_emb.T).mean(axis=1).tolist()
                rows[variant]["clip"] += scorer.clip_score(out.images, [prompt] * len(out.images)).tolist()
                rows[variant]["clip_own_prompt"] += scorer.clip_score(out.images, [own_prompt] * len(out.images)).tolist()
            if k < 3:
                examples.append({"user": u, "variant": variant, "prompt": prompt, "true_color": fav["color"][0],
                                 "true_pattern": fav["pattern"][0], "predicted": preds})
        bar.update()
    bar.close()

    def mean(xs):
        return None if not xs else round(float(np.mean(xs)), 4)

    result = {
        "shop": shop, "recommender": recommender, "model": model, "adapter": str(adapter) if adapter else None,
        "classifier": str(classifier or DEMO_PATH), "scorer": None if scorer is None else getattr(scorer, "name", type(scorer).__name__),
        "n_users": len(users), "images_per_variant": len(users) * candidates, "candidates": candidates,
        "steps": steps, "guidance": guidance, "seed": seed, "device": describe(dev),
        "heldout_rule": f"seeded sample of the last {HELDOUT_USERS} user ids",
        "judge": "demo attribute classifier (trained on catalog renders only)",
        "variants": {v: {"color_match": mean(r["color"]), "pattern_match": mean(r["pattern"]),
                         "color_and_pattern_match": mean([a and b for a, b in zip(r["color"], r["pattern"])]),
                         "personalization": mean(r["personalization"]), "clip_score": mean(r["clip"]),
                         "clip_score_vs_own_prompt": mean(r["clip_own_prompt"]),
                         "prompt_color_fidelity": mean(r["prompt_color"])} for v, r in rows.items()},
        "own_condition_color_right": mean(condition_right),
        "history_majority_color_right": mean(history_right),
        "examples": examples,
    }
    v = result["variants"]
    result["targets"] = {**TARGETS, "met": bool(v["own"]["color_match"] >= TARGETS["own_color_match_min"]
                                                  and v["other"]["color_match"] <= TARGETS["other_color_match_max"]
                                                  and v["plain"]["color_match"] <= TARGETS["plain_color_match_max"])}
    if outfits:
        result["outfits"] = _outfit_eval(sd, catalog, truth_shop, data, users, conditions, scorer, index, model,
                                         steps, guidance, seed, progress)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def _outfit_eval(sd, catalog, truth_shop, data, users, conditions, scorer, index, model, steps, guidance, seed,
                 progress) -> dict:
    """Complete one outfit per user from their latest top/bottom/dress; do retrieved items fit their taste?"""
    import numpy as np
    from tqdm.auto import tqdm

    from pipelines.outfit import BOTTOMS, ONE_PIECES, TOPS, OutfitPipeline

    pipe = OutfitPipeline(sd, catalog=catalog, scorer=scorer, base_model=model)
    if index is not None:
        pipe.index = index
    rng = np.random.default_rng(seed + 2)
    fit, fit_random, ctr, ctr_random, n_pieces = [], [], [], [], 0
    for u in tqdm(users, desc="outfits", disable=not progress):
        anchors = [i for i in data.history[u] if catalog[i].category in TOPS + BOTTOMS + ONE_PIECES]
        if not anchors:
            continue
        top3 = set(truth_shop.true_top_attributes(u, n=3)["color"])
        out = pipe(conditions[u], [anchors[-1]], num_candidates=1, seed=seed, steps=steps, guidance=guidance,
                   progress=False)
        for c in out.creatives:
            item = c.extra["retrieved_item"]
            pool = [it.item_id for it in catalog if it.category == c.extra["category"]]
            rand = pool[rng.integers(len(pool))]
            fit.append(catalog[item].attributes.get("color") in top3)
            fit_random.append(catalog[rand].attributes.get("color") in top3)
            ctr.append(truth_shop.oracle_ctr(u, item))
            ctr_random.append(float(np.mean([truth_shop.oracle_ctr(u, i) for i in pool])))
            n_pieces += 1
    return {"pieces": n_pieces, "retrieval": "scorer image embedding" if scorer is not None else "keywords (no scorer)",
            "fit_share": round(float(np.mean(fit)), 4) if fit else None,
            "fit_share_random_item": round(float(np.mean(fit_random)), 4) if fit_random else None,
            "fit_rule": "retrieved item's color is among the user's 3 true favourite colors",
            "oracle_ctr_retrieved": round(float(np.mean(ctr)), 4) if ctr else None,
            "oracle_ctr_category_mean": round(float(np.mean(ctr_random)), 4) if ctr_random else None}


@app.command("personalization")
def personalization(
    users: Annotated[int, typer.Option("--users", min=2, help="Held-out users to evaluate (>= 50 for the report).")] = 50,
    candidates: Annotated[int, typer.Option("--candidates", "-n", min=1, help="Images per user and variant.")] = 2,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Denoising steps.")] = 20,
    guidance: Annotated[float, typer.Option("--guidance", min=0.0, help="Classifier-free guidance scale.")] = 7.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed for users, pairings and images.", callback=options.seed)] = 0,
    shop: Annotated[str, typer.Option("--shop", help="'demo' or a demo-shop folder (known tastes needed).")] = "demo",
    recommender: Annotated[str, typer.Option("--recommender", help="Recommender making the conditions.")] = "ease",
    model: Annotated[str, typer.Option("--model", help="Base model ('demo' or a diffusers folder).")] = "demo",
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="Preference adapter folder to add tokens.")] = None,
    outfits: Annotated[bool, typer.Option("--outfits/--no-outfits", help="Also evaluate outfit retrieval.")] = True,
    classifier: Annotated[Optional[Path], typer.Option("--classifier", help="Attribute classifier folder (default: the demo one).")] = None,
    scorer: Annotated[str, typer.Option("--scorer", help="Scorer: 'demo' or an open_clip folder.")] = "demo",
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N.", callback=options.device)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json-out", help="Also write the result to this JSON file.", callback=options.out_file)] = None,
) -> None:
    """Share of generated images matching each user's true favourite color/pattern: own vs other vs plain."""
    from core.io import atomic_write_json

    result = evaluate_personalization(shop=shop, recommender=recommender, model=model, adapter=adapter,
                                      n_users=users, candidates=candidates, steps=steps, guidance=guidance,
                                      seed=seed, device=device, outfits=outfits, progress=not as_json,
                                      classifier=classifier, scorer=scorer)
    if json_out is not None:
        atomic_write_json(json_out, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    typer.echo(f"{result['n_users']} held-out users, {result['images_per_variant']} images per variant, "
               f"{result['device']}, {result['seconds']} s")
    typer.echo(f"{'variant':<8} {'color':>7} {'pattern':>8} {'both':>6} {'fidelity':>9} {'personal':>9} {'clip':>7}")
    for name, r in result["variants"].items():
        cells = [r["color_match"], r["pattern_match"], r["color_and_pattern_match"], r["prompt_color_fidelity"],
                 r["personalization"], r["clip_score"]]
        typer.echo(f"{name:<8} " + " ".join(f"{'-' if x is None else f'{x:.3f}':>{w}}"
                                              for x, w in zip(cells, (7, 8, 6, 9, 9, 7))))
    typer.echo(f"the own condition names the true favourite color for {result['own_condition_color_right']} of users "
               f"(the most frequent color in their history: {result['history_majority_color_right']})")
    typer.echo(f"targets met: {result['targets']['met']}")
    if "outfits" in result:
        o = result["outfits"]
        typer.echo(f"outfits: {o['pieces']} pieces, fit {o['fit_share']} (random item {o['fit_share_random_item']}), "
                   f"oracle CTR {o['oracle_ctr_retrieved']} vs {o['oracle_ctr_category_mean']}")
