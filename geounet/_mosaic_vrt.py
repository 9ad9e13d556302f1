"""The VRT XML of a mosaic: scenes side by side on one grid (input), or block rasters (output).

:func:`mosaic_vrt` puts several overlapping scenes on one pixel grid, as ``gdalbuildvrt`` does
(the last scene listed wins where scenes overlap), so that a list of scenes can be predicted as
one seamless mosaic. :func:`blocks_vrt_xml` lays the block rasters a mosaic prediction wrote
back into one virtual raster, with the class palette, nodata, band names and the mask.

Only XML is written here; GDAL opens it later (no ``osgeo`` bindings needed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import rasterio

from geounet._files import write_text_atomic
from geounet._vrt import VRT_TYPES
from geounet.errors import CRSError, GridMismatchError, InputFileError
from geounet.raster import open_raster


@dataclass(frozen=True)
class VrtSource:
    """One raster placed on the VRT grid.

    Attributes:
        path: The raster, absolute or relative to the VRT (``relative``).
        row_off: Its first row on the VRT grid.
        col_off: Its first column on the VRT grid.
        height: Its rows.
        width: Its columns.
        relative: Whether ``path`` is relative to the VRT's folder.
    """

    path: str
    row_off: int
    col_off: int
    height: int
    width: int
    relative: bool = False


def _source_xml(tag: str, src: VrtSource, band: str, nodata: float | None) -> str:
    rel = "1" if src.relative else "0"
    nodata_xml = "" if nodata is None else f"<NODATA>{_number(nodata)}</NODATA>"
    return (
        f'<{tag}><SourceFilename relativeToVRT="{rel}">{escape(src.path)}</SourceFilename>'
        f"<SourceBand>{band}</SourceBand>"
        f'<SrcRect xOff="0" yOff="0" xSize="{src.width}" ySize="{src.height}"/>'
        f'<DstRect xOff="{src.col_off}" yOff="{src.row_off}" xSize="{src.width}" '
        f'ySize="{src.height}"/>{nodata_xml}</{tag}>'
    )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def blocks_vrt_xml(
    *,
    shape: tuple[int, int],
    transform: Sequence[float],
    crs_wkt: str,
    sources: Sequence[VrtSource],
    count: int,
    dtype: str,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
    category_names: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    mask: bool = False,
) -> str:
    """The XML of a VRT made of rasters that tile one grid (``sources`` do not overlap).

    Args:
        shape: The grid's ``(height, width)``.
        transform: The grid's affine transform (``a, b, c, d, e, f``).
        crs_wkt: The grid's CRS.
        sources: The rasters and where they lie on the grid.
        count: Bands of every source.
        dtype: Numpy dtype name of the bands.
        nodata: The bands' nodata value.
        descriptions: Band names.
        colormap: A palette for band 1 (value -> RGBA).
        category_names: Names of the values of band 1 (class names in id order).
        metadata: Dataset metadata items (e.g. the class scheme tag).
        mask: Add a per-dataset mask read from each source's own mask (``mask,1``).

    Returns:
        The VRT document.
    """
    a, b, c, d, e, f = list(transform)[:6]
    height, width = shape
    vrt_type = VRT_TYPES[dtype]
    parts = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"<SRS>{escape(crs_wkt)}</SRS>",
        f"<GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>",
    ]
    if metadata:
        items = "".join(
            f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in sorted(metadata.items())
        )
        parts.append(f"<Metadata>{items}</Metadata>")
    for band in range(1, count + 1):
        parts.append(f'<VRTRasterBand dataType="{vrt_type}" band="{band}">')
        if descriptions:
            parts.append(f"<Description>{escape(descriptions[band - 1])}</Description>")
        if nodata is not None:
            parts.append(f"<NoDataValue>{_number(nodata)}</NoDataValue>")
        if band == 1 and colormap:
            parts.append("<ColorInterp>Palette</ColorInterp><ColorTable>")
            top = max(colormap)
            for value in range(top + 1):
                r, g, bl, alpha = colormap.get(value, (0, 0, 0, 0))
                parts.append(f'<Entry c1="{r}" c2="{g}" c3="{bl}" c4="{alpha}"/>')
            parts.append("</ColorTable>")
        elif count > 1:
            parts.append("<ColorInterp>Gray</ColorInterp>")
        if band == 1 and category_names:
            names = "".join(f"<Category>{escape(n)}</Category>" for n in category_names)
            parts.append(f"<CategoryNames>{names}</CategoryNames>")
        parts += [_source_xml("SimpleSource", s, str(band), None) for s in sources]
        parts.append("</VRTRasterBand>")
    if mask:
        parts.append('<MaskBand><VRTRasterBand dataType="Byte">')
        parts += [_source_xml("SimpleSource", s, "mask,1", None) for s in sources]
        parts.append("</VRTRasterBand></MaskBand>")
    parts.append("</VRTDataset>")
    return "\n".join(parts) + "\n"


def mosaic_vrt(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write a VRT that mosaics overlapping scenes onto one grid, as ``gdalbuildvrt`` does.

    The grid is the union of the scenes' extents on the first scene's pixel grid; where scenes
    overlap, the last one listed wins (a scene's nodata pixels let the ones below show). When
    the scenes declare no nodata, a mask marks the pixels no scene covers as nodata.

    Args:
        paths: Multi-band rasters with one CRS, band count, dtype and pixel grid.
        out: The ``.vrt`` to write (paths inside are absolute).

    Returns:
        The written path.

    Raises:
        InputFileError: A scene is missing or unreadable, or the scenes' bands differ.
        CRSError: A scene has no CRS, or a rotated transform.
        GridMismatchError: The scenes differ in CRS or pixel size, or lie off one pixel grid.
    """
    if not paths:
        raise InputFileError("a mosaic needs at least one scene; give the scene files.")
    scenes = [_describe(Path(p)) for p in paths]
    first = scenes[0]
    fix = "warp them onto one grid first (gdalwarp -tap -tr RES RES -t_srs CRS)"
    for s in scenes[1:]:
        if s["crs"] != first["crs"]:
            raise GridMismatchError(
                f"{s['path']} is in {s['crs']} but {first['path']} in {first['crs']}; a mosaic "
                f"needs one CRS: {fix}."
            )
        if (s["count"], s["dtype"]) != (first["count"], first["dtype"]):
            raise InputFileError(
                f"{s['path']} has {s['count']} {s['dtype']} bands but {first['path']} has "
                f"{first['count']} {first['dtype']}; the scenes of a mosaic need the same bands."
            )
        if (s["nodata"] is None) != (first["nodata"] is None):
            raise InputFileError(
                f"{s['path']} and {first['path']} differ in declaring nodata; set one value on "
                "all (gdal_edit.py -a_nodata 0 FILE) so overlaps are blended consistently."
            )
    a, e = first["transform"].a, first["transform"].e
    x0, y0 = first["transform"].c, first["transform"].f
    offsets = []
    for s in scenes:
        t = s["transform"]
        if (t.a, t.e) != (a, e):
            raise GridMismatchError(
                f"{s['path']} has pixels {t.a} x {-t.e} but {first['path']} {a} x {-e}: {fix}."
            )
        col, row = (t.c - x0) / a, (t.f - y0) / e
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise GridMismatchError(
                f"{s['path']} lies {col:.3f} columns, {row:.3f} rows from {first['path']}, off its "
                f"pixel grid: {fix}."
            )
        offsets.append((round(row), round(col)))
    top = min(r for r, _ in offsets)
    left = min(c for _, c in offsets)
    bottom = max(r + s["height"] for (r, _), s in zip(offsets, scenes, strict=True))
    right = max(c + s["width"] for (_, c), s in zip(offsets, scenes, strict=True))
    sources = [
        VrtSource(str(s["path"].absolute()), r - top, c - left, s["height"], s["width"])
        for (r, c), s in zip(offsets, scenes, strict=True)
    ]
    height, width = bottom - top, right - left
    nodata = first["nodata"]
    parts = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"<SRS>{escape(first['crs_wkt'])}</SRS>",
        f"<GeoTransform>{x0 + left * a!r}, {a!r}, 0.0, {y0 + top * e!r}, 0.0, {e!r}</GeoTransform>",
    ]
    vrt_type = VRT_TYPES[first["dtype"]]
    for band in range(1, first["count"] + 1):
        parts.append(f'<VRTRasterBand dataType="{vrt_type}" band="{band}">')
        name = first["descriptions"][band - 1]
        if name:
            parts.append(f"<Description>{escape(name)}</Description>")
        if nodata is not None:
            parts.append(f"<NoDataValue>{_number(nodata)}</NoDataValue>")
        tag = "SimpleSource" if nodata is None else "ComplexSource"
        parts += [_source_xml(tag, s, str(band), nodata) for s in sources]
        parts.append("</VRTRasterBand>")
    if nodata is None:  # no value says "no scene here": a mask does
        parts.append('<MaskBand><VRTRasterBand dataType="Byte">')
        parts += [_source_xml("SimpleSource", s, "mask,1", None) for s in sources]
        parts.append("</VRTRasterBand></MaskBand>")
    parts.append("</VRTDataset>")
    return write_text_atomic(Path(out), "\n".join(parts) + "\n")


def _describe(path: Path) -> dict:
    if not path.is_file():
        raise InputFileError(f"mosaic scene {path} does not exist; check the path.")
    try:
        with open_raster(path, what="mosaic scene") as ds:
            if ds.crs is None:
                raise CRSError(f"{path} has no CRS; assign one (gdal_edit.py -a_srs EPSG:...).")
            t = ds.transform
            if t.b or t.d or not math.isfinite(t.a):
                raise CRSError(f"{path} has a rotated transform; warp it north-up (gdalwarp).")
            dtypes = set(ds.dtypes)
            if len(dtypes) > 1:
                raise InputFileError(f"{path} mixes band data types {dtypes}; expected one.")
            values = set(ds.nodatavals)
            return {
                "path": path,
                "crs": ds.crs,
                "crs_wkt": ds.crs.to_wkt(),
                "transform": t,
                "height": ds.height,
                "width": ds.width,
                "count": ds.count,
                "dtype": dtypes.pop(),
                "nodata": values.pop() if len(values) == 1 else None,
                "descriptions": ds.descriptions,
            }
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(
            f"mosaic scene {path} cannot be read as a raster ({exc}); give GeoTIFF/COG/VRT files."
        ) from exc
