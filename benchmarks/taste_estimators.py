"""How often does an estimate of a shopper's taste name her true favourite color and pattern?

On the demo shop every user's taste is known. Compared, per user, from the time-ordered history:
  - count: the most frequent value in the history;
  - choice: the conditional-logit choice model of `recommenders.taste` (grid over its prior and
    recency weighting, chosen on the first 1,000 users; the last 200, the held-out block of
    `atelier eval personalization`, are only reported);
  - condition: what generation receives, `PreferenceCondition.attributes` from the shipped EASE
    (the EASE condition of `recommenders.preference`).

    python benchmarks/taste_estimators.py --json benchmarks/results/taste_estimators.json
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELDOUT = 200
KINDS = ("color", "pattern")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    import numpy as np
    import torch

    from core.io import write_results_json
    from recommenders.condition import TASTE_FIT
    from recommenders.shop import DemoShop
    from recommenders.taste import fit_attribute_taste

    torch.set_num_threads(1)
    shop = DemoShop.load()
    users = sorted(shop.users)
    held = set(users[-HELDOUT:])
    truth = {u: shop.true_top_attributes(u, 1) for u in users}
    histories = [shop.history(u) for u in users]

    def score(tops: list[dict[str, str]]) -> dict[str, float]:
        out = {}
        for kind in KINDS:
            ok = np.array([t[kind] == truth[u][kind][0] for u, t in zip(users, tops)])
            is_held = np.array([u in held for u in users])
            out[f"{kind}_tune"] = round(float(ok[~is_held].mean()), 4)
            out[f"{kind}_heldout"] = round(float(ok[is_held].mean()), 4)
        return out

    def value(item_id: str, kind: str) -> str:
        return shop.catalog[item_id].attributes[kind]

    result: dict = {"users": len(users), "heldout_users": HELDOUT, "rule": "top-1 value == true favourite"}
    counted = []
    for h in histories:
        counted.append({k: max(sorted(Counter(value(i, k) for i in h).items()), key=lambda kv: kv[1])[0]
                        for k in KINDS})
    result["count"] = score(counted)
    print("count", result["count"], flush=True)

    grid = []
    for l2 in (0.1, 0.3, 1.0, 3.0):
        for recency in (0.0, 0.5, 1.0, 2.0):
            t0 = time.time()
            est = fit_attribute_taste(histories, shop.catalog, l2=l2, recency=recency)
            row = {"l2": l2, "recency": recency, **score([{k: e.top(k) for k in KINDS} for e in est]),
                   "seconds": round(time.time() - t0, 2)}
            grid.append(row)
            print("choice", row, flush=True)
    best = max(grid, key=lambda r: (r["color_tune"] + r["pattern_tune"], -r["l2"]))
    result["choice_grid"] = grid
    result["choice_chosen_on_tune_users"] = best
    result["choice_shipped"] = TASTE_FIT

    from recommenders.preference import load_backbone, load_shop, preference

    shop = load_shop("demo")
    backbone = load_backbone(shop, "ease")
    backbone.fusion()
    t0 = time.time()
    tops = []
    for u in users:  # the EASE condition of the one preference path (learned fusion)
        c = preference(backbone, shop.events(u))
        tops.append({k: c.top_keywords(1, kinds=(k,))[k][0] for k in KINDS})
    ms = round(1000 * (time.time() - t0) / len(users), 1)
    result["condition_ease_preference_path"] = {**score(tops), "ms_per_user": ms}
    print("condition (preference path)", result["condition_ease_preference_path"], flush=True)
    result["command"] = "python benchmarks/taste_estimators.py --json benchmarks/results/taste_estimators.json"
    if args.json:
        write_results_json(args.json, result)


if __name__ == "__main__":
    main()
