"""One bound per setting, shared by every surface that accepts it: CLI flags (typer), campaigns and
training configs (pydantic), the UI, and the pipelines that finally run them.

A value that one surface accepts must not fail at render time in another (a campaign once took
16 px banner sides that the banner pipeline refused), so each bound lives here once and the others
read it: `typer.Option(min=STEPS.low, max=STEPS.high)`, `Field(ge=STEPS.low, le=STEPS.high)`,
`STEPS.check(value, "--steps")`. Plain numbers only: this module imports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """A closed range [low, high] of one setting (`high=None`: no upper bound)."""

    low: float
    high: float | None = None

    def __contains__(self, value: float) -> bool:
        return value >= self.low and (self.high is None or value <= self.high)

    def check(self, value: float, what: str) -> float:
        """`value`, or InputError naming the setting and its range."""
        if value not in self:
            from .errors import InputError

            raise InputError(f"{what} must be {self.describe()}, got {value}")
        return value

    def describe(self) -> str:
        low = _plain(self.low)
        return f">= {low}" if self.high is None else f"between {low} and {_plain(self.high)}"


def _plain(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# -- generation -------------------------------------------------------------------------------------
STEPS = Bound(1, 500)  # denoising steps of one image (SD schedulers with steps_offset 1 fail at 1000 of 1000)
GUIDANCE = Bound(0.0, 50.0)  # classifier-free guidance scale
CANDIDATES = Bound(1, 256)  # images per request (or per prompt and round in the reward loop)
SEED = Bound(0, 2**32 - 1)  # numpy seeds are 32-bit (torch.Generator takes more; numpy would wrap them)
LORA_SCALE = Bound(0.0, 4.0)
PADDING = Bound(0.0, 2.0)  # scene around a product, as a share of its size
IMAGE_SIDE = Bound(32, 4096)  # pixels a side of any requested size: product, background or banner
BANNER_SIZES_PER_REQUEST = 8  # sizes one UI request may ask for at once

# -- text -------------------------------------------------------------------------------------------
PROMPT_CHARS = 1000  # CLIP reads only ~77 tokens anyway
NEGATIVE_PROMPT_CHARS = 2000
HEADLINE_CHARS = 120
CTA_CHARS = 40

# -- user files -------------------------------------------------------------------------------------
UPLOAD_SIDE = 4096  # pixels a side of an uploaded picture, read from its header before decoding
MAX_IMAGE_PIXELS = 4096 * 4096  # stops decompression bombs before decoding
MAX_IMAGE_BYTES = 25 * 1024 * 1024
MAX_YAML_BYTES = 1_000_000  # campaigns and hyperparameter files

# -- training ---------------------------------------------------------------------------------------
POSITIVE = Bound(1)  # counts that must be at least one (rank, steps, batch size, ...)
SHARE = Bound(0.0, 1.0)  # a probability or share, both ends allowed
