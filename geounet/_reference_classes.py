"""Reference classes the prediction's scheme lacks: found, then refused or scored as missed.

:func:`geounet.evaluate.evaluate_prediction` lets them through the confusion pass as extra
reference ids ``K, K+1, ...`` (rows only: the prediction never has them), then
:func:`fold_unknown` refuses them or scores them as classes that are never predicted.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal

import numpy as np

from geounet.classes import SCHEME_TAG, ClassMap, ClassScheme
from geounet.errors import LabelError, ReferenceClassError
from geounet.raster import _open
from geounet.vectorize import read_class_scheme

log = logging.getLogger(__name__)

UnknownClasses = Literal["error", "miss"]
"""What :func:`geounet.evaluate.evaluate_prediction` does with reference classes the
prediction lacks."""


def raster_value_names(path: Path, scheme: ClassScheme) -> list[str]:
    """Names of the raster values ``K..ignore-1``: from the reference's own scheme, or ``value N``.

    A reference written by geounet carries its scheme (``GEOUNET_CLASSES``); its classes past
    the prediction's ids are named by it.
    """
    with _open(path) as src:
        raw = src.tags().get(SCHEME_TAG)
    theirs = read_class_scheme({SCHEME_TAG: raw}, str(path)).names if raw else []
    return [
        f"{theirs[v]!r} (value {v})" if v < len(theirs) else f"value {v}"
        for v in range(scheme.num_classes, scheme.ignore_index)
    ]


def with_unknown_values(
    path: Path, scheme: ClassScheme, cmap: ClassMap, column: str | None
) -> tuple[ClassMap, list[str]]:
    """The identity class map extended with the polygons' values that are no class of ``scheme``."""
    import pyogrio

    column = column or cmap.column
    try:
        fields = list(pyogrio.read_info(path)["fields"])
    except Exception:  # pyogrio raises several error types; load_labels reports them
        return cmap, []
    if column is None or column not in fields:
        return cmap, []  # load_labels names the missing column
    frame = pyogrio.read_dataframe(path, columns=[column], read_geometry=False)
    values = sorted({str(v) for v in frame[column].dropna()} - set(cmap.values))
    room = scheme.ignore_index - scheme.num_classes
    if len(values) > room:
        raise LabelError(
            f"{len(values)} values of {column!r} in {path} are no class of the prediction "
            f"{scheme.names} (e.g. {values[:5]}); give a class map (--class-map)."
        )
    ids = {v: scheme.num_classes + i for i, v in enumerate(values)}
    return dataclasses.replace(cmap, values={**cmap.values, **ids}), [repr(v) for v in values]


def fold_unknown(
    full: np.ndarray,
    scheme: ClassScheme,
    extra: list[str],
    mode: UnknownClasses,
    files: tuple[Path, Path],
) -> tuple[np.ndarray, list[str]]:
    """The square confusion matrix and class names, once the unknown reference classes are judged.

    Unknown classes with no evaluated pixel are dropped (absent from the compared ground).
    """
    k = scheme.num_classes
    support = full[k:].sum(axis=1)
    present = [i for i in range(len(extra)) if support[i] > 0]
    if not present:
        return full[:k], list(scheme.names)
    listed = ", ".join(f"{extra[i]} ({int(support[i])} px)" for i in present)
    if mode == "error":
        raise ReferenceClassError(
            f"the reference {files[1]} labels ground with class(es) {listed} that the "
            f"prediction {files[0]} does not have (its classes: {scheme.names}). Map them to the "
            "prediction's classes with a class map (--class-map), or pass --unknown-classes miss "
            "(unknown_classes: miss) to count their pixels as missed."
        )
    log.warning("reference classes the prediction lacks, counted as missed: %s", listed)
    n = k + len(present)
    cm = np.zeros((n, n), dtype=np.int64)
    cm[:k, :k] = full[:k]
    for j, i in enumerate(present):
        cm[k + j, :k] = full[k + i]
    names = [*scheme.names, *(_class_label(extra[i]) for i in present)]
    return cm, names


def _class_label(description: str) -> str:
    """A metrics key for an unknown class: its name or value without quotes."""
    return description.split(" (value ")[0].strip("'\"").replace(" ", "_")
