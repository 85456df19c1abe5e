"""The package's import graph, read from its source with ``ast``: no import cycle, no
private name imported across modules, and Ray imported only by ``bigssl.stages`` and
``bigssl.cli``.

Every import is one of three kinds:
- ``module``: runs when the module is imported (top level, also inside ``try``, ``if``
  or a class body);
- ``type``: under ``if TYPE_CHECKING:``; it never runs, but the two modules still
  depend on each other, so it counts for cycles (not for Ray);
- ``function``: inside a function, run when the function is called.
Cycles are checked over module and type imports, then again with the function-level
ones added: an import moved into a function to break a cycle hides the cycle, it does
not remove it. The scan replaces a hand-kept list of Ray-free modules that missed the
new ones (``training.*``, ``decoding.recognizer``): every module is found here.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "bigssl"
RAY_ALLOWED = ("bigssl.stages", "bigssl.cli")  # Ray lives here only (STYLE.md)


@dataclass(frozen=True)
class Import:
    source: str  # importing module (dotted)
    target: str  # imported module (dotted; for a package its __init__)
    names: tuple[str, ...]  # names taken by ``from target import ...`` (empty for ``import``)
    kind: str  # "module", "type" or "function"
    line: int


def module_name(path: Path, package: Path) -> str:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, kind: str):
    """(import node, kind) for every import under ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, kind
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(child, "function")
        elif isinstance(child, ast.If) and kind == "module" and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), "type")
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), "module")
        else:
            yield from _walk(child, kind)


def scan(package: Path = PACKAGE) -> tuple[set[str], list[Import]]:
    """Every module of the package and every import in it (third-party ones included)."""
    files = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    imports = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node, kind in _walk(tree, "module"):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    imports.append(Import(name, alias.name, (), kind, node.lineno))
                continue
            base = node.module or ""
            if node.level:  # relative: from the package holding this module
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = tuple(a.name for a in node.names)
            submodules = [n for n in names if f"{base}.{n}" in files]
            for sub in submodules:  # ``from bigssl import storage``: the module storage
                imports.append(Import(name, f"{base}.{sub}", (), kind, node.lineno))
            rest = tuple(n for n in names if n not in submodules)
            if rest or not submodules:
                imports.append(Import(name, base, rest, kind, node.lineno))
    return set(files), imports


def _graph(modules: set[str], imports: list[Import], kinds: set[str]) -> dict[str, list[Import]]:
    graph: dict[str, list[Import]] = {m: [] for m in modules}
    for imp in imports:
        if imp.kind in kinds and imp.target in modules and imp.target != imp.source:
            graph[imp.source].append(imp)
    return graph


def find_cycles(graph: dict[str, list[Import]]) -> list[list[Import]]:
    """One cycle (as its imports) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for imp in graph[node]:
            if imp.target not in index:
                visit(imp.target)
                low[node] = min(low[node], low[imp.target])
            elif imp.target in stack:
                low[node] = min(low[node], index[imp.target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, list[Import]], group: set[str]) -> list[Import]:
    """A shortest path from the group's first module back to itself (breadth first)."""
    start = min(group)
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for imp in graph[node]:
                if imp.target == start:
                    return [*paths[node], imp]
                if imp.target in group and imp.target not in paths:
                    paths[imp.target] = [*paths[node], imp]
                    following.append(imp.target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group has one


def describe(cycle: list[Import]) -> str:
    hops = [f"{imp.source} --({imp.kind}, line {imp.line})--> {imp.target}" for imp in cycle]
    return "\n    ".join(hops)


def _is_ray(module: str) -> bool:
    return module == "ray" or module.startswith("ray.")


def _is_core(module: str) -> bool:
    return not any(module == p or module.startswith(p + ".") for p in RAY_ALLOWED)


def ray_paths(modules: set[str], imports: list[Import]) -> list[str]:
    """Each core module that imports Ray when it is imported, directly or through other
    package modules, with the chain of imports."""
    runtime = _graph(modules, imports, {"module"})
    direct = {i.source: i for i in imports if i.kind == "module" and _is_ray(i.target)}
    found = []
    for module in sorted(m for m in modules if _is_core(m)):
        chain: dict[str, list[Import]] = {module: []}
        todo = [module]
        while todo:
            node = todo.pop(0)
            if node in direct:
                hops = [*chain[node], direct[node]]
                found.append(" -> ".join([module, *(f"{i.target} (line {i.line})" for i in hops)]))
                break
            for imp in runtime[node]:
                if imp.target not in chain:
                    chain[imp.target] = [*chain[node], imp]
                    todo.append(imp.target)
    return found


def private_imports(modules: set[str], imports: list[Import]) -> list[str]:
    """``from bigssl.x import _name`` in another module of the package."""
    return [
        f"{i.source}: from {i.target} import {n}"
        for i in imports
        if i.target in modules
        for n in i.names
        if n.startswith("_") and not n.startswith("__")
    ]


def test_no_import_cycle_between_modules():
    modules, imports = scan()
    cycles = find_cycles(_graph(modules, imports, {"module", "type"}))
    assert not cycles, "import cycles:\n    " + "\n\n    ".join(describe(c) for c in cycles)


def test_no_import_cycle_hidden_in_a_function():
    modules, imports = scan()
    cycles = find_cycles(_graph(modules, imports, {"module", "type", "function"}))
    assert not cycles, "import cycles closed by a function-level import:\n    " + "\n\n    ".join(
        describe(c) for c in cycles
    )


def test_core_never_imports_ray_at_module_level():
    modules, imports = scan()
    assert {"bigssl.training.checkpoint", "bigssl.decoding.recognizer"} <= modules  # found
    paths = ray_paths(modules, imports)
    assert not paths, "core modules importing Ray:\n    " + "\n    ".join(paths)


def test_no_private_name_imported_across_modules():
    modules, imports = scan()
    found = sorted(private_imports(modules, imports))
    assert not found, "private names imported from another module:\n    " + "\n    ".join(found)


def test_every_core_module_imports_with_ray_blocked():
    """What the scan cannot see (a third-party package that imports Ray, an import
    built at run time): every core module found by the scan, really imported."""
    modules, _ = scan()
    core = sorted(m for m in modules if _is_core(m))
    code = "import sys; sys.modules['ray'] = None\n" + "".join(f"import {m}\n" for m in core)
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_sweep_planning_imports_without_ray():
    """A sweep's configs and trial plan (tests/unit/test_sweep_plan.py) load without Ray:
    the stages it plans import Ray where they run it."""
    modules = [
        "bigssl.stages.sweep_plan",
        "bigssl.stages.sweep",
        "bigssl.stages.pipeline",
        "bigssl.stages.demo",
    ]
    code = "import sys; sys.modules['ray'] = None\n" + "".join(f"import {m}\n" for m in modules)
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
