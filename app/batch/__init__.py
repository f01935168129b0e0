"""Marketing batch campaigns: YAML schema, deterministic jobs, resumable runner, contact sheet."""

from .campaign import Campaign, load_campaign, parse_campaign, safe_output_dir
from .jobs import AudienceMember, Job, expand_jobs
from .runner import RunSummary, recover, run_campaign

__all__ = [
    "AudienceMember",
    "Campaign",
    "Job",
    "RunSummary",
    "expand_jobs",
    "load_campaign",
    "parse_campaign",
    "recover",
    "run_campaign",
    "safe_output_dir",
]
