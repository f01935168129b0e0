"""The one YAML reader for every file a user or the repo hands us (campaigns, hyperparameter configs).

YAML can do more than a config needs, and pyyaml is lenient where a user would want an error:
aliases can expand into billions of nodes, a repeated key silently keeps the last value, a merge
key (`<<`) pulls values from elsewhere, a tag (`!!python/object/apply`, a custom `!tag`) asks for a
constructor, a list or mapping can be a key, and deep nesting ends PyYAML's recursive composer in a
RecursionError. `read_yaml` refuses all of these, before anything is built, with one `InputError`
naming the file and line (`scan` walks PyYAML's iterative event stream first; only then is a node
tree composed); the document it returns keeps the node tree so a later schema error can name its line.

    doc = read_yaml(path, what="campaign")       # InputError: "PATH:LINE: duplicate key 'seed'"
    doc.data                                      # plain dicts, lists and scalars
    doc.line_of(("products", 2, "image"))         # the line that value came from
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .limits import MAX_YAML_BYTES

MAX_DEPTH = 32  # campaigns and hyperparameter files are a few levels deep
_MERGE = "tag:yaml.org,2002:merge"
_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq",
                                                        "timestamp", "binary")}


@dataclass
class YamlDocument:
    """A parsed YAML document: its plain data, its node tree (for line numbers) and where it came from."""

    data: Any
    node: Any  # yaml.Node of the root, or None for an empty document
    path: str

    def line_of(self, loc: tuple) -> int | None:
        """Follow a location (keys and list indices, e.g. a pydantic error's `loc`) to the closest line."""
        import yaml

        node = self.node
        if node is None:
            return None
        line = node.start_mark.line + 1
        for key in loc:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == key:  # an unknown key is reported at the key's line, a bad value at its value
                        node, line = v, v.start_mark.line + 1
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, problem: str, loc: tuple = ()) -> InputError:
        """An InputError about the value at `loc`, naming this file and the value's line."""
        return InputError(problem, self.path, self.line_of(tuple(loc)))


def read_yaml(path: str | Path, *, what: str = "YAML", max_bytes: int = MAX_YAML_BYTES) -> YamlDocument:
    """Read and parse a YAML file; a missing, oversized, non-UTF-8 or unsafe file is one InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found", path)
    if path.stat().st_size > max_bytes:
        raise InputError(f"{what} file is larger than {max_bytes} bytes", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} file is not UTF-8 text (byte {e.start})", path) from None
    return parse_yaml(text, path, what=what, max_bytes=max_bytes)


def parse_yaml(text: str, path: str | Path = "<yaml>", *, what: str = "YAML",
               max_bytes: int = MAX_YAML_BYTES) -> YamlDocument:
    """Parse YAML text with the refusals above; `what` names the document in messages ("campaign")."""
    import yaml

    path = str(path)
    if len(text.encode("utf-8", errors="replace")) > max_bytes:
        raise InputError(f"{what} file is larger than {max_bytes} bytes", path)
    scan(text, path, what=what)  # aliases, tags, complex keys, depth: refused before a node is built
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context
        if e.context and e.context_mark is not None and e.problem:
            problem += f" ({e.context} started at line {e.context_mark.line + 1})"
        raise InputError(f"YAML syntax error: {problem}", path, mark.line + 1 if mark is not None else None) from None
    except yaml.YAMLError as e:
        raise InputError(f"YAML error: {e}", path) from None
    if node is None:
        return YamlDocument(None, None, path)
    _check_nodes(node, path, what)
    try:
        data = yaml.SafeLoader(text).get_single_data()
    except yaml.MarkedYAMLError as e:  # a value the safe constructors refuse (e.g. a bad timestamp)
        mark = e.problem_mark or e.context_mark
        raise InputError(f"YAML error: {e.problem or e.context}", path, mark.line + 1 if mark else None) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
        raise InputError(f"YAML error: {' '.join(str(e).split())[:200]}", path) from None
    return YamlDocument(data, node, path)


def _check_nodes(root, path: str, what: str) -> None:
    """Refuse merge keys, duplicate keys and non-standard tags anywhere in the tree (iteratively: deep
    nesting must not hit Python's recursion limit)."""
    import yaml

    stack = [root]
    while stack:
        node = stack.pop()
        if node.tag not in _STANDARD_TAGS:
            raise InputError(f"YAML tag {node.tag!r} is not allowed in a {what}", path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            keys: set = set()
            for k, v in node.value:
                if k.tag == _MERGE:
                    raise InputError(f"YAML merge keys are not allowed in a {what}", path, k.start_mark.line + 1)
                if isinstance(k, yaml.ScalarNode):
                    if k.value in keys:
                        raise InputError(f"duplicate key {k.value!r}", path, k.start_mark.line + 1)
                    keys.add(k.value)
                stack += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def scan(text: str, path: str | Path = "<yaml>", *, what: str = "YAML", max_depth: int = MAX_DEPTH) -> None:
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
            if tag is not None and tag not in _STANDARD_TAGS | {"!"}:
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
