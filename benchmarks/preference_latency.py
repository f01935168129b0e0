"""Latency of one shopper's condition from the preference path, once the backbone is loaded.

    python benchmarks/preference_latency.py [--backbones seq-mostpop,sasrec,gru4rec,dreamrec,ease]
        [--users 50] [--json-out benchmarks/results/preference_latency.json]

Fits (or loads) each backbone on the demo shop and learns its fusion first (not timed), then times
`recommenders.preference.preference` for each of `--users` shoppers (one torch thread) and prints the
median, p90 and max milliseconds. Target (issue #15): a sequence-model condition <= 50 ms on the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import numpy as np
    import torch

    from core.io import write_results_json
    from recommenders.preference import load_backbone, load_shop, preference

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="seq-mostpop,sasrec,gru4rec,dreamrec,ease")
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    shop = load_shop("demo")
    users = sorted(shop.history)[: args.users]
    rows = []
    for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        t0 = time.perf_counter()
        backbone = load_backbone(shop, name)
        backbone.fusion()
        load_s = time.perf_counter() - t0
        preference(backbone, shop.events(users[0]))  # warm-up
        ms = []
        for u in users:
            events = shop.events(u)
            t = time.perf_counter()
            preference(backbone, events)
            ms.append(1000 * (time.perf_counter() - t))
        row = {"backbone": name, "sequential": backbone.sequential, "users": len(users),
               "median_ms": round(float(np.median(ms)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
               "max_ms": round(float(np.max(ms)), 1), "fit_and_fusion_s": round(load_s, 1)}
        rows.append(row)
        print(f"{name:<12} median {row['median_ms']:6.1f} ms  p90 {row['p90_ms']:6.1f} ms  max {row['max_ms']:6.1f} ms"
              f"  (fit + fusion {row['fit_and_fusion_s']} s)", flush=True)
    result = {"rows": rows, "threads": 1, "machine": platform.processor() or platform.machine(),
              "load_avg_1min": round(os.getloadavg()[0], 2), "target_ms": 50,
              "command": "python benchmarks/preference_latency.py " + " ".join(sys.argv[1:])}
    if args.json_out is not None:
        write_results_json(args.json_out, result)
    print(json.dumps({r["backbone"]: r["median_ms"] for r in rows}))


if __name__ == "__main__":
    main()
