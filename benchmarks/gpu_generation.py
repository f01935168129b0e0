"""GPU generation speed of an SD-1.5-architecture pipeline, built from config (random weights).

Nothing is downloaded: the UNet, VAE and CLIP text encoder are created from SD 1.5's published
architecture with random weights (speed does not depend on the weights), with the real CLIP
tokenizer built offline. Measures denoising iterations per second at 512 px (batch 1, classifier-
free guidance, so the UNet sees batch 2) for:

    diffusers default      StableDiffusionPipeline in fp32, as `from_pretrained` gives it
    fp16 + classic attn    fp16 with the pre-torch-2 attention processor (what SDPA replaces)
    fp16 + SDPA            what `pipelines.device.pick_dtype` picks on CUDA (Atelier's default)
    fp16 + SDPA + CL + compile  channels_last UNet/VAE and `torch.compile(unet)`

Run on a CUDA machine: `python benchmarks/gpu_generation.py [--steps 30] [--json-out PATH]`.
`--tiny --device cpu` runs the same code on a small config (a smoke test of the script).
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

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215,
)
SD15_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
TINY_UNET = dict(SD15_UNET, sample_size=16, block_out_channels=(32, 64, 64, 64), cross_attention_dim=64,
                 attention_head_dim=4, layers_per_block=1, norm_num_groups=8)
TINY_VAE = dict(SD15_VAE, sample_size=128, block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8)
TINY_TEXT = dict(SD15_TEXT, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)


def build_pipeline(tiny: bool):
    """A StableDiffusionPipeline with SD 1.5's architecture (or a tiny one) and random weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from pipelines.tokenizer import build_clip_tokenizer

    torch.manual_seed(0)
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**(TINY_VAE if tiny else SD15_VAE)),
        text_encoder=CLIPTextModel(CLIPTextConfig(**(TINY_TEXT if tiny else SD15_TEXT))),
        tokenizer=build_clip_tokenizer(77),
        unet=UNet2DConditionModel(**(TINY_UNET if tiny else SD15_UNET)),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def measure(pipe, steps: int, repeats: int, device) -> dict:
    """Denoising iterations/s and seconds per image (best of `repeats` after a warm-up)."""
    import torch

    def call():
        g = torch.Generator(device="cpu").manual_seed(0)
        pipe("a navy striped shirt on a beach", num_inference_steps=steps, guidance_scale=7.5, generator=g,
             output_type="np")
        if device.type == "cuda":
            torch.cuda.synchronize()

    call()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    best = min(times)
    return {"it_per_s": round(steps / best, 2), "s_per_image": round(best, 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--tiny", action="store_true", help="small config (a smoke test of the script)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from pipelines.device import describe, pick_device

    device = pick_device(args.device)
    if device.type != "cuda" and not args.tiny:
        print("no CUDA device: this benchmark is for GPUs (use --tiny --device cpu to smoke-test it)")
        return {"skipped": "no CUDA device"}
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    rows = []
    pipe = build_pipeline(args.tiny)
    pipe.set_progress_bar_config(disable=True)

    pipe.to(device, torch.float32)
    rows.append({"setting": "diffusers default (fp32)", **measure(pipe, args.steps, args.repeats, device)})

    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe.to(device, half)
    pipe.unet.set_attn_processor(AttnProcessor())  # the pre-torch-2 math attention, to show what SDPA buys
    half_name = str(half).split(".")[-1]
    rows.append({"setting": f"{half_name} + classic attention", **measure(pipe, args.steps, args.repeats, device)})
    pipe.unet.set_attn_processor(AttnProcessor2_0())  # SDPA: diffusers' default under torch 2
    rows.append({"setting": f"{str(half).split('.')[-1]} + SDPA", **measure(pipe, args.steps, args.repeats, device)})

    if not args.no_compile:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs" if device.type == "cuda" else "default")
        t = time.perf_counter()
        row = measure(pipe, args.steps, args.repeats, device)
        rows.append({"setting": f"{str(half).split('.')[-1]} + SDPA + channels_last + compile", **row,
                     "first_call_s": round(time.perf_counter() - t, 1)})
    base = rows[0]["it_per_s"]
    for r in rows:
        r["speedup_vs_default"] = round(r["it_per_s"] / base, 2)
    result = {"device": describe(device), "torch": torch.__version__, "architecture": "tiny" if args.tiny else "SD 1.5",
              "size": 128 if args.tiny else 512, "steps": args.steps, "rows": rows}
    print(f"{result['device']}  {result['architecture']} {result['size']} px, {args.steps} steps, batch 1 + CFG")
    print(f"{'setting':<48} {'it/s':>8} {'s/image':>9} {'speedup':>8}")
    for r in rows:
        print(f"{r['setting']:<48} {r['it_per_s']:>8.2f} {r['s_per_image']:>9.3f} {r['speedup_vs_default']:>8.2f}")
    if args.json_out:
        from core.io import write_results_json

        write_results_json(args.json_out, result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
