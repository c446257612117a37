"""The package's shape: no import cycles, and imports that flow one way
(common -> lang -> analysis -> backends -> api -> cli), as docs and the architecture say.

Every import counts, at any depth of a file: a lazy import inside a function ties two
modules together as much as one at the top (the finder is a small copy of the project's
shared tools/import_cycles.py, so the tests need nothing outside the repository).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package at `root`."""
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that the file imports (its own parent packages excepted)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in known:
                n = n.rsplit(".", 1)[0] if "." in n else ""
            if n and n != name and not name.startswith(n + "."):
                targets.add(n)
    return targets


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


EDGES = graph(ROOT / "cnndsl")


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_finder_sees_the_package_and_its_lazy_imports():
    assert len(EDGES) > 40
    assert "cnndsl.analysis.keras_habits" in EDGES["cnndsl.editor.fmt"]  # a lazy import


def test_the_finder_finds_a_cycle_through_a_lazy_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from pkg import a\n")
    assert cycles(graph(package)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_no_import_cycles():
    assert cycles(EDGES) == []


# Which packages each layer may import, besides itself (None: no rule but the CLI's).
ALLOWED = {
    "cnndsl.common": ("cnndsl.common",),
    "cnndsl.lang": ("cnndsl.common",),
    "cnndsl.analysis": ("cnndsl.common", "cnndsl.lang"),
}
FORBIDDEN = {
    "cnndsl.backends": ("cnndsl.training", "cnndsl.api", "cnndsl.cli", "cnndsl.console"),
    "cnndsl.api": ("cnndsl.cli", "cnndsl.console"),
}


@pytest.mark.parametrize("layer", sorted({*ALLOWED, *FORBIDDEN}))
def test_imports_flow_one_way(layer):
    wrong = []
    for module, targets in EDGES.items():
        if not within(module, layer):
            continue
        for target in targets:
            if layer in ALLOWED and not within(target, layer, *ALLOWED[layer]):
                wrong.append(f"{module} -> {target}")
            if layer in FORBIDDEN and within(target, *FORBIDDEN[layer]):
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_only_the_command_line_imports_the_command_line():
    terminal = ("cnndsl.cli", "cnndsl.console")
    wrong = [f"{module} -> {target}" for module, targets in EDGES.items()
             for target in targets if target in terminal
             and module not in ("cnndsl.cli", "cnndsl.__main__")]
    assert not wrong, wrong
