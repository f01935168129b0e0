"""Train the demo 2x upscaler (`pipelines.upscale.Upscaler`): 64 px generator-like input -> 128 px render.

Pairs: a product drawn at 128 px (the catalog's renders, plus fresh draws of the shop's generator
with other seeds) composited on one of the stages' scenes is the target; the same image reduced to
64 px and passed through the demo VAE (encode, decode) is the input, so the network learns to undo
what the generator's own decoder leaves (soft edges, smeared patterns), not only a box filter.
Every tenth catalog item is held out of training; `evaluate_upscaler` measures on those.
L1 loss on random crops (the network is fully convolutional), as the VAE stage trains. The network
trains without the box-consistency projection; the exported `demo-upscaler/` turns it on
(`export.assemble_upscaler`), and the report measures both.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from core.io import atomic_write_json, load_safetensors, save_safetensors
from finetune.loop import TrainLoop, cosine_schedule

from .backgrounds import SCENES, composite
from .common import image_grid, set_seed, to_tensor, to_uint8
from .configs import DEFAULT_SETTINGS
from .data import DEFAULT_CATALOG

HOLD_OUT_EVERY = 10  # catalog items 0, 10, 20, ... are never trained on
SHIPPED_VAE = Path(__file__).resolve().parents[2] / "assets" / "models" / "demo-sd" / "vae"


def _specs(catalog: str | Path | None, fresh_per_combo: int, seed: int, held_out: bool):
    """(image path or None, category, color, pattern, style, draw seed) for the training or held-out split."""
    from recommenders.shop.vocab import CATEGORIES, COLORS, PATTERNS, STYLES

    specs = []
    if catalog is not None and Path(catalog).exists():
        from recommenders.catalog import Catalog

        cat = Catalog.load(catalog)
        for i, item in enumerate(cat):
            if (i % HOLD_OUT_EVERY == 0) == held_out:
                specs.append((cat.image_file(item.item_id), item.category, None, None, None, 0))
    if not held_out:
        rng = np.random.default_rng(seed + 17)
        k = 0
        for c in CATEGORIES:
            for color in COLORS:
                for pattern in PATTERNS:
                    for _ in range(fresh_per_combo):
                        style = STYLES[int(rng.integers(len(STYLES)))]
                        specs.append((None, c, color, pattern, style, 300_000 + seed * 7919 + k))
                        k += 1
    return specs


@torch.no_grad()
def through_vae(vae, images_u8: np.ndarray, batch: int = 64) -> np.ndarray:
    """uint8 (N, 64, 64, 3) -> the same after the VAE's encode (latent mean) and decode."""
    out = []
    dev = next(vae.parameters()).device
    for i in range(0, len(images_u8), batch):
        x = to_tensor(images_u8[i : i + batch]).to(dev)
        out.append(to_uint8(vae.decode(vae.encode(x).latent_dist.mean).sample.float()))
    return np.concatenate(out)


def build_pairs(vae, catalog: str | Path | None = DEFAULT_CATALOG, *, fresh_per_combo: int = 2, seed: int = 0,
                held_out: bool = False, max_pairs: int | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """{"hi": (N, 128, 128, 3) renders, "small": (N, 64, 64, 3) box-reduced, "lo": `small` through the VAE}."""
    from PIL import Image
    from tqdm.auto import tqdm

    from .data import render_product

    specs = _specs(catalog, fresh_per_combo, seed, held_out)[:max_pairs]
    rng = np.random.default_rng(seed + (1 if held_out else 0))
    hi, small = [], []
    for path, cat, color, pattern, style, s in tqdm(specs, desc="render sr pairs", disable=not progress):
        if path is not None:
            with Image.open(path) as im:
                rgba = np.asarray(im.convert("RGBA").resize((128, 128), Image.BOX))
        else:
            rgba = np.asarray(render_product(cat, color, pattern, style, s))
        img = composite(rgba, SCENES[int(rng.integers(len(SCENES)))], rng)
        hi.append(img)
        small.append(np.asarray(Image.fromarray(img).reduce(2)))
    small = np.stack(small)
    return {"hi": np.stack(hi), "small": small, "lo": through_vae(vae, small)}


def cached_pairs(out_dir: Path, vae, vae_name: str, *, seed: int, fresh_per_combo: int, catalog, held_out: bool,
                 max_pairs: int | None, progress: bool) -> dict[str, np.ndarray]:
    """`build_pairs`, cached as `OUT/data/upscaler-{train,heldout}.safetensors` (+ JSON naming its settings)."""
    name = "upscaler-heldout" if held_out else "upscaler-train"
    tensors_path, meta_path = out_dir / "data" / f"{name}.safetensors", out_dir / "data" / f"{name}.json"
    meta = {"seed": seed, "fresh_per_combo": fresh_per_combo, "catalog": str(catalog), "vae": vae_name,
            "max_pairs": max_pairs}
    if tensors_path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == meta:
        return {k: v.numpy() for k, v in load_safetensors(tensors_path).items()}
    pairs = build_pairs(vae, catalog, fresh_per_combo=fresh_per_combo, seed=seed, held_out=held_out,
                        max_pairs=max_pairs, progress=progress)
    save_safetensors({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in pairs.items()}, tensors_path)
    atomic_write_json(meta_path, meta)
    return pairs


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR in dB of two [-1, 1] batches (peak-to-peak 2)."""
    mse = (a.clamp(-1, 1) - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(4.0 / mse)).mean())


def mean_gradient(x: torch.Tensor) -> float:
    """Mean gradient magnitude (finite differences, in 0-255 units per pixel): higher is crisper."""
    x = x.clamp(-1, 1).mul(127.5)
    gx, gy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
    return float(torch.sqrt(gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).mean())


@torch.no_grad()
def evaluate_upscaler(model, pairs: dict[str, np.ndarray], batch: int = 64) -> dict:
    """PSNR against the 128 px render and mean gradient, for the upscaler and for bicubic, on `pairs`."""
    from pipelines.upscale import bicubic

    model.eval()
    dev = next(model.parameters()).device
    hi, lo = to_tensor(pairs["hi"]), to_tensor(pairs["lo"])
    sr = torch.cat([model(lo[i : i + batch].to(dev)).float().cpu() for i in range(0, len(lo), batch)])
    bc = bicubic(lo)
    r = lambda v: round(v, 3)  # noqa: E731
    return {"n": len(hi), "psnr_upscaler": r(psnr(sr, hi)), "psnr_bicubic": r(psnr(bc, hi)),
            "gradient_upscaler": r(mean_gradient(sr)), "gradient_bicubic": r(mean_gradient(bc)),
            "gradient_render": r(mean_gradient(hi))}


def load_vae(out_dir: Path | None, device: str | None = None):
    """OUT/vae when this run trained one, else (or with `out_dir=None`) the shipped demo-sd VAE; (vae, its folder)."""
    from diffusers import AutoencoderKL

    own = None if out_dir is None else Path(out_dir) / "vae"
    folder = own if own is not None and (own / "config.json").is_file() else SHIPPED_VAE
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no VAE to make the upscaler's inputs: train the vae stage into {own}")
    vae = AutoencoderKL.from_pretrained(folder, dtype=torch.float32).eval()
    return vae.to(device or "cpu"), folder


def train_upscaler(out_dir: str | Path, *, steps: int | None = None, seed: int = 0, resume: str | None = None,
                   device: str | None = None, progress: bool = True, catalog: str | Path | None = DEFAULT_CATALOG,
                   max_pairs: int | None = None, checkpoint_every: int | None = None) -> dict:
    """Train into `OUT/upscaler/` (an `Upscaler` folder, fp32 safetensors) and return held-out metrics."""
    from pipelines.upscale import Upscaler

    cfg = DEFAULT_SETTINGS["upscaler"]
    steps = steps or cfg.steps
    out_dir = Path(out_dir)
    vae, vae_folder = load_vae(out_dir, device)
    vae_name = "OUT/vae" if vae_folder == out_dir / "vae" else "assets/models/demo-sd/vae"
    kw = dict(seed=seed, fresh_per_combo=cfg.extra["fresh_per_combo"], catalog=catalog, max_pairs=max_pairs,
              progress=progress)
    train = cached_pairs(out_dir, vae, vae_name, held_out=False, **kw)
    test = cached_pairs(out_dir, vae, vae_name, held_out=True, **kw)
    del vae
    hi, lo = to_tensor(train["hi"]), to_tensor(train["lo"])
    set_seed(seed)
    model = Upscaler(**cfg.extra["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    loop = TrainLoop(out_dir / "upscaler-train", models={"upscaler": model}, optimizer=opt, max_steps=steps,
                     seed=seed, lr_scheduler=cosine_schedule(opt, steps, cfg.warmup),
                     checkpoint_every=checkpoint_every or cfg.checkpoint_every, device=device, desc="upscaler",
                     progress=progress)
    model = loop.models["upscaler"]
    crop = cfg.extra["crop"]  # low-resolution crop side; the target crop is twice that

    def step_fn(step: int, gen: torch.Generator):
        idx = torch.randint(0, len(lo), (cfg.batch_size,), generator=gen)
        ox, oy = (int(v) for v in torch.randint(0, lo.shape[-1] - crop + 1, (2,), generator=gen))
        x = lo[idx, :, oy : oy + crop, ox : ox + crop]
        y = hi[idx, :, 2 * oy : 2 * (oy + crop), 2 * ox : 2 * (ox + crop)]
        if torch.rand((), generator=gen) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        l1 = (model(x.to(loop.device)) - y.to(loop.device)).abs().mean()
        return l1

    result = loop.run(step_fn, resume=resume)
    raw = loop.accelerator.unwrap_model(model).eval()
    metrics = evaluate_upscaler(raw, test)
    raw.register_to_config(consistency=True)
    metrics["consistent"] = evaluate_upscaler(raw, test)  # as shipped
    raw.register_to_config(consistency=False)
    with torch.no_grad():  # held-out sheet: VAE input (bicubic) | upscaler | render
        from pipelines.upscale import bicubic

        n = min(8, len(test["lo"]))
        x = to_tensor(test["lo"][:n])
        rows = torch.cat([bicubic(x), raw(x), to_tensor(test["hi"][:n])])
        image_grid(to_uint8(rows), cols=n).save(loop.out_dir / "heldout.png")
    raw.save_pretrained(out_dir / "upscaler", safe_serialization=True)
    return {"stage": "upscaler", **result.to_dict(), "vae": vae_name, "train_pairs": len(hi),
            "heldout": metrics, "params": sum(p.numel() for p in raw.parameters())}
