"""The package's import graph: no cycles between alm modules, and nothing below the runner imports it.

Every module under alm/ is parsed with ``ast`` (no import is executed); every ``import`` / ``from ...
import`` counts, at module level or inside a function, class or ``if TYPE_CHECKING`` block alike: the
layering is the same whether an import is deferred or not (a deferred import only hides a cycle).

Resolution rules (``imports_of``):
- relative imports are resolved against the importing module's package;
- ``from alm.x import y`` is a dependency on the module ``alm.x.y`` when that is a module, else on ``alm.x``;
- ``import alm.a.b`` is a dependency on ``alm.a.b`` only: Python also runs the ``alm`` and ``alm.a``
  package ``__init__`` files first, but we count an edge to a package only when its own namespace is
  imported (``import alm.a`` / ``from alm.a import name``), so a package's ``__init__`` that re-exports its
  submodules does not make every user of one submodule depend on all of them;
- only edges between ``alm.*`` modules are kept (third-party imports are irrelevant to cycles).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "alm"
RUNNER = "alm.runner"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``alm`` modules that module ``name`` (file ``path``) imports, by the rules above."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> None:
        """The longest known module that ``target`` names or lies in (an attribute path ends earlier)."""
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "alm" or alias.name.startswith("alm."):
                    resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not (mod == "alm" or mod.startswith("alm.")):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                resolve(sub if sub in known else mod)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with a cycle (size > 1, or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or node in graph.get(node, ()):
                    out.append(sorted(comp))
    return out


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module (breadth-first), e.g. [a, b, a]."""
    members = set(component)
    start = component[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in prev:
                    prev[child] = node
                    nxt.append(child)
        frontier = nxt
    return component  # pragma: no cover - a strongly connected component always has one


def describe_cycles(graph: dict[str, set[str]]) -> list[str]:
    return [f"{' -> '.join(a_cycle(graph, comp))}   (cycle among: {', '.join(comp)})"
            for comp in strongly_connected(graph)]


# -- the rules' own tests -------------------------------------------------------------------------------
def test_resolution_rules(tmp_path):
    pkg = tmp_path / "alm"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "alm/__init__.py": "",
        "alm/a.py": "def f():\n    from alm import b\n",            # in a function; alm.b is a module
        "alm/b.py": "from alm.sub import helper, NAME\nimport alm.sub.deep\n",
        "alm/sub/__init__.py": "from .helper import X\nNAME = 1\n",  # relative, in a package __init__
        "alm/sub/helper.py": "from ..a import f\nfrom . import deep\nimport numpy\n",
        "alm/sub/deep.py": "import alm.a.nothing\n",                    # an attribute path ends at alm.a
    }
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    known = {"alm", "alm.a", "alm.b", "alm.sub", "alm.sub.helper", "alm.sub.deep"}
    got = {m: imports_of(m, tmp_path / p, known) for p, m in (
        ("alm/a.py", "alm.a"), ("alm/b.py", "alm.b"), ("alm/sub/__init__.py", "alm.sub"),
        ("alm/sub/helper.py", "alm.sub.helper"), ("alm/sub/deep.py", "alm.sub.deep"))}
    assert got == {
        "alm.a": {"alm.b"},
        "alm.b": {"alm.sub.helper", "alm.sub", "alm.sub.deep"},
        "alm.sub": {"alm.sub.helper"},
        "alm.sub.helper": {"alm.a", "alm.sub.deep"},
        "alm.sub.deep": {"alm.a"},
    }
    graph = {**got, "alm": set()}
    cycles = strongly_connected(graph)
    assert cycles == [["alm.a", "alm.b", "alm.sub", "alm.sub.deep", "alm.sub.helper"]]
    cycle = a_cycle(graph, cycles[0])
    assert cycle[0] == cycle[-1] == "alm.a" and all(b in graph[a] for a, b in zip(cycle, cycle[1:]))
    assert strongly_connected({"x": {"x"}}) == [["x"]] and a_cycle({"x": {"x"}}, ["x"]) == ["x", "x"]


# -- the package ----------------------------------------------------------------------------------------
def test_no_import_cycles_between_alm_modules():
    graph = import_graph()
    assert "alm.runner" in graph and "alm.metrics.gmm" in graph
    cycles = describe_cycles(graph)
    assert not cycles, "import cycles between alm modules:\n  " + "\n  ".join(cycles)


def test_nothing_below_the_runner_imports_it():
    graph = import_graph()
    users = sorted(m for m, deps in graph.items() if RUNNER in deps and m != RUNNER)
    assert not users, f"modules under alm/ that import {RUNNER} (nothing below the runner may): {', '.join(users)}"


def test_the_mixture_backbone_does_not_import_its_metrics():
    graph = import_graph()
    assert "alm.backbones.gmm" in graph["alm.gmm_metrics"]
    assert not graph["alm.backbones.gmm"] & {"alm.gmm_metrics", "alm.metrics", "alm.metrics.gmm", "alm.evaluate"}
