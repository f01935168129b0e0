"""Train the demo open_clip scorer contrastively on shop images and their captions.

The architecture is a custom open_clip config (`configs.CLIP_CONFIG`: a 4-layer ViT on 8 px
patches of 64 px images, a 2-layer text transformer over the full CLIP vocabulary) registered with
`open_clip.add_model_config`; the result is an open_clip `local-dir:` folder
(`open_clip_config.json` + `open_clip_model.safetensors`) that plain open_clip loads.
The loss is CLIP's symmetric InfoNCE (Radford et al. 2021) via `open_clip.ClipLoss`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.io import atomic_write_json, save_safetensors
from finetune.loop import TrainLoop, cosine_schedule

from .common import set_seed, shop_images
from .configs import CLIP_CONFIG, CLIP_MODEL_NAME, DEFAULT_SETTINGS
from .data import build_shop_images

MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip's (OpenAI's) image normalization
STD = (0.26862954, 0.26130258, 0.27577711)


def register_demo_clip(folder: Path) -> None:
    """Make the demo architecture known to open_clip under `CLIP_MODEL_NAME`."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / f"{CLIP_MODEL_NAME}.json", CLIP_CONFIG)
    open_clip.add_model_config(folder / f"{CLIP_MODEL_NAME}.json")


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the normalized float input open_clip's preprocess produces."""
    x = images_uint8.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def train_clip(out_dir: str | Path, *, steps: int | None = None, seed: int = 0, resume: str | None = None,
               device: str | None = None, progress: bool = True) -> dict:
    """Train into `OUT/demo-clip/`; returns retrieval accuracy on renders with unseen seeds."""
    import open_clip

    cfg = DEFAULT_SETTINGS["clip"]
    steps = steps or cfg.steps
    out_dir = Path(out_dir)
    register_demo_clip(out_dir / "clip-train")
    train = shop_images(out_dir, seed=seed + 303, catalog=None, progress=progress, name="all-combos",
                        held_out=set(), renders_per_combo=1, scenes_per_product=2)
    tokenizer = open_clip.get_tokenizer(CLIP_MODEL_NAME)
    images = torch.from_numpy(train.images)
    tokens = tokenizer(train.captions)
    set_seed(seed)
    model = open_clip.create_model(CLIP_MODEL_NAME, output_dict=True)
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05)
    loop = TrainLoop(out_dir / "clip-train", models={"clip": model}, optimizer=opt, max_steps=steps, seed=seed,
                     lr_scheduler=cosine_schedule(opt, steps, 50), checkpoint_every=cfg.checkpoint_every,
                     device=device, desc="clip", progress=progress)
    model = loop.models["clip"]

    def step_fn(step: int, gen: torch.Generator):
        idx = torch.randperm(len(images), generator=gen)[: cfg.batch_size]  # no duplicate pairs in a batch
        x = normalize(images[idx])
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(-1)
        out = model(x.to(loop.device), tokens[idx].to(loop.device))
        return loss_fn(out["image_features"], out["text_features"], out["logit_scale"])

    result = loop.run(step_fn, resume=resume)
    raw = loop.accelerator.unwrap_model(model).eval()
    dest = out_dir / "demo-clip"
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_json(dest / "open_clip_config.json", {
        "model_cfg": CLIP_CONFIG,
        "preprocess_cfg": {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"},
    })
    # fp16 on disk halves the size; open_clip copies it into its fp32 parameters on load
    save_safetensors({k: v.half() if v.is_floating_point() else v for k, v in raw.state_dict().items()},
                     dest / "open_clip_model.safetensors")
    return {"stage": "clip", **result.to_dict(), **retrieval_accuracy(raw, tokenizer, seed),
            "params": sum(p.numel() for p in raw.parameters())}


@torch.no_grad()
def retrieval_accuracy(model, tokenizer, seed: int) -> dict:
    """Zero-shot accuracy on fresh renders: pick the right value among all of a kind's captions."""
    from .data import LABEL_KINDS, VOCAB, caption

    test = build_shop_images(None, held_out=set(), renders_per_combo=1, scenes_per_product=1, seed=seed + 404,
                             progress=False)
    sub = torch.arange(0, len(test), 3)
    img = torch.nn.functional.normalize(model.encode_image(normalize(torch.from_numpy(test.images[sub]))), dim=-1)
    acc = {}
    for kind in LABEL_KINDS:
        # class prompts: vary the kind's value, keep the image's other attributes
        labels = {k: test.labels[k][sub] for k in LABEL_KINDS}
        correct = 0
        for j in range(len(sub)):
            vals = {k: VOCAB[k][int(labels[k][j])] for k in LABEL_KINDS}
            texts = [caption(**{**vals, kind: v}, scene=None) for v in VOCAB[kind]]
            txt = torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1)
            correct += int((img[j] @ txt.T).argmax()) == int(labels[kind][j])
        acc[f"zero_shot_{kind}"] = correct / len(sub)
    return acc
