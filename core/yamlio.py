"""The one YAML reader for every file a user or the repo hands us (campaigns, hyperparameter configs).

YAML can do more than a config needs, and pyyaml is lenient where a user would want an error:
aliases can expand into billions of nodes, a repeated key silently keeps the last value, a merge
key (`<<`) pulls values from elsewhere, and a tag (`!!python/object`) asks for a constructor.
`read_yaml` refuses all four, before anything is built, with one `InputError` naming the file and
line; the document it returns keeps the node tree so a later schema error can name its line too.

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
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):  # refused before expansion: no billion laughs
                raise InputError(f"YAML aliases/anchors are not allowed in a {what}", path, event.start_mark.line + 1)
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
