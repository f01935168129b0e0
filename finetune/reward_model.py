"""CTR reward model: click probability of one creative for one user (or audience) in one ad format.

Inputs are the scorer's (open_clip) image embedding of the creative, the recommender's user
embedding (`PreferenceCondition.embedding`) and the format. The image embedding is extended with
zero-shot attribute probes: per attribute kind, a softmax over its similarity to the text
embeddings of the catalog's attribute words (CLIP zero-shot classification, Radford et al. 2021),
so images land in the same attribute space as the user embedding. The two then meet in a
projected elementwise product (a factorization-machine style interaction, Rendle 2010) next to
their own projections, and a small MLP gives the logit. Trained with log-loss on impression
logs; AUC and log-loss on held-out (later) impressions are reported, next to the demo oracle's.

    model = RewardModel.from_pretrained("runs/reward")
    ctr = model.predict(scorer.embed_images(images), condition, format="banner")   # (N,) numpy
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from recommenders.errors import InputError
from recommenders.io import atomic_write_json, load_safetensors, save_safetensors

EmbedImages = Callable[[list], "torch.Tensor | np.ndarray"]


@dataclass
class RewardModelConfig:
    """Shape of a reward model and where its inputs come from (saved as config.json)."""

    image_dim: int
    user_dim: int
    formats: list[str] = field(default_factory=lambda: ["product", "banner"])
    hidden_dim: int = 64
    scorer: str = "demo"  # the scorer whose image embeddings it reads
    probes: list[list[str]] = field(default_factory=list)  # [kind, word] pairs; their text embeddings are weights
    probe_scale: float = 50.0  # softmax temperature of the probe similarities (CLIP's logit scale is ~100)
    user_source: str = "ease"  # the recommender whose user embeddings it reads
    user_embedding: str = "condition"  # "condition" (recommender), "profile" (history mean) or "taste"
    # [kind, value] of each entry of a "taste" user vector (log(K w) per value): entries that are also probe
    # words get an explicit affinity term, sum over kinds of a_kind * <P(value | image), taste(value)>
    user_layout: list[list[str]] = field(default_factory=list)


class RewardModel(nn.Module):
    """(image embedding, user embedding, format) -> click logit."""

    config_name = "config.json"
    weights_name = "model.safetensors"

    def __init__(self, config: RewardModelConfig):
        super().__init__()
        self.config = c = config
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
        self.register_buffer("aff_kind", torch.tensor([kinds.index(c.probes[p][0]) for p, _ in pairs], dtype=torch.long))
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
        """config.json (+ training metrics) and model.safetensors, both atomic."""
        out_dir = Path(out_dir)
        save_safetensors(self.state_dict(), out_dir / self.weights_name)
        atomic_write_json(out_dir / self.config_name, {"_class_name": "RewardModel", **asdict(self.config),
                                                       "metrics": metrics or {}})
        return out_dir

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "RewardModel":
        """Load a folder written by `save_pretrained`."""
        path = Path(path)
        cfg_file = path / cls.config_name
        if not cfg_file.is_file():
            raise InputError("not a reward model folder (no config.json)", path)
        try:
            raw = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"config.json is not valid JSON ({e.msg})", cfg_file, e.lineno) from None
        if raw.pop("_class_name", None) != "RewardModel":
            raise InputError("config.json does not describe a RewardModel", cfg_file)
        raw.pop("metrics", None)
        try:
            model = cls(RewardModelConfig(**raw))
        except TypeError as e:
            raise InputError(f"bad reward model config ({e})", cfg_file) from None
        try:
            state = load_safetensors(path / cls.weights_name)
            for name in ("probe_bias", "aff_probe", "aff_user", "aff_kind", "aff_scale"):
                if name not in state and name in model.state_dict():  # saved before the affinity term existed
                    state[name] = model.state_dict()[name]
            model.load_state_dict(state)
        except RuntimeError as e:
            raise InputError(f"weights do not match config.json ({str(e).splitlines()[0]})", path) from None
        model.source = str(path)
        return model.eval()


# -- data --------------------------------------------------------------------------------------------
@dataclass
class ImpressionFeatures:
    """Model inputs and labels of an impression log, in log order."""

    image: np.ndarray  # (N, Di)
    user: np.ndarray  # (N, Du)
    fmt: np.ndarray  # (N,) int64 index into `formats`
    click: np.ndarray  # (N,) float32
    timestamp: np.ndarray  # (N,)
    user_id: list[str]
    item_id: list[str]
    format: list[str]
    formats: list[str]

    def subset(self, idx: np.ndarray) -> "ImpressionFeatures":
        return ImpressionFeatures(self.image[idx], self.user[idx], self.fmt[idx], self.click[idx],
                                  self.timestamp[idx], [self.user_id[i] for i in idx],
                                  [self.item_id[i] for i in idx], [self.format[i] for i in idx], self.formats)

    def __len__(self) -> int:
        return len(self.click)


def item_image_embeddings(catalog, item_ids: Sequence[str], embed_images: EmbedImages,
                          batch_size: int = 64) -> dict[str, np.ndarray]:
    """Scorer embeddings of the catalog images of `item_ids` (each item once)."""
    from .data import open_rgb

    unique = sorted(set(item_ids))
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(unique), batch_size):
        chunk = unique[i:i + batch_size]
        images = [open_rgb(catalog.image_file(item)) for item in chunk]
        emb = np.asarray(_to_numpy(embed_images(images)), np.float32)
        out.update(zip(chunk, emb))
    return out


def impression_features(log, catalog, users, embed_images: EmbedImages, user_embedding: str = "condition") -> ImpressionFeatures:
    """Features of every impression: the shown item's image embedding, the user's embedding, the format.

    `log` has columns user_id, item_id, format, click, timestamp (e.g. `recommenders.shop.ImpressionLog`);
    `users` is a `finetune.data.UserConditions`.
    """
    unknown = sorted({i for i in log.item_id if i not in catalog})
    if unknown:
        raise InputError(f"impressions show items missing from the catalog: {', '.join(unknown[:5])}")
    img = item_image_embeddings(catalog, log.item_id, embed_images)
    known = set(users.user_ids)
    missing = sorted({u for u in log.user_id if u not in known})
    if missing:
        raise InputError(f"impressions name users without interactions: {', '.join(missing[:5])}")
    formats = sorted(set(log.format))
    return ImpressionFeatures(
        image=np.stack([img[i] for i in log.item_id]),
        user=users.embeddings(list(log.user_id), kind=user_embedding),
        fmt=np.asarray([formats.index(f) for f in log.format], np.int64),
        click=np.asarray(log.click, np.float32),
        timestamp=np.asarray(log.timestamp),
        user_id=list(log.user_id), item_id=list(log.item_id), format=list(log.format), formats=formats)


def time_split(n_or_ts, test_share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the earlier (train) and the later `test_share` (held-out) impressions, by timestamp."""
    ts = np.asarray(n_or_ts)
    order = np.argsort(ts, kind="stable")
    cut = int(round(len(ts) * (1 - test_share)))
    if cut < 1 or cut >= len(ts):
        raise InputError(f"cannot hold out {test_share:.0%} of {len(ts)} impressions")
    return np.sort(order[:cut]), np.sort(order[cut:])


# -- training -----------------------------------------------------------------------------------------
@dataclass
class RewardTrainConfig:
    """Optimization settings of the reward model."""

    hidden_dim: int = 4  # small and decayed: the lowest validation log-loss on the demo shop's logs
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    epochs: int = 150
    batch_size: int = 512
    patience: int = 15  # epochs without a better validation log-loss before stopping
    valid_share: float = 0.1  # latest share of the training impressions used for early stopping
    seed: int = 0


def _tensors(f: ImpressionFeatures):
    return (torch.from_numpy(f.image), torch.from_numpy(f.user), torch.from_numpy(f.fmt), torch.from_numpy(f.click))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC and log-loss (scikit-learn), plus the mean prediction against the base rate."""
    from sklearn.metrics import log_loss, roc_auc_score

    y = np.asarray(y, np.float64)
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return {"auc": auc, "log_loss": float(log_loss(y, p, labels=[0, 1])), "mean_pred": float(p.mean()),
            "click_rate": float(y.mean()), "n": int(len(y))}


def attribute_probes(catalog, embed_texts: Callable[[list[str]], object]) -> tuple[list[list[str]], np.ndarray]:
    """[kind, word] for every category and attribute value of the catalog, with the scorer's text embeddings."""
    kinds = ["category"] + catalog.attribute_names()
    words = [[k, v] for k in kinds for v in catalog.attribute_values(k)]
    return words, np.asarray(_to_numpy(embed_texts([v for _, v in words])), np.float32)


def catalog_probes(catalog, embed_images: EmbedImages, *, cs: Sequence[float] = (1.0, 10.0, 100.0),
                   seed: int = 0) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """Probes learned from the catalog: per attribute kind, a multinomial logistic regression from the
    scorer's image embedding of each catalog image to the item's value ([kind, word] rows, weights, bias).

    The catalog's own labels read attributes far better than zero-shot text probes on a small scorer
    (demo shop, 5-fold CV: style 0.70 against 0.46 zero-shot). C is picked per kind by 5-fold CV.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    ids = list(catalog.item_ids)
    emb = item_image_embeddings(catalog, ids, embed_images)
    x = np.stack([emb[i] for i in ids]).astype(np.float64)
    words, weights, biases = [], [], []
    for kind in ["category"] + catalog.attribute_names():
        rows = [r for r, i in enumerate(ids) if kind == "category" or kind in catalog[i].attributes]
        y = np.asarray([catalog[ids[r]].category if kind == "category" else catalog[ids[r]].attributes[kind]
                        for r in rows])
        values, counts = np.unique(y, return_counts=True)
        if len(values) < 2:
            continue  # one value: nothing to tell apart
        best_c = 10.0
        if counts.min() >= 5:
            folds = StratifiedKFold(5, shuffle=True, random_state=seed)
            score = {c: cross_val_score(LogisticRegression(C=c, max_iter=3000), x[rows], y, cv=folds).mean()
                     for c in cs}
            best_c = max(cs, key=lambda c: (score[c], -c))
        clf = LogisticRegression(C=best_c, max_iter=3000).fit(x[rows], y)
        coef, icpt = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: logits (0, z)
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
        words += [[kind, str(v)] for v in clf.classes_]
        weights.append(coef)
        biases.append(icpt)
    if not words:
        raise InputError("the catalog has no attribute with two or more values to learn probes from")
    return words, np.vstack(weights).astype(np.float32), np.concatenate(biases).astype(np.float32)


def train_reward_model(train: ImpressionFeatures, cfg: RewardTrainConfig, *, inputs: dict | None = None,
                       probes: tuple[list[list[str]], np.ndarray] | None = None,
                       progress: bool = True) -> tuple[RewardModel, dict]:
    """Fit on the earlier impressions, early-stopping on the latest `valid_share` of them; return model and log.

    `inputs` names where the embeddings came from (`scorer`, `user_source`, `user_embedding`) for the config;
    `probes` (from `attribute_probes`, or `catalog_probes` with a bias row) adds attribute features.
    """
    from tqdm.auto import tqdm

    if len(train) < 20 or train.click.sum() == 0 or train.click.sum() == len(train):
        raise InputError("the impression log needs at least 20 rows with both clicks and non-clicks")
    torch.manual_seed(cfg.seed)
    fit_idx, val_idx = time_split(train.timestamp, cfg.valid_share)
    fit, val = train.subset(fit_idx), train.subset(val_idx)
    words, text, bias = (list(probes) + [None])[:3] if probes is not None else ([], None, None)
    extra = {"probe_scale": 1.0} if bias is not None else {}  # learned probes give logits directly
    model = RewardModel(RewardModelConfig(train.image.shape[1], train.user.shape[1], list(train.formats),
                                          cfg.hidden_dim, probes=words, **extra, **(inputs or {})))
    if words:
        model.set_probes(torch.from_numpy(text), None if bias is None else torch.from_numpy(bias))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    x_img, x_user, x_fmt, y = _tensors(fit)
    v_img, v_user, v_fmt, v_y = _tensors(val)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, bad, history = float("inf"), None, 0, []
    bar = tqdm(range(cfg.epochs), desc="reward model", disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), cfg.batch_size):
            b = perm[i:i + cfg.batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(model(x_img[b], x_user[b], x_fmt[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            v_loss = float(nn.functional.binary_cross_entropy_with_logits(model(v_img, v_user, v_fmt), v_y))
        history.append(round(v_loss, 5))
        bar.set_postfix(valid_log_loss=f"{v_loss:.4f}")
        if v_loss < best - 1e-5:
            best, bad = v_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.load_state_dict(best_state)  # the probe embeddings are buffers: untouched by training
    return model.eval(), {"epochs": len(history), "best_valid_log_loss": best, "valid_log_loss": history}


def evaluate(model: RewardModel, f: ImpressionFeatures) -> dict[str, float]:
    """AUC / log-loss of the model's click probabilities on a feature set."""
    with torch.no_grad():
        p = torch.sigmoid(model(*_tensors(f)[:3])).numpy()
    return binary_metrics(f.click, p)


def fit_and_report(features: ImpressionFeatures, cfg: RewardTrainConfig, out_dir: str | Path | None = None, *,
                   test_share: float = 0.2, oracle: Callable[[str, str, str], float] | None = None,
                   inputs: dict | None = None, probes: tuple | None = None, progress: bool = True) -> dict:
    """Hold out the latest impressions, train, report model (and oracle) AUC/log-loss, and save the model."""
    t0 = time.time()
    train_idx, test_idx = time_split(features.timestamp, test_share)
    train, test = features.subset(train_idx), features.subset(test_idx)
    model, log = train_reward_model(train, cfg, inputs=inputs, probes=probes, progress=progress)
    report = {"impressions": {"train": len(train), "held_out": len(test)}, "train_log": log,
              "held_out": evaluate(model, test), "train": evaluate(model, train)}
    if oracle is not None:
        p = np.asarray([oracle(u, i, fm) for u, i, fm in zip(test.user_id, test.item_id, test.format)])
        report["oracle_held_out"] = binary_metrics(test.click, p)
        report["auc_gap_to_oracle"] = report["oracle_held_out"]["auc"] - report["held_out"]["auc"]
    report["seconds"] = round(time.time() - t0, 2)
    report["config"] = asdict(cfg)
    if out_dir is not None:
        model.save_pretrained(out_dir, metrics={k: report[k] for k in ("held_out", "oracle_held_out") if k in report})
        report["model"] = str(out_dir)
    return report


def _to_numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
