"""Imports run one way along the data path (issue 16): the HF-facing flat files at the bottom, then the model
folder and presets, then ``data``/``runtimes``, then ``evaluation``/``inference``, then ``training``/``bench``,
with the commands (``cli``, ``reproduce``) on top. Every import counts, also those inside functions (lazy
imports are still dependencies), and no module may reach itself through its imports.

Read from the source with ``ast``, so nothing is imported and the test is instant.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Files that travel as remote code: they may import only each other.
FLAT = {
    "configuration_cage",
    "image_processing_cage",
    "face_analysis_cage",
    "face_detection_cage",
    "modeling_cage",
    "pipeline_cage",
}
# What every layer above the flat files may use: them, the package root (Auto-class registration), the model
# folder (save and load), the presets, the shared file checks, the optional-extras check and the Hub-id rule.
BASE = FLAT | {"cage", "model_folder", "presets", "files", "extras", "hub_ids"}
ALLOWED = {
    **{name: FLAT for name in FLAT},
    "cage": FLAT,
    "files": set(),
    "extras": set(),
    "hub_ids": set(),
    "model_folder": FLAT | {"cage", "hub_ids"},
    "presets": FLAT | {"cage", "model_folder"},
    "data": BASE,
    "runtimes": BASE,
    "hub": BASE,
    "evaluation": BASE | {"data"},
    "inference": BASE | {"runtimes"},
    "training": BASE | {"data", "evaluation"},
    "bench": BASE | {"runtimes", "inference"},
}
TOP = {"cli", "__main__", "reproduce"}  # the commands: may import anything (each other too); nothing else imports them


def _module_name(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _modules() -> dict[str, bool]:
    return dict(_module_name(path) for path in sorted((SRC / "cage").rglob("*.py")))


def _imports(path: Path, modules: dict[str, bool]) -> set[str]:
    """The ``cage`` modules ``path`` imports anywhere in its body (``from . import x`` resolves to the module
    ``x`` where there is one)."""
    name, is_package = _module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "cage"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "cage":
                continue
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules.keys()
            found |= submodules or {target}
    return found


def _unit(module: str) -> str:
    """``cage.inference.api`` -> ``inference``; ``cage`` -> ``cage``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cage"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: _imports(path, modules) - {name}
        for path in sorted((SRC / "cage").rglob("*.py"))
        for name in [_module_name(path)[0]]
    }


def test_every_unit_has_a_place():
    units = {_unit(module) for module in _modules()}
    assert units <= ALLOWED.keys() | TOP, f"place new modules in ALLOWED: {sorted(units - ALLOWED.keys() - TOP)}"


def test_imports_run_one_way():
    wrong = []
    for module, targets in _graph().items():
        unit = _unit(module)
        for target in sorted(targets):
            other = _unit(target)
            if unit in TOP or other == unit:
                continue
            if other in TOP:
                wrong.append(f"{module} -> {target} (the commands are on top)")
            elif other not in ALLOWED.get(unit, set()):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that run back up:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:  # path: the import chain that led here, ending in module
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target in graph and not state.get(target):
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_a_wrong_edge_and_a_cycle(monkeypatch):
    # The checks themselves can fail: an edge from evaluation up to training, and a loop of two modules.
    bad = {"cage.evaluation.runner": {"cage.training.loop"}, "cage.training.loop": {"cage.evaluation.runner"}}
    monkeypatch.setitem(globals(), "_graph", lambda: bad)
    with pytest.raises(AssertionError, match="cage.evaluation.runner -> cage.training.loop"):
        test_imports_run_one_way()
    with pytest.raises(AssertionError, match="cage.evaluation.runner -> cage.training.loop -> cage.evaluation.runner"):
        test_no_import_cycles()
