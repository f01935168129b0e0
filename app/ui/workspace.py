"""What every tab shares: the server's settings, per-process model caches and per-session output folders.

Models are loaded (or trained on the demo shop) once per process on first use and then shared by
all sessions; each browser session writes into its own folder under the output root, so one
user's files never overwrite another's, and Gradio may only serve files under that root.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import Field

from core import limits
from core.errors import InputError
from core.settings import Count, Steps, settings

# Backbones the Shopper tab offers, in the order shown (CF, then sequential); the first is the default.
# Trained folders found under UIConfig.recommender_dirs follow as "folder:<path>".
SHOPPER_MODELS = ("ease", "mostpop", "itemknn", "multivae", "diffrec", "ldiffrec", "seq-mostpop", "sasrec", "gru4rec",
                  "dreamrec")
FOLDER_PREFIX = "folder:"


class Unavailable(RuntimeError):
    """A component (demo shop, model, pipeline) is not installed or built yet; the UI shows the message."""


@settings
class UIConfig:
    """Settings of one `atelier serve` process (checked by pydantic when made, bounds from `core.limits`)."""

    out_dir: Path = Path("outputs/ui")
    model: str = "demo"  # SD base model: "demo", a local diffusers folder, or a hub id
    controlnet: str | None = "auto"  # "auto": the demo ControlNet with the demo model, none with other models
    upscale: bool = True  # apply the model's own 2x upscaler when it has one (the demo model: 128 px images)
    shop: str | None = None  # demo shop folder; None = the shipped one
    ab_db: Path | str | None = None  # a SQLite file or postgresql:// DSN; None = $ATELIER_AB_DB or outputs/ab.sqlite
    campaigns_dir: Path = Path("outputs/campaigns")  # where `atelier batch` writes; the A/B tab reads runs there
    device: str | None = None
    steps: Steps = 20
    max_candidates: Annotated[int, Field(ge=limits.CANDIDATES.low, le=limits.CANDIDATES.high)] = 8
    max_history_rows: Count = 10_000  # uploaded interaction CSVs larger than this are refused
    recommender_dirs: Path = Path("runs")  # `atelier rec train --out` folders under it are offered as backbones

    def __post_init__(self) -> None:
        if self.controlnet == "auto":  # a ControlNet only fits the UNet it was trained with
            self.controlnet = "demo-controlnet" if self.model == "demo" else None
        self.out_dir = Path(self.out_dir).resolve()
        self.campaigns_dir = Path(self.campaigns_dir).resolve()
        # the same store the `atelier ab` CLI uses by default, so votes from both land together
        db = self.ab_db or os.environ.get("ATELIER_AB_DB") or "outputs/ab.sqlite"
        self.ab_db = db if str(db).startswith(("postgresql://", "postgres://")) else Path(db).resolve()

    @classmethod
    def from_env(cls, **overrides: Any) -> "UIConfig":
        """Defaults, then ATELIER_MODEL / ATELIER_CONTROLNET / ATELIER_OUT env vars, then explicit overrides."""
        env = {
            "model": os.environ.get("ATELIER_MODEL"),
            "controlnet": os.environ.get("ATELIER_CONTROLNET"),
            "out_dir": os.environ.get("ATELIER_OUT"),
        }
        kwargs = {k: v for k, v in env.items() if v}
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)


_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


class Workspace:
    """Per-process caches (shop, recommenders, pipelines) and per-session folders, safe across threads."""

    def __init__(self, config: UIConfig):
        self.config = config
        self.config.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._cache: dict[str, Any] = {}

    # --- caching -----------------------------------------------------------------------------
    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """Build `key` once per process; concurrent first calls wait for the one build."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    # --- demo shop ---------------------------------------------------------------------------
    def shop(self):
        """The demo shop (catalog, users, interactions), or Unavailable with the reason."""
        def make():
            try:
                from recommenders.shop import DemoShop
            except ImportError as e:
                raise Unavailable(f"the demo shop package is not installed ({e})") from None
            try:
                return DemoShop.load(self.config.shop) if self.config.shop else DemoShop.load()
            except (InputError, FileNotFoundError, OSError) as e:
                raise Unavailable(f"the demo shop is not built yet ({e}); run `atelier shop build`") from None
        return self.cached("shop", make)

    def catalog(self):
        return self.shop().catalog

    def cf_data(self):
        """The demo shop's collaborative-filtering splits (item order = catalog order)."""
        def make():
            from recommenders.datasets import load_cf

            self.shop()  # a clear message if the shop is missing
            return load_cf("demo")
        return self.cached("cf:demo", make)

    def source(self):
        """The shop as `recommenders.preference` reads it (the same object every surface of this process uses)."""
        from recommenders.preference import load_shop

        self.shop()  # a clear message if the shop is missing
        return self.cached("source", lambda: load_shop(str(self.config.shop) if self.config.shop else "demo"))

    def recommender(self, name: str, progress: bool = False):
        """The backbone `name` (a registry name, or "folder:<path>" of a `rec train` folder listed by
        `available_models`), fitted on the shop or loaded once per process (`recommenders.preference`)."""
        from recommenders.preference import load_backbone

        if name.startswith(FOLDER_PREFIX):
            folder = Path(name[len(FOLDER_PREFIX):])
            if folder.resolve() not in [p.resolve() for p in self.trained_folders()]:
                raise InputError(f"{folder} is not a trained recommender folder under {self.config.recommender_dirs}")
            return load_backbone(self.source(), folder=folder)
        return load_backbone(self.source(), name, progress=progress)

    def trained_folders(self) -> list[Path]:
        """`rec train` output folders (config.json naming a registered recommender) under recommender_dirs."""
        from recommenders.base import model_name_of_class

        root = Path(self.config.recommender_dirs)
        if not root.is_dir():
            return []
        out = []
        for cfg in sorted(list(root.glob("*/config.json")) + list(root.glob("*/*/config.json")))[:50]:
            try:
                import json

                name = json.loads(cfg.read_text(encoding="utf-8")).get("_class_name")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(name, str) and model_name_of_class(name) and (cfg.parent / "model.safetensors").is_file():
                out.append(cfg.parent)
        return out

    def available_models(self) -> list[str]:
        """Shopper backbones whose module exists in this build, then the trained folders found."""
        import importlib.util

        from recommenders.base import MODEL_CLASSES

        out = []
        for name in SHOPPER_MODELS:
            module = MODEL_CLASSES.get(name, "").split(":")[0]
            if module and importlib.util.find_spec(module) is not None:
                out.append(name)
        return out + [f"{FOLDER_PREFIX}{p}" for p in self.trained_folders()]

    # --- per-session folders -----------------------------------------------------------------
    def session_dir(self, session: str | None, kind: str) -> Path:
        """A fresh folder for one job of one session: <out>/sessions/<session>/<kind>-<time>-<id>."""
        sid = _SAFE.sub("", session or "")[:32] or "anonymous"
        job = f"{_SAFE.sub('', kind)[:24]}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        path = self.config.out_dir / "sessions" / sid / job
        path.mkdir(parents=True, exist_ok=True)
        return path

    def inside_output(self, path: str | Path) -> bool:
        """True when `path` lies under the output root (the only folder the UI may serve)."""
        return _inside(path, self.config.out_dir)

    def readable(self, path: str | Path) -> bool:
        """True when the UI may read `path`: under the output root or the CLI's campaign folder."""
        return _inside(path, self.config.out_dir) or _inside(path, self.config.campaigns_dir)

    def batch_manifests(self, limit: int = 50) -> list[Path]:
        """Manifests of finished batch runs (CLI and UI), newest first."""
        found = list(self.config.campaigns_dir.glob("*/manifest.jsonl"))
        found += list((self.config.out_dir / "sessions").glob("*/*/*/manifest.jsonl"))
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:limit]


def _inside(path: str | Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(root)
        return True
    except ValueError:
        return False


def session_id(request: Any) -> str:
    """The Gradio session hash of a request (a stable id per browser tab), or 'anonymous'."""
    return getattr(request, "session_hash", None) or "anonymous"


def voter_id(request: Any) -> str:
    """Who cast a vote: the logged-in user name when auth is on, else the session hash."""
    return getattr(request, "username", None) or session_id(request)
