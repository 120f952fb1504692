"""The package's shape: no import circles between its modules, counting
imports inside functions too (a lazy import hides a circle; it does not
remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

import zcore_fast

ROOT = Path(zcore_fast.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in the file.
    `from pkg import name` counts as importing `pkg.name` when that is a
    module, else `pkg`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def test_no_import_circles() -> None:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    graph = {m: imports(p, modules) - {m} for m, p in paths.items()}
    # A package imports its own submodules (re-exports); only circles among
    # modules count, so edges from a package to its own children are dropped.
    for m, deps in graph.items():
        if paths[m].name == "__init__.py":
            graph[m] = {d for d in deps if not d.startswith(m + ".")}
    # Tarjan's strongly connected components: any with two or more modules
    # is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_command_and_cache_packages() -> None:
    """`cli/`, `cache/` and `integrations/` are packages of one module per job."""
    for package, expected in [
        ("cli", {"main", "methods", "cache", "embed", "evaluate", "usage", "table"}),
        ("cache", {"build", "entries", "lock", "admin", "writer"}),
        (
            "integrations",
            {"arrow", "parquet", "parquet_pages", "tables", "huggingface", "fiftyone"},
        ),
    ]:
        names = {p.stem for p in (ROOT / package).glob("*.py")} - {"__init__", "__main__"}
        assert names == expected, package
    assert not list(ROOT.glob("cli_*.py")) and not list(ROOT.glob("cache_*.py"))
