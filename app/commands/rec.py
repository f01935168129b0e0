"""`atelier rec train|eval|bench`: train, evaluate and benchmark recommenders (heavy imports inside commands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from recommenders.errors import InputError

app = typer.Typer(help="Train, evaluate and benchmark recommenders.", no_args_is_help=True)

SEQ_MODELS = ("seq-mostpop", "mostpop", "sasrec", "gru4rec", "dreamrec")


def _threads(n: int) -> None:
    from recommenders.runtime import torch_threads

    torch_threads(n)


def _emit(result: dict, as_json: bool, json_out: Optional[Path]) -> None:
    from recommenders.io import atomic_write_json

    if json_out is not None:
        atomic_write_json(json_out, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=float))


def _parse_sets(values: list[str]) -> dict:
    """`--set key=value` pairs, values parsed as YAML scalars/lists (so `hidden=[1000]` works)."""
    import yaml

    out = {}
    for item in values or []:
        if "=" not in item:
            raise InputError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


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
    model: str = typer.Option(..., "--model", help="mostpop, itemknn, ease, multivae, diffrec or ldiffrec."),
    out: Path = typer.Option(..., "--out", help="Folder for config.json + model.safetensors."),
    seed: int = typer.Option(0, "--seed"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with `models:` hyperparameters."),
    set_: list[str] = typer.Option([], "--set", help="Override one hyperparameter, e.g. --set epochs=5."),
    threads: int = typer.Option(1, "--threads", help="Torch threads (1 is fastest on a shared CPU)."),
    as_json: bool = typer.Option(False, "--json", help="Print the training summary as JSON."),
    json_out: Optional[Path] = typer.Option(None, "--json-out"),
) -> None:
    """Train one CF model (hyperparameters from the data set's YAML), select on validation, save it."""
    import time

    from recommenders.bench import evaluate, load_model_configs, make_model, parse_models
    from recommenders.datasets import load_cf

    _threads(threads)
    name = parse_models(model)[0]
    splits = load_cf(data)
    params = {**load_model_configs(splits.name, config).get(name, {}), **_parse_sets(set_)}
    rec = make_model(name, params, config)
    start = time.perf_counter()
    log = rec.fit(splits, seed=seed, progress=not as_json)
    seconds = time.perf_counter() - start
    rec.save(out)
    result = {"model": name, "data": data, "seed": seed, "out": str(out), "train_s": seconds,
              **{k: v for k, v in log.items() if k != "log"}, "test": evaluate(rec, splits, latency=False)}
    _emit(result, as_json, json_out)
    if not as_json:
        t = result["test"]
        typer.echo(f"saved {name} to {out} in {seconds:.1f}s; test Recall@20 {t['recall@20']:.4f} "
                   f"NDCG@20 {t['ndcg@20']:.4f}")


@app.command("eval")
def eval_(
    model_dir: Path = typer.Option(..., "--model-dir", help="A folder written by `atelier rec train`."),
    data: str = typer.Option(..., "--data", help="The data set the model was trained on."),
    threads: int = typer.Option(1, "--threads"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    json_out: Optional[Path] = typer.Option(None, "--json-out"),
) -> None:
    """Evaluate a saved CF model on the test split (train rows in, train + valid masked)."""
    from recommenders.base import CFRecommender
    from recommenders.bench import evaluate
    from recommenders.datasets import load_cf

    _threads(threads)
    rec = CFRecommender.load(model_dir)
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
    seed_list: Optional[str] = typer.Option(None, "--seed-list", help="Explicit seeds, e.g. 3,4 (CF; overrides --seeds)."),
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
) -> None:
    """Train and test each model over several seeds; print a mean±std table, write JSON and a plot."""
    from recommenders.io import atomic_write_json

    _threads(threads)
    if _is_sequential(data, task):
        from recommenders import seq_bench

        steps = None
        if sampling_steps:
            try:
                steps = [int(s) for s in sampling_steps.split(",") if s.strip()]
            except ValueError:
                raise InputError(f"--sampling-steps expects integers like 1000,50,20, got {sampling_steps!r}") from None
        names = [m.strip() for m in models.split(",") if m.strip()]
        if models == "mostpop,itemknn,ease,multivae,diffrec,ldiffrec":  # the CF default: use the seq default
            names = ["mostpop", "sasrec", "gru4rec", "dreamrec"]
        partial = (lambda r: atomic_write_json(json_path, r)) if json_path else None
        result = seq_bench.run_seq_bench(data, names, seeds, steps, progress=not quiet, partial=partial)
        table = seq_bench.format_table(result)
    else:
        from recommenders.bench import format_table, run_cf_bench

        save = (lambda r: atomic_write_json(json_path, r)) if json_path else None
        chosen: int | list[int] = seeds
        if seed_list:
            try:
                chosen = [int(s) for s in seed_list.split(",") if s.strip()]
            except ValueError:
                raise InputError(f"--seed-list expects integers like 3,4, got {seed_list!r}") from None
        result = run_cf_bench(data, models, chosen, config_path=str(config) if config else None,
                              progress=not quiet, on_result=save,
                              resume=[p.strip() for p in (resume or "").split(",") if p.strip()],
                              train=not report_only)
        table = format_table(result)
    result["command"] = "atelier rec bench " + " ".join(
        f"--{k} {v}" for k, v in [("data", data), ("models", models), ("seeds", seeds)])
    if json_path:
        atomic_write_json(json_path, result)
    if plot_path:
        if "models" not in result or not all("ms_per_user" in m.get("mean", {}) for m in result["models"].values()):
            typer.echo("note: --plot is drawn for CF benches only", err=True)
        else:
            from recommenders.bench import plot

            plot(result, plot_path)
    typer.echo(table)
