"""`atelier ab ...`: A/B experiments from the command line (same store as the UI and the HTTP API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from app.commands import options

app = typer.Typer(help="A/B ranking: experiments, Thompson sampling, votes, exports, simulation.", no_args_is_help=True)

DEFAULT_DB = "outputs/ab.sqlite"
DbOpt = typer.Option(DEFAULT_DB, "--db", envvar="ATELIER_AB_DB",
                     help="The A/B store: a SQLite file, or a PostgreSQL DSN (postgresql://user@host/db).")
EventOpt = typer.Option(None, "--event-id",
                        help="Idempotency key: a retry with the same id is stored once (reported as a duplicate).")
JsonOpt = typer.Option(False, "--json", help="Print JSON to stdout.")


def _store(db: str | Path):
    from app.ab.store import ABStore

    return ABStore(db)


def _emit(obj, as_json: bool, text: str | None = None, json_out: Path | None = None) -> None:
    from core.io import printable, write_results_json

    if json_out is not None:
        write_results_json(json_out, obj)
    if as_json:
        typer.echo(json.dumps(printable(obj), indent=2, sort_keys=True))
    elif text is not None:
        typer.echo(text)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Experiment name (also its id)."),
    segment: Optional[str] = typer.Option(None, help="Audience segment the experiment serves."),
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create an experiment."""
    exp_id = _store(db).create_experiment(name, segment=segment)
    _emit({"experiment_id": exp_id, "db": str(db)}, as_json, f"created experiment {exp_id} in {db}")


@app.command("add")
def add(
    experiment: str = typer.Argument(..., help="Experiment id."),
    creative_id: Optional[str] = typer.Argument(None, help="Creative id (omit with --manifest)."),
    image: Optional[Path] = typer.Option(None, help="Image file of the creative."),
    prompt: Optional[str] = typer.Option(None, help="Prompt that made it (used for DPO pairs)."),
    control: bool = typer.Option(False, "--control", help="Make this creative the control."),
    manifest: Optional[Path] = typer.Option(None, help="Add every creative of a batch manifest (JSONL)."),
    user: Optional[str] = typer.Option(None, help="With --manifest: only creatives made for this user/segment."),
    format: Optional[str] = typer.Option(None, "--format", help="With --manifest: only this format "
                                         "(product, background, banner, outfit)."),
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add one creative, or all creatives of a batch manifest, to an experiment."""
    from core.errors import InputError
    from core.validate import check_prompt

    if prompt is not None:
        prompt = check_prompt(prompt, what="--prompt", allow_empty=True)
    store = _store(db)
    added: list[str] = []
    if manifest is not None:
        from core.creative import Manifest

        if not manifest.is_file():
            raise InputError("manifest not found", manifest)
        for c in Manifest(manifest).load():
            if user is not None and c.user_id != user:
                continue
            if format is not None and c.extra.get("format", c.pipeline) != format:
                continue
            img = Path(c.image_path)
            img = img if img.is_absolute() else (manifest.parent / img).resolve()
            store.add_creative(experiment, c.creative_id, image_path=str(img), prompt=c.prompt, record=c.to_dict())
            added.append(c.creative_id)
        if not added:
            raise InputError("no creatives matched in the manifest", manifest)
    else:
        if creative_id is None:
            raise InputError("give a creative id, or --manifest")
        if image is not None and not image.is_file():
            raise InputError("image not found", image)
        store.add_creative(
            experiment, creative_id, image_path=str(image) if image else None, prompt=prompt, control=control
        )
        added.append(creative_id)
    _emit({"experiment_id": experiment, "added": added}, as_json, f"added {len(added)} creative(s) to {experiment}")


@app.command("serve-once")
def serve_once_cmd(
    experiment: str = typer.Argument(..., help="Experiment id."),
    user: Optional[str] = typer.Option(None, help="User the creative is shown to."),
    seed: Optional[int] = typer.Option(None, help="Seed of the Thompson draw (default: random).", callback=options.check_seed),
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Choose a creative by Thompson sampling and record its impression."""
    import numpy as np

    from app.ab.service import serve_once

    out = serve_once(_store(db), experiment, user_id=user, rng=np.random.default_rng(seed))
    _emit(out, as_json, f"{out['creative_id']}\timpression {out['impression_id']}")


@app.command("click")
def click(
    impression_id: str = typer.Argument(..., help="Impression id printed by serve-once."),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="The impression's experiment (needed "
                                             "only when the id is used in several)."),
    event_id: Optional[str] = EventOpt,
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record a click on an impression (counted once per impression; a second one is reported as a duplicate)."""
    click_id = _store(db).record_click(impression_id=impression_id, experiment_id=experiment, event_id=event_id)
    _emit({"click_id": click_id, "impression_id": impression_id, "duplicate": click_id.duplicate}, as_json,
          f"click {click_id}" + (" (duplicate: this impression's click was already recorded)"
                                 if click_id.duplicate else ""))


@app.command("vote")
def vote(
    experiment: str = typer.Argument(..., help="Experiment id."),
    winner: str = typer.Argument(..., help="Creative preferred."),
    loser: str = typer.Argument(..., help="Creative not preferred."),
    user: Optional[str] = typer.Option(None, help="Who voted."),
    event_id: Optional[str] = EventOpt,
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record a pairwise vote: WINNER was preferred over LOSER."""
    vote_id = _store(db).record_vote(experiment, winner, loser, user_id=user, event_id=event_id)
    _emit({"vote_id": vote_id, "duplicate": vote_id.duplicate}, as_json,
          f"vote {vote_id}" + (" (duplicate: already recorded, not stored again)" if vote_id.duplicate else ""))


@app.command("list")
def list_cmd(db: str = DbOpt, as_json: bool = JsonOpt) -> None:
    """List experiments."""
    from dataclasses import asdict

    exps = [asdict(e) for e in _store(db).experiments()]
    _emit(exps, as_json, "\n".join(f"{e['experiment_id']}\t{e['status']}\t{e['segment'] or ''}" for e in exps))


@app.command("results")
def results_cmd(
    experiment: str = typer.Argument(..., help="Experiment id."),
    prob: float = typer.Option(0.95, help="Stop when the leader is best with this probability..."),
    max_loss: float = typer.Option(0.001, help="...and its expected CTR loss is below this."),
    min_impressions: int = typer.Option(100, help="Impressions every creative needs before stopping."),
    db: str = DbOpt,
    as_json: bool = JsonOpt,
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the JSON here.", callback=options.out_file),
) -> None:
    """Posterior CTRs, probability to beat control, the stopping rule, and the Bradley-Terry ranking."""
    from app.ab.service import results

    res = results(
        _store(db), experiment, prob_threshold=prob, loss_threshold=max_loss, min_impressions=min_impressions
    )
    lines = [f"experiment {res['experiment_id']} ({res['status']}), control {res['control_id']}"]
    lines.append(f"{'creative':<28}{'impr':>8}{'clicks':>8}{'ctr':>8}{'95% interval':>18}{'P(best)':>9}{'P(>ctrl)':>10}")
    for r in res["creatives"]:
        beat = "-" if r["prob_beat_control"] is None else f"{r['prob_beat_control']:.3f}"
        lines.append(
            f"{r['creative_id'][:27]:<28}{r['impressions']:>8}{r['clicks']:>8}{r['ctr']:>8.4f}"
            f"{'[%.4f, %.4f]' % (r['ctr_low'], r['ctr_high']):>18}{r['prob_best']:>9.3f}{beat:>10}"
        )
    if res["stop"]:
        lines.append(f"stop: {'yes' if res['stop']['stop'] else 'no'} ({res['stop']['reason']})")
    lines.append(f"votes: {res['votes']['n_votes']}")
    for r in res["votes"]["ranking"]:
        lines.append(f"  {r['rank']}. {r['creative_id']}  score {r['score']:+.3f} ± {r['stderr']:.3f}  ({r['wins']}/{r['games']})")
    _emit(res, as_json, "\n".join(lines), json_out)


@app.command("stop")
def stop(
    experiment: str = typer.Argument(..., help="Experiment id."),
    winner: Optional[str] = typer.Option(None, help="Creative to serve from now on (default: the stopping "
                                         "rule's winner if it has one, else the control)."),
    db: str = DbOpt,
) -> None:
    """Stop an experiment: from now on it serves one creative to everyone."""
    from app.ab.service import results

    store = _store(db)
    if winner is None:
        winner = (results(store, experiment)["stop"] or {}).get("winner")
    store.set_status(experiment, "stopped", winner=winner)
    exp = store.experiment(experiment)
    typer.echo(f"stopped {experiment}; serving {winner or exp.control_id}")


@app.command("export-pairs")
def export_pairs(
    experiment: str = typer.Argument(..., help="Experiment id."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write (prompt, chosen, rejected image paths).", callback=options.out_file),
    source: str = typer.Option("votes", help="votes | bradley-terry | ctr"),
    min_prob: float = typer.Option(0.6, help="bradley-terry/ctr: minimum probability that chosen beats rejected."),
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Export preference pairs for Diffusion-DPO (`atelier finetune dpo --pairs OUT`)."""
    from app.ab.export import preference_pairs, write_pairs

    stats = write_pairs(preference_pairs(_store(db), experiment, source=source, min_prob=min_prob), out)
    _emit({**stats, "out": str(out)}, as_json, f"wrote {stats['written']} pairs to {out} "
          f"({stats['skipped_no_image']} skipped: no image)")


@app.command("rank")
def rank_cmd(
    manifest: Path = typer.Option(..., help="Manifest (JSONL of Creative records) of the candidates."),
    segment: str = typer.Option(..., help="Demo-shop segment the creatives are judged for."),
    reward_model: Optional[Path] = typer.Option(None, help="CTR reward model folder (`atelier finetune reward`); "
                                                "without it the demo shop's oracle click model judges."),
    ad_format: str = typer.Option("product", help="Ad format the CTR is predicted for: product | banner."),
    user: Optional[str] = typer.Option(None, help="Only creatives made for this user/segment (e.g. segment-classic)."),
    format: Optional[str] = typer.Option(None, "--format", help="Only this creative format "
                                         "(product, background, banner, outfit)."),
    top: Optional[int] = typer.Option(None, min=1, help="Keep the best K."),
    add_to: Optional[str] = typer.Option(None, help="Add the kept creatives to this experiment (created if new)."),
    db: str = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Rank candidate creatives offline by predicted CTR, before spending traffic on them."""
    from PIL import Image

    from app.ab.prescreen import rank_candidates
    from core.creative import Manifest
    from core.errors import InputError
    from finetune.reward_loop import AudienceJudge

    if not manifest.is_file():
        raise InputError("manifest not found", manifest)
    creatives = [c for c in Manifest(manifest).load()
                 if (user is None or c.user_id == user) and (format is None or c.extra.get("format", c.pipeline) == format)]
    if not creatives:
        raise InputError("no creatives in the manifest match", manifest)
    judge = AudienceJudge.for_segment(segment, reward_model=str(reward_model) if reward_model else None,
                                      format=ad_format)

    def image_path(c) -> Path:
        p = Path(c.image_path)
        return p if p.is_absolute() else (manifest.parent / p).resolve()

    def reward(batch) -> list[float]:
        images = []
        for c in batch:
            with Image.open(image_path(c)) as im:
                images.append(im.convert("RGB"))
        return judge(images, "")

    ranked = rank_candidates(creatives, reward, top_k=top)
    rows = [{"rank": k + 1, "creative_id": c.creative_id, "predicted_ctr": s, "image_path": str(image_path(c)),
             "prompt": c.prompt} for k, (c, s) in enumerate(ranked)]
    if add_to is not None:
        store = _store(db)
        if add_to not in {e.experiment_id for e in store.experiments()}:
            store.create_experiment(add_to, segment=segment)
        for r, (c, _) in zip(rows, ranked):
            store.add_creative(add_to, c.creative_id, image_path=r["image_path"], prompt=c.prompt, record=c.to_dict())
    judge_name = f"reward model {reward_model}" if reward_model else "the demo oracle (true CTR of the classified image)"
    _emit({"segment": segment, "judge": judge_name, "ranking": rows, "added_to": add_to}, as_json,
          "\n".join([f"ranked by {judge_name} for segment {segment}"]
                    + [f"{r['rank']:>3}. {r['creative_id']}  {r['predicted_ctr']:.4f}" for r in rows]))


@app.command("load-test")
def load_test(
    db: Path = typer.Option(..., "--db", help="A NEW SQLite file to create and hammer (never your real store)."),
    clients: int = typer.Option(20, min=1, max=200, help="Concurrent clients."),
    events: int = typer.Option(500, min=1, max=100000, help="Impressions + votes per client (clicks on top)."),
    retry_share: float = typer.Option(0.05, min=0.0, max=1.0, help="Share of requests each client sends twice."),
    direct: bool = typer.Option(False, "--direct", help="Call the store from threads instead of over HTTP."),
    as_json: bool = JsonOpt,
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the JSON here.", callback=options.out_file),
) -> None:
    """Loopback load test: N clients at once through the HTTP API, then stored counts vs sent (exit 1 if off)."""
    from app.ab.loadtest import run_load_test

    res = run_load_test(db, clients=clients, events=events, http=not direct, retry_share=retry_share)
    lat = res["latency_ms"]
    text = (f"{res['transport']}: {res['clients']} clients x {res['events_per_client']} events, "
            f"{res['requests']} requests in {res['seconds']} s ({res['requests_per_s']}/s)\n"
            + "\n".join(f"  {k:<10} sent {res['expected'][k]:>7}  stored {res['stored'][k]:>7}  "
                        f"lost {res['lost'][k]}  doubled {res['doubled'][k]}" for k in res["expected"])
            + f"\n  latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}")
    _emit(res, as_json, text, json_out)
    if not res["exact"]:
        raise typer.Exit(1)


@app.command("simulate")
def simulate_cmd(
    rounds: int = typer.Option(5000, min=1, help="Impressions per run."),
    creatives: int = typer.Option(6, min=2, help="Creatives competing (demo-shop items as ads)."),
    runs: int = typer.Option(5, min=1, help="Independent runs (seeds seed..seed+runs-1)."),
    seed: int = typer.Option(0, min=0, help="First seed.", callback=options.check_seed),
    format: str = typer.Option("banner", help="Ad format of the oracle click model: banner | product."),
    segment: Optional[str] = typer.Option(None, help="Only users of this demo-shop segment."),
    shop: Optional[Path] = typer.Option(None, help="Demo shop folder (default: the shipped one)."),
    as_json: bool = JsonOpt,
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the JSON here.", callback=options.out_file),
    plot: Optional[Path] = typer.Option(None, help="Also plot the regret curves to this PNG."),
) -> None:
    """Thompson sampling vs uniform A/B on the demo shop's oracle click model, same traffic and seeds."""
    from app.ab.simulate import load_shop, plot_regret, simulate

    res = simulate(rounds=rounds, n_creatives=creatives, runs=runs, seed=seed, format=format, segment=segment,
                   shop=load_shop(shop), progress=not as_json)
    lines = [f"{rounds} impressions x {runs} runs, {creatives} creatives; best CTR {res['best_ctr']:.4f}"]
    for name, r in res["policies"].items():
        lines.append(
            f"  {name:<9} regret {r['regret_mean']:8.1f} ± {r['regret_std']:6.1f}   clicks {r['clicks_mean']:8.1f}"
            f"   best-arm share {r['best_share_mean']:.3f}"
        )
    lines.append(f"  Thompson regret / uniform regret = {res['regret_ratio']:.3f} "
                 f"(Thompson lower in {res['thompson_wins']} runs)")
    if plot is not None:
        lines.append(f"  plot: {plot_regret(res, plot)}")
    _emit(res, as_json, "\n".join(lines), json_out)
