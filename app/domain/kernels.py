"""Compiled inner loops (numba) for what has no vectorised form worth its overhead on a single point.

The point-to-segment distance is GEOS's own formula (`Distance::pointToSegment`, the same operations in the same
order, IEEE double precision, no fused multiply-add), so a distance computed here is bit-for-bit the one
`shapely.distance` gives for the same point and line; tests compare them for equality.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from numba import njit


@njit(nogil=True, cache=False)
def point_segment(px: float, py: float, x0: float, y0: float, x1: float, y1: float) -> float:
    if x0 == x1 and y0 == y1:
        dx = px - x0
        dy = py - y0
        return math.sqrt(dx * dx + dy * dy)
    len2 = (x1 - x0) * (x1 - x0) + (y1 - y0) * (y1 - y0)
    r = ((px - x0) * (x1 - x0) + (py - y0) * (y1 - y0)) / len2
    if r <= 0.0:
        dx = px - x0
        dy = py - y0
        return math.sqrt(dx * dx + dy * dy)
    if r >= 1.0:
        dx = px - x1
        dy = py - y1
        return math.sqrt(dx * dx + dy * dy)
    s = ((y0 - py) * (x1 - x0) - (x0 - px) * (y1 - y0)) / len2
    return abs(s) * math.sqrt(len2)


@njit(nogil=True, cache=False)
def nearest_line(px: float, py: float, seg: np.ndarray, seg_off: np.ndarray, lines: np.ndarray) -> tuple[float, int]:
    """Distance from (px, py) to the nearest of `lines` and its position in `lines` (the first one on a tie).

    Line k has the segments seg[seg_off[k]:seg_off[k + 1]], each row (x0, y0, x1, y1).
    """
    best = np.inf
    arg = -1
    for j in range(lines.size):
        k = lines[j]
        d_line = np.inf
        for i in range(seg_off[k], seg_off[k + 1]):
            d = point_segment(px, py, seg[i, 0], seg[i, 1], seg[i, 2], seg[i, 3])
            if d < d_line:
                d_line = d
        if d_line < best:
            best = d_line
            arg = j
    return best, arg


def line_segments(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segments of each linestring as rows (x0, y0, x1, y1), and the offset of each line's first segment."""
    coords, owner = shapely.get_coordinates(lines, return_index=True)
    same = owner[1:] == owner[:-1]
    seg = np.ascontiguousarray(np.hstack([coords[:-1][same], coords[1:][same]]))
    seg_off = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[:-1][same], minlength=len(lines)), out=seg_off[1:])
    return seg, seg_off


def warm_up() -> None:
    """Compile the kernels now (about a second) rather than on the first request."""
    seg, seg_off = np.zeros((1, 4)), np.array([0, 1], dtype=np.int64)
    nearest_line(1.0, 1.0, seg, seg_off, np.zeros(1, dtype=np.int32))  # the index type the locator passes
