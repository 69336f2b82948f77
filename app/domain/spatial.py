"""Spatial index of one layer, built once at start-up, answering which features a site touches and how much.

Large polygons are cut into pieces of at most `PIECE_VERTICES` vertices, so a site is intersected with a few small
pieces instead of whole units of tens of thousands of vertices; boundaries are cut into short chunks so the
nearest-feature distance looks at a few segments (engineering notes: 0.135 ms vs 1.4 ms per overlay, 0.19 ms vs
1–3 ms per distance). All geometry here is in the metric CRS (EPSG:4548).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry import box

PIECE_VERTICES = 256
CHUNK_VERTICES = 32
BOUNDARY_TOLERANCE_M = 0.01  # a point this close to a boundary is on it: belongs to the features on both sides
MIN_OVERLAP_M2 = 0.01  # a polygon overlap smaller than this is edge contact, not occupation


def subdivide(geom, max_vertices: int = PIECE_VERTICES) -> list:
    """Cut a polygonal geometry into polygon pieces of at most `max_vertices` vertices that tile it exactly."""
    out: list = []
    stack = [p for p in shapely.get_parts(geom) if not p.is_empty]
    while stack:
        part = stack.pop()
        if shapely.get_num_coordinates(part) <= max_vertices:
            out.append(part)
            continue
        minx, miny, maxx, maxy = part.bounds
        if maxx - minx >= maxy - miny:
            mid = (minx + maxx) / 2
            halves = (box(minx, miny, mid, maxy), box(mid, miny, maxx, maxy))
        else:
            mid = (miny + maxy) / 2
            halves = (box(minx, miny, maxx, mid), box(minx, mid, maxx, maxy))
        for half in halves:
            piece = shapely.intersection(part, half)
            stack.extend(p for p in shapely.get_parts(piece) if p.geom_type == "Polygon" and not p.is_empty)
    return out


def boundary_chunks(geom, max_vertices: int = CHUNK_VERTICES) -> list:
    """The boundary of a polygonal geometry (or a line) as line chunks of at most `max_vertices` vertices."""
    lines = shapely.get_parts(geom.boundary if geom.geom_type.endswith("Polygon") else geom)
    chunks = []
    step = max_vertices - 1
    for line in lines:
        coords = shapely.get_coordinates(line)
        for start in range(0, len(coords) - 1, step):
            chunks.append(shapely.linestrings(coords[start : start + step + 1]))
    return chunks


@dataclass
class Touch:
    """One feature a site touches: its row, the overlap area and whether it only shares boundary with the site."""

    row: int
    overlap_m2: float
    boundary_only: bool


class LayerIndex:
    """Pieces and boundary chunks of one layer's features, each with an STRtree."""

    def __init__(self, geoms_metric: np.ndarray, *, polygonal: bool = True) -> None:
        self.geoms = geoms_metric
        self.polygonal = polygonal
        pieces, owners = [], []
        for row, geom in enumerate(geoms_metric):
            parts = subdivide(geom) if polygonal else [geom]
            pieces.extend(parts)
            owners.extend([row] * len(parts))
        self.pieces = np.array(pieces, dtype=object)
        self.piece_owner = np.array(owners, dtype=np.int64)
        shapely.prepare(self.pieces)
        self.tree = STRtree(self.pieces)
        chunks, chunk_owners = [], []
        for row, geom in enumerate(geoms_metric):
            parts = boundary_chunks(geom)
            chunks.extend(parts)
            chunk_owners.extend([row] * len(parts))
        self.chunks = np.array(chunks, dtype=object)
        self.chunk_owner = np.array(chunk_owners, dtype=np.int64)
        self.chunk_tree = STRtree(self.chunks)

    def rows_at(self, x: float, y: float, tol: float = 0.0) -> list[int]:
        """Rows whose feature covers the point (x, y), inside or within `tol` metres of its boundary."""
        pt = shapely.points(x, y)
        if tol > 0:
            candidates = self.tree.query(pt, predicate="dwithin", distance=tol)
            return sorted(set(self.piece_owner[candidates].tolist()))
        candidates = self.tree.query(pt)
        if candidates.size == 0:
            return []
        hit = shapely.intersects_xy(self.pieces[candidates], x, y)
        return sorted(set(self.piece_owner[candidates[hit]].tolist()))

    def rows_and_edges(self, x: float, y: float, tol: float) -> tuple[list[int], set[int]]:
        """`rows_at(x, y, tol)` and, when several rows cover the point, those whose boundary passes within `tol`."""
        rows = self.rows_at(x, y, tol)
        return rows, self.rows_on_boundary(x, y, tol) if len(rows) > 1 else set()

    def rows_on_boundary(self, x: float, y: float, tol: float) -> set[int]:
        """Rows whose boundary passes within `tol` metres of the point."""
        near = self.chunk_tree.query(shapely.points(x, y), predicate="dwithin", distance=tol)
        return set(self.chunk_owner[near].tolist())

    def touches(self, site, tol: float = BOUNDARY_TOLERANCE_M) -> list[Touch]:
        """Every feature the site touches, with the overlap area (0 for a point) and whether it is edge contact only.

        A point within `tol` of a boundary belongs to every feature on that boundary. A polygon site whose
        overlap with a feature is below `MIN_OVERLAP_M2` touches it only along the edge.
        """
        if site.geom_type == "Point":
            x, y = site.x, site.y
            rows = self.rows_at(x, y, tol)
            edge = self.rows_on_boundary(x, y, tol) if rows else set()
            return [Touch(row=r, overlap_m2=0.0, boundary_only=r in edge) for r in rows]
        candidates = self.tree.query(site, predicate="intersects")
        if candidates.size == 0:
            return []
        owners = self.piece_owner[candidates]
        areas = np.zeros(len(candidates))
        if self.polygonal:
            areas = shapely.area(shapely.intersection(self.pieces[candidates], site))
        result = []
        for row in sorted(set(owners.tolist())):
            area = float(areas[owners == row].sum())
            result.append(Touch(row=row, overlap_m2=area, boundary_only=self.polygonal and area < MIN_OVERLAP_M2))
        return result

    def distance(self, site) -> tuple[float, int] | None:
        """Distance in metres from the site to the nearest feature (0 when they intersect) and that feature's row."""
        if len(self.geoms) == 0:
            return None
        if site.geom_type == "Point":
            rows = self.rows_at(site.x, site.y)
            if rows:
                return 0.0, rows[0]
        else:
            hits = self.tree.query(site, predicate="intersects")
            if hits.size:
                return 0.0, int(self.piece_owner[hits[0]])
        idx, dist = self.chunk_tree.query_nearest(site, return_distance=True, all_matches=False)
        if idx.size == 0:
            return None
        return float(dist[0]), int(self.chunk_owner[idx[0]])
