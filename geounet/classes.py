"""The class scheme (ids, names, colours, ignore index) and label-attribute mappings.

The default scheme is ``0 other, 1 field, 2 water, 3 building`` with ``255`` as the ignore /
nodata value in labels and outputs (DESIGN.md, "Classes"). A *class map* turns the values of a
vector attribute (for example OpenStreetMap's ``fclass``) into class ids; values it does not list
become the ignore index, so unlabelled pixels never count as a class.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geounet.errors import ConfigError

IGNORE_INDEX = 255
"""Label / output value meaning "no class": nodata, unlabelled or unmapped."""

SCHEME_TAG = "GEOUNET_CLASSES"
"""GDAL metadata item of class rasters holding the scheme as JSON (:meth:`ClassScheme.to_dict`)."""


def _parse_colour(value: Any, where: str) -> tuple[int, int, int]:
    """Parse ``"#rrggbb"`` or ``[r, g, b]`` into an RGB tuple."""
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        try:
            return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
        except ValueError:
            pass
    elif isinstance(value, list | tuple) and len(value) == 3:
        rgb = tuple(int(v) for v in value)
        if all(0 <= v <= 255 for v in rgb):
            return (rgb[0], rgb[1], rgb[2])
    raise ConfigError(f"{where}: colour {value!r} is not '#rrggbb' or [r, g, b] in 0..255.")


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
        """Build from the YAML layout ``{column, classes, mapping: {class: [values]}}``.

        ``classes`` is optional (the default scheme); ``mapping`` keys are class names.
        """
        unknown = set(data) - {"column", "classes", "mapping", "ignore_index"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown keys {sorted(unknown)}; allowed: column, classes, "
                "mapping, ignore_index."
            )
        ignore = int(data.get("ignore_index", IGNORE_INDEX))
        scheme = (
            ClassScheme.from_records(data["classes"], ignore_index=ignore)
            if data.get("classes")
            else ClassScheme.default()
        )
        values: dict[str, int] = {}
        for class_name, attr_values in (data.get("mapping") or {}).items():
            if class_name not in scheme.names:
                raise ConfigError(
                    f"{source}: mapping names class {class_name!r}, but the scheme has "
                    f"{scheme.names}."
                )
            if isinstance(attr_values, str | int):
                attr_values = [attr_values]
            for v in attr_values:
                if str(v) in values and values[str(v)] != scheme.id_of(class_name):
                    raise ConfigError(f"{source}: value {v!r} is mapped to two classes.")
                values[str(v)] = scheme.id_of(class_name)
        column = data.get("column")
        return cls(scheme=scheme, values=values, column=str(column) if column else None)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ClassMap:
        """Read a class-map YAML file (see ``geounet/class_maps/osm_fclass.yaml``)."""
        from geounet.config import read_yaml  # config sits above classes; import late

        return cls.from_dict(read_yaml(path, what="class map"), source=str(path))

    def class_of(self, value: Any) -> int:
        """Class id of one attribute value (ignore index when unmapped)."""
        return self.values.get(str(value), self.scheme.ignore_index)
