"""The project's modules import one another without a cycle: every import counts, at a
module's top, inside a function or under ``TYPE_CHECKING``, since each is a dependency a reader
must follow. And no test module imports another: what tests share lives in tests/helpers.py and
tests/conftest.py."""

import ast
from pathlib import Path

from tests.conftest import ROOT

# tests/ has no __init__.py: its modules are named from the repository root, as mypy names them.
PACKAGES = ("app", "inference", "training", "benchmarks", "tests")


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages and top-level scripts: dotted name -> file."""
    modules = {path.stem: path for path in ROOT.glob("*.py")}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` (at ``path``) imports: ``from a import b`` names
    ``a.b`` when that is a module, else ``a``; relative imports are resolved against ``name``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return {module for module in found if module in modules and module != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_has_the_project_s_edges():
    modules = project_modules()
    assert {"app", "inference.loading", "training.fitting.run", "benchmarks.harness", "wsgi"} <= set(modules)
    assert "inference.ort" in imports_of("inference.loading", modules["inference.loading"], modules)
    assert "app" in imports_of("wsgi", modules["wsgi"], modules)


def test_no_import_cycle_among_the_project_s_modules():
    modules = project_modules()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert cycles(graph) == []



def test_no_test_module_imports_another():
    modules = project_modules()
    offenders = {
        f"{name} imports {sorted(imported)}"
        for name, path in modules.items()
        if name.startswith("tests.test_")
        and (imported := {module for module in imports_of(name, path, modules) if module.startswith("tests.test_")})
    }
    assert not offenders
