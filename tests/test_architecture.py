"""The dependency direction of the package, read from the source with ``ast``.

Every import counts: at module level, inside functions and under ``if TYPE_CHECKING:``. The
composition root and the entry points (``TOP``) are imported by nothing else in the package,
and no group of modules imports itself round (a strongly connected component of more than one
module). A failure names the modules, the cycle and the lines.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "insight"

# The top of the graph: the composition root and the commands that start it.
TOP = {"insight.compose", "insight.runtime", "insight.cli", "insight.watcher.cli"}

Edges = dict[str, dict[str, int]]  # importer -> {imported module: first line}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of ``from <module> import ...`` (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str, path: Path, known: set[str]) -> dict[str, int]:
    """Modules of the package that ``path`` imports anywhere in its text, with the line."""
    out: dict[str, int] = {}
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(name, path.name == "__init__.py", node)
            # `from pkg import sub` imports the module pkg.sub when there is one
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.setdefault(target, node.lineno)
    return out


def graph(root: Path = PACKAGE) -> Edges:
    found = modules(root)
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def components(edges: Edges) -> list[list[str]]:
    """Strongly connected components (Tarjan), each sorted; only those that form a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def cycle_in(edges: Edges, comp: list[str]) -> list[str]:
    """One shortest cycle through the first module of ``comp`` (breadth first)."""
    start, members = comp[0], set(comp)
    came: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(edges[v]):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if w not in came:
                came[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle in component {comp}")


def describe(edges: Edges, comp: list[str]) -> str:
    """The modules of a cycle group, then one cycle through them with the importing lines."""
    cycle = cycle_in(edges, comp)
    where = modules()
    steps = [
        f"  {a} imports {b} ({where[a].relative_to(PACKAGE.parent)}:{edges[a][b]})"
        for a, b in itertools.pairwise(cycle)
    ]
    head = f"{len(comp)} modules import each other: {', '.join(comp)}\n  e.g. "
    return head + " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_nothing_below_the_composition_root_imports_it() -> None:
    edges = graph()
    wrong = [
        f"{m} imports {t} ({modules()[m].relative_to(PACKAGE.parent)}:{line})"
        for m, targets in sorted(edges.items())
        if m not in TOP
        for t, line in targets.items()
        if t in TOP
    ]
    assert not wrong, "modules below the composition root import it:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges = graph()
    cycles = [describe(edges, comp) for comp in components(edges)]
    assert not cycles, "import cycles among insight modules:\n" + "\n\n".join(cycles)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself: function-local, TYPE_CHECKING and relative imports are edges, a
    cycle through them is found and printed, and a clean package has none."""
    pkg = tmp_path / "insight"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "app.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from insight.sub import svc\n"
    )
    (pkg / "sub" / "svc.py").write_text("def f():\n    from . import helper\n")
    (pkg / "sub" / "helper.py").write_text("import os\n")
    edges = graph(pkg)
    assert edges["insight.app"] == {"insight.sub.svc": 3}
    assert edges["insight.sub.svc"] == {"insight.sub.helper": 2}
    assert components(edges) == []
    (pkg / "sub" / "helper.py").write_text("def g():\n    import insight.app\n")
    edges = graph(pkg)
    comps = components(edges)
    assert comps == [["insight.app", "insight.sub.helper", "insight.sub.svc"]]
    assert cycle_in(edges, comps[0]) == [
        "insight.app",
        "insight.sub.svc",
        "insight.sub.helper",
        "insight.app",
    ]


@pytest.mark.parametrize("module", sorted(TOP))
def test_top_modules_exist(module: str) -> None:
    assert module in modules(), f"{module} is listed as the top of the graph but does not exist"
