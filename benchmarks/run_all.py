"""`make bench`: run every benchmark that fits this machine and write its JSON into benchmarks/results/.

The long recommender benches (5 seeds on ml-1m_clean, zhihu) take hours on a 2-core CPU; they are
run only with `--full`. Benchmarks that need ../shared/data skip with a message when it is absent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data"
ATELIER = [sys.executable, "-m", "app.cli"]


def quick() -> list[tuple[str, list[str]]]:
    return [
        ("demo model fidelity", ATELIER + ["demo-model", "eval", "--n", "200", "--sheet", str(RESULTS / "demo_model_eval.png"),
                                           "--json-out", str(RESULTS / "demo_model_eval.json")]),
        ("generation speed", [sys.executable, "benchmarks/generation_speed.py", "--json-out", str(RESULTS / "generation_speed.json")]),
        ("personalization", ATELIER + ["eval", "personalization", "--users", "50", "-n", "2", "--steps", "20",
                                       "--json-out", str(RESULTS / "personalization.json")]),
        ("pipelines sheet", [sys.executable, "benchmarks/pipelines_sheet.py", "--steps", "20"]),
        ("A/B simulation", ATELIER + ["ab", "simulate", "--rounds", "20000", "--runs", "20", "--creatives", "6", "--seed", "0",
                                      "--json-out", str(RESULTS / "ab_simulation.json"), "--plot", str(RESULTS / "ab_simulation.png")]),
        ("A/B load test", [sys.executable, "benchmarks/load_test.py"]),
        ("demo CF bench", ATELIER + ["rec", "bench", "--data", "demo", "--seeds", "5", "--json", str(RESULTS / "rec_demo_cf.json")]),
    ]


def full() -> list[tuple[str, list[str]]]:
    runs = [
        ("ml-1m_clean CF bench", ATELIER + ["rec", "bench", "--data", str(DATA / "ml-1m_clean"), "--models",
                                           "mostpop,itemknn,ease,multivae,diffrec,ldiffrec", "--seeds", "5", "--json",
                                           str(RESULTS / "rec_ml-1m_clean.json"), "--plot", str(RESULTS / "rec_ml-1m_clean.png")]),
        ("zhihu sequence bench", ATELIER + ["rec", "bench", "--data", str(DATA / "zhihu"), "--models",
                                           "mostpop,sasrec,gru4rec,dreamrec", "--seeds", "5", "--sampling-steps",
                                           "1000,50,20,10", "--json", str(RESULTS / "rec_zhihu.json")]),
        ("amazon-beauty sequence bench", ATELIER + ["rec", "bench", "--data", str(DATA / "amazon-beauty"), "--models",
                                                   "mostpop,sasrec,gru4rec,dreamrec", "--seeds", "5",
                                                   "--json", str(RESULTS / "rec_amazon-beauty.json")]),
    ]
    if not DATA.is_dir():
        print(f"skipping the benchmark-data benches: {DATA} not found")
        return []
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also run the multi-hour recommender benches")
    parser.add_argument("--only", default="", help="comma-separated substrings of benchmark names to run")
    args = parser.parse_args()
    runs = quick() + (full() if args.full else [])
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",") if k.strip()]
        runs = [r for r in runs if any(k in r[0].lower() for k in keys)]
    failed = []
    for name, cmd in runs:
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"== {name}: exit {rc} in {time.time() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
