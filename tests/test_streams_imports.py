"""Streams, facts, probes and the report import one way: no module of these packages imports
another that (directly or through others) imports it back, and every import sits at the top of its
module unless it is a heavy dependency deferred with a one-line reason. Read from the source with
``ast`` (an import inside a function is still an edge), so a circle that happens to work is caught."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("simulator/streams", "simulator/facts", "simulator/probes")
MODULES = ("simulator/report.py", "editledger/commands/report.py", "editledger/commands/stream.py")
# deferred on purpose, each with its reason on the line (torch, matplotlib, nltk/scipy)
DEFERRED_OK = {("simulator/probes/runner.py", "simulator.probes.scoring"), ("simulator/report.py", "matplotlib"),
               ("simulator/report.py", "matplotlib.pyplot"), ("simulator/report.py", "matplotlib.ticker"),
               ("editledger/commands/report.py", "simulator.sweep"), ("simulator/probes/metrics.py", "rouge_score")}


def _files():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))
    for m in MODULES:
        yield ROOT / m


def _name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """(module imported, lineno, at top level?) for every import of a project module."""
    mod = _name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text("utf-8"))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names = [f"{target}.{a.name}" for a in node.names]
            yield target, names, node.lineno, id(node) in top
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno, id(node) in top


def test_no_import_circles():
    known = {_name(p) for p in _files()}
    graph: dict[str, set[str]] = {}
    for p in _files():
        edges = set()
        for target, names, _, _ in _imports(p):
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            hits = [n for n in names if n in known] or ([target] if target in known else [])
            edges.update(h for h in hits if h != _name(p))
        graph[_name(p)] = edges
    # a package's __init__ re-exporting its submodules is not a circle with them
    for m in graph:
        graph[m] = {t for t in graph[m] if not (m.startswith(t + ".") and t in graph)}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t in graph and state.get(t) is None:
                visit(t, path + [t])
        state[m] = 2
    for m in sorted(graph):
        if state.get(m) is None:
            visit(m, [m])


def test_imports_at_the_top():
    late = []
    for p in _files():
        rel = str(p.relative_to(ROOT))
        for target, _, line, at_top in _imports(p):
            if not at_top and (rel, target) not in DEFERRED_OK and target != "__future__":
                late.append(f"{rel}:{line} imports {target} inside a function")
    assert not late, "\n".join(late)
