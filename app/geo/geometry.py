"""Site geometry parsing: GeoJSON, WKT or a coordinate list to a validated Point, Polygon or MultiPolygon.

Sizes and nesting are bounded before any text reaches GEOS (deeply nested WKT crashes it). Geometries are validated
and never repaired: an invalid boundary is refused with the reason and location in Chinese.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.errors import GEOSException
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from app.errors import InputTooLarge, InvalidCoordinates, InvalidGeometry, InvalidInput
from app.geo.dms import parse_dms, parse_dms_pair
from app.geo.crs import STORAGE_CRS, AxisOrder, CRSSpec, fmt_num, json_num, parse_crs, to_storage

DEFAULT_MAX_CHARS = 2_000_000  # WKT or GeoJSON text
DEFAULT_MAX_DEPTH = 8  # parentheses; a MultiPolygon needs 3
DEFAULT_MAX_VERTICES = 20_000

ACCEPTED_TYPES = ("Point", "Polygon", "MultiPolygon")
_ACCEPTED_ZH = "Point（点）、Polygon（面）、MultiPolygon（多面）"
_TYPE_NAMES_ZH = {
    "Point": "点",
    "Polygon": "面",
    "MultiPolygon": "多面",
    "LineString": "线",
    "LinearRing": "线环",
    "MultiPoint": "多点",
    "MultiLineString": "多线",
    "GeometryCollection": "几何集合",
    "Feature": "要素",
    "FeatureCollection": "要素集合",
}
_WHY_REFUSED_ZH = {
    "LineString": "场址应为一个点或一块面，线不能表示场址范围",
    "LinearRing": "场址应为一个点或一块面；如为边界，请按 Polygon 提交",
    "MultiLineString": "场址应为一个点或一块面，线不能表示场址范围",
    "MultiPoint": "一次只能提交一个场址点；如为场址范围，请按 Polygon 提交",
    "GeometryCollection": "请只提交一个点、面或多面",
}
_GEOJSON_TYPES = {name.lower(): name for name in (*_TYPE_NAMES_ZH, "Feature", "FeatureCollection")}
_WKT_TYPES = {name.upper(): name for name in _TYPE_NAMES_ZH if name not in ("Feature", "FeatureCollection")}
_OTHER_WKT_TYPES = {
    "CIRCULARSTRING", "COMPOUNDCURVE", "CURVEPOLYGON", "MULTICURVE", "MULTISURFACE", "CURVE", "SURFACE",
    "TRIANGLE", "TIN", "POLYHEDRALSURFACE",
}
_WKT_CHARS = re.compile(r"[^A-Za-z0-9\s().,+\-]")

_REASONS_ZH = {
    "Self-intersection": "多边形自相交",
    "Ring Self-intersection": "多边形的环自相交（环在一点上与自身接触或交叉）",
    "Hole lies outside shell": "内环位于外环之外",
    "Holes are nested": "内环嵌套在另一个内环之中",
    "Interior is disconnected": "内部不连通（内环把多边形分割成了互不相连的部分）",
    "Nested shells": "多面中的一个多边形位于另一个多边形之内",
    "Duplicate Rings": "存在重复的环",
    "Too few points in geometry component": "环的不同顶点太少（至少需要 3 个不同的点）",
    "Invalid Coordinate": "坐标无效（NaN 或无穷大）",
    "Ring is not closed": "环未闭合（首末点不同）",
    "Repeated Point": "存在重复点",
}
_REASON = re.compile(r"^(?P<reason>[^\[]+?)\s*(?:\[(?P<x>[^\s\]]+)\s+(?P<y>[^\s\]]+)[^\]]*\])?$")
_NOT_REPAIRED_ZH = "系统不会自动修复几何，请修正边界后重新提交。"


# ---------------------------------------------------------------------------------------------------------------
# Validation


def _type_error(found: str, where: str = "") -> InvalidGeometry:
    name_zh = _TYPE_NAMES_ZH.get(found, "未知类型")
    why = _WHY_REFUSED_ZH.get(found, "不是可接受的场址几何")
    return InvalidGeometry(
        f"{where}不支持的几何类型 {found}（{name_zh}）：{why}。可接受的类型：{_ACCEPTED_ZH}。",
        detail=f"geometry type {found!r} not accepted; accepted {', '.join(ACCEPTED_TYPES)}",
        geometry_type=found,
        accepted=list(ACCEPTED_TYPES),
    )


def explain_invalid(geom: BaseGeometry) -> tuple[str, list[float] | None, str] | None:
    """Why a geometry is invalid, in Chinese, with the location GEOS reports and its raw reason; None if valid."""
    with np.errstate(all="ignore"):  # huge finite coordinates overflow inside GEOS; the reason is still reported
        reason = shapely.is_valid_reason(geom)
    if reason == "Valid Geometry":
        return None
    m = _REASON.match(reason or "")
    key = m["reason"] if m else (reason or "")
    text = _REASONS_ZH.get(key, f"几何无效（{key}）")
    if geom.geom_type == "MultiPolygon" and key == "Self-intersection":
        text = "多面中的多边形相互重叠、共边或自相交"
    location: list[float] | None = None
    if m and m["x"] is not None:
        try:
            x, y = float(m["x"]), float(m["y"])
            location = [x, y] if math.isfinite(x) and math.isfinite(y) else None
        except ValueError:
            location = None
    return text, location, reason or ""


def validate_geometry(geom: BaseGeometry, *, label: str | None = None, **context: Any) -> None:
    """Raise InvalidGeometry/InvalidCoordinates unless `geom` is a non-empty, finite, valid Point/Polygon/MultiPolygon.

    `label` prefixes the Chinese message (e.g. a parcel name); `context` is added to the error's context.
    """
    where = f"{label}：" if label else ""
    if not isinstance(geom, BaseGeometry):
        raise InvalidGeometry(
            f"{where}没有可用的几何。", detail=f"expected a shapely geometry, got {type(geom).__name__}", **context
        )
    kind = geom.geom_type
    if kind not in ACCEPTED_TYPES:
        error = _type_error(kind, where)
        error.context.update(context)
        raise error
    if geom.is_empty:
        raise InvalidGeometry(
            f"{where}几何为空（{kind} EMPTY），没有任何坐标。",
            detail=f"empty {kind}",
            geometry_type=kind,
            **context,
        )
    if kind == "MultiPolygon":
        empty = np.flatnonzero(shapely.is_empty(shapely.get_parts(geom)))
        if empty.size:
            raise InvalidGeometry(
                f"{where}多面中的第 {int(empty[0]) + 1} 个多边形为空。",
                detail=f"MultiPolygon part {int(empty[0])} is empty",
                geometry_type=kind,
                part_index=int(empty[0]),
                **context,
            )
    coords = shapely.get_coordinates(geom)
    bad = np.flatnonzero(~np.isfinite(coords).all(axis=1))
    if bad.size:
        i = int(bad[0])
        raise InvalidCoordinates(
            f"{where}第 {i + 1} 个顶点的坐标 ({fmt_num(coords[i, 0])}, {fmt_num(coords[i, 1])}) 不是有效数值"
            "（NaN 或无穷大）。",
            detail=f"non-finite vertex {i}: {coords[i].tolist()}",
            vertex_index=i,
            location=[json_num(coords[i, 0]), json_num(coords[i, 1])],
            **context,
        )
    problem = explain_invalid(geom)
    if problem is None:
        return
    text, location, reason = problem
    at = f"，位置约在 ({fmt_num(location[0])}, {fmt_num(location[1])})" if location else ""
    extra: dict[str, Any] = {"location": [json_num(v) for v in location]} if location else {}
    raise InvalidGeometry(
        f"{where}{text}{at}。{_NOT_REPAIRED_ZH}",
        detail=f"invalid {kind}: {reason}",
        reason=reason,
        geometry_type=kind,
        **extra,
        **context,
    )


# ---------------------------------------------------------------------------------------------------------------
# GeoJSON and coordinate lists


class _VertexBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise InputTooLarge(
                f"几何的顶点过多（超过 {self.limit} 个）。请简化边界后再提交。",
                detail=f"more than {self.limit} vertices",
                limit=self.limit,
            )


def _describe(value: Any) -> str:
    if value is None:
        return "空值 null"
    if isinstance(value, bool):
        return f"布尔值 {str(value).lower()}"
    if isinstance(value, str):
        return f"文本“{value[:20]}{'...' if len(value) > 20 else ''}”"
    if isinstance(value, (int, float)):
        return f"数字 {value}"
    if isinstance(value, (list, tuple)):
        return f"含 {len(value)} 个元素的数组"
    if isinstance(value, dict):
        return "对象"
    return type(value).__name__


def _number(value: Any, path: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidCoordinates(
            f"{path} 应为数字，实际为{_describe(value)}。",
            detail=f"{path}: expected number, got {type(value).__name__}",
            path=path,
            value_type=type(value).__name__,
        )
    try:
        number = float(value)
    except OverflowError:
        raise InvalidCoordinates(
            f"{path} 的数值过大。", detail=f"{path}: integer too large for float", path=path
        ) from None
    if not math.isfinite(number):
        raise InvalidCoordinates(
            f"{path} 的值 {number} 不是有效数值（NaN 或无穷大）。",
            detail=f"{path}: non-finite {number}",
            path=path,
            value=str(number),
        )
    return number


def _position(value: Any, path: str, nesting_hint: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)):
        raise InvalidGeometry(
            f"{path} 应为坐标 [x, y]，实际为{_describe(value)}：坐标数组的嵌套层数不对，{nesting_hint}。",
            detail=f"{path}: expected a position, got {type(value).__name__}",
            path=path,
        )
    if value and isinstance(value[0], (list, tuple)):
        raise InvalidGeometry(
            f"{path} 应为坐标 [x, y]，实际为嵌套的数组：坐标数组的嵌套层数不对，{nesting_hint}。",
            detail=f"{path}: expected a position, got a nested array",
            path=path,
        )
    if len(value) not in (2, 3):
        raise InvalidGeometry(
            f"{path} 应含 2 个数 [x, y]（或带高程的 3 个数），实际有 {len(value)} 个元素。",
            detail=f"{path}: position of length {len(value)}",
            path=path,
        )
    x, y = _number(value[0], f"{path}[0]"), _number(value[1], f"{path}[1]")
    if len(value) == 3:
        _number(value[2], f"{path}[2]")  # elevation: checked, then dropped (sites are 2-D)
    return x, y


def _positions(values: Sequence[Any], path: str, nesting_hint: str) -> list[tuple[float, float]]:
    points = []
    isfinite = math.isfinite
    for i, p in enumerate(values):
        # Fast path for the common case (two finite floats); anything else gets the full check and its message.
        if type(p) is list and len(p) == 2:
            x, y = p
            if type(x) is float and type(y) is float and isfinite(x) and isfinite(y):
                points.append((x, y))
                continue
        points.append(_position(p, f"{path}[{i}]", nesting_hint))
    return points


def _ring(value: Any, path: str, name_zh: str, budget: _VertexBudget, nesting_hint: str) -> list[tuple[float, float]]:
    if not isinstance(value, (list, tuple)):
        raise InvalidGeometry(
            f"{path}（{name_zh}）应为坐标数组的列表，实际为{_describe(value)}：{nesting_hint}。",
            detail=f"{path}: expected a ring, got {type(value).__name__}",
            path=path,
        )
    budget.take(len(value))
    points = _positions(value, path, nesting_hint)
    if len(points) < 4:
        raise InvalidGeometry(
            f"{name_zh}（{path}）只有 {len(points)} 个坐标，至少需要 4 个（3 个不同的点，并以首点闭合）。",
            detail=f"{path}: ring with {len(points)} positions",
            path=path,
            position_count=len(points),
        )
    if points[0] != points[-1]:
        raise InvalidGeometry(
            f"{name_zh}（{path}）未闭合：首点 ({fmt_num(points[0][0])}, {fmt_num(points[0][1])}) 与末点 "
            f"({fmt_num(points[-1][0])}, {fmt_num(points[-1][1])}) 不同。GeoJSON 的环必须以首点结束，系统不会自动闭合。",
            detail=f"{path}: ring not closed",
            path=path,
            location=[points[0][0], points[0][1]],
        )
    return points


def _polygon(value: Any, path: str, budget: _VertexBudget, where: str, nesting_hint: str) -> Polygon:
    if not isinstance(value, (list, tuple)):
        raise InvalidGeometry(
            f"{path}（{where}）应为环的列表，实际为{_describe(value)}：{nesting_hint}。",
            detail=f"{path}: expected a list of rings, got {type(value).__name__}",
            path=path,
        )
    if not value:
        raise InvalidGeometry(f"{where}没有任何环（坐标为空）。", detail=f"{path}: polygon without rings", path=path)
    rings = [
        _ring(r, f"{path}[{i}]", f"{where}外环" if i == 0 else f"{where}第 {i} 个内环", budget, nesting_hint)
        for i, r in enumerate(value)
    ]
    arrays = [np.array(r, dtype=np.float64) for r in rings]  # shapely builds far faster from arrays than tuples
    return Polygon(arrays[0], arrays[1:])


def _geojson_type(obj: dict[str, Any]) -> str:
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise InvalidGeometry(
            "GeoJSON 对象缺少有效的 type 字段（如 \"Point\"、\"Polygon\"、\"MultiPolygon\"）。",
            detail=f"GeoJSON type {kind!r}",
        )
    canonical = _GEOJSON_TYPES.get(kind.lower())
    if canonical is None:
        raise InvalidGeometry(
            f"无法识别的 GeoJSON 类型“{kind[:40]}”。可接受的类型：{_ACCEPTED_ZH}，或包含其一的 Feature。",
            detail=f"unknown GeoJSON type {kind[:40]!r}",
            geometry_type=kind[:40],
            accepted=list(ACCEPTED_TYPES),
        )
    return canonical


def _refuse_crs_member(obj: dict[str, Any]) -> None:
    if "crs" in obj:
        raise InvalidInput(
            "GeoJSON 中的 crs 成员不被采用：请删除它，并用请求的坐标系参数（crs）说明坐标系，以免坐标系被误读。",
            detail="GeoJSON carries a 'crs' member",
        )


def _from_geojson(obj: dict[str, Any], budget: _VertexBudget) -> BaseGeometry:
    kind = _geojson_type(obj)
    _refuse_crs_member(obj)
    if kind == "FeatureCollection":
        raise InvalidGeometry(
            "请提交单个几何或单个要素（Feature），不接受要素集合（FeatureCollection）。",
            detail="FeatureCollection given",
            geometry_type=kind,
            accepted=list(ACCEPTED_TYPES),
        )
    if kind == "Feature":
        geometry = obj.get("geometry")
        if geometry is None:
            raise InvalidGeometry("要素（Feature）没有几何：geometry 为空。", detail="Feature without geometry")
        if not isinstance(geometry, dict):
            raise InvalidGeometry(
                f"要素的 geometry 应为 GeoJSON 几何对象，实际为{_describe(geometry)}。",
                detail=f"Feature geometry of type {type(geometry).__name__}",
            )
        obj = geometry
        kind = _geojson_type(obj)
        _refuse_crs_member(obj)
        if kind in ("Feature", "FeatureCollection"):
            raise InvalidGeometry(
                f"要素的 geometry 应为几何对象，不能是 {kind}。", detail=f"Feature geometry is a {kind}"
            )
    if kind not in ACCEPTED_TYPES:
        raise _type_error(kind)
    if "coordinates" not in obj:
        raise InvalidGeometry(f"{kind} 缺少 coordinates 字段。", detail=f"{kind} without coordinates", geometry_type=kind)
    coords = obj["coordinates"]
    if isinstance(coords, (list, tuple)) and not coords:
        raise InvalidGeometry(f"几何为空（{kind} 的 coordinates 为空数组）。", detail=f"empty {kind}", geometry_type=kind)
    if kind == "Point":
        budget.take(1)
        return Point(_position(coords, "coordinates", "Point 应为 [x, y]"))
    if kind == "Polygon":
        return _polygon(coords, "coordinates", budget, "", "Polygon 应为 [[[x, y], ...], ...]")
    if not isinstance(coords, (list, tuple)):
        raise InvalidGeometry(
            f"coordinates 应为多边形的列表，实际为{_describe(coords)}。",
            detail="MultiPolygon coordinates not a list",
            path="coordinates",
        )
    hint = "MultiPolygon 应为 [[[[x, y], ...], ...], ...]"
    return MultiPolygon(
        [_polygon(p, f"coordinates[{k}]", budget, f"第 {k + 1} 个多边形的", hint) for k, p in enumerate(coords)]
    )


_DMS_MARK = re.compile(r"[度°′'″\"分秒]|东经|北纬")


def _dms_positions(seq: Sequence[Any]) -> list[Any]:
    """Convert list entries written as DMS text ("117°26′48.5″,49°35′20.1″" or a pair of such strings) to numbers."""
    out: list[Any] = []
    for item in seq:
        if isinstance(item, str):
            out.append(list(parse_dms_pair(item)))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(v, str) for v in item):
            out.append([parse_dms(item[0], axis="lon"), parse_dms(item[1], axis="lat")])
        else:
            out.append(item)
    return out


def _from_dms_text(text: str, budget: _VertexBudget) -> BaseGeometry:
    """EIA-form DMS text: one "经度,纬度" pair per line (one line = point, three or more = polygon ring)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    budget.take(len(lines))
    return _from_pairs([list(parse_dms_pair(line)) for line in lines], _VertexBudget(len(lines)))


def _from_pairs(seq: Sequence[Any], budget: _VertexBudget) -> BaseGeometry:
    hint = "坐标列表应为 [[x, y], [x, y], ...]（单个点可写作 [x, y]）"
    first = seq[0] if seq else None
    texts = [first] if isinstance(first, str) else list(first) if isinstance(first, (list, tuple)) else []
    if any(isinstance(t, str) and _DMS_MARK.search(t) for t in texts):
        seq = _dms_positions(seq)
    if seq and not isinstance(seq[0], (list, tuple)):
        budget.take(1)
        return Point(_position(seq, "coordinates", hint))
    budget.take(len(seq))
    points = _positions(seq, "coordinates", hint)
    if not points:
        raise InvalidGeometry("坐标列表为空。", detail="empty coordinate list")
    if len(points) == 1:
        return Point(points[0])
    closed = points[0] == points[-1]
    distinct = len(points) - 1 if closed else len(points)
    if distinct < 3:
        raise InvalidGeometry(
            f"坐标列表只有 {distinct} 个不同的点：场址应为一个点，或至少 3 个不同的点围成的面。",
            detail=f"coordinate list with {len(points)} positions ({distinct} distinct)",
            position_count=len(points),
        )
    return Polygon(np.array(points if closed else [*points, points[0]], dtype=np.float64))


# ---------------------------------------------------------------------------------------------------------------
# WKT


def _check_wkt_text(text: str, max_depth: int, max_vertices: int) -> str:
    if text.upper().startswith("SRID"):
        raise InvalidGeometry(
            "不接受带 SRID 的 EWKT：请去掉“SRID=…;”，并用坐标系参数（crs）说明坐标系。", detail="EWKT with SRID prefix"
        )
    bad = _WKT_CHARS.search(text)
    if bad:
        raise InvalidGeometry(
            f"WKT 第 {bad.start() + 1} 个字符“{bad.group()}”无效：WKT 只含英文字母、数字、空格、英文括号、逗号和小数点"
            "（请检查是否混入了中文逗号或括号）。",
            detail=f"invalid WKT character {bad.group()!r} at {bad.start()}",
            position=bad.start(),
        )
    raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    depth = np.cumsum((raw == ord("(")).astype(np.int64) - (raw == ord(")")).astype(np.int64))
    deepest = int(depth.max()) if depth.size else 0
    if deepest > max_depth:
        raise InputTooLarge(
            f"WKT 的括号嵌套达 {deepest} 层，超过上限 {max_depth} 层（点、面、多面最多 3 层）。",
            detail=f"WKT nesting depth {deepest} > {max_depth}",
            depth=deepest,
            limit=max_depth,
        )
    if depth.size and (int(depth.min()) < 0 or int(depth[-1]) != 0):
        raise InvalidGeometry("WKT 的括号不配对。", detail="unbalanced parentheses in WKT")
    vertices = int(np.count_nonzero(raw == ord(","))) + 1  # a Point/Polygon/MultiPolygon has commas + 1 vertices
    if vertices > max_vertices:
        raise InputTooLarge(
            f"WKT 约含 {vertices} 个顶点，超过上限 {max_vertices} 个。请简化边界后再提交。",
            detail=f"WKT with ~{vertices} vertices > {max_vertices}",
            vertex_count=vertices,
            limit=max_vertices,
        )
    keyword = re.match(r"[A-Za-z]+", text)
    if keyword is None:
        raise InvalidGeometry(
            "WKT 应以几何类型开头，如 POINT (117.45 49.59) 或 POLYGON ((...))。", detail="WKT without a type keyword"
        )
    kind = _WKT_TYPES.get(keyword.group().upper())
    if kind is None and keyword.group().upper() not in _OTHER_WKT_TYPES:
        raise InvalidGeometry(
            f"无法识别的几何文本“{text[:30]}”：应为 WKT（如 POINT (117.45 49.59)、POLYGON ((...))）或 GeoJSON。",
            detail=f"text does not start with a WKT type: {text[:30]!r}",
        )
    if kind is None:
        raise InvalidGeometry(
            f"不支持的 WKT 几何类型 {keyword.group()[:30]}。可接受的类型：{_ACCEPTED_ZH}。",
            detail=f"WKT type {keyword.group()[:30]!r}",
            geometry_type=keyword.group()[:30],
            accepted=list(ACCEPTED_TYPES),
        )
    if kind not in ACCEPTED_TYPES:
        raise _type_error(kind)
    return kind


def _from_wkt(text: str, max_depth: int, max_vertices: int) -> BaseGeometry:
    text = text.strip()
    if not text:
        raise InvalidGeometry("几何为空：WKT 文本为空。", detail="empty WKT")
    kind = _check_wkt_text(text, max_depth, max_vertices)
    try:
        with np.errstate(all="ignore"):  # overflowing numbers become inf and are refused by validation
            geom = shapely.from_wkt(text, on_invalid="raise")
    except GEOSException as exc:
        message = str(exc)
        if "closed linestring" in message:
            why = "有未闭合的环（首末点不同）。WKT 的多边形环必须以首点结束，系统不会自动闭合"
        elif "LinearRing" in message and "must be" in message:
            why = "有顶点太少的环（至少需要 4 个坐标：3 个不同的点并以首点闭合）"
        else:
            why = "语法错误，无法解析；请对照 POLYGON ((x1 y1, x2 y2, x3 y3, x1 y1)) 的写法检查括号、逗号和空格"
        raise InvalidGeometry(f"WKT {why}。", detail=f"WKT parse error: {message}", geometry_type=kind) from None
    if geom is None:
        raise InvalidGeometry("WKT 无法解析。", detail="from_wkt returned None")
    return shapely.force_2d(geom)


# ---------------------------------------------------------------------------------------------------------------
# Public entry points


def parse_geometry(
    value: Any,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_vertices: int = DEFAULT_MAX_VERTICES,
) -> BaseGeometry:
    """Parse a site geometry in the caller's coordinates and validate it without repair.

    `value` is a GeoJSON geometry or Feature (a dict or its JSON text), a WKT string, or a list of [x, y] pairs
    (or its JSON text): one pair is a point, three or more a polygon ring. An unclosed pair list is closed here,
    because a list of coordinates is not a ring yet; GeoJSON and WKT rings are geometry already and must come
    closed. Elevations are checked, then dropped. Size, nesting and vertex bounds raise InputTooLarge before parsing.
    """
    budget = _VertexBudget(max_vertices)
    if isinstance(value, BaseGeometry):
        geom = value
    elif isinstance(value, dict):
        geom = _from_geojson(value, budget)
    elif isinstance(value, str):
        if len(value) > max_chars:
            raise InputTooLarge(
                f"几何文本过长（{len(value)} 个字符，上限 {max_chars}）。请简化边界后再提交。",
                detail=f"geometry text of {len(value)} chars > {max_chars}",
                length=len(value),
                limit=max_chars,
            )
        if value.lstrip().startswith(("{", "[")):
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise InvalidGeometry(
                    "JSON 文本无法解析（不是合法的 JSON；注意 NaN、Infinity 不是合法的 JSON 数值）。",
                    detail=f"invalid JSON geometry text: {exc}",
                ) from None
            geom = _from_geojson(obj, budget) if isinstance(obj, dict) else _from_pairs(obj, budget)
        elif _DMS_MARK.search(value):
            geom = _from_dms_text(value, budget)
        else:
            geom = _from_wkt(value, max_depth, max_vertices)
    elif isinstance(value, (list, tuple)):
        geom = _from_pairs(value, budget)
    else:
        raise InvalidInput(
            f"无法识别的几何输入（{_describe(value)}）：应为 GeoJSON 对象、WKT 文本或坐标列表 [[x, y], ...]。",
            detail=f"geometry input of type {type(value).__name__}",
        )
    count = int(shapely.get_num_coordinates(geom))
    if count > max_vertices:
        raise InputTooLarge(
            f"几何含 {count} 个顶点，超过上限 {max_vertices} 个。请简化边界后再提交。",
            detail=f"{count} vertices > {max_vertices}",
            vertex_count=count,
            limit=max_vertices,
        )
    validate_geometry(geom)
    return geom


def transform_geometry(
    geom: BaseGeometry, crs: str | int | CRSSpec = STORAGE_CRS, *, axis_order: AxisOrder = "xy"
) -> BaseGeometry:
    """Validate a geometry in `crs` (and `axis_order`), transform it to EPSG:4490 and validate the result."""
    spec = parse_crs(crs)
    validate_geometry(geom)
    return _transform_valid(geom, spec, axis_order)


def _transform_valid(geom: BaseGeometry, spec: CRSSpec, axis_order: AxisOrder) -> BaseGeometry:
    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        lon, lat = to_storage(xy[:, 0], xy[:, 1], spec, axis_order=axis_order)
        return np.column_stack([lon, lat])

    out = shapely.transform(geom, to_lonlat)
    validate_geometry(out, label=f"由 {spec.name} 转换为 {STORAGE_CRS} 后")
    return out


def parse_site(
    value: Any,
    crs: str | int | CRSSpec = STORAGE_CRS,
    *,
    axis_order: AxisOrder = "xy",
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_vertices: int = DEFAULT_MAX_VERTICES,
) -> BaseGeometry:
    """Parse a site geometry given in `crs` and return it validated in storage EPSG:4490."""
    spec = parse_crs(crs)  # an unknown CRS is reported before any parsing work
    geom = parse_geometry(value, max_chars=max_chars, max_depth=max_depth, max_vertices=max_vertices)
    return _transform_valid(geom, spec, axis_order)
