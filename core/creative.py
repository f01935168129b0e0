"""Creative: one generated image with the full provenance needed to regenerate it, and its manifest."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import append_jsonl, read_jsonl


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

    @classmethod
    def from_dict(cls, d: dict) -> "Creative":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"unknown creative field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


class Manifest:
    """An append-only JSONL file of Creative records; one line per finished image."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, creative: Creative) -> None:
        append_jsonl(self.path, creative.to_dict())

    def load(self) -> list[Creative]:
        return [Creative.from_dict(d) for d in read_jsonl(self.path)]

    def done_ids(self) -> set[str]:
        return {c.creative_id for c in self.load()}
