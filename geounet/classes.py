"""The class scheme (ids, names, colours, ignore index) and label-attribute mappings.

The default scheme is ``0 other, 1 field, 2 water, 3 building`` with ``255`` as the ignore /
nodata value in labels and outputs (DESIGN.md, "Classes"). A *class map* turns the values of a
vector attribute (for example OpenStreetMap's ``fclass``) into class ids; values it does not list
become the ignore index, so unlabelled pixels never count as a class.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geounet._colours import parse_colour as _parse_colour
from geounet._documents import TextLoader, read_yaml
from geounet.errors import ConfigError

IGNORE_INDEX = 255
"""Label / output value meaning "no class": nodata, unlabelled or unmapped."""

SCHEME_TAG = "GEOUNET_CLASSES"
"""GDAL metadata item of class rasters holding the scheme as JSON (:meth:`ClassScheme.to_dict`)."""


@dataclass(frozen=True)
class ClassInfo:
    """One class: its integer id (pixel value), name and display colour (RGB)."""

    id: int
    name: str
    color: tuple[int, int, int]

    @property
    def hex(self) -> str:
        """The colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


@dataclass(frozen=True)
class ClassScheme:
    """An ordered set of classes with contiguous ids ``0..n-1`` and an ignore index.

    Contiguous ids are required because a model's output channel ``k`` *is* class ``k``.
    """

    classes: tuple[ClassInfo, ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if ids != list(range(len(ids))):
            raise ConfigError(
                f"class ids must be 0..{len(ids) - 1} in order (one per model output), got {ids}."
            )
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ConfigError(f"class names must be unique, got {names}.")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index < len(ids):
            raise ConfigError(
                f"ignore_index {self.ignore_index} must be in {len(ids)}..255 (uint8 masks)."
            )

    @classmethod
    def default(cls) -> ClassScheme:
        """The project's scheme: other (grey), field (gold), water (blue), building (red)."""
        return cls(
            (
                ClassInfo(0, "other", (158, 158, 158)),
                ClassInfo(1, "field", (230, 180, 34)),
                ClassInfo(2, "water", (30, 110, 220)),
                ClassInfo(3, "building", (215, 40, 40)),
            )
        )

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], ignore_index: int = 255
    ) -> ClassScheme:
        """Build a scheme from ``[{"id": 0, "name": ..., "color": ...}, ...]`` records."""
        infos = []
        for i, rec in enumerate(records):
            missing = {"id", "name", "color"} - set(rec)
            if missing:
                raise ConfigError(f"class #{i} lacks {sorted(missing)}; give id, name and color.")
            infos.append(
                ClassInfo(
                    int(rec["id"]),
                    str(rec["name"]),
                    _parse_colour(rec["color"], f"class {rec['name']!r}"),
                )
            )
        return cls(tuple(sorted(infos, key=lambda c: c.id)), ignore_index=ignore_index)

    @property
    def names(self) -> list[str]:
        """Class names in id order."""
        return [c.name for c in self.classes]

    @property
    def num_classes(self) -> int:
        """Number of classes (model output channels)."""
        return len(self.classes)

    def id_of(self, name: str) -> int:
        """The id of the class called ``name``."""
        for c in self.classes:
            if c.name == name:
                return c.id
        raise ConfigError(f"unknown class {name!r}; the scheme has {self.names}.")

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A GDAL colour table: class colours, the ignore value transparent black."""
        cmap = {c.id: (*c.color, 255) for c in self.classes}
        cmap[self.ignore_index] = (0, 0, 0, 0)
        return cmap

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready records ``{"id", "name", "color": "#rrggbb"}``."""
        return [{"id": c.id, "name": c.name, "color": c.hex} for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the one ``classes.json`` and model files hold."""
        return {"classes": self.to_records(), "ignore_index": self.ignore_index}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassScheme:
        """Inverse of :meth:`to_dict`."""
        return cls.from_records(data["classes"], ignore_index=int(data.get("ignore_index", 255)))

    def write_json(self, path: str | Path) -> None:
        """Write ``classes.json``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read_json(cls, path: str | Path) -> ClassScheme:
        """Read a ``classes.json`` written by :meth:`write_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class ClassMap:
    """Maps values of a label attribute (e.g. OSM ``fclass``) to classes of a scheme.

    Attributes:
        scheme: The class scheme the values map into.
        values: Attribute value -> class id. Values not listed map to the ignore index.
        column: The attribute column the mapping is meant for (``None``: must be given).
    """

    scheme: ClassScheme
    values: Mapping[str, int] = field(default_factory=dict)
    column: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "class map") -> ClassMap:
        """Build from the class-map layout ``{column, classes, mapping: {class: [values]}}``.

        The format is :class:`geounet._class_map.ClassMapFile` (``docs/labels.md``):
        ``classes`` is optional (the default scheme); ``mapping`` keys are class names and its
        values are compared as text with the attribute values (or raster codes).

        Raises:
            ConfigError: The data does not follow the format; the message names ``source``,
                the key and the fix.
        """
        from geounet._class_map import parse_class_map  # pydantic: only when a map is read

        model = parse_class_map(dict(data), source)
        scheme = (
            ClassScheme.from_records(
                [c.model_dump() for c in model.classes], ignore_index=model.ignore_index
            )
            if model.classes
            else ClassScheme.default()
        )
        values: dict[str, int] = {}
        for class_name, attr_values in model.mapping.items():
            if class_name not in scheme.names:
                raise ConfigError(
                    f"invalid class map {source}:\n  mapping.{class_name}: no class is called "
                    f"{class_name!r}; the classes are {scheme.names} (add it under `classes:`)."
                )
            for v in attr_values:
                if v in values and values[v] != scheme.id_of(class_name):
                    raise ConfigError(
                        f"invalid class map {source}:\n  mapping.{class_name}: value {v!r} is "
                        f"also mapped to {scheme.names[values[v]]!r}; keep it under one class."
                    )
                values[v] = scheme.id_of(class_name)
        return cls(scheme=scheme, values=values, column=model.column)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ClassMap:
        """Read a class-map YAML file (format: ``docs/labels.md``).

        Every value is read as text, so ``yes``/``no``/``on``/``off`` stay strings (YAML 1.1
        would make them booleans) and ``010`` stays ``010``.
        """
        data = read_yaml(path, what="class map", loader=TextLoader)
        return cls.from_dict(data, source=str(path))

    def class_of(self, value: Any) -> int:
        """Class id of one attribute value (ignore index when unmapped)."""
        return self.values.get(str(value), self.scheme.ignore_index)


def no_negatives_message(labelled: Sequence[str], where: str) -> str | None:
    """The warning for labels holding a single class (``None`` when there are two or more).

    With one labelled class every judged pixel is a positive: a model predicting that class
    everywhere scores 1.0, so the score says nothing (footprint labels without
    ``background: unlabelled``).

    Args:
        labelled: Names of the classes with at least one labelled pixel.
        where: What holds the labels, e.g. "the chips" or "the validation labels".
    """
    if len(labelled) != 1:
        return None
    return (
        f"only class {labelled[0]!r} is labelled in {where}: with no other class there are no "
        "negatives, so a model predicting it everywhere scores 1.0 and the score is "
        "meaningless. For footprint labels set `background: unlabelled` (pixels outside the "
        "polygons become the background class)."
    )
