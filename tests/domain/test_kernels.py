"""The compiled nearest-line loop gives GEOS's distances bit for bit."""

from __future__ import annotations

import numpy as np
import shapely

from app.domain.kernels import line_segments, nearest_line


def _wiggly_lines(rng: np.random.Generator, n: int) -> np.ndarray:
    lines = []
    for _ in range(n):
        k = int(rng.integers(2, 40))
        start = rng.uniform([500_000, 5_490_000], [520_000, 5_510_000])
        steps = rng.normal(0, 30, (k, 2))
        steps[rng.random(k) < 0.1] = 0.0  # repeated vertices: zero-length segments
        lines.append(shapely.linestrings(start + np.cumsum(steps, axis=0)))
    return np.array(lines, dtype=object)


def test_distances_equal_geos_bit_for_bit():
    rng = np.random.default_rng(42)
    lines = _wiggly_lines(rng, 60)
    seg, seg_off = line_segments(lines)
    assert seg_off[-1] == sum(len(shapely.get_coordinates(g)) - 1 for g in lines)
    pts = rng.uniform([499_000, 5_489_000], [521_000, 5_511_000], (3000, 2))
    # points on vertices and on segments as well
    coords = shapely.get_coordinates(lines)
    pts = np.vstack([pts, coords[:200], (coords[:-1:7] + coords[1::7]) / 2])
    everything = np.arange(len(lines), dtype=np.int32)
    for x, y in pts.tolist():
        geos = shapely.distance(lines, shapely.Point(x, y))
        dist, pos = nearest_line(x, y, seg, seg_off, everything)
        assert dist == geos.min()
        assert pos == int(np.argmin(geos))


def test_a_subset_of_lines_and_ties():
    line = shapely.linestrings([[0.0, 0.0], [10.0, 0.0]])
    twin = shapely.linestrings([[0.0, 2.0], [10.0, 2.0]])
    seg, seg_off = line_segments(np.array([line, twin, line], dtype=object))
    assert nearest_line(5.0, 1.0, seg, seg_off, np.array([1, 0], dtype=np.int32)) == (1.0, 0)  # first on a tie
    assert nearest_line(5.0, 1.0, seg, seg_off, np.array([2], dtype=np.int32)) == (1.0, 0)
    assert nearest_line(-3.0, 4.0, seg, seg_off, np.array([0], dtype=np.int32)) == (5.0, 0)
    dist, pos = nearest_line(5.0, 1.0, seg, seg_off, np.array([], dtype=np.int32))
    assert dist == np.inf and pos == -1
