"""Personalized product images: a category (or a given product) drawn the way one shopper likes it.

    pipe = ProductPipeline(load_sd_pipeline("demo"), scorer=scorer, catalog=catalog)
    out = pipe(condition, category="shirt", num_candidates=4, seed=0)
    out.images[0], out.creatives[0]          # best candidate first
"""
from __future__ import annotations

from PIL import Image

from core.errors import InputError
from recommenders.condition import PreferenceCondition

from .candidate_scores import rank_output
from .conditioning import NEGATIVE_PROMPT, item_picture, keyword_prompt, reference_item
from .personalized import PersonalizedPipeline, PipelineOutput, progress_bar

REFERENCE_MODES = ("none", "history", "product")


class ProductPipeline(PersonalizedPipeline):
    """Text-to-image (or img2img from a reference picture) with the shopper's keywords and tokens."""

    name = "product"

    def __call__(self, condition: PreferenceCondition | None, *, category: str | None = None,
                 item_id: str | None = None, num_candidates: int = 4, seed: int = 0, steps: int = 25,
                 guidance: float = 7.5, width: int | None = None, height: int | None = None,
                 prompt: str | None = None, negative_prompt: str = NEGATIVE_PROMPT, reference: str | None = None,
                 strength: float = 0.7, personalize: bool = True, batch_size: int = 1,
                 progress: bool = True) -> PipelineOutput:
        # 1. check inputs
        width, height = width or self.default_size, height or self.default_size
        self.check_size(width, height)
        self.check_settings(num_candidates=num_candidates, steps=steps, guidance=guidance)
        if item_id is not None:
            if self.catalog is None or item_id not in self.catalog:
                raise InputError(f"unknown product {item_id!r} (no such item in the catalog)")
            category = category or self.catalog[item_id].category
        reference = reference or ("product" if item_id is not None else "none")
        if reference not in REFERENCE_MODES:
            raise InputError(f"reference must be one of {', '.join(REFERENCE_MODES)}, not {reference!r}")
        if not 0.0 < strength <= 1.0:
            raise InputError(f"strength must be in (0, 1], got {strength}")
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")

        # 2. the prompt: the shopper's keywords, the requested category fixed (or a plain prompt)
        if prompt is None:
            prompt = keyword_prompt(condition if personalize else None, "product" if personalize else "plain",
                                    category=category)

        # 3. the reference picture for img2img: the product itself, or a history item of its category
        ref_id = None
        if reference == "product":
            ref_id = item_id
        elif reference == "history":
            ref_id = reference_item(condition, self.catalog, category)
        params = {"reference_item": ref_id, "strength": strength if ref_id else None, "use_adapter": personalize}

        # 4. seeded samples (seed + i), in batches of `batch_size`; a record names its batch to be regenerated alone
        out = PipelineOutput()
        bar = progress_bar(num_candidates, f"product {category or ''}".strip(), progress)
        seeds = [seed + i for i in range(num_candidates)]
        for start in range(0, num_candidates, batch_size):
            batch = seeds[start:start + batch_size]
            kw = dict(prompt=prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance, width=width,
                      height=height, condition=condition)
            out.images += self.render_batch(seeds=batch, **kw, **params)
            for j, s in enumerate(batch):
                batch_params = {**params, "batch_seeds": batch, "batch_index": j} if len(batch) > 1 else params
                out.creatives.append(self.creative(seed=s, **kw, params=batch_params,
                                                   extra={"category": category, "item_id": item_id}))
            bar.update(len(batch))
        bar.close()

        # 5. rank by personalization, prompt fidelity and predicted CTR (scores stored on the Creatives)
        return rank_output(out, condition, scorer=self.scorer, catalog=self.catalog, reward_model=self.reward_model)

    def render(self, *, seed: int, batch_seeds: list[int] | None = None, batch_index: int = 0,
               **kwargs) -> Image.Image:
        """One image, regenerated inside its original batch when it was made in one."""
        return self.render_batch(seeds=batch_seeds or [seed], **kwargs)[batch_index if batch_seeds else 0]

    def render_batch(self, *, prompt: str, negative_prompt: str, seeds: list[int], steps: int, guidance: float,
                     width: int, height: int, condition: PreferenceCondition | None, reference_item: str | None = None,
                     strength: float | None = None, use_adapter: bool = True) -> list[Image.Image]:
        """Images for `seeds`: img2img from the reference picture when there is one, else text-to-image."""
        common = dict(prompt=prompt, negative_prompt=negative_prompt, seeds=seeds, steps=steps, guidance=guidance,
                      width=width, height=height, condition=condition, use_adapter=use_adapter)
        if reference_item is None:
            return self.sample_batch("text2img", **common)
        picture = item_picture(self.catalog, reference_item, (width, height))
        if self.ip_adapter is not None:  # IP-Adapter reads the picture; text-to-image keeps the composition free
            return self.sample_batch("text2img", reference=picture, **common)
        return self.sample_batch("img2img", image=picture, strength=strength, **common)
