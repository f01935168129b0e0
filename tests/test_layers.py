"""The house rules, checked on the source: imports only go down the floors, and no module imports
itself back through others (every import counts, the ones inside functions too)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"core": 0, "recommenders": 1, "pipelines": 2, "finetune": 3, "app": 4}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the project modules `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in out if m.split(".")[0] in FLOORS}


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for floor in FLOORS for p in (ROOT / floor).rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    mods = _sources()
    graph = {}
    for name, path in mods.items():
        # an import of `a.b.c` names the module a.b.c when it exists, else the module a.b (c is an attribute)
        targets = set()
        for m in _imports(path):
            while m and m not in mods:
                m = m.rpartition(".")[0]
            if m and m != name and not name.startswith(m + "."):  # a package's own __init__ is not an edge
                targets.add(m)
        graph[name] = targets
    return graph


def test_imports_only_go_down_the_floors():
    upward = [f"{a} -> {b}" for a, targets in _graph().items() for b in targets
              if FLOORS[b.split(".")[0]] > FLOORS[a.split(".")[0]]]
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    graph = _graph()
    # Tarjan's strongly connected components; a component of more than one module is a circle.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    import sys

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_test_module_imports_another():
    tests = ROOT / "tests"
    names = {p.stem for p in tests.rglob("test_*.py")}  # helper modules (tiny_models) are not test modules
    offenders = []
    for p in tests.rglob("*.py"):
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            mod = None
            if isinstance(node, ast.ImportFrom):
                mod = (node.module or "").split(".")[-1] if node.level or (node.module or "").startswith("tests") else node.module
            elif isinstance(node, ast.Import):
                mod = node.names[0].name
            if mod and mod.split(".")[-1] in names and mod.split(".")[-1] != p.stem:
                offenders.append(f"{p.relative_to(ROOT)} imports {mod}")
    assert not offenders, "\n".join(offenders)


def test_only_the_cli_imports_the_command_modules():
    """`app/commands/` is CLI code: library code lives on its floor (app.conditions, app.evaluation, pipelines...)."""
    graph = _graph()
    offenders = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
                 if b.startswith("app.commands") and not a.startswith("app.commands") and a != "app.cli"]
    assert not offenders, "\n".join(sorted(offenders))
