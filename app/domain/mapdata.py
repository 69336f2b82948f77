"""What the map pages draw: simplified GeoJSON of each layer, the land-cover raster as a web-map image, the features
and clauses at a clicked point, and a preview of a site as the service understood it.

No FastAPI here. Everything derived from a catalog is cached per catalog content hash, so a page load costs a dict
lookup and a new published version gets fresh layers on its first request.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections import OrderedDict
from typing import Any, Callable, Mapping

import numpy as np
import orjson
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import array_bounds
from rasterio.warp import Resampling, calculate_default_transform, reproject

from app.domain.assessment import EFFECT_ZH, FEATURE_LABEL
from app.domain.catalog import Catalog
from app.domain.schema import (
    DIMENSION_NAMES_ZH,
    DIMENSIONS,
    LAND_COVER_CLASSES,
    LAND_COVER_NODATA,
    LAYERS,
    METRIC_EPSG,
    MU_PER_M2,
    UNIT_TYPE_NAMES_ZH,
)
from app.errors import InvalidInput, NotFound
from app.geo.crs import from_metric, to_metric

DEFAULT_TOLERANCE_M = 5.0  # simplification tolerance in EPSG:4548 metres: below a pixel at street zoom
COORD_DECIMALS = 6  # ~0.1 m in lon/lat
WEB_EPSG = 3857  # Leaflet's default CRS: an image warped to it lines up with its lat/lng bounds exactly

# Map styles and order (bottom to top). One table for the map, the legend and the layer switcher.
UNIT_TYPE_COLORS = {"priority": "#5aae61", "key": "#f08c3a", "general": "#e6d15c"}
LAYER_STYLES: dict[str, dict[str, Any]] = {
    "admin_boundary": {"color": "#222222", "weight": 2.2, "fillOpacity": 0.0, "group": "base", "visible": True},
    "control_units": {"color": "#555555", "weight": 1.0, "fillOpacity": 0.45, "group": "units", "visible": True},
    "basic_grassland": {"color": "#8cbf3f", "weight": 1.0, "fillColor": "#c7e59a", "fillOpacity": 0.35,
                        "group": "element", "visible": False},
    "air_env_zones": {"color": "#8e6bbf", "weight": 1.2, "fillOpacity": 0.06, "dashArray": "6 4",
                      "group": "element", "visible": False},
    "water_env_zones": {"color": "#2c7fb8", "weight": 1.2, "fillOpacity": 0.06, "dashArray": "6 4",
                        "group": "element", "visible": False},
    "basic_farmland": {"color": "#c9a227", "weight": 1.0, "fillColor": "#f2d36b", "fillOpacity": 0.6,
                       "group": "element", "visible": False},
    "urban_boundary": {"color": "#7b3294", "weight": 2.0, "fillOpacity": 0.0, "group": "element", "visible": True},
    "no_burn_zone": {"color": "#444444", "weight": 1.5, "fillOpacity": 0.0, "dashArray": "2 4",
                     "group": "element", "visible": False},
    "mining_areas": {"color": "#6b4a33", "weight": 1.0, "fillColor": "#8c6a50", "fillOpacity": 0.55,
                     "group": "element", "visible": False},
    "nature_reserve": {"color": "#1b7837", "weight": 2.0, "fillColor": "#1b7837", "fillOpacity": 0.12,
                       "dashArray": "8 4", "group": "element", "visible": True},
    "wetland_parks": {"color": "#2166ac", "weight": 2.0, "fillColor": "#2166ac", "fillOpacity": 0.10,
                      "dashArray": "4 3", "group": "element", "visible": False},
    "drinking_water": {"color": "#08519c", "weight": 1.2, "fillColor": "#6baed6", "fillOpacity": 0.55,
                       "group": "element", "visible": True},
    "lakes": {"color": "#2b6cb0", "weight": 0.8, "fillColor": "#4a90d9", "fillOpacity": 0.7, "group": "element",
              "visible": True},
    "rivers": {"color": "#2b83ba", "weight": 2.0, "group": "element", "visible": True},
    "red_line": {"color": "#a50f15", "weight": 0.8, "fillColor": "#e31a1c", "fillOpacity": 0.6, "group": "red_line",
                 "visible": True},
}
VERDICT_COLORS = {"prohibited": "#c62828", "needs_review": "#e08600", "conditional": "#1565c0",
                  "permitted": "#2e7d32", "outside_jurisdiction": "#616161"}

# Site coordinate systems offered on the officer page: (id, crs, axis_order, label, example).
SITE_CRS_CHOICES: tuple[dict[str, str], ...] = (
    {"id": "cgcs2000", "crs": "EPSG:4490", "axis_order": "xy", "label": "CGCS2000 经纬度（经度, 纬度）",
     "example": "117.4550, 49.5850"},
    {"id": "gk39_survey", "crs": "EPSG:4527", "axis_order": "survey",
     "label": "高斯-克吕格 3 度带第 39 带，测量坐标 X（北）Y（东，含带号 39）",
     "example": "J1  5494100.000  39531000.000\nJ2  5494100.000  39531262.500\nJ3  5493880.250  39531262.500"},
    {"id": "gk117_survey", "crs": "EPSG:4548", "axis_order": "survey",
     "label": "高斯-克吕格 中央经线 117°E，测量坐标 X（北）Y（东，不含带号）",
     "example": "5494100.000  531000.000\n5494100.000  531262.500\n5493880.250  531262.500"},
    {"id": "gk39_xy", "crs": "EPSG:4527", "axis_order": "xy", "label": "高斯-克吕格 第 39 带，东坐标在前（E, N）",
     "example": "39531000.000, 5494100.000"},
    {"id": "gcj02", "crs": "GCJ02", "axis_order": "xy", "label": "GCJ-02（高德、腾讯地图拾取的经纬度）",
     "example": "117.4612, 49.5868"},
    {"id": "bd09", "crs": "BD09", "axis_order": "xy", "label": "BD-09（百度地图拾取的经纬度）",
     "example": "117.4677, 49.5928"},
    {"id": "dms", "crs": "EPSG:4490", "axis_order": "xy", "label": "度分秒（CGCS2000）",
     "example": "117°26′48.5″E, 49°35′20.1″N"},
    {"id": "wgs84", "crs": "EPSG:4326", "axis_order": "xy", "label": "WGS84 经纬度（GPS）", "example": "117.4550, 49.5850"},
)


# ---------------------------------------------------------------------------------------------------------------
# Caching per catalog version


class _Cache:
    """A small LRU of values computed from one catalog (keyed by its content hash)."""

    def __init__(self, size: int = 96) -> None:
        self._data: OrderedDict[tuple, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()  # computed outside the lock: two threads may both compute once, the result is the same
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return value


_cache = _Cache()


def version_tag(catalog: Catalog) -> str:
    """A short tag that changes whenever the served data changes (for cache-busting URLs)."""
    return catalog.content_hash[:16]


# ---------------------------------------------------------------------------------------------------------------
# Layers


def feature_label(layer: str, record: Mapping[str, Any]) -> str:
    if layer == "control_units":
        return f"{record.get('HJZHGKDYBM', '')} {record.get('HJZHGKDYMC', '')}".strip()
    parts = [str(record.get(f)) for f in FEATURE_LABEL.get(layer, ()) if record.get(f) not in (None, "")]
    return " ".join(parts) or layer


def _properties(catalog: Catalog, layer: str, row: int) -> dict[str, Any]:
    rec = catalog.layers[layer].records[row]
    props: dict[str, Any] = {"fid": row, "label": feature_label(layer, rec)}
    if layer == "control_units":
        kind = catalog.unit_type(row)
        props.update(code=rec["HJZHGKDYBM"], name=rec["HJZHGKDYMC"], type=kind, type_zh=UNIT_TYPE_NAMES_ZH[kind])
    else:
        for f in LAYERS[layer].key:
            props.setdefault(f, rec.get(f))
        if layer == "red_line":
            props["function_name"] = rec.get("function_name")
        if layer == "mining_areas":
            props["kind_name"] = rec.get("kind_name")
    return props


def layer_list(catalog: Catalog) -> list[dict[str, Any]]:
    """The layers of the served version, bottom to top, with style, legend entries and default visibility."""
    out = []
    for name, style in LAYER_STYLES.items():
        layer = catalog.layers.get(name)
        if layer is None:
            continue
        entry = {"name": name, "title_zh": layer.spec.title_zh, "geometry": layer.spec.geometry,
                 "features": len(layer.records), "style": {k: v for k, v in style.items() if k not in ("group", "visible")},
                 "group": style["group"], "visible": style["visible"]}
        if name == "control_units":
            counts = {k: 0 for k in UNIT_TYPE_COLORS}
            for row in range(len(layer.records)):
                counts[catalog.unit_type(row)] += 1
            entry["legend"] = [{"key": k, "label": f"{UNIT_TYPE_NAMES_ZH[k]}（{counts[k]} 个）", "color": c}
                               for k, c in UNIT_TYPE_COLORS.items() if counts[k]]
        out.append(entry)
    return out


def _round(geom):
    return shapely.transform(geom, lambda c: np.round(c, COORD_DECIMALS))


def _to_storage(geom_metric):
    def fn(xy: np.ndarray) -> np.ndarray:
        lon, lat = from_metric(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    return shapely.transform(geom_metric, fn)


def _to_metric(geom_storage):
    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = to_metric(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom_storage, fn)


def build_layer_geojson(catalog: Catalog, name: str, tolerance_m: float = DEFAULT_TOLERANCE_M) -> dict[str, Any]:
    """A FeatureCollection (EPSG:4490) of one layer, simplified in the metric CRS with `tolerance_m`."""
    layer = catalog.layers.get(name)
    if layer is None:
        raise NotFound(f"没有名为 {name[:40]} 的图层", detail=f"layer {name[:40]} not found")
    simplified = shapely.simplify(layer.metric, tolerance_m, preserve_topology=True)
    features = []
    for row, geom in enumerate(simplified):
        if geom is None or geom.is_empty:
            continue
        g = _round(_to_storage(geom))
        features.append({"type": "Feature", "id": row, "properties": _properties(catalog, name, row),
                         "geometry": orjson.loads(shapely.to_geojson(g))})
    return {"type": "FeatureCollection", "name": name, "title_zh": layer.spec.title_zh,
            "dataset_version": catalog.dataset_version, "simplified_m": tolerance_m, "features": features}


def layer_geojson(catalog: Catalog, name: str, tolerance_m: float = DEFAULT_TOLERANCE_M) -> tuple[bytes, bytes]:
    """The layer's GeoJSON as (bytes, gzip bytes), built once per catalog version."""
    if name not in catalog.layers:
        raise NotFound(f"没有名为 {name[:40]} 的图层", detail=f"layer {name[:40]} not found")

    def make() -> tuple[bytes, bytes]:
        body = orjson.dumps(build_layer_geojson(catalog, name, tolerance_m))
        return body, gzip.compress(body, 6)

    return _cache.get(("layer", catalog.content_hash, name, float(tolerance_m)), make)


# ---------------------------------------------------------------------------------------------------------------
# Land cover


def land_cover_legend() -> list[dict[str, Any]]:
    return [{"code": code, "key": key, "name_zh": name, "color": color}
            for code, (key, name, color) in sorted(LAND_COVER_CLASSES.items())]


def _hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def render_land_cover(catalog: Catalog, alpha: int = 200) -> tuple[bytes, list[list[float]]]:
    """The land-cover grid warped to EPSG:3857 (nearest neighbour) as an RGBA PNG, and its [[S, W], [N, E]] bounds.

    Leaflet stretches an image overlay linearly between the projected corners of its bounds, so an image on a
    regular EPSG:3857 grid, placed at the lat/lng of that grid's corners, lands on every pixel where it belongs.
    """
    lc = catalog.land_cover
    rows, cols = lc.grid.shape
    src_crs, dst_crs = CRS.from_epsg(METRIC_EPSG), CRS.from_epsg(WEB_EPSG)
    left, bottom, right, top = array_bounds(rows, cols, lc.transform)
    dst_transform, width, height = calculate_default_transform(src_crs, dst_crs, cols, rows, left, bottom, right, top)
    warped = np.zeros((height, width), dtype=np.uint8)
    reproject(source=lc.grid, destination=warped, src_transform=lc.transform, src_crs=src_crs,
              src_nodata=LAND_COVER_NODATA, dst_transform=dst_transform, dst_crs=dst_crs,
              dst_nodata=LAND_COVER_NODATA, resampling=Resampling.nearest)
    palette = np.zeros((256, 4), dtype=np.uint8)
    for code, (_, _, color) in LAND_COVER_CLASSES.items():
        palette[code] = (*_hex_rgb(color), alpha)
    rgba = palette[warped]  # (h, w, 4); nodata stays transparent
    with MemoryFile() as mem:
        with mem.open(driver="PNG", width=width, height=height, count=4, dtype="uint8") as dst:
            dst.write(np.moveaxis(rgba, -1, 0))
        png = mem.read()
    w_left, w_bottom, w_right, w_top = array_bounds(height, width, dst_transform)
    to_ll = Transformer.from_crs(WEB_EPSG, 4326, always_xy=True)
    west, north = to_ll.transform(w_left, w_top)
    east, south = to_ll.transform(w_right, w_bottom)
    bounds = [[round(south, 7), round(west, 7)], [round(north, 7), round(east, 7)]]
    return png, bounds


def land_cover_overlay(catalog: Catalog) -> tuple[bytes, list[list[float]]]:
    """`render_land_cover` cached per catalog version."""
    return _cache.get(("land_cover", catalog.content_hash), lambda: render_land_cover(catalog))


# ---------------------------------------------------------------------------------------------------------------
# Identify: what is at a clicked point


def _matches(binding, record: Mapping[str, Any]) -> bool:
    return all(str(record.get(f)) in {str(v) for v in values} for f, values in binding.where.items())


def clause_summary(clause) -> dict[str, Any]:
    return {"id": clause.id, "dimension": clause.dimension, "dimension_zh": DIMENSION_NAMES_ZH[clause.dimension],
            "effect": clause.effect, "effect_zh": EFFECT_ZH[clause.effect], "text": clause.text,
            "source": clause.source, "illustrative": clause.illustrative, "conditions": list(clause.conditions)}


def clauses_for_feature(catalog: Catalog, layer: str, row: int) -> list[dict[str, Any]]:
    """Clauses bound to this feature: by layer (with its `where` filter) or, for a unit, by its type or code.

    A unit's own clauses (its unit file) are served by /v1/units/{code} and are not repeated here.
    """
    rec = catalog.layers[layer].records[row]
    out = []
    for clause in catalog.rules.clauses:
        b = clause.binding
        if b is None:
            continue
        if b.layer == layer and _matches(b, rec):
            out.append(clause)
        elif layer == "control_units" and b.layer is None and not b.land_cover and (
                (b.unit_type and b.unit_type == catalog.unit_type(row)) or rec["HJZHGKDYBM"] in b.units):
            out.append(clause)
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    return [clause_summary(c) for c in sorted(out, key=lambda c: (order[c.dimension], c.id))]


def identify(catalog: Catalog, lon: float, lat: float, layers: list[str] | None = None,
             tolerance_m: float = 0.5) -> dict[str, Any]:
    """Every feature of `layers` (all when None) at the lon/lat point, with its label, attributes and clauses."""
    x, y = (float(v) for v in to_metric(lon, lat))
    point = shapely.points(x, y)
    names = [n for n in LAYER_STYLES if n in catalog.layers and (layers is None or n in layers)]
    hits = []
    for name in reversed(names):  # top of the map first
        layer = catalog.layers[name]
        if layer.spec.geometry == "line":
            rows = [int(r) for r in np.flatnonzero(shapely.dwithin(layer.metric, point, 60.0))]
        else:
            rows = layer.index.rows_at(x, y, tolerance_m)
        for row in rows:
            rec = layer.records[row]
            hit = {"layer": name, "title_zh": layer.spec.title_zh, "fid": row, "label": feature_label(name, rec),
                   "attributes": rec if name != "control_units" else
                   {k: rec[k] for k in ("HJZHGKDYBM", "HJZHGKDYMC", "AREA", "DYLB")},
                   "clauses": clauses_for_feature(catalog, name, row)}
            if name == "control_units":
                kind = catalog.unit_type(row)
                hit.update(code=rec["HJZHGKDYBM"], name=rec["HJZHGKDYMC"], type=kind, type_zh=UNIT_TYPE_NAMES_ZH[kind])
            hits.append(hit)
    code = catalog.land_cover.class_at(x, y)
    land = None
    if code in LAND_COVER_CLASSES:
        key, name_zh, color = LAND_COVER_CLASSES[code]
        land = {"class": key, "name_zh": name_zh, "color": color}
    return {"dataset_version": catalog.dataset_version, "lon": lon, "lat": lat,
            "inside_territory": bool(catalog.territory.covers(point)), "features": hits, "land_cover": land}


# ---------------------------------------------------------------------------------------------------------------
# Site preview


_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
_SEPARATORS = re.compile(r"[\s,;，；、\t]+")
_WKT_START = re.compile(r"^\s*(POINT|POLYGON|MULTIPOLYGON|MULTIPOINT|LINESTRING|GEOMETRYCOLLECTION)\b", re.I)
_DMS = re.compile(r"[度°′'″\"分秒]|东经|北纬")
_FULLWIDTH = str.maketrans("０１２３４５６７８９．－＋", "0123456789.-+")


def site_input(text: str) -> str | list[list[float]]:
    """Turn pasted coordinates into what `parse_site` reads.

    GeoJSON, WKT and degrees-minutes-seconds text pass through unchanged. Anything else is read as a coordinate
    table: per line the last two numbers are the pair (so a leading point name or number such as "J1" or "1" is
    skipped, as are header lines without numbers). One pair is a point; three or more a polygon ring.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("请粘贴坐标：每行一个点（两个数值），或 GeoJSON / WKT 文本", detail="empty site text",
                           field="site")
    stripped = text.strip()
    if stripped[0] in "{[" or _WKT_START.match(stripped) or _DMS.search(stripped):
        return stripped
    pairs: list[list[float]] = []
    lines = stripped.translate(_FULLWIDTH).splitlines()
    data_lines = []
    for lineno, line in enumerate(lines, start=1):
        numbers = [float(t) for t in _SEPARATORS.split(line.strip()) if t and _NUMBER.match(t)]
        if not numbers:
            continue  # a header (点号 X Y) or a blank line
        if len(numbers) == 1:
            raise InvalidInput(f"第 {lineno} 行只有一个数值（{line.strip()[:40]}），每行应有一对坐标",
                               detail=f"line {lineno}: one number", field="site", line=lineno)
        data_lines.append((lineno, numbers))
    if len(data_lines) == 1 and len(data_lines[0][1]) >= 4 and len(data_lines[0][1]) % 2 == 0:
        numbers = data_lines[0][1]  # one line of x y x y ...
        pairs = [[numbers[i], numbers[i + 1]] for i in range(0, len(numbers), 2)]
    else:
        pairs = [numbers[-2:] for _, numbers in data_lines]
    if not pairs:
        raise InvalidInput("没有找到坐标数值：每行应有一对坐标，如 117.455, 49.585", detail="no numbers",
                           field="site")
    if len(pairs) == 2:
        raise InvalidInput("只找到 2 个点：1 个点表示点位，多边形至少需要 3 个点", detail="two points", field="site")
    return pairs[0] if len(pairs) == 1 else pairs


def _area(m2: float) -> dict[str, float]:
    return {"m2": round(m2, 2), "ha": round(m2 / 10000, 4), "mu": round(m2 * MU_PER_M2, 3)}


def site_summary(catalog: Catalog, geom) -> dict[str, Any]:
    """Where a parsed site (EPSG:4490) lies: GeoJSON, vertex count, area, centroid and the part inside the city."""
    metric = _to_metric(geom)
    inside = shapely.intersection(metric, catalog.territory) if metric.area > 0 else None
    centroid = geom.centroid if geom.geom_type != "Point" else geom
    return {
        "geometry": orjson.loads(shapely.to_geojson(_round(geom))),
        "geometry_type": geom.geom_type,
        "vertex_count": int(shapely.get_num_coordinates(geom)),
        "area": _area(metric.area),
        "inside_area": _area(inside.area) if inside is not None else _area(0.0),
        "inside_territory": bool(catalog.territory.intersects(metric)),
        "centroid": [round(centroid.x, 7), round(centroid.y, 7)],
        "bounds": [round(v, 7) for v in geom.bounds],
    }


def survey_summary(catalog: Catalog, survey) -> dict[str, Any]:
    """The parcels of a parsed survey file as a FeatureCollection (EPSG:4490) with their attributes.

    The parcels together must form a valid site, as `/v1/assessments/survey` requires: overlapping or touching
    parcels are refused here too, before the officer assesses.
    """
    parts = [p.polygon for p in survey.parcels]
    site_metric = shapely.MultiPolygon(parts) if len(parts) > 1 else parts[0]
    if not site_metric.is_valid:
        reason = shapely.is_valid_reason(site_metric)
        raise InvalidInput("坐标文件中的地块相互重叠或相接，无法作为一个用地范围分析：" + reason, detail=reason,
                           field="file")
    features = []
    for p in survey.parcels:
        g = _to_storage(p.polygon)
        features.append({"type": "Feature", "properties": {
            "index": p.index, "code": p.code, "name": p.name, "use": p.use, "declared_area": p.declared_area,
            "point_count": p.point_count, "area": _area(p.polygon.area)},
            "geometry": orjson.loads(shapely.to_geojson(_round(g)))})
    summary = site_summary(catalog, _to_storage(site_metric))
    summary.update(parcels={"type": "FeatureCollection", "features": features}, source_crs=survey.source_crs,
                   zone=survey.zone, zone_width=survey.zone_width, encoding=survey.encoding,
                   header=dict(survey.header), warnings=list(survey.warnings))
    return summary
