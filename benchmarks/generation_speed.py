"""Images per second of the demo model: Atelier's pipelines vs a plain diffusers StableDiffusionPipeline.

Same weights, same prompts, 20 DDIM steps, guidance 4, batch 1 and 8, in one process, at the output size:
128 px when the model comes with an upscaler (the demo model does; `--no-upscale`: the model's 64 px):
- plain:    `StableDiffusionPipeline.from_pretrained(assets/models/demo-sd)` called with B prompts, then the
            same upscaler (`pipelines.upscale.upscale_images`) on its images;
- loader:   `pipelines.loading.load_sd_pipeline("demo")` (what every Atelier pipeline starts from), then the same;
- product:  `pipelines.product.ProductPipeline` making B candidates for one shopper (no scorer), upscaler inside.
Each timing is the best of `--repeats` rounds after one warm-up, the three taking turns within a round
(on a shared CPU the best run is the least disturbed one, and a load change hits all three alike). Usage: `python benchmarks/generation_speed.py --json [--json-out PATH]`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "a navy striped shirt in a studio"


def best_times(fns: dict, repeats: int) -> dict[str, float]:
    """Best wall time of each function over `repeats` rounds after one warm-up each; the functions take turns
    within a round, so a change in the shared machine's load falls on all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-upscale", action="store_true", help="leave the model's upscaler out (its own size)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    from diffusers import StableDiffusionPipeline

    from pipelines.device import describe, pick_device, set_threads
    from pipelines.loading import find_upscaler, load_sd_pipeline, load_upscaler, resolve
    from pipelines.upscale import upscale_images

    set_threads(args.threads)
    dev = pick_device(args.device)
    folder, _ = resolve(args.model)
    plain = StableDiffusionPipeline.from_pretrained(folder).to(dev)
    ours = load_sd_pipeline(args.model, device=str(dev), cache=False)
    for p in (plain, ours):
        p.set_progress_bar_config(disable=True)
    sr_folder = None if args.no_upscale else find_upscaler(folder)
    sr = None if sr_folder is None else load_upscaler(sr_folder, device=str(dev))
    product = None
    try:
        from pipelines.product import ProductPipeline

        product = ProductPipeline(ours, upscaler=sr)
    except Exception as e:  # the product pipeline is optional here; say why it is missing
        print(f"note: ProductPipeline not measured ({type(e).__name__}: {e})", file=sys.stderr)

    common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance)
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        def run(pipe, b=b):
            gens = [torch.Generator("cpu").manual_seed(i) for i in range(b)]
            images = pipe([PROMPT] * b, generator=gens, **common).images
            return images if sr is None else upscale_images(sr, images)

        fns = {"plain": lambda: run(plain), "loader": lambda: run(ours)}
        if product is not None:
            fns["product"] = lambda: product(None, prompt=PROMPT, num_candidates=b, batch_size=b, steps=args.steps,
                                             guidance=args.guidance, negative_prompt="", progress=False)
        best = best_times(fns, args.repeats)
        row = {"batch": b, **{f"{k}_img_per_s": b / t for k, t in best.items()}}
        for k in ("loader", "product"):
            if f"{k}_img_per_s" in row:
                row[f"{k}_vs_plain"] = row[f"{k}_img_per_s"] / row["plain_img_per_s"]
        rows.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})

    result = {"model": args.model, "device": describe(dev), "threads": torch.get_num_threads(),
              "size": int(ours.unet.config.sample_size * ours.vae_scale_factor) * (1 if sr is None else sr.config.scale),
              "upscaler": None if sr_folder is None else str(sr_folder.relative_to(ROOT) if sr_folder.is_relative_to(ROOT)
                                                             else sr_folder),
              "steps": args.steps,
              "guidance": args.guidance, "scheduler": type(ours.scheduler).__name__, "repeats": args.repeats,
              "load_avg_1min": round(os.getloadavg()[0], 2), "rows": rows}
    if args.json_out:
        from core.io import write_results_json

        write_results_json(args.json_out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['device']}, {result['size']} px, {args.steps} steps, load {result['load_avg_1min']}")
        print(f"{'batch':>5} {'plain img/s':>12} {'loader img/s':>13} {'product img/s':>14} {'loader/plain':>13}")
        for r in rows:
            print(f"{r['batch']:>5} {r['plain_img_per_s']:>12.2f} {r['loader_img_per_s']:>13.2f} "
                  f"{r.get('product_img_per_s', float('nan')):>14.2f} {r['loader_vs_plain']:>13.2f}")
    return result


if __name__ == "__main__":
    main()
