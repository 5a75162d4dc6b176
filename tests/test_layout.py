"""The code layout the README's code map promises: one package per stage, imports one way (no cycles, lazy imports
included), a short top level, short modules, a torch-free `evalsuite lint`, and a library that never imports the
top-level trainers/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"evalsuite": ROOT / "evalsuite", "evalsuite.trainers": ROOT / "trainers"}
MAX_TOP_LEVEL = 9
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the library and the trainers (as installed: evalsuite.trainers)."""
    out = {}
    for base, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([base, *parts])] = f
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module an import of ``name`` runs: itself, or the nearest package above it (``pkg.mod.attr``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> set[str]:
    """evalsuite modules that ``name`` imports anywhere (top level, inside functions, under TYPE_CHECKING), with
    relative imports resolved; ``from pkg import mod`` counts as importing ``pkg.mod``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(_owner(a.name) for a in node.names if a.name.split(".")[0] == "evalsuite")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] != "evalsuite":
                continue
            for a in node.names:
                sub = f"{module}.{a.name}"
                found.add(sub if sub in MODULES else _owner(module))
    return {m for m in found if m is not None and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``a -> b -> ... -> a``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_cycle_finder_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    assert sum(len(v) for v in graph.values()) > 100  # the parser really sees the imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_library_never_imports_the_trainers() -> None:
    offenders = {name: sorted(m for m in imports_of(name) if m.startswith("evalsuite.trainers"))
                 for name in MODULES if not name.startswith("evalsuite.trainers")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_top_level_is_short() -> None:
    top = sorted(p.name for p in PACKAGES["evalsuite"].glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules directly under evalsuite/: {top}"


@pytest.mark.parametrize("folder", ["evalsuite", "trainers"])
def test_no_module_over_400_lines(folder: str) -> None:
    long = {str(f.relative_to(ROOT)): n for f in (ROOT / folder).rglob("*.py")
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("module", ["evalsuite", "evalsuite.cli", "evalsuite.lint.cli"])
def test_cli_imports_no_torch(module: str) -> None:
    code = (f"import sys, {module}; from evalsuite.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
