"""The personalization evaluation: do generated images match what each shopper truly likes?

On the demo shop every user's taste is known. For held-out users we generate product images of
the user's favourite category from (a) the user's own condition, (b) another random user's
condition and (c) a plain, non-personalized prompt, and let the demo attribute classifier (trained
only on catalog renders, never on generated images) read each image's color and pattern. The
share matching the user's true favourite is the headline number; the scorer adds personalization
(similarity to the user's history) and CLIP score. Outfits: the share of retrieved real items whose
color is among the user's three favourites, against random items of the same categories.
`atelier eval personalization` prints it; the pipelines come from the one assembler.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from core.errors import InputError
from recommenders.shop.heldout import HELDOUT_USERS, heldout_users

VARIANTS = ("own", "other", "plain", "oracle")  # oracle: a condition made from the true taste (diagnostic)
TARGETS = {"own_color_match_min": 0.8, "other_color_match_max": 0.3, "plain_color_match_max": 0.3}


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

    from app.conditions import load_shop_data, user_condition
    from pipelines.assemble import PipelineSpec, assemble
    from pipelines.attribute_classifier import DEMO_PATH, AttributeClassifier
    from pipelines.candidate_scores import (
        CatalogEmbeddings,
        as_unit_rows,
        history_items,
    )
    from pipelines.device import describe, pick_device, set_threads
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

    spec = PipelineSpec(model=model, adapter=None if adapter is None else str(adapter), controlnet=None,
                        scorer=scorer if isinstance(scorer, str) else None, device=device)
    spec.check()
    dev = pick_device(device)
    parts = assemble(spec)
    judge = AttributeClassifier.load(classifier, device=str(dev))
    scorer = parts.scorer() if isinstance(scorer, str) else scorer
    index = CatalogEmbeddings(scorer, catalog) if scorer is not None else None
    # candidates are judged as sampled, not ranked: the product pipeline gets no scorer
    product = parts.pipeline("product", catalog=catalog, scorer=None)

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
        result["outfits"] = _outfit_eval(parts, catalog, truth_shop, data, users, conditions, scorer, index, steps,
                                         guidance, seed, progress)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def _outfit_eval(parts, catalog, truth_shop, data, users, conditions, scorer, index, steps, guidance, seed,
                 progress) -> dict:
    """Complete one outfit per user from their latest top/bottom/dress; do retrieved items fit their taste?"""
    import numpy as np
    from tqdm.auto import tqdm

    from pipelines.outfit import BOTTOMS, ONE_PIECES, TOPS

    pipe = parts.pipeline("outfit", catalog=catalog, scorer=scorer, adapter=None)
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


def evaluate_backbones(*, backbones: list[str], shop: str = "demo", model: str = "demo", n_users: int = 200,
                       candidates: int = 2, steps: int = 20, guidance: float = 7.5, seed: int = 0,
                       device: Optional[str] = None, progress: bool = True, classifier: Optional[Path] = None,
                       recommender_dirs: Optional[dict[str, Path]] = None) -> dict:
    """Color and pattern match per backbone's condition on held-out users (same users, seeds and steps
    for every row), with "taste fit alone" as the floor row and MostPop as the control when asked for.

    Each row's images are of the category its own condition ranks first; the judge is the demo
    attribute classifier. Also: how often each condition's top color / pattern is the true favourite
    (no images), the learned fusion shares, and the share of users whose top color or pattern differs
    between MostPop and DreamRec.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from pipelines.assemble import PipelineSpec, assemble
    from pipelines.attribute_classifier import DEMO_PATH, AttributeClassifier
    from pipelines.device import describe, pick_device, set_threads
    from recommenders.preference import load_backbone, load_shop, preference, taste_condition

    t0 = time.time()
    set_threads()
    if classifier is None and not DEMO_PATH.is_dir():
        raise InputError(f"the demo attribute classifier is not installed (expected {DEMO_PATH}); "
                         "train it with `atelier finetune demo-model` or pass --classifier")
    if not backbones:
        raise InputError("give at least one backbone, e.g. --backbones mostpop,ease")
    source = load_shop(shop)
    if source.demo is None:
        raise InputError("personalization needs a demo shop (users with known tastes), e.g. --shop demo")
    truth, catalog = source.demo, source.catalog
    users = heldout_users([u for u in source.history if u in truth.users], n_users, seed)
    fav = {u: truth.true_top_attributes(u, n=1) for u in users}

    rows: dict[str, dict] = {}
    conditions: dict[str, dict] = {"taste fit alone": {u: taste_condition(source.events(u), catalog) for u in users}}
    rows["taste fit alone"] = {"fit_seconds": 0.0, "fusion": None}
    for name in backbones:
        start = time.time()
        folder = (recommender_dirs or {}).get(name)
        backbone = load_backbone(source, folder=folder) if folder else load_backbone(source, name, progress=progress)
        fusion = backbone.fusion()
        fit_s = round(time.time() - start, 1)
        start = time.time()
        conditions[name] = {u: preference(backbone, source.events(u), catalog=catalog) for u in users}
        ms = round(1000 * (time.time() - start) / len(users), 1)
        rows[name] = {"fit_seconds": fit_s, "condition_ms_per_user": ms,
                      "fusion": {"overall": fusion.overall, "users": fusion.n_users, "targets": fusion.n_targets,
                                 "log_likelihood": fusion.log_likelihood}}

    def top(cond, kind):
        return (cond.top_keywords(1, kinds=(kind,)).get(kind) or [None])[0]

    spec = PipelineSpec(model=model, controlnet=None, scorer=None, device=device)
    spec.check()
    dev = pick_device(device)
    parts = assemble(spec)
    judge = AttributeClassifier.load(classifier, device=str(dev))
    product = parts.pipeline("product", catalog=catalog, scorer=None)
    for name, conds in conditions.items():
        color, pattern, c_right, p_right = [], [], [], []
        for k, u in enumerate(tqdm(users, desc=name, disable=not progress)):
            cond = conds[u]
            c_right.append(top(cond, "color") == fav[u]["color"][0])
            p_right.append(top(cond, "pattern") == fav[u]["pattern"][0])
            category = top(cond, "category") or catalog.categories()[0]
            out = product(cond, category=category, num_candidates=candidates, seed=seed + 1000 * k, steps=steps,
                          guidance=guidance, personalize=True, batch_size=candidates, progress=False)
            preds = judge.predict(out.images)
            color += [p["color"] == fav[u]["color"][0] for p in preds]
            pattern += [p["pattern"] == fav[u]["pattern"][0] for p in preds]
        rows[name].update({
            "color_match": round(float(np.mean(color)), 4), "pattern_match": round(float(np.mean(pattern)), 4),
            "condition_top_color_right": round(float(np.mean(c_right)), 4),
            "condition_top_pattern_right": round(float(np.mean(p_right)), 4),
            "shares": {p: round(float(np.mean([conds[u].why["shares"][p] for u in users])), 4)
                       for p in ("history", "backbone", "prior")} if name != "taste fit alone" else
                      {"history": 1.0, "backbone": 0.0, "prior": 0.0}})
    result = {"shop": shop, "model": model, "n_users": len(users), "candidates": candidates,
              "images_per_row": len(users) * candidates, "steps": steps, "guidance": guidance, "seed": seed,
              "device": describe(dev), "heldout_rule": f"seeded sample of the last {HELDOUT_USERS} user ids",
              "judge": "demo attribute classifier (trained on catalog renders only)",
              "floor": "taste fit alone", "control": "mostpop" if "mostpop" in backbones else None,
              "rows": rows}
    if "mostpop" in conditions and "dreamrec" in conditions:
        differs = [top(conditions["mostpop"][u], "color") != top(conditions["dreamrec"][u], "color")
                   or top(conditions["mostpop"][u], "pattern") != top(conditions["dreamrec"][u], "pattern")
                   for u in users]
        result["mostpop_vs_dreamrec_top_differs"] = round(float(np.mean(differs)), 4)
    result["seconds"] = round(time.time() - t0, 1)
    return result
