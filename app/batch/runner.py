"""Run a campaign: expand to jobs, skip what is done and verified, render the rest, write the sheet.

Crash safety: each PNG is written to a temp file, fsynced and renamed (never a half-written
image under its final name), and only then is its Creative record appended (one fsynced JSON
line). So after a SIGKILL at any moment the manifest names only complete images. On the next
run, `recover` drops records whose image is missing or fails its SHA-256, drops jobs that
finished only some of their parts, removes leftover temp files, and rewrites the manifest
atomically with exactly one record per creative; the run then renders only what is missing.
Job seeds come from the campaign, never from the run, so resumed images equal uninterrupted ones.

Several processes (`--processes N`, or `accelerate launch`) split the pending jobs with
`accelerate.PartialState().split_between_processes`; each appends to its own manifest shard, and
the main process merges the shards after everyone is done.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from core.creative import Creative, Manifest
from core.errors import InputError
from core.io import atomic_write_bytes, atomic_write_json, sha256_file

from .campaign import Campaign, load_campaign
from .jobs import AudienceMember, Job, expand_jobs

MANIFEST = "manifest.jsonl"


class Renderer(Protocol):
    """What the runner needs from generation (see `render.py` for the real one)."""

    def members(self) -> list[AudienceMember]: ...

    def render(self, job: Job) -> list[tuple[Any, Creative]]: ...


RendererFactory = Callable[[Campaign, Path, "str | None"], Renderer]


@dataclass
class RunSummary:
    """What a run did; printed by the CLI and returned to the UI."""

    campaign: str
    output_dir: str
    jobs: int
    skipped: int
    rendered: int
    creatives: int
    dropped_records: int
    seconds: float
    sheet: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def png_bytes(image, creative: Creative | None = None) -> bytes:
    """Encode a PIL image as PNG bytes (deterministic for equal pixels) with its `parameters` chunk."""
    from core.pnginfo import png_bytes as encode

    return encode(image, creative)


def _manifest_files(out_dir: Path) -> list[Path]:
    shards = sorted(out_dir.glob("manifest.rank*.jsonl"))
    main = out_dir / MANIFEST
    return ([main] if main.exists() else []) + shards


def _remove_temp_files(out_dir: Path) -> int:
    """Delete temp files left by a write that a crash interrupted (`core.io.atomic_path` names)."""
    n = 0
    for p in out_dir.rglob(".*.tmp"):
        if p.is_file():
            p.unlink()
            n += 1
    return n


def recover(out_dir: Path, jobs: list[Job]) -> tuple[dict[str, list[Creative]], int]:
    """Verified, complete jobs from earlier runs -> their creatives; rewrites one clean manifest.

    Returns (done, dropped) where dropped counts records thrown away (duplicate, missing image,
    bad checksum, job only partly done, or no longer part of the campaign).
    """
    _remove_temp_files(out_dir)
    known = {j.job_id: j for j in jobs}
    parts: dict[str, dict[int, Creative]] = {}
    total = 0
    for mf in _manifest_files(out_dir):
        for rec in _read_records(mf):
            total += 1
            try:
                c = Creative.from_dict(rec)
                job_id = c.extra.get("job_id")
                part, n_parts = int(c.extra.get("part", 0)), int(c.extra.get("n_parts", 1))
            except (InputError, TypeError, ValueError, AttributeError):
                continue
            if job_id not in known or part in parts.get(job_id, {}):
                continue  # not in this campaign (any more), or a duplicate
            if c.image_path != known[job_id].image_relpath(part, n_parts):
                continue  # records only ever point at their job's own file
            img = out_dir / c.image_path
            if not img.is_file() or sha256_file(img) != c.extra.get("sha256"):
                continue
            parts.setdefault(job_id, {})[part] = c
    done: dict[str, list[Creative]] = {}
    for job in jobs:  # keep the campaign's job order, so the manifest reads the same every time
        got = parts.get(job.job_id, {})
        if got and len(got) == int(next(iter(got.values())).extra.get("n_parts", 1)):
            done[job.job_id] = [got[k] for k in sorted(got)]
    kept = [c for cs in done.values() for c in cs]
    text = "".join(_json_line(c) for c in kept)
    atomic_write_bytes(out_dir / MANIFEST, text.encode("utf-8"))
    for shard in out_dir.glob("manifest.rank*.jsonl"):
        shard.unlink()
    return done, total - len(kept)


def _read_records(path: Path) -> list[dict]:
    """Manifest lines as dicts; a torn or damaged line is skipped (its job is simply redone)."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def _json_line(c: Creative) -> str:
    return json.dumps(c.to_dict(), sort_keys=True, default=str) + "\n"


def render_jobs(
    jobs: list[Job], renderer: Renderer, out_dir: Path, manifest: Manifest, *, campaign: str, progress: bool = True
) -> int:
    """Render jobs one by one: image written atomically first, then its record appended."""
    from tqdm.auto import tqdm

    n = 0
    for job in tqdm(jobs, desc=f"batch {campaign}", unit="job", disable=not progress):
        outputs = renderer.render(job)
        if not outputs:
            raise RuntimeError(f"renderer returned no image for job {job.job_id}")
        for part, (image, creative) in enumerate(outputs):
            rel = job.image_relpath(part, len(outputs))
            data = png_bytes(image, creative)
            atomic_write_bytes(out_dir / rel, data)
            creative.creative_id = job.creative_id(part, len(outputs))
            creative.image_path = rel
            creative.extra = {
                **creative.extra,
                "job_id": job.job_id,
                "part": part,
                "n_parts": len(outputs),
                "sha256": hashlib.sha256(data).hexdigest(),
                "campaign": campaign,
                "audience": job.member.key,
                "audience_kind": job.member.kind,
                "format": job.format,
                "product": job.product.key,
                "candidate": job.candidate,
            }
            manifest.append(creative)
        n += 1
    return n


@contextmanager
def _campaign_lock(out_dir: Path, enabled: bool = True) -> Iterator[None]:
    """One run per campaign folder at a time (a second would race on the manifest); freed on any exit, even SIGKILL."""
    if not enabled:
        yield
        return
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".atelier-batch.lock", "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError("another run of this campaign is writing this folder; wait for it or stop it",
                             out_dir) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _dist_env() -> tuple[int, int]:
    """(rank, world size) when started by `accelerate launch`/torchrun or by `--processes`."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _spawn(campaign_path: Path, output_root: Path, processes: int, device: str | None, progress: bool) -> None:
    """Start N copies of this runner as a torch.distributed group (what `accelerate launch` does)."""
    import socket

    with socket.socket() as s:  # a free loopback port for the gloo/nccl rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(processes):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(processes),
            "LOCAL_WORLD_SIZE": str(processes),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        cmd = [sys.executable, "-m", "app.batch", str(campaign_path), "--output-root", str(output_root)]
        if device:
            cmd += ["--device", device]
        if not progress or rank > 0:
            cmd += ["--no-progress"]
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        # If one process fails, the others would wait for it forever at the next barrier: stop them.
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs):
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    if 2 in codes:
        raise InputError("a batch process stopped on an input error (its message is above)")
    if any(codes):
        raise RuntimeError(f"batch processes failed (exit codes {codes})")


def run_campaign(
    campaign_path: str | Path,
    *,
    output_root: str | Path = "outputs",
    processes: int = 1,
    device: str | None = None,
    progress: bool = True,
    renderer_factory: RendererFactory | None = None,
    max_jobs: int | None = None,
) -> RunSummary:
    """Run (or resume) a campaign; returns counts and where the output went."""
    t0 = time.perf_counter()
    campaign_path = Path(campaign_path)
    campaign = load_campaign(campaign_path)
    output_root = Path(output_root)
    out_dir = campaign.output_dir(output_root)
    if processes < 1:
        raise InputError(f"--processes must be >= 1, got {processes}")
    rank, world = _dist_env()
    if processes > 1 and world == 1:
        if renderer_factory is not None:
            raise ValueError("a custom renderer cannot be sent to spawned processes")
        out_dir.mkdir(parents=True, exist_ok=True)
        before = {(r.get("extra") or {}).get("job_id") for mf in _manifest_files(out_dir) for r in _read_records(mf)}
        _spawn(campaign_path, output_root, processes, device, progress)
        return _summarize(campaign, out_dir, t0, skipped=len(before - {None}))

    state = None
    if world > 1:
        import torch
        from accelerate import PartialState

        # Without CUDA, accelerate only forms a process group when told to use the CPU.
        state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
        rank, world = state.process_index, state.num_processes
        if device is None and state.device.type == "cuda":
            device = str(state.device)
    if renderer_factory is None:
        from .render import make_renderer

        renderer_factory = make_renderer
    # The renderer checks products and audience first, so a bad campaign writes nothing at all.
    renderer = renderer_factory(campaign, campaign_path.parent, device)
    jobs = expand_jobs(campaign, renderer.members())
    with _campaign_lock(out_dir, enabled=rank == 0):
        return _run(campaign, campaign_path, out_dir, renderer, jobs, state, rank, world, progress, max_jobs, t0)


def _run(campaign: Campaign, campaign_path: Path, out_dir: Path, renderer: Renderer, jobs: list[Job], state,
         rank: int, world: int, progress: bool, max_jobs: int | None, t0: float) -> RunSummary:
    """The run proper (the caller holds the campaign lock on the main process)."""
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            out_dir / "campaign.json",
            {"campaign": campaign.model_dump(), "source": str(campaign_path), "jobs": len(jobs)},
        )
        done, dropped = recover(out_dir, jobs)
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        done, dropped = {c.extra["job_id"]: [c] for c in Manifest(out_dir / MANIFEST).load()}, 0
    todo = [j for j in jobs if j.job_id not in done]
    if max_jobs is not None:
        todo = todo[:max_jobs]
    shard = out_dir / (MANIFEST if world == 1 else f"manifest.rank{rank}.jsonl")
    if state is not None:
        with state.split_between_processes(todo) as mine:
            rendered = render_jobs(list(mine), renderer, out_dir, Manifest(shard), campaign=campaign.name,
                                   progress=progress and state.is_main_process)
        state.wait_for_everyone()
    else:
        rendered = render_jobs(todo, renderer, out_dir, Manifest(shard), campaign=campaign.name, progress=progress)
    summary = None
    if rank == 0:
        if world > 1:
            recover(out_dir, jobs)  # merges the shards into one ordered manifest
        summary = _summarize(campaign, out_dir, t0, jobs=len(jobs), skipped=len(done), rendered=rendered,
                             dropped=dropped)
    if state is not None:
        state.wait_for_everyone()
    return summary or RunSummary(campaign.name, str(out_dir), len(jobs), len(done), rendered, 0, 0,
                                 time.perf_counter() - t0, None)


def _summarize(campaign: Campaign, out_dir: Path, t0: float, *, jobs: int | None = None, skipped: int = 0,
               rendered: int = 0, dropped: int = 0) -> RunSummary:
    from .sheet import write_contact_sheet

    creatives = Manifest(out_dir / MANIFEST).load()
    sheet = write_contact_sheet(out_dir, campaign, creatives)
    if jobs is None:  # spawned run: the children did the work, read their totals from the files
        jobs = int(_read_json(out_dir / "campaign.json").get("jobs", 0))
        rendered = len({c.extra.get("job_id") for c in creatives}) - skipped
    return RunSummary(campaign.name, str(out_dir), jobs, skipped, rendered, len(creatives), dropped,
                      round(time.perf_counter() - t0, 2), str(sheet))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> None:
    """Worker entry (`python -m app.batch`), used by `--processes` and `accelerate launch -m app.batch`."""
    import argparse

    p = argparse.ArgumentParser(description="Run one process of an Atelier batch campaign.")
    p.add_argument("campaign")
    p.add_argument("--output-root", default="outputs")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        run_campaign(a.campaign, output_root=a.output_root, device=a.device, progress=not a.no_progress)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

