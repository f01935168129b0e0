"""Outfit completion: generate the missing pieces for a shopper, then find real items to buy.

After DiFashion (Xu et al., "Diffusion Models for Generative Outfit Recommendation", SIGIR 2024):
each missing category is generated conditioned on the outfit's present items (compatibility) and
the user's history (taste). Here the present items set the piece's keywords through the outfit
rules (one style throughout, at most one bold color and one non-solid pattern per outfit), the
user's condition fills the rest (keywords, preference tokens, optionally an img2img reference from a
history item of the same category). Each generated piece is then matched to the nearest real
catalog item of its category by the scorer's image embedding, so the shopper gets both a picture
and something to buy.
"""
from __future__ import annotations

from PIL import Image, ImageDraw

from core.errors import InputError
from recommenders.condition import PreferenceCondition

from .candidate_scores import CatalogEmbeddings, as_unit_rows, score_candidates
from .conditioning import NEGATIVE_PROMPT, item_picture, keyword_prompt, reference_item
from .personalized import PersonalizedPipeline, PipelineOutput, progress_bar

# Outfit structure: top + bottom, or a one-piece; then shoes and a bag (the demo shop's rules,
# which also read naturally for real catalogs using these category names).
TOPS = ("shirt", "top", "blouse", "t-shirt", "sweater", "jacket")
BOTTOMS = ("trousers", "skirt", "pants", "jeans", "shorts")
ONE_PIECES = ("dress", "jumpsuit")
ACCESSORIES = ("shoes", "bag")
KEYWORD_WEIGHTS = {"color": 4, "pattern": 2, "style": 1}  # retrieval without a scorer
NEUTRAL_COLORS = ("navy", "black", "white", "gray", "grey", "beige", "brown")


def missing_categories(present: list[str], available: list[str], taste: dict[str, float] | None = None) -> list[str]:
    """Categories that complete an outfit, chosen among the catalog's categories (`taste` breaks ties)."""
    taste = taste or {}
    have = set(present)

    def pick(options):
        opts = [c for c in options if c in available]
        return max(opts, key=lambda c: (taste.get(c, 0.0), -opts.index(c))) if opts else None

    out = []
    if not have & set(ONE_PIECES):
        if not have & set(TOPS) and (c := pick(TOPS)):
            out.append(c)
        if not have & set(BOTTOMS) and (c := pick(BOTTOMS)):
            out.append(c)
    out += [c for c in ACCESSORIES if c in available and c not in have]
    return out


def piece_attributes(condition: PreferenceCondition | None, outfit: list[dict[str, str]]) -> dict[str, str]:
    """Keywords for the next piece: the outfit's style, and the user's colors/patterns within the rules."""
    prefs = condition.attributes if condition is not None else {}

    def ranked(kind):
        return [v for v, _ in sorted(prefs.get(kind, {}).items(), key=lambda kv: (-kv[1], kv[0]))]

    attrs: dict[str, str] = {}
    styles = [a["style"] for a in outfit if a.get("style")]
    if styles:
        attrs["style"] = max(set(styles), key=lambda s: (styles.count(s), s))  # one style throughout
    elif ranked("style"):
        attrs["style"] = ranked("style")[0]
    colors = ranked("color")
    if any(a.get("color") and a["color"] not in NEUTRAL_COLORS for a in outfit):
        colors = [c for c in colors if c in NEUTRAL_COLORS] or ["black"]  # one bold color per outfit
    if colors:
        attrs["color"] = colors[0]
    patterns = ranked("pattern")
    if any(a.get("pattern") and a["pattern"] != "solid" for a in outfit):
        patterns = ["solid"]  # one non-solid pattern per outfit
    if patterns:
        attrs["pattern"] = patterns[0]
    return attrs


class OutfitPipeline(PersonalizedPipeline):
    """Generate missing outfit pieces for a user and retrieve the nearest real catalog items."""

    name = "outfit"

    def __init__(self, sd_pipe, **kwargs):
        super().__init__(sd_pipe, **kwargs)
        if self.catalog is None:
            raise InputError("the outfit pipeline needs a catalog to complete outfits from")
        self.index = CatalogEmbeddings(self.scorer, self.catalog) if self.scorer is not None else None

    def __call__(self, condition: PreferenceCondition | None, present: list[str], *,
                 categories: list[str] | None = None, num_candidates: int = 1, seed: int = 0, steps: int = 25,
                 guidance: float = 7.5, width: int | None = None, height: int | None = None,
                 negative_prompt: str = NEGATIVE_PROMPT, reference: str = "none", strength: float = 0.7,
                 exclude_history: bool = True, progress: bool = True) -> PipelineOutput:
        # 1. check inputs
        width, height = width or self.default_size, height or self.default_size
        self.check_size(width, height)
        self.check_settings(num_candidates=num_candidates, steps=steps, guidance=guidance)
        for item_id in present:
            if item_id not in self.catalog:
                raise InputError(f"unknown outfit item {item_id!r} (no such item in the catalog)")
        if reference not in ("none", "history"):
            raise InputError(f"reference must be 'none' or 'history', not {reference!r}")
        available = self.catalog.categories()
        taste = condition.attributes.get("category", {}) if condition is not None else {}
        categories = categories or missing_categories([self.catalog[i].category for i in present], available, taste)
        unknown = [c for c in categories if c not in available]
        if unknown:
            raise InputError(f"unknown categories {', '.join(unknown)} (the catalog has {', '.join(available)})")
        if not categories:
            raise InputError("the outfit is already complete; name --categories to generate anyway")

        # 2. per piece, in order: keywords from the outfit so far + the user's taste, then sample
        out = PipelineOutput()
        bar = progress_bar(len(categories) * num_candidates, "outfit", progress)
        outfit = [self._attributes(i) for i in present]
        exclude = set(present) | (set(condition.reference_items) if (condition and exclude_history) else set())
        for category in categories:
            attrs = piece_attributes(condition, outfit)
            prompt = keyword_prompt(None, "outfit", category=category, **attrs)
            ref_id = reference_item(condition, self.catalog, category) if reference == "history" else None
            if ref_id is not None and self.catalog[ref_id].category != category:
                ref_id = None
            params = {"reference_item": ref_id, "strength": strength if ref_id else None}
            for i in range(num_candidates):
                kw = dict(prompt=prompt, negative_prompt=negative_prompt, seed=seed + i, steps=steps,
                          guidance=guidance, width=width, height=height, condition=condition)
                image = self.render(**kw, **params)
                # 3. retrieve the nearest real item of this category (something to buy)
                item, sim = self.retrieve(image, category, attrs, exclude)
                out.images.append(image)
                out.creatives.append(self.creative(**kw, params=params, extra={
                    "category": category, "present": list(present), "piece_attributes": attrs,
                    "retrieved_item": item, "retrieval_similarity": round(sim, 6)}))
                bar.update()
            outfit.append({"category": category, **attrs})
        bar.close()

        # 4. score each piece (personalization, CLIP); order stays by category, best candidate first
        if self.scorer is not None:
            scores = score_candidates(out.images, [c.prompt for c in out.creatives], condition, scorer=self.scorer,
                                      catalog=self.catalog, reward_model=self.reward_model, index=self.index)
            for c, s in zip(out.creatives, scores):
                c.scores.update({k: round(v, 6) for k, v in s.items()})
        return out

    def _attributes(self, item_id: str) -> dict[str, str]:
        item = self.catalog[item_id]
        return {"category": item.category, **item.attributes}

    def retrieve(self, image: Image.Image, category: str, attrs: dict[str, str],
                 exclude: set[str]) -> tuple[str, float]:
        """Nearest catalog item of `category` by image embedding (or by keywords without a scorer)."""
        pool = [it.item_id for it in self.catalog if it.category == category and it.item_id not in exclude]
        pool = pool or [it.item_id for it in self.catalog if it.category == category]
        if self.index is not None:
            return self.index.nearest(as_unit_rows(self.scorer.embed_images([image])), pool)
        # keyword fallback: the item sharing most of the piece's attributes, color first (it shows most)
        def match(i):
            a = self.catalog[i].attributes
            return sum(KEYWORD_WEIGHTS.get(k, 1) * (a.get(k) == v) for k, v in attrs.items())

        best = max(pool, key=match)  # first in catalog order on ties
        return best, match(best) / max(1, sum(KEYWORD_WEIGHTS.get(k, 1) for k in attrs))

    def render(self, *, prompt: str, negative_prompt: str, seed: int, steps: int, guidance: float, width: int,
               height: int, condition: PreferenceCondition | None, reference_item: str | None = None,
               strength: float | None = None) -> Image.Image:
        common = dict(prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps, guidance=guidance,
                      width=width, height=height, condition=condition)
        if reference_item is None:
            return self.sample("text2img", **common)
        picture = item_picture(self.catalog, reference_item, (width, height))
        if self.ip_adapter is not None:
            return self.sample("text2img", reference=picture, **common)
        return self.sample("img2img", image=picture, strength=strength, **common)


def outfit_board(catalog, present: list[str], output: PipelineOutput, tile: int = 128) -> Image.Image:
    """One picture of an outfit: present items, then each generated piece above its retrieved item."""
    first = {}
    for img, c in zip(output.images, output.creatives):
        first.setdefault(c.extra.get("category"), (img, c))  # the first candidate of each piece
    pieces = list(first.values())
    cols = len(present) + len(pieces)
    board = Image.new("RGB", (max(1, cols) * tile, 2 * tile), (255, 255, 255))
    draw = ImageDraw.Draw(board)
    for j, item_id in enumerate(present):
        board.paste(item_picture(catalog, item_id, (tile, tile)), (j * tile, tile // 2))
    for k, (img, c) in enumerate(pieces):
        x = (len(present) + k) * tile
        board.paste(img.convert("RGB").resize((tile, tile), Image.BICUBIC), (x, 0))
        if c.extra.get("retrieved_item"):
            board.paste(item_picture(catalog, c.extra["retrieved_item"], (tile, tile)), (x, tile))
        draw.line((x, 0, x, 2 * tile), fill=(200, 200, 200))
    return board

