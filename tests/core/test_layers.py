"""The layering of ``core``: imports run one way between subpackages, and no module cycles.

Every ``import`` and ``from ... import`` of every module is read from its source (at module
level, inside functions and under ``TYPE_CHECKING`` alike). A module of subpackage ``L`` may
import ``core`` itself, the foundation modules (``core.FOUNDATION``), its own subpackage and the
subpackages before ``L`` in ``core.LAYERS``; foundation modules import only each other. Then the
graph of module imports must have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import core

CORE_DIR = Path(core.__file__).resolve().parent


def module_name(path: Path, root: Path) -> str:
    """Dotted name of a module file under ``root`` (the folder of the ``core`` package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str) -> set[str]:
    """Every ``core`` module ``path`` imports (``from core.x import y`` counts as ``core.x.y``
    when that is a module, else ``core.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "core")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "core":
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}")
                found.add(base)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (names that are not modules are dropped)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imported_modules(path, name) & set(files) for name, path in files.items()}


def layer_of(module: str, layers: tuple[str, ...], foundation: tuple[str, ...]) -> int | None:
    """Index of the module's subpackage in ``layers``; -1 for the foundation; None for ``core``."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    if parts[1] in layers:
        return layers.index(parts[1])
    if len(parts) == 2 and parts[1] in (*foundation, "__main__"):
        return -1 if parts[1] != "__main__" else len(layers)
    raise AssertionError(f"{module} is in no layer; add it to core.LAYERS or core.FOUNDATION")


def layer_violations(
    graph: dict[str, set[str]], layers: tuple[str, ...], foundation: tuple[str, ...]
) -> list[str]:
    """Imports against the order, as ``importer -> imported`` lines."""
    bad = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module, layers, foundation)
        for target in sorted(targets):
            there = layer_of(target, layers, foundation)
            if there is None or here is None:
                continue
            if there > here or (here == -1 and there != -1):
                bad.append(f"{module} -> {target}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_in_core_follows_the_layer_order():
    graph = import_graph(CORE_DIR)
    assert layer_violations(graph, core.LAYERS, core.FOUNDATION) == []


def test_no_import_cycle_between_modules_of_core():
    assert cycles(import_graph(CORE_DIR)) == []


def test_every_subpackage_is_in_the_order_and_says_what_lives_there():
    packages = sorted(p.parent.name for p in CORE_DIR.glob("*/__init__.py"))
    assert packages == sorted(core.LAYERS)
    for name in packages:
        doc = ast.get_docstring(ast.parse((CORE_DIR / name / "__init__.py").read_text()))
        assert doc, f"core/{name}/__init__.py needs a docstring saying what lives there"


def test_only_the_foundation_lives_directly_in_core():
    files = sorted(p.stem for p in CORE_DIR.glob("*.py"))
    assert files == sorted(["__init__", "__main__", *core.FOUNDATION])


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "core" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "core"


LAYERS = ("io", "detect")


@pytest.mark.parametrize(
    "code",
    [
        "from core.detect.msi import msi\n",
        "import core.detect.msi\n",
        "def f():\n    from core.detect import msi\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.detect.msi import x\n",
    ],
)
def test_an_import_against_the_order_is_reported(tmp_path, code):
    root = write_tree(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "io/__init__.py": "",
            "io/rasters.py": code,
            "detect/__init__.py": "",
            "detect/msi.py": "from core.io.rasters import x\nfrom core.errors import E\n",
        },
    )
    graph = import_graph(root)
    violations = layer_violations(graph, LAYERS, ("errors",))
    assert "core.io.rasters -> core.detect.msi" in violations
    assert all(v.startswith("core.io.rasters -> core.detect") for v in violations)
    assert ["core.detect.msi", "core.io.rasters"] in cycles(graph)


def test_the_foundation_may_not_import_a_layer(tmp_path):
    root = write_tree(
        tmp_path,
        {"__init__.py": "", "errors.py": "from core.io import rasters\n", "io/rasters.py": ""},
    )
    assert layer_violations(import_graph(root), LAYERS, ("errors",)) == [
        "core.errors -> core.io.rasters"
    ]


def test_a_relative_import_is_resolved(tmp_path):
    root = write_tree(
        tmp_path,
        {"__init__.py": "", "io/__init__.py": "", "io/rasters.py": "from ..detect import msi\n",
         "detect/__init__.py": "", "detect/msi.py": ""},
    )  # fmt: skip
    violations = layer_violations(import_graph(root), LAYERS, ())
    assert "core.io.rasters -> core.detect.msi" in violations
