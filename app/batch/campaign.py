"""The campaign YAML schema: what to generate, for whom, in which formats, into which folder.

Validation is strict (unknown keys, wrong types and negative counts are errors) and every error
is one line that names the file and the YAML line it comes from, so a marketer can fix it
without reading a traceback. The YAML is read by `core.yamlio` (no aliases, duplicate keys or tags);
numeric bounds are the shared ones in `core.limits`, so a campaign that validates also renders.

    name: spring-navy
    products: [top-0003, {image: assets/my_bag.png}]
    audience: {users: [u0001], top_users: 3, segments: [{name: navy-fans, where: {color: navy}}]}
    formats: {product: {}, banner: {sizes: [300x250, 728x90], headline: New in}}
    candidates: 2
    seed: 0
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from core import limits
from core.errors import InputError
from core.validate import check_prompt, parse_size
from core.yamlio import YamlDocument, parse_yaml, read_yaml

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_sizes(sizes: list[str]) -> list[str]:
    for s in sizes:
        parse_size(s)
    if len(set(sizes)) != len(sizes):
        raise ValueError("sizes repeat")
    return sizes


SizeList = Annotated[list[str], AfterValidator(_check_sizes)]
Seed = Annotated[int, Field(ge=limits.SEED.low, le=limits.SEED.high)]


class ProductSpec(_Strict):
    """One product: a catalog item id, or a product image (PNG with alpha, or with a mask)."""

    item: str | None = Field(None, min_length=1)
    image: str | None = Field(None, min_length=1)
    mask: str | None = None
    title: str | None = Field(None, max_length=200)
    category: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "ProductSpec":
        if (self.item is None) == (self.image is None):
            raise ValueError("a product needs exactly one of 'item' (a catalog id) or 'image' (a file)")
        if self.mask is not None and self.image is None:
            raise ValueError("'mask' only goes with 'image'")
        return self

    @property
    def key(self) -> str:
        """Stable short name used in job ids and file names."""
        if self.item is not None:
            return self.item
        return PurePosixPath(self.image.replace("\\", "/")).stem


class SegmentSpec(_Strict):
    """A named group of users: listed, chosen by their estimated favourite attributes (`where`),
    or, with neither, a segment the shop itself defines (the demo shop's shopper segments)."""

    name: str = Field(pattern=NAME_RE)
    users: list[str] | None = None
    where: dict[str, str] | None = None
    max_users: int = Field(50, ge=1, le=100000)

    @model_validator(mode="after")
    def _one_rule(self) -> "SegmentSpec":
        if self.users is not None and self.where is not None:
            raise ValueError("a segment takes 'users' or 'where', not both")
        if self.where is not None and not self.where:
            raise ValueError("segment 'where' is empty")
        if self.users is not None and not self.users:
            raise ValueError("segment 'users' is empty")
        return self


class AudienceSpec(_Strict):
    """Who the creatives are for: single users, segments, and/or the N most active users."""

    users: list[str] = Field(default_factory=list)
    segments: list[SegmentSpec] = Field(default_factory=list)
    top_users: int | None = Field(None, ge=1, le=100000)

    @field_validator("segments", mode="before")
    @classmethod
    def _bare_names(cls, v: Any) -> Any:
        # `- classic` is short for `- {name: classic}` (a segment the shop defines)
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> "AudienceSpec":
        if not self.users and not self.segments and self.top_users is None:
            raise ValueError("audience is empty: give users, segments or top_users")
        names = [s.name for s in self.segments]
        if len(set(names)) != len(names):
            raise ValueError("segment names repeat")
        return self


class ProductFormat(_Strict):
    """Personalized product images; no sizes means the model's native size."""

    sizes: SizeList = Field(default_factory=list)


class BackgroundFormat(_Strict):
    """The product's own pixels on a generated scene."""

    sizes: SizeList = Field(default_factory=list)


class BannerFormat(_Strict):
    """Ad banners with a headline and a call to action at standard sizes."""

    sizes: SizeList = Field(default_factory=lambda: ["300x250", "728x90"], min_length=1)
    headline: str | None = Field(None, max_length=limits.HEADLINE_CHARS)
    cta: str | None = Field(None, max_length=limits.CTA_CHARS)

    @field_validator("headline", "cta")
    @classmethod
    def _text(cls, v: str | None, info) -> str | None:
        # control characters (terminal escapes) and blank text given on purpose: refused like any prompt
        most = limits.HEADLINE_CHARS if info.field_name == "headline" else limits.CTA_CHARS
        return None if v is None else check_prompt(v, what=info.field_name, max_chars=most)


class OutfitFormat(_Strict):
    """A completed outfit around the product (generated pieces + nearest catalog items)."""

    categories: list[str] | None = None


class FormatsSpec(_Strict):
    """Which formats to make; `product: true` is short for `product: {}`."""

    product: ProductFormat | None = None
    background: BackgroundFormat | None = None
    banner: BannerFormat | None = None
    outfit: OutfitFormat | None = None

    @model_validator(mode="before")
    @classmethod
    def _true_means_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: ({} if v is True else v) for k, v in data.items() if v is not False}
        return data

    @model_validator(mode="after")
    def _some(self) -> "FormatsSpec":
        if not any((self.product, self.background, self.banner, self.outfit)):
            raise ValueError("no formats: give at least one of product, background, banner, outfit")
        return self


class ModelSpec(_Strict):
    """Generator, LoRA and the recommender that turns users into conditions."""

    base: str = "demo"
    lora: str | None = None
    lora_scale: float = Field(1.0, ge=limits.LORA_SCALE.low, le=limits.LORA_SCALE.high)
    adapter: str | None = None  # a preference-adapter folder (`atelier finetune adapter`): preference tokens
    upscale: bool = True  # apply the base model's own 2x upscaler when it has one (the demo model: 128 px images)
    recommender: str = "ease"  # any registered backbone, CF or sequential (fitted on the shop)
    recommender_dir: str | None = Field(None, min_length=1)  # a `rec train` folder (relative to the YAML) instead
    steps: int = Field(20, ge=limits.STEPS.low, le=limits.STEPS.high)
    guidance: float = Field(5.0, ge=limits.GUIDANCE.low, le=limits.GUIDANCE.high)
    negative_prompt: str = Field("", max_length=limits.NEGATIVE_PROMPT_CHARS)

    @field_validator("negative_prompt")
    @classmethod
    def _negative(cls, v: str) -> str:
        return check_prompt(v, what="negative_prompt", allow_empty=True, max_chars=limits.NEGATIVE_PROMPT_CHARS)


class Campaign(_Strict):
    """A whole campaign; see the module docstring for an example."""

    name: str = Field(pattern=NAME_RE)
    shop: str = "demo"
    products: list[ProductSpec] = Field(min_length=1)
    audience: AudienceSpec
    formats: FormatsSpec
    candidates: int = Field(1, ge=limits.CANDIDATES.low, le=limits.CANDIDATES.high)
    seed: int = Field(0, ge=limits.SEED.low, le=limits.SEED.high)
    seeds: list[Seed] | None = Field(None, min_length=1, max_length=limits.CANDIDATES.high)
    model: ModelSpec = Field(default_factory=ModelSpec)
    output: str | None = None
    # an A/B store (SQLite file relative to the YAML, or a postgresql:// DSN): each audience user's stored
    # feedback events and votes update her condition (`app.feedback_loop.feedback_condition`)
    feedback_db: str | None = Field(None, min_length=1)

    @field_validator("products", mode="before")
    @classmethod
    def _bare_ids(cls, v: Any) -> Any:
        # `- top-0003` is short for `- {item: top-0003}`
        if isinstance(v, list):
            return [{"item": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("seeds repeat")
        return v

    @model_validator(mode="after")
    def _candidates_vs_seeds(self) -> "Campaign":
        keys = [p.key for p in self.products]
        if len(set(keys)) != len(keys):
            raise ValueError(f"products repeat: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
        if self.formats.product is not None:
            for k, p in enumerate(self.products):
                if p.image is not None and p.category is None:
                    raise ValueError(f"products.{k}: an image product needs 'category' for the product format")
        if self.seeds is not None and "candidates" in self.model_fields_set and self.candidates != len(self.seeds):
            raise ValueError("candidates must equal the number of seeds when both are given")
        return self

    _doc: YamlDocument | None = PrivateAttr(None)  # the YAML it came from, for line numbers

    def error(self, problem: str, *loc: str | int) -> InputError:
        """An InputError about the value at `loc` (e.g. "products", 2), naming the campaign file and line."""
        where = ".".join(str(x) for x in loc)
        text = f"{where}: {problem}" if where else problem
        return InputError(text) if self._doc is None else self._doc.error(text, loc)

    def candidate_seeds(self) -> list[int]:
        """The seed of each candidate: the explicit list, or seed, seed+1, ..."""
        return list(self.seeds) if self.seeds is not None else [self.seed + k for k in range(self.candidates)]

    def output_dir(self, root: str | Path) -> Path:
        """The campaign's folder, which must stay inside `root` (no '..', no absolute path elsewhere)."""
        try:
            return safe_output_dir(self.output or self.name, root)
        except InputError as e:
            raise self.error(e.problem, "output" if self.output else "name") from None


def safe_output_dir(output: str, root: str | Path) -> Path:
    """Resolve `output` under `root`, refusing anything that would write outside it."""
    root_resolved = Path(root).resolve()
    if "\x00" in output or not output.strip():
        raise InputError(f"output path {output!r} is not a usable folder name")
    parts = PurePosixPath(output.replace("\\", "/")).parts
    if ".." in parts:
        raise InputError(f"output path {output!r} must not contain '..' (it has to stay inside {root_resolved})")
    if PureWindowsPath(output).drive:
        raise InputError(f"output path {output!r} is a Windows drive path; give a folder inside {root_resolved}")
    p = Path(output)
    target = (p if p.is_absolute() else root_resolved / p).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise InputError(f"output path {output!r} is outside the output folder {root_resolved}")
    if target == root_resolved:
        raise InputError(f"output path {output!r} is the output root itself; name a folder inside it")
    return target


def _format_error(err: dict) -> str:
    loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith("function-after"))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "missing required key"
    msg = msg.removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_campaign(text: str, path: str | Path = "<campaign>") -> Campaign:
    """Validate campaign YAML text; any problem is an InputError naming the line."""
    return _validate(parse_yaml(text, path, what="campaign"))


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML file."""
    return _validate(read_yaml(path, what="campaign"))


def _validate(doc: YamlDocument) -> Campaign:
    if doc.node is None:
        raise InputError("campaign file is empty", doc.path)
    if not isinstance(doc.data, dict):
        raise doc.error("a campaign must be a YAML mapping (key: value lines)")
    try:
        campaign = Campaign.model_validate(doc.data)
    except ValidationError as e:
        errors = e.errors()
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise doc.error(_format_error(first) + more, tuple(first["loc"])) from None
    campaign._doc = doc
    return campaign
