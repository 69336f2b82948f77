"""Per-cell answers for the point lookup, so most points need no index query at all.

A grid over the units' extent records, per cell:
- units: the one unit that holds the whole cell when no unit boundary comes within the boundary tolerance plus
  `MARGIN_M` of it ("clean"), "no unit" for a clean cell outside every unit, or "dirty" (take the exact
  `LayerIndex` path);
- red line: "inside one patch" for a clean cell inside a patch, else the candidate boundary chunks that can hold
  the nearest boundary for any point of the cell, and for cells a red-line boundary crosses the candidate pieces.

The nearest-chunk candidates of a cell with centre c and half-diagonal h are the chunks within d(c) + 2h of c,
where d(c) is the distance from c to the nearest chunk: for a point p of the cell the nearest chunk is within
d(c) + h of p, and a chunk farther than d(c) + 2h from c is farther than that from p. The distance to the candidates
is taken by a compiled loop over their segments with GEOS's own point-to-segment formula (`app.domain.kernels`), so
the metres are those `STRtree.query_nearest` gives, bit for bit, at a few µs instead of 20.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from app.domain.kernels import line_segments, nearest_line, warm_up
from app.domain.spatial import BOUNDARY_TOLERANCE_M, LayerIndex

MARGIN_M = 1.0  # a clean cell keeps this much more than the tolerance away from every boundary
MIN_CELL_M = 200.0
MAX_CELLS = 250_000  # bounds build time and memory on large datasets; cells then grow beyond MIN_CELL_M
ROUNDING_M = 1e-6  # distances this close to the tolerance are left to the exact path (GEOS on the pieces)
NO_UNIT = -1
DIRTY = -2


def _csr(pairs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and values of a compressed list per cell from (cell, value) pairs."""
    order = np.lexsort((pairs[1], pairs[0]))
    cells, values = pairs[0][order], pairs[1][order]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(cells, minlength=n), out=offsets[1:])
    return offsets, values.astype(np.int32)  # half the memory; counts stay far below 2**31


class PointLocator:
    """Grid of precomputed unit and red-line answers over the units' extent (metric CRS)."""

    def __init__(self, units: LayerIndex, red: LayerIndex) -> None:
        self.units = units
        self.red = red
        if len(units.pieces) == 0:
            self.nx = self.ny = 0
            return
        minx, miny, maxx, maxy = shapely.total_bounds(units.pieces)
        area = max(maxx - minx, 1.0) * max(maxy - miny, 1.0)
        self.cell = max(MIN_CELL_M, math.sqrt(area / MAX_CELLS))
        self.x0, self.y0 = float(minx), float(miny)
        self.nx = int(math.ceil((maxx - minx) / self.cell)) or 1
        self.ny = int(math.ceil((maxy - miny) / self.cell)) or 1
        n = self.nx * self.ny
        ix, iy = np.meshgrid(np.arange(self.nx), np.arange(self.ny), indexing="xy")
        ix, iy = ix.ravel(), iy.ravel()  # cell id = iy * nx + ix
        x0s, y0s = self.x0 + ix * self.cell, self.y0 + iy * self.cell
        cx, cy = x0s + self.cell / 2, y0s + self.cell / 2
        grow = BOUNDARY_TOLERANCE_M + MARGIN_M
        grown = shapely.box(x0s - grow, y0s - grow, x0s + self.cell + grow, y0s + self.cell + grow)
        centres = shapely.points(cx, cy)

        cells = shapely.box(x0s, y0s, x0s + self.cell, y0s + self.cell)

        self.unit_of, near = self._clean_owner(units, grown, centres, cx, cy, n)
        # Dirty cells: the unit boundary chunks near the cell and the pieces over it, for points that turn out
        # to be farther than the tolerance from every boundary (most of them).
        self.unit_chunk_off, self.unit_chunk_idx = _csr(near, n)
        dirty = np.flatnonzero(self.unit_of == DIRTY)
        pairs = units.tree.query(cells[dirty])
        pairs[0] = dirty[pairs[0]]
        self.unit_piece_off, self.unit_piece_idx = _csr(pairs, n)
        self.unit_seg, self.unit_seg_off = line_segments(units.chunks)
        warm_up()

        red_owner, _ = self._clean_owner(red, grown, centres, cx, cy, n)
        self.red_inside = np.where(red_owner >= 0, red_owner, NO_UNIT)  # the patch of a clean cell inside one
        # Cells outside every unit keep the exact path: points there are rare and the grid would double.
        need = np.flatnonzero((red_owner < 0) & (self.unit_of != NO_UNIT))
        self.red_dirty = red_owner == DIRTY
        if len(red.chunks):
            pairs = red.tree.query(cells[self.red_dirty])
            pairs[0] = np.flatnonzero(self.red_dirty)[pairs[0]]
            self.piece_off, self.piece_idx = _csr(pairs, n)
            _, dist = red.chunk_tree.query_nearest(centres[need], return_distance=True, all_matches=False)
            reach = dist + self.cell * math.sqrt(2) + MARGIN_M  # d(c) + 2h, with a margin for rounding
            pairs = red.chunk_tree.query(centres[need], predicate="dwithin", distance=reach)
            pairs[0] = need[pairs[0]]
            self.chunk_off, self.chunk_idx = _csr(pairs, n)
            self.seg, self.seg_off = line_segments(red.chunks)

    @staticmethod
    def _clean_owner(index: LayerIndex, grown, centres, cx, cy, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per cell: the row holding the whole grown cell, NO_UNIT when clear of every feature, DIRTY otherwise;
        and the (cell, boundary chunk) pairs that make cells dirty."""
        owner = np.full(n, NO_UNIT, dtype=np.int64)
        if len(index.pieces) == 0:
            return owner, np.zeros((2, 0), dtype=np.int64)
        near_pairs = index.chunk_tree.query(grown, predicate="intersects")
        near = near_pairs[0]
        hits = index.tree.query(centres)
        inside = shapely.intersects_xy(index.pieces[hits[1]], cx[hits[0]], cy[hits[0]])
        cell_hit, row_hit = hits[0][inside], index.piece_owner[hits[1][inside]]
        owner[cell_hit] = row_hit
        counts = np.zeros(n, dtype=np.int64)
        pairs = np.unique(np.stack([cell_hit, row_hit]), axis=1) if cell_hit.size else np.zeros((2, 0), np.int64)
        np.add.at(counts, pairs[0], 1)
        owner[counts > 1] = DIRTY  # overlapping features: leave to the exact path
        owner[near] = DIRTY
        return owner, near_pairs

    def cell_of(self, x: float, y: float) -> int:
        """The cell id of a metric point, or -1 outside the grid."""
        if self.nx == 0:
            return -1
        ix = math.floor((x - self.x0) / self.cell)
        iy = math.floor((y - self.y0) / self.cell)
        if 0 <= ix < self.nx and 0 <= iy < self.ny:
            return iy * self.nx + ix
        return -1

    def units_at(self, x: float, y: float, tol: float = BOUNDARY_TOLERANCE_M) -> tuple[list[int], set[int]]:
        """Rows covering the point within `tol` and, when several do, those whose boundary passes within `tol`."""
        cell = self.cell_of(x, y)
        if cell >= 0 and tol <= BOUNDARY_TOLERANCE_M:
            row = int(self.unit_of[cell])
            if row >= 0:
                return [row], set()
            if row == NO_UNIT:
                return [], set()
            # A dirty cell: a point farther than the tolerance from every unit boundary is in at most one unit.
            chunks = self.unit_chunk_idx[self.unit_chunk_off[cell] : self.unit_chunk_off[cell + 1]]
            if nearest_line(x, y, self.unit_seg, self.unit_seg_off, chunks)[0] > tol + ROUNDING_M:
                pieces = self.unit_piece_idx[self.unit_piece_off[cell] : self.unit_piece_off[cell + 1]]
                owners = set(self.units.piece_owner[pieces[shapely.intersects_xy(self.units.pieces[pieces], x, y)]]
                             .tolist())
                if len(owners) <= 1:
                    return sorted(owners), set()
        return self.units.rows_and_edges(x, y, tol)

    def red_nearest(self, x: float, y: float) -> tuple[float, int] | None:
        """`LayerIndex.distance` of the red line for a point: 0 and the patch when inside, else the nearest."""
        red = self.red
        if len(red.geoms) == 0:
            return None
        cell = self.cell_of(x, y)
        if cell < 0 or self.chunk_off[cell] == self.chunk_off[cell + 1] and self.red_inside[cell] < 0:
            return red.distance(shapely.points(x, y))
        row = int(self.red_inside[cell])
        if row >= 0:
            return 0.0, row
        if self.red_dirty[cell]:
            pieces = self.piece_idx[self.piece_off[cell] : self.piece_off[cell + 1]]
            if pieces.size:
                hit = shapely.intersects_xy(red.pieces[pieces], x, y)
                if hit.any():
                    return 0.0, int(red.piece_owner[pieces[hit]].min())
        chunks = self.chunk_idx[self.chunk_off[cell] : self.chunk_off[cell + 1]]
        dist, best = nearest_line(x, y, self.seg, self.seg_off, chunks)
        return dist, int(red.chunk_owner[chunks[best]])
