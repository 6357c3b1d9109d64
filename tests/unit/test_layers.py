"""The tree shows the stages: every package imports only from the layers below it, no module imports
itself back in a circle, and no module grows past MAX_LINES without a stated reason."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ethoscope_rsync"
# Higher imports lower, never the other way; packages on one level do not import each other.
LAYERS = {"commands": 5, "backup": 4, "offsite": 4, "alerts": 4, "web": 4, "render": 3, "state": 2, "system": 1,
          "config": 0}
TOP = {"ethoscope_rsync": -1, "ethoscope_rsync.__main__": 6}     # __version__; python3 -m ethoscope_rsync
MAX_LINES = 400
LONG_MODULES: dict = {}          # module -> why it may be longer than MAX_LINES
VAGUE_NAMES = ("helpers", "utils", "util", "misc", "common")


def _modules() -> dict:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules) -> set:
    """Every module of ours `name` imports, at any depth of the file (lazy imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ethoscope_rsync":
                continue
            for alias in node.names:        # from ethoscope_rsync.render import upstream: the module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ethoscope_rsync")
    return found - {name}


def _layer(name: str) -> int:
    if name in TOP:
        return TOP[name]
    return LAYERS[name.split(".")[1]]


MODULES = _modules()
GRAPH = {name: _imports(name, path, MODULES) for name, path in MODULES.items()}


def test_every_package_has_a_layer():
    packages = {name.split(".")[1] for name in MODULES if name not in TOP}
    assert packages == set(LAYERS)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_downward(name):
    if name in TOP:
        return
    own = name.split(".")[1]
    wrong = sorted(target for target in GRAPH[name]
                   if target != "ethoscope_rsync" and target.split(".")[1] != own
                   and _layer(target) >= _layer(name))
    assert not wrong, f"{name} (layer {own}) imports from its own level or above: {wrong}"


def test_no_import_cycle():
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for target in GRAPH.get(module, ()):
            visit(target)
        path.pop()
        done.add(module)

    for module in MODULES:
        visit(module)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_readable(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES or name in LONG_MODULES, f"{name}: {lines} lines (say why in LONG_MODULES, or split it)"
    assert MODULES[name].stem not in VAGUE_NAMES


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The checks above would fail on an upward import (guards the parser, not the tree)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ethoscope_rsync.commands.cli import main\n")
    assert _imports("ethoscope_rsync.state.bad", bad, MODULES) == {"ethoscope_rsync.commands.cli"}
    assert _layer("ethoscope_rsync.commands.cli") > _layer("ethoscope_rsync.state.bad")
