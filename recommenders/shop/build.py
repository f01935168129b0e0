"""Writes the demo shop to a folder, byte-for-byte the same for the same seed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from core.errors import InputError
from core.io import atomic_write_json, atomic_write_text, sha256_file

from ..catalog import Catalog, Item
from .draw import SIZE, draw_product
from .tastes import CLICK_MODEL, TASTE_MODEL, sample_taste
from .vocab import CATEGORIES, COLORS, GENERATOR_VERSION, PATTERNS, SEGMENTS, STYLES
from .world import (
    BROWSING_MODEL,
    IMPRESSION_MODEL,
    OUTFIT_MODEL,
    design_catalog,
    sample_appeal,
    sample_impressions,
    sample_interactions,
    sample_outfits,
)

N_USERS = 1200

# Independent random streams, so e.g. drawing fewer images never changes the users.
_STREAM = {"catalog": 1, "images": 2, "users": 3, "appeal": 4, "interactions": 5, "impressions": 6, "outfits": 7}


def _rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM[stream], *extra])


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def _csv(header: tuple[str, ...], rows: Iterable[tuple]) -> str:
    return ",".join(header) + "\n" + "".join(",".join(str(x) for x in row) + "\n" for row in rows)


def write_shop(seed: int, out_dir: str | Path, *, n_users: int = N_USERS, image_ids: Iterable[str] | None = None,
               progress: bool = True) -> Path:
    """Generate the shop into `out_dir` (created if needed); `image_ids` limits which images are drawn (tests).

    Use `build_shop` for anything a user sees: it writes here through a temp folder and renames it.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    products = design_catalog(_rng(seed, "catalog"))

    wanted = None if image_ids is None else set(image_ids)
    for index, p in enumerate(tqdm(products, desc="drawing", disable=not progress)):
        if wanted is None or p.item_id in wanted:
            image = draw_product(p.category, p.color, p.pattern, p.style, _rng(seed, "images", index))
            # Plain save: the whole folder is the atomic unit (build_shop renames it into place), and
            # an fsync per image made the build several times slower on a busy disk.
            image.save(out / "images" / f"{p.item_id}.png", format="PNG", optimize=False)
    items = [Item(p.item_id, p.title, p.category, p.attributes, f"images/{p.item_id}.png") for p in products]
    Catalog(items, root=out).save(out / "catalog.jsonl")

    users_rng = _rng(seed, "users")
    tastes = [sample_taste(users_rng, f"u{k + 1:04d}") for k in range(n_users)]
    atomic_write_text(out / "users.jsonl", _jsonl(t.to_dict() for t in tastes))

    appeal = sample_appeal(_rng(seed, "appeal"), len(products))
    events = sample_interactions(_rng(seed, "interactions"), products, tastes, appeal, progress=progress)
    events.sort(key=lambda r: (r[2], r[0], r[1]))
    atomic_write_text(out / "interactions.csv", _csv(("user_id", "item_id", "timestamp", "click"), events))

    last_event = {}
    for user, _, t, _ in events:
        last_event[user] = max(t, last_event.get(user, t))
    impressions = sample_impressions(_rng(seed, "impressions"), products, tastes, appeal, last_event,
                                     progress=progress)
    atomic_write_text(out / "impressions.csv",
                      _csv(("impression_id", "user_id", "item_id", "format", "timestamp", "click"), impressions))

    outfits = sample_outfits(_rng(seed, "outfits"), products)
    atomic_write_text(out / "outfits.jsonl", _jsonl(outfits))

    data_files = ["catalog.jsonl", "users.jsonl", "interactions.csv", "impressions.csv", "outfits.jsonl"]
    info = {
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "image_size": SIZE,
        "vocabularies": {"category": list(CATEGORIES), "color": {k: list(v) for k, v in COLORS.items()},
                         "pattern": list(PATTERNS), "style": list(STYLES)},
        "segments": {k: {kind: list(v) for kind, v in d.items()} for k, d in SEGMENTS.items()},
        "taste_model": TASTE_MODEL,
        "click_model": CLICK_MODEL,
        "browsing_model": BROWSING_MODEL,
        "impression_model": IMPRESSION_MODEL,
        "outfit_model": OUTFIT_MODEL,
        "item_appeal": {p.item_id: float(a) for p, a in zip(products, appeal)},
        "counts": {"items": len(products), "categories": len(CATEGORIES), "colors": len(COLORS),
                   "patterns": len(PATTERNS), "styles": len(STYLES), "users": len(tastes),
                   "interactions": len(events), "outfits": len(outfits), "impressions": len(impressions),
                   "impression_clicks": int(sum(r[-1] for r in impressions))},
        "sha256": {name: sha256_file(out / name) for name in data_files},
    }
    atomic_write_json(out / "shop.json", info)
    for f in [out / "images", *out.rglob("*")]:  # atomic writes create 0600 temp files; a shipped shop is world-readable
        os.chmod(f, 0o755 if f.is_dir() else 0o644)
    return out


def build_shop(seed: int, out_dir: str | Path, *, overwrite: bool = False, n_users: int = N_USERS,
               image_ids: Iterable[str] | None = None, progress: bool = True) -> Path:
    """Build the demo shop into `out_dir` all at once: written to a temp folder beside it, then renamed.

    A non-empty `out_dir` is refused unless `overwrite` is set and it holds a previous shop (shop.json),
    so a mistyped path never wipes an unrelated folder.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise InputError("output folder exists and is not empty (pass --force to replace a demo shop)", out)
        if not (out / "shop.json").is_file():
            raise InputError("refusing to replace a folder that does not hold a demo shop (no shop.json)", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_shop(seed, tmp, n_users=n_users, image_ids=image_ids, progress=progress)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
