"""The in-memory GDAL VRT that stacks single-band files onto one grid (XML only, opens nothing).

Each band keeps its own nodata: the band's ``<NoDataValue>`` (what GDAL fills where the file
does not reach) and its source's ``<NODATA>`` (source pixels that are not copied), as
``gdalbuildvrt -separate`` writes them. A band whose file has a real mask (a ``.msk`` file, an
internal COG mask, an alpha band) or that has no nodata and a smaller footprint than the grid
gets a per-band ``<MaskBand>`` read from the source's GDAL mask (``mask,1``) with nearest
resampling, so a resampled 20/60 m mask stays 0/255 and is 0 where the file does not reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from affine import Affine
from rasterio.crs import CRS

from geounet._paths import absolute

VRT_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "uint64": "UInt64",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}
"""Numpy dtype name -> VRT ``dataType`` of the dtypes a stack can hold."""


@dataclass(frozen=True)
class StackBand:
    """One band of a stack: its file, where it lands on the grid, its nodata and mask.

    Attributes:
        path: The band file.
        name: Band name (the VRT band description).
        size: ``(width, height)`` of the file in its own pixels.
        dst: ``(col_off, row_off, width, height)`` of the file on the target grid, in
            (fractional) target pixels.
        nodata: The value that means nodata in this band, or ``None``.
        mask: Whether the band gets a ``<MaskBand>`` from the source's GDAL mask.
    """

    path: str
    name: str
    size: tuple[int, int]
    dst: tuple[float, float, float, float]
    nodata: float | None
    mask: bool


def _rects(band: StackBand) -> str:
    w, h = band.size
    x, y, dw, dh = band.dst
    return (
        f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
        f'<DstRect xOff="{x!r}" yOff="{y!r}" xSize="{dw!r}" ySize="{dh!r}"/>'
    )


def _band_xml(i: int, band: StackBand, dtype: str, resampling: str) -> str:
    source = f'<SourceFilename relativeToVRT="0">{escape(absolute(band.path))}'
    source += "</SourceFilename>"
    # repr() of a float is exact ("nan" and "-99999.0" both read back as the same double).
    nd = "" if band.nodata is None else repr(float(band.nodata))
    mask = ""
    if band.mask:
        mask = (
            '<MaskBand><VRTRasterBand dataType="Byte">'
            f'<SimpleSource resampling="nearest">{source}<SourceBand>mask,1</SourceBand>'
            f"{_rects(band)}</SimpleSource></VRTRasterBand></MaskBand>"
        )
    return (
        f'<VRTRasterBand dataType="{VRT_TYPES[dtype]}" band="{i}">'
        f"<Description>{escape(band.name)}</Description>"
        + (f"<NoDataValue>{nd}</NoDataValue>" if nd else "")
        + f'<ComplexSource resampling="{resampling}">{source}<SourceBand>1</SourceBand>'
        + _rects(band)
        + (f"<NODATA>{nd}</NODATA>" if nd else "")
        + f"</ComplexSource>{mask}</VRTRasterBand>"
    )


def stack_vrt_xml(
    bands: Sequence[StackBand],
    *,
    crs: CRS,
    transform: Affine,
    shape: tuple[int, int],
    dtype: str,
    resampling: str,
) -> str:
    """VRT XML stacking ``bands`` (in order) onto the grid ``crs``/``transform``/``shape``.

    Args:
        bands: The band files and their placement, nodata and mask.
        crs: The grid's CRS.
        transform: The grid's affine transform.
        shape: ``(height, width)`` of the grid.
        dtype: The common numpy dtype (a key of :data:`VRT_TYPES`) that holds every band.
        resampling: GDAL resampling of the data (masks always use nearest).

    Returns:
        The ``<VRTDataset>`` XML, which ``rasterio.open`` reads directly.
    """
    t = transform
    gt = ",".join(repr(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    return (
        f'<VRTDataset rasterXSize="{shape[1]}" rasterYSize="{shape[0]}">'
        f"<SRS>{escape(crs.to_wkt())}</SRS><GeoTransform>{gt}</GeoTransform>"
        + "".join(_band_xml(i, b, dtype, resampling) for i, b in enumerate(bands, start=1))
        + "</VRTDataset>"
    )
