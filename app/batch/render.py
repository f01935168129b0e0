"""The one place the batch runner calls the generation pipelines: a job in, (image, Creative)s out.

Models load once per process (base model, LoRA, ControlNet, scorer) and are reused for every job.
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
        self.data = ShopData(campaign.shop, self.dir, campaign.model.recommender)
        self._check_products()
        self._pipes: dict[str, Any] = {}
        self._sd = None
        self._adapter = None
        self._scorer = False  # not loaded yet (None: not available)
        self._conditions: dict[str, Any] = {}

    # --- inputs ------------------------------------------------------------------------------
    def _check_products(self) -> None:
        """Unknown catalog ids, broken images and missing or unsafe weights fail before anything is rendered."""
        from core.validate import load_user_image

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
        m = self.campaign.model
        if m.lora is not None:
            lora = self.path(m.lora)
            if not lora.exists():
                raise self.campaign.error(f"LoRA weights not found ({lora})", "model", "lora")
            from core.weights import check_weights

            try:  # what diffusers would read from it: safetensors with a valid header, never a pickle
                check_weights(lora, kind="lora", what="LoRA weights")
            except InputError as e:
                raise self.campaign.error(f"LoRA weights must be .safetensors (pickle checkpoints can run code): "
                                          f"{e.problem}", "model", "lora") from None
        if m.adapter is not None and not (self.path(m.adapter) / "config.json").is_file():
            raise self.campaign.error(f"not a preference adapter folder ({self.path(m.adapter)})", "model", "adapter")

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
    def sd(self):
        """The base pipeline (with the campaign's LoRA fused in when it has one), loaded once."""
        if self._sd is None:
            from pipelines.loading import load_sd_pipeline

            base = self.campaign.model.base
            # "demo", a folder (relative to the campaign file), or a hub id (loading refuses it offline)
            spec = base if base == "demo" or not self.path(base).exists() else str(self.path(base))
            # A LoRA changes the weights: load a private copy instead of the process-wide cached one.
            sd = load_sd_pipeline(spec, device=self.device, cache=not self.campaign.model.lora)
            if self.campaign.model.lora:
                lora = self.path(self.campaign.model.lora)
                if not lora.exists():
                    raise InputError("LoRA weights not found", lora)
                try:
                    sd.load_lora_weights(str(lora), adapter_name="campaign", use_safetensors=True)  # no .bin fallback
                    sd.set_adapters(["campaign"], adapter_weights=[self.campaign.model.lora_scale])
                except (OSError, ValueError, KeyError) as e:
                    raise InputError(f"cannot load LoRA weights ({e})", lora) from None
            self._sd = sd
        return self._sd

    def scorer(self):
        """The scorer, loaded once for all pipelines (None when not installed)."""
        if self._scorer is False:
            self._scorer = _scorer(self.device)
        return self._scorer

    def adapter(self):
        """The campaign's preference adapter (condition embedding -> extra prompt tokens), or None."""
        if self.campaign.model.adapter is None:
            return None
        if self._adapter is None:
            from pipelines.conditioning import PreferenceAdapter

            self._adapter = PreferenceAdapter.from_pretrained(self.path(self.campaign.model.adapter))
        return self._adapter

    def _lora_record(self) -> list[dict]:
        m = self.campaign.model
        return [{"path": m.lora, "scale": m.lora_scale}] if m.lora else []

    def pipe(self, kind: str):
        """The product / background / banner / outfit pipeline on the shared base model."""
        if kind not in self._pipes:
            common: dict[str, Any] = dict(catalog=self.data.catalog, base_model=self.campaign.model.base,
                                          lora=self._lora_record(), scorer=self.scorer(), adapter=self.adapter())
            sd = self.sd()
            if kind == "product":
                from pipelines.product import ProductPipeline

                self._pipes[kind] = ProductPipeline(sd, **common)
            elif kind == "background":
                from pipelines.background import BackgroundPipeline

                cn = _controlnet(self.device) if self.campaign.model.base == "demo" else None
                self._pipes[kind] = BackgroundPipeline(sd, controlnet=cn, **common)
            elif kind == "banner":
                from pipelines.banner import BannerPipeline

                self._pipes[kind] = BannerPipeline(sd, **common)
            elif kind == "outfit":
                from pipelines.outfit import OutfitPipeline

                self._pipes[kind] = OutfitPipeline(sd, **common)
            else:
                raise InputError(f"unknown format {kind!r}")
        return self._pipes[kind]

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


def _scorer(device: str | None = None):
    """The demo open_clip scorer when it is installed (scores creatives, retrieves outfit items), else None."""
    try:
        from pipelines.scorer import Scorer

        return Scorer.load("demo", device=device)
    except (ImportError, AttributeError, InputError, OSError):
        return None


def _controlnet(device: str | None):
    """The demo ControlNet (for the demo base model) when shipped, else None (backgrounds are then inpainted)."""
    try:
        from pipelines.loading import load_controlnet

        return load_controlnet(device=device)
    except (ImportError, AttributeError, InputError, OSError, TypeError):
        return None


def make_renderer(campaign: Campaign, campaign_dir: Path, device: str | None = None) -> CampaignRenderer:
    """The renderer `run_campaign` uses unless a test passes its own."""
    return CampaignRenderer(campaign, campaign_dir, device)
