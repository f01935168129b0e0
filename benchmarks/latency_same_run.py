"""Scoring latency of every model of a benchmark in one run, so the cost table compares like with like.

The bench JSONs time each model in its own run, and on this shared CPU those runs saw different loads
(MostPop's 1.1 s per 1,000 users on ml-1m is a loaded first session, not MostPop). Scoring cost does
not depend on the weights' values, so each model is built from its data set's config and, where
training takes minutes, scored with its initial weights (the same network, the same arithmetic);
MostPop, ItemKNN and EASE are fitted (seconds). The models are timed in turn, `--repeats` rounds
interleaved, and the median per model is kept. CF: all items ranked for 1,000 users (scores, no
top-k); sequential: 1,000 test rows end to end with the sampler and steps chosen on validation
in the bench JSON.

    ATELIER_THREADS=1 python benchmarks/latency_same_run.py --data ../shared/data/ml-1m_clean \
        --json-out benchmarks/results/latency_ml-1m_clean.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FITTED = {"mostpop", "itemknn", "ease", "seq-mostpop"}  # cheap to fit: fitted for real


def _bench_json(data_name: str) -> dict | None:
    path = ROOT / "benchmarks" / "results" / f"rec_{data_name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ready(model, data, fitted: bool):
    """The model fitted (cheap models) or with its network built at its initial weights (the scoring arithmetic
    is the same), ready to score."""
    import torch

    if fitted:
        model.fit(data, progress=False)
    else:
        torch.manual_seed(0)
        model.net = model.setup_fit(data, 0)
        model.net.eval()
    return model


def _cf_models(spec: str, names: list[str]):
    """(name, model ready to score, rows to score) for CF data."""
    from recommenders.bench import make_model
    from recommenders.bench_config import resolve, stats_of
    from recommenders.datasets import load_cf

    data = load_cf(spec)
    rc = resolve(data.name, stats_of(data), None, spec)
    users = np.arange(min(1000, data.n_users))
    out = []
    for name in names:
        model = _ready(make_model(name, rc.models.get(name, {})), data, name in FITTED)
        out.append((name, lambda m=model: m.score(users), len(users)))
    return data.name, rc.line, out


def _seq_models(spec: str, names: list[str]):
    """(name, scoring call, rows) for sequential data, DreamRec with the bench's chosen sampler."""
    from recommenders.base import model_class
    from recommenders.datasets import load_seq
    from recommenders.seq_bench import parse_variant, resolve_model, run_config

    data = load_seq(spec)
    rc, cfg = run_config(data, spec)
    bench = _bench_json(data.name) or {}
    chosen = ((bench.get("summary") or {}).get("chosen_on_valid") or {})
    split = data.test
    seq, seq_len = split.seq[:1000], split.seq_len[:1000]
    out = []
    for name in names:
        key, base, hp = resolve_model(name, cfg)
        model = _ready(model_class(base)(**hp), data, base in FITTED)
        kwargs, label = {}, name
        if base == "dreamrec" and key in chosen:
            sampler, steps, _ = parse_variant(chosen[key]["variant"])
            kwargs, label = {"sampler": sampler, "steps": steps}, f"{name} {chosen[key]['variant']}"
        out.append((label, lambda m=model, kw=kwargs: m.score(seq, seq_len, **kw), len(seq)))
    return data.name, rc.line, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", help="comma list (default: the models of the data set's bench JSON)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    from core.errors import InputError
    from core.runtime import torch_threads

    try:
        from recommenders.datasets import is_sequential

        threads = torch_threads()
        seq = is_sequential(args.data)
        name = Path(args.data).name
        bench = _bench_json(name) or {}
        names = ([m.strip() for m in args.models.split(",")] if args.models
                 else list(bench.get("models", {})))
        if not names:
            raise InputError(f"no --models and no benchmarks/results/rec_{name}.json to take them from")
        data_name, line, models = (_seq_models if seq else _cf_models)(args.data, names)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(line)
    for _, call, _ in models:  # warm-up, untimed
        call()
    times: dict[str, list[float]] = {label: [] for label, _, _ in models}
    load = []
    for _ in range(args.repeats):
        load.append(os.getloadavg()[0])
        for label, call, rows in models:
            start = time.perf_counter()
            call()
            times[label].append((time.perf_counter() - start) * 1e6 / rows)
    result = {"command": "python benchmarks/latency_same_run.py " + " ".join(argv or sys.argv[1:]),
              "data": data_name, "torch_threads": threads, "repeats": args.repeats,
              "load_1min": [round(x, 2) for x in load],
              "ms_per_1k": {k: float(np.median(v)) for k, v in times.items()},
              "ms_per_1k_all": {k: [round(x, 2) for x in v] for k, v in times.items()}}
    for k, v in result["ms_per_1k"].items():
        print(f"{k:28s} {v:9.1f} ms per 1,000 {'rows' if seq else 'users'}")
    if args.json_out:
        from core.io import write_results_json

        write_results_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
