"""Tiny random SD-1.x-architecture models for tests: real diffusers folders, built in seconds, no download.

Every pipeline in Atelier must run on any SD-1.x-architecture folder, so tests build one here
(VAE, UNet, CLIP text encoder, the real CLIP BPE tokenizer built by `pipelines.tokenizer`,
DDIM scheduler) and a matching ControlNet. Weights are random but seeded, so outputs are
deterministic; images mean nothing.

    from tiny_models import build_tiny_sd, build_tiny_controlnet  # tests/ is on sys.path under pytest
    sd_dir = build_tiny_sd(tmp_path / "sd")          # 64x64 images by default
    cn_dir = build_tiny_controlnet(tmp_path / "cn", sd_dir)

Test modules take them as the session fixtures `tiny_sd`, `tiny_controlnet` and `tiny_catalog` (conftest.py).
The end of the file has a tiny collaborative-filtering data set (`tiny_splits`) and the small hyperparameters
(`TINY`) the recommender tests train with.
"""
from __future__ import annotations

from pathlib import Path

TINY_IMAGE_SIZE = 64  # pixels; the VAE downsamples by 2, so the UNet works on 32x32 latents
CROSS_ATTENTION_DIM = 32


def build_tiny_tokenizer(out_dir: str | Path):
    """Build and save the real 49,408-token CLIP tokenizer (pipelines.tokenizer, offline)."""
    from pipelines.tokenizer import build_clip_tokenizer

    tok = build_clip_tokenizer()
    tok.save_pretrained(Path(out_dir))
    return tok


def build_tiny_sd(out_dir: str | Path, *, seed: int = 0, image_size: int = TINY_IMAGE_SIZE) -> Path:
    """Save a tiny random StableDiffusionPipeline folder (SD-1.x layout) and return its path."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    out_dir = Path(out_dir)
    if (out_dir / "model_index.json").exists():
        return out_dir
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=image_size // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM,
        attention_head_dim=8,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=image_size,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=CROSS_ATTENTION_DIM,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    tokenizer = build_tiny_tokenizer(out_dir / "tokenizer")
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir)
    return out_dir


def build_tiny_controlnet(out_dir: str | Path, sd_dir: str | Path, *, seed: int = 1) -> Path:
    """Save a tiny random ControlNet matching the UNet in `sd_dir` and return its path."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(Path(sd_dir) / "unet")
    # the conditioning embedding must downsample by the VAE's factor (2 here): two stages
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    # from_unet zero-initialises the output convs; randomise them so the control image matters in tests
    with torch.no_grad():
        for block in list(controlnet.controlnet_down_blocks) + [controlnet.controlnet_mid_block]:
            block.weight.normal_(0, 0.05)
    controlnet.save_pretrained(out_dir)
    return out_dir


# -- a tiny catalog and a stand-in scorer, for pipeline tests that must not wait for trained models --
TINY_COLORS = {"navy": (24, 38, 110), "red": (205, 30, 40), "yellow": (246, 204, 30), "white": (242, 242, 238)}
TINY_CATEGORIES = ("shirt", "trousers", "shoes", "bag")


def build_tiny_catalog(out_dir: str | Path):
    """A 16-item catalog (4 categories x 4 colors, solid/striped) with 64x64 RGBA pictures."""
    from PIL import Image, ImageDraw

    from recommenders.catalog import Catalog, Item

    out_dir = Path(out_dir)
    if (out_dir / "catalog.jsonl").exists():
        return Catalog.load(out_dir / "catalog.jsonl")
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    items = []
    for c, category in enumerate(TINY_CATEGORIES):
        for k, (color, rgb) in enumerate(TINY_COLORS.items()):
            item_id = f"t{c}{k}"
            pattern = "striped" if (c + k) % 2 else "solid"
            style = "formal" if k % 2 else "casual"
            im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
            d = ImageDraw.Draw(im)
            d.rounded_rectangle((10 + 3 * c, 8, 54 - 3 * c, 56), radius=6, fill=(*rgb, 255))
            if pattern == "striped":
                for y in range(12, 56, 10):
                    d.rectangle((10 + 3 * c, y, 54 - 3 * c, y + 3), fill=(30, 30, 30, 255))
            im.save(out_dir / "images" / f"{item_id}.png")
            items.append(Item(item_id, f"a {style} {color} {pattern} {category}", category,
                              {"color": color, "pattern": pattern, "style": style}, f"images/{item_id}.png"))
    catalog = Catalog(items, root=out_dir)
    catalog.save(out_dir / "catalog.jsonl")
    return Catalog.load(out_dir / "catalog.jsonl")


class ColorScorer:
    """A stand-in for the open_clip scorer with the same verbs: embeddings from an image's colors.

    `embed_images` gives the mean RGB of opaque pixels plus a darkness feature (unit norm);
    `embed_texts` the RGB of a known color word; `clip_score` their cosine. Deterministic and instant.
    """

    def embed_images(self, images):
        import numpy as np

        rows = []
        for im in images:
            arr = np.asarray(im.convert("RGBA"), dtype=np.float64)
            a = arr[..., 3:] / 255.0
            mean = (arr[..., :3] * a).sum((0, 1)) / max(a.sum(), 1e-6) / 255.0
            rows.append(np.append(mean, 1.0 - mean.mean()))
        x = np.asarray(rows)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def embed_texts(self, texts):
        import numpy as np

        rows = []
        for t in texts:
            rgb = next((np.asarray(v) / 255.0 for k, v in TINY_COLORS.items() if k in t.split()), np.full(3, 0.5))
            rows.append(np.append(rgb, 1.0 - rgb.mean()))
        x = np.asarray(rows)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def clip_score(self, images, texts):
        return (self.embed_images(images) * self.embed_texts(texts)).sum(1)


def build_tiny_ip_adapter(out_dir: str | Path, sd_dir: str | Path, *, seed: int = 2) -> Path:
    """A tiny random IP-Adapter for the UNet in `sd_dir`: `ip-adapter.safetensors` + `image_encoder/`.

    Same layout as the published IP-Adapter files (Ye et al. 2023): `image_proj.*` maps the CLIP
    image embedding to 4 tokens; `ip_adapter.{1,3,5..}.to_{k,v}_ip.weight` for each cross-attention.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    out_dir = Path(out_dir)
    weights = out_dir / "ip-adapter.safetensors"
    if weights.exists():
        return weights
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(Path(sd_dir) / "unet")
    cross, image_dim = unet.config.cross_attention_dim, 16
    # 224 px input: the processor diffusers builds by default resizes to 224
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=image_dim, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        image_size=224, patch_size=32))
    encoder.save_pretrained(out_dir / "image_encoder")
    state = {"image_proj.proj.weight": torch.randn(4 * cross, image_dim) * 0.1,
             "image_proj.proj.bias": torch.zeros(4 * cross),
             "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key_id, channels = 1, list(unet.config.block_out_channels)
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention gets no image branch
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.1
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.1
        key_id += 2  # the original checkpoints number cross-attention layers 1, 3, 5, ...
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    return weights


# -- a tiny collaborative-filtering data set and hyperparameters small enough for unit tests -----------
TINY = {
    "mostpop": {},
    "itemknn": {"k": 5},
    "ease": {"l2": 10.0},
    "multivae": {"hidden": [16], "latent": 8, "epochs": 3, "batch_size": 16},
    "diffrec": {"hidden": [16], "epochs": 3, "batch_size": 16, "steps": 5, "sampling_start": 2,
                "sampling_steps": 3},
    "ldiffrec": {"n_clusters": 2, "latent": 8, "hidden": [16], "epochs": 3, "batch_size": 16, "steps": 5,
                 "vae_dropout": 0.0},
    "giffcf": {"embed_dim": 8, "epochs": 3, "batch_size": 16, "eval_every": 1, "patience": 5},
}


def tiny_splits(n_users=48, n_items=80, seed=0):
    """Two user groups, each liking its own half of the catalog: a structure every model can learn."""
    import numpy as np
    import scipy.sparse as sp

    from recommenders.splits import CFSplits

    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % 2
    likes = np.zeros((n_users, n_items), bool)
    for u in range(n_users):
        half = np.arange(n_items // 2) + group[u] * (n_items // 2)
        likes[u, rng.choice(half, size=12, replace=False)] = True
    parts = {"train": np.zeros_like(likes), "valid": np.zeros_like(likes), "test": np.zeros_like(likes)}
    for u in range(n_users):
        items = rng.permutation(np.flatnonzero(likes[u]))
        parts["train"][u, items[:8]] = True
        parts["valid"][u, items[8:10]] = True
        parts["test"][u, items[10:]] = True
    mats = {k: sp.csr_matrix(v.astype(np.float32)) for k, v in parts.items()}
    # item embeddings that know the two halves (as LightGCN embeddings would), plus noise
    emb = (np.outer(np.arange(n_items) < n_items // 2, [1, -1, 1, -1]) + 0.3 * rng.normal(size=(n_items, 4)))
    emb = emb.astype(np.float32)
    return CFSplits("tiny", mats["train"], mats["valid"], mats["test"], item_emb=emb,
                    item_ids=[f"i{j}" for j in range(n_items)])
