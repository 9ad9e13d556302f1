"""The chips folder: one type that writes and reads its layout.

A chips folder is what ``geounet tile`` writes and every later stage reads::

    images/<chip_id>.tif   labels/<chip_id>.tif   index.gpkg
    classes.json           the class scheme
    stats.json             per-band statistics; its ``bands`` is THE band list of the folder
    tiling.json            scene(s), options, counts, display bands, labelled pixels

Band names are stored once, in ``stats.json`` (the statistics are per band, in that order);
the scene records of ``tiling.json`` leave them out, and :attr:`ChipsFolder.bands` is where
readers get them. Folders written before that still hold them in ``tiling.json`` too; they
read the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geounet._documents import read_json
from geounet.classes import ClassScheme
from geounet.errors import InputFileError

IMAGES_DIR = "images"
LABELS_DIR = "labels"
INDEX_FILE = "index.gpkg"
CLASSES_FILE = "classes.json"
STATS_FILE = "stats.json"
TILING_FILE = "tiling.json"

METADATA_FILES = (TILING_FILE, INDEX_FILE, STATS_FILE, CLASSES_FILE)
"""The files describing the chips (beside the ``images/`` and ``labels/`` folders)."""

_FIX = "Is {root} a chips folder written by `geounet tile`? Re-run `geounet tile` to rewrite it"


@dataclass(frozen=True)
class ChipsFolder:
    """A chips folder on disk: where each part lives, and its documents read once.

    Attributes:
        path: The folder.
    """

    path: Path
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def open(cls, path: str | Path) -> ChipsFolder:
        """A chips folder that must exist (its files are read when first asked for).

        Raises:
            InputFileError: The folder does not exist.
        """
        root = Path(path)
        if not root.is_dir():
            raise InputFileError(f"chips folder {root} does not exist; run `geounet tile` first.")
        return cls(root)

    def file(self, name: str) -> Path:
        """The path of one of the folder's files (``images/...``, ``index.gpkg``)."""
        return self.path / name

    def _document(self, name: str) -> dict[str, Any]:
        if name not in self._cache:
            self._cache[name] = read_json(
                self.path / name, what="chips folder file", fix=_FIX.format(root=self.path) + "."
            )
        return self._cache[name]

    @property
    def stats(self) -> dict[str, Any]:
        """``stats.json``: per-band statistics and the band list."""
        return self._document(STATS_FILE)

    @property
    def tiling(self) -> dict[str, Any]:
        """``tiling.json``: scene(s), options, counts, display bands."""
        return self._document(TILING_FILE)

    @property
    def options(self) -> dict[str, Any]:
        """The tiling options the folder was written with (``tiling.json`` ``options``)."""
        options = self.tiling.get("options")
        if not isinstance(options, dict):
            raise InputFileError(
                f"{self.path / TILING_FILE} has no tiling options; "
                + _FIX.format(root=self.path)
                + "."
            )
        return options

    @property
    def classes(self) -> ClassScheme:
        """The class scheme (``classes.json``)."""
        return ClassScheme.from_dict(self._document(CLASSES_FILE))

    @property
    def bands(self) -> tuple[str, ...]:
        """The band names of every chip, in order (stored once, in ``stats.json``)."""
        return tuple(str(b) for b in self.stats.get("bands", []))

    @property
    def scene(self) -> dict[str, Any]:
        """The first (or only) scene's record: name, paths, CRS, transform, shape, nodata."""
        return dict(self.tiling.get("scene") or {})

    @property
    def scene_paths(self) -> list[str]:
        """The files of the first (or only) scene (for its product metadata)."""
        return list(self.scene.get("paths") or [])

    def index(self) -> Any:
        """``index.gpkg`` (layer ``chips``) as a GeoDataFrame: one row per chip."""
        import geopandas as gpd  # only where the index is read: predict never needs it

        return gpd.read_file(self.path / INDEX_FILE, layer="chips")

    def scenes(self) -> list[dict[str, Any]]:
        """The scenes of the folder: ``name``, ``scene`` (its grid), ``split`` and ``splits``.

        A folder tiled before scenes were recorded holds one, named after its scene.
        """
        meta = self.tiling
        if meta.get("scenes"):
            return list(meta["scenes"])
        scene = meta["scene"]
        return [
            {"name": scene["name"], "scene": scene, "split": "blocks", "splits": meta["splits"]}
        ]

    def block_px(self) -> int:
        """Spatial split block side in pixels: split block chips x stride."""
        options = self.options
        try:
            stride = options.get("stride") or options["chip_size"]
        except KeyError as exc:
            raise InputFileError(
                f"{self.path / TILING_FILE} lacks the option {exc}; "
                + _FIX.format(root=self.path)
                + "."
            ) from None
        return int(options.get("split_block_chips", 1)) * int(stride)

    # --- writing ----------------------------------------------------------------------------

    def write_documents(
        self, *, stats: Mapping[str, Any], classes: ClassScheme, tiling: Mapping[str, Any]
    ) -> None:
        """Write ``stats.json``, ``classes.json`` and ``tiling.json`` (into a staged folder).

        The tiler calls it on its work folder (:func:`geounet._files.staged_output`), so the
        three appear with the chips as one set. Band names stay in ``stats`` only: the scene
        records of ``tiling`` are written without theirs.
        """
        if "bands" not in stats:
            raise ValueError("stats must hold the band names (`bands`): they are stored there.")
        (self.path / STATS_FILE).write_text(json.dumps(dict(stats), indent=2) + "\n")
        classes.write_json(self.path / CLASSES_FILE)
        meta = dict(tiling)
        if isinstance(meta.get("scene"), Mapping):
            meta["scene"] = _without_bands(meta["scene"])
        if isinstance(meta.get("scenes"), list):
            meta["scenes"] = [
                {**entry, "scene": _without_bands(entry["scene"])} if "scene" in entry else entry
                for entry in meta["scenes"]
            ]
        (self.path / TILING_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        self._cache.clear()


def _without_bands(scene: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scene.items() if k != "bands"}
