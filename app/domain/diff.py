"""Version diff of zoning layers: which features a new version adds, removes or changes, by how much and where.

Features are matched across versions by their layer's key fields (`LayerSpec.key`); a layer without key fields is
matched by row position, and a feature whose key is empty matches nothing (it shows as removed and added). Areas and
lengths are measured in EPSG:4548 (m², m); the parts gained and lost are embedded as GeoJSON in EPSG:4490, with the
vertex count capped (simplified in metres, the cap recorded in the entry) while the areas always come from the
exact geometry. A geometry counts as changed when the symmetric difference of the normalized geometries exceeds
0.01 m² (lines: a Hausdorff distance over 0.01 m). Invalid geometries are measured after a structural repair
(`make_valid(method="structure")`) so a broken draft still diffs; the validator reports them separately.

The output is plain JSON (no numpy types, no NaN) and deterministic: layers in contract order, entries by key.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from app.domain.schema import LAYERS, METRIC_EPSG, STORAGE_EPSG
from app.geo.crs import transformer

GEOMETRY_TOLERANCE_M2 = 0.01  # symmetric-difference area below which two polygons are the same geometry
LINE_TOLERANCE_M = 0.01  # Hausdorff distance below which two lines are the same geometry
DEFAULT_MAX_VERTICES = 2000  # vertices embedded per GeoJSON geometry
COORD_DECIMALS = 9  # degrees; 1e-9° ≈ 0.1 mm
AREA_DECIMALS = 2  # m²

# Fields that name a feature for people, after its key values.
LABEL_FIELDS = ("HJZHGKDYMC", "county_name", "name", "source_name", "zone_name", "function_name", "kind_name",
                "catchment")


# ----------------------------------------------------------------------------------------------------------------
# Helpers shared with the validator
# ----------------------------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A JSON-safe Python value for an attribute: None for nulls/NaN, ints, floats, bools, ISO dates, text."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        if pd.isna(value):
            return None
        if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def ordered_layer_names(names) -> list[str]:
    """Layer names in contract order, unknown layers after them alphabetically."""
    order = list(LAYERS)
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), n))


def as_storage(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The frame in EPSG:4490 (a frame without CRS is taken to be in it)."""
    if frame.crs is None:
        return frame.set_crs(STORAGE_EPSG, allow_override=True)
    if frame.crs.to_epsg() != STORAGE_EPSG:
        return frame.to_crs(STORAGE_EPSG)
    return frame


def metric_geoms(frame: gpd.GeoDataFrame) -> np.ndarray:
    """The frame's geometries in EPSG:4548 (None where a geometry is missing)."""
    if len(frame) == 0:
        return np.empty(0, dtype=object)
    geoms = as_storage(frame).geometry.values
    out = np.empty(len(geoms), dtype=object)
    present = np.array([g is not None for g in geoms], dtype=bool)
    if present.any():
        with np.errstate(all="ignore"):
            out[present] = gpd.GeoSeries(np.asarray(geoms, dtype=object)[present], crs=STORAGE_EPSG).to_crs(
                METRIC_EPSG).values
    return out


def is_polygonal(geom) -> bool:
    return geom is not None and geom.geom_type in ("Polygon", "MultiPolygon")


def is_lineal(geom) -> bool:
    return geom is not None and geom.geom_type in ("LineString", "MultiLineString", "LinearRing")


def _finite(geom) -> bool:
    return bool(np.isfinite(shapely.get_coordinates(geom)).all())


def clean(geom, kind: str = "polygon"):
    """The part of a geometry that overlays can use: valid polygons (or lines), None if nothing usable is left.

    Invalid polygons are repaired structurally (fast, bounded); non-finite coordinates leave nothing usable.
    """
    if geom is None or geom.is_empty or not _finite(geom):
        return None
    if kind == "line":
        parts = [p for p in shapely.get_parts(geom) if is_lineal(p) and not p.is_empty]
        return shapely.multilinestrings(parts) if len(parts) > 1 else (parts[0] if parts else None)
    if is_polygonal(geom) and geom.is_valid:
        return geom
    with np.errstate(all="ignore"):
        try:
            fixed = shapely.make_valid(geom, method="structure") if is_polygonal(geom) else geom
        except shapely.errors.GEOSException:
            return None
    parts = [p for p in _flat_parts(fixed) if p.geom_type == "Polygon" and not p.is_empty]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.multipolygons(parts)


def _flat_parts(geom) -> list:
    out = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if g.geom_type in ("GeometryCollection", "MultiPolygon", "MultiLineString", "MultiPoint"):
            stack.extend(shapely.get_parts(g))
        else:
            out.append(g)
    return out


def polygonal_part(geom):
    """Only the polygons of an overlay result (drops the lines and points a difference can leave)."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [p for p in _flat_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.multipolygons(parts)


def union(geoms):
    """Union of the usable geometries (an empty polygon if none)."""
    usable = [g for g in geoms if g is not None and not g.is_empty]
    return shapely.union_all(usable) if usable else shapely.Polygon()


def _to_storage_transformer() -> Transformer:
    # Unchecked on purpose: uploaded drafts may hold odd geometry that is being reported, not refused.
    return transformer(METRIC_EPSG, STORAGE_EPSG)


def metric_to_storage(geom):
    """A metric geometry in EPSG:4490 (lon/lat)."""
    t = _to_storage_transformer()
    return shapely.transform(geom, lambda x, y: t.transform(x, y), interleaved=False)


def lonlat(point_metric) -> list[float] | None:
    """[lon, lat] of a metric point, rounded to 1e-7° (~1 cm)."""
    if point_metric is None or point_metric.is_empty:
        return None
    lon, lat = _to_storage_transformer().transform(point_metric.x, point_metric.y)
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return None
    return [round(float(lon), 7), round(float(lat), 7)]


def embed(geom_metric, max_vertices: int = DEFAULT_MAX_VERTICES) -> tuple[dict | None, bool, str | None]:
    """GeoJSON (EPSG:4490) of a metric geometry with at most `max_vertices` vertices.

    Returns (geojson, capped, note). Over the cap the geometry is simplified with a doubling tolerance (metres),
    then the smallest parts are dropped if it is still too large; the note says so in Chinese.
    """
    if geom_metric is None or geom_metric.is_empty:
        return None, False, None
    n = int(shapely.get_num_coordinates(geom_metric))
    if n <= max_vertices:
        shown, note = geom_metric, None
    else:
        tol = 0.5
        for _ in range(24):
            shown = shapely.simplify(geom_metric, tol, preserve_topology=True)
            if shapely.get_num_coordinates(shown) <= max_vertices:
                break
            tol *= 2
        dropped = 0
        if shapely.get_num_coordinates(shown) > max_vertices:  # many small parts: keep the largest that fit
            parts = sorted(_flat_parts(shown), key=lambda p: -(p.area or p.length))
            kept, count = [], 0
            for p in parts:
                c = int(shapely.get_num_coordinates(p))
                if count + c <= max_vertices:
                    kept.append(p)
                    count += c
            dropped = len(parts) - len(kept)
            shown = _collect(kept)
        embedded = int(shapely.get_num_coordinates(shown)) if shown is not None else 0
        note = (f"几何共 {n} 个顶点，超过嵌入上限 {max_vertices} 个，已按 {tol:g} 米容差简化"
                f"{f'并省略 {dropped} 个较小的部分' if dropped else ''}（嵌入 {embedded} 个顶点）；面积按原始几何计算。")
        if shown is None:
            return None, True, note
    g = metric_to_storage(shown)
    g = shapely.transform(g, lambda c: np.round(c, COORD_DECIMALS))
    return json.loads(shapely.to_geojson(g)), n > max_vertices, note


def _collect(parts: list):
    """One geometry of a list of simple parts (multi-type when they share a type)."""
    if not parts:
        return None
    if all(p.geom_type == "Polygon" for p in parts):
        return shapely.multipolygons(parts)
    if all(p.geom_type == "LineString" for p in parts):
        return shapely.multilinestrings(parts)
    return shapely.geometrycollections(parts)


def red_line_area_m2(frame: gpd.GeoDataFrame | None) -> float | None:
    """Total red-line area in m² (EPSG:4548): the area of the union, so overlapping patches count once."""
    if frame is None:
        return None
    return round(union_area([clean(g) for g in metric_geoms(frame)]), AREA_DECIMALS)


def union_area(geoms) -> float:
    """Area of the union of polygons without a full union: only groups that touch each other are unioned."""
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms:
        return 0.0
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    parent = list(range(len(geoms)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(left.tolist(), right.tolist()):
        if i < j:
            parent[find(i)] = find(j)
    groups: dict[int, list] = defaultdict(list)
    for i, g in enumerate(geoms):
        groups[find(i)].append(g)
    return float(sum(g[0].area if len(g) == 1 else shapely.union_all(g).area for g in groups.values()))


# ----------------------------------------------------------------------------------------------------------------
# The diff
# ----------------------------------------------------------------------------------------------------------------


class _Side:
    """One version of one layer, read once: attribute records, key tuples, metric geometries and measures."""

    def __init__(self, name: str, frame: gpd.GeoDataFrame | None, key_fields: tuple[str, ...]) -> None:
        self.name = name
        self.present = frame is not None
        frame = as_storage(frame) if frame is not None else None
        spec = LAYERS.get(name)
        self.kind = spec.geometry if spec else "polygon"
        if frame is None:
            self.columns, self.records, self.metric = [], [], []
        else:
            gcol = frame.geometry.name
            self.columns = [c for c in frame.columns if c != gcol]
            self.records = [{c: plain(v) for c, v in zip(self.columns, row)}
                            for row in frame[self.columns].itertuples(index=False, name=None)]
            raw = metric_geoms(frame)
            if spec is None and raw.size and all(is_lineal(g) for g in raw if g is not None):
                self.kind = "line"
            self.metric = [clean(g, "line" if self.kind == "line" else "polygon") for g in raw]
        self.has_keys = bool(key_fields) and all(f in self.columns for f in key_fields)
        # Match keys: ("row", i) without key fields, ("key", values, occurrence) with them, and a key that
        # matches nothing on the other side when a key value is empty.
        self.keys: list[tuple] = []
        seen: dict[tuple, int] = defaultdict(int)
        for i, rec in enumerate(self.records):
            if not key_fields:
                k = ("row", i)
            elif not self.has_keys or any(rec.get(f) in (None, "") for f in key_fields):
                k = ("nokey", id(self), i)
            else:
                values = tuple(rec[f] for f in key_fields)
                k = ("key", values, seen[values])
                seen[values] += 1
            self.keys.append(k)

    def measure(self, i: int) -> float:
        g = self.metric[i]
        if g is None:
            return 0.0
        return float(g.length if self.kind == "line" else g.area)


def _measure(geom, kind: str) -> float:
    if geom is None or geom.is_empty:
        return 0.0
    return float(geom.length if kind == "line" else geom.area)


def _label(name: str, rec: Mapping[str, Any], key_fields: tuple[str, ...]) -> str:
    parts = [str(rec.get(f)) for f in key_fields if rec.get(f) not in (None, "")]
    for f in LABEL_FIELDS:
        v = rec.get(f)
        if f not in key_fields and v not in (None, "") and str(v) not in parts:
            parts.append(str(v))
            break
    spec = LAYERS.get(name)
    return " ".join(parts) if parts else f"{spec.title_zh if spec else name}要素"


def _sort_key(k: tuple) -> tuple:
    if k[0] == "key":
        return (0, tuple("" if v is None else str(v) for v in k[1]), k[2])
    return (1 if k[0] == "row" else 2, (), k[-1])


def _attr_changes(before: Mapping[str, Any], after: Mapping[str, Any], order: list[str]) -> list[dict[str, Any]]:
    out = []
    for f in order:
        a, b = before.get(f), after.get(f)
        if f not in before and f not in after:
            continue
        if f not in before:
            out.append({"field": f, "old": None, "new": b, "note": "新增字段"})
        elif f not in after:
            out.append({"field": f, "old": a, "new": None, "note": "字段已删除"})
        elif a != b:
            out.append({"field": f, "old": a, "new": b})
    return out


def _nearly_identical(old, new, kind: str) -> bool:
    """True when the two geometries have the same vertices up to a shift too small to matter (no overlay needed).

    Same structure and every vertex within d of its twin bounds the symmetric difference by about
    2·√2·perimeter·d, so a re-projected but otherwise untouched feature is recognised without a GEOS overlay.
    """
    a, b = shapely.normalize(old), shapely.normalize(new)
    ca, cb = shapely.get_coordinates(a), shapely.get_coordinates(b)
    if ca.shape != cb.shape:
        return False
    d = float(np.abs(ca - cb).max()) if ca.size else 0.0
    if d == 0.0:
        return bool(shapely.equals_exact(a, b, tolerance=0.0))
    if kind == "line":
        small = d <= LINE_TOLERANCE_M
    else:
        small = 2 * math.sqrt(2) * max(old.length, new.length) * d <= GEOMETRY_TOLERANCE_M2
    return small and bool(shapely.equals_exact(a, b, tolerance=d * 1.5))  # per-axis d → distance ≤ √2·d


def geometry_delta(old, new, kind: str = "polygon") -> tuple[bool, Any, Any]:
    """(changed, part gained, part lost) between two metric geometries, within the tolerance."""
    return _geometry_delta(old, new, kind)


def _geometry_delta(old, new, kind: str) -> tuple[bool, Any, Any]:
    """(changed, added part, removed part) of two metric geometries, within the tolerance."""
    if old is None and new is None:
        return False, None, None
    if old is None or new is None:
        return True, new, old
    if _nearly_identical(old, new, kind):
        return False, None, None
    with np.errstate(all="ignore"):
        if kind == "line":
            if shapely.hausdorff_distance(old, new) <= LINE_TOLERANCE_M:
                return False, None, None
            return True, shapely.difference(new, old), shapely.difference(old, new)
        added = polygonal_part(shapely.difference(new, old))
        removed = polygonal_part(shapely.difference(old, new))
    sym = _measure(added, kind) + _measure(removed, kind)
    if sym <= GEOMETRY_TOLERANCE_M2:
        return False, None, None
    return True, added, removed


def diff_layer(name: str, old: gpd.GeoDataFrame | None, new: gpd.GeoDataFrame | None, *,
               max_vertices: int = DEFAULT_MAX_VERTICES) -> dict[str, Any]:
    """Diff of one layer between two versions (either may be None: layer absent in that version)."""
    spec = LAYERS.get(name)
    key_fields = spec.key if spec else ()
    a, b = _Side(name, old, key_fields), _Side(name, new, key_fields)
    kind = "line" if "line" in (a.kind, b.kind) else "polygon"
    unit = "length_m" if kind == "line" else "area_m2"
    rows_a = {k: i for i, k in enumerate(a.keys)}
    rows_b = {k: i for i, k in enumerate(b.keys)}
    columns = [f for f in (spec.fields if spec else {})]
    columns += sorted(c for c in set(a.columns) | set(b.columns) if c not in columns)

    def base(k: tuple, i: int | None, j: int | None) -> dict[str, Any]:
        rec = b.records[j] if j is not None else a.records[i]
        key = {f: rec.get(f) for f in key_fields} if key_fields else {}
        if k[0] == "key" and k[2]:
            key["occurrence"] = k[2]  # the n-th feature with a duplicated key
        return {
            "key": key,
            "label": _label(name, rec, key_fields),
            "row_before": i,
            "row_after": j,
            f"{unit}_before": round(a.measure(i), AREA_DECIMALS) if i is not None else None,
            f"{unit}_after": round(b.measure(j), AREA_DECIMALS) if j is not None else None,
        }

    def geometry_fields(entry: dict[str, Any], added, removed) -> None:
        entry[f"{unit}_added"] = round(_measure(added, kind), AREA_DECIMALS)
        entry[f"{unit}_removed"] = round(_measure(removed, kind), AREA_DECIMALS)
        ga, ca, na = embed(added, max_vertices)
        gr, cr, nr = embed(removed, max_vertices)
        entry["geometry_added"] = ga
        entry["geometry_removed"] = gr
        entry["geometry_capped"] = ca or cr
        entry["geometry_note"] = "；".join(n for n in (f"新增部分：{na}" if na else None,
                                                      f"减少部分：{nr}" if nr else None) if n) or None

    added, removed, changed, unchanged = [], [], [], 0
    for k in sorted(rows_b, key=_sort_key):
        if k not in rows_a:
            j = rows_b[k]
            entry = base(k, None, j)
            geometry_fields(entry, b.metric[j], None)
            added.append(entry)
    for k in sorted(rows_a, key=_sort_key):
        i = rows_a[k]
        if k not in rows_b:
            entry = base(k, i, None)
            geometry_fields(entry, None, a.metric[i])
            removed.append(entry)
            continue
        j = rows_b[k]
        attrs = _attr_changes(a.records[i], b.records[j], columns) if a.columns != b.columns or \
            a.records[i] != b.records[j] else []
        geom_changed, plus, minus = _geometry_delta(a.metric[i], b.metric[j], kind)
        if not attrs and not geom_changed:
            unchanged += 1
            continue
        entry = base(k, i, j)
        entry["attributes"] = attrs
        entry["geometry_changed"] = geom_changed
        geometry_fields(entry, plus, minus)
        changed.append(entry)

    out: dict[str, Any] = {
        "title_zh": spec.title_zh if spec else name,
        "in_before": a.present,
        "in_after": b.present,
        "features_before": len(a.records),
        "features_after": len(b.records),
        "added": added,
        "removed": removed,
        "changed": changed,
        "unchanged": unchanged,
        f"{unit}_before": round(sum(a.measure(i) for i in range(len(a.records))), AREA_DECIMALS),
        f"{unit}_after": round(sum(b.measure(j) for j in range(len(b.records))), AREA_DECIMALS),
    }
    if unit != "area_m2":  # keep the documented fields on every layer
        out["area_m2_before"] = 0.0
        out["area_m2_after"] = 0.0
    return out


def diff_layers(old: Mapping[str, gpd.GeoDataFrame], new: Mapping[str, gpd.GeoDataFrame], *,
                max_vertices: int = DEFAULT_MAX_VERTICES) -> dict[str, Any]:
    """Diff two versions layer by layer (every layer present in either), plus a `summary`.

    Returns `{<layer>: {"added", "removed", "changed", "unchanged", "area_m2_before", "area_m2_after", ...}, ...,
    "summary": {"layers": {<layer>: counts}, "added", "removed", "changed", "red_line", "vertex_cap"}}`.
    """
    out: dict[str, Any] = {}
    counts: dict[str, dict[str, int]] = {}
    for name in ordered_layer_names(set(old) | set(new)):
        d = diff_layer(name, old.get(name), new.get(name), max_vertices=max_vertices)
        out[name] = d
        counts[name] = {"added": len(d["added"]), "removed": len(d["removed"]), "changed": len(d["changed"]),
                        "unchanged": d["unchanged"], "features_before": d["features_before"],
                        "features_after": d["features_after"]}
    red_line = None
    if "red_line" in old or "red_line" in new:
        before, after = red_line_area_m2(old.get("red_line")), red_line_area_m2(new.get("red_line"))
        red_line = {"before_m2": before, "after_m2": after,
                    "change_m2": round(after - before, AREA_DECIMALS) + 0.0 if None not in (before, after) else None}
    out["summary"] = {
        "layers": counts,
        "added": sum(c["added"] for c in counts.values()),
        "removed": sum(c["removed"] for c in counts.values()),
        "changed": sum(c["changed"] for c in counts.values()),
        "red_line": red_line,
        "vertex_cap": max_vertices,
    }
    return out
