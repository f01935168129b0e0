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

from core.io import write_results_json

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
     f"atelier rec bench --data ../shared/data/zhihu --models dreamrec,sasrec,gru4rec --seed-list 0 {STEPS} "
     "--json {out}"),
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


def alphas_cumprod_change() -> dict:
    """How diffusers' float32 alphas_cumprod (linear 1e-4..0.02, T = 1000) differ from the former float64 ones."""
    import torch

    from recommenders.schedulers import make_scheduler

    new = make_scheduler("ddpm").alphas_cumprod
    old = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    return {"values_that_differ_in_float32": int((old.float() != new).sum()),
            "max_relative_difference": float(((old - new.double()) / old).abs().max())}


def findings(rows: list[dict], samplers: dict | None) -> list[str]:
    """Plain statements of what matched and, where a figure moved, the measured reason."""
    compared = [r for r in rows if r["committed"] is not None and r["new_code"] is not None]
    exact = sum(r["new_equals_committed"] for r in compared)
    close = sum(r[f"same_to_{DIGITS}_decimals"] for r in compared)
    out = [f"{exact} of {len(compared)} seed-0 figures are bit-identical to the committed ones, {close} of "
           f"{len(compared)} equal to {DIGITS} decimals."]
    for r in compared:
        if r["new_equals_committed"]:
            continue
        what = f"{r['data']} {r['model']} {r['variant']} {r['metric']}: {r['committed']:.7f} -> {r['new_code']:.7f}"
        v = (samplers or {}).get("variants", {}).get(r["variant"], {})
        key = r["metric"].split()[-1]
        if r["variant"].startswith("ddpm") and v:
            out.append(f"{what}. Sampler: diffusers' DDPMScheduler also draws noise (scaled by 1e-10: a zero "
                       "variance clamped to 1e-20) at the last step of a strided schedule, so the generator shared by the test batches is one draw "
                       "further along for each next batch of 2,048 rows. Same weights: hand-written "
                       f"{v['hand-written, batch 2048'][key]:.7f} in batches of 2,048 and "
                       f"{v['hand-written, batch all'][key]:.7f} in one batch; diffusers "
                       f"{v['diffusers, batch 2048'][key]:.7f} and {v['diffusers, batch all'][key]:.7f}.")
        elif r["model"] == "dreamrec" and v:
            change = alphas_cumprod_change()
            out.append(f"{what}. Training, not sampling: DreamRec noises x0 with diffusers' add_noise, whose "
                       f"alphas_cumprod are float32 products ({change['values_that_differ_in_float32']} of 1000 "
                       "differ from the former float64 ones cast to float32, by at most "
                       f"{change['max_relative_difference']:.1e} relative), so the trained weights differ in the "
                       "last bits. The same weights through both samplers: diffusers "
                       f"{v['diffusers, batch 2048'][key]:.7f}, hand-written {v['hand-written, batch 2048'][key]:.7f}.")
        else:
            out.append(f"{what}: not explained here.")
    out.append("Epochs count from 1 in the one trainer's log: the CF runs' best_epoch is the committed one + 1 "
               "(the same epoch).")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, help="folder of reruns with the code before the change (optional)")
    ap.add_argument("--new", type=Path, required=True, help="folder of reruns with the new code")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--samplers", type=Path,
                    help="benchmarks/house_parity_samplers.py output (one model, both samplers)")
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
    timing = {}
    for label, folder in (("old_code_rerun", args.old), ("new_code", args.new)):
        run = seed0(folder / "zhihu.json", "dreamrec") if folder else None
        if run is not None:
            timing[label] = {v: {k: run["variants"][v][k] for k in ("infer_ms_per_1k", "sample_ms_per_1k")}
                             for v in ("ddim@5", "dpmsolver@5", "ddpm@500") if v in run["variants"]}
    out = {"what": "seed-0 parity of the headline recommenders after issue 14 (one epoch trainer, diffusers "
                   "schedulers): committed figure, rerun of the old code, rerun of the new code",
           "old_code": args.old_commit, "new_code": args.new_commit, "digits": DIGITS, "rows": rows,
           "zhihu_dreamrec_ms_per_1k_rows": {**timing, "note": "one timing pass each, on the shared 2-core CPU "
                                             "under other helpers' load: not comparable to the committed medians"}}
    samplers = json.loads(args.samplers.read_text()) if args.samplers is not None else None
    if samplers is not None:
        out["same_weights_both_samplers"] = {
            **samplers, "source": str(args.samplers),
            "command": "git show 91ca637:recommenders/schedulers.py > old_schedulers.py; python "
                       "benchmarks/house_parity_samplers.py --data ../shared/data/zhihu --old-schedulers "
                       f"old_schedulers.py --json {args.samplers}"}
    out["command"] = ("python benchmarks/house_parity.py --old runs/parity/old --new runs/parity/new --json "
                      f"{args.json} --new-commit {args.new_commit}"
                      + (f" --samplers {args.samplers}" if args.samplers else ""))
    out["findings"] = findings(rows, samplers)
    write_results_json(args.json, out)
    for r in rows:
        print(f"{r['data']:14s} {r['model']:9s} {r['variant']:12s} {r['metric']:16s} committed {r['committed']} "
              f"old {r['old_code_rerun']} new {r['new_code']}")


if __name__ == "__main__":
    main()
