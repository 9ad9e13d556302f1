"""Pixel grids: :class:`Grid` (shape + transform + CRS) and the chip grid laid over a scene.

:class:`Grid` is the one description of "where the pixels are" that every stage shares (a
scene's, a chip's, a class raster's, a STAC asset's): slicing it by a window gives the window's
grid, as odc-geo's ``GeoBox[roi]`` does and as ``rasterio.windows.transform`` computes.

Count formula, per axis, for a scene of ``size`` pixels, chip ``chip`` and ``stride``::

    n = ceil((size - chip) / stride) + 1        (size >= chip)

The chips start at ``0, stride, 2*stride, ...``; the last one would pass the right/bottom edge,
so with ``edge="shift"`` (the default) it is shifted inward to end exactly at the edge (it then
overlaps its neighbour more; every chip is full-size and holds real data). With ``edge="pad"``
it stays on the stride lattice and its outer part is padded with nodata. A scene smaller than a
chip needs ``edge="pad"``. Duplicate offsets (when the shift lands on an existing chip) are
dropped, so no two chips are equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geounet.errors import ChipSizeError, GridMismatchError

EdgeMode = Literal["shift", "pad"]


@dataclass(frozen=True)
class Grid:
    """A raster's pixel grid: its shape, its transform and its CRS (an immutable value).

    ``grid[window]`` (a :class:`rasterio.windows.Window`, or ``(rows, cols)`` slices) is the
    grid of that window: its shape is the window's, its transform the grid's offset by the
    window, its CRS unchanged. Windows may reach past the edge (padded edge chips).

    Attributes:
        shape: ``(height, width)`` in pixels.
        transform: Pixel -> CRS affine transform (north-up in geounet).
        crs: The CRS (``None`` only while describing a file that lacks one, to refuse it).
    """

    shape: tuple[int, int]
    transform: Affine
    crs: CRS | None = None

    @classmethod
    def of(cls, thing: object) -> Grid:
        """The grid of a :class:`Grid`, a scene, a chip or an open rasterio dataset.

        Anything with a ``grid`` attribute, or with ``shape``, ``transform`` and ``crs``, works.
        """
        if isinstance(thing, Grid):
            return thing
        inner = getattr(thing, "grid", None)
        if isinstance(inner, Grid):
            return inner
        h, w = thing.shape  # type: ignore[attr-defined]
        return cls((int(h), int(w)), thing.transform, thing.crs)  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, record: dict[str, object]) -> Grid:
        """The grid of a JSON scene record (``shape``, ``transform`` list, ``crs`` as WKT).

        This is how ``tiling.json`` and :meth:`geounet.raster.SceneInfo.to_dict` store it.
        """
        height, width = record["shape"]  # type: ignore[misc]
        crs = record.get("crs")
        return cls(
            (int(height), int(width)),
            Affine(*record["transform"]),  # type: ignore[misc]
            CRS.from_user_input(crs) if crs else None,
        )

    @property
    def height(self) -> int:
        """Rows."""
        return self.shape[0]

    @property
    def width(self) -> int:
        """Columns."""
        return self.shape[1]

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (both positive)."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the CRS."""
        h, w = self.shape
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (w, h)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def __getitem__(self, window: Window | tuple[slice, slice]) -> Grid:
        if isinstance(window, tuple):
            rows, cols = window
            window = Window.from_slices(rows, cols, height=self.height, width=self.width)
        shape = (int(window.height), int(window.width))
        return Grid(shape, window_transform(window, self.transform), self.crs)

    def matches(self, other: Grid, *, tolerance: float | None = None) -> bool:
        """Same shape, CRS and transform (the transform within ``tolerance`` when given)."""
        if self.shape != other.shape or self.crs != other.crs:
            return False
        if tolerance is None:
            return self.transform == other.transform
        return self.transform.almost_equals(other.transform, precision=tolerance)

    def describe(self) -> str:
        """``crs, (height, width), (a, b, c, d, e, f)``: the grid as messages show it."""
        return f"{self.crs}, {self.shape}, {tuple(self.transform)[:6]}"

    def check_same(self, other: Grid, name: str, other_name: str) -> None:
        """Raise :class:`GridMismatchError` unless ``other`` is exactly this grid.

        Args:
            other: The grid that must match.
            name: What this grid belongs to, for the message.
            other_name: What ``other`` belongs to.
        """
        if not self.matches(other):
            raise GridMismatchError(
                f"{name} ({self.describe()}) and {other_name} ({other.describe()}) are on "
                "different grids."
            )


def axis_offsets(size: int, chip: int, stride: int, edge: EdgeMode = "shift") -> list[int]:
    """Chip start offsets along one axis (see the module docstring for the formula).

    Raises:
        ChipSizeError: Non-positive sizes, a stride larger than the chip (gaps), or a chip
            larger than the scene without ``edge="pad"``.
    """
    if chip <= 0 or stride <= 0:
        raise ChipSizeError(f"chip_size and stride must be positive, got {chip} and {stride}.")
    if stride > chip:
        raise ChipSizeError(
            f"stride {stride} is larger than chip_size {chip}: pixels between chips would be "
            "lost. Use stride <= chip_size."
        )
    if size < chip:
        if edge != "pad":
            raise ChipSizeError(
                f"chip_size {chip} is larger than the scene ({size} px on one axis). Use a "
                f"chip_size <= {size}, or edge='pad' (--edge pad) to pad it with nodata."
            )
        return [0]
    n = math.ceil((size - chip) / stride) + 1
    offsets = [i * stride for i in range(n)]
    if edge == "shift":
        offsets[-1] = size - chip
    return sorted(set(offsets))


@dataclass(frozen=True)
class Chip:
    """One chip: a window of the scene and its exact georeferencing.

    Attributes:
        window: Pixel window in the scene (may extend past the edge with ``edge="pad"``).
        transform: The scene transform offset by the window (``rasterio.windows.transform``).
        crs: The scene CRS, unchanged.
        grid_row: Row index of the chip in the grid.
        grid_col: Column index of the chip in the grid.
    """

    window: Window
    transform: Affine
    crs: CRS
    grid_row: int
    grid_col: int

    @property
    def row_off(self) -> int:
        """First scene row of the chip."""
        return int(self.window.row_off)

    @property
    def col_off(self) -> int:
        """First scene column of the chip."""
        return int(self.window.col_off)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (int(self.window.height), int(self.window.width))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the scene CRS."""
        return self.grid.bounds

    @property
    def grid(self) -> Grid:
        """The chip's own grid (its shape, transform and CRS)."""
        return Grid(self.shape, self.transform, self.crs)

    @property
    def chip_id(self) -> str:
        """Stable id from the pixel offsets, e.g. ``r000224_c001120``."""
        return f"r{self.row_off:06d}_c{self.col_off:06d}"


@dataclass(frozen=True)
class ChipGrid:
    """Chips of ``chip_size`` every ``stride`` pixels over a scene, in row-major order.

    Attributes:
        shape: Scene ``(height, width)``.
        transform: Scene transform.
        crs: Scene CRS.
        chip_size: Chip ``(height, width)`` in pixels.
        stride: Step ``(rows, cols)`` between chip starts, at most the chip size.
        edge: ``"shift"`` or ``"pad"``: how the last chip of a row/column meets the edge.
    """

    shape: tuple[int, int]
    transform: Affine
    crs: CRS
    chip_size: tuple[int, int]
    stride: tuple[int, int]
    edge: EdgeMode = "shift"

    def __post_init__(self) -> None:
        if self.edge not in ("shift", "pad"):
            raise ChipSizeError(f"edge must be 'shift' or 'pad', got {self.edge!r}.")
        # Validate early: building the offsets raises the helpful errors.
        self.row_offsets  # noqa: B018
        self.col_offsets  # noqa: B018

    @property
    def grid(self) -> Grid:
        """The scene's grid the chips are laid over."""
        return Grid(self.shape, self.transform, self.crs)

    @classmethod
    def from_scene(
        cls,
        scene: object,
        chip_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        edge: EdgeMode = "shift",
    ) -> ChipGrid:
        """Lay a chip grid over a :class:`Grid`, or anything :meth:`Grid.of` reads (a SceneInfo).

        ``stride`` defaults to ``chip_size`` (no overlap).
        """
        grid = Grid.of(scene)
        cs = (chip_size, chip_size) if isinstance(chip_size, int) else tuple(chip_size)
        st = (
            cs
            if stride is None
            else ((stride, stride) if isinstance(stride, int) else tuple(stride))
        )
        return cls(
            shape=grid.shape,
            transform=grid.transform,
            crs=grid.crs,
            chip_size=(int(cs[0]), int(cs[1])),
            stride=(int(st[0]), int(st[1])),
            edge=edge,
        )

    @cached_property
    def row_offsets(self) -> list[int]:
        """Start rows of the chip rows."""
        return axis_offsets(self.shape[0], self.chip_size[0], self.stride[0], self.edge)

    @cached_property
    def col_offsets(self) -> list[int]:
        """Start columns of the chip columns."""
        return axis_offsets(self.shape[1], self.chip_size[1], self.stride[1], self.edge)

    def __len__(self) -> int:
        return len(self.row_offsets) * len(self.col_offsets)

    def chip(self, grid_row: int, grid_col: int) -> Chip:
        """The chip at a grid position."""
        window = Window(
            self.col_offsets[grid_col],
            self.row_offsets[grid_row],
            self.chip_size[1],
            self.chip_size[0],
        )
        return Chip(window, self.grid[window].transform, self.crs, grid_row, grid_col)

    def __iter__(self) -> Iterator[Chip]:
        for i in range(len(self.row_offsets)):
            for j in range(len(self.col_offsets)):
                yield self.chip(i, j)

    def owned_window(self, chip: Chip) -> Window:
        """The part of the scene this chip *owns*: owned windows tile the scene exactly once.

        A chip owns the rows/cols from its start up to the next chip's start (the last one up
        to the scene edge). Used to compute scene statistics from chip reads without counting
        overlaps twice.
        """
        rows, cols = self.row_offsets, self.col_offsets
        r0, c0 = rows[chip.grid_row], cols[chip.grid_col]
        r1 = rows[chip.grid_row + 1] if chip.grid_row + 1 < len(rows) else self.shape[0]
        c1 = cols[chip.grid_col + 1] if chip.grid_col + 1 < len(cols) else self.shape[1]
        return Window(c0, r0, c1 - c0, r1 - r0)
