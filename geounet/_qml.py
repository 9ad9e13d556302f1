"""QGIS style documents (QML) and GDAL PAM sidecars for geounet's outputs.

QGIS applies ``NAME.qml`` beside ``NAME.tif`` when a layer is added, so a class raster shows
named, coloured classes instead of a grey ramp; GDAL reads category names from ``NAME.tif.aux.xml``
(rasterio has no API to write them, and the GeoTIFF format stores them only there).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from geounet.classes import ClassScheme

_HEADER = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


_RASTER_PIPE_END = (
    '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
    '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>\n'
    '    <rasterresampler maxOversampling="2"/>\n'
    "  </pipe>\n"
    "  <blendMode>0</blendMode>\n"
    "</qgis>\n"
)
"""The end of a raster layer's QML after its renderer: the same for every raster style."""


def paletted_raster_qml(scheme: ClassScheme) -> str:
    """QML of a paletted renderer: one entry per class with its colour and name."""
    entries = "\n".join(
        f'        <paletteEntry value="{c.id}" color="{c.hex}" alpha="255" '
        f'label="{escape(c.name)}"/>'
        for c in scheme.classes
    )
    return (
        _HEADER
        + '<qgis version="3.22.16" styleCategories="AllStyleCategories">\n'
        + "  <pipe>\n"
        + '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" '
        + 'nodataColor="">\n'
        + "      <rasterTransparency/>\n"
        + "      <colorPalette>\n"
        + entries
        + "\n      </colorPalette>\n"
        + "    </rasterrenderer>\n"
        + _RASTER_PIPE_END
    )


def category_names_aux_xml(scheme: ClassScheme) -> str:
    """GDAL PAM XML giving band 1 the class names as category names (index = pixel value)."""
    cats = "".join(f"<Category>{escape(c.name)}</Category>" for c in scheme.classes)
    return (
        "<PAMDataset>\n"
        '  <PAMRasterBand band="1">\n'
        f"    <CategoryNames>{cats}</CategoryNames>\n"
        "  </PAMRasterBand>\n"
        "</PAMDataset>\n"
    )


def categorized_fill_qml(
    scheme: ClassScheme,
    *,
    attr: str = "class_id",
    values: dict[str, tuple[int, int, int]] | None = None,
    fill_alpha: int = 255,
) -> str:
    """A QGIS vector style: polygons categorised by ``attr``.

    By default one category per class (value = class id, the scheme's colours and names);
    ``values`` instead maps attribute values to colours (e.g. the chip index's splits). A
    ``fill_alpha`` below 255 lets the imagery show through.
    """
    cats = values or {str(c.id): c.color for c in scheme.classes}
    labels = {str(c.id): c.name for c in scheme.classes} if values is None else {}
    categories, symbols = "", ""
    for i, (value, color) in enumerate(cats.items()):
        label = escape(labels.get(value, value))
        categories += (
            f'<category render="true" symbol="{i}" value="{escape(value)}" label="{label}"/>'
        )
        props = {
            "color": ",".join(map(str, (*color, fill_alpha))), "outline_color": "35,35,35,255",
            "outline_width": "0.26", "style": "solid", "outline_style": "solid",
        }  # fmt: skip
        layer = "".join(f'<prop k="{k}" v="{v}"/>' for k, v in props.items())
        symbols += (
            f'<symbol type="fill" name="{i}" alpha="1"><layer class="SimpleFill" '
            f'enabled="1" locked="0" pass="0">{layer}</layer></symbol>'
        )
    return (
        _HEADER
        + '<qgis version="3.22.0" styleCategories="Symbology"><renderer-v2 '
        + f'type="categorizedSymbol" attr="{escape(attr)}" symbollevels="0" forceraster="0">'
        + f"<categories>{categories}</categories><symbols>{symbols}</symbols>"
        + "</renderer-v2></qgis>\n"
    )


def write_gpkg_style(path: Path, layer: str, qml: str, name: str) -> None:
    """Store ``qml`` as the default style of a GeoPackage layer (table ``layer_styles``).

    QGIS reads that table when the layer is added, as it does for styles it saved itself.
    """
    import pyogrio.raw

    # The table layout QGIS itself writes; QGIS looks styles up by empty catalog/schema strings.
    fields = {
        "f_table_catalog": "", "f_table_schema": "", "f_table_name": layer,
        "f_geometry_column": "geom", "styleName": f"{layer} {name}",
        "styleQML": qml, "styleSLD": "", "useAsDefault": True,
        "description": f"geounet {name}", "owner": "", "ui": "",
    }  # fmt: skip
    data = [np.array([v], dtype=bool if isinstance(v, bool) else object) for v in fields.values()]
    data.append(np.array([np.datetime64("now", "ms")]))
    pyogrio.raw.write(
        path, None, data, [*fields, "update_time"], layer="layer_styles", driver="GPKG",
        append=True, gdal_tz_offsets={"update_time": np.array([100])},  # GDAL's flag for UTC
    )  # fmt: skip


def read_category_names(raster: Path) -> dict[int, str]:
    """Band 1's category names from a raster's PAM sidecar (``NAME.aux.xml``), by pixel value.

    Both GDAL forms are read: ``<CategoryNames>`` (index = value) and a raster attribute table
    (``<GDALRasterAttributeTable>``) with a value column (usage MinMax or Min) and a name column
    (usage Name). Empty names are left out; no sidecar gives ``{}``.
    """
    import xml.etree.ElementTree as ET

    aux = raster.with_name(raster.name + ".aux.xml")
    if not aux.is_file():
        return {}
    try:
        root = ET.parse(aux).getroot()
    except ET.ParseError:
        return {}
    band = next((b for b in root.iter("PAMRasterBand") if b.get("band", "1") == "1"), None)
    if band is None:
        return {}
    names: dict[int, str] = {}
    cats = band.find("CategoryNames")
    if cats is not None:
        for value, cat in enumerate(cats.findall("Category")):
            if (cat.text or "").strip():
                names[value] = cat.text.strip()  # type: ignore[union-attr]
    rat = band.find("GDALRasterAttributeTable")
    if rat is not None:
        fields = rat.findall("FieldDefn")
        by_usage = {int(f.findtext("Usage", "0")): int(f.get("index", "0")) for f in fields}
        by_name = {f.findtext("Name", "").lower(): int(f.get("index", "0")) for f in fields}
        # Usage MinMax (5) or Min (3) and Name (2); tables written with generic usage (ArcGIS,
        # some QGIS exports) are found by their usual column names instead.
        value_col = by_usage.get(5, by_usage.get(3, by_name.get("value")))
        name_col = by_usage.get(2)
        if name_col is None:
            name_col = next(
                (by_name[n] for n in ("class_name", "classname", "class", "name") if n in by_name),
                None,
            )
        if value_col is not None and name_col is not None:
            for row in rat.iter("Row"):
                cells = [f.text or "" for f in row.findall("F")]
                if max(value_col, name_col) < len(cells) and cells[name_col].strip():
                    names[int(float(cells[value_col]))] = cells[name_col].strip()
    return names


_RAMP = ((0.0, "#f7fbff"), (0.25, "#c6dbef"), (0.5, "#6baed6"), (0.75, "#2171b5"), (1.0, "#08306b"))
"""White to dark blue (ColorBrewer Blues): probability 0 to 1."""


def probability_band(scheme: ClassScheme) -> int:
    """The 1-based band a probabilities style shows: the first class after id 0 (background)."""
    ids = [c.id for c in scheme.classes]
    return ids.index(min((i for i in ids if i > 0), default=ids[0])) + 1


def probability_ramp_qml(scheme: ClassScheme, *, band: int | None = None) -> str:
    """QML showing one band of ``probabilities.tif`` as a single-band colour ramp, 0 to 1.

    Without it QGIS paints the first three class bands as red, green and blue, and the other
    classes are invisible. The ramp runs over probabilities 0 to 1: QGIS applies the file's
    GDAL scale (1/255) and colours the scaled values (checked with QGIS 3.22).
    """
    band = band or probability_band(scheme)
    name = escape(scheme.classes[band - 1].name)
    items = "\n".join(
        f'            <item value="{v:g}" color="{c}" alpha="255" label="{v:g}"/>' for v, c in _RAMP
    )
    stops = ":".join(f"{v};{_rgba(c)}" for v, c in _RAMP[1:-1])
    return (
        _HEADER
        + '<qgis version="3.22.16" styleCategories="AllStyleCategories">\n'
        + "  <pipe>\n"
        + f'    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="1" '
        + 'alphaBand="-1" classificationMin="0" classificationMax="1" nodataColor="">\n'
        + "      <rasterTransparency/>\n"
        + f"      <!-- probability of class '{name}' (band p_{name}); pick another band in "
        + "Layer Properties > Symbology -->\n"
        + "      <rastershader>\n"
        + '        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" '
        + 'clip="0" minimumValue="0" maximumValue="1" labelPrecision="2">\n'
        + '          <colorramp type="gradient" name="[source]"><Option type="Map">'
        + f'<Option name="color1" type="QString" value="{_rgba(_RAMP[0][1])}"/>'
        + f'<Option name="color2" type="QString" value="{_rgba(_RAMP[-1][1])}"/>'
        + f'<Option name="stops" type="QString" value="{stops}"/>'
        + '<Option name="discrete" type="QString" value="0"/></Option></colorramp>\n'
        + items
        + "\n        </colorrampshader>\n"
        + "      </rastershader>\n"
        + "    </rasterrenderer>\n"
        + _RASTER_PIPE_END
    )


def _rgba(hex_color: str) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"{r},{g},{b},255"
