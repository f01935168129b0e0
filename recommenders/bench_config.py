"""Which hyperparameters a `rec train` / `rec bench` run uses, and why: given, tuned, or derived for new data.

Three sources, always said in one printed line and in the results JSON (`config`), never silent:
- given: `--config FILE`. It must exist, be of the data's kind (CF or sequence) and name only known models.
- tuned: `recommenders/configs/<data set>.yaml`, when its `data:` block matches the data's size (a folder
  that only shares the name of a tuned data set is treated as new data).
- derived: a data set without a config of its own gets the tuned config of its kind nearest in size
  (log users/items/rows), adapted so it carries: epoch caps raised to `DERIVED_EPOCHS` with the
  source's early stopping (patience at least `DERIVED_PATIENCE`) so models train to convergence, wall-clock
  caps (set for a shared CPU) removed, EASE's L2 scaled with the mean item degree (the diagonal of X^T X
  it regularises; Steck, WWW 2019), ItemKNN's k, L-DiffRec's clusters and the CF networks' layer widths
  bounded by the item count, and batch sizes bounded so an epoch has at least 8 steps.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InputError

CONFIG_DIR = Path(__file__).parent / "configs"
REPO_ROOT = Path(__file__).resolve().parents[1]
CF_MODELS = ("mostpop", "itemknn", "ease", "multivae", "diffrec", "ldiffrec", "giffcf")
SEQ_MODELS = ("sasrec", "gru4rec", "dreamrec", "seq-mostpop")
SEQ_ALIASES = {"mostpop": "seq-mostpop", "pop": "seq-mostpop"}
KIND_WORDS = {"cf": "CF", "seq": "sequence"}
DERIVED_EPOCHS = 200
DERIVED_PATIENCE = 3
MIN_STEPS_PER_EPOCH = 8


@dataclass
class DataStats:
    """The size of a data set as the config choice sees it (users are rows for sequence data)."""

    kind: str  # "cf" or "seq"
    users: int
    items: int
    train: int  # CF: train interactions; seq: train rows

    @property
    def density(self) -> float:
        return self.train / max(1, self.users * self.items)

    def describe(self) -> str:
        if self.kind == "cf":
            return f"{self.users:,} users x {self.items:,} items (density {100 * self.density:.1f}%)"
        return f"{self.train:,} train rows over {self.items:,} items"


def stats_of(data) -> DataStats:
    """DataStats of CFSplits or SeqSplits."""
    if hasattr(data, "n_users"):
        return DataStats("cf", int(data.n_users), int(data.n_items), int(data.train.nnz))
    return DataStats("seq", len(data.train), int(data.n_items), len(data.train))


@dataclass
class RunConfig:
    """The bench YAML a run uses (`data`: models, ks, bench, ...), where it came from and the line that says so."""

    kind: str
    source: str  # "given", "tuned" or "derived"
    file: str  # the YAML read (the source YAML for a derived config), relative
    data: dict
    line: str
    changes: dict = field(default_factory=dict)

    @property
    def models(self) -> dict[str, dict]:
        return self.data.get("models", {})

    def to_json(self) -> dict:
        """What the results JSON records: source, file, the printed line, what was changed, every model's settings."""
        return {"source": self.source, "file": self.file, "line": self.line, "changes": self.changes,
                "models": self.models, "settings": {k: v for k, v in self.data.items() if k != "models"}}


def rel_path(path: str | Path) -> str:
    """A path for results JSON: relative to the current folder, else to the repo root, else `core.io.portable`'s
    form ($TMPDIR/... for scratch files); never a machine path like /work/..."""
    from core.io import portable

    p = Path(path)
    if str(path) == "demo" or not p.is_absolute():
        return str(path)
    for base in (Path.cwd(), REPO_ROOT):
        try:
            return str(p.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    out = portable(str(p))
    return out if not out.startswith("/") else os.path.relpath(p, Path.cwd())


# --- model names against the data's kind -----------------------------------------------------------------------
def model_kind(name: str) -> str | None:
    """"cf", "seq" or None for a model name ("mostpop" is both: the kind of the data decides)."""
    key = name.strip().lower()
    if key in CF_MODELS:
        return "cf"
    if key in SEQ_MODELS or key in SEQ_ALIASES:
        return "seq"
    return None


def check_models(names: list[str], kind: str, data: str | Path, config: dict | None = None) -> list[str]:
    """Names fit for data of `kind` (aliases resolved for sequence data), or one line naming the mismatch.

    `config` (a bench YAML) may name variants of a model (`dreamrec-ddpm: {model: dreamrec}`): those count.
    """
    if not names:
        raise InputError("no models named")
    fit = CF_MODELS if kind == "cf" else SEQ_MODELS
    variants = {k for k, v in ((config or {}).get("models") or {}).items() if str(v.get("model", k)) in fit}
    out = []
    for raw in names:
        key = raw.strip().lower()
        if kind == "seq":
            key = SEQ_ALIASES.get(key, key)
        if key in fit or key in variants:
            out.append(key)
            continue
        other = model_kind(key)
        if other and other != kind:
            raise InputError(f"{key} is a {KIND_WORDS[other]} model; {rel_path(data)} holds {KIND_WORDS[kind]} data "
                             f"(models for it: {', '.join(fit)})")
        raise InputError(f"unknown model {raw.strip()!r} (models for {KIND_WORDS[kind]} data: {', '.join(fit)})")
    return out


def require_settings(names: list[str], run_config: "RunConfig") -> None:
    """Every model run has an entry in its config: a missing one would silently mean class defaults."""
    missing = [n for n in names if n not in run_config.models]
    if missing:
        named = ", ".join(run_config.models) or "none"
        raise InputError(f"has no settings for {', '.join(missing)} (it names: {named}); add `{missing[0]}: {{}}` "
                         f"under models: to run it on its class defaults", run_config.file)


# --- reading a YAML ---------------------------------------------------------------------------------------------
def read_config(path: str | Path, kind: str | None = None, data: str | Path | None = None) -> dict:
    """A bench YAML checked: `models:` maps known model names (of `kind`) to hyperparameter mappings."""
    from core.yamlio import read_yaml

    path = Path(path)
    doc = read_yaml(path, what="config")
    raw = doc.data or {}
    if not isinstance(raw, dict):
        raise doc.error("a bench config must be a YAML mapping (models: ..., ks: ...)")
    models = raw.get("models", {}) or {}
    if not isinstance(models, dict) or not all(isinstance(v, dict) or v is None for v in models.values()):
        raise InputError("expected `models:` mapping model name -> {hyperparameter: value}", path)
    models = {str(k).strip().lower(): dict(v or {}) for k, v in models.items()}
    block = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    for key, entry in models.items():
        if model_kind(str(entry.get("model", key))) is None:
            raise InputError(f"unknown model {key!r} under models: (known: {', '.join(CF_MODELS + SEQ_MODELS)})",
                             path)
    # "mostpop" names a model of either kind; every other name says which kind the config is for
    strict = {model_kind(str(v.get("model", k))) for k, v in models.items() if k not in ("mostpop", "pop")}
    if len(strict) > 1:
        raise InputError("mixes CF and sequence models under models:; use one config per kind of data", path)
    config_kind = block.get("kind") or (strict.pop() if strict else None)
    if kind is not None and config_kind is not None and config_kind != kind:
        where = f"; {rel_path(data)} holds {KIND_WORDS[kind]} data" if data is not None else ""
        raise InputError(f"is a {KIND_WORDS[config_kind]} config{where}", path)
    raw["models"] = models
    return raw


# --- choosing the config of a run ---------------------------------------------------------------------------------
def _tuned_file(name: str, kind: str) -> Path:
    if name == "demo":
        return CONFIG_DIR / ("demo.yaml" if kind == "cf" else "demo_seq.yaml")
    return CONFIG_DIR / f"{name}.yaml"


def _fits(cfg: dict, stats: DataStats) -> bool:
    """Whether a tuned YAML's `data:` block describes data of this size (no block: trust the name)."""
    block = cfg.get("data")
    if not isinstance(block, dict):
        return True
    want = {"users": stats.users if stats.kind == "cf" else None, "items": stats.items, "train": stats.train}
    return all(block.get(k) in (None, v) for k, v in want.items() if v is not None)


def _sources(kind: str) -> list[tuple[Path, dict]]:
    """Tuned configs of one kind with a `data:` block that may seed derived configs."""
    out = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        cfg = read_config(path)
        block = cfg.get("data")
        if isinstance(block, dict) and block.get("kind") == kind and block.get("derive", True):
            out.append((path, cfg))
    return out


def _distance(block: dict, stats: DataStats) -> float:
    keys = ("users", "items", "train") if stats.kind == "cf" else ("items", "train")
    return sum(abs(math.log(max(1, getattr(stats, k)) / max(1, int(block[k])))) for k in keys)


def derive(stats: DataStats) -> RunConfig:
    """The config for data nobody tuned for: the nearest tuned config of its kind, adapted to carry (see module doc)."""
    import copy

    sources = _sources(stats.kind)
    if not sources:
        raise InputError(f"no tuned {KIND_WORDS[stats.kind]} config in {rel_path(CONFIG_DIR)} to derive from")
    path, src = min(sources, key=lambda pc: _distance(pc[1]["data"], stats))
    block = src["data"]
    cfg = copy.deepcopy({k: v for k, v in src.items() if k not in ("data", "reference", "published")})
    changes: dict[str, dict] = {}

    def change(model: str, key: str, value) -> None:
        params = cfg["models"][model]
        if params.get(key) != value:
            changes.setdefault(model, {})[key] = [params.get(key), value]
            params[key] = value

    for name, params in cfg["models"].items():
        if "epochs" in params:
            change(name, "epochs", max(int(params["epochs"]), DERIVED_EPOCHS))
            change(name, "patience", max(int(params.get("patience", DERIVED_PATIENCE)), DERIVED_PATIENCE))
        if "max_train_seconds" in params:
            change(name, "max_train_seconds", 0)
        if "batch_size" in params:
            change(name, "batch_size", int(min(params["batch_size"], max(16, stats.users // MIN_STEPS_PER_EPOCH))))
        if name == "ease" and "l2" in params:
            scale = (stats.train / max(1, stats.items)) / (int(block["train"]) / int(block["items"]))
            change(name, "l2", float(round(min(1e5, max(1.0, params["l2"] * scale)), 1)))
        if name == "itemknn" and "k" in params:
            change(name, "k", int(min(params["k"], max(1, stats.items - 1))))
        if stats.kind == "cf" and isinstance(params.get("hidden"), list):  # no layer wider than the item vector
            change(name, "hidden", [int(min(w, max(32, stats.items))) for w in params["hidden"]])
        if stats.kind == "cf" and "latent" in params:
            change(name, "latent", int(min(params["latent"], max(32, stats.items))))
        if name == "ldiffrec" and "n_clusters" in params:
            change(name, "n_clusters", int(min(params["n_clusters"], max(1, stats.items // 2))))
    what = ", ".join(f"{m} {k} {a}->{b}" for m, c in changes.items() for k, (a, b) in c.items()
                     if k in ("l2", "k", "n_clusters", "batch_size", "hidden", "latent"))
    line = (f"config: derived for {stats.describe()} from {path.name} (nearest tuned {KIND_WORDS[stats.kind]} data "
            f"set); epoch caps {DERIVED_EPOCHS} with early stopping, no time caps"
            + (f"; {what}" if what else ""))
    return RunConfig(stats.kind, "derived", rel_path(path), cfg, line, changes)


def resolve(name: str, stats: DataStats, config_path: str | Path | None = None,
            data: str | Path | None = None) -> RunConfig:
    """The config of a run on data `name` of size `stats`: --config, else the tuned YAML, else derived."""
    if config_path is not None:
        cfg = read_config(config_path, stats.kind, data if data is not None else name)
        return RunConfig(stats.kind, "given", rel_path(config_path), cfg,
                         f"config: {rel_path(config_path)} (--config) for {stats.describe()}")
    tuned = _tuned_file(name, stats.kind)
    if tuned.exists():
        cfg = read_config(tuned)
        block = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
        if block.get("kind", stats.kind) == stats.kind and _fits(cfg, stats):
            return RunConfig(stats.kind, "tuned", rel_path(tuned), cfg,
                             f"config: {rel_path(tuned)} (tuned for {name}, {stats.describe()})")
        derived = derive(stats)
        derived.line += f" ({tuned.name} is for another data set of that name)"
        return derived
    return derive(stats)
