"""Accepted coordinate systems and conversion of caller coordinates to storage CGCS2000 (EPSG:4490).

Storage is CGCS2000 geographic lon/lat (EPSG:4490); areas and distances use EPSG:4548 (Gauss-Krüger CM 117°E).
Every input is checked before it reaches pyproj, which returns inf for out-of-range input instead of failing,
and every output is checked after. GCJ-02 and BD-09 (web-map coordinates) are converted only when named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import Transformer

from app.errors import InvalidCoordinates, InvalidInput, UnknownCRS

STORAGE_CRS = "EPSG:4490"
METRIC_CRS = "EPSG:4548"
STORAGE_EPSG = 4490
METRIC_EPSG = 4548

GK_ZONE = 39  # Manzhouli's CGCS2000 3-degree Gauss-Krüger zone, central meridian 117°E
GK_ZONE_6DEG = 20  # the 6-degree zone with the same central meridian
ZONE_FACTOR = 1_000_000.0  # an easting with zone prefix is zone * 1e6 + easting
MAX_EASTING = 1_000_000.0
MAX_NORTHING = 10_000_000.0

# The usual "inside China" box of the GCJ-02 algorithm: outside it the obfuscation is undefined.
CHINA_LON = (72.004, 137.8347)
CHINA_LAT = (0.8293, 55.8271)

Kind = Literal["geographic", "projected", "obfuscated"]
AxisOrder = Literal["xy", "survey"]
Array = NDArray[np.float64]


@dataclass(frozen=True)
class CRSSpec:
    """A coordinate system the service accepts: canonical name, kind, EPSG code (None for GCJ-02/BD-09)."""

    name: str
    kind: Kind
    epsg: int | None
    title_zh: str

    @property
    def is_projected(self) -> bool:
        """True for the Gauss-Krüger systems (metres, easting/northing)."""
        return self.kind == "projected"


_SPECS = (
    (CRSSpec("EPSG:4490", "geographic", 4490, "2000国家大地坐标系经纬度（CGCS2000）"), ("4490", "CGCS2000")),
    (CRSSpec("EPSG:4326", "geographic", 4326, "WGS84 经纬度"), ("4326", "WGS84")),
    (CRSSpec("EPSG:4527", "projected", 4527, "CGCS2000 高斯-克吕格 3 度带第 39 带（东坐标含带号 39）"), ("4527",)),
    (CRSSpec("EPSG:4548", "projected", 4548, "CGCS2000 高斯-克吕格 3 度带中央经线 117°E（东坐标不含带号）"), ("4548",)),
    (CRSSpec("GCJ02", "obfuscated", None, "GCJ-02（高德、腾讯地图坐标）"), ("GCJ-02",)),
    (CRSSpec("BD09", "obfuscated", None, "BD-09（百度地图坐标）"), ("BD-09",)),
)
_BY_ALIAS = {alias.upper(): spec for spec, aliases in _SPECS for alias in (spec.name, *aliases)}
ACCEPTED_CRS_NAMES = tuple(spec.name for spec, _ in _SPECS)
_ACCEPTED_ZH = "、".join(f"{spec.name}（{'、'.join(aliases)}）" for spec, aliases in _SPECS)


def fmt_num(value: float) -> str:
    """Format a coordinate for a message: metres to the millimetre, degrees to 1e-7, no trailing zeros."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e12:
        return f"{value:.6g}"
    text = f"{value:.3f}" if abs(value) >= 1000 else f"{value:.7f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def json_num(value: float) -> float | str:
    """A JSON-safe number: the float when finite, else its text ('nan', 'inf')."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def parse_crs(name: str | int | CRSSpec) -> CRSSpec:
    """Resolve a CRS name or alias (case-insensitive) to its spec; anything else raises UnknownCRS."""
    if isinstance(name, CRSSpec):
        return name
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if isinstance(name, str):
        spec = _BY_ALIAS.get("".join(name.split()).upper())
        if spec is not None:
            return spec
    shown = name[:40] if isinstance(name, str) else type(name).__name__
    raise UnknownCRS(
        f"不支持的坐标系“{shown}”。可用的坐标系：{_ACCEPTED_ZH}。",
        detail=f"unknown CRS {shown!r}; accepted {', '.join(ACCEPTED_CRS_NAMES)}",
        given=shown,
        accepted=list(ACCEPTED_CRS_NAMES),
    )


@lru_cache(maxsize=None)
def transformer(src_epsg: int, dst_epsg: int) -> Transformer:
    """The one cached, lon/lat-ordered (always_xy) transformer between two EPSG codes; no input checks."""
    return Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)


# ---------------------------------------------------------------------------------------------------------------
# GCJ-02 / BD-09. The published algorithm takes WGS84; CGCS2000 and WGS84 agree to within centimetres (well below
# the obfuscation's own precision), so CGCS2000 lon/lat is fed in and taken back out as is.

_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
_X_PI = math.pi * 3000.0 / 180.0
_INVERSE_TOLERANCE_DEG = 1e-9
_INVERSE_MAX_ITERATIONS = 50


def _gcj_offset(lon: Array, lat: Array) -> tuple[Array, Array]:
    x = lon - 105.0
    y = lat - 35.0
    pi = math.pi
    dlat = (
        -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
        + (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
        + (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
        + (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    )
    dlon = (
        300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
        + (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
        + (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
        + (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    )
    radlat = lat / 180.0 * pi
    magic = 1.0 - _KRASOVSKY_EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_KRASOVSKY_A * (1.0 - _KRASOVSKY_EE)) / (magic * sqrtmagic) * pi)
    dlon = dlon * 180.0 / (_KRASOVSKY_A / sqrtmagic * np.cos(radlat) * pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[Array, Array]:
    """WGS84/CGCS2000 lon/lat to GCJ-02 (the published forward formula, Krasovsky constants); no range checks."""
    lon_a, lat_a = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    dlon, dlat = _gcj_offset(lon_a, lat_a)
    return lon_a + dlon, lat_a + dlat


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[Array, Array]:
    """GCJ-02 lon/lat to WGS84/CGCS2000 by iterating the forward formula until the round trip is below 1e-9°."""
    glon, glat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    wlon, wlat = glon.copy(), glat.copy()
    finite = np.isfinite(glon) & np.isfinite(glat)
    for _ in range(_INVERSE_MAX_ITERATIONS):
        flon, flat = wgs84_to_gcj02(wlon, wlat)
        dlon, dlat = flon - glon, flat - glat
        wlon = wlon - dlon
        wlat = wlat - dlat
        converged = (np.abs(dlon) < _INVERSE_TOLERANCE_DEG) & (np.abs(dlat) < _INVERSE_TOLERANCE_DEG)
        if bool(np.all(converged | ~finite)):
            break
    return wlon, wlat


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[Array, Array]:
    """GCJ-02 lon/lat to BD-09 (the published formula, x_pi = π·3000/180)."""
    x, y = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[Array, Array]:
    """BD-09 lon/lat to GCJ-02: the published inverse, refined until the round trip is below 1e-9°."""
    blon, blat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    x, y = blon - 0.0065, blat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    glon, glat = z * np.cos(theta), z * np.sin(theta)
    # The published inverse is only approximate (errors of ~1e-6°); a few fixed-point steps make it exact.
    finite = np.isfinite(blon) & np.isfinite(blat)
    for _ in range(_INVERSE_MAX_ITERATIONS):
        flon, flat = gcj02_to_bd09(glon, glat)
        dlon, dlat = flon - blon, flat - blat
        converged = (np.abs(dlon) < _INVERSE_TOLERANCE_DEG) & (np.abs(dlat) < _INVERSE_TOLERANCE_DEG)
        glon = glon - dlon
        glat = glat - dlat
        if bool(np.all(converged | ~finite)):
            break
    return glon, glat


# ---------------------------------------------------------------------------------------------------------------
# Validation. Every error names the point (index), the coordinate and what was expected.


@dataclass(frozen=True)
class _Labels:
    x: str  # the first coordinate as the caller gave it
    y: str
    east: str
    north: str


_GEO_LABELS = _Labels("经度", "纬度", "经度", "纬度")
_XY_LABELS = _Labels("东坐标 x", "北坐标 y", "东坐标 x", "北坐标 y")
_SURVEY_LABELS = _Labels("X（北坐标）", "Y（东坐标）", "Y（东坐标）", "X（北坐标）")


def _ref(index: int, count: int) -> str:
    return "该点" if count == 1 else f"第 {index + 1} 个点"


def _first(mask: NDArray[np.bool_]) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _as_arrays(x: ArrayLike, y: ArrayLike) -> tuple[Array, Array, tuple[int, ...]]:
    try:
        xa = np.asarray(x, dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidCoordinates(
            "坐标应为数字，收到了无法转换为数字的值。",
            detail=f"non-numeric coordinate input: {exc}",
        ) from None
    if xa.shape != ya.shape:
        raise InvalidInput(
            f"x 与 y 的个数不一致（{xa.size} 个与 {ya.size} 个），应成对提供。",
            detail=f"x shape {xa.shape} != y shape {ya.shape}",
            x_count=int(xa.size),
            y_count=int(ya.size),
        )
    return xa.reshape(-1), ya.reshape(-1), xa.shape


def _check_finite(xa: Array, ya: Array, labels: _Labels, crs: str) -> None:
    i = _first(~(np.isfinite(xa) & np.isfinite(ya)))
    if i is None:
        return
    coord, label, value = ("x", labels.x, xa[i]) if not math.isfinite(xa[i]) else ("y", labels.y, ya[i])
    raise InvalidCoordinates(
        f"{_ref(i, xa.size)}的{label}不是有效数值（{value}）。请检查该坐标是否缺失或填写错误。",
        detail=f"non-finite {coord} at index {i}: {value}",
        vertex_index=i,
        coordinate=coord,
        value=str(value),
        expected_crs=crs,
    )


def _check_lonlat(lon: Array, lat: Array, crs: CRSSpec) -> None:
    i = _first((np.abs(lon) > 180.0) | (np.abs(lat) > 90.0))
    if i is not None:
        x, y = float(lon[i]), float(lat[i])
        ref, hint = _ref(i, lon.size), None
        if abs(x) > 1000.0 or abs(y) > 1000.0:
            why = (
                f"坐标 ({fmt_num(x)}, {fmt_num(y)}) 不是经纬度：数值像以米为单位的投影坐标。"
                "如为高斯-克吕格坐标，请选择 EPSG:4527（东坐标含带号 39）或 EPSG:4548（不含带号）"
            )
            hint = "projected_values"
        elif abs(x) <= 90.0 and abs(y) <= 180.0:
            why = f"纬度 {fmt_num(y)} 超出 -90～90 范围，经纬度可能颠倒：应先经度后纬度（满洲里约为 117.45, 49.59）"
            hint = "swapped_lon_lat"
        elif abs(x) > 180.0:
            why = f"经度 {fmt_num(x)} 超出 -180～180 范围"
        else:
            why = f"纬度 {fmt_num(y)} 超出 -90～90 范围"
        raise InvalidCoordinates(
            f"{ref}的{why}。",
            detail=f"lon/lat out of range at index {i}: ({x}, {y}) in {crs.name}",
            vertex_index=i,
            location=[x, y],
            expected_crs=crs.name,
            **({"hint": hint} if hint else {}),
        )
    if crs.kind == "obfuscated":
        outside = (lon < CHINA_LON[0]) | (lon > CHINA_LON[1]) | (lat < CHINA_LAT[0]) | (lat > CHINA_LAT[1])
        i = _first(outside)
        if i is not None:
            x, y = float(lon[i]), float(lat[i])
            raise InvalidCoordinates(
                f"{_ref(i, lon.size)}的坐标 ({fmt_num(x)}, {fmt_num(y)}) 不在中国境内，"
                f"而 {crs.name} 只用于中国境内的网络地图坐标。请核对坐标或坐标系。",
                detail=f"{crs.name} point outside China at index {i}: ({x}, {y})",
                vertex_index=i,
                location=[x, y],
                expected_crs=crs.name,
            )


def _projected_ok(e: Array, n: Array, crs: CRSSpec) -> NDArray[np.bool_]:
    if crs.epsg == 4527:
        low = GK_ZONE * ZONE_FACTOR
        ok_e = (e >= low) & (e <= low + MAX_EASTING)
    else:
        ok_e = (e >= 0.0) & (e <= MAX_EASTING)
    return ok_e & (n >= 0.0) & (n <= MAX_NORTHING)


def zone_description_zh(zone: int) -> str:
    """Describe a Gauss-Krüger zone number found in data: which band width and central meridian it implies."""
    if 13 <= zone <= 23:
        return f"6 度带第 {zone} 带，中央经线 {6 * zone - 3}°E"
    if 25 <= zone <= 45:
        return f"3 度带第 {zone} 带，中央经线 {3 * zone}°E"
    return f"第 {zone} 带，不是中国境内的高斯-克吕格带号"


def _projected_problem(e: float, n: float, crs: CRSSpec, labels: _Labels) -> tuple[str, dict[str, Any]]:
    if bool(_projected_ok(np.array([n]), np.array([e]), crs)[0]):
        if labels is _SURVEY_LABELS:
            why = "X（北坐标）与 Y（东坐标）可能颠倒：测量坐标中 X 为北坐标（满洲里约 5,490,000 米），Y 为东坐标"
        else:
            why = (
                "东坐标与北坐标可能颠倒：x 应为东坐标、y 应为北坐标（满洲里北坐标约 5,490,000 米）；"
                "如按测量习惯 X=北、Y=东 填写，请指定 axis_order=\"survey\""
            )
        return why, {"hint": "swapped_axes"}
    east_ok = bool(_projected_ok(np.array([e]), np.array([0.0]), crs)[0])
    if not east_ok:
        zone = int(e // ZONE_FACTOR) if 10 * ZONE_FACTOR <= e < 100 * ZONE_FACTOR else None
        if crs.epsg == 4527:
            if zone is not None:
                extra = ""
                if zone == GK_ZONE_6DEG:
                    extra = "；6 度带第 20 带与 3 度带第 39 带中央经线相同，可去掉带号 20 后按 EPSG:4548 提交"
                return (
                    f"{labels.east} {fmt_num(e)} 的带号为 {zone}（{zone_description_zh(zone)}），"
                    f"而 EPSG:4527 要求 3 度带第 39 带（中央经线 117°E，东坐标形如 39xxxxxx.xx）{extra}。"
                    "系统不会自动换带，请核对坐标所在带",
                    {"zone_found": zone, "zone_expected": GK_ZONE},
                )
            if 0.0 <= e <= MAX_EASTING:
                return (
                    f"{labels.east} {fmt_num(e)} 没有带号前缀 39（EPSG:4527 的东坐标形如 39xxxxxx.xx）；"
                    "如坐标不含带号，请选择 EPSG:4548",
                    {"zone_expected": GK_ZONE},
                )
            return (
                f"{labels.east} {fmt_num(e)} 不是 3 度带第 39 带的东坐标（应形如 39xxxxxx.xx 米）",
                {"zone_expected": GK_ZONE},
            )
        if zone == GK_ZONE:
            return (
                f"{labels.east} {fmt_num(e)} 带有带号前缀 39，而 EPSG:4548 的东坐标不含带号；"
                "请选择 EPSG:4527，或去掉带号后再提交",
                {"zone_found": zone},
            )
        if zone is not None:
            return (
                f"{labels.east} {fmt_num(e)} 带有带号前缀 {zone}（{zone_description_zh(zone)}），"
                "而 EPSG:4548 要求中央经线 117°E、不含带号的东坐标（0～1,000,000 米）",
                {"zone_found": zone, "zone_expected": GK_ZONE},
            )
        return f"{labels.east} {fmt_num(e)} 超出合理范围（EPSG:4548 的东坐标应在 0～1,000,000 米之间）", {}
    return f"{labels.north} {fmt_num(n)} 超出合理范围（北坐标应在 0～10,000,000 米之间）", {}


def _check_projected(e: Array, n: Array, xa: Array, ya: Array, crs: CRSSpec, labels: _Labels) -> None:
    i = _first(~_projected_ok(e, n, crs))
    if i is None:
        return
    why, extra = _projected_problem(float(e[i]), float(n[i]), crs, labels)
    raise InvalidCoordinates(
        f"{_ref(i, e.size)}：{why}。",
        detail=f"implausible {crs.name} coordinate at index {i}: easting {e[i]}, northing {n[i]}",
        vertex_index=i,
        location=[float(xa[i]), float(ya[i])],
        expected_crs=crs.name,
        **extra,
    )


def _check_output(lon: Array, lat: Array, xa: Array, ya: Array, crs: str) -> None:
    bad = ~(np.isfinite(lon) & np.isfinite(lat)) | (np.abs(lon) > 180.0) | (np.abs(lat) > 90.0)
    i = _first(bad)
    if i is None:
        _check_in_china(lon, lat, xa, ya, crs)
        return
    raise InvalidCoordinates(
        f"{_ref(i, lon.size)}的坐标 ({fmt_num(float(xa[i]))}, {fmt_num(float(ya[i]))}) 无法从 {crs} 转换为经纬度"
        "（转换结果无效）。请核对坐标与坐标系。",
        detail=f"transform from {crs} produced ({lon[i]}, {lat[i]}) at index {i}",
        vertex_index=i,
        location=[json_num(xa[i]), json_num(ya[i])],
        expected_crs=crs,
    )


def _check_in_china(lon: Array, lat: Array, xa: Array, ya: Array, crs: str) -> None:
    # Every CRS the service accepts is a Chinese one: a site that lands outside China's extent was given in the
    # wrong CRS or axis order, not a site to assess.
    outside = (lon < CHINA_LON[0]) | (lon > CHINA_LON[1]) | (lat < CHINA_LAT[0]) | (lat > CHINA_LAT[1])
    i = _first(outside)
    if i is None:
        return
    raise InvalidCoordinates(
        f"{_ref(i, lon.size)}的坐标 ({fmt_num(float(xa[i]))}, {fmt_num(float(ya[i]))}) 按 {crs} 理解后位于中国境外"
        f"（经度 {float(lon[i]):.4f}、纬度 {float(lat[i]):.4f}）。请核对坐标系、经纬度顺序和数值（满洲里约为 117.45, 49.59）。",
        detail=f"{crs} point outside China at index {i}: ({lon[i]}, {lat[i]})",
        vertex_index=i,
        location=[json_num(xa[i]), json_num(ya[i])],
        expected_crs=crs,
    )


def _labels_for(crs: CRSSpec, axis_order: str) -> _Labels:
    if axis_order not in ("xy", "survey"):
        raise InvalidInput(
            f"不支持的坐标轴顺序“{str(axis_order)[:20]}”，应为 xy（先东/经度后北/纬度）或 survey（测量习惯 X=北、Y=东）。",
            detail=f"unknown axis_order {axis_order!r}",
            axis_order=str(axis_order)[:20],
            accepted=["xy", "survey"],
        )
    if not crs.is_projected:
        if axis_order == "survey":
            raise InvalidInput(
                f"axis_order=\"survey\"（X=北坐标、Y=东坐标）只适用于高斯-克吕格投影坐标（EPSG:4527、EPSG:4548），"
                f"{crs.name} 的经纬度请按先经度、后纬度提供。",
                detail=f"axis_order 'survey' given with non-projected CRS {crs.name}",
                axis_order="survey",
                crs=crs.name,
            )
        return _GEO_LABELS
    return _SURVEY_LABELS if axis_order == "survey" else _XY_LABELS


def to_storage(
    x: ArrayLike, y: ArrayLike, crs: str | int | CRSSpec = STORAGE_CRS, *, axis_order: AxisOrder = "xy"
) -> tuple[Array, Array]:
    """Validate caller coordinates in `crs` and return (lon, lat) arrays in EPSG:4490, shaped like the input.

    `axis_order="survey"` means x is the northing X and y the easting Y (Chinese survey tables); projected CRSs only.
    """
    spec = parse_crs(crs)
    labels = _labels_for(spec, axis_order)
    xa, ya, shape = _as_arrays(x, y)
    _check_finite(xa, ya, labels, spec.name)
    if spec.is_projected:
        e, n = (ya, xa) if axis_order == "survey" else (xa, ya)
        _check_projected(e, n, xa, ya, spec, labels)
        lon, lat = transformer(spec.epsg, STORAGE_EPSG).transform(e, n)
    else:
        _check_lonlat(xa, ya, spec)
        if spec.name == "GCJ02":
            lon, lat = gcj02_to_wgs84(xa, ya)
        elif spec.name == "BD09":
            lon, lat = gcj02_to_wgs84(*bd09_to_gcj02(xa, ya))
        elif spec.epsg == STORAGE_EPSG:
            lon, lat = xa.copy(), ya.copy()
        else:
            lon, lat = transformer(spec.epsg, STORAGE_EPSG).transform(xa, ya)
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    _check_output(lon, lat, xa, ya, spec.name)
    return lon.reshape(shape), lat.reshape(shape)


def to_metric(lon: ArrayLike, lat: ArrayLike) -> tuple[Array, Array]:
    """Validate EPSG:4490 lon/lat and return (easting, northing) arrays in EPSG:4548 metres."""
    spec = parse_crs(STORAGE_CRS)
    xa, ya, shape = _as_arrays(lon, lat)
    _check_finite(xa, ya, _GEO_LABELS, spec.name)
    _check_lonlat(xa, ya, spec)
    e, n = transformer(STORAGE_EPSG, METRIC_EPSG).transform(xa, ya)
    e, n = np.asarray(e, dtype=np.float64), np.asarray(n, dtype=np.float64)
    i = _first(~(np.isfinite(e) & np.isfinite(n)))
    if i is not None:
        raise InvalidCoordinates(
            f"{_ref(i, xa.size)}的经纬度 ({fmt_num(float(xa[i]))}, {fmt_num(float(ya[i]))}) 无法投影到 EPSG:4548"
            "（离中央经线 117°E 太远）。",
            detail=f"4490->4548 produced ({e[i]}, {n[i]}) at index {i}",
            vertex_index=i,
            location=[float(xa[i]), float(ya[i])],
            expected_crs=METRIC_CRS,
        )
    return e.reshape(shape), n.reshape(shape)


def point_to_storage_metric(
    x: float, y: float, crs: str | int | CRSSpec = STORAGE_CRS, *, axis_order: AxisOrder = "xy"
) -> tuple[float, float, float, float]:
    """One caller point as (lon, lat) in EPSG:4490 and (easting, northing) in EPSG:4548, checked as `to_storage`
    and `to_metric` check it.

    A finite lon/lat inside China's extent in a geographic EPSG CRS passes every check of those two functions, so it
    takes a scalar path (about 2 µs instead of 60); anything else goes through them and gets their errors.
    """
    spec = parse_crs(crs)
    if (spec.kind == "geographic" and axis_order == "xy" and type(x) is float and type(y) is float
            and CHINA_LON[0] <= x <= CHINA_LON[1] and CHINA_LAT[0] <= y <= CHINA_LAT[1]):
        lon, lat = (x, y) if spec.epsg == STORAGE_EPSG else transformer(spec.epsg, STORAGE_EPSG).transform(x, y)
        if CHINA_LON[0] <= lon <= CHINA_LON[1] and CHINA_LAT[0] <= lat <= CHINA_LAT[1]:
            e, n = transformer(STORAGE_EPSG, METRIC_EPSG).transform(lon, lat)
            if math.isfinite(e) and math.isfinite(n):
                return lon, lat, e, n
    lon_a, lat_a = to_storage(x, y, spec, axis_order=axis_order)
    e_a, n_a = to_metric(lon_a, lat_a)
    return float(lon_a), float(lat_a), float(e_a), float(n_a)


def from_metric(easting: ArrayLike, northing: ArrayLike) -> tuple[Array, Array]:
    """Validate EPSG:4548 easting/northing and return (lon, lat) arrays in EPSG:4490."""
    return to_storage(easting, northing, METRIC_CRS)
