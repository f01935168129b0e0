"""Floor 0: what every floor shares: the user-error type, atomic io, input checks, creatives, runtime,
the one EMA of weights (`core.ema`) and the one save/load of trained things (`core.pretrained`).

Light imports only (no torch, diffusers or gradio): `atelier --help` imports this package.
Importing it first sets the offline defaults (`core._offline`) before any hub library loads.
"""

from . import _offline  # noqa: F401  (offline defaults before anything else)
from .creative import Creative, Manifest
from .errors import InputError
from .io import (
           append_jsonl,
           atomic_save_image,
           atomic_write_bytes,
           atomic_write_json,
           atomic_write_text,
           read_jsonl,
)

__all__ = ["Creative", "Manifest", "InputError", "append_jsonl", "atomic_save_image", "atomic_write_bytes",
           "atomic_write_json", "atomic_write_text", "read_jsonl"]
