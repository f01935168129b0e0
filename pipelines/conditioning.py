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
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from core.errors import InputError

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
class PreferenceAdapter(ModelMixin, ConfigMixin):
    """Maps a preference embedding (B, E) to `num_tokens` cross-attention tokens (B, k, D).

    A diffusers model: `PreferenceAdapter(embedding_dim=64, cross_attention_dim=768)`, its settings in
    `adapter.config`, saved and loaded as a folder of config.json + model.safetensors
    (`save_pretrained` / `from_pretrained`, through `core.pretrained`: checksummed, no pickles; folders
    of earlier versions, with `adapter.safetensors`, still load). `scale` multiplies the tokens at
    inference; 0 turns the adapter off.

    Which embedding it reads: with `taste_vocabulary` ([[kind, value], ...]) the adapter carries
    per-value prototypes in the scorer's image-embedding space (buffers `taste_prototypes`,
    `taste_center`; `pipelines.taste_embedding`) and reads a condition's attribute weights mixed
    over them; without it (folders saved before), it reads `condition.embedding` as it was made.
    `condition_embedding(condition)` gives the right one either way. An image-space adapter also has
    another head: it standardises its input (`(e - taste_center) / taste_spread`, since tastes sit close
    together in that space) and adds a zero-initialised projection to its null tokens, so before
    training its tokens equal the null ones and guidance sees no user-independent push (a measured
    failure of the first head: near-constant tokens far from the null ones lowered color fidelity).
    """

    @register_to_config
    def __init__(self, embedding_dim: int, cross_attention_dim: int, num_tokens: int = 4, hidden_dim: int = 256,
                 scale: float = 1.0, taste_vocabulary: list[list[str]] | None = None):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(embedding_dim, hidden_dim), nn.GELU(),
                                  nn.Linear(hidden_dim, num_tokens * cross_attention_dim))
        self.null_tokens = nn.Parameter(torch.zeros(num_tokens, cross_attention_dim))
        if taste_vocabulary is None:
            self.norm = nn.LayerNorm(cross_attention_dim)  # match the scale of a text encoder's output
        else:
            if not taste_vocabulary or any(len(row) != 2 for row in taste_vocabulary):
                raise ValueError("taste_vocabulary must be a non-empty list of [kind, value] pairs")
            self.register_buffer("taste_prototypes", torch.zeros(len(taste_vocabulary), embedding_dim))
            self.register_buffer("taste_center", torch.zeros(embedding_dim))
            self.register_buffer("taste_spread", torch.ones(()))
            nn.init.zeros_(self.proj[-1].weight)  # residual on the null tokens: starts as "no preference"
            nn.init.zeros_(self.proj[-1].bias)

    @classmethod
    def for_taste_space(cls, space, cross_attention_dim: int, **kwargs) -> "PreferenceAdapter":
        """An image-space adapter reading conditions through `space` (a `taste_embedding.TasteSpace`)."""
        adapter = cls(embedding_dim=space.dim, cross_attention_dim=cross_attention_dim,
                      taste_vocabulary=[list(map(str, row)) for row in space.vocabulary], **kwargs)
        with torch.no_grad():
            adapter.taste_prototypes.copy_(torch.as_tensor(space.prototypes))
            adapter.taste_center.copy_(torch.as_tensor(space.center))
            adapter.taste_spread.fill_(float(space.spread))
        return adapter

    @property
    def reads_taste(self) -> bool:
        """True when the adapter reads conditions in the scorer's image space (taste prototypes)."""
        return self.config.taste_vocabulary is not None

    def condition_embedding(self, condition: "PreferenceCondition") -> list[float] | None:
        """The embedding this adapter reads for `condition`: its taste mix in image space, or `condition.embedding`."""
        if not self.reads_taste:
            return condition.embedding
        from .taste_embedding import mix_prototypes, taste_weights

        w = taste_weights(condition.attributes, self.config.taste_vocabulary)
        return mix_prototypes(w, self.taste_prototypes.detach().cpu().double().numpy(),
                              self.taste_center.detach().cpu().double().numpy()).tolist()

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
        if self.reads_taste:
            x = (embedding - self.taste_center) / self.taste_spread.clamp(min=1e-6)
            return self.null_tokens + self.proj(x).view(embedding.shape[0], c.num_tokens, c.cross_attention_dim)
        tokens = self.proj(embedding).view(embedding.shape[0], c.num_tokens, c.cross_attention_dim)
        return self.norm(tokens)

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write config.json + model.safetensors (atomically, config last)."""
        from core.pretrained import save_module

        return save_module(self, out_dir)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "PreferenceAdapter":
        """Load an adapter folder written by `save_pretrained` (or by an earlier version)."""
        from core.pretrained import WEIGHTS_NAME, load_module

        return load_module(cls, path, what="preference adapter", weights_names=(WEIGHTS_NAME, "adapter.safetensors"))


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
