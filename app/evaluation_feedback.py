"""The feedback evaluation: how fast do pairwise choices on creatives teach Atelier a shopper's favourite?

A simulated shopper on the demo shop (held-out users, true taste known) is shown two creatives per
round. She sees each through the shipped attribute classifier (the judge) and picks with the shop's
own choice logit on her true current taste, restricted to the two shown: P(a) is proportional to
prod over kinds of w[kind][judged value] (`recommenders.shop.world`'s browsing logit without the
catalog-item popularity term, which a generated creative does not have), nothing added of ours.
Atelier never sees the judge: it reads the creatives through the scorer's zero-shot attribute probes
(softmax over image/word similarity, scale 50 as `pipelines.reward.RewardModel`'s probes) and folds
each answer into the shopper's taste posterior (`recommenders.feedback`).

Warm shoppers start from their history's posterior; cold ones from the population prior of the
training users' histories (the non-held-out ids). The pool is the catalog's 504 rendered products.
Reported per budget 0..N: the share of users whose updated condition's top color / pattern is the
true favourite (bootstrap 95% CI over users), per policy; optionally the color / pattern match of new
images generated from the updated condition, judged by the classifier (`image_users` users).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from core.errors import InputError
from recommenders.shop.heldout import HELDOUT_USERS, heldout_block, heldout_users

PROBE_SCALE = 50.0
TARGETS = {"warm_color_min": 0.85, "warm_color_budget": 8, "warm_pattern_min": 0.90,
           "cold_color_min": 0.80, "cold_color_budget": 12}


@dataclass
class Pool:
    """Creatives to show: ids, what the judge reads (simulator) and what the probes read (the update)."""

    ids: list[str]
    judged: list[dict[str, str]]
    probe_x: np.ndarray  # (N, P) probe probabilities in the taste's vocab order
    judge_x: np.ndarray  # (N, P) one-hot judged values (for the perfect-perception diagnostic)
    probe_accuracy: dict[str, float]


def probe_read(scorer, images, vocab: dict[str, list[str]], scale: float = PROBE_SCALE) -> list[dict[str, dict[str, float]]]:
    """Per image, per kind: softmax over the scorer's image / attribute-word cosine similarities."""
    img = scorer.embed_images(images).cpu().numpy()
    out = [dict() for _ in range(len(img))]
    for kind, values in vocab.items():
        txt = scorer.embed_texts(list(values)).cpu().numpy()
        logits = scale * img @ txt.T
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for i in range(len(img)):
            out[i][kind] = {v: float(x) for v, x in zip(values, p[i])}
    return out


def catalog_probe_read(scorer, images, labels: dict[str, list[str]], vocab: dict[str, list[str]], *,
                       folds: int = 5, seed: int = 0) -> list[dict[str, dict[str, float]]]:
    """Learned probes, cross-fitted: per kind a logistic regression on the scorer's image embedding
    (as `finetune.reward_model.catalog_probes`), each image read by the fold that never saw it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = scorer.embed_images(images).cpu().numpy().astype(np.float64)
    out = [dict() for _ in range(len(x))]
    for kind, values in vocab.items():
        y = np.asarray(labels[kind])
        clf = LogisticRegression(C=10.0, max_iter=3000)
        proba = cross_val_predict(clf, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                  method="predict_proba")
        classes = sorted(set(y))  # cross_val_predict orders columns by sorted class labels
        for i in range(len(x)):
            out[i][kind] = {v: float(proba[i, classes.index(v)]) if v in classes else 0.0 for v in values}
    return out


def load_pool(catalog, judge, scorer, vocab: dict[str, list[str]], probes: str = "catalog") -> Pool:
    """The catalog's rendered products as the pool, read once by the judge and by the probes
    ("catalog": learned, cross-fitted; "zero-shot": text-word similarities)."""
    from recommenders.feedback import features

    ids = list(catalog.item_ids)
    images = [catalog.load_image(i).convert("RGB") for i in ids]
    judged = judge.predict(images)
    if probes == "zero-shot":
        probes = probe_read(scorer, images, vocab)
    elif probes == "catalog":
        labels = {k: [catalog[i].category if k == "category" else catalog[i].attributes.get(k) for i in ids]
                  for k in vocab}
        probes = catalog_probe_read(scorer, images, labels, vocab)
    else:
        raise InputError(f"unknown probes {probes!r}; expected catalog or zero-shot")
    acc = {}
    for kind in vocab:
        truth = [catalog[i].category if kind == "category" else catalog[i].attributes.get(kind) for i in ids]
        acc[kind] = round(float(np.mean([max(p[kind], key=p[kind].get) == t for p, t in zip(probes, truth)])), 4)
    return Pool(ids, judged, features(probes, vocab), features(judged, vocab), acc)


def shopper_choice(taste, judged_a: dict, judged_b: dict, rng: np.random.Generator) -> int:
    """0 if she picks a, 1 if b: the shop's choice logit on her current taste, over the two shown."""
    def logit(j):
        return sum(np.log(max(taste.weights[k][j[k]], 1e-9)) for k in taste.weights if k in j)

    pa = 1.0 / (1.0 + np.exp(logit(judged_b) - logit(judged_a)))
    return 0 if rng.random() < pa else 1


def run_user(post, taste, pool: Pool, policy: str, budget: int, rng: np.random.Generator,
             features: Optional[np.ndarray] = None) -> list:
    """The posterior after 0..budget rounds of (pick a pair, she answers, update)."""
    from recommenders.feedback import Choice

    from recommenders.feedback import matched_pairs, pick_pair

    x = pool.probe_x if features is None else features
    pairs = matched_pairs(x, post.vocab) if policy == "elicit" else None
    out = [post]
    for _ in range(budget):
        a, b = pick_pair(policy, post, x, rng, pairs=pairs)
        pick = shopper_choice(taste, pool.judged[a], pool.judged[b], rng)
        win, lose = (a, b) if pick == 0 else (b, a)
        post = post.update([Choice(_soft(x[win], post.vocab), (_soft(x[lose], post.vocab),))])
        out.append(post)
    return out


def _soft(row: np.ndarray, vocab: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    out, o = {}, 0
    for kind, values in vocab.items():
        out[kind] = {v: float(p) for v, p in zip(values, row[o:o + len(values)]) if p > 0}
        o += len(values)
    return out


def bootstrap(hits: np.ndarray, rng: np.random.Generator, n: int = 1000) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval of a 0/1 vector over users."""
    if len(hits) == 0:
        return (float("nan"),) * 3
    idx = rng.integers(0, len(hits), size=(n, len(hits)))
    means = hits[idx].mean(1)
    return round(float(hits.mean()), 4), round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)


def evaluate_feedback(*, n_users: int = 200, choices: int = 20, policies: Sequence[str] = ("elicit", "random", "exploit"),
                      starts: Sequence[str] = ("warm", "cold"), seed: int = 0, image_users: int = 0,
                      image_budgets: Sequence[int] = (0, 4, 8, 12, 20), steps: int = 20, perfect_perception: bool = True,
                      probes: str = "catalog", image_policies: Sequence[str] = ("elicit",),
                      progress: bool = True) -> dict:
    """Run the simulation (and optionally the image rows); a JSON-ready dict."""
    from tqdm.auto import tqdm

    from pipelines.attribute_classifier import AttributeClassifier
    from pipelines.device import set_threads
    from pipelines.scorer import Scorer
    from recommenders.condition import TASTE_FIT
    from recommenders.feedback import POLICIES, history_posteriors, population_prior
    from recommenders.shop import DemoShop
    from recommenders.taste import attribute_table

    t0 = time.time()
    set_threads()
    for p in policies:
        if p not in POLICIES:
            raise InputError(f"unknown policy {p!r}; expected one of {', '.join(POLICIES)}")
    if not 0 <= choices <= 100:
        raise InputError(f"--choices must be within 0..100, got {choices}")
    shop = DemoShop.load()
    catalog = shop.catalog
    users = heldout_users(list(shop.users), n_users, seed)
    train = [u for u in sorted(shop.users) if u not in set(heldout_block(shop.users))]
    _, vocab, _ = attribute_table(catalog)
    judge = AttributeClassifier.load()
    scorer = Scorer.load("demo")
    pool = load_pool(catalog, judge, scorer, vocab, probes)
    fit = dict(l2=TASTE_FIT["l2"], recency=TASTE_FIT["recency"])
    t_prior = time.time()
    cold = population_prior([shop.history(u) for u in train], catalog, **fit)
    warm = dict(zip(users, history_posteriors([shop.history(u) for u in users], catalog, **fit)))
    prior_seconds = round(time.time() - t_prior, 1)
    truth = {u: shop.true_top_attributes(u, n=1) for u in users}

    variants = [(s, p, "probes") for s in starts for p in policies]
    if perfect_perception:  # diagnostic bound: Atelier reads creatives as well as the judge does
        variants += [(s, "elicit", "judge") for s in starts if "elicit" in policies]
    curves, traces, update_ms = {}, {}, []
    rng_boot = np.random.default_rng(seed + 7)
    bar = tqdm(total=len(variants) * len(users), desc="feedback", disable=not progress)
    for start, policy, reader in variants:
        hits = {k: np.zeros((len(users), choices + 1)) for k in ("color", "pattern")}
        ctr = np.zeros((len(users), choices + 1))
        for n, u in enumerate(users):
            rng = np.random.default_rng([seed, n, hash_policy(policy)])
            post0 = warm[u] if start == "warm" else cold
            t1 = time.perf_counter()
            path = run_user(post0, shop.taste(u), pool, policy, choices, rng,
                            features=None if reader == "probes" else pool.judge_x)
            if choices:
                update_ms.append(1000 * (time.perf_counter() - t1) / choices)
            for b, post in enumerate(path):
                for k in hits:
                    hits[k][n, b] = post.top(k)[0] == truth[u][k][0]
                # her true click probability (oracle_ctr) on the pool creative the updated taste ranks first
                best = int(np.argmax(pool.probe_x @ post.mean))
                ctr[n, b] = shop.oracle_ctr(shop.taste(u), pool.judged[best])
            traces[(start, policy, reader, u)] = path
            bar.update()
        name = f"{start}/{policy}" + ("" if reader == "probes" else "/judge-read")
        curves[name] = {k: [dict(zip(("mean", "lo", "hi"), bootstrap(hits[k][:, b], rng_boot)), budget=b)
                            for b in range(choices + 1)] for k in hits}
        curves[name]["oracle_ctr_of_top_creative"] = [round(float(ctr[:, b].mean()), 4) for b in range(choices + 1)]
    bar.close()

    result = {
        "shop": "demo", "n_users": len(users), "choices": choices, "policies": list(policies), "seed": seed,
        "heldout_rule": f"seeded sample of the last {HELDOUT_USERS} user ids",
        "pool": f"the catalog's {len(pool.ids)} rendered products",
        "simulator": "judge-read attributes; P(a) prop. to prod_kind w_now[kind][value] over the two shown",
        "update_reads": {"catalog": "the scorer's learned attribute probes (logistic regression on its image "
                                    "embedding, 5-fold cross-fitted on the pool)",
                         "zero-shot": "the scorer's zero-shot word probes, scale 50"}[probes],
        "probe_accuracy_on_pool": pool.probe_accuracy,
        "cold_prior": f"population prior from the histories of {len(train)} training users",
        "prior_seconds": prior_seconds,
        "round_ms_mean": round(float(np.mean(update_ms)), 2) if update_ms else None,
        "curves": curves,
    }
    result["targets"] = _targets(curves, choices)
    if image_users:
        wanted = [v for v in variants if v[2] == "probes" and v[1] in image_policies]
        result["images"] = _image_rows(shop, catalog, judge, users[:image_users], traces, wanted, image_budgets,
                                       choices, steps, seed, truth, rng_boot, progress)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def hash_policy(policy: str) -> int:
    return sum(ord(c) * 31 ** i for i, c in enumerate(policy)) % (2 ** 31)


def _targets(curves: dict, choices: int) -> dict:
    t = TARGETS
    out = dict(t)

    def at(name, kind, budget):
        c = curves.get(name)
        return None if c is None or budget > choices else c[kind][budget]["mean"]

    out["warm_color_at_budget"] = at("warm/elicit", "color", t["warm_color_budget"])
    out["warm_pattern_at_budget"] = at("warm/elicit", "pattern", t["warm_color_budget"])
    out["cold_color_at_budget"] = at("cold/elicit", "color", t["cold_color_budget"])
    for start in ("warm", "cold"):
        for other in ("random", "exploit"):
            if f"{start}/elicit" in curves and f"{start}/{other}" in curves:
                e = [x["mean"] for x in curves[f"{start}/elicit"]["color"][1:]]
                o = [x["mean"] for x in curves[f"{start}/{other}"]["color"][1:]]
                out[f"{start}_elicit_beats_{other}_color_budgets"] = int(sum(a > b for a, b in zip(e, o)))
    return out


def _image_rows(shop, catalog, judge, users, traces, variants, budgets, choices, steps, seed, truth, rng_boot, progress):
    """Color / pattern match of one new product image per user from the updated condition, per budget."""
    from tqdm.auto import tqdm

    from pipelines.assemble import PipelineSpec, assemble

    spec = PipelineSpec(model="demo", controlnet=None, scorer=None)
    spec.check()
    product = assemble(spec).pipeline("product", catalog=catalog, scorer=None)
    budgets = [b for b in budgets if b <= choices]
    rows, t0, n_images = {}, time.time(), 0
    wanted = list(variants)
    bar = tqdm(total=len(wanted) * len(users) * len(budgets), desc="feedback images", disable=not progress)
    for start, policy, reader in wanted:
        name = f"{start}/{policy}"
        hits = {b: {"color": [], "pattern": []} for b in budgets}
        for k, u in enumerate(users):
            for b in budgets:
                cond = traces[(start, policy, reader, u)][b].condition(u)
                category = cond.top_keywords(1, kinds=("category",))["category"][0]
                out = product(cond, category=category, num_candidates=1, seed=seed + 1000 * k, steps=steps,
                              personalize=True, batch_size=1, progress=False)
                pred = judge.predict(out.images)[0]
                n_images += 1
                hits[b]["color"].append(pred["color"] == truth[u]["color"][0])
                hits[b]["pattern"].append(pred["pattern"] == truth[u]["pattern"][0])
                bar.update()
        rows[name] = {"_raw": hits}
    bar.close()
    table = {}
    for name, r in rows.items():
        table[name] = {str(b): {k: dict(zip(("mean", "lo", "hi"), bootstrap(np.array(v, float), rng_boot)))
                                for k, v in r["_raw"][b].items()} for b in budgets}
    return {"users": len(users), "budgets": budgets, "images_per_user_per_budget": 1, "steps": steps,
            "images_generated": n_images, "seconds": round(time.time() - t0, 1), "match": table}


def plot_curves(result: dict, path) -> None:
    """Top-color and top-pattern accuracy against the number of choices, with bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.io import atomic_write_bytes

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind in zip(axes, ("color", "pattern")):
        for name, c in result["curves"].items():
            xs = [r["budget"] for r in c[kind]]
            ax.plot(xs, [r["mean"] for r in c[kind]], label=name, ls="--" if "cold" in name else "-")
            ax.fill_between(xs, [r["lo"] for r in c[kind]], [r["hi"] for r in c[kind]], alpha=0.12)
        for name, c in result.get("bound", {}).items():
            ax.plot([r["budget"] for r in c[kind]], [r["mean"] for r in c[kind]], label=f"bound {name}", color="k",
                    ls="--" if "cold" in name else "-", lw=0.8)
        ax.set_xlabel("pairwise choices")
        ax.set_ylabel(f"top {kind} == true favourite")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"feedback on the demo shop ({result['n_users']} held-out users; 95% bootstrap bands)")
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
