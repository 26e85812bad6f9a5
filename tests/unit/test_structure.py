"""The library's structure: no import cycles, one home per platform label key, facts apart from builders.

The import graph is read from the source (every import, including those inside functions), the way
Python runs it: importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b`` (unless the
importer lives inside that package, which Python has already started).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = SRC / "aiinfn"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(importer: str, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def _targets(importer: str, node: ast.AST) -> list[str]:
    out: list[str] = []
    if isinstance(node, ast.Import):
        out = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _resolve(importer, node.level, node.module)
        for a in node.names:
            sub = f"{base}.{a.name}"
            out.append(sub if sub in MODULES else base)
    return [t for t in out if t in MODULES or t == "aiinfn"]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            for target in _targets(name, node):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    mod = ".".join(parts[:i])
                    # the importer's own packages are already being imported: not an edge
                    if mod in MODULES and mod != name and not (name + ".").startswith(mod + "."):
                        graph[name].add(mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle's members (strongly connected components of more than one module, or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_the_library() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_planning_holds_facts_and_no_service_builds_in_two_places() -> None:
    """planning/ never imports the services (they build on its facts, not the other way round), and
    no module outside services/ imports a service's private builder names."""
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("aiinfn.planning"):
            assert not any(d.startswith(("aiinfn.services", "aiinfn.render")) for d in deps), (mod, deps)
        if mod.startswith(("aiinfn.config", "aiinfn.catalogue")):
            assert not any(d.startswith(("aiinfn.services", "aiinfn.render", "aiinfn.preview")) for d in deps), mod


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
        and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
    }
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


@pytest.mark.parametrize("needle", ["aiinfn.infn.it", "kueue.x-k8s.io/queue-name", "nvidia.com/mig.config"])
def test_label_keys_have_one_home(needle: str) -> None:
    """Every platform label key is written in planning/labels.py and read from there."""
    home = PACKAGE / "planning" / "labels.py"
    stacks = SRC.parent / "stacks"
    offenders = [
        f"{p.relative_to(SRC.parent)}:{line}"
        for p in [*PACKAGE.rglob("*.py"), *stacks.rglob("*.py")]
        if p != home
        for line, text in _string_constants(p)
        if needle in text
    ]
    assert offenders == []


def test_test_files_have_unique_basenames() -> None:
    """The test directories are no packages (pytest's default import mode): two test files of one basename
    cannot both be collected, and the whole suite stops at collection."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
