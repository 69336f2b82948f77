"""Batch screening: many sites against one catalog, with vectorised geometry work and shared clause outcomes.

The answer for each site is the one `assess()` gives (verdict, units, red-line overlap and distance, applied and
undecided clause ids, missing facts), computed without a per-site loop over the single-site engine:

* **Points** are validated and transformed as coordinate arrays (`to_storage`, then `to_metric`: one call each for
  the whole batch). Which units and bound-layer features hold a point is the test `assess()` makes — the pieces
  within the boundary tolerance (`LayerIndex.rows_at(x, y, tol)`), so a point on a shared boundary belongs to every
  unit there — run for all points at once: candidate pieces from one `STRtree.query(points)`, then
  `shapely.dwithin` on the prepared pieces. Large point batches first look up a 100 m grid built once per catalog:
  a cell that no boundary of a layer comes near (tolerance + 1 m) has, for that layer, the answer of its centre;
  only points in cells crossed by a boundary take the piece test. The red-line distance of a point outside the red
  line is the exact point-to-segment distance to the boundary: per-cell candidate runs of ≤ 8 boundary segments,
  pruned by bounding boxes, with GEOS's own formula (the same metres as `chunk_tree.query_nearest`, which small
  batches use directly).
* **Polygons** are transformed in one call, clipped to the territory where they cross it (as `assess()` clips),
  and matched with every layer by one `STRtree.query(sites, predicate="intersects")` per layer; a site inside a
  whole feature overlaps it by its own area, the others are intersected with the pieces they meet, vectorised over
  the (site, piece) pairs and summed per site and feature. Land cover is the pixel composition of each site, burnt
  for many sites per GDAL call (`land_cover_shares`), identical to `LandCover.composition`.
* **Clauses**: whether a clause's place applies depends only on a site's *signature* — inside the territory or not,
  the units it occupies, which filtered features of each bound layer it occupies, which land-cover bindings hold —
  and its outcome only on the project facts. Each distinct (signature, facts) pair is evaluated once with the rule
  engine's `evaluate` and the verdict rule of `assess()` (`decide_verdict`), and shared by every site that has it.

A site that cannot be read (bad coordinates, invalid geometry, bad project values) is kept as a row with a Chinese
error message naming the row; it does not fail the batch. Problems of the request itself (no coordinate column,
unknown columns, unknown CRS, too many sites) raise InvalidInput / InputTooLarge. Geometry work is in EPSG:4548.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import orjson
import rasterio
import rasterio.features
import shapely
from pydantic import ValidationError

from app.domain.assessment import VERDICT_ZH, decide_verdict
from app.domain.catalog import Catalog
from app.domain.kernels import point_segment
from app.domain.rules import evaluate, resolve_facts
from app.domain.schema import LAND_COVER_CLASSES, LAND_COVER_NODATA
from app.domain.spatial import BOUNDARY_TOLERANCE_M, MIN_OVERLAP_M2, LayerIndex, boundary_chunks
from app.errors import InputTooLarge, InvalidCoordinates, InvalidInput, ZoningError
from app.geo.crs import (
    CHINA_LAT,
    CHINA_LON,
    GK_ZONE,
    MAX_EASTING,
    MAX_NORTHING,
    STORAGE_CRS,
    ZONE_FACTOR,
    CRSSpec,
    parse_crs,
    to_metric,
    to_storage,
)
from app.geo.geometry import DEFAULT_MAX_VERTICES, parse_site, validate_geometry
from app.geo.upload import UploadLimits, read_upload
from app.models.assessment import Project

log = logging.getLogger("app.batch")

# ---------------------------------------------------------------------------------------------------------------
# Limits and tuning

MAX_SITES = 1_000_000  # sites in one batch (a background job); the synchronous endpoint has its own, lower cap
MAX_TOTAL_VERTICES = 20_000_000  # polygon vertices in one batch
MAX_ID_CHARS = 200
BLOCK_SITES = 50_000  # sites screened (and streamed) per block
GRID_MIN_POINTS = 20_000  # point batches from this size use (and, once per catalog, build) the point grid
GRID_CELL_M = 100.0  # point grid: root cells ...
GRID_MIN_CELL_M = 25.0  # ... split where a boundary passes, down to this size
RUN_CELL_M = 100.0  # red-line distance index: candidate runs per cell ...
RUN_COARSE_CELL_M = 400.0  # ... from the exact centre distances given by a coarser index
RUN_SEGMENTS = 8  # boundary segments per run in the red-line distance index
OUTPUT_FORMATS = ("csv", "geojson", "ndjson")

KIND_ERROR, KIND_POINT, KIND_POLYGON = 0, 1, 2
PROJECT_FIELDS = tuple(Project.model_fields)

# ---------------------------------------------------------------------------------------------------------------
# The input: a columnar batch of sites


@dataclass
class SiteBatch:
    """Sites to screen, column by column. Points carry lon/lat (EPSG:4490), polygons a validated EPSG:4490 geometry,
    rows that could not be read an error message. `project_idx` points into `projects` (distinct project facts)."""

    ids: list[str]
    kind: np.ndarray  # int8: KIND_ERROR / KIND_POINT / KIND_POLYGON
    lon: np.ndarray
    lat: np.ndarray
    geoms: np.ndarray  # object: polygon sites (EPSG:4490), None elsewhere
    project_idx: np.ndarray  # int32, -1 on error rows
    projects: list[dict[str, Any]]
    errors: list[str | None]
    input_crs: str = STORAGE_CRS
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def point_count(self) -> int:
        return int(np.count_nonzero(self.kind == KIND_POINT))

    def block(self, start: int, stop: int) -> "SiteBatch":
        return SiteBatch(
            ids=self.ids[start:stop], kind=self.kind[start:stop], lon=self.lon[start:stop], lat=self.lat[start:stop],
            geoms=self.geoms[start:stop], project_idx=self.project_idx[start:stop], projects=self.projects,
            errors=self.errors[start:stop], input_crs=self.input_crs, warnings=self.warnings,
        )


class _Projects:
    """Distinct validated project facts; each row refers to one by index."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._index: dict[bytes, int] = {}
        self._cache: dict[Any, int | str] = {}

    def add_validated(self, facts: dict[str, Any]) -> int:
        key = orjson.dumps(facts, option=orjson.OPT_SORT_KEYS)
        idx = self._index.get(key)
        if idx is None:
            idx = self._index[key] = len(self.items)
            self.items.append(facts)
        return idx

    def cached(self, cache_key: Any) -> int | str | None:
        return self._cache.get(cache_key)

    def add_raw(self, raw: Mapping[str, Any], cache_key: Any = None) -> int | str:
        """Validate raw project values like the assessment API does; the index, or a Chinese error message.

        The project name is checked but not kept: no clause tests it, and sites differing only by name then share
        their facts (and their clause outcomes)."""
        if cache_key is not None and cache_key in self._cache:
            return self._cache[cache_key]
        try:
            facts = Project.model_validate(dict(raw)).model_dump(exclude_none=True)
            facts.pop("name", None)
            result: int | str = self.add_validated(facts)
        except ValidationError as exc:
            result = _pydantic_message(exc)
        if cache_key is not None and len(self._cache) < 200_000:
            self._cache[cache_key] = result
        return result


_PYDANTIC_ZH = {
    "missing": "缺少必填字段", "extra_forbidden": "不是项目信息字段（请检查拼写）", "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true/false（或 是/否、1/0）", "float_type": "应为数字", "float_parsing": "应为数字",
    "finite_number": "不能是 NaN 或无穷大", "string_type": "应为文本", "string_pattern_mismatch": "格式不正确",
    "string_too_long": "文本过长", "literal_error": "取值不在允许范围内", "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大", "model_type": "应为 JSON 对象", "dict_type": "应为 JSON 对象",
}


def _pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "project"
        text = _PYDANTIC_ZH.get(err.get("type", ""), "取值无效")
        expected = (err.get("ctx") or {}).get("expected")
        if expected and err.get("type") == "literal_error":
            text += f"，可选：{expected}"
        if err.get("type") == "string_pattern_mismatch" and where == "industry_code":
            text = "应为 2～4 位数字的国民经济行业分类代码（按文本填写，保留前导 0）"
        parts.append(f"项目信息字段 {where}：{text}")
    return "；".join(parts)


class SiteCollector:
    """Collects sites row by row from any reader, then validates coordinates as arrays (`finish`)."""

    def __init__(self, crs: str | CRSSpec = STORAGE_CRS, *, axis_order: str = "xy",
                 max_vertices: int = DEFAULT_MAX_VERTICES, max_sites: int = MAX_SITES,
                 row_label: Callable[[int], str] | None = None) -> None:
        self.spec = parse_crs(crs)  # an unknown CRS fails the whole batch, before any row is read
        if axis_order not in ("xy", "survey"):
            raise InvalidInput(f"不支持的坐标轴顺序“{str(axis_order)[:20]}”，应为 xy 或 survey。",
                               detail=f"axis_order {axis_order!r}", field="axis_order")
        if axis_order == "survey" and not self.spec.is_projected:
            raise InvalidInput("axis_order=survey（X=北坐标、Y=东坐标）只适用于高斯-克吕格投影坐标（EPSG:4527、EPSG:4548）。",
                               detail=f"survey axis order with {self.spec.name}", field="axis_order")
        self.axis_order = axis_order
        self.max_vertices = max_vertices
        self.max_sites = max_sites
        self.row_label = row_label or (lambda i: f"第 {i + 1} 个场址")
        self.projects = _Projects()
        self.ids: list[str] = []
        self.kind: list[int] = []
        self.x: list[float] = []
        self.y: list[float] = []
        self.geoms: dict[int, Any] = {}
        self.project_idx: list[int] = []
        self.errors: dict[int, str] = {}
        self.vertices = 0
        self.warnings: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def _new_row(self, site_id: Any) -> int:
        i = len(self.ids)
        if i >= self.max_sites:
            raise InputTooLarge(f"场址过多：一次最多 {self.max_sites:,} 个，请拆分后分批提交。",
                                detail=f"more than {self.max_sites} sites", limit=self.max_sites)
        text = "" if site_id is None else str(site_id).strip()
        self.ids.append(text or str(i + 1))
        self.kind.append(KIND_ERROR)
        self.x.append(math.nan)
        self.y.append(math.nan)
        self.project_idx.append(-1)
        if len(text) > MAX_ID_CHARS:
            self.ids[i] = text[:MAX_ID_CHARS]
            self.fail(i, f"编号过长（{len(text)} 个字符，上限 {MAX_ID_CHARS}）")
        return i

    def fail(self, i: int, message: str) -> None:
        if i not in self.errors:
            self.errors[i] = f"{self.row_label(i)}：{message}"
        self.kind[i] = KIND_ERROR

    def _project(self, i: int, project: int | str) -> bool:
        if isinstance(project, str):
            self.fail(i, project)
            return False
        self.project_idx[i] = project
        return True

    def add_error(self, site_id: Any, message: str) -> int:
        i = self._new_row(site_id)
        self.fail(i, message)
        return i

    def add_point(self, site_id: Any, x: float, y: float, project: int | str) -> int:
        """A point in the batch CRS (validated later, with all others, in `finish`)."""
        i = self._new_row(site_id)
        if i in self.errors or not self._project(i, project):
            return i
        self.kind[i] = KIND_POINT
        self.x[i], self.y[i] = x, y
        return i

    def add_site(self, site_id: Any, value: Any, project: int | str) -> int:
        """A site in any form `parse_site` accepts (GeoJSON, WKT, coordinate pairs, DMS) in the batch CRS."""
        i = self._new_row(site_id)
        if i in self.errors or not self._project(i, project):
            return i
        point = _plain_point(value)
        if point is not None:  # the common case, kept on the vectorised path
            self.kind[i] = KIND_POINT
            self.x[i], self.y[i] = point
            return i
        try:
            geom = parse_site(value, self.spec, axis_order=self.axis_order, max_vertices=self.max_vertices)
        except ZoningError as exc:
            self.fail(i, exc.message_zh)
            return i
        except Exception:  # noqa: BLE001 - a row never fails the batch
            log.exception("unexpected error parsing batch site %d", i)
            self.fail(i, "无法解析该场址几何")
            return i
        self._geometry(i, geom)
        return i

    def add_geometry(self, site_id: Any, geom: Any, project: int | str) -> int:
        """A shapely geometry already in EPSG:4490 (read from a GeoPackage / Shapefile)."""
        i = self._new_row(site_id)
        if i in self.errors or not self._project(i, project):
            return i
        if geom is None or (hasattr(geom, "is_empty") and geom.is_empty):
            self.fail(i, "没有几何（空几何）")
            return i
        if geom.geom_type == "MultiPoint" and len(geom.geoms) == 1:
            geom = geom.geoms[0]
        if geom.geom_type == "Point":
            self.kind[i] = KIND_POINT
            self.x[i], self.y[i] = float(geom.x), float(geom.y)
            return i
        try:
            count = int(shapely.get_num_coordinates(geom))
            if count > self.max_vertices:
                raise InputTooLarge(f"几何含 {count} 个顶点，超过上限 {self.max_vertices} 个。请简化边界后再提交。",
                                    detail=f"{count} vertices")
            validate_geometry(geom)
            xy = shapely.get_coordinates(geom)
            to_storage(xy[:, 0], xy[:, 1], STORAGE_CRS)
        except ZoningError as exc:
            self.fail(i, exc.message_zh)
            return i
        self._geometry(i, geom)
        return i

    def _geometry(self, i: int, geom: Any) -> None:
        if geom.geom_type == "Point":
            self.kind[i] = KIND_POINT
            self.x[i], self.y[i] = float(geom.x), float(geom.y)
            self.geoms[i] = geom  # already in EPSG:4490
            return
        self.vertices += int(shapely.get_num_coordinates(geom))
        if self.vertices > MAX_TOTAL_VERTICES:
            raise InputTooLarge(f"场址边界的顶点总数超过上限 {MAX_TOTAL_VERTICES:,} 个，请拆分后分批提交。",
                                detail=f"batch vertices > {MAX_TOTAL_VERTICES}", limit=MAX_TOTAL_VERTICES)
        self.kind[i] = KIND_POLYGON
        self.geoms[i] = geom

    def finish(self) -> SiteBatch:
        """Validate and transform every point as arrays; rows with bad coordinates get their own message."""
        n = len(self.ids)
        kind = np.array(self.kind, dtype=np.int8)
        lon = np.full(n, np.nan)
        lat = np.full(n, np.nan)
        geoms = np.full(n, None, dtype=object)
        for i, g in self.geoms.items():
            if kind[i] == KIND_POLYGON:
                geoms[i] = g
        given = np.array(sorted(i for i, g in self.geoms.items() if kind[i] == KIND_POINT), dtype=np.int64)
        if given.size:  # points parsed by parse_site (e.g. DMS text, WKT) are already transformed
            lon[given] = [self.geoms[i].x for i in given]
            lat[given] = [self.geoms[i].y for i in given]
        todo = np.flatnonzero(kind == KIND_POINT)
        todo = np.setdiff1d(todo, given, assume_unique=True)
        if todo.size:
            x = np.asarray(self.x, dtype=np.float64)[todo]
            y = np.asarray(self.y, dtype=np.float64)[todo]
            plon, plat, bad = points_to_storage(x, y, self.spec, self.axis_order)
            lon[todo], lat[todo] = plon, plat
            for j, message in bad.items():
                self.fail(int(todo[j]), message)
                kind[todo[j]] = KIND_ERROR
        errors: list[str | None] = [None] * n
        for i, message in self.errors.items():
            errors[i] = message
            kind[i] = KIND_ERROR
            geoms[i] = None
        project_idx = np.array(self.project_idx, dtype=np.int32)
        project_idx[kind == KIND_ERROR] = -1
        return SiteBatch(ids=self.ids, kind=kind, lon=lon, lat=lat, geoms=geoms, project_idx=project_idx,
                         projects=self.projects.items, errors=errors, input_crs=self.spec.name, warnings=self.warnings)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_WKT_POINT = re.compile(rf"^\s*POINT\s*\(\s*({_NUM})\s+({_NUM})\s*\)\s*$", re.I)


def _plain_point(value: Any) -> tuple[float, float] | None:
    """(x, y) for a site that is plainly one point (WKT POINT, GeoJSON Point, [x, y]); None for anything else."""
    if isinstance(value, str):
        m = _WKT_POINT.match(value) if len(value) < 200 else None
        return (float(m[1]), float(m[2])) if m else None
    if isinstance(value, dict):
        if value.get("type") == "Feature" and isinstance(value.get("geometry"), dict) and set(value) <= {
                "type", "geometry", "properties", "id"}:
            value = value["geometry"]
        if set(value) == {"type", "coordinates"} and value.get("type") == "Point":
            return _pair(value["coordinates"])
        return None
    if isinstance(value, (list, tuple)):
        return _pair(value)
    return None


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return float(value[0]), float(value[1])
    return None


def points_to_storage(x: np.ndarray, y: np.ndarray, crs: str | CRSSpec, axis_order: str = "xy"
                      ) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Validate and transform caller points to EPSG:4490 as arrays; bad points get a message each, by position.

    A cheap vectorised pre-check sets aside the points `to_storage` would refuse; the rest go through one call
    (a point the pre-check missed is set aside when that call names it). Each refused point is then explained by
    `to_storage` on its own, so the message is exactly the single-site one. Transformed points are also checked
    to project into EPSG:4548, as `assess()` would.
    """
    spec = parse_crs(crs)
    n = x.size
    lon = np.full(n, np.nan)
    lat = np.full(n, np.nan)
    bad = ~_plausible(x, y, spec, axis_order)
    good = np.flatnonzero(~bad)
    while good.size:
        try:
            glon, glat = to_storage(x[good], y[good], spec, axis_order=axis_order)
            to_metric(glon, glat)
        except InvalidCoordinates as exc:
            j = exc.context.get("vertex_index")
            if not isinstance(j, int) or not 0 <= j < good.size:
                raise
            bad[good[j]] = True
            good = np.delete(good, j)
            continue
        lon[good], lat[good] = glon, glat
        break
    messages: dict[int, str] = {}
    for j in np.flatnonzero(bad):
        try:
            one_lon, one_lat = to_storage(x[j:j + 1], y[j:j + 1], spec, axis_order=axis_order)
            to_metric(one_lon, one_lat)
            messages[int(j)] = "坐标无效"  # refused together with others but fine alone: cannot happen in practice
        except ZoningError as exc:
            messages[int(j)] = exc.message_zh
    return lon, lat, messages


def _plausible(x: np.ndarray, y: np.ndarray, spec: CRSSpec, axis_order: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(y)
        if spec.is_projected:
            e, n = (y, x) if axis_order == "survey" else (x, y)
            low = GK_ZONE * ZONE_FACTOR if spec.epsg == 4527 else 0.0
            return ok & (e >= low) & (e <= low + MAX_EASTING) & (n >= 0.0) & (n <= MAX_NORTHING)
        return ok & (x >= CHINA_LON[0]) & (x <= CHINA_LON[1]) & (y >= CHINA_LAT[0]) & (y <= CHINA_LAT[1])


# ---------------------------------------------------------------------------------------------------------------
# Readers: JSON records, CSV text, uploaded layers

_ID_NAMES = ("id", "site_id", "编号")
_X_NAMES = ("lon", "lng", "longitude", "x", "经度", "easting")
_Y_NAMES = ("lat", "latitude", "y", "纬度", "northing")
_WKT_NAMES = ("wkt", "geometry", "geom", "site")
_TRUE = {"是", "真", "对"}
_FALSE = {"否", "假"}
_SITE_KEYS = {"id", "site", "lon", "lat", "project"}


def _bool_text(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return value


def sites_from_json(doc: Any, *, crs: str | None = None, axis_order: str | None = None,
                    max_vertices: int = DEFAULT_MAX_VERTICES, max_sites: int = MAX_SITES) -> SiteBatch:
    """`{"sites": [{"id", "site" | "lon"/"lat", "project"}], "crs", "axis_order", "project"}` → a batch.

    The request's shape (a `sites` list, known top-level keys, CRS) is checked first and fails the request; each
    site's own problems (bad coordinates or geometry, unknown keys, bad project values) are reported on its row.
    """
    if isinstance(doc, list):
        doc = {"sites": doc}
    if not isinstance(doc, dict):
        raise InvalidInput("请求体应为 JSON 对象：{\"sites\": [...], \"crs\": ...}", detail="batch body not an object")
    unknown = sorted(set(doc) - {"sites", "crs", "axis_order", "project"})
    if unknown:
        raise InvalidInput(f"请求体中有不认识的字段：{', '.join(map(str, unknown[:10]))}（可用：sites、crs、axis_order、project）",
                           detail=f"unknown keys {unknown[:10]}", fields=[str(u) for u in unknown[:10]])
    sites = doc.get("sites")
    if not isinstance(sites, list):
        raise InvalidInput("缺少 sites 数组：请求体应为 {\"sites\": [{\"id\": …, \"site\": … 或 \"lon\"/\"lat\": …, "
                           "\"project\": {…}}]}", detail="no sites list", field="sites")
    if not sites:
        raise InvalidInput("sites 数组为空，没有需要筛查的场址", detail="empty sites", field="sites")
    crs = _same_param("crs", crs, doc.get("crs"), STORAGE_CRS)
    axis_order = _same_param("axis_order", axis_order, doc.get("axis_order"), "xy")
    collector = SiteCollector(crs, axis_order=axis_order, max_vertices=max_vertices, max_sites=max_sites)
    if len(sites) > max_sites:
        raise InputTooLarge(f"场址过多：一次最多 {max_sites:,} 个（收到 {len(sites):,} 个），请拆分后分批提交。",
                            detail=f"{len(sites)} sites > {max_sites}", limit=max_sites, count=len(sites))
    default = doc.get("project")
    if default is not None and not isinstance(default, dict):
        raise InvalidInput("project 应为 JSON 对象（项目信息）", detail="default project not an object", field="project")
    default_idx = collector.projects.add_raw(default or {})
    if isinstance(default_idx, str):
        raise InvalidInput(f"默认项目信息有误：{default_idx}", detail="bad default project", field="project")
    for i, entry in enumerate(sites):
        if not isinstance(entry, dict):
            collector.add_error(None, "应为 JSON 对象 {\"id\", \"site\" 或 \"lon\"/\"lat\", \"project\"}")
            continue
        site_id = entry.get("id")
        if site_id is not None and not isinstance(site_id, (str, int)) or isinstance(site_id, bool):
            collector.add_error(None, "id 应为文本或整数")
            continue
        extra = sorted(set(entry) - _SITE_KEYS)
        if extra:
            collector.add_error(site_id, f"不认识的字段 {', '.join(map(str, extra[:5]))}（可用：id、site、lon、lat、project）")
            continue
        project = entry.get("project")
        if project is None:
            pidx: int | str = default_idx
        elif isinstance(project, dict):
            pidx = collector.projects.add_raw(project)
        else:
            pidx = "project 应为 JSON 对象"
        has_site = entry.get("site") is not None
        has_xy = "lon" in entry or "lat" in entry
        if has_site and has_xy:
            collector.add_error(site_id, "site 与 lon/lat 只能给一种")
        elif has_site:
            collector.add_site(site_id, entry["site"], pidx)
        elif has_xy:
            xy = _pair([entry.get("lon"), entry.get("lat")])
            if xy is None:
                collector.add_error(site_id, "lon 与 lat 应同时给出，且均为数字")
            else:
                collector.add_point(site_id, xy[0], xy[1], pidx)
        else:
            collector.add_error(site_id, "缺少场址：请给出 site（GeoJSON、WKT 或坐标）或 lon/lat")
    return collector.finish()


def _same_param(name: str, query: str | None, body: Any, default: str) -> str:
    if body is not None and not isinstance(body, str):
        raise InvalidInput(f"{name} 应为文本", detail=f"{name} not a string", field=name)
    if query is not None and body is not None and query != body:
        raise InvalidInput(f"{name} 在查询参数（{query[:40]}）与请求体（{body[:40]}）中不一致，请只给一处",
                           detail=f"{name} conflict", field=name)
    return body or query or default


def decode_text(data: bytes, what: str = "CSV 文件") -> str:
    """UTF-8 (with or without BOM), else GB18030/GBK as Chinese spreadsheet tools write it; never guessed further."""
    for codec in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    raise InvalidInput(f"{what}的编码无法识别：请保存为 UTF-8 或 GBK 编码", detail="undecodable text")


def _norm(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().lower()


def _columns(header: Sequence[str], *, source: str) -> dict[str, Any]:
    """Roles of the columns of a CSV header or an attribute table: id, x, y, wkt, project fields."""
    names = [_norm(h) for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen and name:
            raise InvalidInput(f"{source}的列名“{header[i][:40]}”重复（第 {seen[name] + 1} 列与第 {i + 1} 列）",
                               detail=f"duplicate column {name!r}", column=header[i][:40])
        seen[name] = i

    def find(aliases: Sequence[str]) -> int | None:
        hits = [i for i, n in enumerate(names) if n in aliases]
        if len(hits) > 1:
            raise InvalidInput(f"{source}中有多个列表示同一内容：{'、'.join(header[i] for i in hits)}，请只保留一个",
                               detail=f"several columns for {aliases[0]}", columns=[header[i] for i in hits])
        return hits[0] if hits else None

    roles = {"id": find(_ID_NAMES), "x": find(_X_NAMES), "y": find(_Y_NAMES), "wkt": find(_WKT_NAMES)}
    fields = {f.lower(): f for f in PROJECT_FIELDS}
    short: dict[str, list[str]] = {}  # Shapefile (DBF) field names keep 10 characters
    for f in PROJECT_FIELDS:
        if len(f) > 10:
            short.setdefault(f[:10].lower(), []).append(f)
    for i, n in enumerate(names):
        if n not in fields and len(short.get(n, ())) > 1:
            raise InvalidInput(
                f"{source}的列“{header[i]}”可能是 {' 或 '.join(short[n])}（Shapefile 字段名被截断为 10 个字符，无法区分）。"
                "请改用 GeoPackage 或 CSV 提交，或把该列改为不会混淆的完整字段名",
                detail=f"ambiguous truncated column {n!r}", column=str(header[i]), candidates=short[n])
    roles["project"] = {i: fields.get(n) or short[n][0] for i, n in enumerate(names)
                        if n in fields or len(short.get(n, ())) == 1}
    used = {v for k, v in roles.items() if k != "project" and v is not None} | set(roles["project"])
    unknown = [header[i] for i in range(len(names)) if i not in used and names[i] not in ("", "fid")]
    roles["ignored"] = unknown
    return roles


def _refuse_unknown(roles: dict[str, Any], extra_columns: str, source: str) -> None:
    unknown = roles["ignored"]
    if unknown and extra_columns != "ignore":
        raise InvalidInput(
            f"{source}中有不认识的列：{'、'.join(str(u)[:40] for u in unknown[:10])}。项目信息列应使用字段名"
            f"（{', '.join(PROJECT_FIELDS)}）；确实无关的列可删除，或加参数 extra_columns=ignore 忽略它们",
            detail=f"unknown columns {unknown[:10]}", columns=[str(u)[:40] for u in unknown[:10]],
            accepted=list(PROJECT_FIELDS))


def sites_from_csv(data: bytes | str, *, crs: str | None = None, axis_order: str | None = None,
                   extra_columns: str = "refuse", max_vertices: int = DEFAULT_MAX_VERTICES,
                   max_sites: int = MAX_SITES) -> SiteBatch:
    """A CSV of sites: lon/lat (or x/y) columns or a WKT column, an optional id column, and project columns named
    like the Project fields. Problems of the header fail the request; problems of a row are reported on that row."""
    text = decode_text(data) if isinstance(data, (bytes, bytearray)) else data
    first = text.split("\n", 1)[0]
    if "，" in first and "," not in first:
        raise InvalidInput("CSV 表头使用了中文逗号“，”作分隔符，请改为英文逗号", detail="fullwidth comma separator")
    delimiter = max((",", "\t", ";"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput("CSV 文件是空的", detail="empty csv") from None
    except csv.Error as exc:
        raise InvalidInput(f"CSV 表头无法解析：{exc}", detail=f"csv header: {exc}") from None
    if not any(h.strip() for h in header):
        raise InvalidInput("CSV 第 1 行应为表头（列名），如 id,lon,lat 或 id,wkt", detail="blank csv header")
    roles = _columns(header, source="CSV ")
    has_xy = roles["x"] is not None or roles["y"] is not None
    if roles["wkt"] is not None and has_xy:
        raise InvalidInput("CSV 中同时有坐标列（lon/lat）和几何列（wkt），请只保留一种", detail="both xy and wkt columns")
    if roles["wkt"] is None and (roles["x"] is None or roles["y"] is None):
        raise InvalidInput(
            f"CSV 缺少场址列：应有经纬度列 lon 与 lat（或 x/y、经度/纬度），或一个 WKT 几何列 wkt。收到的列：{'、'.join(h[:40] for h in header[:20])}",
            detail=f"no coordinate columns in {header[:20]}", columns=[h[:40] for h in header[:20]])
    _refuse_unknown(roles, extra_columns, "CSV ")
    crs = crs or STORAGE_CRS
    lines: list[int] = []
    collector = SiteCollector(crs, axis_order=axis_order or "xy", max_vertices=max_vertices, max_sites=max_sites,
                              row_label=lambda i: f"第 {i + 1} 条记录（文件第 {lines[i]} 行）")
    width = len(header)
    name_col = next((i for i, f in roles["project"].items() if f == "name"), None)
    project_cols = sorted((i, f) for i, f in roles["project"].items() if f != "name")
    idc, xc, yc, wc = roles["id"], roles["x"], roles["y"], roles["wkt"]
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            lines.append(reader.line_num)
            site_id = row[idc] if idc is not None and idc < len(row) else None
            if len(row) != width:
                collector.add_error(site_id, f"有 {len(row)} 个字段，与表头的 {width} 列不一致")
                continue
            raw = tuple(row[i].strip() for i, _ in project_cols)
            pidx = collector.projects.cached(raw)
            if pidx is None:
                pidx = collector.projects.add_raw(
                    {name: _bool_text(v) for (_, name), v in zip(project_cols, raw) if v != ""}, cache_key=raw)
            if name_col is not None and len(row[name_col]) > 200:
                pidx = f"项目名称过长（{len(row[name_col])} 个字符，上限 200）"
            if wc is not None:
                value = row[wc].strip()
                if not value:
                    collector.add_error(site_id, f"几何列“{header[wc]}”为空")
                else:
                    collector.add_site(site_id, value, pidx)
                continue
            xs, ys = row[xc].strip(), row[yc].strip()
            x, y = _number(xs), _number(ys)
            if x is None or y is None:
                bad_col, bad_val = (header[xc], xs) if x is None else (header[yc], ys)
                collector.add_error(site_id, f"列“{bad_col[:40]}”的值“{bad_val[:40]}”不是数字" if bad_val
                                    else f"列“{bad_col[:40]}”为空")
                continue
            collector.add_point(site_id, x, y, pidx)
    except csv.Error as exc:
        raise InvalidInput(f"CSV 第 {reader.line_num} 行无法解析（{exc}）。单个字段最长约 128 KB，引号须成对",
                           detail=f"csv error at line {reader.line_num}: {exc}", line=reader.line_num) from None
    if not len(collector):
        raise InvalidInput("CSV 只有表头，没有场址记录", detail="csv without rows")
    batch = collector.finish()
    if roles["ignored"]:
        batch.warnings.append(f"已忽略的列：{'、'.join(roles['ignored'][:10])}")
    return batch


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def sites_from_frame(frame: Any, *, extra_columns: str = "refuse", max_vertices: int = DEFAULT_MAX_VERTICES,
                     max_sites: int = MAX_SITES, source: str = "文件") -> SiteBatch:
    """An uploaded layer (GeoDataFrame in EPSG:4490, e.g. from `read_upload`): one site per feature, project facts
    from the attribute columns named like the Project fields."""
    if len(frame) > max_sites:
        raise InputTooLarge(f"场址过多：一次最多 {max_sites:,} 个（收到 {len(frame):,} 个），请拆分后分批提交。",
                            detail=f"{len(frame)} features > {max_sites}", limit=max_sites, count=len(frame))
    if len(frame) == 0:
        raise InvalidInput(f"{source}中没有要素", detail="no features")
    columns = [c for c in frame.columns if c != frame.geometry.name]
    roles = _columns([str(c) for c in columns], source=f"{source}的属性表")
    _refuse_unknown(roles, extra_columns, f"{source}的属性表")
    for role in ("x", "y", "wkt"):
        if roles[role] is not None:
            roles["ignored"].append(str(columns[roles[role]]))
    collector = SiteCollector(STORAGE_CRS, max_vertices=max_vertices, max_sites=max_sites,
                              row_label=lambda i: f"第 {i + 1} 个要素")
    project_cols = sorted(roles["project"].items())
    values = {name: frame[columns[i]].tolist() for i, name in project_cols}
    ids = frame[columns[roles["id"]]].tolist() if roles["id"] is not None else [None] * len(frame)
    geoms = np.asarray(frame.geometry.values, dtype=object)
    for k in range(len(frame)):
        raw = {}
        for _, name in project_cols:
            v = _plain_value(values[name][k])
            if v is not None and v != "":
                raw[name] = _bool_text(v)
        name = raw.pop("name", None)
        pidx = collector.projects.add_raw(raw, cache_key=tuple(sorted((n, repr(v)) for n, v in raw.items())))
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            pidx = "项目名称应为不超过 200 个字符的文本"
        site_id = _plain_value(ids[k])
        if isinstance(site_id, float) and site_id.is_integer():
            site_id = int(site_id)
        collector.add_geometry(site_id, geoms[k], pidx)
    batch = collector.finish()
    if roles["ignored"]:
        batch.warnings.append(f"已忽略的列：{'、'.join(map(str, roles['ignored'][:10]))}")
    return batch


def _plain_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    try:
        import pandas as pd  # noqa: PLC0415 - only for its missing-value markers
        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return value


def _sniff(data: bytes) -> str:
    head = data[:64].lstrip(b"\xef\xbb\xbf").lstrip()
    if data.startswith(b"SQLite format 3\x00") or data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "file"
    if head.startswith((b"{", b"[")):
        return "json"
    if head.startswith(b"<"):
        return "file"  # KML
    return "csv"


def read_sites(data: bytes, *, kind: str, filename: str = "", crs: str | None = None,
                axis_order: str | None = None, extra_columns: str = "refuse", max_sites: int,
                max_vertices: int) -> SiteBatch:
    """Bytes of a batch (JSON, CSV or a GIS file) → a SiteBatch. Raises ZoningError for problems of the request."""
    if not data or not data.strip():
        raise InvalidInput("请求体为空：请提交场址（JSON、CSV，或以 file 字段上传 GeoPackage / Shapefile 压缩包）",
                           detail="empty batch body")
    if kind == "auto":
        kind = _sniff(data)
    try:
        if kind == "json":
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise InvalidInput("请求体不是合法的 JSON（注意 NaN、Infinity 不是合法的 JSON 数值）",
                                   detail="invalid batch JSON") from None
            if isinstance(doc, dict) and doc.get("type") in ("FeatureCollection", "Feature"):
                kind = "file"  # a GeoJSON file of sites: read like the other GIS files
            else:
                return sites_from_json(doc, crs=crs, axis_order=axis_order, max_vertices=max_vertices,
                                              max_sites=max_sites)
        if kind == "csv":
            return sites_from_csv(data, crs=crs, axis_order=axis_order, extra_columns=extra_columns,
                                         max_vertices=max_vertices, max_sites=max_sites)
        if axis_order == "survey":
            raise InvalidInput("axis_order=survey 只适用于 JSON / CSV 中的坐标；GIS 文件的坐标系由文件自身说明",
                               detail="axis_order with a GIS file", field="axis_order")
        limits = UploadLimits(max_bytes=max(len(data), 1), max_features=max_sites,
                              max_vertices=MAX_TOTAL_VERTICES)
        upload = read_upload(data, filename or "sites", crs=crs, limits=limits)
        if len(upload.layers) != 1:
            names = "、".join(layer.name for layer in upload.layers[:10])
            raise InvalidInput(f"文件中有 {len(upload.layers)} 个图层（{names}），批量筛查一次只读一个图层，请只保留场址图层",
                               detail="several layers", layers=[layer.name for layer in upload.layers[:10]])
        batch = sites_from_frame(upload.layers[0].frame, extra_columns=extra_columns,
                                        max_vertices=max_vertices, max_sites=max_sites, source="文件")
        batch.warnings.extend(upload.warnings)
        return batch
    except ZoningError:
        raise
    except Exception:  # noqa: BLE001 - bad input must never become a 500
        log.exception("batch input could not be read")
        raise InvalidInput("无法读取提交的场址数据，请检查文件格式与内容", detail="unexpected error reading batch") from None



# ---------------------------------------------------------------------------------------------------------------
# Per-catalog preparation: the signature layout, clause bindings, and the point grid (built lazily)


@dataclass
class _LayerPreds:
    """One bound layer: which of its rows satisfy each binding filter, and the signature bit of each filter."""

    name: str
    index: LayerIndex
    match: np.ndarray  # bool (rows, k)
    bits: np.ndarray  # int (k,)
    near: Any = None  # STRtree of the pieces' envelopes grown by the boundary tolerance


def _near_tree(index: LayerIndex) -> Any:
    """Candidates for the tolerance test: an STRtree of piece envelopes grown by the tolerance. With it, the test
    itself runs as `shapely.dwithin` on the prepared pieces (2–3× faster than the tree's own dwithin predicate,
    with the same answers)."""
    b = shapely.bounds(index.pieces).reshape(-1, 4)
    t = BOUNDARY_TOLERANCE_M
    return shapely.STRtree(shapely.box(b[:, 0] - t, b[:, 1] - t, b[:, 2] + t, b[:, 3] + t))


class _Prepared:
    """What every batch against one catalog shares: the signature layout, bindings and the point grid."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = weakref.ref(catalog)
        self.rules = catalog.rules
        units = catalog.units
        self.unit_codes = [r["HJZHGKDYBM"] for r in units.records]
        self.unit_types = [catalog.unit_type(i) for i in range(len(units.records))]
        self.n_units = len(self.unit_codes)
        self.units = _LayerPreds("control_units", units.index, np.eye(self.n_units, dtype=bool),
                                 np.arange(1, 1 + self.n_units), _near_tree(units.index))
        bit = 1 + self.n_units  # bit 0: inside the territory; bits 1..U: unit rows
        preds: dict[tuple[str, tuple], int] = {}
        lc_preds: dict[tuple[tuple[str, ...], float], int] = {}
        wanted = [("red_line", ())]  # always: red-line occupancy is reported for every site
        for clause in self.rules.clauses:
            b = clause.binding
            if clause.unit is None and b is not None and b.layer:
                wanted.append((b.layer, tuple(sorted((k, tuple(v)) for k, v in b.where.items()))))
        self.layers: list[_LayerPreds] = []
        by_layer: dict[str, list[tuple]] = {}
        for layer, where in wanted:
            if layer in catalog.layers and where not in by_layer.setdefault(layer, []):
                by_layer[layer].append(where)
        for layer, wheres in by_layer.items():
            lyr = catalog.layers[layer]
            match = np.zeros((len(lyr.records), len(wheres)), dtype=bool)
            bits = np.zeros(len(wheres), dtype=np.int64)
            for k, where in enumerate(wheres):
                for row, rec in enumerate(lyr.records):
                    match[row, k] = all(str(rec.get(f)) in {str(v) for v in vals} for f, vals in where)
                preds[(layer, where)] = bits[k] = bit
                bit += 1
            self.layers.append(_LayerPreds(layer, lyr.index, match, bits, _near_tree(lyr.index)))
        for clause in self.rules.clauses:
            b = clause.binding
            if clause.unit is None and b is not None and not b.layer and b.land_cover:
                key = (tuple(b.land_cover), float(b.min_share))
                if key not in lc_preds:
                    lc_preds[key] = bit
                    bit += 1
        self.lc_preds = lc_preds
        self.n_bits = bit
        self.red_bit = preds[("red_line", ())] if ("red_line", ()) in preds else None
        # How each clause binds, in terms of signature bits: ("all",), ("bit", b), ("units", mask), ("never",)
        self.bindings: list[tuple] = []
        for clause in self.rules.clauses:
            b = clause.binding
            if clause.unit:
                row = catalog.unit_row.get(clause.unit)
                self.bindings.append(("bit", 1 + row) if row is not None else ("never",))
            elif b is None:
                self.bindings.append(("all",))
            elif b.layer:
                key = (b.layer, tuple(sorted((k, tuple(v)) for k, v in b.where.items())))
                self.bindings.append(("bit", preds[key]) if key in preds else ("never",))
            elif b.land_cover:
                self.bindings.append(("bit", lc_preds[(tuple(b.land_cover), float(b.min_share))]))
            elif b.unit_type or b.units:
                mask = np.array([(b.unit_type is not None and self.unit_types[r] == b.unit_type)
                                 or self.unit_codes[r] in b.units for r in range(self.n_units)], dtype=bool)
                self.bindings.append(("units", mask))
            else:
                self.bindings.append(("never",))
        self._grid: _PointGrid | None = None
        self._grid_lock = threading.Lock()
        self._features: dict[str, np.ndarray] = {}
        self._outcomes: dict[bytes, tuple] = {}
        self._facts: dict[bytes, tuple[dict[str, Any], int]] = {}
        self._evals: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()

    def features(self, catalog: Catalog, layer: str) -> np.ndarray:
        """Prepared copies of a layer's whole features (metric), for the inside-a-feature test of polygon sites."""
        with self._grid_lock:
            hit = self._features.get(layer)
            if hit is None:
                hit = shapely.from_wkb(shapely.to_wkb(catalog.layers[layer].metric))  # copies: the catalog's stay as they are
                shapely.prepare(hit)
                self._features[layer] = hit
            return hit

    def grid(self, catalog: Catalog) -> "_PointGrid":
        with self._grid_lock:
            if self._grid is None:
                self._grid = _PointGrid(self, catalog)
            return self._grid

    @property
    def has_grid(self) -> bool:
        return self._grid is not None

    # -- clause outcomes per signature ----------------------------------------------------------------------------

    def facts_id(self, project: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """A small id for the facts that can decide clauses (the project name cannot), and the resolved facts."""
        relevant = {k: v for k, v in project.items() if k in self.rules.facts and v is not None}
        key = orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS)
        with self._lock:
            hit = self._facts.get(key)
            if hit is None:
                hit = self._facts[key] = (resolve_facts(relevant, self.rules.facts), len(self._facts))
        return hit[1], hit[0]

    def outcome(self, bits: np.ndarray, facts_id: int, facts: Mapping[str, Any]) -> tuple:
        """(verdict, applied ids, undecided ids, missing facts) for one signature and one set of facts."""
        key = np.packbits(bits).tobytes() + facts_id.to_bytes(4, "little")
        hit = self._outcomes.get(key)
        if hit is not None:
            return hit
        if not bits[0]:
            result = ("outside_jurisdiction", (), (), ())
        else:
            applied, undecided = [], []
            unit_bits = bits[1:1 + self.n_units]
            for k, (clause, how) in enumerate(zip(self.rules.clauses, self.bindings)):
                kind = how[0]
                if kind == "never" or (kind == "bit" and not bits[how[1]]) or (
                        kind == "units" and not bool((unit_bits & how[1]).any())):
                    continue
                ev = self._evals.get((k, facts_id))
                if ev is None:
                    if len(self._evals) > 2_000_000:
                        self._evals.clear()
                    ev = self._evals[(k, facts_id)] = evaluate(clause.condition, facts)
                if ev.value is False:
                    continue
                if ev.value is None:
                    undecided.append({"id": clause.id, "effect": clause.effect, "missing_facts": sorted(ev.missing)})
                else:
                    applied.append({"id": clause.id, "effect": clause.effect})
            verdict, missing = decide_verdict(applied, undecided)
            result = (verdict, tuple(c["id"] for c in applied), tuple(u["id"] for u in undecided),
                      tuple(sorted(missing)))
        with self._lock:
            if len(self._outcomes) > 500_000:
                self._outcomes.clear()
            self._outcomes[key] = result
        return result


_PREPARED: dict[int, _Prepared] = {}
_PREPARED_LOCK = threading.Lock()


def prepared(catalog: Catalog) -> _Prepared:
    """The preparation of a catalog, built once and kept while the catalog lives (a few versions at most)."""
    with _PREPARED_LOCK:
        hit = _PREPARED.get(id(catalog))
        if hit is not None and hit.catalog() is catalog:
            return hit
        for key in [k for k, v in _PREPARED.items() if v.catalog() is None]:
            del _PREPARED[key]
        prep = _PREPARED[id(catalog)] = _Prepared(catalog)
        return prep


class _Grid:
    """A regular grid over the territory's bounding box; cells that meet the territory are *active*."""

    def __init__(self, territory: Any, cell: float, like: "_Grid | None" = None) -> None:
        if like is not None and like.cell == cell:  # the same cells as another grid: share their geometry
            for name in ("cell", "x0", "y0", "nx", "ny", "active_of", "size", "bx", "by", "cx", "cy"):
                setattr(self, name, getattr(like, name))
            return
        minx, miny, maxx, maxy = territory.bounds
        self.cell = cell
        self.x0, self.y0 = math.floor(minx) - cell, math.floor(miny) - cell
        self.nx = int(math.ceil((maxx - self.x0) / cell)) + 2
        self.ny = int(math.ceil((maxy - self.y0) / cell)) + 2
        ids = np.arange(self.nx * self.ny)
        bx = self.x0 + (ids % self.nx) * cell
        by = self.y0 + (ids // self.nx) * cell
        # Active: the centre is in the territory, or a boundary segment's box (grown by a metre) meets the cell —
        # every cell that meets the territory, and a few next to it (harmless: their points are tested exactly).
        active = shapely.intersects_xy(territory, bx + cell / 2, by + cell / 2)
        _, sax, say, sbx, sby = _chunk_segments(np.asarray(boundary_chunks(territory), dtype=object))
        active[self._bin(sax, say, sbx, sby, 1.0)[0]] = True
        act = np.flatnonzero(active)
        self.active_of = np.full(self.nx * self.ny, -1, dtype=np.int64)
        self.active_of[act] = np.arange(act.size)
        self.size = act.size
        self.bx, self.by = bx[act], by[act]  # lower-left corners of the active cells
        self.cx, self.cy = self.bx + cell / 2, self.by + cell / 2

    def _bin(self, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, margin: float
             ) -> tuple[np.ndarray, np.ndarray]:
        """(grid cell id, segment) for every cell whose box grown by `margin` meets a segment's bounding box."""
        c = self.cell
        ix0 = np.clip(np.floor((np.minimum(ax, bx) - margin - self.x0) / c), 0, self.nx - 1).astype(np.int64)
        ix1 = np.clip(np.floor((np.maximum(ax, bx) + margin - self.x0) / c), -1, self.nx - 1).astype(np.int64)
        iy0 = np.clip(np.floor((np.minimum(ay, by) - margin - self.y0) / c), 0, self.ny - 1).astype(np.int64)
        iy1 = np.clip(np.floor((np.maximum(ay, by) + margin - self.y0) / c), -1, self.ny - 1).astype(np.int64)
        w = np.maximum(ix1 - ix0 + 1, 0)
        k = w * np.maximum(iy1 - iy0 + 1, 0)
        seg = np.repeat(np.arange(ax.size), k)
        j = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
        w = np.maximum(w[seg], 1)
        return (iy0[seg] + j // w) * self.nx + ix0[seg] + j % w, seg

    def cells(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Active-cell index of each point, -1 outside every cell that meets the territory."""
        ix = np.floor((x - self.x0) / self.cell)
        iy = np.floor((y - self.y0) / self.cell)
        ok = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)
        out = np.full(x.size, -1, dtype=np.int64)
        out[ok] = self.active_of[iy[ok].astype(np.int64) * self.nx + ix[ok].astype(np.int64)]
        return out


class _PointGrid(_Grid):
    """A quadtree over the territory for large point batches: 100 m root cells, split where a boundary is near.

    Per cell and per *slot* (territory, units, each bound layer) the cell is *clean* when no boundary of that
    layer comes within the boundary tolerance plus 1 m of it (no boundary segment meets the cell box grown by that
    margin; the metre of slack covers any rounding of the segment–box test): every point in it then has the slot's
    signature bits of the cell centre (the point-in-piece test there gives the tolerance test's answer). A cell
    dirty for some slot is cut into four, down to `GRID_MIN_CELL_M`, its children testing only the segments that met
    it; a cell outside the territory (clean for it) needs nothing else. Each leaf keeps a signature id (its bits,
    shared by every leaf with the same bits) and a dirty-slot mask id; points in a leaf with dirty slots take the
    exact piece test of those slots only. The red-line distance has its own index (`_RunIndex`).
    """

    def __init__(self, prep: _Prepared, catalog: Catalog, cell: float = GRID_CELL_M,
                 min_cell: float = GRID_MIN_CELL_M) -> None:
        territory = catalog.territory
        super().__init__(territory, cell)
        slots = [None, prep.units, *prep.layers]  # slot 0: the territory
        slot_chunks = [np.asarray(boundary_chunks(territory), dtype=object)] + [lp.index.chunks for lp in slots[1:]]
        chunk_slot = np.concatenate([np.full(len(c), s, dtype=np.int64) for s, c in enumerate(slot_chunks)])
        chunks = np.concatenate([np.asarray(c, dtype=object) for c in slot_chunks])
        n_slots, n_bits = len(slots), prep.n_bits
        self.n_slots = n_slots
        m = BOUNDARY_TOLERANCE_M + 1.0
        # Level 0: the active root cells and the boundary segments whose boxes meet them (grown by the margin);
        # each level keeps the pairs whose segment meets the cell (`_segments_meet_boxes`), children inherit them.
        x0, y0, size = self.bx, self.by, cell
        seg_ptr, sax, say, sbx, sby = _chunk_segments(chunks)
        pc, ps = self._bin(sax, say, sbx, sby, m)
        pc = self.active_of[pc]
        ps = ps[pc >= 0]
        pc = pc[pc >= 0]
        pslot = np.repeat(chunk_slot, np.diff(seg_ptr))[ps]
        # Per (cell, segment) pair: the segment and the cell's corner, carried down to the children as they are.
        pax, pay, pbx, pby, px0, py0 = sax[ps], say[ps], sbx[ps], sby[ps], x0[pc], y0[pc]
        bits = np.zeros((x0.size, n_bits), dtype=bool)
        parent_dirty = np.ones((x0.size, n_slots), dtype=bool)  # every slot's centre answer is computed at the root
        mx_parts, my_parts, child_parts, leaf_nodes, leaf_bits, leaf_dirty = [], [], [], [], [], []
        offset = 0
        while True:
            n = x0.size
            hit = _segments_meet_boxes(pax, pay, pbx, pby, px0 - m, py0 - m, px0 + (size + m), py0 + (size + m))
            pc, ps, pslot, pax, pay, pbx, pby, px0, py0 = (a[hit] for a in (pc, ps, pslot, pax, pay, pbx, pby, px0,
                                                                             py0))
            dirty = np.zeros((n, n_slots), dtype=bool)
            dirty[pc, pslot] = True
            cx, cy = x0 + size / 2, y0 + size / 2
            # Centre answers for the slots clean here but dirty in the parent cell (every slot at the root).
            todo = np.flatnonzero(~dirty[:, 0] & parent_dirty[:, 0])
            bits[todo, 0] = shapely.intersects_xy(territory, cx[todo], cy[todo])
            outside = ~dirty[:, 0] & ~bits[:, 0]  # wholly outside the territory: nothing else matters
            bits[outside] = False
            dirty[outside] = False
            need = ~dirty & parent_dirty & ~outside[:, None]
            need[:, 0] = False
            rows = np.flatnonzero(need.any(axis=1))
            if rows.size:
                centres = shapely.points(cx[rows], cy[rows])  # made once per level, shared by the slots
                for s in range(1, n_slots):
                    at = np.flatnonzero(need[rows, s])
                    if at.size:
                        _centre_bits(slots[s], centres[at], cx[rows[at]], cy[rows[at]], rows[at], bits)
            split = dirty.any(axis=1) & (size / 2 >= min_cell - 1e-9)
            child_first = np.full(n, -1, dtype=np.int32)
            child_first[split] = offset + n + 4 * np.arange(int(split.sum()))
            mx_parts.append(cx)
            my_parts.append(cy)
            child_parts.append(child_first)
            leaves = np.flatnonzero(~split)
            leaf_nodes.append(offset + leaves)
            leaf_bits.append(bits[leaves])
            leaf_dirty.append(dirty[leaves])
            offset += n
            parents = np.flatnonzero(split)
            if parents.size == 0:
                break
            # Children: quadrant q = qx + 2 qy; a child can only meet the segments its parent met.
            half = size / 2
            x0 = (x0[parents][:, None] + np.array([0, 1, 0, 1]) * half).ravel()
            y0 = (y0[parents][:, None] + np.array([0, 0, 1, 1]) * half).ravel()
            index_of = np.full(n, -1, dtype=np.int64)
            index_of[parents] = np.arange(parents.size)
            keep = np.flatnonzero(index_of[pc] >= 0)
            pc = (index_of[pc[keep]][:, None] * 4 + np.arange(4)).ravel()
            ps, pslot, pax, pay, pbx, pby = (np.repeat(a[keep], 4) for a in (ps, pslot, pax, pay, pbx, pby))
            px0 = (px0[keep][:, None] + np.array([0, 1, 0, 1]) * half).ravel()
            py0 = (py0[keep][:, None] + np.array([0, 0, 1, 1]) * half).ravel()
            bits = np.repeat(bits[parents], 4, axis=0)
            parent_dirty = np.repeat(dirty[parents], 4, axis=0)
            size = half
        self.level_start = np.cumsum([0] + [a.size for a in mx_parts])  # nodes of level l: [start[l], start[l + 1])
        self.node_mx = np.concatenate(mx_parts)
        self.node_my = np.concatenate(my_parts)
        self.child = np.concatenate(child_parts)
        leaf_nodes = np.concatenate(leaf_nodes)
        leaf_bits = np.concatenate(leaf_bits)
        leaf_dirty = np.concatenate(leaf_dirty)
        for s in range(n_slots):  # a dirty slot's bits are recomputed per point: keep them out of the signature
            cols = np.array([0]) if s == 0 else slots[s].bits
            leaf_bits[np.ix_(np.flatnonzero(leaf_dirty[:, s]), cols)] = False
        first, inv = _group(np.packbits(leaf_bits, axis=1))
        self.sig_bits = leaf_bits[first]  # distinct signatures of the leaves
        self.sig_index = {row.tobytes(): i for i, row in enumerate(np.packbits(self.sig_bits, axis=1))}
        names = [lp.name for lp in prep.layers]
        self.red_slot = 2 + names.index("red_line") if "red_line" in names else None
        self.node_sig = np.full(self.node_mx.size, -1, dtype=np.int32)
        self.node_sig[leaf_nodes] = inv
        first, inv = _group(np.packbits(leaf_dirty, axis=1))
        self.dirty_masks = leaf_dirty[first]  # distinct dirty-slot masks
        self.node_dirty = np.full(self.node_mx.size, -1, dtype=np.int32)
        self.node_dirty[leaf_nodes] = inv
        clean = np.flatnonzero(~self.dirty_masks.any(axis=1))
        self.clean_mask = int(clean[0]) if clean.size else -2  # -2: no leaf is clean (never a mask id)
        self.leaves = leaf_nodes.size
        # For the exact tests of points in dirty leaves (all at the last level): each leaf's boundary segments by
        # slot, and per slot and root cell the pieces whose boxes meet the cell (for the containment test).
        self.last_level = int(self.level_start[-2])
        order = np.argsort(pc, kind="stable")
        self.leaf_seg_ptr = np.zeros(n + 1, dtype=np.int32)
        self.leaf_seg_ptr[1:] = np.cumsum(np.bincount(pc, minlength=n))
        self.leaf_seg = ps[order].astype(np.int32)
        self.leaf_seg_slot = pslot[order].astype(np.int8)
        self.seg_xy = (sax, say, sbx, sby)
        self.slot_layers = slots
        self.piece_ptr: list[np.ndarray | None] = [None]
        self.piece_idx: list[np.ndarray | None] = [None]
        for lp in slots[1:]:
            b = shapely.bounds(lp.index.pieces).reshape(-1, 4)
            gc_, pi = self._bin(b[:, 0], b[:, 1], b[:, 2], b[:, 3], 0.5)
            root = self.active_of[gc_]
            pi, root = pi[root >= 0], root[root >= 0]
            o = np.argsort(root, kind="stable")
            ptr = np.zeros(self.size + 1, dtype=np.int32)
            ptr[1:] = np.cumsum(np.bincount(root, minlength=self.size))
            self.piece_ptr.append(ptr)
            self.piece_idx.append(pi[o].astype(np.int32))
        self.red = None
        if "red_line" in catalog.layers:
            red = catalog.layers["red_line"].index
            coarse = _RunIndex(red, territory, RUN_COARSE_CELL_M)
            self.red = _RunIndex(red, territory, RUN_CELL_M, coarse=coarse, like=self)

    def node_size(self, node: np.ndarray) -> np.ndarray:
        """Side length of each node's cell, in metres."""
        return self.cell / 2.0 ** (np.searchsorted(self.level_start, node, side="right") - 1)

    def locate(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(root cell, leaf node) of each point; -1 for both outside every root cell."""
        root = self.cells(x, y)
        node = root.copy()
        active = np.flatnonzero(root >= 0)
        active = active[self.child[node[active]] >= 0]
        while active.size:
            nd = node[active]
            xa, ya = x[active], y[active]
            nd = self.child[nd] + (xa >= self.node_mx[nd]) + 2 * (ya >= self.node_my[nd])
            node[active] = nd
            active = active[self.child[nd] >= 0]
        return root, node

    @property
    def nbytes(self) -> int:
        own = sum(a.nbytes for a in (self.node_mx, self.node_my, self.child, self.node_sig, self.node_dirty,
                                     self.sig_bits, self.dirty_masks, self.active_of, self.bx, self.by, self.cx, self.cy,
                                     self.leaf_seg_ptr, self.leaf_seg, self.leaf_seg_slot, *self.seg_xy,
                                     *self.piece_ptr[1:], *self.piece_idx[1:]))
        return own + (self.red.nbytes if self.red is not None else 0)


def _centre_bits(lp: _LayerPreds, pts: np.ndarray, x: np.ndarray, y: np.ndarray, rows: np.ndarray,
                 bits: np.ndarray) -> None:
    """The layer's signature bits at cell centres `pts` (x, y), no tolerance, written to `bits[rows]`."""
    bits[np.ix_(rows, lp.bits)] = False
    si, pi = lp.index.tree.query(pts)
    hit = shapely.intersects_xy(lp.index.pieces[pi], x[si], y[si])
    pair, pred = np.nonzero(lp.match[lp.index.piece_owner[pi[hit]]])
    bits[rows[si[hit][pair]], lp.bits[pred]] = True


def _chunk_segments(chunks: np.ndarray) -> tuple[np.ndarray, ...]:
    """The segments of line chunks: (ptr, ax, ay, bx, by), chunk k's segments at ptr[k]:ptr[k + 1]."""
    coords, idx = shapely.get_coordinates(chunks, return_index=True)
    last = np.r_[idx[1:] != idx[:-1], True]  # a chunk's last vertex starts no segment
    start = np.flatnonzero(~last)
    ptr = np.zeros(len(chunks) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(np.bincount(idx[start], minlength=len(chunks)))
    return ptr, coords[start, 0], coords[start, 1], coords[start + 1, 0], coords[start + 1, 1]


def _segments_meet_boxes(ax, ay, bx, by, x0, y0, x1, y1) -> np.ndarray:
    """Whether each segment meets its closed box (pairwise). Used with a metre of margin around the boxes, so the
    last-bit rounding of the side test cannot matter."""
    out = ((np.minimum(ax, bx) <= x1) & (np.maximum(ax, bx) >= x0) & (np.minimum(ay, by) <= y1)
           & (np.maximum(ay, by) >= y0))
    k = np.flatnonzero(out)  # boxes overlap: does the segment's line pass between the box corners?
    ax, ay, x0, y0, x1, y1 = ax[k], ay[k], x0[k], y0[k], x1[k], y1[k]
    ex, ey = bx[k] - ax, by[k] - ay
    s0 = ex * (y0 - ay) - ey * (x0 - ax)
    s1 = ex * (y0 - ay) - ey * (x1 - ax)
    s2 = ex * (y1 - ay) - ey * (x0 - ax)
    s3 = ex * (y1 - ay) - ey * (x1 - ax)
    lo = np.minimum(np.minimum(s0, s1), np.minimum(s2, s3))
    hi = np.maximum(np.maximum(s0, s1), np.maximum(s2, s3))
    out[k] = (lo <= 0) & (hi >= 0)
    return out


class _RunIndex(_Grid):
    """Exact nearest distance from points to a layer's boundary, in numpy, with per-cell candidate runs.

    The boundary chunks are cut into runs of ≤ RUN_SEGMENTS segments (the chunks' own vertices, so the distances
    are those GEOS computes). For a cell with centre q and half-diagonal h, a run can hold the nearest boundary
    point of a point p in the cell only if its bounding box is within D(q) + h of the cell, D(q) being the exact
    distance at the centre (from `query_nearest`, or from a coarser run index). A point keeps the runs whose
    bounding box is no farther than the nearest run start vertex, and takes the minimum point-to-segment distance.
    """

    def __init__(self, index: LayerIndex, territory: Any, cell: float, *, coarse: "_RunIndex | None" = None,
                 like: _Grid | None = None) -> None:
        super().__init__(territory, cell, like)
        if coarse is not None:
            self.ax, self.ay, self.bx_, self.by_ = coarse.ax, coarse.ay, coarse.bx_, coarse.by_
            self.empty = coarse.empty
        else:
            k = RUN_SEGMENTS
            seg_ptr, sax, say, sbx, sby = _chunk_segments(index.chunks)
            n_seg = np.diff(seg_ptr)
            n_run = (n_seg + k - 1) // k  # each chunk's segments in runs of k, the last one padded with its last
            run_chunk = np.repeat(np.arange(n_seg.size), n_run)
            run_first = seg_ptr[run_chunk] + k * (np.arange(int(n_run.sum())) - np.repeat(np.cumsum(n_run) - n_run,
                                                                                         n_run))
            seg = np.minimum(run_first[:, None] + np.arange(k), seg_ptr[run_chunk + 1][:, None] - 1)
            self.empty = seg.size == 0
            if self.empty:
                return
            self.ax, self.ay, self.bx_, self.by_ = sax[seg], say[seg], sbx[seg], sby[seg]
        if self.empty:
            return
        self.lox = np.minimum(self.ax.min(1), self.bx_.min(1))
        self.loy = np.minimum(self.ay.min(1), self.by_.min(1))
        self.hix = np.maximum(self.ax.max(1), self.bx_.max(1))
        self.hiy = np.maximum(self.ay.max(1), self.by_.max(1))
        self.v0x, self.v0y = self.ax[:, 0].copy(), self.ay[:, 0].copy()
        len2 = (self.bx_ - self.ax) ** 2 + (self.by_ - self.ay) ** 2
        self.inv2 = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)  # 0: a zero-length segment
        cx, cy = self.cx, self.cy
        if coarse is None:
            _, dist = index.chunk_tree.query_nearest(shapely.points(cx, cy), return_distance=True,
                                                     all_matches=False)
        else:
            dist = coarse.distance(cx, cy)
            lost = np.isnan(dist)
            if lost.any():
                _, dist[lost] = index.chunk_tree.query_nearest(shapely.points(cx[lost], cy[lost]),
                                                               return_distance=True, all_matches=False)
        reach = dist + cell * math.sqrt(2) / 2 + 1.0
        h = cell / 2
        tree = shapely.STRtree(shapely.box(self.lox, self.loy, self.hix, self.hiy))
        ci, ri = tree.query(shapely.box(cx - h - reach, cy - h - reach, cx + h + reach, cy + h + reach))
        dx = np.maximum(np.maximum(self.lox[ri] - (cx[ci] + h), (cx[ci] - h) - self.hix[ri]), 0.0)
        dy = np.maximum(np.maximum(self.loy[ri] - (cy[ci] + h), (cy[ci] - h) - self.hiy[ri]), 0.0)
        keep = np.hypot(dx, dy) <= reach[ci]
        ci, ri = ci[keep], ri[keep]
        # Each cell's runs in order of their distance to the cell (its box grown by half a metre, for points that
        # rounding puts in the cell next door): the compiled kernel stops at the first run farther than its best.
        g = h + 0.5
        dx = np.maximum(np.maximum(self.lox[ri] - (cx[ci] + g), (cx[ci] - g) - self.hix[ri]), 0.0)
        dy = np.maximum(np.maximum(self.loy[ri] - (cy[ci] + g), (cy[ci] - g) - self.hiy[ri]), 0.0)
        near = np.hypot(dx, dy)
        order = np.lexsort((near, ci))
        ci, ri = ci[order], ri[order]
        near = near[order]
        self.c_near = near.astype(np.float32)  # rounded down where float32 rounds up: still a lower bound
        up = self.c_near > near
        self.c_near[up] = np.nextafter(self.c_near[up], np.float32(-np.inf))
        self.ptr = np.zeros(cx.size + 1, dtype=np.int64)
        self.ptr[1:] = np.cumsum(np.bincount(ci, minlength=cx.size))
        self.cand = ri.astype(np.int32)
        self._copies: tuple[np.ndarray, ...] | None = None

    def _cell_copies(self) -> tuple[np.ndarray, ...]:
        """For the numpy path: candidate boxes and first vertices copied cell by cell (points sorted by cell read
        them in sequence), made on first use (the compiled kernel does not need them)."""
        if self._copies is None:
            ri = self.cand
            self._copies = (self.lox[ri], self.loy[ri], self.hix[ri], self.hiy[ri], self.v0x[ri], self.v0y[ri])
        return self._copies

    @property
    def nbytes(self) -> int:
        if self.empty:
            return 0
        return sum(a.nbytes for a in (self.ax, self.ay, self.bx_, self.by_, self.lox, self.loy, self.hix, self.hiy,
                                      self.v0x, self.v0y, self.inv2, self.ptr, self.cand, self.c_near,
                                      *(self._copies or ())))

    def distance(self, x: np.ndarray, y: np.ndarray, cells: np.ndarray | None = None,
                 compiled: bool | None = None) -> np.ndarray:
        """Distance from each point to the boundary; NaN for a point outside every cell (or no boundary).

        `cells` (this grid's cell of each point) may be given when known; `compiled` picks the compiled kernel
        (default: when COMPILED_DISTANCE is on) or the numpy one (the reference the tests compare it with, and the
        fallback should numba be missing). Both give GEOS's metres."""
        out = np.full(x.size, np.nan)
        if self.empty or x.size == 0:
            return out
        if cells is None:
            cells = self.cells(x, y)
        kernel = _nearest_kernel() if compiled is not False else None
        if compiled and kernel is None:
            raise RuntimeError("the compiled distance kernel needs numba")
        if kernel is not None:
            kernel(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                   np.ascontiguousarray(cells, dtype=np.int64), self.ptr, self.cand, self.c_near, self.lox, self.loy,
                   self.hix, self.hiy, self.ax, self.ay, self.bx_, self.by_, self.inv2, out)
            return out
        c_lox, c_loy, c_hix, c_hiy, c_v0x, c_v0y = self._cell_copies()
        order = np.argsort(cells, kind="stable")  # points of one cell together: the same runs, read in sequence
        order = order[cells[order] >= 0]
        step = 32_768
        for s in range(0, order.size, step):
            sel = order[s:s + step]
            px, py, c = x[sel], y[sel], cells[sel]
            c0 = self.ptr[c]
            n = self.ptr[c + 1] - c0
            has = n > 0
            if not has.all():
                sel, px, py, c0, n = sel[has], px[has], py[has], c0[has], n[has]
            if sel.size == 0:
                continue
            starts = np.cumsum(n) - n
            owner = np.repeat(np.arange(sel.size, dtype=np.int32), n)
            pos = np.repeat(c0 - starts, n) + np.arange(int(n.sum()))
            qx, qy = px[owner], py[owner]
            dx = np.maximum(np.maximum(c_lox[pos] - qx, qx - c_hix[pos]), 0.0)
            dy = np.maximum(np.maximum(c_loy[pos] - qy, qy - c_hiy[pos]), 0.0)
            low = dx * dx + dy * dy
            dx = c_v0x[pos] - qx
            dy = c_v0y[pos] - qy
            bound = np.minimum.reduceat(dx * dx + dy * dy, starts)
            keep = low <= bound[owner] * (1 + 1e-9) + 1e-6
            owner, runs = owner[keep], self.cand[pos[keep]]
            d = _segment_distance(px[owner][:, None], py[owner][:, None], self.ax[runs], self.ay[runs],
                                  self.bx_[runs], self.by_[runs]).min(axis=1)
            counts = np.bincount(owner, minlength=sel.size)
            out[sel] = np.minimum.reduceat(d, np.cumsum(counts) - counts)
        return out


def _round2(values: np.ndarray) -> np.ndarray:
    """Python's round(v, 2), as assess() rounds. np.round (rint(100 v) / 100) agrees except where 100 v lies within
    rounding error of a half: those few values are rounded by Python itself."""
    values = np.asarray(values, dtype=np.float64)
    out = np.round(values, 2)
    with np.errstate(invalid="ignore"):
        scaled = values * 100.0
        near = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    if near.any():
        out[near] = [round(v, 2) for v in values[near].tolist()]
    return out


def _segment_distance(px, py, ax, ay, bx, by) -> np.ndarray:
    """Point-to-segment distance exactly as GEOS computes it (Distance::pointToSegment)."""
    ex, ey = bx - ax, by - ay
    len2 = ex * ex + ey * ey
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ((px - ax) * ex + (py - ay) * ey) / len2
        s = ((ay - py) * ex - (ax - px) * ey) / len2
        da = np.sqrt((px - ax) ** 2 + (py - ay) ** 2)
        db = np.sqrt((px - bx) ** 2 + (py - by) ** 2)
        d = np.where(r <= 0.0, da, np.where(r >= 1.0, db, np.abs(s) * np.sqrt(len2)))
    return np.where(len2 == 0.0, da, d)


def _nearest_runs(px, py, cell, ptr, cand, near, lox, loy, hix, hiy, ax, ay, bx, by, inv2, out):  # pragma: no cover
    """The red-line distance kernel, compiled by numba (`_nearest_kernel`); never run as
    Python. Points are visited cell by cell (a counting sort, and copies of their coordinates in that order), so a
    cell's runs are read from cache. For each point the runs of its cell come nearest first: it stops at the first
    run whose distance to the cell exceeds the best distance so far plus 1 µm, and skips a run whose box is farther
    than that from the point. In a run it keeps, the squared distance to each segment is computed without branches
    (clamped projection, a precomputed 1 / length²; coordinate differences are exact, so it is off by far less than
    the 1 µm margin), and a segment within the margin of the best is measured with GEOS's point-to-segment distance
    (Distance::pointToSegment: the same operations in the same order). The minimum is the distance `query_nearest`
    gives."""
    n = px.shape[0]
    n_cells = ptr.shape[0] - 1
    k_seg = ax.shape[1]
    start = np.zeros(n_cells + 2, np.int64)
    for i in range(n):
        start[cell[i] + 2] += 1
    for c in range(2, n_cells + 2):
        start[c] += start[c - 1]
    order = np.empty(n, np.int64)
    for i in range(n):
        c = cell[i] + 1
        order[start[c]] = i
        start[c] += 1
    xs = np.empty(n)
    ys = np.empty(n)
    cs = np.empty(n, np.int64)
    for j in range(n):
        i = order[j]
        xs[j] = px[i]
        ys[j] = py[i]
        cs[j] = cell[i]
    res = np.empty(n)
    q2 = np.empty(k_seg)
    for j in range(n):
        c = cs[j]
        if c < 0:
            res[j] = np.nan
            continue
        x = xs[j]
        y = ys[j]
        best = np.inf
        lim = np.inf
        for k in range(ptr[c], ptr[c + 1]):
            if near[k] > lim:
                break
            r = cand[k]
            dx = max(lox[r] - x, x - hix[r], 0.0)
            dy = max(loy[r] - y, y - hiy[r], 0.0)
            if dx * dx + dy * dy > lim * lim:
                continue
            for s in range(k_seg):
                ex = bx[r, s] - ax[r, s]
                ey = by[r, s] - ay[r, s]
                wx = x - ax[r, s]
                wy = y - ay[r, s]
                t = min(max((wx * ex + wy * ey) * inv2[r, s], 0.0), 1.0)
                wx -= t * ex
                wy -= t * ey
                q2[s] = wx * wx + wy * wy
            for s in range(k_seg):
                if q2[s] > lim * lim:
                    continue
                d = point_segment(x, y, ax[r, s], ay[r, s], bx[r, s], by[r, s])
                if d < best:
                    best = d
                    lim = best + 1e-6
        res[j] = best
    for j in range(n):
        out[order[j]] = res[j]


COMPILED_DISTANCE = True  # red-line distances from the numba kernel (False: the numpy path)
_KERNEL: list[Any] = []
_KERNEL_LOCK = threading.Lock()


def _nearest_kernel() -> Callable[..., None] | None:
    """The compiled `_nearest_runs` (numba, single-threaded, no fast-math: IEEE operations as written), compiled for
    its one signature on first use (a few seconds; numba caches it on disk next to this module where it can, and
    loads it in well under a second after that); None when COMPILED_DISTANCE is off or numba cannot be imported
    (the numpy path is used then)."""
    if not COMPILED_DISTANCE:
        return None
    with _KERNEL_LOCK:
        if not _KERNEL:
            try:
                import numba  # noqa: PLC0415 - imported when the first point grid is built
            except ImportError:
                _KERNEL.append(None)
            else:
                f8, i8 = numba.float64[::1], numba.int64[::1]
                m8 = numba.float64[:, ::1]
                signature = numba.void(f8, f8, i8, i8, numba.int32[::1], numba.float32[::1], f8, f8, f8, f8, m8, m8, m8,
                                       m8, m8, f8)
                try:
                    kernel = numba.njit(signature, cache=True, nogil=True, boundscheck=False)(_nearest_runs)
                except RuntimeError:  # no writable place for numba's cache (a read-only install): compile each time
                    kernel = numba.njit(signature, cache=False, nogil=True, boundscheck=False)(_nearest_runs)
                _KERNEL.append(kernel)
        return _KERNEL[0]


# ---------------------------------------------------------------------------------------------------------------
# Exact point tests (the ones assess() makes), on a subset of points, writing signature bits


def _exact_layer(lp: _LayerPreds, pts: np.ndarray, which: np.ndarray, bits: np.ndarray) -> None:
    """The features of one layer within the boundary tolerance of each point (`LayerIndex.rows_at(x, y, tol)`:
    every unit on a shared boundary), written as the layer's signature bits of rows `which`."""
    bits[np.ix_(which, lp.bits)] = False
    if which.size == 0:
        return
    si, pi = lp.near.query(pts)
    ok = shapely.dwithin(lp.index.pieces[pi], pts[si], BOUNDARY_TOLERANCE_M)
    si, rows = si[ok], lp.index.piece_owner[pi[ok]]
    hit_pair, hit_pred = np.nonzero(lp.match[rows])
    bits[which[si[hit_pair]], lp.bits[hit_pred]] = True


def _exact_hits(index: LayerIndex, x: np.ndarray, y: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Whether each point lies in (or on) a feature, without tolerance: `rows_at(x, y)` of assess' distance."""
    out = np.zeros(x.size, dtype=bool)
    if x.size == 0:
        return out
    si, pi = index.tree.query(pts)
    hit = shapely.intersects_xy(index.pieces[pi], x[si], y[si])
    out[si[hit]] = True
    return out


# ---------------------------------------------------------------------------------------------------------------
# Screening


@dataclass
class BatchResult:
    """The answers for one block of sites, column by column (see `records` for one dict per site)."""

    offset: int
    ids: list[str]
    kind: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    geoms: np.ndarray
    verdict: np.ndarray  # object: str, None on error rows
    units: np.ndarray  # object: tuples of unit codes
    red_inside: np.ndarray
    red_overlap: np.ndarray
    red_distance: np.ndarray  # NaN: none (outside the territory or error)
    clauses: np.ndarray  # object: tuples of applied clause ids, in access-list order
    undecided: np.ndarray  # object: tuples of undecided clause ids
    missing: np.ndarray  # object: tuples of missing fact names
    errors: np.ndarray  # object: str or None

    def __len__(self) -> int:
        return len(self.ids)

    def records(self) -> Iterator[dict[str, Any]]:
        """One plain dict per site (lists for codes and ids; None where there is no value)."""
        for i in range(len(self.ids)):
            err = self.errors[i]
            verdict = self.verdict[i]
            dist = self.red_distance[i]
            yield {
                "row": self.offset + i + 1,
                "id": self.ids[i],
                "verdict": verdict,
                "verdict_zh": VERDICT_ZH.get(verdict) if verdict else None,
                "units": list(self.units[i]),
                "red_line_inside": bool(self.red_inside[i]) if err is None else None,
                "red_line_overlap_m2": float(self.red_overlap[i]) if err is None else None,
                "red_line_distance_m": None if err is not None or math.isnan(dist) else float(dist),
                "clauses": list(self.clauses[i]),
                "undecided_clauses": list(self.undecided[i]),
                "missing_facts": list(self.missing[i]),
                "error": err,
            }


def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _filled(n: int, value: Any) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def _group(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a 2-D uint8 array: (index of each group's first row, group of each row).

    Rows are packed into 64-bit words and sorted with lexsort, far faster than np.unique(axis=0) on bytes."""
    n, width = rows.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pad = (-width) % 8
    if pad:
        rows = np.concatenate([rows, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    words = np.ascontiguousarray(rows).view("<u8")
    keys = [words[:, k] for k in range(words.shape[1])]
    order = np.lexsort(keys[::-1]) if len(keys) > 1 else np.argsort(keys[0], kind="stable")
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        ks = key[order]
        change[1:] |= ks[1:] != ks[:-1]
    group_sorted = np.cumsum(change) - 1
    inv = np.empty(n, dtype=np.int64)
    inv[order] = group_sorted
    first = order[change]
    return first, inv


class _Signatures:
    """The distinct signatures (rows of signature bits) met in one screening call, by id: the point grid's own
    first (ids as in the grid), then those of exactly tested points and of polygons."""

    def __init__(self, n_bits: int, grid: "_PointGrid | None" = None) -> None:
        self.n_bits = n_bits
        self.rows: list[np.ndarray] = []
        self.index: dict[bytes, int] = {}
        if grid is not None:
            self.rows = list(grid.sig_bits)
            self.index = dict(grid.sig_index)

    def __len__(self) -> int:
        return len(self.rows)

    def ids(self, rows: np.ndarray) -> np.ndarray:
        """The id of each row of bits (new rows are added)."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.int64)
        packed = np.packbits(rows, axis=1)
        first, inv = _group(packed)
        out = np.empty(first.size, dtype=np.int64)
        for j, f in enumerate(first.tolist()):
            key = packed[f].tobytes()
            i = self.index.get(key)
            if i is None:
                i = self.index[key] = len(self.rows)
                self.rows.append(rows[f].copy())
            out[j] = i
        return out[inv]

    def table(self) -> np.ndarray:
        return np.array(self.rows, dtype=bool).reshape(-1, self.n_bits)


def _distinct(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, index of each key among them) for non-negative integer keys below `size`: with a lookup
    table when it is small (linear time), else by sorting."""
    if size <= 1 << 22:
        seen = np.zeros(size, dtype=bool)
        seen[keys] = True
        uniq = np.flatnonzero(seen)
        remap = np.zeros(size, dtype=np.int64)
        remap[uniq] = np.arange(uniq.size)
        return uniq, remap[keys]
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


def screen(batch: SiteBatch, catalog: Catalog, *, use_grid: bool | None = None, offset: int = 0) -> BatchResult:
    """Screen every site of the batch against the catalog (all at once; see `screen_blocks` for streaming).

    Every screened site ends with a signature id (`_Signatures`); its verdict and clause lists come from the
    outcome of its (signature, facts) pair, evaluated once per distinct pair and shared as the same tuples."""
    prep = prepared(catalog)
    n = len(batch)
    kind = batch.kind
    red_overlap = np.zeros(n)
    red_distance = np.full(n, np.nan)
    errors = _filled(n, None)
    for i in np.flatnonzero(kind == KIND_ERROR).tolist():
        errors[i] = batch.errors[i]
    pidx = np.flatnonzero(kind == KIND_POINT)
    gidx = np.flatnonzero(kind == KIND_POLYGON)
    if use_grid is None:
        use_grid = prep.has_grid or pidx.size >= GRID_MIN_POINTS
    grid = prep.grid(catalog) if use_grid and pidx.size else None
    sigs = _Signatures(prep.n_bits, grid)
    sig = np.full(n, -1, dtype=np.int64)  # -1: not screened (an unreadable row)
    if pidx.size == n:
        sig = _screen_points(prep, catalog, batch, pidx, sigs, red_distance, grid)
    elif pidx.size:
        sig[pidx] = _screen_points(prep, catalog, batch, pidx, sigs, red_distance, grid)
    poly_units = None
    if gidx.size:
        bits = np.zeros((n, prep.n_bits), dtype=bool)
        poly_units = _filled(n, ())
        try:
            _screen_polygons(prep, catalog, batch, gidx, bits, red_overlap, red_distance, poly_units, errors)
        except Exception:  # noqa: BLE001 - e.g. a GEOS topology error on one odd site: find it, keep the rest
            log.exception("vectorised polygon screening failed; screening the %d polygons one by one", gidx.size)
            for j in gidx:
                try:
                    _screen_polygons(prep, catalog, batch, np.array([j]), bits, red_overlap, red_distance,
                                     poly_units, errors)
                except Exception:  # noqa: BLE001
                    log.exception("batch site %d could not be screened", j)
                    bits[j] = False
                    red_overlap[j], red_distance[j], poly_units[j] = 0.0, np.nan, ()
                    errors[j] = "该场址的几何无法完成空间计算（可能在投影后自相交），请检查边界后单独提交"
        failed = np.array([errors[j] is not None for j in gidx.tolist()], dtype=bool)
        for j in gidx[failed].tolist():  # found while screening (not while reading)
            errors[j] = f"第 {offset + j + 1} 个场址：{errors[j]}"
        good = gidx[~failed]
        sig[good] = sigs.ids(bits[good])
    # Each screened site's outcome: one per distinct (signature, facts) pair, its tuples shared by every site that
    # has it. Row g of the per-pair columns below is the pair's; the last row (None, (), (), ()) is for
    # unscreened rows.
    table = sigs.table()
    screened = sig >= 0
    all_screened = bool(screened.all())
    ok = None if all_screened else np.flatnonzero(screened)
    s_ok = sig if all_screened else sig[ok]
    pix = batch.project_idx if all_screened else batch.project_idx[ok]
    used = np.flatnonzero(np.bincount(pix, minlength=len(batch.projects))) if s_ok.size else np.zeros(0, np.int64)
    dense = np.full(len(batch.projects), -1, dtype=np.int64)
    dense[used] = np.arange(used.size)
    fact_ids, facts_of = [], []
    for p in used.tolist():
        fid, facts = prep.facts_id(batch.projects[p])
        fact_ids.append(fid)
        facts_of.append(facts)
    n_f = max(used.size, 1)
    uniq, inv = _distinct(s_ok * n_f + dense[pix], len(table) * n_f) if s_ok.size else (np.zeros(0, np.int64),) * 2
    outcomes = [prep.outcome(table[k // n_f], fact_ids[k % n_f], facts_of[k % n_f]) for k in uniq.tolist()]
    outcomes.append((None, (), (), ()))
    if all_screened:
        group = inv
    else:
        group = np.full(n, len(outcomes) - 1, dtype=np.int64)
        group[ok] = inv
    verdict, clauses, undecided, missing = (_objects([o[k] for o in outcomes])[group] for k in range(4))
    codes = np.array(prep.unit_codes, dtype=object)
    unit_cols = slice(1, 1 + prep.n_units)
    units_of = _objects([tuple(sorted(codes[row[unit_cols]].tolist())) for row in table] + [()])
    units = units_of[sig]  # points list their units by code (all with zero overlap, as assess sorts them)
    if poly_units is not None:
        units[gidx] = poly_units[gidx]  # polygons by overlap, largest first
    red_inside = np.zeros(n, dtype=bool)
    if prep.red_bit is not None and len(table):
        red_inside = np.r_[table[:, prep.red_bit] & table[:, 0], False][sig]
    if len(table) and not table[:, 0].all():
        outside = np.flatnonzero(screened & ~np.r_[table[:, 0], True][sig])
        if outside.size:
            units[outside] = _filled(outside.size, ())
            red_distance[outside] = np.nan
            red_overlap[outside] = 0.0
    return BatchResult(offset=offset, ids=batch.ids, kind=batch.kind, lon=batch.lon, lat=batch.lat, geoms=batch.geoms,
                       verdict=verdict, units=units, red_inside=red_inside, red_overlap=red_overlap,
                       red_distance=red_distance, clauses=clauses, undecided=undecided, missing=missing, errors=errors)


def screen_blocks(batch: SiteBatch, catalog: Catalog, *, block: int = BLOCK_SITES,
                  progress: Callable[[int, int], None] | None = None) -> Iterator[BatchResult]:
    """Screen the batch block by block (for streaming and progress), with one decision about the point grid."""
    use_grid = prepared(catalog).has_grid or batch.point_count >= GRID_MIN_POINTS
    total = len(batch)
    for start in range(0, total, block):
        stop = min(start + block, total)
        result = screen(batch.block(start, stop), catalog, use_grid=use_grid, offset=start)
        if progress is not None:
            progress(stop, total)
        yield result


def _screen_points(prep: _Prepared, catalog: Catalog, batch: SiteBatch, pidx: np.ndarray, sigs: _Signatures,
                   red_distance: np.ndarray, grid: "_PointGrid | None") -> np.ndarray:
    """The signature id of each point (registered in `sigs`); writes the red-line distances."""
    x, y = to_metric(batch.lon[pidx], batch.lat[pidx])  # validated when the batch was read
    m = pidx.size
    red_index = catalog.layers["red_line"].index if "red_line" in catalog.layers else None
    red_bit = prep.red_bit
    exact_red = np.zeros(m, dtype=bool)  # in (or on) a red-line patch, without tolerance: distance 0
    root = None
    if grid is not None:
        root, node = grid.locate(x, y)
        sid = grid.node_sig[node].astype(np.int64)  # node -1 (outside the grid): fixed below, every slot is dirty
        did = grid.node_dirty[node]
        did[root < 0] = -1
        ex = np.flatnonzero(did != grid.clean_mask)
        sig_table = grid.sig_bits
        inside = sig_table[:, 0][sid]
        if red_bit is not None:
            exact_red = sig_table[:, red_bit][sid]  # a clean cell: in the patch = within tolerance of it
        if ex.size:  # points near a boundary: the exact test of assess() for the slots that are dirty there
            masks = np.ones((ex.size, grid.n_slots), dtype=bool)
            rows = np.zeros((ex.size, prep.n_bits), dtype=bool)
            known = did[ex] >= 0
            masks[known] = grid.dirty_masks[did[ex][known]]
            rows[known] = sig_table[sid[ex][known]]
            ex_red = _grid_exact_rows(prep, catalog, grid, x[ex], y[ex], root[ex], node[ex], rows, masks, red_index)
            sid[ex] = sigs.ids(rows)
            inside[ex] = rows[:, 0]
            if red_bit is not None and grid.red_slot is not None:
                exact_red[ex] = np.where(masks[:, grid.red_slot], ex_red, rows[:, red_bit])
    else:
        rows = np.zeros((m, prep.n_bits), dtype=bool)
        ex_red = _exact_rows(prep, catalog, x, y, rows, np.ones((m, 2 + len(prep.layers)), dtype=bool), red_index)
        sid = sigs.ids(rows)
        inside = rows[:, 0]
        exact_red = ex_red
    if red_index is not None and len(red_index.chunks):
        far = np.flatnonzero(inside & ~exact_red)
        if grid is not None and grid.red is not None:
            dist = grid.red.distance(x[far], y[far], cells=root[far])
            lost = np.isnan(dist)  # not expected: a point inside the territory is in a cell that meets it
        else:
            dist, lost = np.empty(far.size), np.ones(far.size, dtype=bool)
        if lost.any():
            _, dist[lost] = red_index.chunk_tree.query_nearest(shapely.points(x[far[lost]], y[far[lost]]),
                                                              return_distance=True, all_matches=False)
        red_distance[pidx[far]] = _round2(dist)
        red_distance[pidx[inside & exact_red]] = 0.0
    if not prep.lc_preds:
        return sid
    # Land cover: the class of the pixel under each point (LandCover.class_at, vectorised), as signature bits:
    # each distinct (signature, land-cover pattern) pair is one signature.
    lc = catalog.land_cover
    c = np.floor((x - lc.transform.c) / lc.pixel_m)
    r = np.floor((lc.transform.f - y) / lc.pixel_m)
    n_rows, n_cols = lc.grid.shape
    on = (r >= 0) & (r < n_rows) & (c >= 0) & (c < n_cols)
    codes = np.zeros(m, dtype=np.int64)
    codes[on] = lc.grid[r[on].astype(np.int64), c[on].astype(np.int64)]
    pattern = np.zeros((256, len(prep.lc_preds)), dtype=bool)
    for k, (classes, min_share) in enumerate(prep.lc_preds):
        share = np.zeros(256)
        for cls in classes:
            code = next((key for key, v in LAND_COVER_CLASSES.items() if v[0] == cls), None)
            if code is not None:
                share[code] += 1.0
        pattern[:, k] = (share > 0) & (share >= min_share)
    first, pat_of_code = _group(np.packbits(pattern, axis=1))
    n_pat = first.size
    uniq, inv = _distinct(sid * n_pat + pat_of_code[codes], len(sigs) * n_pat)
    base = sigs.table()[uniq // n_pat]
    lc_bits = np.array(list(prep.lc_preds.values()), dtype=np.int64)
    base[:, lc_bits] = pattern[first[uniq % n_pat]] & base[:, :1]  # land cover counts inside the territory only
    return sigs.ids(base)[inv]


def _ranges(start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For CSR slices [start, start + count): (owner of each element, its position), in order."""
    owner = np.repeat(np.arange(start.size), count)
    return owner, np.repeat(start - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))


def _grid_exact_rows(prep: _Prepared, catalog: Catalog, grid: "_PointGrid", x: np.ndarray, y: np.ndarray,
                     root: np.ndarray, node: np.ndarray, rows: np.ndarray, masks: np.ndarray,
                     red_index: LayerIndex | None) -> np.ndarray:
    """`_exact_rows` for points located in the grid, without making point geometries for most of them.

    For a dirty slot of a point's leaf, the leaf lists the slot's boundary segments that come within 1.01 m of it:
    if none is within the tolerance (+ 1 µm) of the point, the tolerance test of `assess()` reduces to containment
    (a feature within 0.01 m of a point that is not on any boundary contains it), found with the prepared
    point-in-piece test on the pieces whose boxes meet the point's root cell. The few points within the tolerance of
    a boundary (and any point the grid cannot place) take `_exact_rows` itself."""
    t = np.flatnonzero(masks[:, 0])
    rows[t, 0] = shapely.intersects_xy(catalog.territory, x[t], y[t])
    inside = rows[:, 0].copy()
    rows[~inside, 1:] = False
    exact_red = np.zeros(x.size, dtype=bool)
    fallback = np.zeros_like(masks)
    leaf = np.where(root >= 0, node - grid.last_level, -1)
    sax, say, sbx, sby = grid.seg_xy
    for s in range(1, grid.n_slots):
        lp = grid.slot_layers[s]
        which = np.flatnonzero(masks[:, s] & inside)
        if not lp.index.polygonal:
            fallback[which, s] = True
            continue
        placed = leaf[which] >= 0
        fallback[which[~placed], s] = True
        which = which[placed]
        if not which.size:
            continue
        li = leaf[which]
        owner, pos = _ranges(grid.leaf_seg_ptr[li], grid.leaf_seg_ptr[li + 1] - grid.leaf_seg_ptr[li])
        mine = grid.leaf_seg_slot[pos] == s
        owner, seg = owner[mine], grid.leaf_seg[pos[mine]]
        d = _segment_distance(x[which][owner], y[which][owner], sax[seg], say[seg], sbx[seg], sby[seg])
        counts = np.bincount(owner, minlength=which.size)
        dmin = np.zeros(which.size)  # a dirty slot always lists a segment; 0 (→ exact path) if not
        has = counts > 0
        if has.any():
            dmin[has] = np.minimum.reduceat(d, (np.cumsum(counts) - counts)[has])
        near = dmin <= BOUNDARY_TOLERANCE_M + 1e-6
        fallback[which[near], s] = True
        which = which[~near]
        r = root[which]
        ptr = grid.piece_ptr[s]
        owner, pos = _ranges(ptr[r], ptr[r + 1] - ptr[r])
        pi = grid.piece_idx[s][pos]
        hit = shapely.intersects_xy(lp.index.pieces[pi], x[which][owner], y[which][owner])
        owner, feature = owner[hit], lp.index.piece_owner[pi[hit]]
        rows[np.ix_(which, lp.bits)] = False
        pair, pred = np.nonzero(lp.match[feature])
        rows[which[owner[pair]], lp.bits[pred]] = True
        if lp.name == "red_line":
            exact_red[which[owner]] = True
    fb = np.flatnonzero(fallback.any(axis=1))
    if fb.size:
        sub_rows, sub_masks = rows[fb], fallback[fb]
        er = _exact_rows(prep, catalog, x[fb], y[fb], sub_rows, sub_masks, red_index)
        rows[fb] = sub_rows
        if grid.red_slot is not None:
            exact_red[fb] = np.where(sub_masks[:, grid.red_slot], er, exact_red[fb])
    return exact_red


def _exact_rows(prep: _Prepared, catalog: Catalog, x: np.ndarray, y: np.ndarray, rows: np.ndarray,
                masks: np.ndarray, red_index: LayerIndex | None) -> np.ndarray:
    """The tests assess() makes, for the slots marked in `masks` (0: territory, 1: units, 2..: bound layers),
    written into the signature rows; returns whether each point is in (or on) a red-line patch without tolerance
    (meaningful where the red-line slot is marked)."""
    t = np.flatnonzero(masks[:, 0])
    rows[t, 0] = shapely.intersects_xy(catalog.territory, x[t], y[t])
    inside = rows[:, 0].copy()
    rows[~inside, 1:] = False
    need = masks[:, 1:].any(axis=1) & inside
    sub = np.flatnonzero(need)
    pts = shapely.points(x[sub], y[sub]) if sub.size else np.empty(0, dtype=object)
    pos = np.full(x.size, -1, dtype=np.int64)
    pos[sub] = np.arange(sub.size)
    exact_red = np.zeros(x.size, dtype=bool)
    for s, lp in enumerate([prep.units, *prep.layers], start=1):
        which = np.flatnonzero(masks[:, s] & inside)
        _exact_layer(lp, pts[pos[which]], which, rows)
        if lp.name == "red_line" and red_index is not None:
            exact_red[which] = _exact_hits(red_index, x[which], y[which], pts[pos[which]])
    return exact_red


def _screen_polygons(prep: _Prepared, catalog: Catalog, batch: SiteBatch, gidx: np.ndarray, bits: np.ndarray,
                     red_overlap: np.ndarray, red_distance: np.ndarray, units: list, errors: list) -> None:
    geoms = batch.geoms[gidx]
    try:
        metric = shapely.transform(geoms, lambda xy: np.column_stack(to_metric(xy[:, 0], xy[:, 1])))
    except ZoningError:  # one site cannot be projected: find it, report it, screen the others
        metric = np.empty(gidx.size, dtype=object)
        for j, g in enumerate(geoms):
            try:
                metric[j] = shapely.transform(g, lambda xy: np.column_stack(to_metric(xy[:, 0], xy[:, 1])))
            except ZoningError as exc:
                errors[gidx[j]] = exc.message_zh
                metric[j] = None
        keep = np.array([g is not None for g in metric])
        gidx, geoms, metric = gidx[keep], geoms[keep], metric[keep]
        if not gidx.size:
            return
    territory = catalog.territory
    inside = metric.copy()
    contained = shapely.contains(territory, metric)
    disjoint = ~contained & ~shapely.intersects(territory, metric)  # prepared tests: cheap
    inside[disjoint] = shapely.Polygon()
    for j in np.flatnonzero(~contained & ~disjoint):  # sites crossing the city line: the part inside, as assess() clips it
        part = shapely.intersection(metric[j], territory)
        parts = shapely.get_parts(part)
        inside[j] = (shapely.union_all([g for g in parts if g.geom_type == "Polygon"]) if len(parts)
                     else shapely.Polygon())
    empty = shapely.is_empty(inside)
    live = np.flatnonzero(~empty)
    if not live.size:
        return
    sites = inside[live]
    area = shapely.area(sites)
    min_overlap = np.minimum(MIN_OVERLAP_M2, area * 1e-3)
    local = np.zeros((live.size, prep.n_bits), dtype=bool)
    local[:, 0] = True

    def overlaps(name: str, index: LayerIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(site, row, area, any-hit) per site and feature: the touches of assess, over all sites at once.

        A site inside a whole feature overlaps it by its own area (what the pieces' intersections add up to);
        only sites across a feature's boundary are intersected with the pieces they meet."""
        si, pi = index.tree.query(sites, predicate="intersects")
        hit = np.zeros(live.size, dtype=bool)
        hit[si] = True
        if si.size == 0:
            return si, si, np.zeros(0), hit
        rows = index.piece_owner[pi]
        key = si.astype(np.int64) * (int(rows.max()) + 1) + rows
        order = np.argsort(key, kind="stable")
        key, si, pi, rows = key[order], si[order], pi[order], rows[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        gsite, grow = si[starts], rows[starts]
        if not index.polygonal:
            return gsite, grow, np.zeros(starts.size), hit
        whole = shapely.contains(prep.features(catalog, name)[grow], sites[gsite])  # prepared: cheap
        sums = np.where(whole, area[gsite], 0.0)
        group = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1
        rest = ~whole[group]
        if rest.any():
            pair_area = np.zeros(si.size)
            within = np.zeros(si.size, dtype=bool)
            within[rest] = shapely.contains(index.pieces[pi[rest]], sites[si[rest]])
            pair_area[within] = area[si[within]]
            cut = rest & ~within
            pair_area[cut] = shapely.area(shapely.intersection(index.pieces[pi[cut]], sites[si[cut]]))
            partial = np.add.reduceat(pair_area, starts)
            sums = np.where(whole, sums, partial)
        return gsite, grow, sums, hit

    usi, urow, uarea, _ = overlaps("control_units", catalog.units.index)
    occ = uarea >= min_overlap[usi]
    local[usi[occ], 1 + urow[occ]] = True
    per_site: dict[int, list[tuple[float, str]]] = {}
    for s, r, a in zip(usi[occ].tolist(), urow[occ].tolist(), uarea[occ].tolist()):
        per_site.setdefault(s, []).append((-round(a, 2), prep.unit_codes[r]))
    for s, lst in per_site.items():
        units[gidx[live[s]]] = tuple(code for _, code in sorted(lst))
    for lp in prep.layers:
        si, rows, sums, hit = overlaps(lp.name, lp.index)
        occ = sums >= min_overlap[si]
        hit_pair, hit_pred = np.nonzero(lp.match[rows[occ]])
        local[si[occ][hit_pair], lp.bits[hit_pred]] = True
        if lp.name == "red_line":
            total = np.zeros(live.size)
            for s, a in zip(si[occ].tolist(), sums[occ].tolist()):  # in row order, as assess adds them
                total[s] += a
            red_overlap[gidx[live]] = _round2(total)
            dist = np.zeros(live.size)
            far = np.flatnonzero(~hit)
            if far.size and len(lp.index.chunks):
                _, d = lp.index.chunk_tree.query_nearest(sites[far], return_distance=True, all_matches=False)
                dist[far] = d
            red_distance[gidx[live]] = _round2(dist)
    if prep.lc_preds:
        shares = land_cover_shares(catalog.land_cover, sites, [classes for classes, _ in prep.lc_preds])
        for k, ((classes, min_share), b) in enumerate(prep.lc_preds.items()):
            local[:, b] = ~((shares[:, k] <= 0) | (shares[:, k] < min_share))
    bits[gidx[live]] = local


def land_cover_shares(lc: Any, sites: np.ndarray, class_sets: Sequence[Sequence[str]]) -> np.ndarray:
    """`sum(LandCover.composition(site).get(c, 0.0) for c in classes)` for every site and class set, computed
    by burning many sites into one label raster per GDAL call instead of one mask per site.

    Each site covers the pixels whose centres it contains (rasterio, all_touched=False), within the same pixel
    window `composition` uses; sites whose windows do not overlap cannot share a pixel, so they are burnt together
    with one label each. A site with no classified pixel takes the class under its representative point.
    """
    n = len(sites)
    out = np.zeros((n, len(class_sets)))
    if n == 0:
        return out
    x0, y0, px = lc.transform.c, lc.transform.f, lc.pixel_m
    rows, cols = lc.grid.shape
    b = shapely.bounds(sites).reshape(-1, 4)
    c0 = np.maximum(np.floor((b[:, 0] - x0) / px), 0).astype(np.int64)
    c1 = np.minimum(np.ceil((b[:, 2] - x0) / px), cols).astype(np.int64)
    r0 = np.maximum(np.floor((y0 - b[:, 3]) / px), 0).astype(np.int64)
    r1 = np.minimum(np.ceil((y0 - b[:, 1]) / px), rows).astype(np.int64)
    ok = (r1 > r0) & (c1 > c0)
    n_codes = max(LAND_COVER_CLASSES) + 1
    counts = np.zeros((n, n_codes), dtype=np.int64)
    idx = np.flatnonzero(ok)
    if idx.size:
        # Greedy colouring of the window-overlap graph: one group per colour, one rasterize call per group.
        tree = shapely.STRtree(shapely.box(c0[idx], r0[idx], c1[idx] - 0.5, r1[idx] - 0.5))
        a, bb = tree.query(shapely.box(c0[idx], r0[idx], c1[idx] - 0.5, r1[idx] - 0.5), predicate="intersects")
        keep = a != bb
        a, bb = a[keep], bb[keep]
        order = np.argsort(a, kind="stable")
        a, bb = a[order], bb[order]
        starts = np.searchsorted(a, np.arange(idx.size + 1))
        colour = np.full(idx.size, -1, dtype=np.int64)
        for i in range(idx.size):
            taken = colour[bb[starts[i]:starts[i + 1]]]
            if taken.size == 0 or taken.max() < 0:
                colour[i] = 0
                continue
            used = np.zeros(int(taken.max()) + 2, dtype=bool)
            used[taken[taken >= 0]] = True
            colour[i] = int(np.argmin(used))
        with rasterio.Env():
            for g in range(int(colour.max()) + 1):
                members = idx[colour == g]
                gc0, gc1 = int(c0[members].min()), int(c1[members].max())
                gr0, gr1 = int(r0[members].min()), int(r1[members].max())
                transform = rasterio.Affine(px, 0.0, x0 + gc0 * px, 0.0, -px, y0 - gr0 * px)
                labels = rasterio.features.rasterize(
                    ((sites[m], int(m) + 1) for m in members), out_shape=(gr1 - gr0, gc1 - gc0),
                    transform=transform, fill=0, dtype="int32", all_touched=False)
                hit = labels > 0
                lab = labels[hit].astype(np.int64) - 1
                val = lc.grid[gr0:gr1, gc0:gc1][hit].astype(np.int64)
                np.add.at(counts, (lab, val), 1)
    counts[:, LAND_COVER_NODATA] = 0
    total = counts.sum(axis=1)
    code_of = {key: code for code, (key, _, _) in LAND_COVER_CLASSES.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        share_of = counts / np.maximum(total, 1)[:, None]
    for k, classes in enumerate(class_sets):
        acc = np.zeros(n)
        for cls in classes:  # summed in the binding's order, as assess sums them
            code = code_of.get(cls)
            if code is not None:
                acc = acc + share_of[:, code]
        out[:, k] = acc
    empty = np.flatnonzero(total == 0)  # no classified pixel: the class under the representative point
    if empty.size:
        pts = shapely.get_coordinates(shapely.point_on_surface(sites[empty]))
        for j, (x, y) in zip(empty, pts):
            code = lc.class_at(x, y)
            key = LAND_COVER_CLASSES[code][0] if code in LAND_COVER_CLASSES else None
            for k, classes in enumerate(class_sets):
                out[j, k] = sum(1.0 if c == key else 0.0 for c in classes)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Output: CSV, GeoJSON, NDJSON, streamed block by block

CSV_COLUMNS = ("row", "id", "verdict", "verdict_zh", "units", "red_line_inside", "red_line_overlap_m2",
               "red_line_distance_m", "clauses", "undecided_clauses", "missing_facts", "error")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "geojson": "application/geo+json",
               "ndjson": "application/x-ndjson"}
EXTENSIONS = {"csv": "csv", "geojson": "geojson", "ndjson": "ndjson"}


def provenance(catalog: Catalog, total: int, *, generated_at: str | None = None) -> dict[str, Any]:
    """What every batch answer names: the data and rules versions behind it."""
    meta = {"dataset_version": catalog.dataset_version, "dataset_hash": catalog.content_hash,
            "rules_version": catalog.rules.version, "dataset_illustrative": catalog.illustrative,
            "site_count": total}
    if generated_at:
        meta["generated_at"] = generated_at
    return meta


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


_CSV_SPECIAL = re.compile(r'[",\r\n]')


def _csv_text(value: str | None) -> str:
    """A CSV field for free text (ids, messages): quoted when it holds a comma, quote or line break."""
    if not value:
        return ""
    if _CSV_SPECIAL.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


class _Formatter:
    """Per block: the text of each distinct tuple (clause ids, units, missing facts) made once. Sites with the same
    signature share their tuples, so a block of 10,000 sites formats a handful of lists, not 30,000."""

    def __init__(self) -> None:
        self.csv: dict[int, str] = {}
        self.json: dict[int, bytes] = {}

    def csv_list(self, tup: tuple[str, ...]) -> str:
        key = id(tup)
        hit = self.csv.get(key)
        if hit is None:
            hit = self.csv[key] = ";".join(tup)
        return hit

    def json_list(self, tup: tuple[str, ...]) -> bytes:
        key = id(tup)
        hit = self.json.get(key)
        if hit is None:
            hit = self.json[key] = orjson.dumps(list(tup))
        return hit


def _csv_block(block: BatchResult) -> str:
    """The CSV rows of a block. The fields a signature decides (verdict, units, red-line status; clause, undecided
    and missing-fact lists) are joined once per distinct combination; per row only the row number, id, overlap and
    distance are formatted."""
    f = _Formatter()
    lines = []
    heads: dict[tuple[Any, int, bool], str] = {}
    tails: dict[tuple[int, int, int], str] = {}
    plain_ids = not _CSV_SPECIAL.search("".join(block.ids))  # then no id needs quoting
    cols = zip(range(block.offset + 1, block.offset + len(block) + 1), block.ids, block.errors.tolist(),
               block.verdict.tolist(), block.units.tolist(), block.red_inside.tolist(), block.red_overlap.tolist(),
               block.red_distance.tolist(), block.clauses.tolist(), block.undecided.tolist(), block.missing.tolist())
    for row, site_id, err, verdict, units, inside, overlap, dist, c, u, m in cols:
        if not plain_ids:
            site_id = _csv_text(site_id)
        if err is not None:
            lines.append(f"{row},{site_id},,,,,,,,,,{_csv_text(err)}\n")
            continue
        key = (verdict, id(units), inside)
        head = heads.get(key)
        if head is None:
            head = heads[key] = (f"{verdict},{VERDICT_ZH[verdict]},{f.csv_list(units)},"
                                 f"{'true' if inside else 'false'},")
        tkey = (id(c), id(u), id(m))
        tail = tails.get(tkey)
        if tail is None:
            tail = tails[tkey] = f"{f.csv_list(c)},{f.csv_list(u)},{f.csv_list(m)},\n"
        lines.append(f"{row},{site_id},{head}{overlap!r},{'' if dist != dist else repr(dist)},{tail}")
    return "".join(lines)


def _json_rows(block: BatchResult) -> list[bytes]:
    """Each site as the JSON object `records()` gives, assembled from pre-serialised parts: the verdict and the
    clause / missing-fact lists are shared by every site of a signature, so their bytes are made once per block."""
    f = _Formatter()
    out = []
    tails: dict[tuple[int, int, int], bytes] = {}
    verdicts: dict[str, bytes] = {}
    cols = zip(range(block.offset + 1, block.offset + len(block) + 1), block.ids, block.errors.tolist(),
               block.verdict.tolist(), block.units.tolist(), block.red_inside.tolist(), block.red_overlap.tolist(),
               block.red_distance.tolist(), block.clauses.tolist(), block.undecided.tolist(), block.missing.tolist())
    for row, site_id, err, verdict, units, inside, overlap, dist, c, u, m in cols:
        head = b'{"row":%d,"id":%s,' % (row, orjson.dumps(site_id))
        if err is not None:
            out.append(b"".join((head, b'"verdict":null,"verdict_zh":null,"units":[],"red_line_inside":null,'
                                 b'"red_line_overlap_m2":null,"red_line_distance_m":null,"clauses":[],'
                                 b'"undecided_clauses":[],"missing_facts":[],"error":', orjson.dumps(err), b"}")))
            continue
        vpart = verdicts.get(verdict)
        if vpart is None:
            vpart = verdicts[verdict] = (b'"verdict":' + orjson.dumps(verdict) + b',"verdict_zh":'
                                         + orjson.dumps(VERDICT_ZH[verdict]) + b',"units":')
        key = (id(c), id(u), id(m))
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = b"".join((b',"clauses":', f.json_list(c), b',"undecided_clauses":', f.json_list(u),
                                          b',"missing_facts":', f.json_list(m), b',"error":null}'))
        out.append(b"".join((
            head, vpart, f.json_list(units),
            b',"red_line_inside":true,"red_line_overlap_m2":' if inside
            else b',"red_line_inside":false,"red_line_overlap_m2":',
            orjson.dumps(overlap), b',"red_line_distance_m":', b"null" if dist != dist else orjson.dumps(dist), tail)))
    return out


def render(results: Iterable[BatchResult], fmt: str, meta: Mapping[str, Any]) -> Iterator[bytes]:
    """The batch answer as bytes, block by block. The first line (CSV comment, NDJSON meta object, GeoJSON
    foreign members) names the dataset and rules versions."""
    if fmt == "csv":
        head = ",".join(f"{k}={_fmt(v)}" for k, v in meta.items())
        yield ("\ufeff# " + head + "\n" + ",".join(CSV_COLUMNS) + "\n").encode()
        for block in results:
            yield _csv_block(block).encode()
    elif fmt == "ndjson":
        yield orjson.dumps({"type": "batch", **meta}) + b"\n"
        for block in results:
            rows = _json_rows(block)
            yield b"\n".join(rows) + b"\n" if rows else b""
    elif fmt == "geojson":
        head = orjson.dumps({"type": "FeatureCollection", **meta})
        yield head[:-1] + b',"features":['
        first = True
        for block in results:
            parts = []
            for props, geometry in zip(_json_rows(block), _geometries(block)):
                parts.append((b"" if first else b",") + b'{"type":"Feature","geometry":' + geometry
                             + b',"properties":' + props + b"}")
                first = False
            yield b"".join(parts)
        yield b"]}\n"
    else:  # pragma: no cover - checked by callers
        raise InvalidInput(f"不支持的输出格式 {fmt}", detail=f"format {fmt!r}")


def _geometries(block: BatchResult) -> list[bytes]:
    out: list[bytes] = [b"null"] * len(block)
    for i in range(len(block)):
        if block.errors[i] is not None:
            continue
        if block.kind[i] == KIND_POINT:
            out[i] = orjson.dumps({"type": "Point", "coordinates": [float(block.lon[i]), float(block.lat[i])]})
        elif block.kind[i] == KIND_POLYGON and block.geoms[i] is not None:
            out[i] = shapely.to_geojson(block.geoms[i]).encode()
    return out


def write_results(batch: SiteBatch, catalog: Catalog, fmt: str, out: Any, *, meta: Mapping[str, Any] | None = None,
                  progress: Callable[[int, int], None] | None = None, block: int = BLOCK_SITES) -> int:
    """Screen a batch and write the answer to a binary file object; returns the number of sites."""
    meta = meta or provenance(catalog, len(batch))
    for chunk in render(screen_blocks(batch, catalog, block=block, progress=progress), fmt, meta):
        out.write(chunk)
    return len(batch)
