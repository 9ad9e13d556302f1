"""QGIS style documents (QML) and GDAL PAM sidecars for geounet's outputs.

QGIS applies ``NAME.qml`` beside ``NAME.tif`` when a layer is added, so a class raster shows
named, coloured classes instead of a grey ramp; GDAL reads category names from ``NAME.tif.aux.xml``
(rasterio has no API to write them, and the GeoTIFF format stores them only there).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from geounet.classes import ClassScheme

_HEADER = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


def paletted_raster_qml(scheme: ClassScheme) -> str:
    """QML of a paletted renderer: one entry per class with its colour and name."""
    entries = "\n".join(
        f'        <paletteEntry value="{c.id}" color="{c.hex}" alpha="255" label="{escape(c.name)}"/>'
        for c in scheme.classes
    )
    return (
        _HEADER
        + '<qgis version="3.22.16" styleCategories="AllStyleCategories">\n'
        + "  <pipe>\n"
        + '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">\n'
        + "      <rasterTransparency/>\n"
        + "      <colorPalette>\n"
        + entries
        + "\n      </colorPalette>\n"
        + "    </rasterrenderer>\n"
        + '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
        + '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>\n'
        + '    <rasterresampler maxOversampling="2"/>\n'
        + "  </pipe>\n"
        + "  <blendMode>0</blendMode>\n"
        + "</qgis>\n"
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


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file through a temporary name, so readers never see half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
