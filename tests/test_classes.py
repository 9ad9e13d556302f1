"""The class-map format: validation messages, values read as text, the schema, bundled maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from geounet._class_map import class_map_schema
from geounet.classes import ClassMap
from geounet.errors import ConfigError
from geounet.sample_data import make_synthetic_labels, make_synthetic_scene
from geounet.tiling import TilingOptions, read_index, tile_scene

REPO = Path(__file__).resolve().parents[1]
X0, Y0 = 330000.0, 5822040.0  # the synthetic scene's top-left corner (10 m pixels)


def write_map(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text(text)
    return path


def test_yes_no_on_off_values_are_text_and_match_attribute_values(tmp_path):
    # OSM's `building=yes`: with YAML 1.1 `yes` would be the boolean True and match nothing.
    path = write_map(tmp_path, """\
column: building
classes:
  - {id: 0, name: other, color: "#9e9e9e"}
  - {id: 1, name: building, color: [215, 40, 40]}
  - {id: 2, name: shed, color: "#804000"}
mapping:
  building: [yes, on]
  other: [no, off, 010]
  shed: true
""")  # fmt: skip
    cmap = ClassMap.from_yaml(path)
    assert cmap.values == {"yes": 1, "on": 1, "no": 0, "off": 0, "010": 0, "true": 2}
    assert cmap.column == "building" and cmap.scheme.classes[1].color == (215, 40, 40)

    scene = make_synthetic_scene(tmp_path / "s.tif", shape=(32, 32), count=3, fill="random")
    cells = {"yes": (0, 0), "on": (0, 16), "no": (16, 0), "true": (16, 16)}
    labels = make_synthetic_labels(
        tmp_path / "b.gpkg",
        [
            (box(X0 + c * 10, Y0 - (r + 16) * 10, X0 + (c + 16) * 10, Y0 - r * 10), v)
            for v, (r, c) in cells.items()
        ],
        crs="EPSG:32633",
        column="building",
    )
    out = tmp_path / "chips"
    tile_scene(scene, out, labels=labels, class_map=cmap, options=TilingOptions(chip_size=32))
    (rec,) = read_index(out).itertuples()
    with rasterio.open(out / rec.label) as src:
        mask = src.read(1)
    np.testing.assert_array_equal(mask[:16, :16], 1)  # yes
    np.testing.assert_array_equal(mask[:16, 16:], 1)  # on
    np.testing.assert_array_equal(mask[16:, :16], 0)  # no
    np.testing.assert_array_equal(mask[16:, 16:], 2)  # true


def test_raster_codes_used_as_ids_fail_naming_the_file_the_key_and_the_fix(tmp_path):
    classes = "\n".join(f"  - {{id: {k}, name: c{k}, color: '#{k}0{k}0{k}0'}}" for k in range(1, 8))
    path = write_map(tmp_path, f"classes:\n{classes}\n")
    with pytest.raises(ConfigError) as err:
        ClassMap.from_yaml(path)
    msg = str(err.value)
    assert str(path) in msg and "classes: ids must be 0..6" in msg
    assert "[1, 2, 3, 4, 5, 6, 7]" in msg and "under `mapping:`" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colum: fclass\n", "colum: unknown key; a class map has column, classes, mapping"),
        ("mapping: {forest: [1]}\n", "mapping.forest: no class is called 'forest'"),
        ("mapping: {field: [a], water: [a]}\n", "value 'a' is also mapped to 'field'"),
        ("classes: [{id: 0, name: a}]\n", "classes.0.color: Field required"),
        ("classes: [{id: 0, name: a, color: '#00'}]\n", "colour '#00' is not '#rrggbb'"),
        ("mapping: {field: }\n", "class 'field' lists no value"),
        ("- a\n- b\n", "must be a YAML mapping"),
    ],
)
def test_bad_class_maps_name_the_file_and_the_key(tmp_path, text, expected):
    path = write_map(tmp_path, text)
    with pytest.raises(ConfigError, match="map") as err:
        ClassMap.from_yaml(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_booleans_given_from_python_are_refused():
    with pytest.raises(ConfigError, match="True is a boolean; write the value as text"):
        ClassMap.from_dict({"mapping": {"building": [True]}})


@pytest.mark.parametrize("path", sorted((REPO / "geounet" / "class_maps").glob("*.yaml")))
def test_the_bundled_class_maps_follow_the_format(path):
    cmap = ClassMap.from_yaml(path)
    assert cmap.values and set(cmap.values.values()) <= set(range(cmap.scheme.num_classes))


def test_the_class_map_schema_is_current():
    committed = json.loads((REPO / "docs" / "class_map.schema.json").read_text())
    assert committed == class_map_schema(), (
        "docs/class_map.schema.json is stale: "
        "python -m geounet._class_map > docs/class_map.schema.json"
    )
