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

SEQ_MODELS = ("seq-mostpop", "mostpop", "sasrec", "gru4rec", "dreamrec")


def _threads(n: int) -> None:
    from core.runtime import torch_threads

    torch_threads(n)


def _emit(result: dict, as_json: bool, json_out: Optional[Path]) -> None:
    from core.io import portable, write_results_json

    if json_out is not None:
        write_results_json(json_out, result)
    if as_json:
        typer.echo(json.dumps(portable(result), indent=2, default=float))


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


def _wants_seq(data: str, model: str, task: str) -> bool:
    """Whether `rec train` means a next-item model: --task, else the model name, else the data format."""
    if task not in ("auto", "cf", "seq"):
        raise InputError(f"--task must be auto, cf or seq, got {task!r}")
    if task != "auto":
        return task == "seq"
    if model.strip().lower() in ("sasrec", "gru4rec", "dreamrec", "seq-mostpop"):
        return True
    return _is_sequential(data, "auto")


def _train_seq(data, model, out, seed, config, set_, as_json, json_out) -> None:
    """`rec train` for next-item data: fit with the data set's YAML, select on valid, save, test once."""
    import time

    from core.io import atomic_write_json
    from recommenders.seq_bench import evaluate_seq, train_seq

    start = time.perf_counter()
    checkpoint = Path(out) / CHECKPOINT_DIR
    rec, splits, cfg, log = train_seq(data, model, seed=seed, config_file=config, overrides=_parse_sets(set_),
                                      progress=not as_json, checkpoint_dir=checkpoint)
    seconds = time.perf_counter() - start
    rec.save(out)
    ks = tuple(cfg.get("ks", (10, 20, 50)))
    summary = {k: v for k, v in log.items() if k != "log"}
    atomic_write_json(Path(out) / "training.json", {"data": data, "seed": seed, "config_file": cfg["_path"], **log})
    shutil.rmtree(checkpoint, ignore_errors=True)  # the model is saved: nothing left to resume
    result = {"task": "seq", "model": rec.name, "data": data, "seed": seed, "out": str(out), "train_s": seconds,
              **summary, "test": evaluate_seq(rec, splits.test, ks=ks, single_rows=0)}
    _emit(result, as_json, json_out)
    if not as_json:
        t, k = result["test"], cfg.get("target_metric", "hr@20")
        typer.echo(f"saved {rec.name} to {out} in {seconds:.1f}s; test {k.upper()} {t[k]:.4f}")


def _eval_seq(rec, model_dir, data, split, sampler, steps, guidance, seed, retrieval, n_probe, as_json,
              json_out) -> None:
    """`rec eval` for a saved next-item model: metrics on a split, ms per 1,000 rows, one-row latency."""
    from recommenders.datasets import load_seq
    from recommenders.seq_bench import evaluate_seq, load_bench_config

    splits = load_seq(data)
    if rec.config.n_items != splits.n_items:
        raise InputError(f"model was trained on {rec.config.n_items} items, data has {splits.n_items}", model_dir)
    if split not in ("valid", "test"):
        raise InputError(f"--split must be valid or test, got {split!r}")
    cfg = load_bench_config(splits.name)
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
    result = {"task": "seq", "model": rec.name, "model_dir": str(model_dir), "data": data, "split": split,
              **({"sampler": kwargs["sampler"], "steps": kwargs["steps"], "retrieval": retrieval,
                  "guidance": rec.config.guidance if guidance is None else guidance} if kwargs else {}),
              **evaluate_seq(rec, getattr(splits, split), ks=ks, retrieval=retrieval, n_probe=n_probe, **kwargs)}
    _emit(result, as_json, json_out)
    if not as_json:
        for key, value in result.items():
            typer.echo(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")


def _is_sequential(data: str, task: str) -> bool:
    from recommenders.datasets import is_sequential

    if task not in ("auto", "cf", "seq"):
        raise InputError(f"--task must be auto, cf or seq, got {task!r}")
    if task != "auto":
        return task == "seq"
    return data != "demo" and is_sequential(data)


@app.command("train")
def train(
    data: str = typer.Option(..., "--data", help="Benchmark folder, interactions CSV, or 'demo'."),
    model: str = typer.Option(..., "--model", help="CF: mostpop, itemknn, ease, multivae, diffrec, ldiffrec; "
                                                   "sequential: mostpop, sasrec, gru4rec, dreamrec."),
    out: Path = typer.Option(..., "--out", help="Folder for config.json + model.safetensors.", callback=options.out_dir),
    seed: int = typer.Option(0, "--seed", callback=options.check_seed),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with `models:` hyperparameters."),
    set_: list[str] = typer.Option([], "--set", help="Override one hyperparameter, e.g. --set epochs=5."),
    task: str = typer.Option("auto", "--task", help="auto, cf or seq (auto: sequential models or data -> seq)."),
    threads: int = typer.Option(1, "--threads", help="Torch threads (1 is fastest on a shared CPU)."),
    as_json: bool = typer.Option(False, "--json", help="Print the training summary as JSON."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", callback=options.out_file),
) -> None:
    """Train one model (hyperparameters from the data set's YAML), select on validation, save it.

    Sequential data (zhihu, amazon-beauty; `--data demo` with a sequential model) trains a next-item
    model. The folder also gets training.json (data, seed, the training log: the same keys for every
    model). Models trained in epochs (diffrec, ldiffrec, multivae, sasrec, gru4rec, dreamrec)
    checkpoint every epoch in OUT/.checkpoint:
    rerunning a stopped command resumes after the last finished epoch and ends with the same model.
    """
    import time

    from core.io import atomic_write_json
    from recommenders.bench import (
        evaluate,
        load_model_configs,
        make_model,
        parse_models,
    )
    from recommenders.datasets import load_cf

    _threads(threads)
    if _wants_seq(data, model, task):
        _train_seq(data, model, out, seed, config, set_, as_json, json_out)
        return
    name = parse_models(model)[0]
    splits = load_cf(data)
    params = {**load_model_configs(splits.name, config).get(name, {}), **_parse_sets(set_)}
    rec = make_model(name, params, config)
    start = time.perf_counter()
    checkpoint = Path(out) / CHECKPOINT_DIR
    log = rec.fit(splits, seed=seed, progress=not as_json, checkpoint_dir=checkpoint)
    seconds = time.perf_counter() - start
    rec.save(out)
    atomic_write_json(Path(out) / "training.json", {"data": data, "seed": seed, **log})
    result = {"model": name, "data": data, "seed": seed, "out": str(out), "train_s": seconds,
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
    splits = load_cf(data)
    if rec.train_rows.shape != splits.train.shape:
        raise InputError(f"model was trained on {rec.train_rows.shape[0]} users x {rec.train_rows.shape[1]} items, "
                         f"data has {splits.n_users} x {splits.n_items}", model_dir)
    result = {"model": rec.name, "model_dir": str(model_dir), "data": data, **evaluate(rec, splits)}
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
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with `models:` hyperparameters (CF)."),
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
    from core.io import portable, write_results_json

    _threads(threads)
    if _is_sequential(data, task):
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
                                         timing_repeats=timing_repeats)
        table = seq_bench.format_table(result)
    else:
        from recommenders.bench import format_table, run_cf_bench

        save = (lambda r: write_results_json(json_path, r)) if json_path else None
        chosen: int | list[int] = _int_list(seed_list, "--seed-list", "3,4") if seed_list else seeds
        result = run_cf_bench(data, models, chosen, config_path=str(config) if config else None,
                              progress=not quiet, on_result=save,
                              resume=[p.strip() for p in (resume or "").split(",") if p.strip()],
                              train=not report_only)
        table = format_table(result)
    result["command"] = "atelier rec bench " + " ".join(
        f"--{k} {v}" for k, v in [("data", data), ("models", models), ("seeds", seeds)])
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
