"""Generate a province-scale synthetic zoning dataset (seeded, deterministic) for the scale benchmark.

    python -m scripts.generate_province_dataset --out /tmp/province                      # 20,000 units, 200,000 patches
    python -m scripts.generate_province_dataset --out /tmp/p1 --units 200 --red-patches 2000

The folder it writes satisfies the dataset contract of `app/domain/schema.py` (the GeoPackage with every required
layer and table, EPSG:4490 storage, valid geometry, the land-cover GeoTIFF in EPSG:4548) and carries its own rule
base under `zones/`, so `load_catalog(out, out / "zones")` accepts it:

- **Territory and units.** The territory is a smooth outline of `units × unit_km2` around 117°E 46°N, elongated
  north-south (so it stays within ±4.5° of the EPSG:4548 central meridian: scale error ≤ 0.15 %). One seed per
  unit: key-control seeds on fine hexagonal lattices around "towns", priority-protection seeds on a coarse jittered
  lattice elsewhere (count ratio 1:2 as the city's 5:10; priority units hold most of the area), plus a ring of
  seeds outside the outline. Units are the Voronoi cells of the inside seeds, from GEOS' Delaunay triangulation.
  Every Voronoi edge AB between seeds P and Q is densified (about `edge_spacing_m`) and offset sideways by a
  fractal function that stays strictly inside the triangles ABP ∪ ABQ. Those triangles of all edges tile the plane,
  so perturbed edges never cross, and both cells of an edge use the same vertices: the units tile the territory
  exactly with no noding. Units have from a few hundred to a few thousand vertices.
- **Red line.** Star-shaped patches (always simple) with 165–2,897 stored vertices (median ≈ 430), lognormal areas
  (median 0.2 km²), placed by vectorised rejection rounds inside priority units: each patch's circumscribed disc
  keeps 25 m inside its unit and 40 m from every other patch's disc.
- **Other layers.** Sparse but present as the contract requires: per county a nature reserve (core zone = the
  red-line patches it contains), a wetland park, drinking-water zones, basic grassland and farmland, mining areas,
  per town an urban development boundary, per county a no-burn zone, water-environment zones = counties, four
  air-environment zones. Counties (about 200 units each) are unions of their units.
- **Rules.** `zones/` copies the city's facts, industries, schema and city-wide clauses (the one clause bound to
  named units is rebound to the generated units of the same kind) and writes one clause file per unit from the
  city unit it imitates (ids and code rewritten).

Coordinates are rounded to a millimetre grid in EPSG:4548 before reprojection. Progress and timings go to stdout;
a summary (counts, vertices, areas, timings) is written to `generated.json` in the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import yaml
from pyproj import Transformer
from rasterio.features import rasterize

from app.domain.catalog import GPKG_NAME  # the file name load_catalog looks for
from app.domain.schema import (
    DATASET_TABLE,
    DIMENSION_FIELDS,
    DIMENSIONS,
    LAND_COVER_CLASS_TABLE,
    LAND_COVER_CLASSES,
    LAND_COVER_KEYS,
    LAND_COVER_NODATA,
    LAYERS,
    METRIC_EPSG,
    PROVENANCE_ILLUSTRATIVE,
    PROVENANCE_ILLUSTRATIVE_ZH,
    PROVENANCE_TABLE,
    STORAGE_EPSG,
)
from app.geo.vector_io import write_layer, write_table
from scripts.build_reference_data import RED_LINE_FUNCTION_ZH, RED_LINE_PLAN, UNITS, unit_texts

ROOT = Path(__file__).resolve().parents[1]
RASTER_NAME = "landcover.tif"
SUMMARY_NAME = "generated.json"
REFERENCE_DATE = "2026-11-29"

CENTRE_LONLAT = (117.0, 46.0)
ASPECT = 1.4  # north-south over east-west extent of the territory
GRID_M = 0.001  # millimetre grid in the metric CRS
PATCH_MIN_VERTICES, PATCH_MAX_VERTICES = 165, 2897  # stored coordinates (ring closed), as the city's patches range
PATCH_CHUNK = 8_192  # patches generated, reprojected and written per block (bounds memory)
RIDGE_CHUNK_VERTICES = 4_000_000
PATCH_UNIT_MARGIN_M = 25.0
PATCH_GAP_M = 40.0
ENVELOPE_SECTORS = 32
MAX_LAND_COVER_PIXELS = 16_000_000

_to_storage = Transformer.from_crs(METRIC_EPSG, STORAGE_EPSG, always_xy=True)
_to_metric = Transformer.from_crs(STORAGE_EPSG, METRIC_EPSG, always_xy=True)


@dataclass(frozen=True)
class Params:
    """What to generate. Defaults: the province scale of issue 7."""

    units: int = 20_000
    red_patches: int = 200_000
    seed: int = 20_261_129
    unit_km2: float = 28.0  # mean unit area: the territory is units × unit_km2 (20,000 units ≈ 560,000 km²)
    key_area_share: float = 0.15  # town cores; key units end up with about twice that (their cells reach out)
    units_per_county: int = 200
    edge_spacing_m: float = 15.0  # median vertex spacing of unit boundaries
    patch_median_km2: float = 0.2
    unit_rules: bool = True  # write one clause file per unit

    @property
    def n_priority(self) -> int:
        return max(1, round(self.units / 3))

    @property
    def n_key(self) -> int:
        return self.units - self.n_priority

    def key(self) -> str:
        """A short key of these parameters and of this generator's code (cache folder names)."""
        code = Path(__file__).read_bytes()
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode() + code).hexdigest()[:12]


class Log:
    """Progress lines with the elapsed time; `step` times a block."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.steps: dict[str, float] = {}

    def __call__(self, text: str) -> None:
        self.out(f"[{time.perf_counter() - self.t0:7.1f} s {rss_gib():5.2f} GiB] {text}")

    def step(self, name: str) -> "_Step":
        return _Step(self, name)


class _Step:
    def __init__(self, log: Log, name: str) -> None:
        self.log, self.name = log, name

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        dt = time.perf_counter() - self.t
        self.log.steps[self.name] = round(dt, 3)
        if exc[0] is None:
            self.log(f"{self.name}: {dt:.1f} s")


def rss_gib() -> float:
    """Resident memory of this process (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 2**20
    except (OSError, StopIteration):
        return 0.0


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent, named random stream, so one part never reshuffles another."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def geoms_of(frame: gpd.GeoDataFrame) -> np.ndarray:
    """The geometry column as a plain object array (shapely functions on it skip pandas' ufunc dispatch)."""
    return np.asarray(frame.geometry.values, dtype=object)


def mm(a: np.ndarray) -> np.ndarray:
    return np.round(a / GRID_M) * GRID_M


def segment_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.maximum.reduceat(values, starts) if values.size else np.zeros(0)


# --------------------------------------------------------------------------------------------------------------
# Territory outline and seeds
# --------------------------------------------------------------------------------------------------------------


def outline(rng: np.random.Generator, area_m2: float, centre: tuple[float, float]) -> shapely.Polygon:
    """A smooth star-shaped outline (always simple) of the given area, elongated north-south."""
    theta = np.linspace(0, 2 * np.pi, 2048, endpoint=False)
    k = np.arange(1, 13)
    coeff = rng.normal(0.0, 1.0, k.size) * 0.16 * k ** -1.3
    phase = rng.uniform(0, 2 * np.pi, k.size)
    r = np.exp((np.cos(np.outer(theta, k) + phase) * coeff).sum(axis=1))
    xy = np.column_stack([r * np.cos(theta) / math.sqrt(ASPECT), r * np.sin(theta) * math.sqrt(ASPECT)])
    poly = shapely.Polygon(xy)
    xy *= math.sqrt(area_m2 / poly.area)
    return shapely.Polygon(xy + centre)


def hex_lattice(bounds: tuple[float, ...], spacing: float, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """A jittered hexagonal lattice covering `bounds` (jitter as a share of the spacing, per axis)."""
    minx, miny, maxx, maxy = bounds
    dy = spacing * math.sqrt(3) / 2
    rows = np.arange(int(math.ceil((maxy - miny) / dy)) + 1)
    cols = np.arange(int(math.ceil((maxx - minx) / spacing)) + 2)
    x = minx + cols[None, :] * spacing + (rows[:, None] % 2) * spacing / 2 - spacing / 2
    y = np.broadcast_to(miny + rows[:, None] * dy, x.shape)
    xy = np.column_stack([x.ravel(), y.ravel()])
    return xy + rng.uniform(-jitter, jitter, xy.shape) * spacing


@dataclass
class Seeds:
    xy: np.ndarray  # (n, 2) every seed: priority, key, then outside
    n_priority: int
    n_key: int
    town_of: np.ndarray  # per inside seed: town index, -1 for priority seeds
    towns: np.ndarray  # (t, 3): x, y, radius
    priority_spacing: float
    outline: shapely.Polygon


def make_seeds(p: Params, outline_poly: shapely.Polygon, log: Log) -> Seeds:
    """Priority seeds on a coarse lattice, key seeds on fine lattices around towns, and an outside ring."""
    area = outline_poly.area
    key_cell = area * p.key_area_share / max(p.n_key, 1)
    pri_cell = area * (1 - p.key_area_share) / p.n_priority
    spacing = math.sqrt(2 * pri_cell / math.sqrt(3))
    # Towns: 3 or more key units each, lognormal sizes (a few large cities, many small towns).
    rng = rng_for(p.seed, "towns")
    n_towns = max(1, round(p.n_key / 13))
    n_towns = min(n_towns, max(1, p.n_key // 3))
    weights = rng.lognormal(0.0, 0.8, n_towns)
    sizes = 3 + rng.multinomial(p.n_key - 3 * n_towns, weights / weights.sum()) if p.n_key >= 3 * n_towns else \
        np.full(n_towns, p.n_key // n_towns) + (np.arange(n_towns) < p.n_key % n_towns)
    radii = np.sqrt(sizes * key_cell / math.pi)
    order = np.argsort(-radii, kind="stable")  # place the largest first
    shapely.prepare(outline_poly)
    boundary = outline_poly.exterior
    shapely.prepare(boundary)
    minx, miny, maxx, maxy = outline_poly.bounds
    towns = np.full((n_towns, 3), np.nan)
    for i in order:
        r = radii[i]
        for attempt in range(400):
            # Towns keep off the territory's edge; small territories relax that margin until towns fit.
            margin = r + spacing * max(0.0, 1.5 - attempt / 100)
            cand = np.column_stack([rng.uniform(minx, maxx, 64), rng.uniform(miny, maxy, 64)])
            ok = shapely.contains_xy(outline_poly, cand[:, 0], cand[:, 1])
            ok &= ~shapely.dwithin(boundary, shapely.points(cand), margin)
            placed = ~np.isnan(towns[:, 0])
            if placed.any():
                d = np.hypot(cand[:, None, 0] - towns[placed, 0], cand[:, None, 1] - towns[placed, 1])
                ok &= (d >= towns[placed, 2] + r + 0.5 * spacing).all(axis=1)
            if ok.any():
                towns[i] = (*cand[np.argmax(ok)], r)
                break
        else:
            raise RuntimeError(f"no room for town {i} (radius {r:.0f} m): lower key_area_share or raise unit_km2")
    # Key seeds: the `size` lattice points nearest each town centre.
    key_xy, town_of = [], []
    key_spacing = math.sqrt(2 * key_cell / math.sqrt(3))
    for i, (tx, ty, r) in enumerate(towns):
        reach = r * 1.6 + 2 * key_spacing
        lat = hex_lattice((tx - reach, ty - reach, tx + reach, ty + reach), key_spacing, rng, 0.22)
        d = np.hypot(lat[:, 0] - tx, lat[:, 1] - ty)
        key_xy.append(lat[np.argsort(d, kind="stable")[: sizes[i]]])
        town_of.append(np.full(sizes[i], i))
    key_xy = np.vstack(key_xy)
    # Priority seeds: lattice points inside the outline and clear of the towns, thinned to the exact count.
    rng = rng_for(p.seed, "priority-seeds")
    factor = 0.97
    for _ in range(20):
        s = spacing * factor
        lat = hex_lattice(outline_poly.buffer(3 * s).bounds, s, rng, 0.3)
        inside = shapely.contains_xy(outline_poly, lat[:, 0], lat[:, 1])
        d_town = np.full(len(lat), np.inf)
        for tx, ty, r in towns:
            d_town = np.minimum(d_town, np.hypot(lat[:, 0] - tx, lat[:, 1] - ty) - r)
        free = inside & (d_town > 0.6 * key_spacing)  # so border cells of a town stay town-sized
        if free.sum() >= p.n_priority:
            break
        factor *= math.sqrt(free.sum() / p.n_priority) * 0.98
    else:
        raise RuntimeError("could not place the priority seeds")
    free_idx = np.flatnonzero(free)
    keep = np.sort(rng.choice(free_idx.size, p.n_priority, replace=False))
    pri_xy = lat[free_idx[keep]]
    ring = shapely.dwithin(outline_poly, shapely.points(lat), 2.6 * s) | (d_town < 2.6 * s)
    near = ~inside & (d_town > 0.6 * key_spacing) & ring
    out_xy = lat[near]
    xy = np.vstack([pri_xy, key_xy, out_xy])
    log(f"seeds: {p.n_priority:,} priority (lattice {s / 1000:.2f} km), {p.n_key:,} key in {n_towns:,} towns "
        f"(lattice {key_spacing / 1000:.2f} km), {len(out_xy):,} outside")
    return Seeds(xy=xy, n_priority=p.n_priority, n_key=p.n_key,
                 town_of=np.concatenate([np.full(p.n_priority, -1), np.concatenate(town_of)]), towns=towns,
                 priority_spacing=s, outline=outline_poly)


# --------------------------------------------------------------------------------------------------------------
# Voronoi units with perturbed, exactly shared edges
# --------------------------------------------------------------------------------------------------------------


def delaunay(xy: np.ndarray) -> np.ndarray:
    """Delaunay triangles of the seeds as (t, 3) seed indices (GEOS copies input coordinates exactly)."""
    tris = shapely.get_parts(shapely.delaunay_triangles(shapely.multipoints(xy)))
    corners = shapely.get_coordinates(tris).reshape(-1, 4, 2)[:, :3]
    z = xy[:, 0] + 1j * xy[:, 1]
    order = np.argsort(z)
    zs = z[order]
    if np.unique(zs).size != zs.size:
        raise RuntimeError("duplicate seeds")
    tz = (corners[..., 0] + 1j * corners[..., 1]).ravel()
    pos = np.clip(np.searchsorted(zs, tz), 0, zs.size - 1)
    if not (zs[pos] == tz).all():
        raise RuntimeError("Delaunay corners do not match the seeds")
    return order[pos].reshape(-1, 3)


def circumcentres(xy: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = xy[tri[:, 0]], xy[tri[:, 1]], xy[tri[:, 2]]
    b, c = b - a, c - a
    d = 2 * (b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0])
    bb, cc = (b ** 2).sum(1), (c ** 2).sum(1)
    ux = (c[:, 1] * bb - b[:, 1] * cc) / d
    uy = (b[:, 0] * cc - c[:, 0] * bb) / d
    return a + np.column_stack([ux, uy])


@dataclass
class Ridges:
    p: np.ndarray  # seed on one side
    q: np.ndarray  # seed on the other side
    a: np.ndarray  # Voronoi vertex (triangle index) at the start
    b: np.ndarray  # Voronoi vertex at the end
    n_int: np.ndarray  # interior vertices of the perturbed edge
    offset: np.ndarray  # start of each ridge's interior vertices in `coords`
    coords: np.ndarray  # (v, 2) interior vertices, start to end
    vertices: np.ndarray  # (t, 2) Voronoi vertices (mm grid)


def ridges(p: Params, seeds: Seeds, log: Log) -> Ridges:
    """The Voronoi edges of the inside seeds, densified and perturbed inside their Delaunay diamonds."""
    xy = seeds.xy
    n_inside = seeds.n_priority + seeds.n_key
    tri = delaunay(xy)
    cc = circumcentres(xy, tri)
    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    owner = np.tile(np.arange(len(tri)), 3)
    edges.sort(axis=1)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, owner = edges[order], owner[order]
    same = (edges[1:] == edges[:-1]).all(axis=1)
    first = np.flatnonzero(same)
    lone = np.ones(len(edges), bool)
    lone[first] = lone[first + 1] = False
    if (edges[lone] < n_inside).any():
        raise RuntimeError("an inside seed lies on the hull: the outside ring is too thin")
    pq = edges[first]
    keep = (pq < n_inside).any(axis=1)
    pq, t1, t2 = pq[keep], owner[first][keep], owner[first + 1][keep]
    A, B = cc[t1], cc[t2]
    P = xy[pq[:, 0]]
    L = np.hypot(*(B - A).T)
    rng = rng_for(p.seed, "ridges")
    spacing = np.clip(p.edge_spacing_m * rng.lognormal(0.0, 0.35, len(L)), 5.0, 80.0)
    n_seg = np.maximum(1, np.floor(L / spacing)).astype(np.int64)
    n_int = n_seg - 1
    amp = rng.uniform(0.04, 0.14, len(L)) * L  # cap of the sideways offset
    harmonics = 8
    coeff = rng.normal(0.0, 1.0, (len(L), harmonics)) * np.arange(1, harmonics + 1) ** -1.2
    phase = rng.uniform(0, 2 * np.pi, (len(L), harmonics))
    brown = rng.uniform(0.05, 0.25, len(L))
    safe_L = np.where(L > 0, L, 1.0)
    d = (B - A) / safe_L[:, None]
    nrm = np.column_stack([-d[:, 1], d[:, 0]])
    px = ((P - A) * d).sum(1)
    h = np.abs(((P - A) * nrm).sum(1))  # the other seed is the mirror image of P across AB
    D = np.maximum(np.abs(px), np.abs(L - px))
    offset = np.concatenate([[0], np.cumsum(n_int)])
    coords = np.empty((int(offset[-1]), 2))
    # Ridges in blocks of about RIDGE_CHUNK_VERTICES vertices, each block with its own named random stream.
    bounds = np.searchsorted(offset, np.arange(0, offset[-1] + RIDGE_CHUNK_VERTICES, RIDGE_CHUNK_VERTICES))
    bounds = np.unique(np.append(bounds, len(L)))
    for ci, (r0, r1) in enumerate(zip(bounds[:-1], bounds[1:])):
        if r1 <= r0:
            continue
        crng = rng_for(p.seed, f"ridge-block-{ci}")
        cnt = n_int[r0:r1]
        total = int(cnt.sum())
        if total == 0:
            continue
        rid = np.repeat(np.arange(r0, r1), cnt)
        starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        k = np.arange(total) - np.repeat(starts, cnt) + 1
        t = k / n_seg[rid]
        f = np.zeros(total)
        f0 = np.zeros(r1 - r0)
        f1 = np.zeros(r1 - r0)
        for m in range(harmonics):
            f += coeff[rid, m] * np.sin(np.pi * (m + 1) * t + phase[rid, m])
            f0 += coeff[r0:r1, m] * np.sin(phase[r0:r1, m])
            f1 += coeff[r0:r1, m] * np.sin(np.pi * (m + 1) + phase[r0:r1, m])
        f -= f0[rid - r0] + (f1 - f0)[rid - r0] * t
        # A Brownian bridge per ridge (zero at both ends) for the small-scale roughness of digitised lines.
        steps = crng.normal(0.0, 1.0, total)
        walk = np.cumsum(steps)
        walk -= np.repeat(walk[starts] - steps[starts], cnt)
        last = crng.normal(0.0, 1.0, r1 - r0)  # the final step to the end vertex
        end = walk[starts + cnt - 1] + last
        walk -= end[rid - r0] * t
        walk *= brown[rid] / np.sqrt(n_seg[rid])
        f /= np.maximum(segment_max(np.abs(f), starts), 1e-12)[rid - r0]
        g = f + walk
        g /= np.maximum(segment_max(np.abs(g), starts), 1e-12)[rid - r0]
        x = t * L[rid]
        u = h[rid] * np.minimum(x, L[rid] - x) / np.maximum(D[rid], 1e-9)
        off = g * np.minimum(0.9 * u, amp[rid])
        coords[offset[r0]:offset[r1]] = A[rid] + x[:, None] * d[rid] + off[:, None] * nrm[rid]
    coords = mm(coords)
    log(f"ridges: {len(L):,} Voronoi edges, {len(coords):,} interior vertices "
        f"(median edge {np.median(L) / 1000:.2f} km, spacing median {np.median(spacing):.1f} m)")
    return Ridges(p=pq[:, 0], q=pq[:, 1], a=t1, b=t2, n_int=n_int, offset=offset[:-1], coords=coords,
                  vertices=mm(cc))


def cells(seeds: Seeds, rg: Ridges) -> np.ndarray:
    """One polygon per inside seed (in seed order), its ring chained from the perturbed ridges."""
    n_inside = seeds.n_priority + seeds.n_key
    sides = []
    for s in (rg.p, rg.q):
        inside = s < n_inside
        idx = np.flatnonzero(inside)
        S = seeds.xy[s[idx]]
        A, B = rg.vertices[rg.a[idx]], rg.vertices[rg.b[idx]]
        cross = (A[:, 0] - S[:, 0]) * (B[:, 1] - S[:, 1]) - (A[:, 1] - S[:, 1]) * (B[:, 0] - S[:, 0])
        forward = cross > 0
        start = np.where(forward[:, None], A, B)
        angle = np.arctan2(start[:, 1] - S[:, 1], start[:, 0] - S[:, 0])
        sides.append((s[idx], idx, forward, angle))
    cell = np.concatenate([x[0] for x in sides])
    ridge = np.concatenate([x[1] for x in sides])
    forward = np.concatenate([x[2] for x in sides])
    angle = np.concatenate([x[3] for x in sides])
    order = np.lexsort((angle, cell))
    cell, ridge, forward = cell[order], ridge[order], forward[order]
    n_tri = len(rg.vertices)
    pool = np.vstack([rg.vertices, rg.coords])
    start_vertex = np.where(forward, rg.a[ridge], rg.b[ridge])
    n_int = rg.n_int[ridge]
    length = 1 + n_int
    first = np.concatenate([[0], np.cumsum(length)[:-1]])
    inc = np.repeat(np.arange(len(ridge)), length)
    pos = np.arange(int(length.sum())) - first[inc]
    base = n_tri + rg.offset[ridge][inc]
    interior = np.where(forward[inc], base + pos - 1, base + n_int[inc] - pos)
    gather = np.where(pos == 0, start_vertex[inc], interior)
    rings = shapely.linearrings(pool[gather], indices=cell[inc])
    polys = shapely.polygons(rings)
    if len(polys) != n_inside:
        raise RuntimeError(f"{len(polys)} cells for {n_inside} inside seeds")
    return polys


# --------------------------------------------------------------------------------------------------------------
# Counties, unit attributes and rules
# --------------------------------------------------------------------------------------------------------------


def counties(p: Params, seeds: Seeds) -> tuple[np.ndarray, list[str], list[str]]:
    """County of each inside seed (nearest of well-spread county centres), county codes and names."""
    n_inside = seeds.n_priority + seeds.n_key
    xy = seeds.xy[:n_inside]
    n_c = max(1, round(p.units / p.units_per_county))
    rng = rng_for(p.seed, "counties")
    centres = [int(rng.integers(n_inside))]
    dist = np.hypot(*(xy - xy[centres[0]]).T)
    for _ in range(n_c - 1):  # farthest-point sampling
        nxt = int(np.argmax(dist))
        centres.append(nxt)
        dist = np.minimum(dist, np.hypot(*(xy - xy[nxt]).T))
    c_xy = xy[centres]
    # Number counties from north-west to south-east, ten to a prefecture-level city.
    rank = np.lexsort((c_xy[:, 0], -np.round(c_xy[:, 1] / 50_000)))
    renum = np.empty(n_c, dtype=np.int64)
    renum[rank] = np.arange(n_c)
    owner = np.empty(n_inside, dtype=np.int64)
    for s in range(0, n_inside, 4096):
        block = xy[s:s + 4096]
        dist = np.hypot(block[:, None, 0] - c_xy[:, 0], block[:, None, 1] - c_xy[:, 1])
        owner[s:s + 4096] = renum[np.argmin(dist, axis=1)]
    codes = [f"15{i // 10 + 1:02d}{i % 10 + 21:02d}" for i in range(n_c)]
    names = [f"示意第{i + 1}旗县" for i in range(n_c)]
    return owner, codes, names


TEMPLATES_PRIORITY = [u for u in UNITS if u[2] == "1"]
TEMPLATES_KEY = [u for u in UNITS if u[2] == "2"]
# How often each city unit serves as the template of a generated unit of its type (ecological space and
# towns are the common kinds; wetland parks, water sources, trade and bonded zones are rarer).
TEMPLATE_WEIGHT = {
    "ZH15078110001": 4, "ZH15070310002": 4, "ZH15078110002": 1, "ZH15070310001": 1, "ZH15078110003": 1,
    "ZH15078120001": 4, "ZH15070320001": 4, "ZH15078120002": 0.3, "ZH15078120003": 0.3, "ZH15078120004": 1.5,
    "ZH15070320003": 1.5, "ZH15078120005": 1, "ZH15070320004": 1, "ZH15078120006": 1, "ZH15070320002": 1,
}


@dataclass
class UnitTable:
    frame: gpd.GeoDataFrame  # metric CRS, rows in code order
    seed_row: np.ndarray  # row of each inside seed
    county_of_row: np.ndarray
    template_of_row: list[str]
    codes: list[str]
    county_codes: list[str]
    county_names: list[str]


def unit_table(p: Params, seeds: Seeds, polys: np.ndarray) -> UnitTable:
    n_inside = seeds.n_priority + seeds.n_key
    county, c_codes, c_names = counties(p, seeds)
    digit = np.where(np.arange(n_inside) < seeds.n_priority, 1, 2)
    rng = rng_for(p.seed, "templates")
    template = np.empty(n_inside, dtype=object)
    for d, pool in ((1, TEMPLATES_PRIORITY), (2, TEMPLATES_KEY)):
        idx = np.flatnonzero(digit == d)
        w = np.array([TEMPLATE_WEIGHT[u[0]] for u in pool], float)
        template[idx] = [pool[i][0] for i in rng.choice(len(pool), idx.size, p=w / w.sum())]
    order = np.lexsort((np.arange(n_inside), digit, county))
    seed_row = np.empty(n_inside, dtype=np.int64)
    seed_row[order] = np.arange(n_inside)
    serial: dict[tuple[int, int], int] = {}
    by_code = {u[0]: u for u in UNITS}
    texts = unit_texts()
    rows = []
    for s in order:
        c, dg = int(county[s]), int(digit[s])
        serial[(c, dg)] = n = serial.get((c, dg), 0) + 1
        code = f"ZH{c_codes[c]}{dg}{n:04d}"
        tpl = by_code[template[s]]
        kind = "优先保护单元" if dg == 1 else "重点管控单元"
        rows.append({
            "HJZHGKDYBM": code, "HJZHGKDYMC": f"{c_names[c]}{tpl[4].split('（')[0]}{kind}{n:04d}", "ZHGKDYFL": str(dg),
            "PROV": "内蒙古自治区", "CITY": f"示意第{c // 10 + 1}盟市", "AREA": c_names[c], "XZQDM": c_codes[c],
            "DYLB": tpl[4], **{DIMENSION_FIELDS[dim]: texts.get(tpl[0], {}).get(dim, "") for dim in DIMENSIONS},
            "REMARK": f"{PROVENANCE_ILLUSTRATIVE_ZH}。按 {tpl[0]} 的单元清单生成。",
        })
    frame = gpd.GeoDataFrame(rows, geometry=list(polys[order]), crs=METRIC_EPSG)
    return UnitTable(frame=frame, seed_row=seed_row, county_of_row=county[order],
                     template_of_row=list(template[order]), codes=[r["HJZHGKDYBM"] for r in rows],
                     county_codes=c_codes, county_names=c_names)


def write_rules(out_zones: Path, ut: UnitTable, with_units: bool) -> int:
    """The rule base of the generated units: the city's vocabulary and city-wide clauses, one list per unit."""
    src = ROOT / "zones"
    out_zones.mkdir(parents=True, exist_ok=True)
    for name in ("facts.yaml", "industries.yaml"):
        shutil.copyfile(src / name, out_zones / name)
    (out_zones / "schema").mkdir(exist_ok=True)
    shutil.copyfile(src / "schema" / "clauses.schema.json", out_zones / "schema" / "clauses.schema.json")
    by_template: dict[str, list[str]] = {}
    for code, tpl in zip(ut.codes, ut.template_of_row):
        by_template.setdefault(tpl, []).append(code)
    doc = yaml.safe_load((src / "citywide.yaml").read_text(encoding="utf-8"))
    for clause in doc["clauses"]:
        units = (clause.get("binds") or {}).get("units")
        if units:
            new = sorted(c for u in units for c in by_template.get(u, []))
            clause["binds"]["units"] = new or [next(c for c in ut.codes if c[8] == units[0][8])]
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(doc, Dumper=dumper, allow_unicode=True, sort_keys=False, width=10_000)
    header = "# Generated by scripts/generate_province_dataset.py from zones/citywide.yaml (unit bindings rebound).\n"
    (out_zones / "citywide.yaml").write_text(header + text, encoding="utf-8")
    units_dir = out_zones / "units"
    units_dir.mkdir(exist_ok=True)
    if not with_units:
        return 0
    templates = {u[0]: (src / "units" / f"{u[0]}.yaml").read_text(encoding="utf-8") for u in UNITS}
    names = dict(zip(ut.codes, ut.frame["HJZHGKDYMC"]))
    title = {u[0]: u[1] for u in UNITS}
    for code, tpl in zip(ut.codes, ut.template_of_row):
        text = templates[tpl].replace(tpl, code).replace(f"title_zh: {title[tpl]}", f"title_zh: {names[code]}")
        (units_dir / f"{code}.yaml").write_text(text, encoding="utf-8")
    return len(ut.codes)


# --------------------------------------------------------------------------------------------------------------
# Red-line patches
# --------------------------------------------------------------------------------------------------------------


@dataclass
class PatchPlan:
    unit_row: np.ndarray
    n: np.ndarray  # distinct vertices (the stored ring has one more)
    area: np.ndarray  # m², before the placement scale
    elong: np.ndarray
    angle: np.ndarray
    rough: np.ndarray
    function: np.ndarray


def patch_plan(p: Params, ut: UnitTable) -> PatchPlan:
    rng = rng_for(p.seed, "patch-plan")
    pri = np.flatnonzero(ut.frame["ZHGKDYFL"].to_numpy() == "1")
    area = shapely.area(geoms_of(ut.frame)[pri])
    counts = rng.multinomial(p.red_patches, area / area.sum())
    unit_row = np.repeat(pri, counts)
    m = p.red_patches
    a = np.clip(p.patch_median_km2 * rng.lognormal(0.0, 0.8, m), 0.015, 8.0) * 1e6
    # Vertex count grows with the outline, as digitised at a roughly constant spacing (the city: 8 m).
    n = np.round(0.95 * np.sqrt(a) * rng.lognormal(0.0, 0.2, m))
    n = np.clip(n, PATCH_MIN_VERTICES - 1, PATCH_MAX_VERTICES - 1)
    functions = list(RED_LINE_FUNCTION_ZH)
    func = np.empty(m, dtype=object)
    tpl_of_patch = np.asarray(ut.template_of_row, dtype=object)[unit_row]
    for tpl in sorted(set(tpl_of_patch)):
        idx = np.flatnonzero(tpl_of_patch == tpl)
        plan = RED_LINE_PLAN.get(tpl) or [(f, 1, 0, []) for f in functions]
        w = np.array([g[1] for g in plan], float)
        func[idx] = [plan[i][0] for i in rng.choice(len(plan), idx.size, p=w / w.sum())]
    return PatchPlan(unit_row=unit_row, n=n.astype(np.int64), area=a, elong=rng.uniform(1.0, 2.4, m),
                     angle=rng.uniform(0, np.pi, m), rough=rng.uniform(0.14, 0.3, m), function=func)


def patch_shapes(p: Params, plan: PatchPlan, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (centred on 0, area as planned) of patches lo..hi and their ring offsets; same block, same shapes."""
    rng = rng_for(p.seed, f"patch-shapes-{lo}")
    n = plan.n[lo:hi]
    k_count = 10
    coeff = rng.normal(0.0, 1.0, (hi - lo, k_count)) * plan.rough[lo:hi, None] * np.arange(1, k_count + 1) ** -1.15
    phase = rng.uniform(0, 2 * np.pi, (hi - lo, k_count))
    harmonic = coeff * np.exp(1j * phase)  # log r = Re Σ_k harmonic_k · e^{ikθ}
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    own = np.repeat(np.arange(hi - lo), n)
    j = np.arange(int(n.sum())) - starts[own]
    theta = 2 * np.pi * j / n[own]
    z1 = np.exp(1j * theta)
    z = np.ones_like(z1)
    log_r = np.zeros(theta.size)
    for k in range(k_count):
        z *= z1
        log_r += (harmonic[own, k] * z).real
    # A periodic random walk on log r: fine-scale roughness, radius stays positive (star-shaped, simple).
    steps = rng.normal(0.0, 1.0, theta.size)
    walk = np.cumsum(steps)
    walk -= np.repeat(walk[starts] - steps[starts], n)
    end = walk[starts + n - 1]
    walk -= end[own] * j / n[own]
    log_r += walk * (0.35 * plan.rough[lo:hi] / np.sqrt(n))[own]
    r = np.exp(log_r)
    e = np.sqrt(plan.elong[lo:hi])[own]
    x0, y0 = r * np.cos(theta) * e, r * np.sin(theta) / e
    ca, sa = np.cos(plan.angle[lo:hi])[own], np.sin(plan.angle[lo:hi])[own]
    x, y = x0 * ca - y0 * sa, x0 * sa + y0 * ca
    nxt = np.arange(x.size) + 1
    nxt[starts + n - 1] = starts
    area = 0.5 * np.add.reduceat(x * y[nxt] - x[nxt] * y, starts)
    f = np.sqrt(plan.area[lo:hi] / area)[own]
    return np.column_stack([x * f, y * f]), starts


def envelope_radii(xy: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per patch, the radii of a star polygon of ENVELOPE_SECTORS vertices that contains the (star-shaped) patch.

    The patch's largest radius over a window of sectors, divided by cos(half a sector), at each sector boundary:
    the chord between two such vertices stays farther from the centre than any patch point of the sector between.
    """
    m = len(starts)
    n = np.diff(np.append(starts, len(xy)))
    own = np.repeat(np.arange(m), n)
    step = 2 * np.pi / ENVELOPE_SECTORS
    sector = np.floor((np.arctan2(xy[:, 1], xy[:, 0]) + np.pi) / step).astype(np.int64) % ENVELOPE_SECTORS
    most = np.zeros(m * ENVELOPE_SECTORS)
    np.maximum.at(most, own * ENVELOPE_SECTORS + sector, np.hypot(xy[:, 0], xy[:, 1]))
    most = most.reshape(m, ENVELOPE_SECTORS)
    # Consecutive vertices are less than a sector apart in angle: a window of ±2 sectors covers every edge.
    window = np.max([np.roll(most, k, axis=1) for k in (-2, -1, 0, 1, 2)], axis=0)
    return np.maximum(window, np.roll(window, 1, axis=1)) / math.cos(step / 2)


def envelopes(centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Envelope polygons (vertex i at the boundary between sectors i-1 and i)."""
    angle = -np.pi + np.arange(ENVELOPE_SECTORS) * 2 * np.pi / ENVELOPE_SECTORS
    x = centre[:, 0, None] + radii * np.cos(angle)
    y = centre[:, 1, None] + radii * np.sin(angle)
    idx = np.repeat(np.arange(len(centre)), ENVELOPE_SECTORS)
    return shapely.polygons(shapely.linearrings(np.column_stack([x.ravel(), y.ravel()]), indices=idx))


def place_patches(p: Params, plan: PatchPlan, ut: UnitTable, log: Log) -> tuple[np.ndarray, np.ndarray]:
    """Centres and scale factors: each patch's envelope inside its unit (by a margin) and clear of all others."""
    m = len(plan.n)
    radii = np.zeros((m, ENVELOPE_SECTORS))
    for lo in range(0, m, PATCH_CHUNK):
        hi = min(lo + PATCH_CHUNK, m)
        radii[lo:hi] = envelope_radii(*patch_shapes(p, plan, lo, hi))
    geoms = geoms_of(ut.frame)
    shapely.prepare(geoms)
    rings = shapely.boundary(geoms)
    shapely.prepare(rings)
    bounds = shapely.bounds(geoms)
    rng = rng_for(p.seed, "patch-placement")
    centre = np.full((m, 2), np.nan)
    scale = np.ones(m)
    fails = np.zeros(m, dtype=np.int64)
    pending = np.arange(m)
    placed_env, placed_tree = np.zeros(0, dtype=object), None
    rounds = 0
    while pending.size:
        rounds += 1
        if rounds > 500:
            raise RuntimeError(f"{pending.size} patches could not be placed")
        u = plan.unit_row[pending]
        b = bounds[u]
        cx = b[:, 0] + rng.uniform(0, 1, pending.size) * (b[:, 2] - b[:, 0])
        cy = b[:, 1] + rng.uniform(0, 1, pending.size) * (b[:, 3] - b[:, 1])
        ok = shapely.contains_xy(geoms[u], cx, cy)
        cand = np.flatnonzero(ok)
        env = envelopes(np.column_stack([cx[cand], cy[cand]]), radii[pending[cand]] * scale[pending[cand], None])
        clear = ~shapely.dwithin(rings[u[cand]], env, PATCH_UNIT_MARGIN_M)
        cand, env = cand[clear], env[clear]
        if placed_tree is not None and cand.size:
            hit, _ = placed_tree.query(env, predicate="dwithin", distance=PATCH_GAP_M)
            free = np.ones(cand.size, bool)
            free[hit] = False
            cand, env = cand[free], env[free]
        if cand.size > 1:
            i, j = shapely.STRtree(env).query(env, predicate="dwithin", distance=PATCH_GAP_M)
            free = np.ones(cand.size, bool)
            free[j[i < j]] = False  # the earlier patch wins a clash within a round
            cand, env = cand[free], env[free]
        won = np.zeros(pending.size, bool)
        won[cand] = True
        centre[pending[won]] = np.column_stack([cx[won], cy[won]])
        lost = pending[~won]
        fails[lost] += 1
        scale[lost[fails[lost] % 10 == 0]] *= 0.9  # where space is tight a patch gets smaller, as in the city build
        if cand.size:
            placed_env = np.concatenate([placed_env, env])
            placed_tree = shapely.STRtree(placed_env)
        pending = lost
    log(f"red line placed in {rounds} rounds; {(scale < 1).mean():.1%} of patches shrunk (smallest scale "
        f"{scale.min():.2f})")
    return centre, scale


# --------------------------------------------------------------------------------------------------------------
# Sparse element layers
# --------------------------------------------------------------------------------------------------------------


def blob(rng: np.random.Generator, centre, area_m2: float, n: int = 400, elong: float = 1.5, angle: float = 0.0,
         rough: float = 0.2) -> shapely.Polygon:
    """A star-shaped polygon (always simple) of the given area around `centre`."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = np.arange(1, 25)
    coeff = rng.normal(0.0, 1.0, k.size) * rough * k ** -1.2
    phase = rng.uniform(0, 2 * np.pi, k.size)
    r = np.exp((np.cos(np.outer(theta, k) + phase) * coeff).sum(axis=1))
    x0, y0 = r * np.cos(theta) * math.sqrt(elong), r * np.sin(theta) / math.sqrt(elong)
    x, y = x0 * math.cos(angle) - y0 * math.sin(angle), x0 * math.sin(angle) + y0 * math.cos(angle)
    poly = shapely.Polygon(np.column_stack([x, y]))
    f = math.sqrt(area_m2 / poly.area)
    return shapely.Polygon(np.column_stack([x * f + centre[0], y * f + centre[1]]))


def polys_only(geom) -> shapely.MultiPolygon:
    parts = [g for g in shapely.get_parts(geom) if g.geom_type == "Polygon" and not g.is_empty]
    return shapely.MultiPolygon(parts)


def reserve_rows(ut: UnitTable) -> np.ndarray:
    """Per county its largest priority unit, which holds the county's nature reserve."""
    geoms = geoms_of(ut.frame)
    area = shapely.area(geoms)
    pri = ut.frame["ZHGKDYFL"].to_numpy() == "1"
    rows = []
    for c in range(len(ut.county_codes)):
        cand = np.flatnonzero(pri & (ut.county_of_row == c))
        if cand.size:
            rows.append(int(cand[np.argmax(area[cand])]))
    return np.array(rows, dtype=np.int64)


def sparse_layers(p: Params, seeds: Seeds, ut: UnitTable, red_in_reserves: np.ndarray) -> dict[str, gpd.GeoDataFrame]:
    """Per county and town: nature reserves, wetland parks, water sources, grassland, farmland, mining, planning.

    `red_in_reserves`: the red-line patches (metric) of the units `reserve_rows` names.
    """
    rng = rng_for(p.seed, "elements")
    frame = ut.frame
    geoms = geoms_of(frame)
    is_pri = frame["ZHGKDYFL"].to_numpy() == "1"
    tree = shapely.STRtree(geoms)
    red_tree = shapely.STRtree(red_in_reserves)
    reserves = set(reserve_rows(ut).tolist())
    county_of_row = ut.county_of_row
    n_c = len(ut.county_codes)
    town_county = np.full(len(seeds.towns), -1)
    town_rows: dict[int, list[int]] = {}
    for s in range(seeds.n_priority, seeds.n_priority + seeds.n_key):
        t = int(seeds.town_of[s])
        town_rows.setdefault(t, []).append(int(ut.seed_row[s]))
    for t, rows in town_rows.items():
        counts = np.bincount(county_of_row[rows], minlength=n_c)
        town_county[t] = int(np.argmax(counts))

    def within(geom, rows_allowed: np.ndarray, margin: float = 30.0):
        """The part of `geom` inside the given unit rows, kept `margin` metres from their outer edge."""
        hits = tree.query(geom, predicate="intersects")
        hits = hits[np.isin(hits, rows_allowed)]
        if hits.size == 0:
            return shapely.Polygon()
        allowed = shapely.coverage_union_all(geoms[hits]).buffer(-margin)
        return polys_only(shapely.intersection(geom, allowed))

    pri_rows = np.flatnonzero(is_pri)
    key_rows = np.flatnonzero(~is_pri)
    layers: dict[str, list[dict]] = {k: [] for k in (
        "nature_reserve", "wetland_parks", "drinking_water", "basic_grassland", "basic_farmland", "urban_boundary",
        "no_burn_zone", "mining_areas", "water_env_zones", "air_env_zones")}
    urban_by_county: dict[int, list] = {}
    for t, (tx, ty, r) in enumerate(seeds.towns):
        c = int(town_county[t])
        if c < 0:
            continue
        g = within(blob(rng, (tx, ty), 0.3 * math.pi * r * r, 600, rng.uniform(1, 2), rng.uniform(0, np.pi), 0.12),
                   key_rows)
        if not g.is_empty:
            layers["urban_boundary"].append({"name": f"{ut.county_names[c]}城镇开发边界{t + 1:04d}", "geometry": g})
            urban_by_county.setdefault(c, []).append(g)
    for c in range(n_c):
        name = ut.county_names[c]
        c_pri = pri_rows[county_of_row[pri_rows] == c]
        c_key = key_rows[county_of_row[key_rows] == c]
        if c_pri.size:
            big = c_pri[np.argsort(-shapely.area(geoms[c_pri]), kind="stable")]
            assert int(big[0]) in reserves
            # Nature reserve: a blob in the largest priority unit; its core zone is the red line inside it.
            unit = geoms[big[0]]
            general = within(blob(rng, shapely.get_coordinates(unit.point_on_surface())[0], 0.35 * unit.area, 800,
                                  rng.uniform(1, 2), rng.uniform(0, np.pi)), big[:1], 60.0)
            if not general.is_empty:
                inside = red_tree.query(general, predicate="contains_properly")
                if inside.size:
                    core = shapely.union_all(red_in_reserves[inside])
                else:
                    core = shapely.intersection(general.point_on_surface().buffer(math.sqrt(general.area) / 8), general)
                base = {"name": f"{name}示意湿地自然保护区", "level": "县级", "established": int(rng.integers(1985, 2015)),
                        "effective_date": "2026-03-15", "basis": "《自然保护区条例》（国务院令第830号）两区划分"}
                layers["nature_reserve"].append({**base, "zone": "core", "zone_name": "核心保护区",
                                                 "geometry": polys_only(core)})
                layers["nature_reserve"].append({**base, "zone": "general_control", "zone_name": "一般控制区",
                                                 "geometry": polys_only(shapely.difference(general, core))})
            row = big[min(1, big.size - 1)]
            park = within(blob(rng, shapely.get_coordinates(geoms[row].point_on_surface())[0],
                               0.15 * geoms[row].area, 600, 1.6, rng.uniform(0, np.pi)), np.array([row]), 60.0)
            if not park.is_empty:
                layers["wetland_parks"].append({"name": f"{name}示意国家湿地公园", "level": "国家级",
                                                "area_ha_published": round(park.area / 1e4, 1), "geometry": park})
            for i, row in enumerate(big[2:5]):
                g = within(blob(rng, shapely.get_coordinates(geoms[row].point_on_surface())[0], 0.4 * geoms[row].area,
                                900, rng.uniform(1, 2.5), rng.uniform(0, np.pi), 0.3), np.array([row]), 60.0)
                if not g.is_empty:
                    layers["basic_grassland"].append({"name": f"{name}基本草原片区{i + 1:02d}", "geometry": g})
        towns = [t for t in range(len(seeds.towns)) if town_county[t] == c]
        if towns:
            t = max(towns, key=lambda k: seeds.towns[k, 2])
            tx, ty, r = seeds.towns[t]
            ang = rng.uniform(0, 2 * np.pi)
            sx, sy = tx + 1.25 * r * math.cos(ang), ty + 1.25 * r * math.sin(ang)
            quasi = blob(rng, (sx, sy), 5e6, 400, 1.3, rng.uniform(0, np.pi))
            level2 = blob(rng, (sx, sy), 1.3e6, 300, 1.2, rng.uniform(0, np.pi))
            level2 = shapely.intersection(level2, quasi.buffer(-50))
            wells = shapely.union_all([shapely.buffer(shapely.Point(sx + dx, sy + dy), 100, quad_segs=16)
                                       for dx, dy in rng.uniform(-300, 300, (4, 2))])
            level1 = shapely.intersection(wells, level2.buffer(-20))
            src = f"{name}第一水源地"
            for zone, zname, g in (("level1", "一级保护区", level1),
                                   ("level2", "二级保护区", shapely.difference(level2, level1)),
                                   ("quasi", "准保护区", shapely.difference(quasi, level2))):
                layers["drinking_water"].append({"source_name": src, "zone": zone, "zone_name": zname,
                                                 "geometry": polys_only(g)})
            urban = shapely.union_all(urban_by_county.get(c, []))
            for i in range(3):
                ang = rng.uniform(0, 2 * np.pi)
                g = blob(rng, (tx + 0.8 * r * math.cos(ang), ty + 0.8 * r * math.sin(ang)), 0.08 * math.pi * r * r,
                         400, 2.0, rng.uniform(0, np.pi))
                g = within(shapely.difference(g, urban.buffer(50)), key_rows)
                if not g.is_empty:
                    layers["basic_farmland"].append({"name": f"{name}永久基本农田保护片区{i + 1:02d}", "geometry": g})
            if urban_by_county.get(c):
                burn = within(urban.buffer(200), key_rows, 5.0)
                layers["no_burn_zone"].append({"name": f"{name}高污染燃料禁燃区", "geometry": burn})
        if c_key.size:
            row = c_key[np.argmax(shapely.area(geoms[c_key]))]
            centre = shapely.get_coordinates(geoms[row].point_on_surface())[0]
            a = geoms[row].area
            mines: list = []
            for kind, kname, share, dx in (("open_pit", "露天采场", 0.12, 0.0), ("dump", "排土场", 0.05, 0.45),
                                           ("subsidence", "采煤沉陷区", 0.04, -0.45)):
                g = blob(rng, (centre[0] + dx * math.sqrt(a), centre[1]), share * a, 300, 1.5, rng.uniform(0, np.pi))
                g = within(g, np.array([row]), 40.0)
                for other in mines:
                    g = polys_only(shapely.difference(g, other.buffer(60)))
                if not g.is_empty:
                    mines.append(g)
                    layers["mining_areas"].append({"name": f"{name}示意{kname}", "kind": kind, "kind_name": kname,
                                                   "geometry": g})
    counties_geom = [shapely.coverage_union_all(geoms[county_of_row == c]) for c in range(n_c)]
    classes = ("Ⅱ", "Ⅲ", "Ⅳ", "Ⅴ")
    for c in range(n_c):
        target = int(rng.integers(1, 4))
        measured = min(target + int(rng.integers(-1, 2)), 3)
        ok = measured <= target
        layers["water_env_zones"].append({
            "catchment": f"{ut.county_names[c]}汇水区", "section": f"{ut.county_names[c]}出境断面（示意）",
            "target_class": classes[target], "measured_class": classes[measured], "compliant": int(ok),
            "zone_type": "水环境一般管控区" if ok else "水环境质量超标重点管控区", "geometry": polys_only(counties_geom[c])})
    air = {
        "priority": ("大气环境优先保护区", [r["geometry"] for r in layers["nature_reserve"]]),
        "high_emission": ("大气环境高排放重点管控区", [r["geometry"].buffer(300) for r in layers["mining_areas"]]),
        "layout_sensitive": ("大气环境布局敏感重点管控区",
                             [r["geometry"] for r in layers["drinking_water"] if r["zone"] == "quasi"]),
        "receptor_sensitive": ("大气环境受体敏感重点管控区", [r["geometry"] for r in layers["urban_boundary"]]),
    }
    for zone, (zname, parts) in air.items():
        if parts:
            layers["air_env_zones"].append({"zone_type": zone, "zone_name": zname,
                                            "geometry": polys_only(shapely.union_all(parts))})
    out = {}
    for name, rows in layers.items():
        for r in rows:
            r["geometry"] = polys_only(r["geometry"])
        rows = [r for r in rows if not r["geometry"].is_empty]
        if not rows:
            raise RuntimeError(f"layer {name} came out empty: too few units for the sparse layers")
        out[name] = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_EPSG)
    out["admin_boundary"] = gpd.GeoDataFrame(
        {"county_code": ut.county_codes, "county_name": ut.county_names},
        geometry=[polys_only(g) for g in counties_geom], crs=METRIC_EPSG)
    return out


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


def to_storage_frame(frame: gpd.GeoDataFrame, name: str, *, snap: bool = False) -> gpd.GeoDataFrame:
    """EPSG:4490 geometry (checked valid) with the columns of the contract.

    Units and patches are built on the millimetre grid; other layers (overlay results) are snapped to it with
    `snap`, topology-safe, as the city builder does."""
    spec = LAYERS[name]
    geoms = geoms_of(frame)
    if snap:
        geoms = shapely.set_precision(geoms, GRID_M)
    geoms = shapely.transform(geoms, lambda xy: np.column_stack(_to_storage.transform(xy[:, 0], xy[:, 1])))
    bad = ~shapely.is_valid(geoms) | shapely.is_empty(geoms)
    if bad.any():
        i = int(np.argmax(bad))
        raise RuntimeError(f"{name}: row {i} invalid in EPSG:4490: {shapely.is_valid_reason(geoms[i])}")
    data = {}
    for col, kind in spec.fields.items():
        values = frame[col]
        data[col] = values.astype({"int": "int64", "float": "float64"}.get(kind, str))
    return gpd.GeoDataFrame(data, geometry=list(geoms), crs=STORAGE_EPSG)


def land_cover(territory_layers: dict[str, gpd.GeoDataFrame],
               bounds: tuple[float, ...]) -> tuple[np.ndarray, object, float]:
    """A coarse land-cover grid (EPSG:4548) consistent with the vector layers."""
    minx, miny, maxx, maxy = bounds
    px = max(30.0, math.ceil(math.sqrt((maxx - minx) * (maxy - miny) / MAX_LAND_COVER_PIXELS) / 10) * 10)
    minx, miny = math.floor(minx / px) * px - px, math.floor(miny / px) * px - px
    maxx, maxy = math.ceil(maxx / px) * px + px, math.ceil(maxy / px) * px + px
    shape = (int(round((maxy - miny) / px)), int(round((maxx - minx) / px)))
    transform = rasterio.Affine(px, 0.0, minx, 0.0, -px, maxy)  # north-up, origin at the top-left corner
    code = LAND_COVER_KEYS
    L = territory_layers
    mining = L["mining_areas"]
    shapes = [
        (geoms_of(L["admin_boundary"]), code["grassland"]),
        (geoms_of(L["basic_farmland"]), code["cropland"]),
        (geoms_of(L["wetland_parks"]), code["wetland"]),
        (geoms_of(L["nature_reserve"])[L["nature_reserve"]["zone"].to_numpy() == "core"], code["wetland"]),
        (geoms_of(L["urban_boundary"]), code["built_up"]),
        (geoms_of(mining)[mining["kind"].isin(["open_pit", "dump"]).to_numpy()], code["mining"]),
        (geoms_of(mining)[(mining["kind"] == "subsidence").to_numpy()], code["bare_sand"]),
    ]
    grid = np.zeros(shape, dtype="uint8")
    for geoms, value in shapes:
        if len(geoms):
            rasterize([(g, int(value)) for g in geoms], out_shape=shape, transform=transform, out=grid)
    return grid, transform, px


def write_land_cover(path: Path, grid: np.ndarray, transform, dataset_id: str) -> None:
    profile = {
        "driver": "GTiff", "dtype": "uint8", "count": 1, "width": grid.shape[1], "height": grid.shape[0],
        "crs": f"EPSG:{METRIC_EPSG}", "transform": transform, "nodata": LAND_COVER_NODATA,
        "compress": "deflate", "predictor": 2, "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(grid, 1)
            dst.update_tags(TIFFTAG_DATETIME=REFERENCE_DATE.replace("-", ":") + " 00:00:00", DATASET_ID=dataset_id,
                            PROVENANCE=PROVENANCE_ILLUSTRATIVE,
                            CLASSES=json.dumps({c: k for c, (k, _, _) in LAND_COVER_CLASSES.items()}))


def vertex_count(frame: gpd.GeoDataFrame) -> int:
    return int(shapely.get_num_coordinates(geoms_of(frame)).sum())


def generate(out_dir: Path, params: Params = Params(), *, out: Callable[[str], None] = print) -> dict:
    """Generate the dataset into `out_dir` (replacing what the generator wrote there before); return the summary."""
    log = Log(out)
    p = params
    log(f"province dataset: {p.units:,} units, {p.red_patches:,} red-line patches, seed {p.seed} -> {out_dir}")
    dataset_id = f"province-synthetic-u{p.units}-p{p.red_patches}-s{p.seed}"
    centre = _to_metric.transform(*CENTRE_LONLAT)
    with log.step("territory and seeds"):
        poly = outline(rng_for(p.seed, "outline"), p.units * p.unit_km2 * 1e6, centre)
        seeds = make_seeds(p, poly, log)
    with log.step("Voronoi units"):
        rg = ridges(p, seeds, log)
        polys = cells(seeds, rg)
        del rg
        bad = ~shapely.is_valid(polys)
        if bad.any():
            i = int(np.argmax(bad))
            raise RuntimeError(f"unit cell {i} invalid: {shapely.is_valid_reason(polys[i])}")
        ut = unit_table(p, seeds, polys)
        del polys
        nv = shapely.get_num_coordinates(geoms_of(ut.frame))
        log(f"units: {len(ut.frame):,} in {len(ut.county_codes):,} counties, vertices min {nv.min():,} "
            f"median {int(np.median(nv)):,} max {nv.max():,}, total {nv.sum():,}")
    with log.step("red-line placement"):
        plan = patch_plan(p, ut)
        centres, scales = place_patches(p, plan, ut, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (GPKG_NAME, RASTER_NAME, SUMMARY_NAME):
        (out_dir / stale).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "zones", ignore_errors=True)
    summary: dict = {"params": asdict(p), "dataset_id": dataset_id, "layers": {}}
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        gpkg = Path(tmp) / GPKG_NAME
        red_rows = {"patch_id": [], "function": [], "function_name": [], "county_code": []}
        serial: dict[str, int] = {}
        for r, f in zip(plan.unit_row, plan.function):
            county = ut.county_codes[ut.county_of_row[r]]
            serial[county] = serial.get(county, 0) + 1
            red_rows["patch_id"].append(f"HX{county}{serial[county]:05d}")
            red_rows["function"].append(f)
            red_rows["function_name"].append(RED_LINE_FUNCTION_ZH[f])
            red_rows["county_code"].append(county)
        red_rows = pd.DataFrame(red_rows)
        # The sparse layers need the red line in metric coordinates only where reserves are: keep just those.
        reserves = reserve_rows(ut)
        red_kept: list = []
        nv_red, red_m2 = 0, 0.0
        with log.step("red line: shapes, reprojection, writing"):
            for lo in range(0, len(plan.n), PATCH_CHUNK):
                hi = min(lo + PATCH_CHUNK, len(plan.n))
                xy, starts = patch_shapes(p, plan, lo, hi)
                own = np.repeat(np.arange(hi - lo), plan.n[lo:hi])
                xy = mm(xy * scales[lo:hi, None][own] + centres[lo:hi][own])
                rings = shapely.linearrings(xy, indices=own)
                metric = shapely.polygons(rings)
                red_kept.append(metric[np.isin(plan.unit_row[lo:hi], reserves)])
                nv_red += int(xy.shape[0] + (hi - lo))
                red_m2 += float(shapely.area(metric).sum())
                frame = gpd.GeoDataFrame(red_rows.iloc[lo:hi].reset_index(drop=True),
                                         geometry=list(shapely.multipolygons(metric, indices=np.arange(hi - lo))),
                                         crs=METRIC_EPSG)
                write_layer(gpkg, to_storage_frame(frame, "red_line"), "red_line", title=LAYERS["red_line"].title_zh,
                            description=f"示意：合成的省级规模生态保护红线。{PROVENANCE_ILLUSTRATIVE_ZH}")
                if (lo // PATCH_CHUNK) % 4 == 3 or hi == len(plan.n):
                    log(f"  red line {hi:,}/{len(plan.n):,}")
        summary["layers"]["red_line"] = {"features": len(plan.n), "vertices": nv_red, "km2": round(red_m2 / 1e6, 3)}
        with log.step("sparse layers"):
            sparse = sparse_layers(p, seeds, ut, np.concatenate(red_kept))
        del red_kept
        with log.step("other layers: reprojection, writing"):
            for name, spec in LAYERS.items():
                if name == "red_line":
                    continue
                frame = ut.frame if name == "control_units" else sparse.get(name)
                if frame is None:
                    continue  # optional layers (rivers, lakes) are not generated
                if name == "control_units":
                    frame = frame.set_geometry(list(shapely.multipolygons(geoms_of(frame),
                                                                          indices=np.arange(len(frame)))))
                storage = to_storage_frame(frame, name, snap=name != "control_units")
                write_layer(gpkg, storage, name, title=spec.title_zh,
                            description=f"示意：合成的省级规模数据。{PROVENANCE_ILLUSTRATIVE_ZH}")
                summary["layers"][name] = {"features": len(frame), "vertices": vertex_count(frame),
                                           "km2": round(float(shapely.area(geoms_of(frame)).sum()) / 1e6, 3)}
        with log.step("land cover"):
            territory_bounds = sparse["admin_boundary"].total_bounds
            grid, transform, px = land_cover(sparse, tuple(territory_bounds))
            write_land_cover(Path(tmp) / RASTER_NAME, grid, transform, dataset_id)
            summary["land_cover"] = {"pixel_m": px, "shape": list(grid.shape)}
        prov = pd.DataFrame(
            [{"layer": name, "title_zh": spec.title_zh, "source": "示意：合成的省级规模数据（基准测试用）",
              "provenance": PROVENANCE_ILLUSTRATIVE, "provenance_zh": PROVENANCE_ILLUSTRATIVE_ZH,
              "generated_by": "scripts/generate_province_dataset.py"} for name, spec in LAYERS.items()
             if name in summary["layers"]]
            + [{"layer": "land_cover", "title_zh": "土地覆被", "source": f"示意：{RASTER_NAME}，{px:g} m",
                "provenance": PROVENANCE_ILLUSTRATIVE, "provenance_zh": PROVENANCE_ILLUSTRATIVE_ZH,
                "generated_by": "scripts/generate_province_dataset.py"}])
        write_table(gpkg, prov, PROVENANCE_TABLE, description="每个图层的来源与性质")
        write_table(gpkg, pd.DataFrame([{"code": c, "key": k, "name_zh": n, "color": col}
                                        for c, (k, n, col) in LAND_COVER_CLASSES.items()]),
                    LAND_COVER_CLASS_TABLE, description="土地覆被分类")
        info = {
            "dataset_id": dataset_id, "title_zh": "省级规模合成数据（示意，基准测试用）",
            "provenance": PROVENANCE_ILLUSTRATIVE, "provenance_zh": PROVENANCE_ILLUSTRATIVE_ZH, "illustrative": "true",
            "reference_date": REFERENCE_DATE, "builder": "scripts/generate_province_dataset.py", "seed": str(p.seed),
            "storage_crs": f"EPSG:{STORAGE_EPSG}", "metric_crs": f"EPSG:{METRIC_EPSG}", "land_cover_file": RASTER_NAME,
            "units": str(p.units), "red_patches": str(p.red_patches),
        }
        write_table(gpkg, pd.DataFrame({"key": list(info), "value": list(info.values())}), DATASET_TABLE,
                    description="数据集信息")
        with log.step("rules"):
            n_files = write_rules(Path(tmp) / "zones", ut, p.unit_rules)
        for name in (GPKG_NAME, RASTER_NAME):
            (Path(tmp) / name).replace(out_dir / name)
        (Path(tmp) / "zones").replace(out_dir / "zones")
    territory_km2 = summary["layers"]["admin_boundary"]["km2"]
    summary.update({
        "units": len(ut.frame), "red_patches": len(plan.n), "counties": len(ut.county_codes),
        "territory_km2": territory_km2, "unit_rule_files": n_files,
        "vertices": sum(v["vertices"] for v in summary["layers"].values()),
        "gpkg_bytes": (out_dir / GPKG_NAME).stat().st_size, "tif_bytes": (out_dir / RASTER_NAME).stat().st_size,
        "seconds": round(time.perf_counter() - log.t0, 2), "steps": log.steps,
    })
    (out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"done: territory {territory_km2:,.0f} km², red line {summary['layers']['red_line']['km2']:,.1f} km², "
        f"{summary['vertices']:,} vertices, GeoPackage {summary['gpkg_bytes'] / 2**20:,.1f} MiB")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Params()
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write (e.g. under /tmp)")
    parser.add_argument("--units", type=int, default=d.units)
    parser.add_argument("--red-patches", type=int, default=d.red_patches)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--unit-km2", type=float, default=d.unit_km2, help="mean unit area (territory = units × this)")
    parser.add_argument("--edge-spacing", type=float, default=d.edge_spacing_m,
                        help="median unit-boundary vertex spacing, m")
    parser.add_argument("--no-unit-rules", action="store_true", help="write no per-unit clause files")
    args = parser.parse_args(argv)
    if args.units < 15 or args.red_patches < 1:
        parser.error("--units must be at least 15 and --red-patches at least 1")
    params = Params(units=args.units, red_patches=args.red_patches, seed=args.seed, unit_km2=args.unit_km2,
                    edge_spacing_m=args.edge_spacing, unit_rules=not args.no_unit_rules)
    generate(args.out, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
