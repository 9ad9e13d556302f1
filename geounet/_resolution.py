"""Is a scene's pixel size the one a model was trained on? Compared in metres, CRS units aside.

A U-Net learns shapes at one scale: a 60 m scene shown to a 10 m model (or a 10 m scene in
degrees) gives confident nonsense. Pixel sizes are turned into metres first: a projected CRS by
its linear unit (feet too), a geographic one (degrees) approximately at the scene's centre
latitude on the WGS84 ellipsoid (metres per degree of longitude shrink with ``cos(lat)``), so a
scene in EPSG:4326 whose pixels are about 10 m on the ground still suits a 10 m model. A model
without a CRS hint is taken to have been trained in metres. A scene whose pixels differ from the
model's by more than :data:`MAX_RESOLUTION_RATIO` along either axis is refused unless the caller
allows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rasterio.crs import CRS

from geounet.errors import ResolutionMismatchError
from geounet.raster import SceneInfo

MAX_RESOLUTION_RATIO = 1.5
"""Largest accepted ratio between a scene's and the model's pixel size (either way, per axis)."""


def pixel_size_m(
    crs: CRS | None, res: Sequence[float], bounds: Sequence[float] | None = None
) -> tuple[float, float]:
    """The ground size ``(x, y)`` of a pixel in metres.

    Args:
        crs: The raster's CRS (``None``: its units are taken as metres).
        res: Pixel size ``(x, y)`` in CRS units.
        bounds: ``(left, bottom, right, top)``; for a geographic CRS its centre latitude sets
            the metres per degree (the equator when not given).

    Returns:
        Approximate metres per pixel along x and y.
    """
    rx, ry = abs(float(res[0])), abs(float(res[1]))
    if crs is None:
        return rx, ry
    if crs.is_geographic:
        lat = 0.0 if bounds is None else (bounds[1] + bounds[3]) / 2
        phi = math.radians(max(-90.0, min(90.0, lat)))
        # Metres per degree on WGS84 (series of the meridian and parallel arc lengths).
        per_lat = 111132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)
        per_lon = 111412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi)
        return rx * per_lon, ry * per_lat
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return rx * factor, ry * factor


def _describe(crs: CRS | None, res: Sequence[float], metres: tuple[float, float]) -> str:
    size = f"{metres[0]:.3g} x {metres[1]:.3g} m"
    if crs is not None and crs.is_geographic:
        return f"{size} ({res[0]:.3g} x {res[1]:.3g} degrees of {crs.to_string()})"
    return size


def check_scene_resolution(
    model_res: Sequence[float] | None,
    model_crs: str | CRS | None,
    scene: SceneInfo,
    *,
    allow: bool = False,
    option: str = "--allow-resolution-mismatch (allow_resolution_mismatch: true)",
) -> None:
    """Refuse a scene whose pixels are much larger or smaller on the ground than the model's.

    Args:
        model_res: The model's training pixel size ``(x, y)`` in ``model_crs`` units
            (``ModelMetadata.res``); ``None`` skips the check.
        model_crs: The training CRS (``ModelMetadata.crs_hint``; ``None``: metres).
        scene: The scene (its header: CRS, pixel size, bounds).
        allow: Accept any pixel size (the caller knows what it does).
        option: How the caller's user allows it, named in the message.

    Raises:
        ResolutionMismatchError: Along x or y the two sizes differ by more than
            :data:`MAX_RESOLUTION_RATIO`; the message gives both sizes and the fixes.
    """
    if allow or not model_res:
        return
    crs = CRS.from_user_input(model_crs) if model_crs else None
    scene_crs, scene_res, scene_bounds = scene.crs, scene.res, scene.bounds
    # A geographic model CRS has no centre of its own here: the scene's latitude stands in.
    model_m = pixel_size_m(crs, model_res, scene_bounds)
    scene_m = pixel_size_m(scene_crs, scene_res, scene_bounds)
    ratios = [max(s / m, m / s) for s, m in zip(scene_m, model_m, strict=True) if s > 0 and m > 0]
    worst = max(ratios, default=1.0)
    if worst <= MAX_RESOLUTION_RATIO:
        return
    where = scene.paths[0] if len(scene.paths) == 1 else f"{scene.name} ({', '.join(scene.paths)})"
    coarser = scene_m[0] * scene_m[1] > model_m[0] * model_m[1]
    target = crs.to_string() if crs is not None and not crs.is_geographic else "a metric CRS"
    tr = f"{model_res[0]:g} {model_res[1]:g}" if crs is None or not crs.is_geographic else "10 10"
    if scene_crs.is_geographic:
        fix = f"reproject it, e.g. `gdalwarp -t_srs {target} -tr {tr} -r bilinear in.tif out.tif`"
    else:
        fix = f"resample it, e.g. `gdalwarp -tr {tr} -r bilinear in.tif out.tif`"
    raise ResolutionMismatchError(
        f"scene {where} has pixels of {_describe(scene_crs, scene_res, scene_m)}, but the model "
        f"was trained on {_describe(crs, model_res, model_m)}: {worst:.1f}x "
        f"{'coarser' if coarser else 'finer'} (at most {MAX_RESOLUTION_RATIO}x is accepted). "
        f"Bring the scene to the model's pixel size first: {fix}; or pass {option} to "
        "predict at this pixel size anyway."
    )
