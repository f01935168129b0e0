"""The product catalog: items with a title, a category, attributes and an image, loaded from CSV or JSONL."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from core.errors import InputError
from core.io import atomic_write_text
from core.tabular import iter_csv_rows, iter_jsonl_objects, parse_id

FIELDS = ("item_id", "title", "category", "attributes", "image_path")


@dataclass
class Item:
    """One product. `attributes` holds keywords such as color, pattern and style."""

    item_id: str
    title: str
    category: str
    attributes: dict[str, str] = field(default_factory=dict)
    image_path: str | None = None

    @property
    def caption(self) -> str:
        """The text used to describe the item to a text-to-image model."""
        return self.title


class Catalog:
    """An ordered collection of items; image paths are relative to the catalog file's folder."""

    def __init__(self, items: list[Item], root: str | Path = "."):
        self.items = list(items)
        self.root = Path(root)
        self._index = {it.item_id: i for i, it in enumerate(self.items)}
        if len(self._index) != len(self.items):
            raise InputError("duplicate item ids in catalog")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __getitem__(self, item_id: str) -> Item:
        try:
            return self.items[self._index[item_id]]
        except KeyError:
            raise InputError(f"unknown item id {item_id!r}") from None

    @property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    def index_of(self, item_id: str) -> int:
        """Dense index of an item (its row in score matrices)."""
        try:
            return self._index[item_id]
        except KeyError:
            raise InputError(f"unknown item id {item_id!r}") from None

    def image_file(self, item_id: str) -> Path:
        """Absolute path of an item's image, which must stay inside the catalog's folder (symlinks included)."""
        from core.paths import inside

        item = self[item_id]
        if not item.image_path:
            raise InputError(f"item {item_id!r} has no image")
        return inside(self.root, item.image_path, what=f"item {item_id!r} image_path")

    def load_image(self, item_id: str):
        """The item's image as an RGBA PIL image, through the shared checks of user images (size, pixel
        count from the header, truncation), like every other picture a user hands us."""
        from core.validate import load_user_image

        return load_user_image(self.image_file(item_id))

    def attribute_names(self) -> list[str]:
        return sorted({k for it in self.items for k in it.attributes})

    def attribute_values(self, name: str) -> list[str]:
        """Sorted distinct values of one attribute kind (the category is an attribute too)."""
        if name == "category":
            return sorted({it.category for it in self.items})
        return sorted({it.attributes[name] for it in self.items if name in it.attributes})

    def categories(self) -> list[str]:
        return self.attribute_values("category")

    # -- persistence ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, check_images: bool = True) -> "Catalog":
        """Load a catalog from `.jsonl` or `.csv` (see README: data formats)."""
        path = Path(path)
        if path.is_dir():
            for name in ("catalog.jsonl", "catalog.csv"):
                if (path / name).exists():
                    path = path / name
                    break
            else:
                raise InputError("folder has no catalog.jsonl or catalog.csv", path)
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            rows = ((line, _item_from_json(obj, path, line)) for line, obj in iter_jsonl_objects(path))
        elif suffix == ".csv":
            rows = ((line, _item_from_csv(row, path, line)) for line, row in _catalog_csv_rows(path))
        else:
            raise InputError("catalog must be a .csv or .jsonl file", path)
        items: list[Item] = []
        first_line: dict[str, int] = {}
        for line, item in rows:
            if item.item_id in first_line:
                raise InputError(f"duplicate item_id {item.item_id!r} (first on line {first_line[item.item_id]})", path, line)
            first_line[item.item_id] = line
            if check_images and item.image_path:
                _check_image(path, item.image_path, line)
            items.append(item)
        return cls(items, root=path.parent)

    def save(self, path: str | Path) -> Path:
        """Write the catalog as JSONL (sorted keys, so equal catalogs give equal bytes)."""
        lines = [json.dumps(asdict(it), sort_keys=True) for it in self.items]
        return atomic_write_text(path, "\n".join(lines) + "\n")


def _check_image(path: Path, image_path: str, line: int) -> None:
    """An item's picture: inside the catalog's folder (no symlink out of it), present, and a safe image
    from its header (size, pixel count: no decompression bomb); nothing is decoded."""
    from core.paths import inside
    from core.validate import check_image_file

    try:
        img = inside(path.parent, image_path, what="image_path")
    except InputError as e:
        raise InputError(e.problem, path, line) from None
    if not img.is_file():
        raise InputError(f"image not found: {image_path}", path, line)
    try:
        check_image_file(img)
    except InputError as e:
        raise InputError(f"image {image_path}: {e.problem}", path, line) from None


def _catalog_csv_rows(path: Path):
    return iter_csv_rows(path, required={"item_id", "title", "category"},
                         optional={"image_path", "attributes"}, prefix_ok=("attr_",))


def _parse_attributes(value: object, path: Path, line: int) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            from core.jsonio import loads

            try:
                value = loads(text, what="attributes")
            except InputError as e:
                raise InputError(f"attributes: {e.problem}", path, line) from None
        else:  # "color=navy;pattern=striped"
            out = {}
            for part in filter(None, (p.strip() for p in text.split(";"))):
                if "=" not in part:
                    raise InputError(f"attribute {part!r} is not key=value", path, line)
                k, v = (s.strip() for s in part.split("=", 1))
                if not k or not v:
                    raise InputError(f"attribute {part!r} has an empty key or value", path, line)
                out[k] = v
            return out
    if not isinstance(value, dict):
        raise InputError("attributes must be an object of text values", path, line)
    out = {}
    for k, v in value.items():
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise InputError(f"attribute {k!r} must be text, got {type(v).__name__}", path, line)
        out[str(k)] = str(v)
    return out


def _item_from_json(obj: dict, path: Path, line: int) -> Item:
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(FIELDS)})", path, line)
    for key in ("item_id", "title", "category"):
        if key not in obj:
            raise InputError(f"missing field {key!r}", path, line)
    return _make_item(obj["item_id"], obj["title"], obj["category"],
                      _parse_attributes(obj.get("attributes"), path, line), obj.get("image_path"), path, line)


def _item_from_csv(row: dict[str, str], path: Path, line: int) -> Item:
    attrs = _parse_attributes(row.get("attributes"), path, line)
    for k, v in row.items():
        if k.startswith("attr_") and v:
            attrs[k[len("attr_"):]] = v
    return _make_item(row["item_id"], row["title"], row["category"], attrs, row.get("image_path") or None, path, line)


def _make_item(item_id, title, category, attrs, image_path, path: Path, line: int) -> Item:
    item_id = parse_id(item_id, "item_id", path, line)
    for what, value in (("title", title), ("category", category)):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{what} is missing or empty", path, line)
    if image_path is not None:
        if not isinstance(image_path, str):
            raise InputError("image_path must be text", path, line)
        if Path(image_path).is_absolute() or ".." in Path(image_path).parts:
            raise InputError(f"image_path {image_path!r} must be relative to the catalog and stay inside its folder", path, line)
    return Item(item_id, title.strip(), category.strip(), attrs, image_path)
