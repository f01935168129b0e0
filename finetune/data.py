"""Training examples for fine-tuning: image+caption folders, a catalog, and preference pairs.

Everything here is plain data (paths, captions) plus one function that turns an image into the
tensor a VAE expects, so each training method reads its inputs the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from core.errors import InputError
from core.io import read_jsonl
from core.validate import check_image_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
ImageLike = Union[Path, "PIL.Image.Image"]  # noqa: F821 (PIL is imported lazily)


@dataclass(frozen=True)
class CaptionedImage:
    """One training example: an image (a file or an in-memory PIL image) and its caption."""

    image: ImageLike
    caption: str


@dataclass(frozen=True)
class PreferencePair:
    """One Diffusion-DPO example: two images for the same prompt, the chosen one preferred."""

    prompt: str
    chosen: ImageLike
    rejected: ImageLike
    weight: float = 1.0


def load_caption_folder(folder: str | Path) -> list[CaptionedImage]:
    """Images and captions from a folder: `metadata.jsonl` (`file_name`, `text`) or a `.txt` beside each image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("training data folder not found", folder)
    meta = folder / "metadata.jsonl"
    if meta.exists():
        out = []
        for line, row in enumerate(read_jsonl(meta), start=1):
            name, text = row.get("file_name"), row.get("text", row.get("caption"))
            if not isinstance(name, str) or not isinstance(text, str):
                raise InputError("each line needs text fields 'file_name' and 'text'", meta, line)
            path = folder / name
            if not path.is_file():
                raise InputError(f"image not found: {name}", meta, line)
            check_image_file(path)  # header only: bombs and non-images fail before any model loads
            out.append(CaptionedImage(path, text.strip()))
    else:
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        out = []
        for path in images:
            check_image_file(path)
            txt = path.with_suffix(".txt")
            if not txt.is_file():
                raise InputError(f"image {path.name} has no caption file {txt.name} (or give a metadata.jsonl)", folder)
            out.append(CaptionedImage(path, txt.read_text(encoding="utf-8").strip()))
    if not out:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found", folder)
    return out


def catalog_examples(catalog, categories: list[str] | None = None) -> list[CaptionedImage]:
    """One example per catalog item that has an image, captioned with `Item.caption`."""
    out = []
    for item in catalog:
        if not item.image_path or (categories and item.category not in categories):
            continue
        out.append(CaptionedImage(catalog.image_file(item.item_id), item.caption))
    if not out:
        raise InputError("the catalog has no items with images" + (f" in {categories}" if categories else ""), catalog.root)
    return out


def load_examples(source: str | Path) -> list[CaptionedImage]:
    """Examples from a caption folder, a catalog file, or a folder holding `catalog.jsonl`/`catalog.csv`."""
    from recommenders.catalog import Catalog

    source = Path(source)
    if source.is_file() and source.suffix.lower() in (".jsonl", ".csv") and source.name != "metadata.jsonl":
        return catalog_examples(Catalog.load(source))
    if source.is_dir() and any((source / n).exists() for n in ("catalog.jsonl", "catalog.csv")):
        return catalog_examples(Catalog.load(source))
    return load_caption_folder(source)


def _resolve_image(value: object, base: Path, path: Path, line: int, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"'{key}' must be an image path", path, line)
    p = Path(value)
    for cand in ([p] if p.is_absolute() else [base / p, p]):
        if cand.is_file():
            return cand
    raise InputError(f"{key} image not found: {value}", path, line)


def load_preference_pairs(path: str | Path) -> list[PreferencePair]:
    """Pairs from the A/B export JSONL (`prompt`, `chosen`, `rejected`, optional `weight`); paths may be relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("preference pairs file not found", path)
    pairs = []
    for line, row in enumerate(read_jsonl(path), start=1):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise InputError("each line needs a text field 'prompt'", path, line)
        if "rejected_prompt" in row and row["rejected_prompt"] not in ("", row["prompt"]):
            continue  # Diffusion-DPO compares two images of one prompt; skip mixed-prompt pairs
        weight = row.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight < 0:
            raise InputError("'weight' must be a number >= 0", path, line)
        pairs.append(PreferencePair(
            row["prompt"],
            _resolve_image(row.get("chosen"), path.parent, path, line, "chosen"),
            _resolve_image(row.get("rejected"), path.parent, path, line, "rejected"),
            float(weight),
        ))
    if not pairs:
        raise InputError("no usable preference pairs (each needs prompt, chosen, rejected)", path)
    return pairs


def open_rgb(image: ImageLike):
    """An RGB PIL image; transparency is flattened onto white (how catalog product shots are shown)."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                im.load()
                img = im.copy()
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"cannot read image ({e})", image) from None
    else:
        img = image
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def image_to_tensor(image: ImageLike, resolution: int):
    """A (3, R, R) float tensor in [-1, 1]: shorter side resized to R, then center-cropped (the VAE's input)."""
    import numpy as np
    import torch
    from PIL import Image

    img = open_rgb(image)
    w, h = img.size
    scale = resolution / min(w, h)
    img = img.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - resolution) // 2, (h - resolution) // 2
    img = img.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class UserConditions:
    """The shop's shoppers as `PreferenceCondition`s from the one preference path (`recommenders.preference`).

    A backbone (any registered recommender, fitted once per process on the shop's train split) +
    each shopper's time-ordered history -> `preference(...)`. Its `embedding` (attribute-embedding space)
    is the user vector the reward model and the preference adapter read. Histories can be edited (e.g.
    an item left out) before the condition is built.
    """

    def __init__(self, interactions, catalog, model: str = "ease", k: int = 20):
        from recommenders.preference import load_backbone, shop_from_parts

        self.catalog, self.k, self.source = catalog, k, model
        self.item_ids = catalog.item_ids
        self.shop = shop_from_parts(catalog, interactions)
        self.user_ids = list(interactions.user_ids)
        self._histories = {u: [i for i in self.shop.history.get(u, []) if i in catalog] for u in self.user_ids}
        self.backbone = load_backbone(self.shop, model)
        from recommenders.preference import _attribute_embeddings

        self.item_emb = _attribute_embeddings(catalog, self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.item_emb.shape[1])

    def history(self, user_id: str) -> list[str]:
        """The user's items in time order."""
        if user_id not in self._histories:
            raise InputError(f"user {user_id!r} has no interactions")
        return list(self._histories[user_id])

    def condition(self, user_id: str, history: Sequence[str] | None = None):
        """The user's condition from `history` (default: the full logged history)."""
        from recommenders.preference import ShopperEvents, preference

        history = self.history(user_id) if history is None else list(history)
        return preference(self.backbone, ShopperEvents(user_id, history), catalog=self.catalog, k=self.k)

    def profile(self, user_id: str, history: Sequence[str] | None = None):
        """Mean attribute embedding of the history items: what the user did, not what the model predicts."""
        history = self.history(user_id) if history is None else list(history)
        if not history:
            raise InputError(f"user {user_id!r} has an empty history")
        return self.item_emb[[self.catalog.index_of(i) for i in history]].mean(0)

    @property
    def taste_layout(self) -> list[list[str]]:
        """[kind, value] of each entry of the vectors `tastes` returns."""
        from recommenders.taste import attribute_table

        _, vocab, _ = attribute_table(self.catalog, self.item_ids)
        return [[kind, v] for kind, values in vocab.items() for v in values]

    def tastes(self, user_ids: Sequence[str], histories: Sequence[Sequence[str]] | None = None):
        """(N, D) float32 attribute-taste vectors, log(K w) per kind and value, from the choice model of
        `recommenders.taste` fitted to each time-ordered history (default: the logged one)."""
        import numpy as np

        from recommenders.condition import TASTE_FIT
        from recommenders.taste import attribute_table, fit_attribute_taste

        histories = [self.history(u) for u in user_ids] if histories is None else histories
        _, vocab, _ = attribute_table(self.catalog, self.item_ids)
        estimates = fit_attribute_taste(histories, self.catalog, item_ids=self.item_ids, **TASTE_FIT)
        return np.stack([e.vector(vocab) for e in estimates]) if estimates else np.zeros((0, 0), np.float32)

    def embeddings(self, user_ids: Sequence[str], kind: str = "condition"):
        """(N, D) float32 user vectors: the recommender's condition embedding, the history `profile`, or
        the attribute `taste` (choice model over the history)."""
        import numpy as np

        if kind not in ("condition", "profile", "taste"):
            raise InputError(f"user embedding must be 'condition', 'profile' or 'taste', not {kind!r}")
        if kind == "taste":
            unique = list(dict.fromkeys(user_ids))
            vectors = self.tastes(unique)
            row = {u: r for r, u in enumerate(unique)}
            return vectors[[row[u] for u in user_ids]]
        cache: dict[str, object] = {}
        out = np.zeros((len(user_ids), self.dim), np.float32)
        for r, u in enumerate(user_ids):
            if u not in cache:
                cache[u] = self.condition(u).embedding if kind == "condition" else self.profile(u)
            out[r] = cache[u]
        return out
