"""Thompson sampling vs uniform A/B on the demo shop, with the oracle click model as the truth.

Each run draws a set of creatives (demo-shop items shown as ads) and a stream of visiting users.
Both policies see exactly the same users and the same per-impression random numbers (common
random numbers: impression t is a click iff u_t < CTR(user_t, creative shown)), so their
difference is the policy and nothing else. Regret is the expected (pseudo-)regret against the
best single creative for the audience: sum_t (mu* - mu[a_t]) with mu[a] = the mean oracle CTR of
creative a over the audience, which is what a non-contextual A/B test can at best achieve.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .bandit import stopping_rule, summarize, thompson_choice

POLICIES = ("thompson", "uniform")


def load_shop(path: str | Path | None = None):
    """A demo shop folder; by default the shipped one, or (not built yet) a fresh seed-0 shop in a temp folder."""
    from recommenders.shop import DEMO_SHOP_DIR, DemoShop, build_shop

    if path is not None:
        return DemoShop.load(path)
    if (DEMO_SHOP_DIR / "shop.json").is_file():
        return DemoShop.load()
    tmp = Path(tempfile.mkdtemp(prefix="atelier-sim-shop-"))
    return DemoShop.load(build_shop(0, tmp / "shop", progress=False))


def ctr_matrix(shop, user_ids: list[str], item_ids: list[str], format: str) -> np.ndarray:
    """(n_users, n_creatives) true click probabilities from the oracle."""
    from recommenders.shop import oracle_ctr

    return np.array(
        [[oracle_ctr(shop.taste(u), shop.catalog[i], format) for i in item_ids] for u in user_ids], dtype=np.float64
    )


def run_policy(policy: str, users: np.ndarray, u: np.ndarray, ctr: np.ndarray, rng: np.random.Generator) -> dict:
    """Serve `len(users)` impressions with one policy; returns arm counts, clicks and the arm sequence."""
    n_arms = ctr.shape[1]
    shows = np.zeros(n_arms, dtype=np.int64)
    clicks = np.zeros(n_arms, dtype=np.int64)
    arms = np.empty(len(users), dtype=np.int64)
    for t, (user, ut) in enumerate(zip(users, u)):
        if policy == "thompson":
            a = thompson_choice(clicks, shows, rng)
        elif policy == "uniform":
            a = int(rng.integers(n_arms))
        else:
            raise ValueError(f"unknown policy {policy!r}")
        arms[t] = a
        shows[a] += 1
        clicks[a] += int(ut < ctr[user, a])
    return {"shows": shows, "clicks": clicks, "arms": arms}


def simulate(
    *,
    rounds: int = 5000,
    n_creatives: int = 6,
    runs: int = 5,
    seed: int = 0,
    format: str = "banner",
    segment: str | None = None,
    shop=None,
    checkpoints: int = 20,
    progress: bool = True,
) -> dict[str, Any]:
    """Cumulative regret of Thompson sampling vs uniform over the same traffic; JSON-able result."""
    from tqdm.auto import tqdm

    shop = shop if shop is not None else load_shop()
    user_ids = sorted(shop.users)
    if segment is not None:
        user_ids = [x for x in user_ids if shop.segment_of(x) == segment]
        if not user_ids:
            from core.errors import InputError

            raise InputError(f"no demo-shop users in segment {segment!r}")
    marks = np.unique(np.linspace(1, rounds, checkpoints).astype(int))
    per_run = []
    curves: dict[str, list[np.ndarray]] = {p: [] for p in POLICIES}
    for r in tqdm(range(runs), desc="simulate", disable=not progress):
        run_seed = seed + r
        rng = np.random.default_rng([run_seed, 0])
        items = list(rng.choice(shop.catalog.item_ids, size=n_creatives, replace=False))
        ctr = ctr_matrix(shop, user_ids, items, format)
        mu = ctr.mean(axis=0)  # audience CTR of each creative
        best = int(mu.argmax())
        users = rng.integers(len(user_ids), size=rounds)
        u = rng.random(rounds)
        row: dict[str, Any] = {"seed": run_seed, "creatives": items, "audience_ctr": mu.round(5).tolist(),
                               "best": items[best]}
        for k, policy in enumerate(POLICIES):
            out = run_policy(policy, users, u, ctr, np.random.default_rng([run_seed, 1 + k]))
            inst = mu[best] - mu[out["arms"]]
            cum = np.cumsum(inst)
            curves[policy].append(cum[marks - 1])
            summary = summarize(out["clicks"], out["shows"], control=0, n_samples=4000, seed=run_seed)
            decision = stopping_rule(summary)
            row[policy] = {
                "regret": float(cum[-1]),
                "clicks": int(out["clicks"].sum()),
                "best_share": float(out["shows"][best] / rounds),
                "shows": out["shows"].tolist(),
                "stop": decision.stop,
                "declared_winner": None if decision.winner is None else items[decision.winner],
            }
        per_run.append(row)
    policies = {}
    for policy in POLICIES:
        reg = np.array([r[policy]["regret"] for r in per_run])
        clk = np.array([r[policy]["clicks"] for r in per_run])
        share = np.array([r[policy]["best_share"] for r in per_run])
        policies[policy] = {
            "regret_mean": float(reg.mean()),
            "regret_std": float(reg.std(ddof=1)) if runs > 1 else 0.0,
            "clicks_mean": float(clk.mean()),
            "best_share_mean": float(share.mean()),
            "regret_curve": {"impressions": marks.tolist(), "mean": np.mean(curves[policy], axis=0).round(4).tolist()},
        }
    ratio = policies["thompson"]["regret_mean"] / max(policies["uniform"]["regret_mean"], 1e-12)
    wins = sum(r["thompson"]["regret"] < r["uniform"]["regret"] for r in per_run)
    return {
        "setup": {
            "rounds": rounds,
            "creatives": n_creatives,
            "runs": runs,
            "seed": seed,
            "format": format,
            "segment": segment,
            "audience_users": len(user_ids),
            "click_model": "recommenders.shop.oracle_ctr",
            "regret": "expected regret vs the best single creative for the audience (mean oracle CTR)",
        },
        "best_ctr": float(np.mean([max(r["audience_ctr"]) for r in per_run])),
        "policies": policies,
        "regret_ratio": float(ratio),
        "thompson_wins": f"{wins}/{runs}",
        "runs": per_run,
    }


def plot_regret(result: dict[str, Any], path: str | Path) -> Path:
    """Mean cumulative regret curves of both policies (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, r in result["policies"].items():
        curve = r["regret_curve"]
        ax.plot(curve["impressions"], curve["mean"], label=f"{name} ({r['regret_mean']:.0f} ± {r['regret_std']:.0f})")
    s = result["setup"]
    ax.set_xlabel("impressions")
    ax.set_ylabel("cumulative expected regret (clicks)")
    ax.set_title(f"{s['creatives']} creatives, {s['runs']} runs, demo-shop oracle CTR ({s['format']})", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
