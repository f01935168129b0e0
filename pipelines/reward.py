"""CTR reward model (inference): click probability of one creative for one user (or audience) in one ad format.

Inputs are the scorer's (open_clip) image embedding of the creative, the recommender's user
embedding (`PreferenceCondition.embedding`) and the format. The image embedding is extended with
zero-shot attribute probes: per attribute kind, a softmax over its similarity to the text
embeddings of the catalog's attribute words (CLIP zero-shot classification, Radford et al. 2021),
so images land in the same attribute space as the user embedding. The two then meet in a
projected elementwise product (a factorization-machine style interaction, Rendle 2010) next to
their own projections, and a small MLP gives the logit. Training lives in
`finetune/reward_model.py`.

    model = RewardModel.from_pretrained("runs/reward")
    ctr = model.predict(scorer.embed_images(images), condition, format="banner")   # (N,) numpy
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from core.errors import InputError

EmbedImages = Callable[[list], "torch.Tensor | np.ndarray"]


class RewardModel(ModelMixin, ConfigMixin):
    """(image embedding, user embedding, format) -> click logit.

    A diffusers model: its shape and where its inputs come from are the constructor's arguments,
    kept in `model.config` and saved as config.json next to model.safetensors (`save_pretrained` /
    `from_pretrained` through `core.pretrained`).

    image_dim, user_dim: sizes of the scorer's image embedding and of the user vector.
    formats: the ad formats it scores. scorer: the scorer whose image embeddings it reads.
    probes: [kind, word] pairs; their text embeddings are weights (`set_probes`).
    probe_scale: softmax temperature of the probe similarities (CLIP's logit scale is ~100).
    user_source: the recommender whose user embeddings it reads.
    user_embedding: "condition" (recommender), "profile" (history mean) or "taste".
    user_layout: [kind, value] of each entry of a "taste" user vector (log(K w) per value): entries
        that are also probe words get an explicit affinity term, sum over kinds of
        a_kind * <P(value | image), taste(value)>.
    """

    @register_to_config
    def __init__(self, image_dim: int, user_dim: int, formats: Sequence[str] = ("product", "banner"),
                 hidden_dim: int = 64, scorer: str = "demo", probes: Sequence[Sequence[str]] = (),
                 probe_scale: float = 50.0, user_source: str = "ease", user_embedding: str = "condition",
                 user_layout: Sequence[Sequence[str]] = ()):
        super().__init__()
        c = self.config
        # text embeddings of the probe words (filled by `set_probes`, saved with the weights)
        self.register_buffer("probe_text", torch.zeros(len(c.probes), c.image_dim))
        self.register_buffer("probe_bias", torch.zeros(len(c.probes)))
        kinds = sorted({k for k, _ in c.probes})
        self._probe_groups = [[i for i, (k, _) in enumerate(c.probes) if k == kind] for kind in kinds]
        self.image_proj = nn.Linear(c.image_dim + len(c.probes), c.hidden_dim)
        self.user_proj = nn.Linear(c.user_dim, c.hidden_dim)
        self.format_emb = nn.Embedding(len(c.formats), c.hidden_dim)
        self.head = nn.Sequential(nn.Linear(4 * c.hidden_dim, c.hidden_dim), nn.GELU(), nn.Linear(c.hidden_dim, 1))
        # The affinity term (a factorization-machine-style match of image attributes and user taste).
        probe_at = {tuple(w): i for i, w in enumerate(c.probes)}
        pairs = [(probe_at[tuple(w)], j) for j, w in enumerate(c.user_layout) if tuple(w) in probe_at]
        self.register_buffer("aff_probe", torch.tensor([p for p, _ in pairs], dtype=torch.long))
        self.register_buffer("aff_user", torch.tensor([u for _, u in pairs], dtype=torch.long))
        self.register_buffer("aff_kind", torch.tensor([kinds.index(c.probes[p][0]) for p, _ in pairs],
                                                      dtype=torch.long))
        self.aff_scale = nn.Parameter(torch.zeros(len(kinds) if pairs else 0))

    def set_probes(self, text_embeddings: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Store the probe words' weights (rows in `config.probes` order): text embeddings for zero-shot
        probes, or the weights and `bias` of per-kind classifiers fitted on the catalog (`catalog_probes`)."""
        self.probe_text.copy_(torch.as_tensor(text_embeddings, dtype=torch.float32))
        if bias is not None:
            self.probe_bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """The image embedding followed by per-kind softmax probabilities of the probe words."""
        if not self.config.probes:
            return image
        sims = image @ self.probe_text.T * self.config.probe_scale + self.probe_bias
        probs = torch.zeros_like(sims)
        for group in self._probe_groups:
            probs[:, group] = torch.softmax(sims[:, group], dim=-1)
        return torch.cat([image, probs], dim=-1)

    def forward(self, image: torch.Tensor, user: torch.Tensor, fmt: torch.Tensor) -> torch.Tensor:
        """Logits (N,) for image (N, Di), user (N, Du) embeddings and format indices (N,)."""
        feats = self.image_features(image)
        hi, hu = self.image_proj(feats), self.user_proj(user)
        logit = self.head(torch.cat([hi * hu, hi, hu, self.format_emb(fmt)], dim=-1)).squeeze(-1)
        if len(self.aff_probe):
            probs = feats[:, self.config.image_dim:]  # the per-kind probe probabilities
            match = probs[:, self.aff_probe] * user[:, self.aff_user]  # (N, pairs)
            logit = logit + (match * self.aff_scale[self.aff_kind]).sum(-1)
        return logit

    def format_index(self, fmt: str) -> int:
        if fmt not in self.config.formats:
            raise InputError(f"the reward model knows formats {', '.join(self.config.formats)}, not {fmt!r}")
        return self.config.formats.index(fmt)

    def taste_vector(self, condition) -> np.ndarray:
        """A condition's attribute weights as this model's taste vector: log(K w) per [kind, value] of
        `config.user_layout` (the form `finetune.data.UserConditions.tastes` trains it on)."""
        layout = self.config.user_layout
        if not layout:
            raise InputError("this reward model has no taste layout; pass a user vector instead of a condition")
        sizes = Counter(kind for kind, _ in layout)
        out = np.zeros(len(layout), np.float32)
        for j, (kind, value) in enumerate(layout):
            weights = condition.attributes.get(kind) or {}
            total = sum(weights.values())
            w = weights.get(value, 0.0) / total if total > 0 else 1.0 / sizes[kind]
            out[j] = np.log(max(sizes[kind] * w, 1e-6))
        return out

    @torch.no_grad()
    def predict(self, image_embeddings, user, format: str = "product") -> np.ndarray:
        """Click probabilities (N,) of N images for one user: a condition, an embedding, or (N, Du) rows."""
        emb = getattr(user, "embedding", user)
        if emb is not user and self.config.user_embedding == "taste":
            emb = self.taste_vector(user)
        elif emb is not user and self.config.user_embedding != "condition":
            raise InputError(f"this reward model reads '{self.config.user_embedding}' user vectors, not a condition's "
                             "embedding; pass the vector (finetune.data.UserConditions.embeddings)")
        if emb is None:
            raise InputError("the reward model needs a user embedding; this condition has none")
        image = torch.as_tensor(np.asarray(image_embeddings, np.float32))
        u = torch.as_tensor(np.asarray(emb, np.float32))
        if image.ndim == 1:
            image = image[None]
        if u.ndim == 1:
            u = u[None].expand(len(image), -1)
        if image.shape[-1] != self.config.image_dim or u.shape[-1] != self.config.user_dim:
            raise InputError(f"reward model expects image/user embeddings of size {self.config.image_dim}/"
                             f"{self.config.user_dim}, got {image.shape[-1]}/{u.shape[-1]}")
        fmt = torch.full((len(image),), self.format_index(format), dtype=torch.long)
        self.eval()
        return torch.sigmoid(self(image, u, fmt)).numpy().astype(np.float64)

    def save_pretrained(self, out_dir: str | Path, metrics: dict | None = None) -> Path:
        """config.json (+ training metrics in its `_extra`) and model.safetensors, both atomic, config last."""
        from core.pretrained import save_module

        return save_module(self, out_dir, extra={"metrics": metrics} if metrics else None)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "RewardModel":
        """Load a folder written by `save_pretrained` (or by an earlier version)."""
        from core.pretrained import load_module

        def upgrade(tensors: dict, model: "RewardModel") -> dict:
            own = model.state_dict()  # folders saved before the learned probes / affinity term existed
            missing = ("probe_bias", "aff_probe", "aff_user", "aff_kind", "aff_scale")
            return {**{k: own[k] for k in missing if k not in tensors and k in own}, **tensors}

        return load_module(cls, path, what="reward model", upgrade=upgrade)
