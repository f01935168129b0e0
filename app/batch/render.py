"""The one place the batch runner calls the generation pipelines: a job in, (image, Creative)s out.

The campaign's `model:` becomes a `PipelineSpec`, checked with the products before any job runs;
its components load once per process (`pipelines.assemble`) and serve every job.
Each job asks its pipeline for exactly one candidate with the job's own seed, so a job's pixels
depend only on the job, never on which process ran it or on what ran before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import InputError

from .audience import ShopData
from .campaign import Campaign
from .jobs import AudienceMember, Job

SPEC_KEYS = {"model": "base", "lora": "lora", "lora_scale": "lora_scale", "adapter": "adapter"}  # spec -> model: key


class CampaignRenderer:
    """Renders a campaign's jobs with the shop data, recommender and models it names."""

    def __init__(self, campaign: Campaign, campaign_dir: Path, device: str | None = None):
        from pipelines.device import set_threads

        self.campaign = campaign
        self.dir = Path(campaign_dir)
        self.device = device
        # CPU results depend on the thread count (reduction order), so every process sets it
        # deliberately (ATELIER_THREADS, default 1) and records it: same device + same threads = same bytes.
        self.threads = set_threads()
        self.data = ShopData(campaign.shop, self.dir, campaign.model.recommender,
                             recommender_dir=campaign.model.recommender_dir, feedback_db=campaign.feedback_db)
        self._check_products()
        self._conditions: dict[str, Any] = {}

    # --- inputs ------------------------------------------------------------------------------
    def spec(self):
        """What the campaign's `model:` asks to assemble; its paths are relative to the campaign file."""
        from pipelines.assemble import AUTO, PipelineSpec

        m = self.campaign.model
        return PipelineSpec(model=m.base, lora=m.lora, lora_scale=m.lora_scale, adapter=m.adapter,
                            controlnet=AUTO, scorer="demo", device=getattr(self, "device", None), root=str(self.dir),
                            upscaler=AUTO if m.upscale else None)

    def _check_products(self) -> None:
        """Unknown catalog ids, broken images, sizes the model cannot draw and missing or unsafe weights
        fail before anything is rendered."""
        from core.validate import load_user_image
        from pipelines.assemble import SpecError

        for k, p in enumerate(self.campaign.products):
            if p.item is not None and p.item not in self.data.catalog:
                raise self.campaign.error(f"unknown catalog item {p.item!r}", "products", k)
            for name in ("image", "mask"):
                value = getattr(p, name)
                if value is None:
                    continue
                try:
                    load_user_image(self.path(value))
                except InputError as e:
                    raise self.campaign.error(f"{e.problem} ({self.path(value)})", "products", k, name) from None
        try:
            geometry = self.spec().check()
        except SpecError as e:
            where = f" ({e.path})" if e.path and e.path not in e.problem else ""
            raise self.campaign.error(e.problem + where, "model", SPEC_KEYS.get(e.field, e.field)) from None
        self._check_sizes(geometry.get("size_multiple"))

    def _check_sizes(self, multiple: int | None) -> None:
        """Product and background sizes must suit the model (banners are resized to any size)."""
        from core.validate import parse_size

        if multiple is None:
            return
        for fmt in ("product", "background"):
            spec = getattr(self.campaign.formats, fmt)
            for k, size in enumerate(getattr(spec, "sizes", None) or []):
                w, h = parse_size(size)
                if w % multiple or h % multiple:
                    raise self.campaign.error(f"size {size}: this model draws sides in multiples of {multiple}",
                                              "formats", fmt, "sizes", k)

    def path(self, value: str) -> Path:
        """An input path from the campaign, relative to the campaign file's folder."""
        p = Path(value)
        return p if p.is_absolute() else (self.dir / p)

    def members(self) -> list[AudienceMember]:
        """The campaign's audience, resolved against the shop."""
        return self.data.members(self.campaign)

    def condition(self, member: AudienceMember):
        """The member's PreferenceCondition (computed once per run)."""
        if member.key not in self._conditions:
            self._conditions[member.key] = self.data.condition(member)
        return self._conditions[member.key]

    # --- models ------------------------------------------------------------------------------
    def pipe(self, kind: str):
        """The product / background / banner / outfit pipeline, from the process's one assembly of the spec."""
        from pipelines.assemble import assemble

        return assemble(self.spec()).pipeline(kind, catalog=self.data.catalog)

    # --- one job -----------------------------------------------------------------------------
    def render(self, job: Job) -> list[tuple[Any, Any]]:
        """One job through its pipeline: one candidate with the job's seed (an outfit: one image per piece)."""
        m = self.campaign.model
        cond = self.condition(job.member)
        product = job.product
        kw: dict[str, Any] = dict(num_candidates=1, seed=job.seed, steps=m.steps, guidance=m.guidance, progress=False)
        if m.negative_prompt:
            kw["negative_prompt"] = m.negative_prompt
        size = {} if job.size is None else {"width": job.size[0], "height": job.size[1]}
        source: dict[str, Any] = (
            {"item_id": product.item} if product.item is not None else {"product_path": str(self.path(product.image))}
        )
        if job.format == "product":
            out = self.pipe("product")(cond, item_id=product.item, category=product.category, **size, **kw)
        elif job.format == "background":
            if product.mask is not None:
                source["mask_path"] = str(self.path(product.mask))
            out = self.pipe("background")(cond, **source, **size, **kw)
        elif job.format == "banner":
            spec = self.campaign.formats.banner
            extra = {"headline": spec.headline} if spec.headline else {}
            if spec.cta:
                extra["cta"] = spec.cta
            out = self.pipe("banner")(cond, **source, sizes=[job.size], **extra, **kw)
        elif job.format == "outfit":
            spec = self.campaign.formats.outfit
            extra = {"categories": spec.categories} if spec.categories else {}
            if product.item is None:
                raise InputError(f"outfits start from catalog items; product {product.key!r} is an image file")
            out = self.pipe("outfit")(cond, [product.item], **extra, **size, **kw)
        else:
            raise InputError(f"unknown format {job.format!r}")
        for c in out.creatives:
            c.extra["torch_threads"] = self.threads
        return list(zip(out.images, out.creatives))


def make_renderer(campaign: Campaign, campaign_dir: Path, device: str | None = None) -> CampaignRenderer:
    """The renderer `run_campaign` uses unless a test passes its own."""
    return CampaignRenderer(campaign, campaign_dir, device)
