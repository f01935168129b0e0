"""Creative: one generated image with the full provenance needed to regenerate it, and its manifest."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import append_jsonl, read_jsonl_lines


@dataclass
class Creative:
    """A generated image (PNG at `image_path`) plus everything that produced it."""

    creative_id: str
    pipeline: str
    base_model: str
    prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    image_path: str = ""
    negative_prompt: str = ""
    lora: list[dict[str, Any]] = field(default_factory=list)
    condition: dict[str, Any] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    device: str = "cpu"
    created_at: float = field(default_factory=lambda: round(time.time(), 3))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def why(self) -> dict | None:
        """Where the creative's condition came from (backbone, top attributes, shares), when it says."""
        return (self.condition or {}).get("why")

    @classmethod
    def from_dict(cls, d: dict) -> "Creative":
        """A record read back (a manifest line): unknown or missing fields and wrong types are InputErrors."""
        if not isinstance(d, dict):
            raise InputError("a creative record must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"unknown creative field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
        missing = [n for n in REQUIRED if n not in d]
        if missing:
            raise InputError(f"creative record lacks field(s): {', '.join(missing)}")
        for name, kinds in FIELD_TYPES.items():
            value = d.get(name)
            if name in d and value is not None and (isinstance(value, bool) and bool not in kinds
                                                    or not isinstance(value, kinds)):
                raise InputError(f"creative field {name!r} must be {kinds[0].__name__}, found {type(value).__name__}")
        return cls(**d)


REQUIRED = ("creative_id", "pipeline", "base_model", "prompt", "seed", "steps", "guidance", "width", "height")
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "creative_id": (str,), "pipeline": (str,), "base_model": (str,), "prompt": (str,), "seed": (int,),
    "steps": (int,), "guidance": (float, int), "width": (int,), "height": (int,), "image_path": (str,),
    "negative_prompt": (str,), "lora": (list,), "condition": (dict,), "scores": (dict,), "extra": (dict,),
    "user_id": (str,), "device": (str,), "created_at": (float, int)}


class Manifest:
    """An append-only JSONL file of Creative records; one line per finished image."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, creative: Creative) -> None:
        append_jsonl(self.path, creative.to_dict())

    def load(self) -> list[Creative]:
        """Every record; a bad one is an InputError naming the manifest and its line."""
        out = []
        for line, d in read_jsonl_lines(self.path):
            try:
                out.append(Creative.from_dict(d))
            except InputError as e:
                raise InputError(e.problem, self.path, line) from None
        return out

    def done_ids(self) -> set[str]:
        return {c.creative_id for c in self.load()}
