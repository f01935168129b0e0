"""YAML a user hands us, refused before anything is built when it asks for more than a config needs.

`scan` walks PyYAML's event stream (the parser is iterative, so this is safe on any input) and
refuses, with one InputError naming the line: aliases/anchors (billion-laughs expansion), tags
other than YAML's standard ones (`!!python/object/apply:...`, custom `!tags`), complex mapping keys
(a list or mapping as a key) and nesting deeper than `MAX_DEPTH` (PyYAML's composer and
constructor recurse, so deep nesting would otherwise end in a RecursionError). Only then does
`load` let SafeLoader construct plain dicts, lists and scalars.

    data = load(text, path, what="campaign")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import InputError

MAX_DEPTH = 32  # campaigns and hyperparameter files are a few levels deep
STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq",
                                                      "timestamp", "binary", "omap", "set")} | {"!"}


def scan(text: str, path: str | Path = "<yaml>", *, what: str = "YAML file", max_depth: int = MAX_DEPTH) -> None:
    """Refuse aliases, non-standard tags, complex keys and deep nesting; YAML syntax errors are InputErrors."""
    import yaml

    path = str(path)
    stack: list[list] = []  # per open container: [is_mapping, next node is a key]
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            if isinstance(event, yaml.AliasEvent):  # refused before expansion: no billion laughs
                raise InputError(f"YAML aliases/anchors are not allowed in a {what}", path, line)
            if isinstance(event, (yaml.CollectionEndEvent,)):
                stack.pop()
                _after_node(stack)
                continue
            if not isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
                continue
            tag = getattr(event, "tag", None)
            if tag is not None and tag not in STANDARD_TAGS:
                raise InputError(f"YAML tag {tag!r} is not allowed in a {what} (plain values only)", path, line)
            if isinstance(event, yaml.CollectionStartEvent):
                if stack and stack[-1][0] and stack[-1][1]:
                    raise InputError(f"complex mapping keys (a list or mapping as a key) are not allowed in a "
                                     f"{what}", path, line)
                if len(stack) >= max_depth:
                    raise InputError(f"{what} is nested more than {max_depth} levels deep", path, line)
                stack.append([isinstance(event, yaml.MappingStartEvent), True])
            else:
                _after_node(stack)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context
        if e.context and e.context_mark is not None and e.problem:
            problem += f" ({e.context} started at line {e.context_mark.line + 1})"
        raise InputError(f"YAML syntax error: {problem}", path, mark.line + 1 if mark is not None else None) from None
    except yaml.YAMLError as e:
        raise InputError(f"YAML error: {' '.join(str(e).split())[:200]}", path) from None


def _after_node(stack: list[list]) -> None:
    """A whole node ended: in a mapping, keys and values alternate."""
    if stack and stack[-1][0]:
        stack[-1][1] = not stack[-1][1]


def load(text: str, path: str | Path = "<yaml>", *, what: str = "YAML file", max_depth: int = MAX_DEPTH) -> Any:
    """`scan`, then SafeLoader's plain data; a value the safe constructors refuse is one InputError too."""
    import yaml

    scan(text, path, what=what, max_depth=max_depth)
    try:
        return yaml.SafeLoader(text).get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise InputError(f"YAML error: {e.problem or e.context}", str(path), mark.line + 1 if mark else None) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
        raise InputError(f"YAML error: {' '.join(str(e).split())[:200]}", str(path)) from None


def read(path: str | Path, *, what: str = "YAML file", max_bytes: int = 1_000_000) -> Any:
    """Read a YAML file (UTF-8, at most `max_bytes`) and `load` it."""
    from .jsonio import decode

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    if path.stat().st_size > max_bytes:
        raise InputError(f"{what} is larger than {max_bytes} bytes", path)
    return load(decode(path.read_bytes(), path, what), path, what=what)
