"""The shape of the code: a core that knows no ML framework, and no import cycles between tracker's modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tracker"
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")
#: The framework-free core, and what the command lines and the read side use.
CORE = ("run", "store", "checkpoint", "checkpoint_file", "records", "remote", "query", "resume", "tracking", "plot", "__main__")


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", CORE)
def test_core_modules_import_no_framework(module):
    loaded = imported_after(f"import tracker.{module}")
    assert not loaded & set(FRAMEWORKS), f"tracker.{module} imports {sorted(loaded & set(FRAMEWORKS))}"


def _imports(path: Path) -> set[str]:
    """The tracker modules ``path`` imports, at any depth (lazy imports in functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tracker.")}
        elif isinstance(node, ast.ImportFrom) and node.module and (node.module == "tracker" or node.module.startswith("tracker.")):
            # `from tracker import checkpoint` imports the module tracker.checkpoint.
            found |= {f"tracker.{a.name}" for a in node.names} if node.module == "tracker" else {node.module}
    return found


def _graph() -> dict[str, list[str]]:
    modules = {f"tracker.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {name: sorted(_imports(path) & modules.keys()) for name, path in modules.items()}


def _reach(graph: dict[str, list[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_file_layer_does_not_import_the_database_layer():
    assert not _reach(_graph(), "tracker.checkpoint") & {"tracker.store", "tracker.db", "tracker.migrate", "tracker.tables"}


def test_no_import_cycles_between_tracker_modules():
    graph = _graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for dep in graph[name]:
            visit(dep, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def test_the_keras_adapter_depends_on_the_core_one_way():
    graph = _graph()
    assert "tracker.run" in _reach(graph, "tracker.keras")
    for module in ("run", "store", "checkpoint", "checkpoint_file", "records", "remote", "writer"):
        assert not _reach(graph, f"tracker.{module}") & {"tracker.keras", "tracker.keras_state", "tracker.tracking"}, module
