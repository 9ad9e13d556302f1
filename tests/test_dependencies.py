"""pyproject declares what the package imports, and nothing it does not (mapped dist -> module)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MODULES = {
    "pyyaml": {"yaml"}, "scikit-learn": {"sklearn"}, "pillow": {"PIL"},
    "dask": {"dask", "distributed"},  # dask[distributed]: we import distributed
    "pydantic": {"pydantic", "pydantic_core"},  # pydantic pins its pydantic-core exactly
}  # fmt: skip
"""Distributions whose import names differ from their names."""

INDIRECT = {
    "requests": "torchgeo.datasets imports it but declares it only in its 'datasets' extra",
}
"""Declared without being imported by geounet, and why."""


def _dist(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports() -> set[str]:
    found = set()
    for path in (REPO / "geounet").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "geounet"}


def _provides(requirements: list[str]) -> dict[str, set[str]]:
    return {_dist(r): MODULES.get(_dist(r), {_dist(r).replace("-", "_")}) for r in requirements}


def test_every_import_is_declared_and_every_dependency_imported():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = _provides(project["dependencies"])
    extras = _provides([r for name, reqs in project["optional-dependencies"].items()
                        if name != "dev" for r in reqs])  # fmt: skip
    imported = _imports()
    declared = set().union(*core.values(), *extras.values())
    assert not imported - declared, f"imported but not declared: {sorted(imported - declared)}"
    unused = sorted(d for d, mods in core.items() if not mods & imported and d not in INDIRECT)
    assert not unused, f"declared but never imported by geounet: {unused}"


def test_the_lazy_top_level_api_is_visible_to_type_checkers():
    import geounet

    source = (REPO / "geounet" / "__init__.py").read_text()
    block = source.split("if TYPE_CHECKING:", 1)[1].split("\n\n", 1)[0]
    for name, module in geounet._EXPORTS.items():
        assert f"from {module} import {name} as {name}" in block, name
        assert getattr(geounet, name) is getattr(__import__(module, fromlist=[name]), name)
