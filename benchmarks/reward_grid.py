"""Which CTR reward model inputs and sizes predict the demo shop's clicks best?

Each configuration trains on the earlier 80% of the impressions (early-stopping on their latest 10%)
and is chosen by that validation log-loss; the held-out AUC on the latest 20% is only reported, next
to the oracle's. `atelier finetune reward` defaults to the chosen configuration.

    python benchmarks/reward_grid.py --json benchmarks/results/finetune_reward_grid.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID = [  # (user embedding, probe source, hidden, weight decay)
    ("condition", "text", 64, 1e-4),  # the first session's default
    ("profile", "text", 64, 1e-4),
    ("profile", "catalog", 64, 1e-4),
    ("profile", "catalog", 8, 0.1),
    ("taste", "text", 64, 1e-4),
    ("taste", "catalog", 64, 1e-4),
    ("taste", "catalog", 16, 1e-4),
    ("taste", "catalog", 8, 1e-2),
    ("taste", "catalog", 8, 0.1),
    ("taste", "catalog", 4, 1e-2),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    import torch

    from core.io import write_results_json
    from finetune.data import UserConditions
    from finetune.reward_model import (
        RewardTrainConfig,
        attribute_probes,
        catalog_probes,
        fit_and_report,
        impression_features,
    )
    from pipelines.scorer import Scorer
    from recommenders.shop import DemoShop

    torch.set_num_threads(1)
    shop = DemoShop.load()
    users = UserConditions(shop.interactions, shop.catalog)
    scorer = Scorer.load("demo")
    probes = {"catalog": catalog_probes(shop.catalog, scorer.embed_images),
              "text": attribute_probes(shop.catalog, scorer.embed_texts)}
    features = {}
    rows = []
    for user_embedding, probe_source, hidden, decay in GRID:
        if user_embedding not in features:
            features[user_embedding] = impression_features(shop.impressions, shop.catalog, users,
                                                           scorer.embed_images, user_embedding=user_embedding)
        t0 = time.time()
        inputs = {"user_embedding": user_embedding,
                  "user_layout": users.taste_layout if user_embedding == "taste" else []}
        report = fit_and_report(features[user_embedding], RewardTrainConfig(hidden_dim=hidden, weight_decay=decay),
                                None, oracle=shop.oracle_ctr, inputs=inputs, probes=probes[probe_source],
                                progress=False)
        row = {"user_embedding": user_embedding, "probe_source": probe_source, "hidden_dim": hidden,
               "weight_decay": decay, "valid_log_loss": round(report["train_log"]["best_valid_log_loss"], 5),
               "held_out_auc": round(report["held_out"]["auc"], 4),
               "oracle_auc": round(report["oracle_held_out"]["auc"], 4),
               "epochs": report["train_log"]["epochs"], "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(row, flush=True)
    best = min(rows, key=lambda r: r["valid_log_loss"])
    print("chosen on validation log-loss:", best)
    if args.json:
        write_results_json(args.json, {"grid": rows, "chosen_on_validation": best,
                                      "rule": "lowest validation log-loss (latest 10% of the training impressions)",
                                      "command": "python benchmarks/reward_grid.py --json "
                                                 "benchmarks/results/finetune_reward_grid.json"})


if __name__ == "__main__":
    main()
