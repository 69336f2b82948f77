"""The fast point answer: which units hold a point and how far the red line is."""

from __future__ import annotations

from typing import Any

import shapely

from app.domain.catalog import Catalog
from app.domain.spatial import BOUNDARY_TOLERANCE_M


def lookup_point(catalog: Catalog, x: float, y: float, lon: float, lat: float) -> dict[str, Any]:
    """Units covering the metric point (x, y) (every unit on a shared boundary) and the red-line distance."""
    units = catalog.units
    red = catalog.layers["red_line"]
    if catalog.locator is not None:
        rows, edge = catalog.locator.units_at(x, y, BOUNDARY_TOLERANCE_M)
        nearest = catalog.locator.red_nearest(x, y)
    else:
        rows, edge = units.index.rows_and_edges(x, y, BOUNDARY_TOLERANCE_M)
        nearest = red.index.distance(shapely.points(x, y))
    return {
        "dataset_version": catalog.dataset_version,
        "lon": lon,
        "lat": lat,
        "inside_territory": bool(rows),
        "units": [
            {"code": units.records[r]["HJZHGKDYBM"], "name": units.records[r]["HJZHGKDYMC"],
             "type": catalog.unit_type(r), "on_boundary": r in edge}
            for r in rows
        ],
        "red_line": {
            "inside": bool(nearest and nearest[0] == 0.0),
            "distance_m": round(nearest[0], 2) if nearest else None,
            "nearest_patch": red.records[nearest[1]]["patch_id"] if nearest else None,
        },
    }
