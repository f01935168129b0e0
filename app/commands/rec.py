"""`atelier rec train|eval|bench`: train, evaluate and benchmark recommenders (heavy imports inside commands)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer

from app.commands import options
from core.errors import InputError

CHECKPOINT_DIR = ".checkpoint"  # inside --out: epoch checkpoints of the models trained in epochs, removed once saved

app = typer.Typer(help="Train, evaluate and benchmark recommenders.", no_args_is_help=True)



def _threads(n: int) -> None:
    from core.runtime import torch_threads

    torch_threads(n)


def _emit(result: dict, as_json: bool, json_out: Optional[Path]) -> None:
    from core.io import printable, write_results_json

    if json_out is not None:
        write_results_json(json_out, result)
    if as_json:
        typer.echo(json.dumps(printable(result), indent=2, default=float))


def _int_list(value: str, option: str, example: str) -> list[int]:
    """A comma-separated list of integers, or one clear error naming the option."""
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{option} expects integers like {example}, got {value!r}") from None


def _parse_sets(values: list[str]) -> dict:
    """`--set key=value` pairs, values parsed as YAML scalars/lists (so `hidden=[1000]` works)."""
    from core.yamlio import parse_yaml

    out = {}
    for item in values or []:
        if "=" not in item:
            raise InputError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_yaml(value, "--set", what="--set value").data
    return out


def _data_kind(data: str, models: list[str], task: str) -> str:
    """"cf" or "seq": the data's format decides; data holding both (demo, a CSV) by --task, else the models."""
    from recommenders.bench_config import KIND_WORDS, model_kind
    from recommenders.datasets import SEQ_FORMATS, detect_format

    if task not in ("auto", "cf", "seq"):
        raise InputError(f"--task must be auto, cf or seq, got {task!r}")
    fmt = detect_format(data)
    fixed = "seq" if fmt in SEQ_FORMATS else "cf" if fmt == "cf-npy" else None
    if fixed is not None:
        if task != "auto" and task != fixed:
            raise InputError(f"--task {task}, but {rel_path(data)} holds {KIND_WORDS[fixed]} data")
        return fixed
    if task != "auto":
        return task
    kinds = {model_kind(m) for m in models if m.strip().lower() not in ("mostpop", "pop")} - {None}
    return "seq" if kinds == {"seq"} else "cf"


def rel_path(path) -> str:
    from recommenders.bench_config import rel_path as rel

    return rel(path)


def _say(line: str, as_json: bool) -> None:
    """The config line on screen; with --json the printed JSON carries it (`config.line`) instead."""
    if not as_json:
        typer.echo(line)


def _tune_first(command: str, data: str, kind: str, names: list[str], config: Optional[Path], budget: str,
                tune_out: Optional[Path], default_out: Path, quiet: bool, seed: int = 0, say: bool = True) -> Path:
    """Run `--tune BUDGET` on valid, write the chosen config as YAML and return its path (the run then reads it).

    `say`: print the config line and the tuned file (off under `rec train --json`, whose JSON records them).
    """
    from recommenders import tune as tuning
    from recommenders.bench_config import check_models, require_settings, resolve, stats_of
    from recommenders.datasets import load_cf, load_seq

    budget_s = tuning.parse_budget(budget)
    splits = load_seq(data) if kind == "seq" else load_cf(data)
    run_config = resolve(splits.name, stats_of(splits), config, data)
    names = check_models(names, kind, data, run_config.data)
    require_settings(names, run_config)
    if say:
        typer.echo(run_config.line + f" (tuning from it for {budget})")
    if kind == "seq":
        from recommenders.seq_bench import resolve_model

        cfg = {**run_config.data, "models": run_config.models}
        models = {key: (base, hp) for key, base, hp in (resolve_model(n, cfg) for n in names)}
        metric = run_config.data.get("target_metric", "hr@20")
    else:
        models = {n: (n, dict(run_config.models.get(n, {}))) for n in names}
        metric = "recall@20"
    record = tuning.tune(splits, models, budget_s, metric, seed=seed, progress=not quiet)
    path = tune_out or default_out
    header = (f"tuned by `atelier rec {command} --tune {budget}` on {splits.name} "
              f"(valid {metric}; optuna TPE); reuse with --config {rel_path(path)}")
    tuning.save_tuned(path, tuning.tuned_config(run_config, record), header)
    done = ", ".join(f"{k}: {r['trials']} trials, valid {r['best_valid']:.4f}" for k, r in record["models"].items())
    if say:
        typer.echo(f"tuned config: {rel_path(path)} ({done or 'nothing to tune'})")
    return path


def _train_seq(data, model, out, seed, config, set_, as_json, json_out) -> None:
    """`rec train` for next-item data: fit with the data set's YAML, select on valid, save, test once."""
    import time

    from core.io import atomic_write_json
    from recommenders.seq_bench import evaluate_seq, train_seq

    start = time.perf_counter()
    checkpoint = Path(out) / CHECKPOINT_DIR
    rec, splits, cfg, log = train_seq(data, model, seed=seed, config_file=config, overrides=_parse_sets(set_),
                                      progress=not as_json, checkpoint_dir=checkpoint,
                                      announce=lambda line: _say(line, as_json))
    seconds = time.perf_counter() - start
    rec.save(out)
    ks = tuple(cfg.get("ks", (10, 20, 50)))
    summary = {k: v for k, v in log.items() if k != "log"}
    atomic_write_json(Path(out) / "training.json", {"data": rel_path(data), "seed": seed, "config_file": cfg["_path"],
                                                    "config": cfg["_config"], **log})
    shutil.rmtree(checkpoint, ignore_errors=True)  # the model is saved: nothing left to resume
    result = {"task": "seq", "model": rec.name, "data": rel_path(data), "seed": seed, "out": rel_path(out),
              "train_s": seconds, "config": cfg["_config"], **summary,
              "test": evaluate_seq(rec, splits.test, ks=ks, single_rows=0)}
    _emit(result, as_json, json_out)
    if not as_json:
        t, k = result["test"], cfg.get("target_metric", "hr@20")
        typer.echo(f"saved {rec.name} to {out} in {seconds:.1f}s; test {k.upper()} {t[k]:.4f}")


def _eval_seq(rec, model_dir, data, split, sampler, steps, guidance, seed, retrieval, n_probe, as_json,
              json_out) -> None:
    """`rec eval` for a saved next-item model: metrics on a split, ms per 1,000 rows, one-row latency."""
    from recommenders.datasets import load_seq
    from recommenders.seq_bench import evaluate_seq, run_config

    splits = load_seq(data)
    if rec.config.n_items != splits.n_items:
        raise InputError(f"model was trained on {rec.config.n_items} items, data has {splits.n_items}", model_dir)
    if split not in ("valid", "test"):
        raise InputError(f"--split must be valid or test, got {split!r}")
    _, cfg = run_config(splits, data)  # only ks are read: the data set's own, or its derived config's
    ks = tuple(cfg.get("ks", (10, 20, 50)))
    kwargs = {}
    if rec.name == "dreamrec":
        sampler = sampler or rec.config.sampler
        steps = steps or rec.config.sampling_steps
        kwargs = {"sampler": sampler, "steps": steps, "guidance": guidance, "seed": seed}
        if sampler not in ("ddpm", "ddim", "dpmsolver"):
            raise InputError(f"--sampler must be ddpm, ddim or dpmsolver, got {sampler!r}")
        if not 1 <= steps <= rec.config.num_train_timesteps:
            raise InputError(f"--steps must be in 1..{rec.config.num_train_timesteps}, got {steps}")
    if retrieval not in ("exact", "ivf"):
        raise InputError(f"--retrieval must be exact or ivf, got {retrieval!r}")
    if retrieval == "ivf" and rec.name != "dreamrec":
        raise InputError(f"--retrieval ivf is for dreamrec; {rec.name} ranks all items")
    if n_probe is not None and n_probe < 1:
        raise InputError(f"--n-probe must be at least 1, got {n_probe}")
    result = {"task": "seq", "model": rec.name, "model_dir": rel_path(model_dir), "data": rel_path(data), "split": split,
              **({"sampler": kwargs["sampler"], "steps": kwargs["steps"], "retrieval": retrieval,
                  "guidance": rec.config.guidance if guidance is None else guidance} if kwargs else {}),
              **evaluate_seq(rec, getattr(splits, split), ks=ks, retrieval=retrieval, n_probe=n_probe, **kwargs)}
    _emit(result, as_json, json_out)
    if not as_json:
        for key, value in result.items():
            typer.echo(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")


@app.command("train")
def train(
    data: str = typer.Option(..., "--data", help="Benchmark folder, interactions CSV, or 'demo'."),
    model: str = typer.Option(..., "--model", help="CF: mostpop, itemknn, ease, multivae, diffrec, ldiffrec, giffcf; "
                                                   "sequential: mostpop, sasrec, gru4rec, dreamrec."),
    out: Path = typer.Option(..., "--out", help="Folder for config.json + model.safetensors.", callback=options.out_dir),
    seed: int = typer.Option(0, "--seed", callback=options.check_seed),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with `models:` hyperparameters."),
    set_: list[str] = typer.Option([], "--set", help="Override one hyperparameter, e.g. --set epochs=5."),
    task: str = typer.Option("auto", "--task", help="auto, cf or seq (auto: sequential models or data -> seq)."),
    tune: Optional[str] = typer.Option(None, "--tune", help="Time budget (90s, 10m): optuna search on valid first; "
                                                            "the chosen config is saved (OUT/tuned.yaml) and used."),
    tune_out: Optional[Path] = typer.Option(None, "--tune-out", help="Where --tune writes its YAML.",
                                            callback=options.out_file),
    threads: int = typer.Option(1, "--threads", help="Torch threads (1 is fastest on a shared CPU)."),
    as_json: bool = typer.Option(False, "--json", help="Print the training summary as JSON."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", callback=options.out_file),
) -> None:
    """Train one model (hyperparameters from the data set's YAML), select on validation, save it.

    Sequential data (zhihu, amazon-beauty; `--data demo` with a sequential model) trains a next-item
    model. The folder also gets training.json (data, seed, the training log: the same keys for every
    model). Models trained in epochs (diffrec, ldiffrec, giffcf, multivae, sasrec, gru4rec, dreamrec)
    checkpoint every epoch in OUT/.checkpoint:
    rerunning a stopped command resumes after the last finished epoch and ends with the same model.
    """
    import time

    from core.io import atomic_write_json
    from recommenders.bench import evaluate, make_model, parse_models, require_items
    from recommenders.bench_config import require_settings, resolve, stats_of
    from recommenders.datasets import load_cf

    _threads(threads)
    kind = _data_kind(data, [model], task)
    if tune is not None:
        config = _tune_first("train", data, kind, [model], config, tune, tune_out, Path(out) / "tuned.yaml", as_json,
                             seed, say=not as_json)
    if kind == "seq":
        _train_seq(data, model, out, seed, config, set_, as_json, json_out)
        return
    name = parse_models(model, data)[0]
    splits = load_cf(data)
    run_config = resolve(splits.name, stats_of(splits), config, data)
    _say(run_config.line, as_json)
    require_settings([name], run_config)
    require_items(splits.n_items, 50, data)
    params = {**run_config.models.get(name, {}), **_parse_sets(set_)}
    rec = make_model(name, params, run_config.file)
    start = time.perf_counter()
    checkpoint = Path(out) / CHECKPOINT_DIR
    log = rec.fit(splits, seed=seed, progress=not as_json, checkpoint_dir=checkpoint)
    seconds = time.perf_counter() - start
    rec.save(out)
    atomic_write_json(Path(out) / "training.json", {"data": rel_path(data), "seed": seed,
                                                    "config": run_config.to_json(), **log})
    result = {"model": name, "data": rel_path(data), "seed": seed, "out": rel_path(out), "train_s": seconds,
              "config": run_config.to_json(),
              **{k: v for k, v in log.items() if k != "log"}, "test": evaluate(rec, splits, latency=False)}
    shutil.rmtree(checkpoint, ignore_errors=True)  # the model is saved: nothing left to resume
    _emit(result, as_json, json_out)
    if not as_json:
        t = result["test"]
        typer.echo(f"saved {name} to {out} in {seconds:.1f}s; test Recall@20 {t['recall@20']:.4f} "
                   f"NDCG@20 {t['ndcg@20']:.4f}")


@app.command("eval")
def eval_(
    model_dir: Path = typer.Option(..., "--model-dir", help="A folder written by `atelier rec train`."),
    data: str = typer.Option(..., "--data", help="The data set the model was trained on."),
    split: str = typer.Option("test", "--split", help="Sequential models: test or valid (choose settings on valid)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="DreamRec: ddpm, ddim, dpmsolver (default: saved)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="DreamRec: reverse steps (default: saved)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="DreamRec: guidance weight w (default: saved)."),
    sample_seed: Optional[int] = typer.Option(None, "--sample-seed", help="DreamRec: seed of the sampling noise.", callback=options.check_seed),
    retrieval: str = typer.Option("exact", "--retrieval",
                                  help="DreamRec: exact (score all items) or ivf (top-k from the k-means index)."),
    n_probe: Optional[int] = typer.Option(None, "--n-probe", help="DreamRec with --retrieval ivf: lists probed "
                                                                  "(default: saved, 3 on zhihu)."),
    threads: int = typer.Option(1, "--threads"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", callback=options.out_file),
) -> None:
    """Evaluate a saved model: CF on the test split (train rows in, train + valid masked); sequential
    models on --split with latency (ms per 1,000 rows end to end, one-history median)."""
    from recommenders.base import CFRecommender, SequentialRecommender, _Saveable
    from recommenders.bench import evaluate
    from recommenders.datasets import load_cf

    _threads(threads)
    rec = _Saveable.load(model_dir)
    if isinstance(rec, SequentialRecommender):
        _eval_seq(rec, model_dir, data, split, sampler, steps, guidance, sample_seed, retrieval, n_probe, as_json,
                  json_out)
        return
    if not isinstance(rec, CFRecommender):
        raise InputError("not a recommender folder", model_dir)
    from recommenders.bench import require_items

    splits = load_cf(data)
    require_items(splits.n_items, 50, data)
    if rec.train_rows.shape != splits.train.shape:
        raise InputError(f"model was trained on {rec.train_rows.shape[0]} users x {rec.train_rows.shape[1]} items, "
                         f"data has {splits.n_users} x {splits.n_items}", model_dir)
    result = {"model": rec.name, "model_dir": rel_path(model_dir), "data": rel_path(data), **evaluate(rec, splits)}
    _emit(result, as_json, json_out)
    if not as_json:
        for key, value in result.items():
            typer.echo(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")


@app.command("bench")
def bench(
    data: str = typer.Option(..., "--data", help="Benchmark folder (ml-1m_clean, zhihu, amazon-beauty) or 'demo'."),
    models: str = typer.Option("mostpop,itemknn,ease,multivae,diffrec,ldiffrec", "--models"),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Seeds 0..N-1 (deterministic models train once)."),
    seed_list: Optional[str] = typer.Option(None, "--seed-list", help="Explicit seeds, e.g. 3,4 (overrides --seeds)."),
    task: str = typer.Option("auto", "--task", help="auto, cf or seq (for --data demo: which bench)."),
    sampling_steps: Optional[str] = typer.Option(None, "--sampling-steps",
                                                 help="Sequential bench: reverse-step counts, e.g. 1000,50,20,10."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with `models:` hyperparameters (default: the "
                                                                 "data set's tuned YAML, else one derived for it)."),
    tune: Optional[str] = typer.Option(None, "--tune", help="Time budget (90s, 10m): optuna search on valid first; "
                                                            "the chosen config is saved (next to --json) and used."),
    tune_out: Optional[Path] = typer.Option(None, "--tune-out", help="Where --tune writes its YAML.",
                                            callback=options.out_file),
    threads: int = typer.Option(1, "--threads", help="Torch threads (1 is fastest on a shared CPU)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full result JSON here."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write a quality-vs-latency plot (PNG)."),
    resume: Optional[str] = typer.Option(None, "--resume",
                                         help="Earlier bench JSONs (comma-separated): reuse their finished models."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing: table/JSON/plot of --resume runs."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    save_dir: Optional[Path] = typer.Option(None, "--save-dir",
                                            help="Sequential bench: keep each model in DIR/<model>-seed<k>/."),
    retrieval: str = typer.Option("exact", "--retrieval",
                                  help="Sequential bench: exact, or exact,ivf to also time DreamRec's fast "
                                       "samplers with IVF top-k retrieval."),
    timing_repeats: int = typer.Option(3, "--timing-repeats", min=1,
                                       help="Sequential bench: test latencies are the median of this many passes."),
) -> None:
    """Train and test each model over several seeds; print a mean±std table, write JSON and a plot."""
    from core.io import write_results_json

    _threads(threads)
    kind = _data_kind(data, [m for m in models.split(",") if m.strip()], task)
    if tune is not None:
        names = [m for m in models.split(",") if m.strip()]
        if kind == "seq" and models == "mostpop,itemknn,ease,multivae,diffrec,ldiffrec":
            names = ["mostpop", "sasrec", "gru4rec", "dreamrec"]
        near = json_path.with_suffix(".tuned.yaml") if json_path else Path(f"{Path(data).name}.tuned.yaml")
        given = config
        config = _tune_first("bench", data, kind, names, config, tune, tune_out, near, quiet)
    if kind == "seq":
        from recommenders import seq_bench

        steps = None
        if sampling_steps:
            steps = _int_list(sampling_steps, "--sampling-steps", "1000,50,20")
        names = [m.strip() for m in models.split(",") if m.strip()]
        if models == "mostpop,itemknn,ease,multivae,diffrec,ldiffrec":  # the CF default: use the seq default
            names = ["mostpop", "sasrec", "gru4rec", "dreamrec"]
        partial = (lambda r: write_results_json(json_path, r)) if json_path else None
        chosen_seeds = _int_list(seed_list, "--seed-list", "3,4") if seed_list else None
        if report_only:
            raise InputError("--report-only is for CF benches; a sequential bench with --resume reuses its "
                             "finished runs and trains only the missing ones")
        modes = [r.strip() for r in retrieval.split(",") if r.strip()]
        bad = [r for r in modes if r not in ("exact", "ivf")]
        if bad or not modes:
            raise InputError(f"--retrieval takes exact and/or ivf, e.g. exact,ivf; got {retrieval!r}")
        result = seq_bench.run_seq_bench(data, names, seeds, steps, progress=not quiet, partial=partial,
                                         seed_list=chosen_seeds, save_dir=save_dir, retrieval=modes,
                                         resume=[p.strip() for p in (resume or "").split(",") if p.strip()],
                                         timing_repeats=timing_repeats, config_file=config,
                                         announce=typer.echo)
        table = seq_bench.format_table(result)
    else:
        from recommenders.bench import format_table, run_cf_bench

        save = (lambda r: write_results_json(json_path, r)) if json_path else None
        chosen: int | list[int] = _int_list(seed_list, "--seed-list", "3,4") if seed_list else seeds
        result = run_cf_bench(data, models, chosen, config_path=str(config) if config else None,
                              progress=not quiet, on_result=save,
                              resume=[p.strip() for p in (resume or "").split(",") if p.strip()],
                              train=not report_only, announce=typer.echo)
        table = format_table(result)
    result["command"] = "atelier rec bench " + " ".join(
        f"--{k} {v}" for k, v in [("data", rel_path(data)), ("models", models), ("seeds", seeds)])
    if tune is not None:
        result["command"] += f" --tune {tune}" + (f" --config {rel_path(given)}" if given is not None else "")
    elif config is not None:
        result["command"] += f" --config {rel_path(config)}"
    if "selection" in result:  # sequential bench: the options that shaped it
        shaped = [("task", None if task == "auto" else task), ("seed-list", seed_list),
                  ("sampling-steps", sampling_steps), ("save-dir", save_dir),
                  ("retrieval", None if retrieval == "exact" else retrieval),
                  ("timing-repeats", None if timing_repeats == 3 else timing_repeats)]
        result["command"] += "".join(f" --{k} {v}" for k, v in shaped if v is not None)
    if json_path:
        write_results_json(json_path, result)
    if plot_path:
        if "models" not in result or not all("ms_per_user" in m.get("mean", {}) for m in result["models"].values()):
            typer.echo("note: --plot is drawn for CF benches only", err=True)
        else:
            from recommenders.bench import plot

            plot(result, plot_path)
    typer.echo(table)
