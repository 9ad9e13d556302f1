"""Pixel and object metrics of a class raster against reference labels (raster or polygons).

Pixel metrics come from a ``K x K`` confusion matrix (rows = reference, columns = prediction)
accumulated block by block, so memory is bounded by one block whatever the raster size. The
reference is brought onto the prediction's grid with :func:`geounet.labels.load_labels`: a class
raster is resampled (nearest), polygons are rasterised (pixel-centre rule) and reprojected first
when they are in another CRS. A pixel is **excluded** when the reference or the prediction is the
ignore index (255) or the prediction's nodata: unlabelled ground (no reference polygon covers
it, an unmapped attribute value, outside the reference raster) and unpredicted ground (scene
nodata) count for no class.

Per class ``c``, with ``TP`` the diagonal, ``FP`` the rest of column ``c``, ``FN`` the rest of
row ``c`` (``support = TP + FN``, ``predicted = TP + FP``)::

    IoU = TP / (TP + FP + FN)      precision = TP / (TP + FP)
    F1  = 2 TP / (2 TP + FP + FN)  recall    = TP / (TP + FN)

A class with no support and never predicted has every metric ``None`` (JSON ``null``). A class
with support that is never predicted has precision 0 (it was missed, as scikit-learn's
``zero_division=0``); a class predicted without support has recall ``None``. The means are
macro means over the classes **with support** (listed in ``mean["classes"]``): a class absent
from the reference says nothing about how well it is mapped, and its false positives already
lower the other classes' recall. Overall accuracy is the trace over the evaluated pixels.

Object metrics, for chosen classes (default: ``building`` and ``field``): predicted objects are
the 4-connected regions of the class in the prediction (:func:`geounet.vectorize.vectorize_raster`,
block-wise and seam-exact); reference objects are the polygons themselves for a vector reference
(clipped to the prediction's extent), else the regions of the resampled reference raster.
Predicted and reference objects are matched one to one, greedily by decreasing IoU, a pair
counting when its IoU is at least ``iou_threshold``; ``TP`` is the number of matches,
precision ``TP / n_pred``, recall ``TP / n_ref``, F1 ``2 TP / (n_pred + n_ref)``. Reference
polygons are taken as complete over the prediction's extent (a predicted building no polygon
matches is a false positive); a reference raster only over the pixels it labels: predicted
objects are cut to that ground (ignore and nodata pixels, or areas outside its extent, are not
judged), so a reference holding one split of a scene scores the prediction on that split
only. The objects of the chosen classes are held in memory (polygons: far less than the
raster).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window

from geounet._files import write_text_atomic
from geounet._reference_classes import (
    UnknownClasses,
    fold_unknown,
    raster_value_names,
    with_unknown_values,
)
from geounet.classes import SCHEME_TAG, ClassMap, ClassScheme, no_negatives_message
from geounet.errors import ConfigError, InputFileError, LabelError, OutputError
from geounet.grid import Chip
from geounet.labels import RASTER_SUFFIXES, LabelSource, RasterLabels, VectorLabels, load_labels
from geounet.raster import GDAL_ENV, SceneInfo, _open, open_block_writer, open_scene
from geounet.vectorize import LAYER_NAME, read_class_scheme, vectorize_raster

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OBJECT_CLASSES",
    "UnknownClasses",
    "check_output_path",
    "evaluate_prediction",
    "match_objects",
    "metrics_from_confusion",
    "write_metrics",
]

DEFAULT_OBJECT_CLASSES = ("building", "field")
"""Classes given object metrics by default, those of them that the scheme has."""

_BLOCK_SIZE = 1024  # block edge of the confusion pass and of polygonising, in pixels
_IOU_TOLERANCE = 1e-9  # so an IoU of exactly the threshold on a float grid still matches


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def _scores(tp: int, n_pred: int, n_ref: int) -> dict[str, float | None]:
    """IoU, F1, precision, recall from counts, with the module docstring's null rules."""
    if n_pred == 0 and n_ref == 0:
        return {"iou": None, "f1": None, "precision": None, "recall": None}
    return {
        "iou": _ratio(tp, n_pred + n_ref - tp),
        "f1": _ratio(2 * tp, n_pred + n_ref),
        "precision": _ratio(tp, n_pred) if n_pred else 0.0,
        "recall": _ratio(tp, n_ref),
    }


def metrics_from_confusion(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class, mean and overall pixel metrics from a confusion matrix.

    Args:
        cm: ``(K, K)`` non-negative integer counts, rows = reference, columns = prediction.
        class_names: The ``K`` class names, in id order.

    Returns:
        A JSON-ready dict: ``classes`` (names), ``per_class`` (name -> ``iou``, ``f1``,
        ``precision``, ``recall``, ``support``, ``predicted``), ``mean`` (macro means over the
        classes with support, and those ``classes``), ``overall_accuracy`` (``None`` when no
        pixel was counted), ``pixels_evaluated`` and ``confusion_matrix`` (``classes``,
        ``rows: "reference"``, ``columns: "prediction"``, ``matrix`` as nested lists). The
        definitions and null rules are in the module docstring.

    Raises:
        ValueError: ``cm`` is not square, holds negative or non-integer counts, or does not
            match ``class_names``.
    """
    cm = np.asarray(cm)
    names = list(class_names)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError(
            f"confusion matrix of shape {cm.shape} does not fit {len(names)} class names "
            f"{names}; expected ({len(names)}, {len(names)})."
        )
    if cm.size and (not np.issubdtype(cm.dtype, np.integer) or cm.min() < 0):
        raise ValueError(f"confusion matrix must hold non-negative integer counts, got {cm.dtype}.")
    cm = cm.astype(np.int64)
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        scores = _scores(int(tp[k]), int(predicted[k]), int(support[k]))
        per_class[name] = {**scores, "support": int(support[k]), "predicted": int(predicted[k])}
    present = [n for k, n in enumerate(names) if support[k] > 0]
    mean: dict[str, Any] = {
        key: (float(np.mean([per_class[n][key] for n in present])) if present else None)
        for key in ("iou", "f1", "precision", "recall")
    }
    mean["classes"] = present
    total = int(cm.sum())
    return {
        "classes": names,
        "per_class": per_class,
        "mean": mean,
        "overall_accuracy": _ratio(int(tp.sum()), total),
        "pixels_evaluated": total,
        "confusion_matrix": {
            "classes": names,
            "rows": "reference",
            "columns": "prediction",
            "matrix": cm.tolist(),
        },
    }


def match_objects(
    predicted: Sequence[Any] | np.ndarray,
    reference: Sequence[Any] | np.ndarray,
    *,
    iou_threshold: float = 0.5,
) -> list[tuple[int, int, float]]:
    """Match predicted to reference polygons one to one, greedily by decreasing IoU.

    Candidate pairs are the intersecting ones (an STRtree query); pairs are taken in order of
    decreasing IoU (ties: lower predicted index first) while both objects are unmatched and the
    IoU is at least ``iou_threshold`` (within 1e-9). Above 0.5 the greedy choice is the only one.

    Args:
        predicted: Predicted shapely polygons, in one CRS with ``reference``.
        reference: Reference shapely polygons.
        iou_threshold: Smallest IoU of a match, in (0, 1].

    Returns:
        ``(predicted_index, reference_index, iou)`` of each match, by decreasing IoU.

    Raises:
        ValueError: ``iou_threshold`` is not in (0, 1].
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")
    pred = np.asarray(predicted, dtype=object)
    ref = np.asarray(reference, dtype=object)
    if not len(pred) or not len(ref):
        return []
    pi, ri = shapely.STRtree(ref).query(pred, predicate="intersects")
    inter = shapely.area(shapely.intersection(pred[pi], ref[ri]))
    union = shapely.area(pred)[pi] + shapely.area(ref)[ri] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    matches: list[tuple[int, int, float]] = []
    used_pred: set[int] = set()
    used_ref: set[int] = set()
    for k in np.lexsort((pi, -iou)):
        if iou[k] < iou_threshold - _IOU_TOLERANCE:
            break
        p, r = int(pi[k]), int(ri[k])
        if p not in used_pred and r not in used_ref:
            used_pred.add(p)
            used_ref.add(r)
            matches.append((p, r, float(iou[k])))
    return matches


def evaluate_prediction(
    prediction: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    *,
    class_map: ClassMap | None = None,
    class_column: str | None = None,
    object_classes: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
    min_area_m2: float = 0.0,
    unknown_classes: UnknownClasses = "error",
) -> dict[str, Any]:
    """Pixel and object metrics of a class raster against reference labels.

    Args:
        prediction: Single-band uint8 class raster (``classes.tif`` of ``geounet predict``);
            its class scheme is read from the ``GEOUNET_CLASSES`` tag (default scheme without).
        reference: A class raster on any grid (resampled nearest onto the prediction's grid)
            or polygons (GeoPackage, GeoJSON, Shapefile; reprojected to the prediction's CRS).
        class_map: Maps reference attribute (or raster) values to classes; its scheme must have
            the prediction's class names. Default: values are class ids (raster), or class ids
            or names (polygons).
        class_column: Attribute of the polygons holding the class values (default: the class
            map's ``column``).
        object_classes: Class names given object metrics; default ``building`` and ``field``
            where the scheme has them; empty for none.
        iou_threshold: Smallest IoU of an object match, in (0, 1].
        min_area_m2: Objects (predicted or reference) smaller than this are ignored.
        unknown_classes: What to do when the reference labels ground with a class the
            prediction's scheme lacks (a raster value outside its ids, a polygon value that is
            none of its ids or names; without ``class_map``, which states what is mapped):
            ``"error"`` refuses, naming the classes and both files; ``"miss"`` scores each
            such class as one more class that is never predicted (every pixel of it missed).

    Returns:
        JSON-ready metrics: ``prediction``, ``reference``, ``reference_kind`` (``"raster"`` or
        ``"vector"``), ``crs``, ``shape``, ``pixels_total``, ``pixels_excluded``, everything
        :func:`metrics_from_confusion` returns, ``absent_classes`` (classes without a
        reference pixel: no IoU, left out of the means), ``warnings`` (e.g. a reference holding
        one class only: no negatives, a meaningless score), and ``objects`` (``iou_threshold``,
        ``min_area_m2`` and per class ``n_pred``, ``n_ref``, ``tp``, ``fp``, ``fn``,
        ``precision``, ``recall``, ``f1``, ``mean_matched_iou``).

    Raises:
        InputFileError: A file is missing or unreadable, or the prediction is not a uint8
            class raster of its scheme.
        CRSError: The prediction or the reference has no CRS.
        LabelError: The reference does not overlap the prediction (no pixel valid in both),
            its class map's scheme differs, or its class column is missing.
        ReferenceClassError: The reference holds a class the prediction lacks (and
            ``unknown_classes`` is ``"error"``).
        ConfigError: An unknown object class, or a bad threshold or area.
    """
    if not 0 < iou_threshold <= 1 or min_area_m2 < 0:
        raise ConfigError(
            f"iou_threshold must be in (0, 1] and min_area_m2 >= 0, got {iou_threshold} and "
            f"{min_area_m2}."
        )
    if unknown_classes not in ("error", "miss"):
        raise ConfigError(f"unknown_classes must be 'error' or 'miss', got {unknown_classes!r}.")
    pred_path, ref_path = Path(prediction), Path(reference)
    scene, scheme = _open_prediction(pred_path)
    if not ref_path.exists():
        raise InputFileError(f"reference {ref_path} does not exist; check the path.")
    cmap = _reference_class_map(ref_path, scheme, class_map)
    extra: list[str] = []  # reference classes the prediction lacks, ids K, K+1, ...
    if class_map is None and ref_path.suffix.lower() not in RASTER_SUFFIXES:
        cmap, extra = with_unknown_values(ref_path, scheme, cmap, class_column)
    source = load_labels(ref_path, scene, cmap, column=class_column)
    if class_map is None and isinstance(source, RasterLabels):
        # Every value below the ignore index passes, so values the scheme lacks can be told.
        source = dataclasses.replace(source, num_classes=scheme.ignore_index)
        extra = raster_value_names(ref_path, scheme)
    object_ids = _object_class_ids(scheme, object_classes)
    footprint = _raster_footprint(source, scene) if isinstance(source, RasterLabels) else None
    with tempfile.TemporaryDirectory(prefix="geounet-evaluate-") as tmp:
        # A raster reference may cover part of the prediction only (e.g. the test split): its
        # objects and the predicted ones are both taken from the ground it labels, so
        # predictions elsewhere are not counted as false positives.
        judged = None
        if object_ids and isinstance(source, RasterLabels):
            judged = (Path(tmp) / "reference.tif", Path(tmp) / "prediction.tif")
        full = _confusion_pass(scene, scheme, source, footprint, judged, len(extra))
        cm, names = fold_unknown(full, scheme, extra, unknown_classes, (pred_path, ref_path))
        if cm.sum() == 0:
            raise LabelError(
                f"no pixel of {pred_path} has both a prediction and a reference class in "
                f"{ref_path}; check that they cover the same place and that the reference "
                "values map to classes (--class-map, --class-column)."
            )
        metrics = metrics_from_confusion(cm, names)
        log.info(
            "%s vs %s: %d pixels evaluated, overall accuracy %.4f",
            pred_path,
            ref_path,
            metrics["pixels_evaluated"],
            metrics["overall_accuracy"],
        )
        objects = None
        if object_ids:
            ref_raster = judged[0] if judged else None
            refs = _reference_objects(source, scene, scheme, object_ids, ref_raster, min_area_m2)
            preds = _raster_objects(
                judged[1] if judged else pred_path,
                scheme,
                object_ids,
                Path(tmp) / "predicted.gpkg",
                min_area_m2,
            )
            objects = {
                "iou_threshold": iou_threshold,
                "min_area_m2": min_area_m2,
                "classes": {
                    scheme.names[k]: _object_scores(preds[k], refs[k], iou_threshold)
                    for k in object_ids
                },
            }
    total = scene.shape[0] * scene.shape[1]
    absent = [n for n in scheme.names if metrics["per_class"][n]["support"] == 0]
    if absent:
        log.info("classes absent from the reference %s: %s", ref_path, absent)
    no_negatives = no_negatives_message(metrics["mean"]["classes"], f"the reference {ref_path}")
    if no_negatives is not None:
        log.warning(no_negatives)
    return {
        "prediction": str(pred_path),
        "reference": str(ref_path),
        "reference_kind": "raster" if isinstance(source, RasterLabels) else "vector",
        "crs": scene.crs.to_string(),
        "shape": list(scene.shape),
        "pixels_total": total,
        "pixels_excluded": total - metrics["pixels_evaluated"],
        **metrics,
        "absent_classes": absent,
        "warnings": [no_negatives] if no_negatives is not None else [],
        "objects": objects,
    }


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Check that a metrics file can be written at ``path``, before anything is computed.

    A real (temporary) file is written: permission bits alone miss read-only mounts and root.

    Raises:
        OutputError: The folder does not exist, is not a folder or is not writable.
    """
    out = Path(path)
    if not out.parent.is_dir():
        raise OutputError(
            f"cannot write {out}: folder {out.parent} does not exist; create it or choose "
            "another --out."
        )
    try:
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write {out}: {exc.strerror} in {out.parent}; choose a writable --out."
        ) from exc
    return out


def write_metrics(metrics: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write metrics as indented JSON, atomically (a temporary file renamed into place).

    Args:
        metrics: What :func:`evaluate_prediction` returned (JSON-ready; ``None`` -> ``null``).
        path: The ``.json`` file to write; an existing one is replaced.

    Returns:
        The written path.

    Raises:
        OutputError: The folder does not exist or is not writable.
    """
    out = check_output_path(path)
    return write_text_atomic(out, json.dumps(metrics, indent=2, allow_nan=False) + "\n")


def _open_prediction(path: Path) -> tuple[SceneInfo, ClassScheme]:
    """The prediction's grid and class scheme, checked."""
    if not path.is_file():
        raise InputFileError(
            f"prediction {path} does not exist; pass the classes.tif written by `geounet predict`."
        )
    scene = open_scene(path)
    if scene.count != 1 or scene.dtype != "uint8":
        raise InputFileError(
            f"prediction {path} has {scene.count} band(s) of {scene.dtype}; expected one uint8 "
            "band of class ids (the classes.tif of `geounet predict`)."
        )
    with _open(path) as src:
        scheme = read_class_scheme(src.tags(), str(path))
    return scene, scheme


def _reference_class_map(path: Path, scheme: ClassScheme, class_map: ClassMap | None) -> ClassMap:
    """The given class map (checked against the scheme) or the identity one."""
    if class_map is not None:
        theirs = (class_map.scheme.names, class_map.scheme.ignore_index)
        if theirs != (scheme.names, scheme.ignore_index):
            raise LabelError(
                f"the class map's classes {theirs[0]} (ignore {theirs[1]}) differ from the "
                f"prediction's {scheme.names} (ignore {scheme.ignore_index}); give a class map "
                f"with the prediction's classes."
            )
        return class_map
    if path.suffix.lower() in RASTER_SUFFIXES:
        return ClassMap(scheme)  # raster values are class ids
    values = {str(c.id): c.id for c in scheme.classes} | {c.name: c.id for c in scheme.classes}
    return ClassMap(scheme, values)


def _object_class_ids(scheme: ClassScheme, names: Sequence[str] | None) -> list[int]:
    """Ids of the object classes; unknown names fail with a hint."""
    if names is None:
        return [scheme.id_of(n) for n in DEFAULT_OBJECT_CLASSES if n in scheme.names]
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in scheme.names:
            close = difflib.get_close_matches(name, scheme.names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown object class {name!r}; the scheme has {scheme.names}.{hint}"
            )
    return sorted({scheme.id_of(n) for n in names})


def _raster_footprint(source: RasterLabels, scene: SceneInfo) -> shapely.Geometry:
    """The reference raster's extent in the prediction CRS.

    Resampling fills ground the reference does not cover with its nodata, or with 0 (a class)
    when it has none; masking with the footprint keeps that ground out of the metrics.
    """
    from rasterio.warp import transform_geom

    with _open(source.path) as src:
        outline, crs = shapely.box(*src.bounds), src.crs
    if crs == scene.crs:
        return outline
    # Densified so that the curved edges of the reprojected outline are followed.
    dense = shapely.segmentize(outline, (outline.bounds[2] - outline.bounds[0]) / 256)
    geom = transform_geom(crs, scene.crs, shapely.geometry.mapping(dense))
    return shapely.geometry.shape(geom)


def _iter_blocks(scene: SceneInfo) -> Iterator[Chip]:
    """Square blocks tiling the prediction exactly once, the last ones clipped at the edge."""
    height, width = scene.shape
    for i, row in enumerate(range(0, height, _BLOCK_SIZE)):
        for j, col in enumerate(range(0, width, _BLOCK_SIZE)):
            window = Window(col, row, min(_BLOCK_SIZE, width - col), min(_BLOCK_SIZE, height - row))
            yield Chip(window, scene.grid[window].transform, scene.crs, i, j)


def _confusion_pass(
    scene: SceneInfo,
    scheme: ClassScheme,
    source: LabelSource,
    footprint: shapely.Geometry | None,
    judged: tuple[Path, Path] | None,
    unknown: int,
) -> np.ndarray:
    """Accumulate the confusion matrix block by block: ``(K + unknown, K)`` counts.

    Reference ids ``K..K+unknown-1`` are classes the prediction lacks (rows only). With
    ``judged`` (two paths), also write the reference resampled onto the prediction grid (its
    unknown classes as ignore) and the prediction masked to the ground that reference labels.
    """
    k, ignore = scheme.num_classes, scheme.ignore_index
    rows = k + unknown
    cm = np.zeros(rows * k, dtype=np.int64)
    writers = []
    for path in judged or ():
        writer = open_block_writer(path, like=scene, count=1, dtype="uint8", nodata=ignore)
        writer.update_tags(**{SCHEME_TAG: json.dumps(scheme.to_dict())})
        writers.append(writer)
    try:
        with rasterio.Env(**GDAL_ENV):
            for chip in _iter_blocks(scene):
                pred = scene.read(chip.window)[0]
                ref = source.mask(chip)
                if footprint is not None and not footprint.contains(shapely.box(*chip.bounds)):
                    inside = rasterize(
                        [(footprint, 1)],
                        out_shape=chip.shape,
                        transform=chip.transform,
                        fill=0,
                        dtype="uint8",
                    )
                    ref = np.where(inside == 1, ref, np.uint8(ignore))
                if writers:
                    known = np.where(ref < k, ref, np.uint8(ignore)).astype(np.uint8)
                    writers[0].write(known, 1, window=chip.window)
                    masked = np.where(ref != ignore, pred, np.uint8(ignore))
                    writers[1].write(masked.astype(np.uint8), 1, window=chip.window)
                valid = (pred != ignore) & (ref != ignore)
                if scene.nodata is not None:
                    valid &= pred != scene.nodata
                p, r = pred[valid].astype(np.int64), ref[valid].astype(np.int64)
                if p.size and p.max() >= k:
                    raise InputFileError(
                        f"prediction {scene.paths[0]} holds class id {int(p.max())}, but its "
                        f"scheme has {k} classes {scheme.names}; is it a geounet class raster?"
                    )
                cm += np.bincount(r * k + p, minlength=rows * k)[: rows * k]
    finally:
        for writer in writers:
            writer.close()
    return cm.reshape(rows, k)


def _raster_objects(
    path: Path, scheme: ClassScheme, ids: list[int], gpkg: Path, min_area_m2: float
) -> dict[int, np.ndarray]:
    """4-connected regions of a class raster, per class id, as shapely polygons."""
    import pyogrio

    vectorize_raster(
        path,
        gpkg,
        min_area_m2=min_area_m2,
        classes=[scheme.names[k] for k in ids],
        block_size=_BLOCK_SIZE,
    )
    frame = pyogrio.read_dataframe(gpkg, layer=LAYER_NAME, columns=["class_id"])
    class_id, geoms = frame["class_id"].to_numpy(), frame.geometry.to_numpy()
    return {k: geoms[class_id == k] for k in ids}


def _reference_objects(
    source: LabelSource,
    scene: SceneInfo,
    scheme: ClassScheme,
    ids: list[int],
    ref_raster: Path | None,
    min_area_m2: float,
) -> dict[int, np.ndarray]:
    """Reference objects per class: the polygons clipped to the prediction, or raster regions."""
    if isinstance(source, VectorLabels):
        frame = source.frame[source.frame["class_id"].isin(ids)]
        geoms = frame.geometry.to_numpy()
        invalid = ~shapely.is_valid(geoms)
        geoms[invalid] = shapely.make_valid(geoms[invalid])
        geoms = shapely.intersection(geoms, shapely.box(*scene.bounds))
        keep = shapely.area(geoms) > 0
        if min_area_m2 > 0:
            keep &= _areas_m2(geoms, frame.crs) >= min_area_m2
        class_id = frame["class_id"].to_numpy()
        return {k: geoms[keep & (class_id == k)] for k in ids}
    if ref_raster is None:
        raise ValueError("a raster reference needs its resampled copy for object metrics.")
    return _raster_objects(ref_raster, scheme, ids, ref_raster.with_suffix(".gpkg"), min_area_m2)


def _areas_m2(geoms: np.ndarray, crs: Any) -> np.ndarray:
    """Areas in m2: planar in a projected CRS (unit converted), geodesic in a geographic one."""
    if crs.is_geographic:
        geod = crs.get_geod()
        return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geoms], dtype=float)
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return shapely.area(geoms) * factor**2


def _object_scores(pred: np.ndarray, ref: np.ndarray, iou_threshold: float) -> dict[str, Any]:
    """Object counts and scores of one class."""
    matches = match_objects(pred, ref, iou_threshold=iou_threshold)
    tp, n_pred, n_ref = len(matches), len(pred), len(ref)
    scores = _scores(tp, n_pred, n_ref)
    return {
        "n_pred": n_pred,
        "n_ref": n_ref,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_ref - tp,
        "precision": scores["precision"],
        "recall": scores["recall"],
        "f1": scores["f1"],
        "mean_matched_iou": float(np.mean([m[2] for m in matches])) if matches else None,
    }
