"""How long must histories be for the choice model to name a shopper's favourite color?

Issue #6 asks that 80% of images made from a user's own condition show her favourite color. On the
shipped demo shop the conditions name the favourite for about two thirds of held-out users, and the
generator turns a correctly named color into a matching image about 91% of the time, so the target
is out of reach from the histories alone. This benchmark measures what a different shop would give:
it keeps the shop's catalog, tastes and item appeal, redraws every user's browsing history with the
shop's own world model (`recommenders.shop.world.sample_interactions`) at several history lengths,
fits the same choice model the conditions use (`recommenders.taste`, `TASTE_FIT`), and reports how
often its top value is the true favourite (and the same for counting the history's values).

    python benchmarks/taste_vs_history_length.py --lengths 30-60,60-120,120-240 \
        --json benchmarks/results/taste_vs_history_length.json

Nothing is written into the shop: the redrawn histories live in memory only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELDOUT = 200  # the last user ids in sorted order, the block `atelier eval personalization` draws from
KINDS = ("color", "pattern")


def _ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            pair = (int(lo), int(hi or lo))
        except ValueError:
            raise SystemExit(f"error: --lengths takes ranges like 30-60,60-120; got {part!r}") from None
        if not 1 <= pair[0] <= pair[1]:
            raise SystemExit(f"error: bad history-length range {part!r}")
        out.append(pair)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="30-60,60-120,120-240", help="history-length ranges (events per user)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the redrawn histories")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    ranges = _ranges(args.lengths)

    import numpy as np
    import torch

    from core.io import write_results_json
    from recommenders.condition import TASTE_FIT
    from recommenders.shop import DemoShop, world
    from recommenders.shop.demoshop import DEMO_SHOP_DIR
    from recommenders.taste import fit_attribute_taste

    torch.set_num_threads(1)
    shop = DemoShop.load()
    info = json.loads((DEMO_SHOP_DIR / "shop.json").read_text(encoding="utf-8"))
    users = sorted(shop.users)
    tastes = [shop.taste(u) for u in users]
    ids = list(shop.catalog.item_ids)
    products = [world.Product(i, shop.catalog[i].category, *(shop.catalog[i].attributes[k]
                                                              for k in ("color", "pattern", "style"))) for i in ids]
    appeal = np.array([info["item_appeal"][i] for i in ids])
    truth = {u: shop.true_top_attributes(u, 1) for u in users}
    held = np.array([k >= len(users) - HELDOUT for k in range(len(users))])

    def accuracy(tops: list[dict[str, str]]) -> dict:
        out = {}
        for kind in KINDS:
            ok = np.array([t[kind] == truth[u][kind][0] for u, t in zip(users, tops)])
            out[kind] = {"heldout": round(float(ok[held].mean()), 4), "all": round(float(ok.mean()), 4)}
        return out

    shipped = list(world.BROWSING_MODEL["interactions_per_user"])
    result: dict = {"users": len(users), "heldout_users": HELDOUT, "items": len(ids), "fit": dict(TASTE_FIT),
                    "rule": "top-1 value == the user's true favourite (current taste)",
                    "shipped_interactions_per_user": shipped, "seed": args.seed, "lengths": []}
    try:
        for lo, hi in ranges:
            world.BROWSING_MODEL["interactions_per_user"] = [lo, hi]
            rng = np.random.default_rng(args.seed)
            start = time.perf_counter()
            events = world.sample_interactions(rng, products, tastes, appeal, progress=False)
            histories: dict[str, list[str]] = {u: [] for u in users}
            for user_id, item_id, _, _ in events:  # rows come in time order per user
                histories[user_id].append(item_id)
            seqs = [histories[u] for u in users]
            fitted = fit_attribute_taste(seqs, shop.catalog, **TASTE_FIT)
            choice = accuracy([{k: est.top(k) for k in KINDS} for est in fitted])
            counted = accuracy([{k: Counter(shop.catalog[i].attributes[k] for i in h).most_common(1)[0][0]
                                 for k in KINDS} for h in seqs])
            row = {"interactions_per_user": [lo, hi], "mean_events": round(float(np.mean([len(h) for h in seqs])), 1),
                   "choice_model": choice, "count": counted, "seconds": round(time.perf_counter() - start, 1)}
            result["lengths"].append(row)
            print(f"{lo:>4}-{hi:<4} events: favourite color named by the choice model for "
                  f"{100 * choice['color']['heldout']:.1f}% of held-out users ({100 * choice['color']['all']:.1f}% "
                  f"of all), by counting {100 * counted['color']['heldout']:.1f}%; pattern "
                  f"{100 * choice['pattern']['heldout']:.1f}% / {100 * counted['pattern']['heldout']:.1f}%", flush=True)
    finally:
        world.BROWSING_MODEL["interactions_per_user"] = shipped
    if args.json:
        write_results_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
