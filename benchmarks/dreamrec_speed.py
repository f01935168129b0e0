"""End-to-end DreamRec inference speed per sampler, in one process at one thread count.

    ATELIER_THREADS=1 python benchmarks/dreamrec_speed.py --model-dir DIR --data ../shared/data/zhihu \
        --variants ddpm@500,ddim@10,dpmsolver@10,ddim@1 --repeats 3 --json-out OUT.json

Times `score` (history encoding + reverse process + scores over all items, the bench's definition)
and `recommend` (the same plus torch.topk of 20) on the test split, variants interleaved and repeated
(medians), with the encode / sample / rank split. It also counts multiply-adds per row, a
machine-independent view of the floor that every sampler pays (encoding and scoring all items).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path


def macs_per_row(model) -> dict:
    """Multiply-adds per history for each part of DreamRec inference (weights' shapes, w = 0)."""
    cfg, net = model.config, model.net
    D, L, width = cfg.hidden, cfg.max_len, cfg.denoiser_mult * cfg.hidden
    ff = net.encoder.blocks.layers[-1].linear1.out_features
    full_layers = cfg.n_layers - 1  # all but the last block run at every position
    per_pos_full = 4 * D * D + 2 * D * ff + 2 * L * D
    # a one-block encoder reads Q, K and V from its per-(item, position) table (SeqEncoder.projection_table)
    tabled = cfg.n_layers == 1 and net.encoder.projection_table() is not None
    kvq = 0 if tabled else 2 * L * D * D + D * D
    last = kvq + D * D + 2 * L * D + 2 * D * ff  # K/V at L positions and Q at one (unless tabled); out, FFN at one
    return {"encode": full_layers * L * per_pos_full + last + D * width,  # + the condition's projection
            "denoiser_step": 2 * D * width,  # in_x and out; the timestep part is per step, not per row
            "score_all_items": D * cfg.n_items}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--variants", default="ddpm@500,ddim@10,dpmsolver@10,ddim@1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--json-out")
    args = ap.parse_args(argv)

    from core.io import write_results_json
    from core.runtime import torch_threads
    from recommenders.base import SequentialRecommender
    from recommenders.datasets import load_seq

    threads = torch_threads()
    model = SequentialRecommender.load(args.model_dir)
    split = load_seq(args.data).test
    n = len(split)
    variants = [(v.split("@")[0], int(v.split("@")[1])) for v in args.variants.split(",")]
    model.score(split.seq[:256], split.seq_len[:256], sampler="ddim", steps=2)  # warm-up
    times: dict = {f"{s}@{k}": {"score": [], "recommend": [], "encode": [], "sample": [], "rank": []}
                   for s, k in variants}
    for _ in range(args.repeats):
        for s, k in variants:
            t = times[f"{s}@{k}"]
            start = time.perf_counter()
            model.score(split.seq, split.seq_len, sampler=s, steps=k, batch_size=args.batch_size)
            t["score"].append((time.perf_counter() - start) * 1e6 / n)
            for part in ("encode", "sample", "rank"):
                t[part].append(model.timing[f"{part}_s"] * 1e6 / n)
            start = time.perf_counter()
            model.recommend(split.seq, split.seq_len, k=20, sampler=s, steps=k, batch_size=args.batch_size)
            t["recommend"].append((time.perf_counter() - start) * 1e6 / n)
    med = {v: {f"{p}_ms_per_1k": statistics.median(x) for p, x in t.items()} for v, t in times.items()}
    ref = med[args.variants.split(",")[0]]
    macs = macs_per_row(model)
    ref_steps = variants[0][1]
    result = {
        "command": "python benchmarks/dreamrec_speed.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "model_dir": args.model_dir, "rows": n, "torch_threads": threads, "cpus": os.cpu_count(),
        "machine": platform.machine(), "load_avg_at_end": os.getloadavg(), "repeats": args.repeats,
        "median": med, "raw": times,
        "speedup_vs_reference": {v: {"score": ref["score_ms_per_1k"] / m["score_ms_per_1k"],
                                     "recommend_top20": ref["recommend_ms_per_1k"] / m["recommend_ms_per_1k"],
                                     "sampling_only": ref["sample_ms_per_1k"] / max(m["sample_ms_per_1k"], 1e-9)}
                                 for v, m in med.items()},
        "macs_per_row": macs,
        "macs_ratio_vs_reference": {
            f"{s}@{k}": (macs["encode"] + ref_steps * macs["denoiser_step"] + macs["score_all_items"])
            / (macs["encode"] + k * macs["denoiser_step"] + macs["score_all_items"]) for s, k in variants},
        "macs_ceiling_if_sampling_were_free": (macs["encode"] + ref_steps * macs["denoiser_step"]
                                               + macs["score_all_items"]) / (macs["encode"] + macs["score_all_items"]),
    }
    if args.json_out:
        write_results_json(Path(args.json_out), result)
    for v, m in med.items():
        print(f"{v:14s} score {m['score_ms_per_1k']:7.1f} ms/1k (encode {m['encode_ms_per_1k']:.1f}, sample "
              f"{m['sample_ms_per_1k']:.1f}, rank {m['rank_ms_per_1k']:.1f}); +top20 {m['recommend_ms_per_1k']:.1f}; "
              f"speedup {result['speedup_vs_reference'][v]['score']:.1f}x")
    print("MACs/row", macs, "ratio", {k: round(v, 1) for k, v in result["macs_ratio_vs_reference"].items()},
          "ceiling", round(result["macs_ceiling_if_sampling_were_free"], 1))
    return result


if __name__ == "__main__":
    main()
