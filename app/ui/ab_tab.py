"""A/B ranking tab: two creatives side by side, one stored vote per click, live Bradley-Terry and CTR results.

The plain functions here are what the callbacks run and what the tests call; all statistics come
from `app.ab` (the same store and service the `atelier ab` CLI and the HTTP API use).
"""

# No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
import uuid
from pathlib import Path
from typing import Any, Sequence

from core.errors import InputError

from .workspace import Unavailable, Workspace, session_id, voter_id

RANKING_COLUMNS = ["rank", "creative_id", "score", "stderr", "wins", "games"]
CTR_COLUMNS = ["creative_id", "impressions", "clicks", "ctr", "ctr_low", "ctr_high", "prob_best", "prob_beat_control"]
NO_DATA = "—"  # a rate with no impressions behind it is unknown, not the prior's 0.5
NO_DATA_COLUMNS = ("ctr", "ctr_low", "ctr_high", "prob_best", "prob_beat_control")


def store(ws: Workspace):
    """The A/B store this server writes to."""
    from app.ab.store import ABStore

    return ABStore(ws.config.ab_db)


def experiment_choices(ws: Workspace) -> list[tuple[str, str]]:
    """(label, id) of every experiment, newest last, for a dropdown."""
    exps = store(ws).experiments()
    return [(f"{e.experiment_id}  [{e.segment or 'all'}, {e.status}]", e.experiment_id) for e in exps]


def add_creatives(ws: Workspace, experiment_id: str, creatives: Sequence, *, base_dir: Path | None = None) -> list[str]:
    """Add `Creative` records (with their images) to an experiment; returns the ids added."""
    st = store(ws)
    added = []
    for c in creatives:
        img = Path(c.image_path)
        if not img.is_absolute() and base_dir is not None:
            img = base_dir / img
        st.add_creative(experiment_id, c.creative_id, image_path=str(img), prompt=c.prompt, record=c.to_dict())
        added.append(c.creative_id)
    return added


def create_experiment(ws: Workspace, name: str, segment: str | None, creatives: Sequence,
                      *, base_dir: Path | None = None) -> str:
    """A new experiment over `creatives` (at least two), the first one being the control."""
    if len(creatives) < 2:
        raise InputError("an experiment needs at least two creatives to compare")
    exp_id = store(ws).create_experiment(name.strip(), segment=(segment or None))
    add_creatives(ws, exp_id, creatives, base_dir=base_dir)
    return exp_id


def experiment_from_manifest(ws: Workspace, name: str, segment: str | None, manifest: str | Path,
                             user: str | None = None) -> str:
    """Create an experiment from a batch run's manifest (JSONL of Creative records) and its images.

    The manifest and every image must lie where the UI may read (the output root or the campaign
    folder), so an experiment can never be used to show other files of the server.
    """
    from core.creative import Manifest

    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError("manifest not found", manifest)
    if not ws.readable(manifest):
        raise InputError("the UI only reads batch runs under its output folder or the campaigns folder", manifest)
    creatives = [c for c in Manifest(manifest).load() if user in (None, "", c.user_id)]
    for c in creatives:
        if not ws.readable(manifest.parent / c.image_path):
            raise InputError(f"creative {c.creative_id}'s image is outside the run's folders", manifest)
    return create_experiment(ws, name, segment, creatives, base_dir=manifest.parent)


def manifest_choices(ws: Workspace) -> list[tuple[str, str]]:
    """(label, path) of finished batch runs the A/B tab can turn into experiments."""
    out = []
    for m in ws.batch_manifests():
        root = ws.config.campaigns_dir if ws.readable(m) and not ws.inside_output(m) else ws.config.out_dir
        out.append((str(m.parent.relative_to(root)), str(m)))
    return out


def creative_format(record: dict | None) -> tuple:
    """What a creative competes as: (pipeline, width, height); a 728x90 banner never faces a shoe picture."""
    record = record or {}
    return (record.get("pipeline"), record.get("width"), record.get("height"))


def creative_name(record: dict | None, catalog=None) -> str:
    """A reader's name for a creative: what it shows, its size, for whom and its seed (beside its hash id)."""
    record = record or {}
    params = (record.get("extra") or {}).get("params") or {}
    item = params.get("item_id")
    what = record.get("pipeline") or "creative"
    if item and catalog is not None and item in catalog:
        what = f"{what} of {catalog[item].title}"
    parts = [what]
    if record.get("width") and record.get("height"):
        parts.append(f"{record['width']}x{record['height']}")
    if record.get("user_id"):
        parts.append(f"for {record['user_id']}")
    if record.get("seed") is not None:
        parts.append(f"seed {record['seed']}")
    return " · ".join(parts)


def _catalog(ws: Workspace):
    try:
        return ws.catalog()
    except (Unavailable, InputError):  # names are a nicety; an experiment works without the demo shop
        return None


def next_pair(ws: Workspace, experiment_id: str) -> dict[str, Any]:
    """The next two creatives of the same format to judge (least voted first), with a one-time token that makes
    a double click count once."""
    import numpy as np

    st = store(ws)
    arms = {a.creative_id: a for a in st.arms(experiment_id)}
    if len(arms) < 2:
        raise InputError(f"experiment {experiment_id!r} needs at least two creatives to vote on")
    groups: dict[tuple, list[str]] = {}
    for cid, arm in arms.items():
        groups.setdefault(creative_format(arm.record), []).append(cid)
    comparable = [cid for ids in groups.values() if len(ids) >= 2 for cid in ids]
    if not comparable:
        raise InputError(f"experiment {experiment_id!r} has no two creatives of the same format to compare")
    games = dict.fromkeys(arms, 0)
    for v in st.votes(experiment_id):
        games[v.winner_id] = games.get(v.winner_id, 0) + 1
        games[v.loser_id] = games.get(v.loser_id, 0) + 1
    rng = np.random.default_rng()
    first = min(comparable, key=lambda c: (games[c], rng.random()))
    mates = [c for c in groups[creative_format(arms[first].record)] if c != first]
    second = min(mates, key=lambda c: (games[c], rng.random()))
    left, right = (first, second) if rng.random() < 0.5 else (second, first)
    catalog = _catalog(ws)
    return {
        "experiment_id": experiment_id,
        "left": left,
        "right": right,
        "left_image": arms[left].image_path,
        "right_image": arms[right].image_path,
        "left_name": creative_name(arms[left].record, catalog),
        "right_name": creative_name(arms[right].record, catalog),
        "token": uuid.uuid4().hex,
    }


def cast_vote(ws: Workspace, pair: dict[str, Any], choice: str, voter: str | None = None) -> str:
    """Store one vote for the shown pair; `choice` is 'left' or 'right'. Idempotent per shown pair."""
    if not pair or "token" not in pair:
        raise InputError("no pair is shown: pick an experiment first")
    if choice not in ("left", "right"):
        raise InputError(f"choice must be 'left' or 'right', got {choice!r}")
    winner, loser = (pair["left"], pair["right"]) if choice == "left" else (pair["right"], pair["left"])
    return store(ws).record_vote(pair["experiment_id"], winner, loser, user_id=voter, event_id=pair["token"])


def results_tables(ws: Workspace, experiment_id: str) -> tuple[list[list], list[list], str]:
    """Bradley-Terry ranking rows, CTR rows (each with a readable name beside the id) and a summary line.

    A creative with no impressions shows "—" for its rates: the posterior's prior is not a result.
    """
    from app.ab.service import results

    res = results(store(ws), experiment_id)
    catalog = _catalog(ws)
    names = {a.creative_id: creative_name(a.record, catalog) for a in store(ws).arms(experiment_id)}
    ranking = [[r[c] if not isinstance(r[c], float) else round(r[c], 4) for c in RANKING_COLUMNS]
               for r in res["votes"]["ranking"]]
    ranking = [row[:2] + [names.get(row[1], "")] + row[2:] for row in ranking]
    ctr = []
    for r in res["creatives"]:
        unseen = not r.get("impressions")
        row = [(NO_DATA if (unseen and c in NO_DATA_COLUMNS) or r[c] is None
                else round(r[c], 4) if isinstance(r[c], float) else r[c]) for c in CTR_COLUMNS]
        ctr.append(row[:1] + [names.get(row[0], "")] + row[1:])
    stop = res.get("stop") or {}
    summary = (f"**{res['experiment_id']}** ({res['status']}, segment {res['segment'] or 'all'}, "
               f"control `{res['control_id']}`): votes {res['votes']['n_votes']}; "
               f"stop: {'yes, winner ' + str(stop.get('winner')) if stop.get('stop') else 'not yet'}"
               f"{' (' + stop['reason'] + ')' if stop.get('reason') else ''}")
    return ranking, ctr, summary


def export_pairs(ws: Workspace, experiment_id: str, out_dir: Path, source: str = "votes") -> tuple[Path, dict]:
    """Write the experiment's preference pairs (JSONL for `atelier finetune dpo`) into `out_dir`.

    No pairs: an InputError saying why, and no (empty) file.
    """
    from app.ab.export import preference_pairs, write_pairs
    from core.paths import safe_name

    pairs = preference_pairs(store(ws), experiment_id, source=source)
    if not [p for p in pairs if p.get("chosen") and p.get("rejected")]:
        why = {"votes": "it has no votes yet",
               "bradley-terry": "no creative beats another with a fitted win probability of 0.6 yet (vote more)",
               "ctr": "no creative beats another on CTR with probability 0.6 yet (it needs impressions and clicks "
                      "from the ad server)"}.get(source, "none qualify")
        if pairs:
            why = f"all {len(pairs)} pair(s) lack an image"
        raise InputError(f"no preference pairs from {source} in {experiment_id!r}: {why}; nothing was written")
    path = Path(out_dir) / f"pairs-{safe_name(experiment_id)}-{safe_name(source)}.jsonl"  # ids are not paths
    stats = write_pairs(pairs, path)
    return path, stats


def shown_error(ws: Workspace, e: InputError) -> str:
    """An error as the page shows it: no server paths (the A/B database's file is the server's business;
    a run's manifest is named relative to the output or campaigns folder)."""
    if e.path is None:
        return str(e)
    for root in (ws.config.out_dir, ws.config.campaigns_dir):
        try:
            return str(InputError(e.problem, Path(e.path).resolve().relative_to(Path(root).resolve()), e.line))
        except (ValueError, OSError):
            continue
    return e.problem


def _open(path: str | None, min_side: int = 256):
    """A creative's image for display (small ones enlarged, pixels kept sharp), or None when its file is gone."""
    from PIL import Image

    if not path or not Path(path).is_file():
        return None
    with Image.open(path) as im:
        im = im.convert("RGB")
    if max(im.size) < min_side:
        k = -(-min_side // max(im.size))
        im = im.resize((im.width * k, im.height * k), Image.NEAREST)
    return im


def build(ws: Workspace, shared: dict[str, Any]) -> None:
    """The tab's components and events (called inside a `gr.Tab`)."""
    import gradio as gr

    gr.Markdown("**1. Choose an experiment, or create one** from your last Shopper images or a batch run. "
                "**2. Click the creative you prefer**: each click is one vote in the A/B store; the "
                "Bradley-Terry ranking and the online CTR results update live.")
    with gr.Group(elem_id="ab-setup"):
        with gr.Row():
            exp = gr.Dropdown(label="Experiment", choices=[], interactive=True, elem_id="ab-experiment", scale=3)
            refresh = gr.Button("Refresh", elem_id="ab-refresh", scale=1)
        with gr.Row():
            name = gr.Textbox(label="New experiment name", elem_id="ab-new-name", scale=2)
            segment = gr.Textbox(label="Segment (optional)", scale=1)
            from_shopper = gr.Button("Create from my last Shopper images", elem_id="ab-from-shopper", scale=2)
        with gr.Row():
            manifest = gr.Dropdown([], label="…or a batch run (its creatives become the experiment)", scale=3,
                                   elem_id="ab-manifest")
            runs_refresh = gr.Button("Find runs", scale=1)
            from_manifest = gr.Button("Create from batch run", scale=2, elem_id="ab-from-manifest")
        create_status = gr.Markdown(elem_id="ab-create-status")  # errors of the create buttons, beside them
    pair = gr.State({})
    with gr.Row():
        with gr.Column():
            left_img = gr.Image(label="A", type="pil", interactive=False, elem_id="ab-left", height=280)
            left_btn = gr.Button("A is better", variant="primary", elem_id="ab-vote-left")
        with gr.Column():
            right_img = gr.Image(label="B", type="pil", interactive=False, elem_id="ab-right", height=280)
            right_btn = gr.Button("B is better", variant="primary", elem_id="ab-vote-right")
    status = gr.Markdown(elem_id="ab-status")
    ranking = gr.Dataframe(headers=RANKING_COLUMNS[:2] + ["name"] + RANKING_COLUMNS[2:],
                           label="Bradley-Terry ranking (votes)", interactive=False, elem_id="ab-ranking")
    ctr = gr.Dataframe(headers=CTR_COLUMNS[:1] + ["name"] + CTR_COLUMNS[1:],
                       label="Online results (impressions and clicks, Thompson sampling; — = no impressions yet)",
                       interactive=False, elem_id="ab-ctr")
    with gr.Accordion("Export preference pairs (for DPO fine-tuning)", open=False):
        with gr.Row():
            source = gr.Radio(["votes", "bradley-terry", "ctr"], value="votes", label="Pairs from")
            export_btn = gr.Button("Export preference pairs (DPO)", elem_id="ab-export")
        export_status = gr.Markdown(elem_id="ab-export-status")
        pairs_file = gr.File(label="Preference pairs", interactive=False, elem_id="ab-pairs-file")

    def show(experiment_id, message=""):
        if not experiment_id:
            hint = "No experiment yet: create one above from your Shopper images or a batch run."
            return {}, gr.update(value=None, label="A"), gr.update(value=None, label="B"), message or hint, [], []
        try:
            p = next_pair(ws, experiment_id)
            rows, ctr_rows, summary = results_tables(ws, experiment_id)
        except InputError as e:
            return {}, None, None, f"Error: {shown_error(ws, e)}", [], []
        return (p, gr.update(value=_open(p["left_image"]), label=f"A: {p['left_name']}"),
                gr.update(value=_open(p["right_image"]), label=f"B: {p['right_name']}"),
                (message + "\n\n" + summary).strip(), rows, ctr_rows)

    outputs = [pair, left_img, right_img, status, ranking, ctr]
    keep = gr.update()

    def on_refresh(current):
        choices = experiment_choices(ws)
        ids = [c[1] for c in choices]
        value = current if current in ids else (ids[-1] if ids else None)
        return (gr.update(choices=choices, value=value), *show(value))

    def on_vote(choice):
        def vote(p, request: gr.Request):
            try:
                cast_vote(ws, p, choice, voter=voter_id(request))
            except InputError as e:
                return (p, keep, keep, f"Error: {shown_error(ws, e)}", keep, keep)
            won, lost = ("left", "right") if choice == "left" else ("right", "left")
            tag = {"left": "A", "right": "B"}
            message = (f"Vote stored: {tag[won]} `{p[won]}` ({p.get(won + '_name', '')}) preferred over "
                       f"{tag[lost]} `{p[lost]}` ({p.get(lost + '_name', '')}). Next pair below.")
            return show(p["experiment_id"], message)
        return vote

    def on_create(kind):
        def create(name_, segment_, manifest_, last):
            try:
                if not (name_ or "").strip():
                    raise InputError("give the experiment a name")
                if kind == "manifest":
                    if not manifest_:
                        raise InputError("pick a batch run first")
                    exp_id = experiment_from_manifest(ws, name_, segment_, manifest_)
                else:
                    if not last or not last.get("creatives"):
                        raise InputError("generate images in the Shopper tab first")
                    from core.creative import Creative

                    creatives = [Creative.from_dict(d) for d in last["creatives"]]
                    exp_id = create_experiment(ws, name_, segment_ or last.get("segment"), creatives,
                                               base_dir=Path(last["out_dir"]))
            except InputError as e:  # the tables and the pair on screen stay as they were
                return (keep, f"**Error:** {shown_error(ws, e)}", *([keep] * len(outputs)))
            return (gr.update(choices=experiment_choices(ws), value=exp_id), f"Created `{exp_id}`.",
                    *show(exp_id, f"Created `{exp_id}`."))
        return create

    def on_export(experiment_id, source_, request: gr.Request):
        if not experiment_id:
            return None, "**Error:** pick an experiment first"
        try:
            path, stats = export_pairs(ws, experiment_id, ws.session_dir(session_id(request), "pairs"), source_)
        except InputError as e:
            return None, f"**Error:** {shown_error(ws, e)}"
        return str(path), f"Wrote {stats['written']} pairs ({stats['skipped_no_image']} skipped: no image)."

    def on_tick(experiment_id):  # impressions and clicks arrive from the ad server through the API
        if not experiment_id:
            return gr.update(), gr.update()
        try:
            rows, ctr_rows, _ = results_tables(ws, experiment_id)
        except InputError:
            return gr.update(), gr.update()
        return rows, ctr_rows

    gr.Timer(10).tick(on_tick, [exp], [ranking, ctr], api_visibility="private", concurrency_limit=None)
    refresh.click(on_refresh, [exp], [exp, *outputs], api_name="ab_refresh")
    exp.input(lambda e: show(e), [exp], outputs, api_name="ab_show")
    left_btn.click(on_vote("left"), [pair], outputs, concurrency_limit=None, api_name="ab_vote_left")
    right_btn.click(on_vote("right"), [pair], outputs, concurrency_limit=None, api_name="ab_vote_right")
    left_img.select(on_vote("left"), [pair], outputs, concurrency_limit=None, api_visibility="private")
    right_img.select(on_vote("right"), [pair], outputs, concurrency_limit=None, api_visibility="private")
    last = shared["last_generation"]  # a per-session gr.State the Shopper tab fills
    from_manifest.click(on_create("manifest"), [name, segment, manifest, last], [exp, create_status, *outputs],
                        api_name="ab_create_from_manifest")
    from_shopper.click(on_create("shopper"), [name, segment, manifest, last], [exp, create_status, *outputs],
                       api_name="ab_create_from_shopper")
    runs_refresh.click(lambda: gr.update(choices=manifest_choices(ws)), None, manifest, api_visibility="private")
    export_btn.click(on_export, [exp, source], [pairs_file, export_status], api_name="ab_export_pairs")
    shared["loaders"].append((on_refresh, [exp], [exp, *outputs]))
    shared["loaders"].append((lambda: gr.update(choices=manifest_choices(ws)), None, [manifest]))
