"""The package's shape: no import cycle, imports follow docs/ARCHITECTURE.md, one raster opener.

The import graph is built from the source with :mod:`ast`, function-level imports included
(a late import still closes a cycle; it only hides it from the interpreter), ``if
TYPE_CHECKING:`` blocks excluded (they never run).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "geounet"
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"

RASTERIO_OPEN_ALLOWED = {
    "geounet.raster": "the raster layer: scenes, chips, block writers, COGs",
    "geounet.sample_data": "writes the bundled and synthetic sample rasters (demo and test data) "
    "block by block with its own profile; it reads no user file",
}
"""Modules that may call ``rasterio.open``, and why."""


def package_modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package at ``package``."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: module level, in functions, not TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit(stmt)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The package module that ``name`` (a module or a name in one) belongs to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """Module -> {imported package module: line of the first import of it}."""
    modules = package_modules(package)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod.
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                owner = _owner(target, modules)
                if owner is not None and owner != name:
                    edges.setdefault(owner, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or ``None`` when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def rasterio_open_calls(path: Path) -> list[int]:
    """Lines of ``rasterio.open(...)`` calls (or of ``open`` imported from rasterio)."""
    tree = ast.parse(path.read_text(), str(path))
    from_rasterio = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "rasterio"
        for alias in node.names
        if alias.name == "open"
    }
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "open"
            and isinstance(func.value, ast.Name)
            and func.value.id in ("rasterio", "rio")
        ) or (isinstance(func, ast.Name) and func.id in from_rasterio):
            lines.append(node.lineno)
    return lines


_ROW = re.compile(
    r"^\|\s*`(?P<module>[\w.*]+)`\s*\|(?P<role>[^|]+)\|\s*(?P<layer>\d+)\s+(?P<name>\w+)\s*\|(?P<may>[^|]*)\|\s*$"
)


def layer_table(text: str) -> tuple[dict[str, int], dict[int, str], dict[str, str]]:
    """Parse the module table: (module pattern -> layer, layer -> name, pattern -> may-import text)."""
    layers: dict[str, int] = {}
    names: dict[int, str] = {}
    may: dict[str, str] = {}
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if match:
            pattern = "geounet" if match["module"] == "geounet" else f"geounet.{match['module']}"
            layers[pattern] = int(match["layer"])
            names[int(match["layer"])] = match["name"]
            may[pattern] = match["may"].strip()
    return layers, names, may


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of a module: its own row, else the first matching ``pkg.*`` row."""
    if module in layers:
        return layers[module]
    for pattern, layer in layers.items():
        if "*" in pattern and fnmatch.fnmatchcase(module, pattern):
            return layer
    return None


# --- the checks on geounet --------------------------------------------------------------------


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_only_the_raster_layer_opens_rasters() -> None:
    offenders = {
        name: lines
        for name, path in package_modules(PACKAGE).items()
        if (lines := rasterio_open_calls(path)) and name not in RASTERIO_OPEN_ALLOWED
    }
    assert not offenders, (
        f"rasterio.open outside the raster layer: {offenders}; use geounet.raster "
        "(open_raster, read_band, write_chip...) or add the module to RASTERIO_OPEN_ALLOWED "
        "with a reason"
    )


def test_every_module_has_a_layer_in_the_architecture_doc() -> None:
    layers, _, _ = layer_table(ARCHITECTURE.read_text())
    missing = [m for m in package_modules(PACKAGE) if layer_of(m, layers) is None]
    assert not missing, f"add these modules to the table of {ARCHITECTURE.name}: {missing}"
    stale = [p for p in layers if "*" not in p and p not in package_modules(PACKAGE)]
    assert not stale, f"{ARCHITECTURE.name} lists modules that do not exist: {stale}"


def test_imports_point_down_the_layers() -> None:
    layers, _, _ = layer_table(ARCHITECTURE.read_text())
    upward = [
        f"{source} (layer {layer_of(source, layers)}) imports {target} "
        f"(layer {layer_of(target, layers)}) at line {line}"
        for source, edges in import_graph(PACKAGE).items()
        for target, line in edges.items()
        if (layer_of(target, layers) or 0) > (layer_of(source, layers) or 0)
    ]
    assert not upward, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(upward)


def test_may_import_column_matches_the_layers() -> None:
    layers, names, may = layer_table(ARCHITECTURE.read_text())
    assert sorted(names) == list(range(len(names))), names
    for pattern, layer in layers.items():
        expected = ", ".join(names[i] for i in range(layer + 1))
        assert may[pattern] == expected, f"{pattern}: 'may import' should read {expected!r}"


# --- the checker itself finds what it is for ---------------------------------------------------


def _write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for rel, text in files.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_checker_finds_a_cycle_closed_by_a_function_level_import(tmp_path: Path) -> None:
    package = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "def f():\n    from pkg.c import g\n    return g\n",
            "c.py": "import pkg.a\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
            "sub/__init__.py": "from .e import x\n",
            "sub/e.py": "from ..a import y\nx = 1\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.b"] == {"pkg.c": 2}
    assert graph["pkg.d"] == {}  # TYPE_CHECKING imports never run
    assert graph["pkg.sub"] == {"pkg.sub.e": 1} and graph["pkg.sub.e"] == {"pkg.a": 1}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    del graph["pkg.c"]["pkg.a"]
    assert find_cycle(graph) is None


def test_checker_finds_rasterio_open_in_any_spelling(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import rasterio\nfrom rasterio import open as ropen\n"
        "def f(p):\n    with rasterio.open(p) as a, ropen(p) as b:\n        return a, b\n"
        "def g(p):\n    return open(p)\n"
    )
    assert rasterio_open_calls(source) == [4, 4]


@pytest.mark.parametrize(
    ("module", "layer"),
    [("geounet.errors", 0), ("geounet.models.unet", 2), ("geounet.cli.tile", 6)],
)
def test_layer_table_parses(module: str, layer: int) -> None:
    layers, _, _ = layer_table(ARCHITECTURE.read_text())
    assert layer_of(module, layers) == layer
