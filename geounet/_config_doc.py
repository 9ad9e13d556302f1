"""Render the job file reference (docs/config.md) from the pydantic models.

The descriptions and defaults live in one place, the models in :mod:`geounet.config`; this
turns them into Markdown, and a test checks that the committed docs/config.md is current::

    python -m geounet._config_doc > docs/config.md
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from geounet.config import (
    _JOB_OWNED,
    AugmentSection,
    EvaluateSection,
    InputSection,
    JobConfig,
    ModelSection,
    OptimizerSection,
    PredictSection,
    ReportSection,
    SceneEntry,
    SplitSection,
    TileConfig,
    TrainConfig,
    VectorizeSection,
)

_SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("(top level)", JobConfig, ""),
    ("tile", TileConfig, "tile"),
    ("tile.scenes[]", SceneEntry, "tile"),
    ("tile.split", SplitSection, "tile"),
    ("train", TrainConfig, "train"),
    ("train.model", ModelSection, "train"),
    ("train.optimizer", OptimizerSection, "train"),
    ("train.augment", AugmentSection, "train"),
    ("train.input", InputSection, "train"),
    ("predict", PredictSection, "predict"),
    ("vectorize", VectorizeSection, "vectorize"),
    ("evaluate", EvaluateSection, "evaluate"),
    ("report", ReportSection, "report"),
]

_HEADER = """\
# Job file reference

A job file (`geounet run JOB.yaml`, see `configs/`) has the sections below; every key but
`out`, `tile.scene` (or `tile.scenes`) and the `train` section has a default. Unknown keys
are errors. Input paths are relative to the job file (`geounet:` paths are inside the
installed package); `out` is relative to the folder you run from. `--set section.key=value`
overrides any key. The same sections work for the stage commands (`geounet tile --config
JOB.yaml`), which also take the folders a job sets itself (`tile.out`, `train.chips`,
`train.out`).

Generated from `geounet/config.py` by `python -m geounet._config_doc > docs/config.md`.
"""


def _annotation(field: Any) -> str:
    text = str(field.annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("<class '", "").replace("'>", "")
    text = text.replace("NoneType", "None").replace("geounet.config.", "")
    # A scene path (config.ScenePath) is a string that GDAL opens; it reads as a path.
    text = re.sub(r"Annotated\[str, BeforeValidator\(func=<function _scene_path[^>]*>[^)]*\)\]",
                  "Path", text)  # fmt: skip
    # Literal['a', 'b'] reads better as its choices: 'a' | 'b'.
    return re.sub(r"Literal\[([^\]]*)\]", lambda m: m.group(1).replace(", ", " | "), text)


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value, default=str)}`"


def render_config_reference() -> str:
    """The Markdown reference of every job file section and key."""
    lines = [_HEADER]
    for title, model, section in _SECTIONS:
        heading = f"## `{title}`" if section else f"## {title}"
        lines += [heading, "", "| key | type | default | what |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if (section, name) in _JOB_OWNED:
                continue
            nested = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
            kind = "section" if nested else _annotation(field).replace("|", "\\|")
            default = "see below" if kind == "section" else _default(field)
            what = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {kind} | {default} | {what} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_config_reference(), end="")
