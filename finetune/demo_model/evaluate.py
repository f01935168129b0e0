"""Prompt fidelity of a text-to-image model on the held-out shop captions.

For each held-out (category, color, pattern) combination, generate images and let the attribute
classifier (trained on catalog renders only) read them back; report accuracy per attribute, the
demo scorer's CLIP score, the time taken, and optionally a contact sheet. With an upscaler (the
demo model's), images are judged at its output size (the classifier reads them box-reduced to 64 px).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from pipelines.attribute_classifier import accuracy

from .data import eval_prompts, held_out_combos

DEFAULT_GUIDANCE = 4.0
DEFAULT_STEPS = 20


@torch.no_grad()
def generate(pipe, prompts: list[str], seed: int, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
             batch_size: int = 50, progress: bool = False, upscaler=None) -> np.ndarray:
    """uint8 (N, H, W, 3) images; image i uses generator seed `seed + i`, so any one can be redone alone.
    With an `upscaler` (`pipelines.upscale.Upscaler`), each batch is upscaled after decoding."""
    pipe.set_progress_bar_config(disable=not progress)
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        gens = [torch.Generator("cpu").manual_seed(seed + i + j) for j in range(len(chunk))]
        res = pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np")
        images = (res.images * 255).round().astype(np.uint8)
        if upscaler is not None:
            from PIL import Image

            from pipelines.upscale import upscale_images

            images = np.stack([np.asarray(im) for im in upscale_images(upscaler, [Image.fromarray(a) for a in images])])
        out.append(images)
    return np.concatenate(out)


def fidelity(pipe, classifier, n: int = 200, seed: int = 0, steps: int = DEFAULT_STEPS,
             guidance: float = DEFAULT_GUIDANCE, scorer=None, progress: bool = False,
             upscaler=None) -> tuple[dict, np.ndarray, list]:
    """(metrics, images, prompts) for `n` held-out prompts (upscaled when an upscaler is given)."""
    prompts = eval_prompts(n, seed=seed)
    texts = [p for p, _ in prompts]
    start = time.time()
    images = generate(pipe, texts, seed, steps, guidance, progress=progress, upscaler=upscaler)
    seconds = time.time() - start
    acc = accuracy(classifier.predict(images), [labels for _, labels in prompts])
    metrics = {f"{k}_accuracy": round(v, 4) for k, v in acc.items()}
    metrics.update(n=n, steps=steps, guidance=guidance, seed=seed, generation_seconds=round(seconds, 1),
                   image_size=int(images.shape[1]),
                   held_out_combinations=len({p for p in texts}))
    if scorer is not None:
        from PIL import Image

        pil = [Image.fromarray(im) for im in images]
        metrics["clip_score"] = round(float(np.mean(scorer.clip_score(pil, texts))), 3)
        # the same images against a caption with the wrong color: how much the scorer cares
        metrics["clip_score_shuffled"] = round(float(np.mean(scorer.clip_score(pil, texts[1:] + texts[:1]))), 3)
    return metrics, images, prompts


def contact_sheet(images: np.ndarray, prompts: list, path: str | Path, predictions: list | None = None,
                  cols: int = 10, rows: int = 6, scale: int | None = None) -> Path:
    """A PNG grid of generated images, each captioned with its prompt (green/red: classifier agrees)."""
    from PIL import Image, ImageDraw

    from core.io import atomic_save_image

    n = min(len(images), cols * rows)
    scale = scale or max(1, 128 // images.shape[1])  # cells of at least 128 px
    h, w = images.shape[1] * scale, images.shape[2] * scale
    cell_h = h + 24
    sheet = Image.new("RGB", (cols * w, ((n + cols - 1) // cols) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet.paste(Image.fromarray(images[i]).resize((w, h), Image.NEAREST), (c * w, r * cell_h))
        text, labels = prompts[i]
        ok = predictions is None or all(predictions[i].get(k) == v for k, v in labels.items())
        words = text.removeprefix("a ").removesuffix(" in a studio").split(" ")
        draw.text((c * w + 2, r * cell_h + h), " ".join(words[:2]), fill=(0, 110, 0) if ok else (180, 0, 0))
        draw.text((c * w + 2, r * cell_h + h + 11), " ".join(words[2:]), fill=(0, 110, 0) if ok else (180, 0, 0))
    return atomic_save_image(sheet, path)


@torch.no_grad()
def controlnet_fidelity(sd_pipe, controlnet, classifier, n: int = 28, seed: int = 0, steps: int = DEFAULT_STEPS,
                        guidance: float = DEFAULT_GUIDANCE, scene: str = "on a beach") -> dict:
    """Does the ControlNet keep the product's outline? Edge F1 with and without it.

    For `n` held-out products (fresh renders in all three styles, so the silhouette is not implied
    by the prompt, which names no style), generate "<product> <scene>" from the product's Canny
    edges; the output's own Canny edges are compared with the input's within 1 px (recall: input
    edges found; precision: output edges that are input edges). The same prompts and seeds without
    the ControlNet give the baseline.
    """
    import cv2
    from diffusers import StableDiffusionControlNetPipeline
    from PIL import Image

    from .data import caption, edge_map, render_product

    combos = sorted(held_out_combos())[:n]
    styles = ("formal", "sporty", "casual")
    products = [np.asarray(render_product(c, col, p, styles[i % 3], seed=50_000 + i).reduce(2))
                for i, (c, col, p) in enumerate(combos)]
    edges = [edge_map(p) for p in products]
    prompts = [caption(c, col, p, scene) for c, col, p in combos]
    pipe = StableDiffusionControlNetPipeline(**{k: v for k, v in sd_pipe.components.items()}, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]
    with_cn = pipe(prompts, image=[Image.fromarray(e) for e in edges], num_inference_steps=steps,
                   guidance_scale=guidance, generator=gens, output_type="np").images
    without = generate(sd_pipe, prompts, seed, steps, guidance)
    kernel = np.ones((3, 3), np.uint8)

    def edge_f1(images) -> float:
        scores = []
        for img, e in zip(images, edges):
            out = edge_map(img)[..., 0] > 0
            target = e[..., 0] > 0
            recall = (cv2.dilate(out.astype(np.uint8), kernel) > 0)[target].mean() if target.any() else 0.0
            precision = (cv2.dilate(target.astype(np.uint8), kernel) > 0)[out].mean() if out.any() else 0.0
            scores.append(2 * precision * recall / max(1e-9, precision + recall))
        return float(np.mean(scores))

    with_u8 = (with_cn * 255).round().astype(np.uint8)
    truths = [{"category": c} for c, _, _ in combos]
    return {"n": n, "scene": scene, "edge_f1_controlnet": round(edge_f1(with_u8), 4),
            "edge_f1_text_only": round(edge_f1(without), 4),
            "category_accuracy_controlnet": round(accuracy(classifier.predict(with_u8), truths)["category"], 4),
            "category_accuracy_text_only": round(accuracy(classifier.predict(without), truths)["category"], 4)}, with_u8


