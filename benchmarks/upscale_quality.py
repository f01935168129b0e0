"""How much crisper the demo upscaler makes images than bicubic, with a contact sheet.

1. Held-out catalog renders (every tenth catalog item, never trained on), each on a random scene:
   the 128 px render is the truth; its 64 px version through the demo VAE (what the generator's
   decoder leaves) is upscaled by bicubic and by the upscaler; PSNR and SSIM against the render,
   and the mean gradient magnitude (higher = crisper; the render's own is the ceiling).
2. Images the demo model generates for the held-out eval prompts (no truth): mean gradient of the
   upscaler's 128 px output vs bicubic of the same 64 px images.
3. `benchmarks/results/upscale_sheet.png`: rows of bicubic | upscaler (| render for the held-out ones).

Usage: `python benchmarks/upscale_quality.py --json-out benchmarks/results/upscale_quality.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def ssim(a, b) -> float:
    """Mean SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5) on luma of two [-1, 1] batches."""
    import torch
    import torch.nn.functional as F

    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    x = ((a.clamp(-1, 1) + 1) / 2 * w).sum(1, keepdim=True)
    y = ((b.clamp(-1, 1) + 1) / 2 * w).sum(1, keepdim=True)
    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 11, 11)
    mx, my = F.conv2d(x, g), F.conv2d(y, g)
    vx, vy = F.conv2d(x * x, g) - mx**2, F.conv2d(y * y, g) - my**2
    cov = F.conv2d(x * y, g) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def save_sheet(rows: list, path: Path, label_w: int = 150) -> Path:
    """A grid: one labelled row of 128 px images per (label, uint8 (N, 128, 128, 3)) entry."""
    from PIL import Image, ImageDraw

    n, side = max(len(r) for _, r in rows), rows[0][1].shape[1]
    sheet = Image.new("RGB", (label_w + n * side, len(rows) * side), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, images) in enumerate(rows):
        draw.text((4, i * side + side // 2 - 6), label, fill=(0, 0, 0))
        for j, im in enumerate(images):
            sheet.paste(Image.fromarray(im), (label_w + j * side, i * side))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=int, default=40, help="generated images to measure (held-out prompts)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sheet", type=Path, default=ROOT / "benchmarks" / "results" / "upscale_sheet.png")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from finetune.demo_model.common import to_tensor, to_uint8
    from finetune.demo_model.data import eval_prompts
    from finetune.demo_model.evaluate import generate
    from finetune.demo_model.train_upscaler import build_pairs, evaluate_upscaler, load_vae, mean_gradient
    from pipelines.device import set_threads
    from pipelines.loading import demo_path, load_sd_pipeline, load_upscaler
    from pipelines.upscale import bicubic

    set_threads(None)
    sr = load_upscaler(demo_path("demo-upscaler"))
    vae, _ = load_vae(None)  # the shipped demo VAE
    pairs = build_pairs(vae, held_out=True, progress=False)
    held = evaluate_upscaler(sr, pairs)
    hi, lo = to_tensor(pairs["hi"]), to_tensor(pairs["lo"])
    with torch.no_grad():
        up = sr(lo)
    held.update(ssim_upscaler=round(ssim(up, hi), 4), ssim_bicubic=round(ssim(bicubic(lo), hi), 4))

    pipe = load_sd_pipeline("demo", device="cpu")
    prompts = [p for p, _ in eval_prompts(args.generated)]
    gen = to_tensor(generate(pipe, prompts, seed=0, steps=args.steps))
    with torch.no_grad():
        gen_sr = sr(gen)
    generated = {"n": len(prompts), "steps": args.steps, "gradient_upscaler": round(mean_gradient(gen_sr), 3),
                 "gradient_bicubic": round(mean_gradient(bicubic(gen)), 3)}

    # the sheet: 8 generated images (bicubic, upscaler) above 8 held-out renders (bicubic, upscaler, render)
    rows = [("generated, bicubic", to_uint8(bicubic(gen[:8]))), ("generated, upscaler", to_uint8(gen_sr[:8])),
            ("held-out, bicubic", to_uint8(bicubic(lo[:8]))), ("held-out, upscaler", to_uint8(up[:8])),
            ("held-out, 128 px render", pairs["hi"][:8])]
    save_sheet(rows, args.sheet)
    result = {"heldout_renders": held, "generated": generated, "sheet": str(args.sheet.relative_to(ROOT)),
              "load_avg_1min": round(os.getloadavg()[0], 2)}
    if args.json_out:
        from core.io import write_results_json

        write_results_json(args.json_out, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
