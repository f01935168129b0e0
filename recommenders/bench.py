"""The collaborative-filtering benchmark: every model, several seeds, one protocol, quality with spread and cost.

Protocol (shared/data/README.md, the one DiffRec's published numbers use): the model's input is
the user's multi-hot train row; all items are ranked; train items are masked for validation
(model selection, early stopping on Recall@20) and train + valid items for the test figures.
Per run it records Recall/NDCG/HR@10/20/50, training seconds, scoring latency (all users in one
batch, and one user at a time), catalog coverage@20 and mean popularity@20 of the recommended
items; on the demo shop also taste recall@20 against the shoppers' true tastes. Models whose fit
ignores the seed (MostPop, ItemKNN, EASE) are trained once and say so (`deterministic`).
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from pathlib import Path

import numpy as np

from core.errors import InputError

from .metrics import capped_recall, coverage, mean_popularity, ranking_metrics, topk

CF_MODELS = ("mostpop", "itemknn", "ease", "multivae", "diffrec", "ldiffrec", "giffcf")
CONFIG_DIR = Path(__file__).parent / "configs"
TASTE_TOP_N = 3  # taste recall counts each user's 3 favourite values of every attribute kind
TABLE_COLUMNS = ("recall@20", "ndcg@20", "recall@50", "train_s", "ms_per_user", "single_ms", "coverage@20",
                 "popularity@20")


# --- hyperparameters --------------------------------------------------------------------------------
def load_bench_yaml(data_name: str, config_path: str | Path | None = None) -> dict:
    """A CF bench YAML (the given file, else `configs/<data set>.yaml`), checked; a missing file is an error.

    Runs choose their config through `bench_config.resolve` (given, tuned or derived, and say which).
    """
    from .bench_config import CONFIG_DIR as configs
    from .bench_config import read_config

    return read_config(Path(config_path) if config_path else configs / f"{data_name}.yaml")


def load_model_configs(data_name: str, config_path: str | Path | None = None) -> dict[str, dict]:
    """The `models:` of a data set's YAML (or the given file); {} when the data set has none.

    For the shop's preference path, which picks its own fallback; `rec train`/`rec bench` go through
    `bench_config.resolve` instead (given, tuned or derived, and said).
    """
    from .bench_config import CONFIG_DIR as configs

    if config_path is None and not (configs / f"{data_name}.yaml").exists():
        return {}
    return load_bench_yaml(data_name, config_path).get("models", {})


def make_model(name: str, params: dict | None = None, config_path: str | Path | None = None):
    """A fresh model with its data set's hyperparameters; unknown names/keys raise InputError."""
    from .base import model_class

    klass = model_class(name)
    try:
        return klass(**(params or {}))
    except InputError as e:
        raise InputError(e.problem, config_path or e.path) from None
    except TypeError as e:
        raise InputError(f"{name}: bad hyperparameters ({e})", config_path) from None


def require_items(n_items: int, k: int, spec) -> None:
    """The metrics rank a top k: data with fewer items is one clear error, not a traceback in the metrics."""
    if n_items < k:
        raise InputError(f"has {n_items} items; the metrics rank a top {k}", spec)


def parse_models(models: str | list[str], data: str | Path = "the data") -> list[str]:
    """Comma-separated model names -> validated list of CF models (a sequence model is named as such)."""
    from .bench_config import check_models

    names = [m.strip().lower() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    return check_models(names, "cf", data)


# --- measuring one fitted model ---------------------------------------------------------------------
def score_all(model, n_users: int, batch: int = 8192) -> tuple[np.ndarray, float]:
    """Scores of every user (batched) and the wall seconds it took."""
    start = time.perf_counter()
    users = np.arange(n_users)
    scores = np.concatenate([model.score(users[i:i + batch]) for i in range(0, n_users, batch)])
    return scores, time.perf_counter() - start


def single_user_ms(model, n_users: int, repeats: int = 20, seed: int = 0) -> float:
    """Median milliseconds to score one user alone (what a request-time call costs)."""
    rng = np.random.default_rng(seed)
    times = []
    for u in rng.integers(0, n_users, size=repeats):
        start = time.perf_counter()
        model.score(np.asarray([u]))
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def taste_recall(top: np.ndarray, item_ids, catalog, true_top: dict) -> float:
    """Share of each user's true top (kind, value) attributes present among their top-k items, averaged."""
    item_attrs = []
    for j in range(len(item_ids)):
        it = catalog[item_ids[j]]
        item_attrs.append({("category", it.category), *it.attributes.items()})
    shares = []
    for row, truth in true_top.items():
        truth = set(truth)
        if not truth:
            continue
        got = set().union(*(item_attrs[j] for j in top[row]))
        shares.append(len(truth & got) / len(truth))
    return float(np.mean(shares)) if shares else float("nan")


def evaluate(model, data, *, k: int = 20, tastes: dict | None = None, catalog=None, latency: bool = True) -> dict:
    """Test metrics (input = train rows, train + valid masked), latency, coverage and popularity."""
    scores, seconds = score_all(model, data.n_users)
    seen = (data.train + data.valid).tocsr()
    out = ranking_metrics(scores, data.test, exclude=seen)
    valid = ranking_metrics(scores, data.valid, exclude=data.train, ks=(k,))
    out[f"valid_recall@{k}"] = valid[f"recall@{k}"]
    top = topk(scores, k, exclude=seen)
    counts = np.asarray(data.train.sum(0)).ravel()
    out[f"capped_recall@{k}"] = capped_recall(top, data.test)
    out[f"coverage@{k}"] = coverage(top, data.n_items)
    out[f"popularity@{k}"] = mean_popularity(top, counts)
    if latency:
        out["score_all_s"] = seconds
        out["ms_per_user"] = 1000.0 * seconds / data.n_users
        out["single_ms"] = single_user_ms(model, data.n_users)
    if tastes is not None and catalog is not None:
        out[f"taste_recall@{k}"] = taste_recall(top, data.item_ids, catalog, tastes)
    return out


def _demo_tastes(data) -> tuple[dict, object]:
    """The demo shoppers' true favourite (kind, value) pairs per user row, and the catalog."""
    from .shop import DemoShop

    shop = DemoShop.load()
    tastes = {}
    for row, uid in enumerate(data.user_ids or []):
        top = shop.true_top_attributes(uid, n=TASTE_TOP_N)
        tastes[row] = [(kind, value) for kind, values in top.items() for value in values]
    return tastes, shop.catalog


# --- the bench --------------------------------------------------------------------------------------
def _mean_std(runs: list[dict], deterministic: bool) -> tuple[dict, dict]:
    """Mean and sample std per numeric field; std is 0 for a deterministic model, None for one lone run."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    if len(runs) > 1:
        std = {k: float(np.std([r[k] for r in runs], ddof=1)) for k in keys}
    else:
        std = {k: (0.0 if deterministic else None) for k in keys}
    return mean, std


def read_bench_json(path: str | Path) -> dict | None:
    """An earlier bench result for --resume: None if the file does not exist yet, one clear error if unreadable."""
    import json

    path = Path(path)
    if not path.exists():
        return None  # resuming a run that never wrote anything: start fresh
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"not a bench JSON ({e.msg})", path, e.lineno) from None
    except UnicodeDecodeError:
        raise InputError("not a bench JSON (not UTF-8 text)", path) from None
    if not isinstance(old, dict):
        raise InputError("not a bench JSON (no object at the top)", path)
    return old


def load_previous(paths: list[str | Path], dataset: str) -> dict[str, dict]:
    """Model entries from earlier bench JSONs of the same data set, runs merged by seed (for --resume)."""
    done: dict[str, dict] = {}
    for path in paths:
        old = read_bench_json(path)
        if old is None:
            continue
        if old.get("dataset") != dataset:
            raise InputError(f"was run on {old.get('dataset')}, not {dataset}", path)
        for name, entry in old.get("models", {}).items():
            if name not in done:
                done[name] = {**entry, "runs": []}
            have = {r["seed"] for r in done[name]["runs"]}
            done[name]["runs"] += [r for r in entry.get("runs", []) if r["seed"] not in have]
    return done


def run_cf_bench(spec: str, models: list[str], seeds: int | list[int] = 5, *, config_path: str | None = None,
                 progress: bool = True, on_result=None, resume: list[str | Path] = (),
                 train: bool = True, announce=None) -> dict:
    """Train and evaluate each model for each seed on one data set; returns the JSON-able result.

    `resume`: earlier result JSONs whose finished runs (model, seed) are reused instead of retrained:
    an interrupted bench picks up where it was, and one split over processes (`seeds=[3, 4]`, ...)
    is merged this way. `train=False` only reports the resumed runs (a model keeps the seeds it has).
    The config is `config_path`, else the data set's tuned YAML, else one derived for it
    (`bench_config.resolve`); `announce(line)` hears which before anything trains, and the result records it.
    """
    import torch
    from tqdm.auto import tqdm

    from .bench_config import rel_path, require_settings, resolve, stats_of
    from .datasets import load_cf

    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise InputError("need at least one seed")
    models = parse_models(models, spec)
    data = load_cf(spec)
    run_config = resolve(data.name, stats_of(data), config_path, spec)
    require_settings(models, run_config)
    require_items(data.n_items, 50, spec)
    if announce is not None:
        announce(run_config.line)
    bench_yaml = run_config.data
    configs = run_config.models
    config_path = run_config.file
    tastes, catalog = _demo_tastes(data) if str(spec) == "demo" else (None, None)
    previous = load_previous(list(resume), data.name)
    result = {
        "data": rel_path(spec), "dataset": data.name, "n_users": data.n_users, "n_items": data.n_items,
        "interactions": {"train": int(data.train.nnz), "valid": int(data.valid.nnz), "test": int(data.test.nnz)},
        "seeds": seed_list,
        "protocol": "input = train row; rank all items; valid masks train, test masks train+valid; "
                    "selection and early stopping on valid Recall@20",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": _cores(),
                    "torch_threads": torch.get_num_threads()},
        "reference": bench_yaml.get("reference", {}),
        "config": run_config.to_json(),
        "models": {},
    }
    if resume:
        result["resumed_from"] = [rel_path(p) for p in resume]
    for name in models:
        params = configs.get(name, {})
        probe = make_model(name, params, config_path)
        run_seeds = seed_list[:1] if probe.deterministic else seed_list
        old = {r["seed"]: r for r in previous.get(name, {}).get("runs", [])}
        runs = [old[s] for s in run_seeds if s in old] if train else sorted(old.values(), key=lambda r: r["seed"])
        if not train and not runs:
            raise InputError(f"--report-only: no finished runs of {name} in the resumed JSONs")
        if not train or len(runs) == len(run_seeds):
            _store(result, name, probe, runs, previous.get(name, {}).get("config"))
            continue
        for seed in tqdm([s for s in run_seeds if s not in old], desc=f"{name} seeds", disable=not progress,
                         leave=False):
            model = make_model(name, params, config_path)
            start = time.perf_counter()
            log = model.fit(data, seed=seed, progress=progress)
            train_s = time.perf_counter() - start
            run = {"seed": seed, "train_s": train_s}
            for key in ("best_epoch", "epochs_run", "seconds_to_best"):  # the epoch trainer's log
                if key in log:
                    run[key] = log[key]
            if "metric" in log:
                run[f"best_{log['metric']}"] = log["best_valid"]
            run.update(evaluate(model, data, tastes=tastes, catalog=catalog))
            runs.append(run)
            if progress:
                tqdm.write(f"{name} seed {seed}: test R@20 {run['recall@20']:.4f} N@20 {run['ndcg@20']:.4f} "
                           f"train {train_s:.1f}s score {run['score_all_s']:.2f}s")
            runs.sort(key=lambda r: r["seed"])
            _store(result, name, probe, runs)
            if on_result is not None:
                on_result(result)  # lets the caller checkpoint partial results after every run
    return result


def _store(result: dict, name: str, probe, runs: list[dict], config: dict | None = None) -> None:
    """One model's entry: its config, runs, and mean/std over them."""
    mean, std = _mean_std(runs, probe.deterministic)
    result["models"][name] = {"config": config or dataclasses.asdict(probe.config), "deterministic": probe.deterministic,
                              "runs": runs, "mean": mean, "std": std}


def _cores() -> int:
    import os

    return os.cpu_count() or 1


# --- reporting --------------------------------------------------------------------------------------
def _fmt(mean: float, std: float | None, col: str) -> str:
    if std is None and col not in ("ms_per_user", "single_ms", "popularity@20"):
        return (f"{mean:.1f}" if col == "train_s" else f"{mean:.4f}") + "±n/a"
    if col in ("train_s",):
        return f"{mean:.1f}±{std:.1f}"
    if col == "popularity@20":
        return f"{mean:.0f}"
    if col in ("ms_per_user", "single_ms"):
        return f"{mean:.3g}"
    return f"{mean:.4f}±{std:.4f}"


def format_table(result: dict) -> str:
    """A plain-text table: mean±std per model of the main columns."""
    cols = list(TABLE_COLUMNS)
    if any("taste_recall@20" in m["mean"] for m in result["models"].values()):
        cols.append("taste_recall@20")
    rows = [["model", "runs", *cols]]
    for name, m in result["models"].items():
        rows.append([name, str(len(m["runs"])) + ("*" if m["deterministic"] else ""),
                     *[_fmt(m["mean"].get(c, math.nan), m["std"].get(c, 0.0), c) for c in cols]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for name, ref in (result.get("reference") or {}).items():
        lines.append(f"reference {name}: " + ", ".join(f"{k} {v}" for k, v in ref.items()))
    lines.append(f"data {result['dataset']} ({result['n_users']} users, {result['n_items']} items), "
                 f"seeds {result['seeds']}; * = deterministic, trained once; ms_per_user = all users in one "
                 f"batch; single_ms = one user per call (median)")
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    """Quality (test Recall@20, mean ± std) against scoring cost (ms per user, batched; log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.io import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for name, m in result["models"].items():
        x, y, e = m["mean"]["ms_per_user"], m["mean"]["recall@20"], m["std"]["recall@20"]
        ax.errorbar([x], [y], yerr=None if e is None else [e], fmt="o", capsize=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("scoring latency, ms per user (all users batched)")
    ax.set_ylabel("test Recall@20 (mean ± std over seeds)")
    ax.set_title(f"{result['dataset']}: quality vs latency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
