"""A campaign expanded into deterministic jobs with stable ids (the unit of resume and of splitting)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from core.validate import parse_size

from .campaign import Campaign, ProductSpec

FORMATS = ("product", "background", "banner", "outfit")


@dataclass(frozen=True)
class AudienceMember:
    """Who one set of creatives is for: a single user, or a segment (several users, one condition)."""

    key: str
    kind: str  # "user" or "segment"
    user_ids: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    """One render: a member x product x format x size x seed. `job_id` is stable across runs."""

    job_id: str
    member: AudienceMember
    product: ProductSpec
    format: str
    size: tuple[int, int] | None
    seed: int
    candidate: int

    def image_relpath(self, part: int = 0, n_parts: int = 1) -> str:
        """Where its image goes, relative to the campaign folder."""
        suffix = "" if n_parts == 1 else f"_p{part}"
        return f"images/{_safe(self.member.key)}/{self.job_id}{suffix}.png"

    def creative_id(self, part: int = 0, n_parts: int = 1) -> str:
        """The manifest id of one of its images (the job id itself for single-image jobs)."""
        return self.job_id if n_parts == 1 else f"{self.job_id}_p{part}"


def _safe(text: str, limit: int = 48) -> str:
    """A file-name-safe version of an id (the hash in the job id keeps distinct ids distinct)."""
    from core.paths import slug

    return slug(text, limit)


def _sizes(campaign: Campaign, fmt: str) -> list[tuple[int, int] | None]:
    spec = getattr(campaign.formats, fmt)
    sizes = getattr(spec, "sizes", None) or []
    return [parse_size(s) for s in sizes] or [None]


def _job_hash(campaign: Campaign, payload: dict) -> str:
    # The model settings and the format's own options are part of the identity: change any of them
    # and the job is new (a rerun regenerates it instead of skipping a now-stale image).
    fmt_spec = getattr(campaign.formats, payload["format"])
    blob = json.dumps(
        {"job": payload, "model": campaign.model.model_dump(), "format": fmt_spec.model_dump(), "shop": campaign.shop},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def expand_jobs(campaign: Campaign, members: list[AudienceMember]) -> list[Job]:
    """All jobs of a campaign, in a fixed order (member, product, format, size, candidate)."""
    jobs: list[Job] = []
    seen: set[str] = set()
    for member in members:
        for product in campaign.products:
            for fmt in FORMATS:
                if getattr(campaign.formats, fmt) is None:
                    continue
                for size in _sizes(campaign, fmt):
                    for cand, seed in enumerate(campaign.candidate_seeds()):
                        payload = {
                            "member": [member.kind, member.key, list(member.user_ids)],
                            "product": product.model_dump(),
                            "format": fmt,
                            "size": size,
                            "seed": seed,
                        }
                        size_s = "native" if size is None else f"{size[0]}x{size[1]}"
                        job_id = (
                            f"{fmt}-{_safe(member.key, 24)}-{_safe(product.key, 24)}-{size_s}-s{seed}-"
                            f"{_job_hash(campaign, payload)}"
                        )
                        if job_id in seen:  # only if members repeat; the campaign schema forbids the rest
                            continue
                        seen.add(job_id)
                        jobs.append(Job(job_id, member, product, fmt, size, seed, cand))
    return jobs
