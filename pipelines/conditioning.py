"""Three ways to condition a text-to-image model on a shopper, weakest to strongest, combinable.

1. Keyword prompts: the heaviest attribute keywords of a `PreferenceCondition` fill a template per
   pipeline (explicit keywords as in PMG, Shen et al., WWW 2024), with one negative prompt.
2. Preference tokens: `PreferenceAdapter` maps `condition.embedding` to k extra cross-attention
   tokens appended to the prompt embeddings (PMG's soft preference tokens; Pigeon, Xu et al. 2024,
   personalization tokens). The UNet is unchanged: it reads the tokens through `prompt_embeds`.
   Classifier-free guidance pairs them with the adapter's learned unconditional tokens, so the
   trainer (finetune) drops the embedding to `None` for a share of samples, like caption dropout.
3. Reference images from the user's history: IP-Adapter image embeddings when the user has
   IP-Adapter weights (Ye et al. 2023), otherwise img2img from a history item's picture.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.errors import InputError
from core.io import atomic_write_json, load_safetensors, save_safetensors

if TYPE_CHECKING:
    from PIL import Image

    from recommenders.catalog import Catalog
    from recommenders.condition import PreferenceCondition

# -- 1. keyword prompts ------------------------------------------------------------------------
# Slots are attribute kinds (plus {scene}); a slot nobody fills is left out. The grammar is the
# demo model's caption grammar, "a [style] color pattern category [scene]" (finetune.demo_model.data),
# which any SD checkpoint also reads as plain English.
PROMPT_TEMPLATES: dict[str, str] = {
    "product": "a {style} {color} {pattern} {category}",
    "outfit": "a {style} {color} {pattern} {category}",
    "background": "a {style} {color} {pattern} {category} {scene}",  # the product's words, the user's scene
    "background_plain": "a product {scene}",  # a user's own image: we know nothing of the product
    "banner": "a {color} {pattern} {category} {scene}",  # blurred into a backdrop behind the real product
    "plain": "a {category}",
}
NEGATIVE_PROMPT = "blurry, low quality, deformed, watermark, text"
# Scenes the demo model was trained to draw by name, chosen by the shopper's favourite style.
SCENES_BY_STYLE = {"formal": "on a marble table", "casual": "on a beach", "sporty": "on green grass"}
DEFAULT_SCENE = "in a studio"
_SLOT = re.compile(r"\{(\w+)\}")


def scene_for(condition: "PreferenceCondition | None") -> str:
    """The scene a shopper's favourite style suggests (a studio when unknown)."""
    style = (condition.top_keywords(1, kinds=("style",)).get("style") or [None])[0] if condition else None
    return SCENES_BY_STYLE.get(style, DEFAULT_SCENE)


def keyword_prompt(condition: "PreferenceCondition | None", template: str = "product",
                   **fixed: str | None) -> str:
    """Fill a template (a name in PROMPT_TEMPLATES or a format string) with the condition's top keywords.

    `fixed` values (e.g. `category="shirt"` for a requested product) win over the condition's.
    """
    fmt = PROMPT_TEMPLATES.get(template, template)
    top = condition.top_keywords(1) if condition is not None else {}
    values = {k: v[0] for k, v in top.items() if v}
    if "{scene}" in fmt:
        values["scene"] = scene_for(condition)
    values.update({k: v for k, v in fixed.items() if v})

    parts = []
    for segment in fmt.split(","):
        words = _SLOT.sub(lambda m: values.get(m.group(1), ""), segment).split()
        if words and words != ["a"]:  # an empty slot vanishes; a lone article goes with it
            if words[0] == "a" and PLURAL_NOUNS & set(words[1:]):
                words = words[1:]  # "formal navy trousers", as the catalog's captions say it
            parts.append(" ".join(words))
    return ", ".join(parts)


# Garments named in the plural take no article ("a shoes" reads wrong and differs from the captions).
PLURAL_NOUNS = {"trousers", "shoes", "jeans", "pants", "shorts", "sneakers", "boots", "sandals", "socks",
                "leggings", "glasses", "sunglasses", "heels", "earrings"}


# -- 2. preference tokens ----------------------------------------------------------------------
@dataclass
class PreferenceAdapterConfig:
    """Shape of a preference adapter; saved as config.json next to its safetensors weights."""

    embedding_dim: int
    cross_attention_dim: int
    num_tokens: int = 4
    hidden_dim: int = 256
    scale: float = 1.0  # multiplies the tokens at inference; 0 turns the adapter off

    @classmethod
    def from_dict(cls, d: dict, path: Path | None = None) -> "PreferenceAdapterConfig":
        try:
            return cls(**{k: d[k] for k in ("embedding_dim", "cross_attention_dim")},
                       **{k: d[k] for k in ("num_tokens", "hidden_dim", "scale") if k in d})
        except (KeyError, TypeError) as e:
            raise InputError(f"bad preference adapter config ({e})", path) from None


class PreferenceAdapter(nn.Module):
    """Maps a preference embedding (B, E) to `num_tokens` cross-attention tokens (B, k, D)."""

    config_name = "config.json"
    weights_name = "adapter.safetensors"

    def __init__(self, config: PreferenceAdapterConfig):
        super().__init__()
        self.config = config
        c = config
        self.proj = nn.Sequential(nn.Linear(c.embedding_dim, c.hidden_dim), nn.GELU(),
                                  nn.Linear(c.hidden_dim, c.num_tokens * c.cross_attention_dim))
        self.norm = nn.LayerNorm(c.cross_attention_dim)  # match the scale of a text encoder's output
        self.null_tokens = nn.Parameter(torch.zeros(c.num_tokens, c.cross_attention_dim))

    def forward(self, embedding: torch.Tensor | None, batch_size: int = 1) -> torch.Tensor:
        """Tokens for `embedding`, or the unconditional tokens when it is None (guidance, dropout)."""
        c = self.config
        if embedding is None:
            return self.null_tokens.unsqueeze(0).expand(batch_size, -1, -1)
        if embedding.ndim == 1:
            embedding = embedding.unsqueeze(0)
        if embedding.shape[-1] != c.embedding_dim:
            raise InputError(f"preference embedding has {embedding.shape[-1]} values, "
                             f"the adapter expects {c.embedding_dim}")
        tokens = self.proj(embedding).view(embedding.shape[0], c.num_tokens, c.cross_attention_dim)
        return self.norm(tokens)

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write config.json + adapter.safetensors (atomically)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.state_dict(), out_dir / self.weights_name)
        atomic_write_json(out_dir / self.config_name, {"_class_name": "PreferenceAdapter", **asdict(self.config)})
        return out_dir

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "PreferenceAdapter":
        """Load an adapter folder written by `save_pretrained`."""
        path = Path(path)
        cfg_file = path / cls.config_name
        if not cfg_file.is_file():
            raise InputError("not a preference adapter folder (no config.json)", path)
        from core.jsonio import read_json

        raw = read_json(cfg_file, what="config.json")
        raw.pop("_class_name", None)
        from core.weights import check_fits_in_memory, module_bytes

        config = PreferenceAdapterConfig.from_dict(raw, cfg_file)
        check_fits_in_memory(module_bytes(lambda: cls(config)), "the adapter's config.json", cfg_file)
        adapter = cls(config)
        state = load_safetensors(path / cls.weights_name)
        missing, unexpected = adapter.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(f"adapter weights do not match its config (missing {missing}, unexpected {unexpected})",
                             path / cls.weights_name)
        adapter.source = str(path)  # provenance: Creatives name the adapter they used
        return adapter.eval()


def encode_prompts(pipe, prompt: str, negative_prompt: str, *, guidance: float,
                   adapter: PreferenceAdapter | None = None,
                   embedding: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prompt and negative-prompt embeddings, with preference tokens appended when an adapter is given.

    The conditional branch gets the adapter's tokens for `embedding`; the unconditional branch gets
    its null tokens, so both have the same length and guidance pushes toward the preference.
    """
    device = pipe._execution_device
    do_cfg = guidance > 1.0
    cond, uncond = pipe.encode_prompt(prompt, device, 1, do_cfg, negative_prompt)
    if adapter is None or embedding is None:
        return cond, uncond
    adapter = adapter.to(device=device, dtype=cond.dtype)
    with torch.no_grad():
        emb = torch.as_tensor(embedding, dtype=cond.dtype, device=device)
        tokens = adapter(emb) * adapter.config.scale
        if tokens.shape[-1] != cond.shape[-1]:
            raise InputError(f"preference adapter makes {tokens.shape[-1]}-d tokens, "
                             f"the text encoder makes {cond.shape[-1]}-d ones")
        cond = torch.cat([cond, tokens], dim=1)
        if uncond is not None:
            uncond = torch.cat([uncond, adapter(None) * adapter.config.scale], dim=1)
    return cond, uncond


# -- 3. reference images -----------------------------------------------------------------------
def reference_item(condition: "PreferenceCondition | None", catalog: "Catalog | None",
                   category: str | None = None) -> str | None:
    """The history item whose picture best guides generation: same category first, else the latest."""
    if condition is None or catalog is None:
        return None
    refs = [r for r in condition.reference_items if r in catalog and catalog[r].image_path]
    same = [r for r in refs if category is None or catalog[r].category == category]
    return (same or refs or [None])[0]


def item_picture(catalog: "Catalog", item_id: str, size: tuple[int, int],
                 backdrop: tuple[int, int, int] = (255, 255, 255)) -> "Image.Image":
    """An item's RGBA image flattened on a plain backdrop and resized, ready for img2img or IP-Adapter."""
    from PIL import Image

    rgba = catalog.load_image(item_id)
    flat = Image.new("RGB", rgba.size, backdrop)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat.resize(size, Image.BICUBIC)


def load_ip_adapter(pipe, path: str | Path, scale: float = 0.6, allow_unsafe: bool = False) -> str:
    """Load IP-Adapter weights (a .safetensors file beside an `image_encoder/` folder) into `pipe`."""
    from core.weights import check_ip_adapter

    weight = check_ip_adapter(path, allow_unsafe=allow_unsafe)
    pipe.load_ip_adapter(str(weight.parent), subfolder="", weight_name=weight.name,
                         image_encoder_folder="image_encoder")
    pipe.set_ip_adapter_scale(scale)
    return str(weight)


def ip_adapter_embeds(pipe, image: "Image.Image", guidance: float, num_images: int = 1) -> list[torch.Tensor]:
    """IP-Adapter image embeddings of a reference picture, shaped for `ip_adapter_image_embeds`."""
    return pipe.prepare_ip_adapter_image_embeds([image], None, pipe._execution_device, num_images, guidance > 1.0)
