"""`atelier batch CAMPAIGN.yaml`: run (or resume) a marketing campaign into its output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.commands import options


def batch(
    campaign: Annotated[Path, typer.Argument(help="Campaign YAML (see assets/campaigns/demo.yaml).")],
    output_root: Annotated[Path, typer.Option("--output-root", help="Campaign folders go inside this folder; "
                                               "a campaign's `output` may not leave it.")] = Path("outputs/campaigns"),
    processes: Annotated[int, typer.Option("--processes", min=1, help="Split the jobs over N processes "
                                           "(one per GPU when there are several); or use `accelerate launch "
                                           "-m app.batch CAMPAIGN`.")] = 1,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N (default: CUDA when present).", callback=options.device)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and list the jobs; render nothing.")] = False,
    max_jobs: Annotated[Optional[int], typer.Option("--max-jobs", min=1, help="Render at most N pending jobs "
                                                     "(a rerun continues).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json-out", help="Also write the summary here.", callback=options.out_file)] = None,
) -> None:
    """Generate a campaign's images, manifest and contact sheet; rerunning skips what is done and verified."""
    from core.io import printable, write_results_json

    if dry_run:
        from app.batch.audience import ShopData
        from app.batch.campaign import load_campaign
        from app.batch.jobs import expand_jobs

        spec = load_campaign(campaign)
        data = ShopData(spec.shop, campaign.parent, spec.model.recommender,
                        recommender_dir=spec.model.recommender_dir)
        jobs = expand_jobs(spec, data.members(spec))
        result = {
            "campaign": spec.name,
            "output_dir": str(spec.output_dir(output_root)),
            "jobs": len(jobs),
            "by_format": {f: sum(j.format == f for j in jobs) for f in sorted({j.format for j in jobs})},
            "audience": sorted({j.member.key for j in jobs}),
        }
        if not as_json:
            typer.echo(f"{spec.name}: {len(jobs)} jobs -> {result['output_dir']}")
            for j in jobs[:20]:
                typer.echo(f"  {j.job_id}")
            if len(jobs) > 20:
                typer.echo(f"  ... {len(jobs) - 20} more")
    else:
        from app.batch.runner import run_campaign

        summary = run_campaign(campaign, output_root=output_root, processes=processes, device=device,
                               progress=not as_json, max_jobs=max_jobs)
        result = summary.to_dict()
        if not as_json:
            typer.echo(f"{result['campaign']}: {result['rendered']} rendered, {result['skipped']} already done, "
                       f"{result['creatives']} creatives in {result['output_dir']} ({result['seconds']} s)")
            if result["dropped_records"]:
                typer.echo(f"  {result['dropped_records']} stale or broken manifest records were dropped and redone")
            typer.echo(f"  contact sheet: {result['sheet']}")
    if json_out is not None:
        write_results_json(json_out, result)
    if as_json:
        typer.echo(json.dumps(printable(result), indent=2, sort_keys=True))
