"""One table of what each recommender costs and gives, read from the `rec bench` JSONs in benchmarks/results.

For every model on each benchmark: the headline quality (mean ± std over its seeds), the training time
per seed and the scoring time per 1,000 users (CF: all items ranked for every user; sequential: the
variant chosen on validation, per 1,000 rows end to end). Nothing is re-measured here: quality and
training time are the bench run's own (whose rows were sometimes run per model on a shared CPU: their
load is in each JSON); scoring time comes twice, the bench's and, where
`benchmarks/latency_same_run.py` wrote `latency_<data>.json`, all models timed in one run.

    python benchmarks/cost_table.py [--json-out benchmarks/results/cost_table.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# headline metrics per benchmark file (the ones the README and the issues quote)
HEADLINE = {
    "rec_ml-1m_clean.json": ("recall@20", "ndcg@20"),
    "rec_demo_cf.json": ("recall@20", "ndcg@20"),
    "rec_zhihu.json": ("hr@20", "ndcg@20"),
    "rec_amazon-beauty.json": ("recall@10", "ndcg@10"),
    "rec_demo_seq.json": ("hr@10", "ndcg@10"),
}


def _cf_rows(doc: dict, metrics: tuple[str, ...]) -> list[dict]:
    rows = []
    for name, m in doc["models"].items():
        mean, std = m["mean"], m["std"]
        rows.append({"model": name, "seeds": len(m["runs"]),
                     **{k: [mean.get(k), std.get(k)] for k in metrics},
                     "train_s": mean.get("train_s"),
                     "score_ms_per_1k_users": None if mean.get("ms_per_user") is None else mean["ms_per_user"] * 1000})
    return rows


def _seq_rows(doc: dict, metrics: tuple[str, ...]) -> list[dict]:
    rows = []
    chosen = (doc.get("summary") or {}).get("chosen_on_valid") or {}
    for name, m in doc["models"].items():
        if name in chosen:
            c = chosen[name]
            variant, mean, std, ms = c["variant"], c["test_mean"], c["test_std"], c.get("infer_ms_per_1k")
        else:
            variant = next(iter(m["variants"]))
            v = m["variants"][variant]
            mean, std, ms = v["mean"], v["std"], (v.get("infer_ms_per_1k") or {}).get("mean")
        train = m.get("train_seconds") or {}
        rows.append({"model": name if variant == "-" else f"{name} {variant}", "seeds": len(m.get("runs", [])),
                     **{k: [mean.get(k), std.get(k)] for k in metrics},
                     "train_s": train.get("mean"), "score_ms_per_1k_users": ms})
    return rows


def table(results: Path = RESULTS) -> dict[str, dict]:
    """{file: {"metrics": [...], "rows": [...], "latency_file": ...}} for every rec bench JSON found.

    Where `latency_<data>.json` (benchmarks/latency_same_run.py) exists, each row also gets its scoring
    time from that one run (`score_ms_per_1k_same_run`), the column to compare models by."""
    out = {}
    for path in sorted(results.glob("rec_*.json")):
        doc = json.loads(path.read_text())
        if not isinstance(doc.get("models"), dict):
            continue
        metrics = HEADLINE.get(path.name, ("recall@20", "ndcg@20"))
        first = next(iter(doc["models"].values()))
        rows = _cf_rows(doc, metrics) if "mean" in first else _seq_rows(doc, metrics)
        lat_path = results / path.name.replace("rec_", "latency_", 1)
        same = json.loads(lat_path.read_text())["ms_per_1k"] if lat_path.exists() else {}
        for r in rows:
            r["score_ms_per_1k_same_run"] = same.get(r["model"])
        out[path.name] = {"metrics": list(metrics), "rows": rows,
                          "latency_file": lat_path.name if lat_path.exists() else None}
    return out


def _fmt(pair, pct: bool) -> str:
    mean, std = pair
    if mean is None:
        return "—"
    scale = 100 if pct else 1
    digits = 2 if pct else 4
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if std else "")


def markdown(tab: dict[str, dict]) -> str:
    lines = []
    for file, t in tab.items():
        pct = file not in ("rec_ml-1m_clean.json", "rec_demo_cf.json")
        head = " | ".join(m + (" (%)" if pct else "") for m in t["metrics"])
        lines += [f"\n{file}" + (f" (one-run scoring times: {t['latency_file']})" if t.get("latency_file") else ""),
                  f"| model | seeds | {head} | train s / seed | scoring ms / 1,000 users (bench) | (one run) |",
                  "|---|---|" + "---|" * len(t["metrics"]) + "---|---|---|"]
        for r in t["rows"]:
            q = " | ".join(_fmt(r[m], pct) for m in t["metrics"])
            train = "—" if r["train_s"] is None else f"{r['train_s']:.1f}"
            ms = "—" if r["score_ms_per_1k_users"] is None else f"{r['score_ms_per_1k_users']:.1f}"
            same = r.get("score_ms_per_1k_same_run")
            same = "—" if same is None else f"{same:.1f}"
            lines.append(f"| {r['model']} | {r['seeds']} | {q} | {train} | {ms} | {same} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    if not args.results.is_dir():
        print(f"error: {args.results} is not a folder", file=sys.stderr)
        return 2
    tab = table(args.results)
    print(markdown(tab))
    if args.json_out:
        sys.path.insert(0, str(ROOT))
        from core.io import write_results_json

        write_results_json(args.json_out, {"command": "python benchmarks/cost_table.py", "tables": tab})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
