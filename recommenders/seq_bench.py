"""The sequential benchmark: every model on one next-item data set, several seeds, every sampler.

`run_seq_bench` trains each model per seed with the data set's YAML hyperparameters
(`recommenders/configs/<name>.yaml`), evaluates on the test split with the shared metrics module
(all items ranked), times inference per 1,000 rows, and for diffusion models repeats the test
evaluation for each sampler x step count. It returns a JSON-able dict; `format_table` prints it.
"""
from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .base import model_class
from .datasets import load_seq
from .errors import InputError
from .metrics import ranking_metrics

CONFIG_DIR = Path(__file__).parent / "configs"
ALIASES = {"mostpop": "seq-mostpop", "pop": "seq-mostpop"}
DIFFUSION = {"dreamrec"}


def config_path(data_name: str) -> Path:
    """The YAML of a data set's hyperparameters (`demo` reads demo_seq.yaml)."""
    name = "demo_seq" if data_name == "demo" else data_name
    path = CONFIG_DIR / f"{name}.yaml"
    return path if path.exists() else CONFIG_DIR / "demo_seq.yaml"


def load_bench_config(data_name: str) -> dict:
    """Read a data set's bench YAML (models, ks, sampler grid, published figures)."""
    path = config_path(data_name)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"invalid YAML ({getattr(e, 'problem', e)})", path, mark.line + 1 if mark else None) from None
    cfg.setdefault("models", {})
    cfg["_path"] = str(path)
    return cfg


def resolve_model(name: str, cfg: dict) -> tuple[str, str, dict]:
    """(display name, registered model name, hyperparameters) for a name in --models."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    entry = dict(cfg["models"].get(key) or cfg["models"].get(name) or {})
    base = entry.pop("model", key)
    model_class(base)  # clear error for unknown names
    return key, base, entry


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def _timed_scores(model, split, **kwargs) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    scores = model.score(split.seq, split.seq_len, **kwargs)
    return scores, (time.perf_counter() - start) * 1000.0 / len(split) * 1000.0


def sampler_grid(model, samplers: list[str], steps: list[int], fast_max_steps: int) -> list[tuple[str, int]]:
    """Sampler x step pairs to evaluate: DDPM at every count <= T, the fast samplers up to fast_max_steps."""
    T = model.config.num_train_timesteps
    grid = []
    for s in samplers:
        for n in steps:
            if n > T or (s != "ddpm" and n > fast_max_steps):
                continue
            grid.append((s, int(n)))
    return grid


def run_seq_bench(spec: str, models: list[str], seeds: int, sampling_steps: list[int] | None,
                  progress: bool = True, samplers: list[str] | None = None, *,
                  partial: Callable[[dict], None] | None = None, overrides: dict | None = None,
                  first_seed: int = 0, save_dir: str | Path | None = None) -> dict:
    """Train and evaluate `models` on a next-item data set over `seeds` seeds; JSON-able results.

    `partial(result)` is called after every run so a long bench can save progress; `overrides`
    maps a model name to hyperparameters replacing the YAML's (e.g. fewer epochs for a smoke run).
    Seeds are first_seed .. first_seed+seeds-1 (benches split across processes merge with
    `merge_results`); `save_dir` keeps every trained model as `<save_dir>/<model>-seed<k>/`.
    """
    from tqdm.auto import tqdm

    if seeds < 1:
        raise InputError("--seeds must be at least 1")
    data = load_seq(spec)
    cfg = load_bench_config(data.name)
    bench = cfg.get("bench", {})
    ks = tuple(cfg.get("ks", (10, 20, 50)))
    samplers = samplers or bench.get("samplers", ["ddpm", "ddim", "dpmsolver"])
    steps = sampling_steps or bench.get("sampling_steps", [1000, 500, 50, 20, 10])
    fast_max = int(bench.get("fast_max_steps", 100))
    for s in samplers:
        if s not in ("ddpm", "ddim", "dpmsolver"):
            raise InputError(f"unknown sampler {s!r} (use ddpm, ddim, dpmsolver)")
    if any(int(n) < 1 for n in steps):
        raise InputError("--sampling-steps must be positive integers")
    resolved = [resolve_model(m, cfg) for m in models]
    result = {
        "data": data.name, "spec": str(spec), "n_items": data.n_items,
        "rows": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
        "protocol": "all items ranked per test row; HR/Recall/NDCG@K from recommenders.metrics; model "
                    f"selection on valid HR@{cfg.get('select_k', 20)}; inference ms per 1,000 rows end to end "
                    "(history encoding, sampling, scores over all items; top-k excluded)",
        "ks": list(ks), "headline": cfg.get("headline", ["hr", "ndcg"]), "seeds_requested": seeds,
        "config_file": cfg["_path"], "published": cfg.get("published", {}), "models": {},
        "environment": {"torch_threads": _threads(), "cpus": os.cpu_count(), "machine": platform.machine(),
                        "python": platform.python_version(), "started": _now()},
    }
    # Seed-major order: every model gets seed 0 before any gets seed 1, so a bench stopped early
    # (partial results) still compares all models.
    jobs = []
    for seed in range(first_seed, first_seed + seeds):
        for key, base, hp in resolved:
            hp = {**hp, **(overrides or {}).get(key, {})}
            if seed == first_seed or not getattr(model_class(base), "deterministic", False):
                jobs.append((key, base, hp, seed))
    for key, base, hp, seed in tqdm(jobs, desc="seq bench", disable=not progress):
        model = model_class(base)(**hp)
        log = model.fit(data, seed=seed, progress=progress)
        if save_dir is not None:
            model.save(Path(save_dir) / f"{key}-seed{seed}")
        entry = result["models"].setdefault(key, {"model": base, "hyperparameters": _config_dict(model),
                                                  "runs": []})
        run = {"seed": seed, "train_seconds": log["train_seconds"], "best_epoch": log.get("best_epoch"),
               "epochs_run": log.get("epochs_run"), "valid": {k: v for k, v in log.items() if k.startswith("valid_")},
               "variants": {}}
        grid = sampler_grid(model, samplers, steps, fast_max) if base in DIFFUSION else [("-", 0)]
        for sampler, n in grid:
            kwargs = {"sampler": sampler, "steps": n, "seed": seed} if sampler != "-" else {}
            scores, ms = _timed_scores(model, data.test, **kwargs)
            metrics = ranking_metrics(scores, data.test.target, ks=ks)
            v = run["variants"][f"{sampler}@{n}" if n else "-"] = {"metrics": metrics, "infer_ms_per_1k": ms}
            if hasattr(model, "timing"):  # diffusion: the reverse-process share of that time
                v["sample_ms_per_1k"] = model.timing["sample_s"] * 1e6 / len(data.test)
        entry["runs"].append(run)
        _summarise(entry)
        if partial is not None:
            partial(result)
    result["environment"]["finished"] = _now()
    result["summary"] = summarise_targets(result, cfg)
    return result


def _summarise(entry: dict) -> None:
    """Mean and std over seeds for every variant of one model."""
    runs = entry["runs"]
    entry["seeds"] = [r["seed"] for r in runs]
    entry["train_seconds"] = _mean_std([r["train_seconds"] for r in runs])
    variants = {}
    for name in runs[0]["variants"]:
        rows = [r["variants"][name] for r in runs if name in r["variants"]]
        variants[name] = {
            "mean": {k: _mean_std([v["metrics"][k] for v in rows])["mean"] for k in rows[0]["metrics"]},
            "std": {k: _mean_std([v["metrics"][k] for v in rows])["std"] for k in rows[0]["metrics"]},
            "infer_ms_per_1k": _mean_std([v["infer_ms_per_1k"] for v in rows]),
        }
        if "sample_ms_per_1k" in rows[0]:
            variants[name]["sample_ms_per_1k"] = _mean_std([v["sample_ms_per_1k"] for v in rows])
    entry["variants"] = variants


def summarise_targets(result: dict, cfg: dict) -> dict:
    """The figures the issue asks for: best full-step vs fast samplers, speedups, baselines compared."""
    key = cfg.get("target_metric", "hr@20")
    ref_steps = int(cfg.get("bench", {}).get("reference_steps", 500))
    out: dict = {"metric": key}
    for name, entry in result["models"].items():
        variants = entry.get("variants", {})
        out.setdefault("models", {})[name] = {v: variants[v]["mean"][key] for v in variants}
        if entry["model"] not in DIFFUSION:
            continue
        full = {v: s for v, s in variants.items() if v.startswith("ddpm@") and int(v.split("@")[1]) >= ref_steps}
        fast = {v: s for v, s in variants.items() if v.split("@")[0] != "ddpm" and int(v.split("@")[1]) <= 20}
        ref = variants.get(f"ddpm@{ref_steps}")
        if not full or not fast or ref is None:
            continue
        best_full = max(full, key=lambda v: full[v]["mean"][key])
        best_fast = max(fast, key=lambda v: fast[v]["mean"][key])
        fv, bv = full[best_full]["mean"][key], fast[best_fast]["mean"][key]
        out[name] = {
            "best_full_step": best_full, f"best_full_step_{key}": fv,
            "best_fast": best_fast, f"best_fast_{key}": bv,
            "fast_relative_gap": (fv - bv) / fv if fv else None,
            "fast_within_5pct": bool(fv and (fv - bv) / fv <= 0.05),
            f"speedup_vs_ddpm@{ref_steps}": {v: ref["infer_ms_per_1k"]["mean"] / s["infer_ms_per_1k"]["mean"]
                                              for v, s in fast.items()},
            # machine-independent: every sampler here makes one denoiser call per step (two with guidance)
            f"denoiser_calls_ratio_vs_ddpm@{ref_steps}": {v: ref_steps / int(v.split("@")[1]) for v in fast},
            f"sampling_speedup_vs_ddpm@{ref_steps}": {
                v: ref["sample_ms_per_1k"]["mean"] / s["sample_ms_per_1k"]["mean"]
                for v, s in fast.items() if "sample_ms_per_1k" in s and "sample_ms_per_1k" in ref},
        }
    return out


def merge_results(results: list[dict]) -> dict:
    """One result from benches of the same data set run apart (e.g. models split across processes)."""
    if len({r["data"] for r in results}) != 1:
        raise InputError("cannot merge benches of different data sets")
    merged = {**results[0], "models": {}}
    merged.pop("partial", None)
    for r in results:
        for name, entry in r["models"].items():
            into = merged["models"].setdefault(name, {**entry, "runs": []})
            seen = {run["seed"] for run in into["runs"]}
            into["runs"] += [run for run in entry["runs"] if run["seed"] not in seen]
    for entry in merged["models"].values():
        entry["runs"].sort(key=lambda run: run["seed"])
        _summarise(entry)
    merged["environment"] = {**results[0]["environment"], "merged_from": [r["environment"] for r in results]}
    merged["summary"] = summarise_targets(merged, load_bench_config(merged["data"]))
    return merged


def _config_dict(model) -> dict:
    import dataclasses

    return dataclasses.asdict(model.config)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt(mean: float, std: float, pct: bool) -> str:
    return f"{100 * mean:.2f}±{100 * std:.2f}" if pct else f"{mean:.1f}±{std:.1f}"


def format_table(result: dict) -> str:
    """A plain-text table: one row per model x sampler, metrics in % (mean±std over seeds)."""
    families = result.get("headline", ["hr", "ndcg"])
    cols = [f"{f}@{k}" for f in families for k in result["ks"]]
    header = ["model", "sampler", *[c.upper() for c in cols], "train s", "ms/1k rows", "seeds"]
    rows = []
    for name, entry in result["models"].items():
        for variant, v in entry.get("variants", {}).items():
            rows.append([name, variant, *[_fmt(v["mean"][c], v["std"][c], True) for c in cols],
                         _fmt(entry["train_seconds"]["mean"], entry["train_seconds"]["std"], False),
                         f"{v['infer_ms_per_1k']['mean']:.0f}", str(len(entry["runs"]))])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    out = [f"{result['data']}: {result['rows']['test']} test rows, {result['n_items']} items, metrics in %",
           line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]]
    for name, s in result.get("summary", {}).items():
        if isinstance(s, dict) and "best_fast" in s:
            speed = ", ".join(f"{v} {x:.0f}x" for v, x in s[next(k for k in s if k.startswith("speedup"))].items())
            out.append(f"{name}: best full-step {s['best_full_step']}, best <=20-step {s['best_fast']} "
                       f"(gap {100 * s['fast_relative_gap']:.1f}% relative); speedup vs "
                       f"{next(k for k in s if k.startswith('speedup')).split('_vs_')[1]}: {speed}")
    return "\n".join(out)
