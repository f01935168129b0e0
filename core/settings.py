"""Settings classes validated by pydantic when they are made, whose mistakes are one-line InputErrors.

    @settings
    class LoraTrainConfig:
        rank: Count = 8                      # Count: an int >= 1 (core.limits.POSITIVE)
        caption_dropout: Dropout = 0.1       # a share in [0, 1)

    LoraTrainConfig(rank=0)   # InputError: --rank: input should be greater than or equal to 1, got 0

The classes stay dataclasses (`dataclasses.asdict`, `field`, inheritance all work), so configs that
are saved beside weights and compared on resume keep their shape. The error names the setting as
its command-line flag (`--caption-dropout`), because that is where a user typed it.
"""

from __future__ import annotations

import functools
from typing import Annotated

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from . import limits
from .errors import InputError

Count = Annotated[int, Field(ge=limits.POSITIVE.low)]
Share = Annotated[float, Field(ge=limits.SHARE.low, le=limits.SHARE.high)]
Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]  # a share that must leave something in
PositiveFloat = Annotated[float, Field(gt=0.0)]
Steps = Annotated[int, Field(ge=limits.STEPS.low, le=limits.STEPS.high)]
Guidance = Annotated[float, Field(ge=limits.GUIDANCE.low, le=limits.GUIDANCE.high)]
Seed = Annotated[int, Field(ge=limits.SEED.low, le=limits.SEED.high)]


def settings(cls=None, /, **dataclass_kwargs):
    """Make `cls` a pydantic dataclass (unknown keywords refused) that raises InputError, not ValidationError."""
    def wrap(klass):
        made = _pydantic_dataclass(klass, config=ConfigDict(extra="forbid"), **dataclass_kwargs)
        init = made.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except ValidationError as e:
                raise settings_error(e) from None

        made.__init__ = __init__
        return made

    return wrap if cls is None else wrap(cls)


def settings_error(err: ValidationError, prefix: str = "--") -> InputError:
    """The first problem of a ValidationError as one line naming the setting (as a flag by default)."""
    first = err.errors()[0]
    name = ".".join(str(x) for x in first["loc"])
    flag = prefix + name.replace("_", "-") if name else "settings"
    msg = first["msg"].removeprefix("Value error, ")
    msg = msg[0].lower() + msg[1:] if msg else msg
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    got = f", got {first['input']!r}" if "input" in first and not isinstance(first["input"], (dict, list)) else ""
    return InputError(f"{flag}: {msg}{got}{tail}")
