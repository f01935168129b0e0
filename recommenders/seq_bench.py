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
from typing import Callable, Sequence

import numpy as np

from core.errors import InputError

from .base import model_class
from .bench import require_items
from .datasets import load_seq
from .metrics import metrics_from_top, ranking_metrics

CONFIG_DIR = Path(__file__).parent / "configs"
ALIASES = {"mostpop": "seq-mostpop", "pop": "seq-mostpop"}
DIFFUSION = {"dreamrec"}


def config_path(data_name: str) -> Path:
    """The tuned YAML of a data set (`demo` reads demo_seq.yaml); it may not exist (then a config is derived)."""
    return CONFIG_DIR / f"{'demo_seq' if data_name == 'demo' else data_name}.yaml"


def load_bench_config(data_name: str, path: str | Path | None = None) -> dict:
    """Read a bench YAML (models, ks, sampler grid, published figures): `path`, else the data set's own.

    A named `path` must exist. Without one, a data set with no YAML of its own reads demo_seq.yaml:
    kept for the shop's preference path (`recommenders.preference`); `rec train`/`rec bench`/`rec eval`
    choose through `bench_config.resolve`, which derives a config instead and says so.
    """
    from .bench_config import read_config, rel_path

    if path is None:
        path = config_path(data_name) if config_path(data_name).exists() else config_path("demo")
    cfg = read_config(Path(path))
    cfg["_path"] = rel_path(path)
    return cfg


def run_config(data, spec: str | Path, config_file: str | Path | None = None):
    """The RunConfig of a next-item run (given, tuned or derived) and its YAML dict with `_path`."""
    from .bench_config import resolve, stats_of

    rc = resolve(data.name, stats_of(data), config_file, spec)
    cfg = {**rc.data, "_path": rc.file}
    cfg.setdefault("models", {})
    return rc, cfg


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


def variant_name(sampler: str, steps: int, retrieval: str = "exact", n_probe: int | None = None) -> str:
    """'ddim@5' (all items scored), 'ddim@5/ivf3' (top-k from the IVF index, n_probe 3), '-' (no sampler)."""
    base = f"{sampler}@{steps}" if steps else "-"
    return base if retrieval == "exact" else f"{base}/{retrieval}{n_probe}"


def parse_variant(name: str) -> tuple[str, int, str]:
    """(sampler, steps, retrieval) of a `variant_name`."""
    head, _, tail = name.partition("/")
    sampler, _, steps = head.partition("@")
    return sampler, int(steps) if steps else 0, "ivf" if tail.startswith("ivf") else "exact"


def _timed(model, split, call, repeats: int) -> tuple:
    """Run `call(seq, seq_len)` on a 256-row warm-up (untimed), then `repeats` times on the whole split.

    Returns (the last output, median ms per 1,000 rows, median ms per 1,000 rows of each part a
    diffusion model reports in `model.timing`: encode / sample / rank). Every pass gives the same
    output (fixed sampling seed); repeating only steadies the timing on a shared machine.
    """
    call(split.seq[:256], split.seq_len[:256])
    per_1k = 1e6 / len(split)
    totals, parts = [], {}
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = call(split.seq, split.seq_len)
        totals.append((time.perf_counter() - start) * per_1k)
        for part, seconds in getattr(model, "timing", {}).items():
            parts.setdefault(part.removesuffix("_s"), []).append(seconds * per_1k)
    return out, float(np.median(totals)), {part: float(np.median(v)) for part, v in parts.items()}


def train_seq(spec: str, model: str, *, seed: int = 0, config_file: str | Path | None = None,
              overrides: dict | None = None, progress: bool = True, checkpoint_dir: str | Path | None = None,
              announce: Callable[[str], None] | None = None):
    """Train one next-item model with the data set's YAML hyperparameters (plus `overrides`).

    Returns (fitted model, data, bench config, training log); `atelier rec train` saves the model.
    Neural models checkpoint each epoch into `checkpoint_dir` and resume from it (MostPop has no epochs).
    The config is `config_file`, else the tuned YAML, else derived; `announce(line)` hears which.
    """
    from .bench_config import check_models, require_settings

    data = load_seq(spec)
    rc, cfg = run_config(data, spec, config_file)
    require_settings(check_models([model], "seq", spec, cfg), rc)
    if announce is not None:
        announce(rc.line)
    require_items(data.n_items, max(cfg.get("ks", (10, 20, 50))), spec)
    cfg["_config"] = rc.to_json()
    key, base, hp = resolve_model(model, cfg)
    model_obj = model_class(base)(**{**hp, **(overrides or {})})
    log = model_obj.fit(data, seed=seed, progress=progress, checkpoint_dir=checkpoint_dir)
    return model_obj, data, cfg, {"model_key": key, **log}


def evaluate_seq(model, split, *, ks=(10, 20, 50), single_rows: int = 20, retrieval: str = "exact",
                 n_probe: int | None = None, repeats: int = 1, **score_kwargs) -> dict:
    """Metrics on a SeqSplit, plus latency: ms per 1,000 rows end to end (median of `repeats` passes)
    and the median ms for one history.

    "exact" ranks all items (history encoding, sampling, scores over all items; top-k not timed);
    "ivf" (DreamRec) times `recommend(retrieval="ivf")`, top-max(ks) lists included, and computes
    the same metrics from those lists. `score_kwargs` (sampler, steps, guidance, seed) go to
    diffusion models only.
    """
    kwargs = score_kwargs if model.name in DIFFUSION else {}
    if retrieval not in ("exact", "ivf"):
        raise InputError(f"retrieval must be exact or ivf, got {retrieval!r}")
    if retrieval == "ivf":
        if model.name not in DIFFUSION:
            raise InputError(f"IVF retrieval is for DreamRec; {model.name} ranks all items")
        kwargs = {**kwargs, "retrieval": "ivf", "n_probe": n_probe or model.config.n_probe}
        top, ms, parts = _timed(model, split, lambda q, n: model.recommend(q, n, k=max(ks), **kwargs), repeats)
        out: dict = metrics_from_top(top, split.target, ks=ks)
        out["n_probe"] = kwargs["n_probe"]
        one = lambda i: model.recommend(split.seq[i:i + 1], split.seq_len[i:i + 1], k=max(ks), **kwargs)  # noqa: E731
    else:
        scores, ms, parts = _timed(model, split, lambda q, n: model.score(q, n, **kwargs), repeats)
        out = ranking_metrics(scores, split.target, ks=ks)
        one = lambda i: model.score(split.seq[i:i + 1], split.seq_len[i:i + 1], **kwargs)  # noqa: E731
    out["rows"] = len(split)
    out["infer_ms_per_1k"] = ms
    out.update({f"{part}_ms_per_1k": value for part, value in parts.items()})
    times = []
    for i in range(min(single_rows, len(split))):
        start = time.perf_counter()
        one(i)
        times.append((time.perf_counter() - start) * 1000.0)
    if times:
        out["single_row_ms"] = float(np.median(times))
    return out


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
                  first_seed: int = 0, save_dir: str | Path | None = None,
                  seed_list: list[int] | None = None, select: list[tuple[str, int]] | None = None,
                  retrieval: Sequence[str] = ("exact",), resume: Sequence[str | Path] = (),
                  timing_repeats: int = 3, config_file: str | Path | None = None,
                  announce: Callable[[str], None] | None = None) -> dict:
    """Train and evaluate `models` on a next-item data set over `seeds` seeds; JSON-able results.

    `partial(result)` is called after every run so a long bench can save progress; `overrides`
    maps a model name to hyperparameters replacing the YAML's (e.g. fewer epochs for a smoke run).
    Seeds are first_seed .. first_seed+seeds-1, or `seed_list` (benches split across processes merge
    with `merge_results`); `save_dir` keeps every trained model as `<save_dir>/<model>-seed<k>/`.

    Diffusion models are also scored on the VALIDATION split for every (sampler, steps) candidate of
    the YAML's `bench.select_samplers` x `bench.select_steps` (or `select`); the summary's `chosen_on_valid` is the
    candidate with the best mean validation metric, and its test figures are the headline.
    With "ivf" in `retrieval`, every DDIM / DPM-Solver++ variant is also run with the model's IVF
    top-k retrieval (`variant_name(..., "ivf", n_probe)`: metrics from its top lists, time includes
    the top-k); DDPM stays exact, as the reference.
    Test-split latencies are medians of `timing_repeats` passes (same outputs each pass).
    `resume`: earlier JSONs of this bench (e.g. the --json of a run that was stopped) whose finished
    (model, seed) runs are reused instead of retrained; they must have been run with the same options.
    The config is `config_file`, else the data set's tuned YAML, else one derived for it
    (`bench_config.resolve`); `announce(line)` hears which before anything trains; the result records it.
    """
    from tqdm.auto import tqdm

    from .bench_config import check_models, rel_path, require_settings

    seed_list = list(seed_list) if seed_list else list(range(first_seed, first_seed + seeds))
    if not seed_list or seeds < 1:
        raise InputError("--seeds must be at least 1")
    data = load_seq(spec)
    rc, cfg = run_config(data, spec, config_file)
    models = check_models(list(models), "seq", spec, cfg)
    require_settings(models, rc)
    if announce is not None:
        announce(rc.line)
    require_items(data.n_items, max(cfg.get("ks", (10, 20, 50))), spec)
    bench = cfg.get("bench", {})
    ks = tuple(cfg.get("ks", (10, 20, 50)))
    samplers = samplers or bench.get("samplers", ["ddpm", "ddim", "dpmsolver"])
    steps = sampling_steps or bench.get("sampling_steps", [1000, 500, 50, 20, 10])
    fast_max = int(bench.get("fast_max_steps", 100))
    if select is None:
        select = [(sm, int(n)) for sm in bench.get("select_samplers", []) for n in bench.get("select_steps", [])]
    select_key = cfg.get("target_metric", "hr@20")
    for r in retrieval:
        if r not in ("exact", "ivf"):
            raise InputError(f"unknown retrieval {r!r} (use exact, ivf)")
    for s in samplers:
        if s not in ("ddpm", "ddim", "dpmsolver"):
            raise InputError(f"unknown sampler {s!r} (use ddpm, ddim, dpmsolver)")
    if any(int(n) < 1 for n in steps):
        raise InputError("--sampling-steps must be positive integers")
    resolved = [resolve_model(m, cfg) for m in models]
    options = {"samplers": list(samplers), "sampling_steps": [int(n) for n in steps],
               "select": [f"{sm}@{n}" for sm, n in select], "retrieval": list(retrieval),
               "overrides": overrides or {}, "timing_repeats": int(timing_repeats)}
    previous = _previous_runs(resume, data.name, options)
    result = {
        "data": data.name, "spec": rel_path(spec), "n_items": data.n_items,
        "rows": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
        "protocol": "all items ranked per test row; HR/Recall/NDCG@K from recommenders.metrics; model "
                    f"selection on valid HR@{cfg.get('select_k', 20)}; inference ms per 1,000 rows end to end "
                    "(history encoding, sampling, scores over all items; top-k excluded; IVF variants: top-max(K) "
                    f"lists included), median of {int(timing_repeats)} passes",
        "ks": list(ks), "headline": cfg.get("headline", ["hr", "ndcg"]), "seeds_requested": len(seed_list),
        "selection": {"candidates": [f"{sm}@{n}" for sm, n in select], "metric": select_key, "split": "valid"},
        "config_file": cfg["_path"], "config": rc.to_json(), "published": cfg.get("published", {}), "models": {},
        "options": options,
        "environment": {"torch_threads": _threads(), "cpus": os.cpu_count(), "machine": platform.machine(),
                        "python": platform.python_version(), "started": _now()},
    }
    # Seed-major order: every model gets seed 0 before any gets seed 1, so a bench stopped early
    # (partial results) still compares all models.
    jobs = []
    for seed in seed_list:
        for key, base, hp in resolved:
            hp = {**hp, **(overrides or {}).get(key, {})}
            if seed == seed_list[0] or not getattr(model_class(base), "deterministic", False):
                jobs.append((key, base, hp, seed))
    if resume:
        result["resumed_from"] = [rel_path(p) for p in resume]
    for key, base, hp, seed in tqdm(jobs, desc="seq bench", disable=not progress):
        if (key, seed) in previous:
            done_entry, run = previous[(key, seed)]
            entry = result["models"].setdefault(key, {k: v for k, v in done_entry.items() if k in ("model", "hyperparameters")}
                                                | {"runs": []})
            entry["runs"].append(run)
            _summarise(entry)
            continue
        model = model_class(base)(**hp)
        log = model.fit(data, seed=seed, progress=progress)
        if save_dir is not None:
            model.save(Path(save_dir) / f"{key}-seed{seed}")
        entry = result["models"].setdefault(key, {"model": base, "hyperparameters": _config_dict(model),
                                                  "runs": []})
        run = {"seed": seed, "train_seconds": log["seconds"], "best_epoch": log.get("best_epoch"),
               "epochs_run": log.get("epochs_run"), "valid": {log["metric"]: log["best_valid"]} if "metric" in log else {},
               "variants": {}}
        grid = sampler_grid(model, samplers, steps, fast_max) if base in DIFFUSION else [("-", 0)]
        if base in DIFFUSION and select:
            run["valid_variants"] = {}
            for sampler, n in select:  # choose on validation, never on test
                scores = model.score(data.valid.seq, data.valid.seq_len, sampler=sampler, steps=n, seed=seed)
                run["valid_variants"][f"{sampler}@{n}"] = ranking_metrics(scores, data.valid.target, ks=ks)
            grid += [c for c in select if c not in grid]
        for sampler, n in grid:
            kwargs = {"sampler": sampler, "steps": n, "seed": seed} if sampler != "-" else {}
            ev = evaluate_seq(model, data.test, ks=ks, single_rows=0, repeats=timing_repeats, **kwargs)
            run["variants"][variant_name(sampler, n)] = _variant_row(ev)
            if "ivf" in retrieval and base in DIFFUSION and sampler != "ddpm":
                probe = model.config.n_probe
                ev = evaluate_seq(model, data.test, ks=ks, single_rows=0, retrieval="ivf", n_probe=probe,
                                  repeats=timing_repeats, **kwargs)
                run["variants"][variant_name(sampler, n, "ivf", probe)] = _variant_row(ev)
        entry["runs"].append(run)
        _summarise(entry)
        if partial is not None:
            partial(result)
    result["environment"]["finished"] = _now()
    result["summary"] = summarise_targets(result, cfg)
    return result


def _variant_row(ev: dict) -> dict:
    """A bench variant from `evaluate_seq`: its metrics, and its ms per 1,000 rows (diffusion models also
    report where that time went: encode, sample, rank)."""
    return {"metrics": {k: v for k, v in ev.items() if "@" in k},
            **{k: v for k, v in ev.items() if k.endswith("_ms_per_1k")}}


def _previous_runs(paths: Sequence[str | Path], data_name: str, options: dict) -> dict:
    """{(model key, seed): (model entry, run)} from earlier bench JSONs run with the same options."""
    from .bench import read_bench_json

    done: dict = {}
    for path in paths:
        old = read_bench_json(path)
        if old is None:
            continue
        if old.get("data") != data_name:
            raise InputError(f"not a sequential bench of {data_name}", path)
        if old.get("options") != options:
            raise InputError("was run with other options (samplers, steps, retrieval or overrides); "
                             "resume with the same ones", path)
        for key, entry in old.get("models", {}).items():
            for run in entry.get("runs", []):
                done.setdefault((key, run["seed"]), (entry, run))
    return done


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
        for part in ("encode", "sample", "rank"):
            if f"{part}_ms_per_1k" in rows[0]:
                variants[name][f"{part}_ms_per_1k"] = _mean_std([v[f"{part}_ms_per_1k"] for v in rows])
    entry["variants"] = variants
    valid = [r["valid_variants"] for r in runs if "valid_variants" in r]
    if valid:
        entry["valid_variants"] = {
            name: {k: _mean_std([v[name][k] for v in valid if name in v])["mean"] for k in valid[0][name]}
            for name in valid[0]}


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
        valid = entry.get("valid_variants")
        if valid:
            chosen = max(valid, key=lambda v: valid[v][key])
            test = variants.get(chosen, {})
            out.setdefault("chosen_on_valid", {})[name] = {
                "variant": chosen, f"valid_{key}": valid[chosen][key],
                "valid_all": {v: valid[v][key] for v in valid},
                "test_mean": test.get("mean"), "test_std": test.get("std"),
                "infer_ms_per_1k": test.get("infer_ms_per_1k", {}).get("mean"),
                "why": f"best mean validation {key} over seeds among {', '.join(valid)} (test never used)"}
            ivf = next((v for v in variants if v.startswith(chosen + "/ivf")), None)
            ref = variants.get(f"ddpm@{ref_steps}")
            if ivf is not None:  # the same sampler with IVF top-k retrieval (n_probe from the model's config)
                out["chosen_on_valid"][name]["with_ivf"] = {
                    "variant": ivf, "test_mean": variants[ivf]["mean"], "test_std": variants[ivf]["std"],
                    "infer_ms_per_1k": variants[ivf]["infer_ms_per_1k"]["mean"],
                    **({f"speedup_vs_ddpm@{ref_steps}": ref["infer_ms_per_1k"]["mean"]
                        / variants[ivf]["infer_ms_per_1k"]["mean"]} if ref else {})}
        parsed = {v: parse_variant(v) for v in variants}
        full = {v: s for v, s in variants.items() if parsed[v][0] == "ddpm" and parsed[v][1] >= ref_steps}
        fast = {v: s for v, s in variants.items() if parsed[v][0] != "ddpm" and 0 < parsed[v][1] <= 20}
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
            f"denoiser_calls_ratio_vs_ddpm@{ref_steps}": {v: ref_steps / parsed[v][1] for v in fast},
            f"sampling_speedup_vs_ddpm@{ref_steps}": {
                v: ref["sample_ms_per_1k"]["mean"] / s["sample_ms_per_1k"]["mean"]
                for v, s in fast.items() if "sample_ms_per_1k" in s and "sample_ms_per_1k" in ref},
        }
        floors = [s["infer_ms_per_1k"]["mean"] - s["sample_ms_per_1k"]["mean"]
                  for s in variants.values() if "sample_ms_per_1k" in s]
        if floors and min(floors) > 0:
            # the end-to-end speedup a sampler with zero cost would get: encoding and scoring all items
            # are a floor every sampler pays (the smallest such time measured in this run)
            out[name][f"ceiling_speedup_vs_ddpm@{ref_steps}_if_sampling_were_free"] = (
                ref["infer_ms_per_1k"]["mean"] / min(floors))
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
    settings = (merged.get("config") or {}).get("settings")
    cfg = settings if settings is not None else load_bench_config(merged["data"])
    merged["summary"] = summarise_targets(merged, cfg)
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
    for name, c in result.get("summary", {}).get("chosen_on_valid", {}).items():
        key = result["summary"]["metric"]
        if c.get("test_mean"):
            out.append(f"{name} headline: {c['variant']} chosen on validation ({key} {100 * c[f'valid_{key}']:.2f}%); "
                       f"test {key} {100 * c['test_mean'][key]:.2f}±{100 * c['test_std'][key]:.2f}%")
        if c.get("with_ivf"):
            w = c["with_ivf"]
            speed = next((f"; {x:.1f}x faster than {k.split('_vs_')[1]}" for k, x in w.items()
                          if k.startswith("speedup")), "")
            out.append(f"{name} with IVF retrieval: {w['variant']} test {key} {100 * w['test_mean'][key]:.2f}"
                       f"±{100 * w['test_std'][key]:.2f}%, {w['infer_ms_per_1k']:.1f} ms/1k rows{speed}")
    for name, s in result.get("summary", {}).items():
        if isinstance(s, dict) and "best_fast" in s:
            speed = ", ".join(f"{v} {x:.0f}x" for v, x in s[next(k for k in s if k.startswith("speedup"))].items())
            out.append(f"{name}: best full-step {s['best_full_step']}, best <=20-step {s['best_fast']} "
                       f"(gap {100 * s['fast_relative_gap']:.1f}% relative); speedup vs "
                       f"{next(k for k in s if k.startswith('speedup')).split('_vs_')[1]}: {speed}")
    return "\n".join(out)
