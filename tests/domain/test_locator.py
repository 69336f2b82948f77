"""The point locator's per-cell answers equal the exact index path, on random points and on points at boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from app.domain.catalog import load_catalog
from app.domain.locator import DIRTY, NO_UNIT, PointLocator
from app.domain.spatial import BOUNDARY_TOLERANCE_M
from tests.conftest import MINI, ZONES


def _exact(catalog, x: float, y: float):
    units = catalog.units.index
    rows = units.rows_at(x, y, BOUNDARY_TOLERANCE_M)
    edge = units.rows_on_boundary(x, y, BOUNDARY_TOLERANCE_M) if len(rows) > 1 else set()
    return rows, edge, catalog.layers["red_line"].index.distance(shapely.points(x, y))


def _points(catalog, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points over the grid and 2 km around it, and points on and next to unit and red-line boundaries."""
    units, red = catalog.units.index, catalog.layers["red_line"].index
    minx, miny, maxx, maxy = shapely.total_bounds(units.pieces)
    x = rng.uniform(minx - 2000, maxx + 2000, n)
    y = rng.uniform(miny - 2000, maxy + 2000, n)
    on = []
    for chunks in (red.chunks, units.chunks):
        coords = shapely.get_coordinates(chunks[rng.integers(0, len(chunks), n // 4)])
        picked = coords[rng.integers(0, len(coords), n)]
        # on a vertex, within the tolerance, just beyond it, and a few metres off
        scale = rng.choice([0.0, 0.004, 0.012, 0.6, 5.0], size=(n, 1))
        on.append(picked + rng.normal(0, 1, picked.shape) * scale)
    mids = shapely.line_interpolate_point(units.chunks[rng.integers(0, len(units.chunks), n)], 0.5, normalized=True)
    on.append(shapely.get_coordinates(mids))  # exactly on a shared unit boundary, between vertices
    pts = np.concatenate([np.column_stack([x, y]), *on])
    return pts[:, 0], pts[:, 1]


def test_every_answer_equals_the_exact_path(catalog):
    loc = catalog.locator
    x, y = _points(catalog, np.random.default_rng(20261129), 3000)
    cells = np.array([loc.cell_of(a, b) for a, b in zip(x.tolist(), y.tolist())])
    clean = (cells >= 0) & (loc.unit_of[np.maximum(cells, 0)] >= 0)
    # the sample exercises each way through the locator
    assert clean.sum() > 1000 and (~clean).sum() > 3000
    assert (loc.red_inside[cells[cells >= 0]] >= 0).any() and loc.red_dirty[cells[cells >= 0]].any()
    differ = []
    for a, b in zip(x.tolist(), y.tolist()):
        rows, edge, nearest = _exact(catalog, a, b)
        got = (*loc.units_at(a, b), loc.red_nearest(a, b))
        if got != (rows, edge, nearest):
            differ.append(((a, b), got, (rows, edge, nearest)))
    assert differ == []


def test_a_point_on_a_shared_boundary_belongs_to_both_units(catalog):
    units = catalog.units.index
    mids = shapely.line_interpolate_point(units.chunks, 0.5, normalized=True)
    shared = [p for p in mids if len(units.rows_at(p.x, p.y, BOUNDARY_TOLERANCE_M)) == 2]
    assert len(shared) > 100
    for p in shared[:: max(1, len(shared) // 50)]:
        rows, edge = catalog.locator.units_at(p.x, p.y)
        assert len(rows) == 2 and edge == set(rows)


def test_clean_cells_keep_clear_of_every_boundary(catalog):
    """A clean cell, grown by the tolerance plus the margin, crosses no boundary and lies in its owner."""
    loc = catalog.locator
    for index, owner in ((catalog.units.index, loc.unit_of), (catalog.layers["red_line"].index, loc.red_inside)):
        clean = np.flatnonzero(owner >= 0)
        sample = np.random.default_rng(7).choice(clean, size=min(400, clean.size), replace=False)
        iy, ix = np.divmod(sample, loc.nx)
        x0, y0 = loc.x0 + ix * loc.cell, loc.y0 + iy * loc.cell
        g = BOUNDARY_TOLERANCE_M + 1.0
        boxes = shapely.box(x0 - g, y0 - g, x0 + loc.cell + g, y0 + loc.cell + g)
        assert index.chunk_tree.query(boxes, predicate="intersects").size == 0
        holders = index.geoms[owner[sample]]
        assert shapely.contains(holders, boxes).all()


def test_cells_outside_the_units_and_points_outside_the_grid(catalog):
    loc = catalog.locator
    assert (loc.unit_of == NO_UNIT).any() and (loc.unit_of == DIRTY).any()
    minx, miny, _, _ = shapely.total_bounds(catalog.units.index.pieces)
    assert loc.cell_of(minx - 1, miny - 1) == -1
    rows, edge, nearest = _exact(catalog, minx - 5000, miny - 5000)
    assert loc.units_at(minx - 5000, miny - 5000) == (rows, edge) == ([], set())
    assert loc.red_nearest(minx - 5000, miny - 5000) == nearest
    assert nearest[0] > 5000


def test_the_grid_stays_within_its_cell_budget(catalog):
    loc = catalog.locator
    assert loc.nx * loc.ny <= 250_000
    assert loc.cell == pytest.approx(200.0)


def test_a_small_dataset_gets_the_same_answers(catalog):
    mini = load_catalog(MINI, ZONES)
    x, y = _points(mini, np.random.default_rng(3), 500)
    for a, b in zip(x.tolist(), y.tolist()):
        rows, edge, nearest = _exact(mini, a, b)
        assert mini.locator.units_at(a, b) == (rows, edge)
        assert mini.locator.red_nearest(a, b) == nearest


def test_an_empty_red_line_answers_none(catalog):
    units = catalog.units.index
    empty = type(catalog.layers["red_line"].index)(np.array([], dtype=object))
    loc = PointLocator(units, empty)
    p = catalog.units.metric[0].representative_point()
    assert loc.red_nearest(p.x, p.y) is None
    assert loc.units_at(p.x, p.y) == ([0], set())
