"""`--tune BUDGET`: an optuna search of each model's main hyperparameters on the validation split, in a time budget.

Each trial trains the model on the train split from the run's config (given, tuned or derived) with the
trial's values, and scores the validation split (CF: train items masked, Recall@20; sequence data: the
config's `target_metric`). optuna's TPE sampler (Bergstra et al., NeurIPS 2011), seeded, chooses the
values; the budget is split evenly over the models that have something to tune, and each trial's
training is capped by the time left to its model (the trainer's `max_train_seconds`). The test split
is never read. The chosen values are written as a bench YAML (`save_tuned`) that `--config` reuses.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from core.errors import InputError

# model -> {hyperparameter: (kind, low, high)}: the few that move results most (paper defaults inside the ranges)
SPACES: dict[str, dict[str, tuple]] = {
    "itemknn": {"k": ("int_log", 10, 500)},
    "ease": {"l2": ("log", 10.0, 1e5)},
    "multivae": {"lr": ("log", 1e-4, 1e-2), "dropout": ("float", 0.1, 0.7), "anneal_cap": ("float", 0.05, 0.5)},
    "diffrec": {"lr": ("log", 1e-4, 5e-3), "noise_scale": ("log", 1e-3, 0.5), "dropout": ("float", 0.1, 0.7)},
    "ldiffrec": {"lr": ("log", 1e-4, 5e-3), "noise_scale": ("log", 1e-3, 0.5), "lamda": ("log", 0.01, 0.3)},
    "sasrec": {"lr": ("log", 1e-4, 5e-3), "dropout": ("float", 0.0, 0.5), "hidden": ("choice", [32, 64, 128])},
    "gru4rec": {"lr": ("log", 1e-4, 5e-3), "dropout": ("float", 0.0, 0.5), "hidden": ("choice", [32, 64, 128])},
    "dreamrec": {"lr": ("log", 1e-4, 5e-3), "dropout": ("float", 0.0, 0.5), "pref_lambda": ("float", 0.05, 0.5)},
}
MIN_BUDGET_S = 5.0


def parse_budget(text: str) -> float:
    """'90', '90s', '10m', '1h' -> seconds; anything else is one clear error naming --tune."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text).lower())
    if not m:
        raise InputError(f"--tune expects a time budget like 90, 90s, 10m or 1h, got {text!r}")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if seconds < MIN_BUDGET_S:
        raise InputError(f"--tune budget must be at least {MIN_BUDGET_S:.0f} s, got {text!r}")
    return seconds


def _suggest(trial, space: dict[str, tuple]) -> dict:
    out = {}
    for key, (kind, *args) in space.items():
        if kind == "log":
            out[key] = trial.suggest_float(key, args[0], args[1], log=True)
        elif kind == "int_log":
            out[key] = trial.suggest_int(key, args[0], args[1], log=True)
        elif kind == "float":
            out[key] = trial.suggest_float(key, args[0], args[1])
        else:
            out[key] = trial.suggest_categorical(key, args[0])
    return out


def _valid_score(model, data, metric: str) -> float:
    """The validation figure of a fitted model (CF: train items masked)."""
    from .metrics import ranking_metrics

    k = int(metric.split("@")[1])
    if hasattr(data, "n_users"):
        from .bench import score_all

        scores, _ = score_all(model, data.n_users)
        return float(ranking_metrics(scores, data.valid, exclude=data.train, ks=(k,))[metric])
    scores = model.score(data.valid.seq, data.valid.seq_len)
    return float(ranking_metrics(scores, data.valid.target, ks=(k,))[metric])


def _build(base: str, params: dict, cap_s: float):
    """The model with `params`, its training capped at `cap_s` seconds (the trainer reads max_train_seconds)."""
    from .base import model_class

    model = model_class(base)(**params)
    try:
        model.config.max_train_seconds = max(1.0, cap_s)  # CF configs have no such field: the trainer reads it anyway
    except (AttributeError, TypeError):
        pass
    return model


def tune(data, models: dict[str, tuple[str, dict]], budget_s: float, metric: str, *, seed: int = 0,
         progress: bool = True) -> dict:
    """Search each model's SPACES entry on valid within `budget_s` (shared evenly); returns the tuning record.

    `models` maps a config key to (registered model name, its hyperparameters from the run's config).
    Record per model: best params, best valid figure, the base config's valid figure (trial 0 runs the
    base values, so tuning never picks something worse than it measured), trials and seconds.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tunable = {k: v for k, v in models.items() if v[0] in SPACES}
    record: dict = {"metric": f"valid {metric}", "budget_s": budget_s, "sampler": f"optuna TPE (seed {seed})",
                    "models": {}, "untuned": sorted(set(models) - set(tunable))}
    if not tunable:
        return record
    share = budget_s / len(tunable)
    for key, (base, params) in tunable.items():
        space = SPACES[base]
        start = time.perf_counter()
        deadline = start + share

        def objective(trial, base=base, params=params, space=space, deadline=deadline):
            values = _suggest(trial, space)
            model = _build(base, {**params, **values}, deadline - time.perf_counter())
            model.fit(data, seed=seed, progress=False)
            return _valid_score(model, data, metric)

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        base_values = {k: params[k] for k in space if k in params}
        if len(base_values) == len(space):
            study.enqueue_trial(base_values)  # the config's own values are the first trial
        study.optimize(objective, timeout=share, n_trials=None, catch=(FloatingPointError,))
        done = [t for t in study.trials if t.value is not None]
        if not done:
            raise InputError(f"--tune: no trial of {key} finished within {share:.0f} s; give a larger budget")
        record["models"][key] = {
            "best": {k: _plain(v) for k, v in study.best_params.items()}, "best_valid": float(study.best_value),
            "base_valid": float(done[0].value) if base_values and len(base_values) == len(space) else None,
            "trials": len(done), "seconds": time.perf_counter() - start,
        }
        if progress:
            print(f"tune {key}: {len(done)} trials in {time.perf_counter() - start:.0f}s, best valid {metric} "
                  f"{study.best_value:.4f} with {record['models'][key]['best']}", flush=True)
    return record


def _plain(value):
    """optuna's values as plain YAML scalars."""
    if isinstance(value, (np.floating, float)):
        return float(f"{float(value):.6g}")
    if isinstance(value, (np.integer, int)):
        return int(value)
    return value


def tuned_config(run_config, record: dict) -> dict:
    """The run's YAML with the tuned values in: what `--config` reuses."""
    import copy

    cfg = copy.deepcopy(run_config.data)
    for key in ("reference", "published"):  # figures of another setting
        cfg.pop(key, None)
    cfg["data"] = {"kind": run_config.kind}
    for key, r in record["models"].items():
        cfg["models"].setdefault(key, {}).update(r["best"])
    cfg["tuning"] = {"from": run_config.file, "from_source": run_config.source, **record}
    return cfg


def save_tuned(path: str | Path, cfg: dict, header: str) -> Path:
    """Write the tuned config as YAML (atomic), with a comment line saying how it was made."""
    import yaml

    from core.io import atomic_write_text

    path = Path(path)
    text = f"# {header}\n" + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=110)
    atomic_write_text(path, text)
    return path
