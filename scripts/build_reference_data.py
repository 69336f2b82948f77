"""Build the illustrative Manzhouli reference dataset from published facts.

    python -m scripts.build_reference_data                       # geodata/manzhouli.gpkg + geodata/landcover.tif
    python -m scripts.build_reference_data --profile fixture --out tests/fixtures/mini

No official polygon of any control unit or red-line patch is public (domain brief §5), so every geometry here is
synthesized: seeded, deterministic, placed where the brief's geography puts each place, sized to the published
figures (territory ≈ 732 km², red line 71.39 km², 15 units = 5 priority + 10 key, wetland parks 972 ha and
5,878.5 ha, trade zone 11.8 km², bonded zone 1.44 km², 霍尔津河 24.693 km). Geometry is built in CGCS2000 /
Gauss-Krüger CM 117E (EPSG:4548, metres) and stored in CGCS2000 (EPSG:4490).

The partition is exact by construction: every boundary that separates units or zones is added to one set of
lines, noded once and polygonized, and each face is assigned to exactly one unit; units, zone partitions and the
element layers that units must contain are unions of those faces, so shared edges carry identical vertices.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import yaml
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.transform import from_origin
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.ops import polygonize, substring, unary_union
from shapely.prepared import prep

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
from app.geo.vector_io import content_hash, write_layer, write_table

ROOT = Path(__file__).resolve().parents[1]
SEED = 3_1507_81
DATASET_ID = "mzl-reference-2026.1"
REFERENCE_DATE = "2026-11-28"  # the day these facts were assembled; fixed so rebuilds are identical
GPKG_NAME = "manzhouli.gpkg"
RASTER_NAME = "landcover.tif"

TERRITORY_KM2 = 732.0
RED_LINE_KM2 = 71.39
HOLJIN_RIVER_KM = 24.693
GRID_M = 0.001  # coordinates are snapped to a millimetre grid in the metric CRS

_to_gk = Transformer.from_crs(STORAGE_EPSG, METRIC_EPSG, always_xy=True)


@dataclass(frozen=True)
class Profile:
    """How fine the synthesized geometry is: the reference build or the small test fixture."""

    name: str
    spacing_m: float  # vertex spacing of digitised boundaries
    patch_factor: float  # share of the red-line patch count
    pixel_m: float  # land-cover resolution
    min_vertices: int  # fewest vertices of a synthesized outline


PROFILES = {
    "full": Profile("full", spacing_m=8.0, patch_factor=1.0, pixel_m=30.0, min_vertices=240),
    "fixture": Profile("fixture", spacing_m=80.0, patch_factor=0.2, pixel_m=90.0, min_vertices=48),
}


def gk(lon: float, lat: float) -> tuple[float, float]:
    """CGCS2000 lon/lat → Gauss-Krüger CM 117E metres."""
    return _to_gk.transform(lon, lat)


# --------------------------------------------------------------------------------------------------------------
# Shape generators
# --------------------------------------------------------------------------------------------------------------


def noisy_edge(p0, p1, rng: np.random.Generator, amp: float, spacing: float) -> np.ndarray:
    """A natural-looking line from p0 to p1: the straight segment offset by a tapered fractal function.

    The offset is a function of the position along the segment, so the line is a graph over it and cannot
    cross itself; the taper pins both ends so consecutive edges join where they should.
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.hypot(*(p1 - p0)))
    n = max(int(length / spacing), 8)
    t = np.linspace(0.0, 1.0, n + 1)
    kmax = max(4, min(400, n // 3))
    k = np.arange(1, kmax + 1)
    coeff = rng.normal(0.0, 1.0, kmax) * k ** -1.25
    phase = rng.uniform(0, 2 * np.pi, kmax)
    offset = (np.sin(np.outer(t, k) * np.pi + phase) * coeff).sum(axis=1)
    offset -= offset[0] + (offset[-1] - offset[0]) * t
    peak = np.abs(offset).max() or 1.0
    offset *= amp * length / peak * np.sin(np.pi * t) ** 0.35
    direction = (p1 - p0) / length
    normal = np.array([-direction[1], direction[0]])
    return p0 + np.outer(t * length, direction) + np.outer(offset, normal)


def noisy_polyline(points, rng, amp: float, spacing: float) -> np.ndarray:
    """Chain of noisy edges through the control points."""
    parts = [noisy_edge(a, b, rng, amp, spacing) for a, b in zip(points[:-1], points[1:])]
    return np.vstack([parts[0]] + [p[1:] for p in parts[1:]])


def blob(rng, centre, area_m2: float, spacing: float, *, elong: float = 1.0, angle: float = 0.0,
         rough: float = 0.22, min_vertices: int = 48) -> Polygon:
    """A star-shaped polygon of natural outline and exactly the given area, centred on `centre`.

    Star-shaped (radius positive at every bearing) means always simple and valid, whatever the noise.
    """
    k = np.arange(1, 129)
    coeff = rng.normal(0.0, 1.0, k.size) * rough * k ** -1.15
    phase = rng.uniform(0, 2 * np.pi, k.size)
    radius = math.sqrt(area_m2 / math.pi)
    perimeter = 2 * math.pi * radius * (1 + rough) * max(elong, 1 / elong) ** 0.5 * 1.6
    n = int(np.clip(perimeter / spacing, min_vertices, 4000))
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.exp((np.cos(np.outer(theta, k) + phase) * coeff).sum(axis=1))
    xy = np.column_stack([r * np.cos(theta) * elong ** 0.5, r * np.sin(theta) / elong ** 0.5])
    poly = affinity.rotate(Polygon(xy), angle, origin=(0, 0))
    poly = affinity.scale(poly, math.sqrt(area_m2 / poly.area), math.sqrt(area_m2 / poly.area), origin=(0, 0))
    return affinity.translate(poly, *centre)


def scaled(poly, factor: float):
    """Scale a shape about its own centroid by a linear factor."""
    c = poly.centroid
    return affinity.scale(poly, factor, factor, origin=(c.x, c.y))


def fit_area(make, target_m2: float, lo: float, hi: float, tol: float = 1.0):
    """Bisect the parameter of `make(p) -> geometry` until its area is within `tol` m² of the target."""
    for _ in range(80):
        mid = (lo + hi) / 2
        geom = make(mid)
        if abs(geom.area - target_m2) <= tol:
            return geom
        lo, hi = (mid, hi) if geom.area < target_m2 else (lo, mid)
    raise RuntimeError(f"area {target_m2} not reached (last {geom.area})")


def polygons_of(geom) -> list[Polygon]:
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


def as_multi(geom) -> MultiPolygon:
    return MultiPolygon(polygons_of(geom))


# --------------------------------------------------------------------------------------------------------------
# Layout: where each place is (lon/lat from the domain brief §5), and what each unit is
# --------------------------------------------------------------------------------------------------------------

# Territory outline, clockwise from the south-west end of the Russian border. Edge kinds set the roughness:
# the border is a surveyed line between boundary markers, the Hailar river meanders, the rest is land boundary.
OUTLINE = [
    ((117.203, 49.545), "border"), ((117.29, 49.588), "border"), ((117.368, 49.628), "border"),
    ((117.46, 49.672), "border"), ((117.58, 49.683), "land"), ((117.65, 49.674), "land"),
    ((117.71, 49.648), "land"), ((117.765, 49.612), "river"), ((117.83, 49.565), "river"),
    ((117.866, 49.50), "river"), ((117.862, 49.445), "land"), ((117.81, 49.425), "land"),
    ((117.772, 49.39), "land"), ((117.748, 49.34), "shore"), ((117.705, 49.318), "land"),
    ((117.692, 49.35), "land"), ((117.69, 49.40), "land"), ((117.665, 49.445), "land"),
    ((117.635, 49.485), "land"), ((117.58, 49.515), "land"), ((117.50, 49.535), "land"),
    ((117.40, 49.545), "land"), ((117.30, 49.548), "land"),
]
EDGE_AMP = {"border": 0.006, "river": 0.07, "land": 0.08, "shore": 0.09}

# County line between 满洲里市 (north-west) and 扎赉诺尔区 (south-east); extends past the territory.
COUNTY_SPLIT = [(117.60, 49.30), (117.62, 49.40), (117.645, 49.47), (117.67, 49.53), (117.71, 49.565),
                (117.78, 49.595), (117.95, 49.64)]
COUNTIES = {"150781": "满洲里市", "150703": "扎赉诺尔区"}

# Catchment divides for the water-environment zones.
DIVIDE_WEST = [(117.60, 49.72), (117.585, 49.62), (117.57, 49.55), (117.56, 49.44)]
DIVIDE_NORTH_EAST = [(117.585, 49.62), (117.70, 49.612), (117.80, 49.592), (117.95, 49.57)]

RIVERS = {
    "霍尔津河": [(117.318, 49.598), (117.372, 49.606), (117.41, 49.612), (117.43, 49.603), (117.456, 49.612),
              (117.49, 49.622), (117.53, 49.628), (117.565, 49.622)],
    "新开河": [(117.747, 49.626), (117.744, 49.59), (117.752, 49.54), (117.756, 49.47), (117.738, 49.40),
            (117.728, 49.335)],
    "乌日根河": [(117.64, 49.645), (117.69, 49.636), (117.745, 49.622)],
}

UNITS = [
    # code, name, type digit, county, category (Plan 3.3), kind used by the layout
    ("ZH15078110001", "满洲里市边境草原生态保护红线及一般生态空间优先保护单元", "1", "150781", "生态保护红线、一般生态空间"),
    ("ZH15078110002", "霍勒金布拉格国家湿地公园优先保护单元", "1", "150781", "自然保护地（国家湿地公园）"),
    ("ZH15078110003", "满洲里市集中式饮用水水源保护区优先保护单元", "1", "150781", "集中式饮用水水源保护区"),
    ("ZH15078120001", "满洲里市中心城区重点管控单元", "2", "150781", "城市"),
    ("ZH15078120002", "中俄互市贸易区重点管控单元", "2", "150781", "贸易区"),
    ("ZH15078120003", "满洲里综合保税区重点管控单元", "2", "150781", "保税区"),
    ("ZH15078120004", "满洲里市工业园区重点管控单元", "2", "150781", "工业园区"),
    ("ZH15078120005", "满洲里市东湖区生态需水补给区重点管控单元", "2", "150781", "生态需水补给区"),
    ("ZH15078120006", "满洲里市北部采矿用地重点管控单元", "2", "150781", "采矿用地"),
    ("ZH15070310001", "二卡湿地自然保护区优先保护单元", "1", "150703", "自然保护地（自然保护区、国家湿地公园）"),
    ("ZH15070310002", "扎赉诺尔区草原生态保护红线及一般生态空间优先保护单元", "1", "150703", "生态保护红线、一般生态空间"),
    ("ZH15070320001", "扎赉诺尔区城区重点管控单元", "2", "150703", "城市"),
    ("ZH15070320002", "扎赉诺尔区露天煤矿采矿用地重点管控单元", "2", "150703", "采矿用地"),
    ("ZH15070320003", "扎赉诺尔区工业园区重点管控单元", "2", "150703", "工业园区"),
    ("ZH15070320004", "扎赉诺尔区呼伦湖北岸生态需水补给区重点管控单元", "2", "150703", "生态需水补给区"),
]
DEFAULT_UNIT = {"150781": "ZH15078110001", "150703": "ZH15070310002"}

# Red-line patches per priority unit: (function, count, mean area km², clusters as (lon, lat, spread km)).
# Patches cluster where their function lives: sand fixation along the border and the sandy south-west,
# water conservation along rivers and around wells, wetland in the parks and the reserve.
RED_LINE_PLAN = {
    "ZH15078110001": [
        ("windbreak_sand_fixation", 40, 0.30, [(117.26, 49.56, 3.0), (117.33, 49.60, 2.5), (117.47, 49.655, 3.0)]),
        ("grassland", 25, 0.36, [(117.56, 49.66, 3.0), (117.66, 49.59, 3.0), (117.50, 49.545, 3.0)]),
    ],
    "ZH15078110002": [("wetland", 12, 0.14, [(117.43, 49.607, 3.0)])],
    "ZH15078110003": [("water_conservation", 10, 0.22, [(117.287, 49.567, 1.5), (117.613, 49.612, 1.8)])],
    "ZH15070310001": [("wetland", 20, 0.36, [(117.815, 49.49, 4.0)])],
    "ZH15070310002": [
        ("grassland", 20, 0.34, [(117.69, 49.425, 2.5), (117.80, 49.43, 2.0), (117.70, 49.385, 2.0)]),
        ("water_conservation", 15, 0.30, [(117.84, 49.55, 2.5), (117.745, 49.56, 2.5)]),
        ("windbreak_sand_fixation", 10, 0.30, [(117.66, 49.465, 2.0), (117.76, 49.37, 2.0)]),
    ],
}
RED_LINE_FUNCTION_ZH = {
    "wetland": "湿地生态保护",
    "grassland": "草原生物多样性维护",
    "water_conservation": "水源涵养",
    "windbreak_sand_fixation": "防风固沙",
}
# 二卡 reserve core zone: large wetland patches that are both red line and the reserve's 核心保护区 (km²).
CORE_PATCHES_KM2 = (6.2, 4.4, 3.1)


# --------------------------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------------------------


class Builder:
    """Synthesizes every layer in Gauss-Krüger metres; `layers` maps layer name → GeoDataFrame (EPSG:4548)."""

    def __init__(self, profile: Profile, seed: int = SEED) -> None:
        self.p = profile
        self.seed = seed
        self.layers: dict[str, gpd.GeoDataFrame] = {}
        self.notes: dict[str, str] = {}

    def rng(self, name: str) -> np.random.Generator:
        """An independent, named random stream, so adding one feature never reshuffles the others."""
        digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    # -- territory and counties --------------------------------------------------------------------------------

    def territory(self) -> None:
        pts = [gk(*lonlat) for lonlat, _ in OUTLINE]
        rng = self.rng("territory")
        edges, self.river_edge = [], None
        for i, (a, kind) in enumerate(zip(pts, (k for _, k in OUTLINE))):
            b = pts[(i + 1) % len(pts)]
            edge = noisy_edge(a, b, rng, EDGE_AMP[kind], self.p.spacing_m * 2)
            edges.append(edge[:-1])
        ring = np.vstack(edges)
        poly = Polygon(ring)
        if not poly.is_valid:
            raise RuntimeError(f"territory outline invalid: {shapely.is_valid_reason(poly)}")
        factor = math.sqrt(TERRITORY_KM2 * 1e6 / poly.area)
        self.origin = poly.centroid
        self.T = scaled(poly, factor)
        self.scale = factor
        river_ids = [i for i, (_, k) in enumerate(OUTLINE) if k == "river"]
        # The Hailar river is the eastern edge: keep its vertices for the rivers layer.
        start = sum(len(e) for e in edges[: river_ids[0]])
        stop = sum(len(e) for e in edges[: river_ids[-1] + 1]) + 1
        coords = np.asarray(self.T.exterior.coords)
        self.hailar = LineString(coords[start:stop])

    def place(self, lon: float, lat: float) -> tuple[float, float]:
        """A brief's lon/lat in the scaled territory frame (the outline was scaled about its centroid)."""
        x, y = gk(lon, lat)
        return (self.origin.x + (x - self.origin.x) * self.scale, self.origin.y + (y - self.origin.y) * self.scale)

    def line(self, lonlats, name: str, amp: float, *, extend: bool = False) -> LineString:
        pts = [self.place(*p) for p in lonlats]
        coords = noisy_polyline(pts, self.rng(name), amp, self.p.spacing_m * 2)
        return LineString(coords)

    def side_polygon(self, line: LineString, far: list[tuple[float, float]]) -> Polygon:
        """The polygon bounded by a line and far-away corners (lon/lat), for side-of-line tests."""
        ring = list(line.coords) + [self.place(*p) for p in far]
        poly = Polygon(ring)
        if not poly.is_valid:
            raise RuntimeError(f"side polygon invalid: {shapely.is_valid_reason(poly)}")
        return poly

    # -- regions that shape units and element layers -----------------------------------------------------------

    def regions(self) -> None:
        s = self.p.spacing_m * 1.5
        T_in = self.T.buffer(-150)
        r: dict[str, object] = {}

        # 霍勒金布拉格 wetland park (972 ha): a corridor along 霍尔津河 through 查干湖, 西郊湿地 and 北湖.
        self.holjin = self.fit_river(RIVERS["霍尔津河"], "霍尔津河", HOLJIN_RIVER_KM * 1000)
        reach = substring(self.holjin, 0.22 * self.holjin.length, 0.74 * self.holjin.length)
        park_noise = blob(self.rng("holjin-park"), (0, 0), 1e6, s, rough=0.35)

        def holjin_park(width):
            body = reach.buffer(width, quad_segs=16)
            bumps = [affinity.translate(scaled(park_noise, width / 560), *reach.interpolate(f, normalized=True).coords[0])
                     for f in np.linspace(0, 1, 9)]
            return unary_union([body, *bumps]).intersection(T_in)

        r["park_holjin"] = fit_area(holjin_park, 972 * 1e4, 50, 1500)
        self.lakes = {
            "查干湖": blob(self.rng("lake-chagan"), reach.interpolate(0.06, normalized=True).coords[0], 0.55e6, s, elong=1.6),
            "北湖": blob(self.rng("lake-beihu"), reach.interpolate(0.72, normalized=True).coords[0], 0.42e6, s, elong=1.4),
        }
        # 二卡: the reserve (~67 km²) and the national wetland park (5,878.5 ha) overlapping it, east of 新开河.
        reserve = blob(self.rng("erka-reserve"), self.place(117.815, 49.487), 1e6, s, elong=1.35, angle=80)
        r["reserve"] = fit_area(lambda f: scaled(reserve, f).intersection(T_in), 67.0e6, 3, 14)
        erka_park = blob(self.rng("erka-park"), self.place(117.798, 49.492), 1e6, s, elong=1.5, angle=95)
        r["park_erka"] = fit_area(lambda f: scaled(erka_park, f).intersection(T_in), 5878.5e4, 3, 14)
        self.lakes["二子湖"] = blob(self.rng("lake-erzi"), self.place(117.792, 49.505), 5.0e6, s, elong=1.8, angle=100)
        # Drinking-water sources: quasi-protection zone ⊃ level-2 zone ⊃ wells with level-1 circles.
        self.water_sources = {}
        for name, (lon, lat), q_km2, l2_km2 in (("满洲里市第一水源地", (117.287, 49.567), 5.2, 1.3),
                                               ("满洲里市第二水源地", (117.613, 49.612), 7.0, 1.6)):
            rng = self.rng(name)
            q = blob(rng, self.place(lon, lat), q_km2 * 1e6, s, elong=1.3, angle=rng.uniform(0, 180)).intersection(T_in)
            l2 = blob(rng, q.centroid.coords[0], l2_km2 * 1e6, s, elong=1.2, angle=rng.uniform(0, 180))
            wells = [Point(l2.centroid.x + dx, l2.centroid.y + dy).buffer(100, quad_segs=16)
                     for dx, dy in rng.uniform(-320, 320, (5, 2))]
            self.water_sources[name] = {"quasi": q, "level2": l2, "level1": unary_union(wells)}
        r["water_sources"] = unary_union([z["quasi"] for z in self.water_sources.values()])

        # Key areas: city, trade zone, bonded zone, parks, mining, water-supply areas.
        r["city_mzl"] = blob(self.rng("city-mzl"), self.place(117.455, 49.585), 40e6, s, elong=2.2, angle=8, rough=0.12)
        trade = blob(self.rng("trade"), self.place(117.392, 49.636), 1e6, s, elong=1.6, angle=30, rough=0.1)
        r["trade"] = fit_area(lambda f: scaled(trade, f).intersection(self.T), 11.8e6, 2, 8)
        bonded = affinity.rotate(shapely.box(-800, -450, 800, 450), 25)
        r["bonded"] = affinity.translate(bonded, *self.place(117.352, 49.583))
        r["industry_mzl"] = blob(self.rng("industry-mzl"), self.place(117.548, 49.574), 9.5e6, s, elong=1.5, rough=0.12)
        r["mining_mzl"] = blob(self.rng("mining-mzl"), self.place(117.628, 49.656), 8.0e6, s, elong=1.7, angle=-10)
        r["donghu"] = blob(self.rng("donghu"), self.place(117.712, 49.612), 19e6, s, elong=2.0, angle=110)
        r["city_zl"] = blob(self.rng("city-zl"), self.place(117.708, 49.455), 14e6, s, elong=1.4, angle=20, rough=0.12)
        r["mining_zl"] = blob(self.rng("mining-zl"), self.place(117.692, 49.512), 72e6, s, elong=1.6, angle=100)
        r["industry_zl"] = blob(self.rng("industry-zl"), self.place(117.738, 49.418), 7.5e6, s, elong=1.5, angle=-20)
        r["shore_zl"] = blob(self.rng("shore-zl"), self.place(117.722, 49.345), 22e6, s, elong=1.8, angle=75)
        self.r = r

    def fit_river(self, lonlats, name: str, length_m: float) -> LineString:
        """A meandering river through the control points whose length is exactly `length_m`."""
        pts = [self.place(*p) for p in lonlats]

        def make(amp):
            return LineString(noisy_polyline(pts, self.rng(name), amp, self.p.spacing_m * 2))

        lo, hi = 0.0, 0.6
        for _ in range(80):
            mid = (lo + hi) / 2
            line = make(mid)
            if abs(line.length - length_m) < 0.5:
                return line
            lo, hi = (mid, hi) if line.length < length_m else (lo, mid)
        raise RuntimeError(f"{name}: length {length_m} not reached")

    # -- the exact partition -----------------------------------------------------------------------------------

    def partition(self) -> None:
        split = self.line(COUNTY_SPLIT, "county-split", 0.03)
        zl_side = self.side_polygon(split, [(118.3, 49.64), (118.3, 49.0), (117.60, 49.0)])
        west = self.line(DIVIDE_WEST, "divide-west", 0.03)
        west_side = self.side_polygon(west, [(117.0, 49.44), (117.0, 49.72)])
        north_east = self.line(DIVIDE_NORTH_EAST, "divide-ne", 0.03)
        ne_side = self.side_polygon(north_east, [(117.95, 49.9), (117.585, 49.9)])
        self.catchment_lines = (west, north_east)

        flags = {  # element outlines whose faces are tracked
            "park_holjin": self.r["park_holjin"], "reserve": self.r["reserve"], "park_erka": self.r["park_erka"],
        }
        for name, zones in self.water_sources.items():
            for level, geom in zones.items():
                flags[f"{name}|{level}"] = geom
        precedence = [  # first region that holds a face (in the face's county) gets it
            ("150781", "water_sources", "ZH15078110003"),
            ("150781", "park_holjin", "ZH15078110002"),
            ("150781", "bonded", "ZH15078120003"),
            ("150781", "trade", "ZH15078120002"),
            ("150781", "city_mzl", "ZH15078120001"),
            ("150781", "industry_mzl", "ZH15078120004"),
            ("150781", "mining_mzl", "ZH15078120006"),
            ("150781", "donghu", "ZH15078120005"),
            ("150703", "reserve", "ZH15070310001"),
            ("150703", "park_erka", "ZH15070310001"),
            ("150703", "city_zl", "ZH15070320001"),
            ("150703", "industry_zl", "ZH15070320003"),
            ("150703", "mining_zl", "ZH15070320002"),
            ("150703", "shore_zl", "ZH15070320004"),
        ]
        lines = [self.T.exterior, split, west, north_east]
        lines += [g.boundary for g in self.r.values()]
        lines += [g.boundary for g in flags.values()]
        noded = unary_union(lines)
        T_prep = prep(self.T)
        faces = []
        for face in polygonize(noded):
            pt = face.point_on_surface()
            if not T_prep.contains(pt):
                continue
            county = "150703" if zl_side.contains(pt) else "150781"
            unit = DEFAULT_UNIT[county]
            for c, region, code in precedence:
                if c == county and self.r[region].contains(pt):
                    unit = code
                    break
            catchment = "west" if west_side.contains(pt) else ("north_east" if ne_side.contains(pt) else "erka")
            tags = {name for name, geom in flags.items() if geom.contains(pt)}
            faces.append((face, county, unit, catchment, tags))
        self.faces = faces
        covered = unary_union([f[0] for f in faces]).area
        if abs(covered - self.T.area) > 1.0:
            raise RuntimeError(f"faces cover {covered} m², territory {self.T.area} m²")

    def union_faces(self, pick) -> object:
        return unary_union([f[0] for f in self.faces if pick(f)])

    # -- layers ------------------------------------------------------------------------------------------------

    def build_units(self) -> None:
        rows = []
        texts = unit_texts()
        for code, name, digit, county, category in UNITS:
            geom = self.union_faces(lambda f, c=code: f[2] == c)
            if geom.is_empty:
                raise RuntimeError(f"unit {code} has no area")
            text = texts.get(code, {})
            rows.append({
                "HJZHGKDYBM": code, "HJZHGKDYMC": name, "ZHGKDYFL": digit, "PROV": "内蒙古自治区",
                "CITY": "呼伦贝尔市", "AREA": COUNTIES[county], "XZQDM": county, "DYLB": category,
                **{DIMENSION_FIELDS[d]: text.get(d, "") for d in DIMENSIONS},
                "REMARK": f"{PROVENANCE_ILLUSTRATIVE_ZH}。", "geometry": as_multi(geom),
            })
        self.units = gpd.GeoDataFrame(rows, crs=METRIC_EPSG)
        self.unit_geom = dict(zip(self.units.HJZHGKDYBM, self.units.geometry))
        self.layers["control_units"] = self.units
        admin = [{"county_code": c, "county_name": n, "geometry": as_multi(self.union_faces(lambda f, c=c: f[1] == c))}
                 for c, n in COUNTIES.items()]
        self.layers["admin_boundary"] = gpd.GeoDataFrame(admin, crs=METRIC_EPSG)

    def build_protected(self) -> None:
        parks = [
            {"name": "霍勒金布拉格国家湿地公园", "level": "国家级", "area_ha_published": 972.0,
             "geometry": as_multi(self.union_faces(lambda f: "park_holjin" in f[4]))},
            {"name": "二卡国家湿地公园", "level": "国家级", "area_ha_published": 5878.5,
             "geometry": as_multi(self.union_faces(lambda f: "park_erka" in f[4]))},
        ]
        self.layers["wetland_parks"] = gpd.GeoDataFrame(parks, crs=METRIC_EPSG)
        rows = []
        zone_names = {"level1": "一级保护区", "level2": "二级保护区", "quasi": "准保护区"}
        for name in self.water_sources:
            l1 = self.union_faces(lambda f: f"{name}|level1" in f[4])
            l2 = self.union_faces(lambda f: f"{name}|level2" in f[4] and f"{name}|level1" not in f[4])
            q = self.union_faces(lambda f: f"{name}|quasi" in f[4] and f"{name}|level2" not in f[4]
                                 and f"{name}|level1" not in f[4])
            for zone, geom in (("level1", l1), ("level2", l2), ("quasi", q)):
                rows.append({"source_name": name, "zone": zone, "zone_name": zone_names[zone], "geometry": as_multi(geom)})
        self.layers["drinking_water"] = gpd.GeoDataFrame(rows, crs=METRIC_EPSG)
        self.reserve_geom = self.union_faces(lambda f: "reserve" in f[4])

    def build_red_line(self) -> None:
        priority = [c for c, _, d, _, _ in UNITS if d == "1"]
        urban = self.layers["urban_boundary"].union_all()
        allowed_by_unit = {c: self.unit_geom[c].buffer(-25).difference(urban.buffer(200)) for c in priority}
        patches = []  # (unit, function, shape at scale 1)
        taken: list = []
        max_scale = 1.15
        # 二卡 core zone first: the largest wetland patches, inside the reserve.
        core_allowed = self.reserve_geom.buffer(-600)
        for i, km2 in enumerate(CORE_PATCHES_KM2):
            shape = self.place_blob(f"core-{i}", core_allowed, km2 * 1e6, taken, max_scale, elong=1.6, tries=400)
            patches.append(("ZH15070310001", "wetland", shape, True))
        for unit, groups in RED_LINE_PLAN.items():
            allowed = allowed_by_unit[unit]
            for function, count, mean_km2, clusters in groups:
                n = max(2, round(count * self.p.patch_factor))
                sizes = self.rng(f"sizes-{unit}-{function}").lognormal(0.0, 0.7, n)
                sizes = sizes / sizes.mean() * mean_km2 * count / n
                anchors = [(self.place(lon, lat), km * 1000) for lon, lat, km in clusters]
                for j, km2 in enumerate(sizes):
                    shape = self.place_blob(f"rl-{unit}-{function}-{j}", allowed, km2 * 1e6, taken, max_scale,
                                            near=anchors[j % len(anchors)])
                    patches.append((unit, function, shape, False))
        # Patches shrink where space is tight; top up in rotation until the target is reachable by scaling.
        groups = [(unit, function, mean) for unit, gs in RED_LINE_PLAN.items() for function, _, mean, _ in gs]
        extra = 0
        while sum(p[2].area for p in patches) * (max_scale / 1.03) ** 2 < RED_LINE_KM2 * 1e6:
            unit, function, mean_km2 = groups[extra % len(groups)]
            shape = self.place_blob(f"rl-extra-{extra}", allowed_by_unit[unit], mean_km2 * 1e6, taken, max_scale)
            patches.append((unit, function, shape, False))
            extra += 1
        total0 = sum(p[2].area for p in patches)
        factor = math.sqrt(RED_LINE_KM2 * 1e6 / total0)
        if factor > max_scale:
            raise RuntimeError(f"red-line patches too small to scale to target (factor {factor:.3f})")
        rows, core = [], []
        serial = {"150781": 0, "150703": 0}
        for unit, function, shape, is_core in patches:
            county = unit[2:8]
            serial[county] += 1
            geom = scaled(shape, factor)
            rows.append({"patch_id": f"HX{county}{serial[county]:04d}", "function": function,
                         "function_name": RED_LINE_FUNCTION_ZH[function], "county_code": county,
                         "geometry": MultiPolygon([geom])})
            if is_core:
                core.append(geom)
        self.layers["red_line"] = gpd.GeoDataFrame(rows, crs=METRIC_EPSG)
        core_zone = unary_union(core)
        general = self.reserve_geom.difference(core_zone)
        base = {"name": "二卡湿地自然保护区", "level": "县级", "established": 1999, "effective_date": "2026-03-15",
                "basis": "《自然保护区条例》（国务院令第830号）两区划分，2026年3月15日起施行"}
        self.layers["nature_reserve"] = gpd.GeoDataFrame([
            {**base, "zone": "core", "zone_name": "核心保护区", "geometry": as_multi(core_zone)},
            {**base, "zone": "general_control", "zone_name": "一般控制区", "geometry": as_multi(general)},
        ], crs=METRIC_EPSG)

    def place_blob(self, name, allowed, area_m2, taken, max_scale, *, elong=None, tries=400, near=None) -> Polygon:
        """Seeded rejection sampling: a blob that fits `allowed` and keeps clear of `taken` at the largest scale.

        With `near=((x, y), spread_m)` centres are drawn around that anchor first, then anywhere in `allowed`.
        """
        rng = self.rng(name)
        allowed_prep = prep(allowed)
        minx, miny, maxx, maxy = allowed.bounds
        area = area_m2
        for attempt in range(tries):
            if attempt and attempt % 25 == 0:
                area *= 0.7
            if near is not None and attempt < tries // 2:
                (ax, ay), spread = near
                centre = (ax + rng.normal(0, spread), ay + rng.normal(0, spread))
            else:
                centre = (rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            shape = blob(rng, centre, area, self.p.spacing_m, elong=elong or rng.uniform(1.0, 2.6),
                         angle=rng.uniform(0, 180), rough=rng.uniform(0.18, 0.32), min_vertices=self.p.min_vertices)
            big = scaled(shape, max_scale)
            if not allowed_prep.contains(big):
                continue
            halo = big.buffer(40)
            if any(halo.intersects(t) for t in taken):
                continue
            taken.append(big)
            return shape
        raise RuntimeError(f"could not place {name}")

    def build_planning_layers(self) -> None:
        u = self.unit_geom
        built = {"mzl": [u["ZH15078120001"], u["ZH15078120002"], u["ZH15078120003"], u["ZH15078120004"]],
                 "zl": [u["ZH15070320001"], u["ZH15070320003"]]}
        priority = unary_union([g for c, g in u.items() if c[8] == "1"])
        ub = []
        for key, name in (("mzl", "满洲里市中心城区城镇开发边界"), ("zl", "扎赉诺尔区城镇开发边界")):
            geom = unary_union(built[key]).buffer(350).intersection(self.T).difference(priority.buffer(60))
            ub.append({"name": name, "geometry": as_multi(geom)})
        self.layers["urban_boundary"] = gpd.GeoDataFrame(ub, crs=METRIC_EPSG)
        burn = [
            {"name": "满洲里市高污染燃料禁燃区",
             "geometry": as_multi(unary_union([u["ZH15078120001"], u["ZH15078120002"], u["ZH15078120003"]])
                                  .buffer(200).intersection(self.T))},
            {"name": "扎赉诺尔区高污染燃料禁燃区",
             "geometry": as_multi(u["ZH15070320001"].buffer(200).intersection(self.T))},
        ]
        self.layers["no_burn_zone"] = gpd.GeoDataFrame(burn, crs=METRIC_EPSG)

    def build_mining(self) -> None:
        s = self.p.spacing_m * 1.5
        rows = []
        pit_zone = self.unit_geom["ZH15070320002"]
        north = pit_zone.intersection(shapely.box(*pit_zone.bounds[:1], pit_zone.centroid.y - 1500, *pit_zone.bounds[2:]))
        pit_seed = blob(self.rng("pit"), north.centroid.coords[0], 1e6, s, elong=1.5, angle=95, rough=0.12)
        pit = fit_area(lambda f: scaled(pit_seed, f).intersection(pit_zone.buffer(-250)), 38.0e6, 2, 12, tol=100)
        rows.append({"name": "扎赉诺尔露天煤矿采场", "kind": "open_pit", "geometry": pit})
        rest = pit_zone.buffer(-120).difference(pit.buffer(120))
        taken = [pit.buffer(60)]
        for i, km2 in enumerate((3.0, 2.2)):
            shape = self.place_blob(f"dump-{i}", rest, km2 * 1e6, taken, 1.0, elong=1.8)
            rows.append({"name": f"扎赉诺尔露天煤矿排土场{i + 1}", "kind": "dump", "geometry": shape})
        for i, km2 in enumerate((1.6, 1.2)):
            shape = self.place_blob(f"subsidence-{i}", rest, km2 * 1e6, taken, 1.0)
            rows.append({"name": f"扎赉诺尔采煤沉陷区{i + 1}", "kind": "subsidence", "geometry": shape})
        quarry_zone = self.unit_geom["ZH15078120006"].buffer(-120)
        shape = self.place_blob("quarry", quarry_zone, 2.4e6, [], 1.0)
        rows.append({"name": "满洲里北部露天采场", "kind": "open_pit", "geometry": shape})
        shape = self.place_blob("quarry-dump", quarry_zone.difference(shape.buffer(150)), 1.0e6, [], 1.0)
        rows.append({"name": "满洲里北部排土场", "kind": "dump", "geometry": shape})
        shape = self.place_blob("mzl-subsidence", quarry_zone.difference(unary_union([r["geometry"] for r in rows[-2:]]).buffer(150)), 0.8e6, [], 1.0)
        rows.append({"name": "满洲里北部采煤沉陷区", "kind": "subsidence", "geometry": shape})
        names = {"open_pit": "露天采场", "dump": "排土场", "subsidence": "采煤沉陷区"}
        for row in rows:
            row["kind_name"] = names[row["kind"]]
            row["geometry"] = as_multi(row["geometry"])
        self.layers["mining_areas"] = gpd.GeoDataFrame(rows, crs=METRIC_EPSG)

    def build_land_use_layers(self) -> None:
        """Basic farmland (vegetable base along 新开河 and 二子湖) and basic grassland."""
        u = self.unit_geom
        rows = []
        farm_zone = u["ZH15078120005"].buffer(-80).union(
            u["ZH15070310002"].buffer(-80).intersection(Point(self.place(117.745, 49.52)).buffer(5500)))
        farm_zone = farm_zone.difference(unary_union(self.layers["red_line"].geometry).buffer(30))
        taken: list = []
        for i, km2 in enumerate((2.6, 1.9, 1.4, 1.1, 0.8)):
            shape = self.place_blob(f"farm-{i}", farm_zone, km2 * 1e6, taken, 1.0, elong=2.2)
            rows.append({"name": f"永久基本农田保护片区{i + 1:02d}", "geometry": as_multi(shape)})
        self.layers["basic_farmland"] = gpd.GeoDataFrame(rows, crs=METRIC_EPSG)
        farmland = unary_union([r["geometry"] for r in rows])
        self.farmland = farmland
        grass_units = unary_union([u[c] for c in ("ZH15078110001", "ZH15070310002", "ZH15078120005", "ZH15070320004")])
        s = self.p.spacing_m * 3
        holes = [blob(self.rng(f"grass-hole-{i}"), c, a * 1e6, s, elong=1.8)
                 for i, (c, a) in enumerate(((self.place(117.26, 49.56), 6.0), (self.place(117.50, 49.55), 4.0),
                                             (self.place(117.80, 49.43), 3.0), (self.place(117.66, 49.62), 2.5)))]
        grass = (grass_units.buffer(-60).difference(farmland.buffer(50)).difference(unary_union(holes))
                 .difference(self.layers["urban_boundary"].union_all().buffer(100))
                 .difference(unary_union(list(self.lakes.values()))))
        # One feature per unit part, as grassland registers are kept by administrative piece.
        pieces = [g for code in ("ZH15078110001", "ZH15070310002", "ZH15078120005", "ZH15070320004")
                  for g in polygons_of(grass.intersection(u[code]))]
        parts = sorted((p for p in pieces if p.area > 0.5e6), key=lambda p: (-p.area, p.centroid.x))
        self.layers["basic_grassland"] = gpd.GeoDataFrame(
            [{"name": f"基本草原片区{i + 1:02d}", "geometry": as_multi(p)} for i, p in enumerate(parts)], crs=METRIC_EPSG)

    def build_environment_zones(self) -> None:
        catchments = {
            "west": ("霍尔津河流域", "霍尔津河北湖断面（市控）", "Ⅳ", "Ⅳ", 1, "水环境城镇生活污染重点管控区"),
            "north_east": ("海拉尔河流域", "海拉尔河嵯岗断面（示意）", "Ⅲ", "Ⅲ", 1, "水环境一般管控区"),
            "erka": ("新开河—二卡牧场流域", "二卡牧场（国考断面）", "Ⅴ", "劣Ⅴ", 0, "水环境质量超标重点管控区"),
        }
        rows = []
        for key, (name, section, target, measured, ok, zone_type) in catchments.items():
            rows.append({"catchment": name, "section": section, "target_class": target, "measured_class": measured,
                         "compliant": ok, "zone_type": zone_type,
                         "geometry": as_multi(self.union_faces(lambda f, k=key: f[3] == k))})
        self.layers["water_env_zones"] = gpd.GeoDataFrame(rows, crs=METRIC_EPSG)
        air_of_unit = {
            "ZH15078110002": "priority", "ZH15070310001": "priority",
            "ZH15078120004": "high_emission", "ZH15070320003": "high_emission",
            "ZH15078120006": "high_emission", "ZH15070320002": "high_emission",
            "ZH15078120001": "receptor_sensitive", "ZH15070320001": "receptor_sensitive",
            "ZH15078120002": "layout_sensitive", "ZH15078120003": "layout_sensitive",
        }
        names = {"priority": "大气环境优先保护区", "high_emission": "大气环境高排放重点管控区",
                 "layout_sensitive": "大气环境布局敏感重点管控区", "receptor_sensitive": "大气环境受体敏感重点管控区",
                 "general": "大气环境一般管控区"}
        rows = []
        for zone in names:
            geom = self.union_faces(lambda f, z=zone: air_of_unit.get(f[2], "general") == z)
            rows.append({"zone_type": zone, "zone_name": names[zone], "geometry": as_multi(geom)})
        self.layers["air_env_zones"] = gpd.GeoDataFrame(rows, crs=METRIC_EPSG)

    def build_water_features(self) -> None:
        rivers = [{"name": "霍尔津河", "kind": "季节性河流", "geometry": self.holjin},
                  {"name": "海拉尔河", "kind": "河流（市界）", "geometry": self.hailar}]
        for name in ("新开河", "乌日根河"):
            rivers.append({"name": name, "kind": "河流",
                           "geometry": self.line(RIVERS[name], f"river-{name}", 0.05).intersection(self.T.buffer(-30))})
        self.layers["rivers"] = gpd.GeoDataFrame(rivers, crs=METRIC_EPSG)
        parks = self.layers["wetland_parks"]
        lakes = []
        for name, geom in self.lakes.items():
            park = parks.geometry[0] if name != "二子湖" else parks.geometry[1]
            lakes.append({"name": name, "geometry": as_multi(geom.intersection(park.buffer(-30)))})
        self.layers["lakes"] = gpd.GeoDataFrame(lakes, crs=METRIC_EPSG)

    def build_all(self) -> None:
        self.territory()
        self.regions()
        self.partition()
        self.build_units()
        self.build_protected()
        self.build_planning_layers()
        self.build_red_line()
        self.build_mining()
        self.build_land_use_layers()
        self.build_environment_zones()
        self.build_water_features()
        self.check()

    def check(self) -> None:
        """Fail the build, loudly, if the synthesized data breaks a published fact or a containment it must keep."""
        u = self.units
        assert len(u) == 15 and (u.ZHGKDYFL == "1").sum() == 5 and (u.ZHGKDYFL == "2").sum() == 10
        priority = unary_union(u.geometry[u.ZHGKDYFL == "1"])
        rl = self.layers["red_line"]
        assert abs(rl.area.sum() / 1e6 - RED_LINE_KM2) < 0.001, rl.area.sum()
        assert all(priority.contains(g) for g in rl.geometry)
        for layer, unit in (("wetland_parks", None), ("nature_reserve", "ZH15070310001"), ("drinking_water", "ZH15078110003")):
            for g in self.layers[layer].geometry:
                assert not g.is_empty, layer
                if unit:
                    assert self.unit_geom[unit].buffer(0.01).contains(g), (layer, unit)
        for name, gdf in self.layers.items():
            assert gdf.geometry.is_valid.all(), name


def unit_texts() -> dict[str, dict[str, str]]:
    """The four access-list text fields of each unit, generated from the unit clause files in zones/units/."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted((ROOT / "zones" / "units").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        per_dim: dict[str, list[str]] = {d: [] for d in DIMENSIONS}
        for clause in doc["clauses"]:
            per_dim[clause["dimension"]].append(f"{clause['text']}〔{clause['id']}〕")
        out[doc["unit"]] = {d: "\n".join(f"{i + 1}. {t}" for i, t in enumerate(v)) for d, v in per_dim.items()}
    return out


# --------------------------------------------------------------------------------------------------------------
# Land cover
# --------------------------------------------------------------------------------------------------------------


def build_land_cover(b: Builder) -> tuple[np.ndarray, object]:
    """Rasterize a land-cover map consistent with the vector layers (classes of app.domain.schema)."""
    px = b.p.pixel_m
    minx, miny, maxx, maxy = b.T.bounds
    minx, miny = math.floor(minx / px) * px - px, math.floor(miny / px) * px - px
    maxx, maxy = math.ceil(maxx / px) * px + px, math.ceil(maxy / px) * px + px
    width, height = int((maxx - minx) / px), int((maxy - miny) / px)
    transform = from_origin(minx, maxy, px, px)
    code = LAND_COVER_KEYS
    u = b.unit_geom
    s = b.p.spacing_m * 4
    sand = [blob(b.rng(f"sand-{i}"), c, a * 1e6, s, elong=2.0, angle=35)
            for i, (c, a) in enumerate(((b.place(117.25, 49.555), 9.0), (b.place(117.33, 49.60), 5.0),
                                        (b.place(117.52, 49.66), 4.0), (b.place(117.83, 49.44), 2.0)))]
    forest = []
    rng = b.rng("forest")
    for i in range(70):  # windbreak plantations: forest cover about 4 % (Plan 第一章: 森林覆盖率 4.2 %)
        c = b.T.representative_point() if i == 0 else Point(rng.uniform(*b.T.bounds[0::2]), rng.uniform(*b.T.bounds[1::2]))
        forest.append(blob(rng, c.coords[0], rng.uniform(0.5, 1.7) * 1e6, s, elong=rng.uniform(2, 5), angle=rng.uniform(0, 180)))
    key_built = unary_union([u[c] for c in ("ZH15078120001", "ZH15078120002", "ZH15078120003", "ZH15078120004",
                                            "ZH15070320001", "ZH15070320003")])
    forest = unary_union(forest).difference(key_built).difference(unary_union(list(b.lakes.values())))
    rivers = b.layers["rivers"]
    wet_rivers = unary_union([g.buffer(120) for g in rivers.geometry[rivers.name != "海拉尔河"]])
    mining = b.layers["mining_areas"]
    shapes = [
        (b.T, code["grassland"]),
        (unary_union(sand), code["bare_sand"]),
        (forest, code["forest"]),
        (b.farmland.buffer(150).intersection(u["ZH15078120005"].union(u["ZH15070310002"])), code["cropland"]),
        (b.farmland, code["cropland"]),
        (wet_rivers, code["wetland"]),
        (b.layers["wetland_parks"].union_all(), code["wetland"]),
        (b.layers["nature_reserve"].union_all().intersection(b.layers["wetland_parks"].union_all().buffer(1500)), code["wetland"]),
        (key_built, code["built_up"]),
        (mining.geometry[mining.kind.isin(["open_pit", "dump"])].union_all(), code["mining"]),
        # Subsidence areas are damaged land, no longer grassland: where the plan steers new wind and PV.
        (mining.geometry[mining.kind == "subsidence"].union_all(), code["bare_sand"]),
        (b.layers["lakes"].union_all(), code["water"]),
        (unary_union([g.buffer(12) for g in rivers.geometry]), code["water"]),
    ]
    out_shape = (height, width)
    grid = np.zeros(out_shape, dtype="uint8")
    for geom, value in shapes:
        if geom.is_empty:
            continue
        burned = rasterize([(geom, value)], out_shape=out_shape, transform=transform, fill=0, dtype="uint8")
        grid = np.where(burned > 0, burned, grid)
    inside = rasterize([(b.T, 1)], out_shape=out_shape, transform=transform, fill=0, dtype="uint8")
    grid[inside == 0] = LAND_COVER_NODATA
    return grid, transform


def write_land_cover(path: Path, grid: np.ndarray, transform) -> None:
    """Write a tiled, DEFLATE-compressed GeoTIFF with overviews, a colour table and class names."""
    profile = {
        "driver": "GTiff", "dtype": "uint8", "count": 1, "width": grid.shape[1], "height": grid.shape[0],
        "crs": f"EPSG:{METRIC_EPSG}", "transform": transform, "nodata": LAND_COVER_NODATA,
        "compress": "deflate", "predictor": 2, "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(grid, 1)
            dst.write_colormap(1, {c: tuple(int(col[i:i + 2], 16) for i in (1, 3, 5)) + (255,)
                                   for c, (_, _, col) in LAND_COVER_CLASSES.items()} | {0: (0, 0, 0, 0)})
            dst.update_tags(
                TIFFTAG_DATETIME=REFERENCE_DATE.replace("-", ":") + " 00:00:00",
                DATASET_ID=DATASET_ID, PROVENANCE=PROVENANCE_ILLUSTRATIVE, PROVENANCE_ZH=PROVENANCE_ILLUSTRATIVE_ZH,
                CLASSES=json.dumps({c: k for c, (k, _, _) in LAND_COVER_CLASSES.items()}),
            )
            dst.build_overviews([2, 4, 8, 16], Resampling.mode)
            dst.update_tags(ns="rio_overview", resampling="mode")


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------

SOURCES = {
    "admin_boundary": "示意：依据公开行政区划面积（满洲里市含扎赉诺尔区约732 km²）与经纬度范围合成",
    "control_units": "示意：依据《满洲里市“十四五”生态环境保护规划》第三章第三节（15个环境管控单元：优先保护5个、重点管控10个）合成",
    "red_line": "示意：依据规划第一章（生态保护红线71.39 km²）合成，按生态功能分组",
    "nature_reserve": "示意：二卡湿地自然保护区（县级，1999年建立，约65–69 km²），按国务院令第830号两区划分",
    "wetland_parks": "示意：霍勒金布拉格国家湿地公园（972 ha）、二卡国家湿地公园（5878.5 ha）",
    "drinking_water": "示意：集中式饮用水水源保护区（一级、二级、准保护区），含规划所列第二水源地",
    "basic_grassland": "示意：基本草原，依据规划第八章第二节合成",
    "basic_farmland": "示意：永久基本农田，依据规划第三章第一节（新开河两岸、二子湖沿岸蔬菜基地）合成",
    "urban_boundary": "示意：城镇开发边界，依据规划第三章第一节合成",
    "no_burn_zone": "示意：高污染燃料禁燃区（建成区），依据规划第五章第二节合成",
    "mining_areas": "示意：露天采场、排土场、采煤沉陷区，依据规划第五章第二节、第八章第二节合成",
    "water_env_zones": "示意：按汇水区划分的水环境管控分区；二卡牧场国考断面目标Ⅴ类、现状劣Ⅴ类（规划第一章第二节）",
    "air_env_zones": "示意：大气环境管控分区，由环境管控单元类别归并",
    "rivers": "示意：霍尔津河（24.693 km）、新开河、乌日根河、海拉尔河（市界）",
    "lakes": "示意：查干湖、北湖、二子湖",
}


def to_storage(gdf: gpd.GeoDataFrame, spec_name: str) -> gpd.GeoDataFrame:
    """Reproject to EPSG:4490 and order/type columns as the layer contract says."""
    spec = LAYERS[spec_name]
    # Snap to a millimetre grid: vertices closer than that (left by noding) could cross once reprojected.
    gdf = gdf.set_geometry(shapely.set_precision(gdf.geometry.values, GRID_M))
    out = gdf.to_crs(STORAGE_EPSG)
    invalid = ~out.geometry.is_valid
    if invalid.any():
        raise RuntimeError(f"{spec_name}: invalid after reprojection: {shapely.is_valid_reason(out.geometry[invalid].iloc[0])}")
    cols = list(spec.fields)
    for col, kind in spec.fields.items():
        if kind == "int":
            out[col] = out[col].astype("int64")
        elif kind == "float":
            out[col] = out[col].astype("float64")
        else:
            out[col] = out[col].astype(str)
    return gpd.GeoDataFrame(out[cols + ["geometry"]], geometry="geometry", crs=STORAGE_EPSG)


def write_dataset(b: Builder, out_dir: Path) -> dict[str, str]:
    """Write the GeoPackage and GeoTIFF into `out_dir` atomically; return the content hash of every layer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        gpkg = Path(tmp) / GPKG_NAME
        for name, spec in LAYERS.items():
            frame = to_storage(b.layers[name], name)
            hashes[name] = content_hash(frame)
            write_layer(gpkg, frame, name, title=spec.title_zh,
                        description=f"{SOURCES[name]}。{PROVENANCE_ILLUSTRATIVE_ZH}（{PROVENANCE_ILLUSTRATIVE}）")
        grid, transform = build_land_cover(b)
        tif = Path(tmp) / RASTER_NAME
        write_land_cover(tif, grid, transform)
        hashes["land_cover"] = hashlib.sha256(grid.tobytes() + repr(tuple(transform)).encode()).hexdigest()
        prov = pd.DataFrame(
            [{"layer": name, "title_zh": spec.title_zh, "source": SOURCES[name], "provenance": PROVENANCE_ILLUSTRATIVE,
              "provenance_zh": PROVENANCE_ILLUSTRATIVE_ZH, "generated_by": "scripts/build_reference_data.py",
              "content_hash": hashes[name]} for name, spec in LAYERS.items()]
            + [{"layer": "land_cover", "title_zh": "土地覆被", "source": f"示意：{RASTER_NAME}，{b.p.pixel_m:g} m，与矢量图层一致地合成",
                "provenance": PROVENANCE_ILLUSTRATIVE, "provenance_zh": PROVENANCE_ILLUSTRATIVE_ZH,
                "generated_by": "scripts/build_reference_data.py", "content_hash": hashes["land_cover"]}]
        )
        write_table(gpkg, prov, PROVENANCE_TABLE, description="每个图层的来源与性质")
        classes = pd.DataFrame([{"code": c, "key": k, "name_zh": n, "color": col}
                                for c, (k, n, col) in LAND_COVER_CLASSES.items()])
        write_table(gpkg, classes, LAND_COVER_CLASS_TABLE, description="土地覆被分类")
        dataset_hash = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
        info = pd.DataFrame([
            {"key": "dataset_id", "value": DATASET_ID if b.p.name == "full" else f"{DATASET_ID}-{b.p.name}"},
            {"key": "title_zh", "value": "满洲里市生态环境分区管控示意性参考数据"},
            {"key": "provenance", "value": PROVENANCE_ILLUSTRATIVE},
            {"key": "provenance_zh", "value": PROVENANCE_ILLUSTRATIVE_ZH},
            {"key": "illustrative", "value": "true"},
            {"key": "reference_date", "value": REFERENCE_DATE},
            {"key": "builder", "value": "scripts/build_reference_data.py"},
            {"key": "profile", "value": b.p.name},
            {"key": "seed", "value": str(b.seed)},
            {"key": "storage_crs", "value": f"EPSG:{STORAGE_EPSG}"},
            {"key": "metric_crs", "value": f"EPSG:{METRIC_EPSG}"},
            {"key": "land_cover_file", "value": RASTER_NAME},
            {"key": "content_hash", "value": dataset_hash},
        ])
        write_table(gpkg, info, DATASET_TABLE, description="数据集信息")
        for name in (GPKG_NAME, RASTER_NAME):
            (Path(tmp) / name).replace(out_dir / name)
    (out_dir / "BUILD_HASHES.json").write_text(json.dumps({"dataset": dataset_hash, "layers": hashes}, indent=2,
                                                          ensure_ascii=False, sort_keys=True) + "\n")
    return hashes


def build(out_dir: Path, profile: str = "full", seed: int = SEED) -> dict[str, str]:
    """Build the dataset for a profile into `out_dir`; return the per-layer content hashes."""
    b = Builder(PROFILES[profile], seed)
    b.build_all()
    return write_dataset(b, out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--out", type=Path, default=ROOT / "geodata")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    hashes = build(args.out, args.profile, args.seed)
    for name, digest in hashes.items():
        print(f"{name:18s} {digest[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
