"""The package's layering (docs/architecture.md): the method layers never import the Flower glue
or the scenario file, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "fedsec"
LOWER_LAYERS = ("fedsec.crypto", "fedsec.defenses", "fedsec.attacks", "fedsec.watermark", "fedsec.data",
                "fedsec.privacy", "fedsec.extraction", "fedsec.inspection", "fedsec.guards", "fedsec.sanitization",
                "fedsec.tracking")
UPPER = ("fedsec.fl", "fedsec.scenario")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(path: Path, modules: set[str]) -> set[str]:
    """The fedsec modules ``path`` imports (anywhere but under ``if TYPE_CHECKING:``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported(p, modules) for p in paths}


def test_method_layers_do_not_import_the_flower_glue_or_the_scenario() -> None:
    graph = import_graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items() if module.startswith(LOWER_LAYERS)
        for target in targets if target.startswith(UPPER)
    )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                walk(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_walker_sees_relative_imports_and_ignores_type_checking(tmp_path: Path) -> None:
    source = ("from typing import TYPE_CHECKING\nfrom . import base\nfrom ..scenario import Scenario\n"
              "if TYPE_CHECKING:\n    from fedsec.fl import server\n")
    file = PACKAGE / "defenses" / "_layers_probe.py"
    file.write_text(source)
    try:
        modules = {"fedsec.defenses.base", "fedsec.scenario", "fedsec.fl.server", "fedsec.fl"}
        assert imported(file, modules) == {"fedsec.defenses.base", "fedsec.scenario"}
    finally:
        file.unlink()
