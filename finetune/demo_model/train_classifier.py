"""Train the attribute classifier (color / category / pattern) on catalog renders only.

It grades generated images, so it sees every combination (held-out ones too: it is the judge,
not the generator), on every scene, with blur and noise so that soft generated images are read
the way a person would read them. Accuracy is reported on renders with unseen seeds.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from finetune.loop import TrainLoop, cosine_schedule
from pipelines.attribute_classifier import AttributeClassifier, accuracy

from .common import set_seed, shop_images, to_tensor
from .configs import DEFAULT_SETTINGS
from .data import LABEL_KINDS, VOCAB, build_shop_images


def _degrade(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random blur, noise and shift: what a small generator's images look like next to renders."""
    n = x.shape[0]
    if torch.rand((), generator=gen) < 0.5:
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).to(x)[None, None].repeat(3, 1, 1, 1)
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    x = x + torch.randn(x.shape, generator=gen).to(x) * torch.rand(n, 1, 1, 1, generator=gen).to(x) * 0.1
    dx, dy = (int(v) for v in torch.randint(-3, 4, (2,), generator=gen))
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(-1)
    return x.clamp(-1, 1)


def train_classifier(out_dir: str | Path, *, steps: int | None = None, seed: int = 0, resume: str | None = None,
                     device: str | None = None, progress: bool = True) -> dict:
    """Train into `OUT/attribute-classifier/`; returns held-out render accuracy per kind."""
    cfg = DEFAULT_SETTINGS["classifier"]
    steps = steps or cfg.steps
    out_dir = Path(out_dir)
    train = shop_images(out_dir, seed=seed + 101, catalog=None, progress=progress, name="classifier",
                        held_out=set(), renders_per_combo=1, scenes_per_product=2)
    test = build_shop_images(None, held_out=set(), renders_per_combo=1, scenes_per_product=1,
                             seed=seed + 202, progress=progress)
    x_train = to_tensor(train.images)
    y_train = {k: torch.from_numpy(train.labels[k]) for k in LABEL_KINDS}
    set_seed(seed)
    model = AttributeClassifier({k: list(VOCAB[k]) for k in LABEL_KINDS})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    loop = TrainLoop(out_dir / "classifier-train", models={"classifier": model}, optimizer=opt, max_steps=steps,
                     seed=seed, lr_scheduler=cosine_schedule(opt, steps, 50), checkpoint_every=cfg.checkpoint_every,
                     device=device, desc="classifier", progress=progress)
    model = loop.models["classifier"]

    def step_fn(step: int, gen: torch.Generator):
        idx = torch.randint(0, len(x_train), (cfg.batch_size,), generator=gen)
        logits = model(_degrade(x_train[idx], gen).to(loop.device))
        losses = {k: F.cross_entropy(logits[k], y_train[k][idx].to(loop.device)) for k in LABEL_KINDS}
        return sum(losses.values())

    result = loop.run(step_fn, resume=resume)
    raw = loop.accelerator.unwrap_model(model).eval()
    truths = [{k: VOCAB[k][int(test.labels[k][i])] for k in LABEL_KINDS} for i in range(len(test))]
    acc = accuracy(raw.predict(test.images), truths)
    raw.save(out_dir / "attribute-classifier")
    return {"stage": "classifier", **result.to_dict(), "test_accuracy": acc, "test_images": len(test),
            "params": sum(p.numel() for p in raw.parameters())}
