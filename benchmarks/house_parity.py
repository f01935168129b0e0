"""Parity of issue 14's recommender changes (one epoch trainer, diffusers' schedulers): seed-0 figures of
each headline model, committed vs rerun with the old code and with the new code, into one JSON.

The reruns are ordinary `atelier rec bench ... --seed-list 0 --json FILE` runs (commands in the output);
this script only reads their JSONs and the committed ones and lines the figures up.

    python benchmarks/house_parity.py --old runs/parity/old --new runs/parity/new \
        --json benchmarks/results/house_parity.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.io import atomic_write_json

RESULTS = Path("benchmarks/results")
DIGITS = 5  # figures are compared rounded to 5 decimals (the README reports 4, e.g. Recall@20 0.1814, HR 2.29%)
STEPS = "--sampling-steps 1000,500,50,20,10 --timing-repeats 1"
# (data set, rerun file stem, committed file, model, figures: (variant or None, metric), command)
RUNS = [
    ("ml-1m_clean", "ml1m_diffrec", "rec_ml-1m_clean.json", "diffrec", [(None, "recall@20"), (None, "ndcg@20")],
     "atelier rec bench --data ../shared/data/ml-1m_clean --models diffrec --seed-list 0 --json {out}"),
    ("ml-1m_clean", "ml1m_multivae", "rec_ml-1m_clean.json", "multivae", [(None, "recall@20"), (None, "ndcg@20")],
     "atelier rec bench --data ../shared/data/ml-1m_clean --models multivae --seed-list 0 --json {out}"),
    ("ml-1m_clean", "ml1m_ldiffrec", "rec_ml-1m_clean.json", "ldiffrec", [(None, "recall@20"), (None, "ndcg@20")],
     "atelier rec bench --data ../shared/data/ml-1m_clean --models ldiffrec --seed-list 0 --json {out}"),
    ("zhihu", "zhihu", "rec_zhihu.json", "dreamrec",
     [("ddim@5", "hr@20"), ("ddim@5", "ndcg@20"), ("ddim@10", "hr@20"), ("dpmsolver@5", "hr@20"),
      ("ddpm@1000", "hr@20"), ("ddpm@500", "hr@20")],
     f"atelier rec bench --data ../shared/data/zhihu --models dreamrec,sasrec,gru4rec --seed-list 0 {STEPS} --json {{out}}"),
    ("zhihu", "zhihu", "rec_zhihu.json", "sasrec", [("-", "hr@20"), ("-", "ndcg@20")], "(same run as dreamrec)"),
    ("zhihu", "zhihu", "rec_zhihu.json", "gru4rec", [("-", "hr@20"), ("-", "ndcg@20")], "(same run as dreamrec)"),
    ("amazon-beauty", "beauty", "rec_amazon-beauty.json", "dreamrec",
     [("dpmsolver@5", "recall@10"), ("dpmsolver@5", "ndcg@10"), ("ddim@5", "recall@10"), ("ddpm@500", "recall@10")],
     f"atelier rec bench --data ../shared/data/amazon-beauty --models dreamrec,sasrec --seed-list 0 {STEPS} "
     "--json {out}"),
    ("amazon-beauty", "beauty", "rec_amazon-beauty.json", "sasrec", [("-", "recall@10"), ("-", "ndcg@10")],
     "(same run as dreamrec)"),
]


def seed0(path: Path, model: str) -> dict | None:
    """The seed-0 run of `model` in a CF or sequential bench JSON, or None."""
    if not path.is_file():
        return None
    entry = json.loads(path.read_text()).get("models", {}).get(model)
    if entry is None:
        return None
    return next((r for r in entry.get("runs", []) if r.get("seed") == 0), None)


def figure(run: dict | None, variant: str | None, metric: str) -> float | None:
    if run is None:
        return None
    if variant is None:  # CF bench: metrics at the top of the run
        return run.get(metric)
    row = run.get("variants", {}).get(variant)
    return None if row is None else row["metrics"].get(metric)


def training(run: dict | None) -> dict | None:
    """Epochs and the validation figure, as the run logged them (CF best_epoch was 0-based before the trainer)."""
    if run is None:
        return None
    keys = ("best_epoch", "epochs_run", "best_valid_recall@20", "valid", "train_s", "train_seconds")
    return {k: run[k] for k in keys if k in run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, help="folder of reruns with the code before the change (optional)")
    ap.add_argument("--new", type=Path, required=True, help="folder of reruns with the new code")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--old-commit", default="91ca637")
    ap.add_argument("--new-commit", required=True)
    args = ap.parse_args()
    rows = []
    for data, stem, committed_file, model, figures, command in RUNS:
        committed = seed0(RESULTS / committed_file, model)
        old = seed0(args.old / f"{stem}.json", model) if args.old else None
        new = seed0(args.new / f"{stem}.json", model)
        trained = {"committed": training(committed), "old_code_rerun": training(old), "new_code": training(new)}
        for variant, metric in figures:
            c, o, n = (figure(r, variant, metric) for r in (committed, old, new))
            rows.append({
                "data": data, "model": model, "variant": variant or "-", "metric": f"test {metric}", "seed": 0,
                "committed": c, "old_code_rerun": o, "new_code": n,
                "new_equals_committed": None if c is None or n is None else n == c,
                f"same_to_{DIGITS}_decimals": None if c is None or n is None else round(n, DIGITS) == round(c, DIGITS),
                "difference": None if c is None or n is None else n - c,
                "committed_in": str(RESULTS / committed_file),
                "command": command.format(out=f"runs/parity/new/{stem}.json"), "training": trained,
            })
    out = {"what": "seed-0 parity of the headline recommenders after issue 14 (one epoch trainer, diffusers "
                   "schedulers): committed figure, rerun of the old code, rerun of the new code",
           "old_code": args.old_commit, "new_code": args.new_commit, "digits": DIGITS, "rows": rows}
    atomic_write_json(args.json, out)
    for r in rows:
        print(f"{r['data']:14s} {r['model']:9s} {r['variant']:12s} {r['metric']:16s} committed {r['committed']} "
              f"old {r['old_code_rerun']} new {r['new_code']}")


if __name__ == "__main__":
    main()
