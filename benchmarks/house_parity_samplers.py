"""Where DreamRec's figures move when its hand-written samplers became diffusers' (issue 14), on one model.

Trains DreamRec once (the data set's YAML, one seed), then scores the test split with the same weights
and the same sampling seed through (a) diffusers' schedulers as `recommenders.schedulers` sets them up,
(b) the previous hand-written schedulers (a copy of the old `recommenders/schedulers.py`, passed with
--old-schedulers), each with the bench's batch size and with every row in one batch. Same weights, so
any difference is the sampler's: float32 vs float64 coefficients, or the order of the noise draws.

    git show 91ca637:recommenders/schedulers.py > /tmp/old_schedulers.py
    python benchmarks/house_parity_samplers.py --data ../shared/data/zhihu --old-schedulers /tmp/old_schedulers.py \
        --json benchmarks/results/house_parity_samplers.json
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from core.io import write_results_json


def load_old(path: Path):
    spec = importlib.util.spec_from_file_location("old_schedulers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_schedulers"] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def main() -> None:
    from core.runtime import torch_threads
    from recommenders.metrics import ranking_metrics
    from recommenders.seq_bench import train_seq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--old-schedulers", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="ddim@5,ddim@10,dpmsolver@5,ddpm@1000,ddpm@500")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    torch_threads(1)
    old = load_old(args.old_schedulers)
    start = time.perf_counter()
    model, data, cfg, log = train_seq(args.data, "dreamrec", seed=args.seed, progress=False)
    train_s = time.perf_counter() - start
    k = cfg.get("target_metric", "hr@20")
    ks = tuple(cfg.get("ks", (10, 20, 50)))
    test, rows = data.test, len(data.test.target)
    c = model.config
    old_config = old.SchedulerConfig(c.num_train_timesteps, c.beta_schedule, c.beta_start, c.beta_end,
                                     c.prediction_type)
    out = {"data": data.name, "seed": args.seed, "train_seconds": train_s, "metric": f"test {k}",
           "best_epoch": log["best_epoch"], "epochs_run": log["epochs_run"], "rows": rows, "variants": {}}
    for variant in args.variants.split(","):
        sampler, steps = variant.split("@")
        row = {}
        for name in ("diffusers", "hand-written"):
            if name == "hand-written":
                model._schedulers[sampler] = old.make_scheduler(sampler, old_config)
            else:
                model._schedulers.pop(sampler, None)
            for batch in (2048, rows):
                scores = model.score(test.seq, test.seq_len, sampler=sampler, steps=int(steps), seed=args.seed,
                                     batch_size=batch)
                m = ranking_metrics(scores, test.target, ks=ks)
                row[f"{name}, batch {'all' if batch == rows else batch}"] = {k: m[k], "ndcg@" + k.split("@")[1]:
                                                                             m["ndcg@" + k.split("@")[1]]}
        model._schedulers.pop(sampler, None)
        out["variants"][variant] = row
        print(variant, {r: round(v[k], 6) for r, v in row.items()})
    write_results_json(args.json, out)


if __name__ == "__main__":
    main()
