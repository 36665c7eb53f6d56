"""The shape of the code, as folder rules: layers that import one way, and no import cycle anywhere under tracker/.

Every module under ``tracker/`` is read (subpackages too), and every import in it counts, the lazy
ones inside functions included: a lazy import is still a dependency, it only moves the moment it bites.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tracker"
FRAMEWORKS = {"keras", "tensorflow", "jax", "jaxlib", "torch"}
#: Modules that import nothing of tracker's but each other: what every layer may share.
LEAVES = {"tracker.errors", "tracker.records", "tracker.settings", "tracker.redact", "tracker.warn", "tracker.faults",
          "tracker.process", "tracker.durable"}
#: The one place where the core meets a framework: `track` imports the Keras adapter, lazily, when a block is entered.
MEETING_POINT = "tracker.run.track"
#: And the KerasTuner glue, imported lazily when `track_tuner` is called.
MEETING_POINTS = {MEETING_POINT, "tracker.run.tuner"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """The tracker modules and the outside top-level packages that module ``name`` imports, at any depth."""
    ours, outside = set(), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def add(module: str) -> None:
        if module == "tracker" or module.startswith("tracker."):
            # The deepest module that exists: `from tracker.store.db import locate` depends on tracker.store.db.
            while module not in MODULES:
                module = module.rpartition(".")[0]
            ours.add(module)
        else:
            outside.add(module.split(".")[0])

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # `from tracker.store import db` imports the module tracker.store.db; `import Store` only the package.
                full = f"{base}.{alias.name}"
                add(full if full in MODULES else base)
    ours.discard(name)
    return ours, outside


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in GRAPH[todo.pop()][0]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _under(folder: str) -> set[str]:
    return {m for m in MODULES if m == folder or m.startswith(folder + ".")}


def test_the_rules_read_every_module_and_see_lazy_imports():
    assert {"tracker.store.store", "tracker.cli.command", "tracker.keras.callback", "tracker.resume.__main__"} <= MODULES.keys()
    assert "tracker.keras" in GRAPH[MEETING_POINT][0]  # imported only inside a method


def test_no_import_cycles_anywhere_under_tracker():
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(name):], name]))
        if name in done:
            return
        for dep in sorted(GRAPH[name][0]):
            visit(dep, [*path, name])
        done.add(name)

    for name in MODULES:
        visit(name, [])


@pytest.mark.parametrize(("layer", "other"), [("tracker.store", "tracker.checkpoint"), ("tracker.checkpoint", "tracker.store")])
def test_the_database_and_file_layers_never_import_each_other(layer, other):
    for module in _under(layer):
        assert not _reach(module) & _under(other), f"{module} reaches {sorted(_reach(module) & _under(other))}"


def test_only_the_main_shims_import_the_command_line():
    for module, (ours, _) in GRAPH.items():
        if module in _under("tracker.cli") or module.endswith(".__main__"):
            continue
        assert not ours & _under("tracker.cli"), f"{module} imports {sorted(ours & _under('tracker.cli'))}: only __main__ shims may"


def test_leaves_import_only_leaves():
    for module in LEAVES:
        assert GRAPH[module][0] <= LEAVES, f"{module} imports {sorted(GRAPH[module][0] - LEAVES)}"


def test_nothing_outside_the_adapter_imports_a_framework_or_the_adapter():
    adapter = _under("tracker.keras")
    for module, (ours, outside) in GRAPH.items():
        if module in adapter or module in MEETING_POINTS:
            continue
        assert not outside & FRAMEWORKS, f"{module} imports {sorted(outside & FRAMEWORKS)}"
        assert not ours & adapter, f"{module} imports the Keras adapter {sorted(ours & adapter)}"
    assert "tracker.run.adapter" in _reach("tracker.keras.callback")  # the adapter depends on the core


def test_only_the_plot_imports_matplotlib():
    for module, (_, outside) in GRAPH.items():
        if module not in _under("tracker.plot"):
            assert "matplotlib" not in outside, module


def test_importing_every_core_module_loads_no_framework_and_import_tracker_no_matplotlib():
    core = sorted(m for m in MODULES if m not in _under("tracker.keras") and not m.endswith(".__main__"))
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {core!r}]; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert not set(out.stdout.split()) & FRAMEWORKS
    out = subprocess.run([sys.executable, "-c", "import sys, tracker; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert not {m.split(".")[0] for m in out.stdout.split()} & (FRAMEWORKS | {"matplotlib"})
