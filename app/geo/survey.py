"""The land-survey coordinate exchange text (土地勘测定界 坐标交换格式) to parcels in EPSG:4548 metres.

A file has a `[属性描述]` section of `key=value` lines and a `[地块坐标]` section: per parcel a line
`点数,面积,编号,名称,面,图幅号,用途,@` followed by point lines `点号,圈号,X,Y`, where X is the northing, Y the
easting (with or without zone prefix), 圈号 1 the outer ring and higher numbers holes, each ring closed by repeating
its first point. Only CGCS2000 coordinates on central meridian 117°E (3-degree zone 39, 6-degree zone 20) are
accepted: a zone change or datum conversion is the surveyor's job, never guessed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shapely.geometry import Polygon

from app.errors import InputTooLarge, InvalidCoordinates, InvalidGeometry, InvalidInput, UnknownCRS
from app.geo.crs import GK_ZONE, GK_ZONE_6DEG, MAX_EASTING, MAX_NORTHING, METRIC_CRS, ZONE_FACTOR, fmt_num
from app.geo.geometry import validate_geometry

MAX_SURVEY_BYTES = 5 * 1024 * 1024
MAX_SURVEY_PARCELS = 1_000
MAX_SURVEY_POINTS = 200_000

HEADER_SECTION = "属性描述"
PARCEL_SECTION = "地块坐标"

_CRS_BY_PREFIX = {GK_ZONE: "EPSG:4527", GK_ZONE_6DEG: "EPSG:4498", None: "EPSG:4548"}
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OTHER_DATUMS = ("80", "西安", "54", "北京", "WGS", "84")


@dataclass(frozen=True)
class SurveyParcel:
    """One parcel: its attributes as written and its polygon in EPSG:4548 metres (x = easting, y = northing)."""

    index: int  # 1-based order in the file
    code: str  # 编号
    name: str  # 名称
    use: str  # 用途
    declared_area: float | None  # 面积 as written (usually hectares in this format); not checked against the polygon
    shape: str  # 图形属性, "面"
    sheet: str  # 图幅号
    point_count: int
    polygon: Polygon
    line: int  # line number of the parcel line
    extra_fields: tuple[str, ...] = ()  # fields between 用途 and "@" (e.g. 地类编码)


@dataclass(frozen=True)
class SurveyFile:
    """A parsed survey file: header, the CRS its coordinates were written in, and parcels in EPSG:4548."""

    header: dict[str, str]
    source_crs: str  # EPSG:4527 (prefix 39), EPSG:4498 (6-degree prefix 20) or EPSG:4548 (no prefix)
    zone: int
    zone_width: int  # 3 or 6
    encoding: str
    parcels: tuple[SurveyParcel, ...]
    warnings: tuple[str, ...] = ()  # Chinese notes on assumptions made (missing 坐标系 or 带号)
    crs: str = METRIC_CRS  # the CRS of every parcel polygon


@dataclass
class _RawPoint:
    line: int
    name: str
    ring: int
    x: float  # northing as written
    y: float  # easting as written, possibly with zone prefix


@dataclass
class _RawParcel:
    line: int
    fields: list[str]
    declared_points: int
    declared_area: float | None
    points: list[_RawPoint] = field(default_factory=list)

    @property
    def code(self) -> str:
        return self.fields[2]

    @property
    def label(self) -> str:
        code, name = self.fields[2], self.fields[3]
        return f"地块 {code or '（无编号）'}" + (f"（{name}）" if name else "")


def decode_survey_bytes(data: bytes) -> tuple[str, str]:
    """Decode survey file bytes as UTF-8 (with or without BOM), else GB18030 (a superset of GBK); refuse others."""
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidInput("勘测定界坐标文件应以原始字节上传。", detail=f"survey input of type {type(data).__name__}")
    if len(data) > MAX_SURVEY_BYTES:
        raise InputTooLarge(
            f"勘测定界坐标文件过大（{len(data)} 字节，上限 {MAX_SURVEY_BYTES} 字节）。",
            detail=f"survey file of {len(data)} bytes",
            size=len(data),
            limit=MAX_SURVEY_BYTES,
        )
    if not data.strip():
        raise InvalidInput("勘测定界坐标文件为空。", detail="empty survey file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidInput(
            "文件是 UTF-16 编码，不受支持：请另存为 UTF-8 或 GBK 编码的文本文件。", detail="UTF-16 BOM", encoding="utf-16"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return bytes(data[3:]).decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"文件标明为 UTF-8（带 BOM），但第 {exc.start + 4} 字节处不是有效的 UTF-8。请检查文件编码。",
                detail=f"invalid UTF-8 after BOM at byte {exc.start + 3}",
                byte_offset=exc.start + 3,
            ) from None
    try:
        return bytes(data).decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return bytes(data).decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"无法识别文件编码：既不是 UTF-8，也不是 GBK/GB18030（第 {exc.start + 1} 字节处无效）。"
            "请上传文本格式的勘测定界坐标文件。",
            detail=f"undecodable survey bytes at {exc.start}",
            byte_offset=exc.start,
        ) from None


def _line_error(cls: type[InvalidInput], lineno: int, message: str, detail: str, **context: object) -> InvalidInput:
    return cls(f"第 {lineno} 行：{message}", detail=f"line {lineno}: {detail}", line=lineno, **context)


def _number(text: str, lineno: int, what: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise _line_error(
            InvalidCoordinates, lineno, f"{what}“{text[:30]}”不是有效的数字（应为半角数字，如 5494123.456）。",
            f"non-numeric {what} {text[:30]!r}", value=text[:30],
        )
    return float(text)


def _read_sections(text: str) -> tuple[dict[str, str], dict[str, int], list[_RawParcel]]:
    header: dict[str, str] = {}
    header_lines: dict[str, int] = {}
    parcels: list[_RawParcel] = []
    seen: dict[str, int] = {}
    section: str | None = None
    total_points = 0
    lines = re.split(r"\r\n|\r|\n", text)
    for lineno, raw in enumerate(lines, 1):
        if _CONTROL.search(raw):
            raise _line_error(InvalidInput, lineno, "含有控制字符，这不是文本格式的坐标文件。", "control character")
        line = raw.strip()
        if not line:
            continue
        heading = re.fullmatch(r"\[\s*(.+?)\s*\]", line)
        if heading:
            section = heading.group(1)
            if section not in (HEADER_SECTION, PARCEL_SECTION):
                raise _line_error(
                    InvalidInput, lineno, f"未知的节 [{section[:20]}]，应为 [{HEADER_SECTION}] 或 [{PARCEL_SECTION}]。",
                    f"unknown section {section[:20]!r}",
                )
            if section in seen:
                raise _line_error(
                    InvalidInput, lineno, f"节 [{section}] 重复出现（第 {seen[section]} 行已有）。", "duplicate section"
                )
            seen[section] = lineno
            continue
        if section is None:
            raise _line_error(
                InvalidInput, lineno, f"内容位于任何节之前；文件应以 [{HEADER_SECTION}] 开始。", "content before a section"
            )
        if section == HEADER_SECTION:
            key, sep, value = line.replace("＝", "=").partition("=")
            key = key.strip()
            if not sep and line.endswith(",@"):
                raise _line_error(
                    InvalidInput, lineno, f"地块行出现在 [{HEADER_SECTION}] 节中：地块坐标之前缺少 [{PARCEL_SECTION}] 节标题。",
                    "parcel line in header section",
                )
            if not sep or not key:
                raise _line_error(
                    InvalidInput, lineno, f"[{HEADER_SECTION}] 中的行应为“键=值”，实际为“{line[:30]}”。", "bad header line"
                )
            if key in header:
                raise _line_error(
                    InvalidInput, lineno, f"属性“{key}”重复（第 {header_lines[key]} 行已有）。", f"duplicate key {key!r}"
                )
            header[key], header_lines[key] = value.strip(), lineno
            continue
        fields = [f.strip() for f in line.split(",")]
        if fields[-1] == "@":
            parcels.append(_parcel_line(fields, lineno, len(parcels)))
            continue
        if len(fields) != 4:
            raise _line_error(
                InvalidInput, lineno,
                f"无法识别“{line[:40]}”：应为地块行（点数,面积,编号,名称,面,图幅号,用途,@）或界址点行（点号,圈号,X,Y）。",
                f"unrecognised line with {len(fields)} fields",
            )
        if not parcels:
            raise _line_error(
                InvalidInput, lineno, "界址点行之前缺少地块行（点数,面积,编号,名称,面,图幅号,用途,@）。", "point before parcel"
            )
        total_points += 1
        if total_points > MAX_SURVEY_POINTS:
            raise InputTooLarge(
                f"坐标文件的界址点超过上限 {MAX_SURVEY_POINTS} 个（第 {lineno} 行）。",
                detail=f"more than {MAX_SURVEY_POINTS} points",
                line=lineno,
                limit=MAX_SURVEY_POINTS,
            )
        name, ring_text, x_text, y_text = fields
        if not re.fullmatch(r"[0-9]+", ring_text) or int(ring_text) < 1:
            raise _line_error(
                InvalidInput, lineno, f"圈号“{ring_text[:20]}”应为正整数（1 为外环，2 及以上为内环）。", "bad ring number"
            )
        parcels[-1].points.append(
            _RawPoint(lineno, name, int(ring_text), _number(x_text, lineno, "X 坐标"), _number(y_text, lineno, "Y 坐标"))
        )
    for name in (HEADER_SECTION, PARCEL_SECTION):
        if name not in seen:
            raise InvalidInput(
                f"坐标文件缺少 [{name}] 节。勘测定界坐标交换格式应包含 [{HEADER_SECTION}] 与 [{PARCEL_SECTION}] 两节。",
                detail=f"missing section [{name}]",
                section=name,
            )
    if not parcels:
        raise InvalidInput(
            f"[{PARCEL_SECTION}] 节（第 {seen[PARCEL_SECTION]} 行）中没有任何地块。",
            detail="no parcels",
            line=seen[PARCEL_SECTION],
        )
    return header, header_lines, parcels


def _parcel_line(fields: list[str], lineno: int, count: int) -> _RawParcel:
    if len(fields) < 8:
        raise _line_error(
            InvalidInput, lineno,
            f"地块行只有 {len(fields)} 个字段，应为“点数,面积,编号,名称,面,图幅号,用途,@”（8 个字段）。",
            f"parcel line with {len(fields)} fields",
        )
    if count + 1 > MAX_SURVEY_PARCELS:
        raise InputTooLarge(
            f"坐标文件的地块超过上限 {MAX_SURVEY_PARCELS} 个（第 {lineno} 行）。",
            detail=f"more than {MAX_SURVEY_PARCELS} parcels",
            line=lineno,
            limit=MAX_SURVEY_PARCELS,
        )
    if not re.fullmatch(r"[0-9]+", fields[0]) or int(fields[0]) < 1:
        raise _line_error(InvalidInput, lineno, f"点数“{fields[0][:20]}”应为正整数。", "bad point count")
    declared = int(fields[0])
    if declared > MAX_SURVEY_POINTS:
        raise InputTooLarge(
            f"第 {lineno} 行：地块声明 {declared} 个界址点，超过上限 {MAX_SURVEY_POINTS} 个。",
            detail=f"declared {declared} points",
            line=lineno,
            limit=MAX_SURVEY_POINTS,
        )
    area = None
    if fields[1]:
        if not _NUMBER.fullmatch(fields[1]) or float(fields[1]) < 0:
            raise _line_error(InvalidInput, lineno, f"面积“{fields[1][:20]}”不是非负数字。", "bad area")
        area = float(fields[1])
    if fields[4] not in ("面", ""):
        raise _line_error(
            InvalidInput, lineno, f"图形属性为“{fields[4][:10]}”：场址地块应为“面”。", f"shape {fields[4][:10]!r}"
        )
    return _RawParcel(lineno, fields, declared, area)


def _header_int(header: dict[str, str], lines: dict[str, int], key: str, pattern: str, expected: str) -> int | None:
    value = header.get(key, "")
    if not value:
        return None
    m = re.fullmatch(pattern, value)
    if m is None:
        raise _line_error(InvalidInput, lines[key], f"{key}“{value[:20]}”无法识别，应为{expected}。", f"bad {key}")
    return int(m.group(1))


def _check_header(header: dict[str, str], lines: dict[str, int], warnings: list[str]) -> tuple[int | None, int | None]:
    datum = header.get("坐标系", "")
    if not datum:
        warnings.append("属性描述未注明坐标系，按 2000 国家大地坐标系（CGCS2000）处理。")
    elif "2000" not in datum and "CGCS" not in datum.upper():
        known = any(mark in datum.upper() for mark in _OTHER_DATUMS)
        raise UnknownCRS(
            f"第 {lines['坐标系']} 行：坐标系为“{datum[:30]}”，"
            + ("本系统只接受 2000 国家大地坐标系（CGCS2000）的坐标，请先由测绘单位转换后再上传（系统不做基准转换）。"
               if known else "无法识别；本系统只接受 2000 国家大地坐标系（CGCS2000）的高斯-克吕格坐标。"),
            detail=f"survey datum {datum[:30]!r}",
            line=lines["坐标系"],
            given=datum[:30],
            expected_crs="CGCS2000",
        )
    projection = header.get("投影类型", "")
    if projection and not ("高斯" in projection or "GAUSS" in projection.upper() or "克吕格" in projection):
        raise UnknownCRS(
            f"第 {lines['投影类型']} 行：投影类型为“{projection[:20]}”，应为高斯-克吕格投影。",
            detail=f"projection {projection[:20]!r}",
            line=lines["投影类型"],
        )
    unit = header.get("计量单位", "")
    if unit and unit.lower() not in ("米", "m", "metre", "meter", "metres", "meters"):
        raise _line_error(InvalidInput, lines["计量单位"], f"计量单位为“{unit[:10]}”，应为米。", f"unit {unit[:10]!r}")
    params = header.get("转换参数", "")
    if re.search(r"[1-9]", params):
        warnings.append(f"属性描述含转换参数（{params[:60]}），系统未使用；坐标按 CGCS2000 直接处理。")
    width = _header_int(header, lines, "几度分带", r"\s*([36])\s*(?:度|°)?\s*(?:带|分带)?\s*", "3 或 6")
    zone = _header_int(header, lines, "带号", r"\s*([0-9]{1,2})\s*", "带号数字（如 39）")
    return width, zone


def _zone_text(width: int, zone: int) -> str:
    cm = 3 * zone if width == 3 else 6 * zone - 3
    return f"{width} 度带第 {zone} 带（中央经线 {cm}°E）"


def _prefix(point: _RawPoint) -> int | None:
    """Zone prefix of the easting, after refusing swapped or malformed coordinates."""
    x, y = point.x, point.y
    if x >= 10 * ZONE_FACTOR or (x < ZONE_FACTOR and ZONE_FACTOR <= y < 10 * ZONE_FACTOR):
        raise _line_error(
            InvalidCoordinates, point.line,
            f"点 {point.name} 的 X={fmt_num(x)}、Y={fmt_num(y)} 可能颠倒：本格式 X 为北坐标（满洲里约 5,490,000 米），"
            "Y 为东坐标（约 39,530,000 或 530,000 米）。",
            "X and Y look swapped", location=[x, y], hint="swapped_axes",
        )
    if y >= 10 * ZONE_FACTOR and y < 100 * ZONE_FACTOR:
        return int(y // ZONE_FACTOR)
    if 0.0 < y < MAX_EASTING:
        return None
    raise _line_error(
        InvalidCoordinates, point.line,
        f"点 {point.name} 的 Y（东坐标）{fmt_num(y)} 无效：应为带号加 6 位整数米（如 39530000.00）或不含带号的 6 位整数米。",
        f"implausible easting {y}", location=[x, y],
    )


def _resolve_zone(
    header: dict[str, str], lines: dict[str, int], parcels: list[_RawParcel], warnings: list[str]
) -> tuple[int | None, int, int]:
    width, header_zone = _check_header(header, lines, warnings)
    first: _RawPoint | None = None
    prefix: int | None = None
    for parcel in parcels:
        for point in parcel.points:
            p = _prefix(point)
            if first is None:
                first, prefix = point, p
            elif p != prefix:
                raise _line_error(
                    InvalidCoordinates, point.line,
                    f"点 {point.name} 的东坐标{'带号为 ' + str(p) if p else '不含带号'}，而第 {first.line} 行的东坐标"
                    f"{'带号为 ' + str(prefix) if prefix else '不含带号'}；同一文件中的东坐标写法应一致。",
                    "mixed zone prefixes", zone_found=p, location=[point.x, point.y],
                )
    if prefix is not None and header_zone is not None and header_zone != prefix:
        raise InvalidCoordinates(
            f"属性描述第 {lines['带号']} 行的带号为 {header_zone}，而坐标（第 {first.line} 行起）的东坐标带号为 {prefix}，"
            "两者不一致。请核对坐标所在带。",
            detail=f"header zone {header_zone} != easting prefix {prefix}",
            line=lines["带号"],
            zone_found=prefix,
            zone_declared=header_zone,
        )
    zone = prefix if prefix is not None else header_zone
    if zone is None:
        zone = GK_ZONE if width in (None, 3) else GK_ZONE_6DEG
        warnings.append(f"文件未注明带号且东坐标不含带号，按{_zone_text(width or 3, zone)}处理。")
    if width is None:
        width = 6 if 13 <= zone <= 23 else 3
    if (width, zone) not in ((3, GK_ZONE), (6, GK_ZONE_6DEG)):
        where = f"（第 {lines['带号']} 行）" if "带号" in lines else f"（第 {first.line} 行起的东坐标）" if first else ""
        raise InvalidCoordinates(
            f"坐标属于{_zone_text(width, zone)}{where}，而满洲里位于 3 度带第 39 带或 6 度带第 20 带（中央经线 117°E）。"
            "系统不会自动换带，请提供中央经线 117°E 的坐标。",
            detail=f"zone {zone} ({width}-degree) is not central meridian 117E",
            zone_found=zone,
            zone_width=width,
            zone_expected=GK_ZONE,
        )
    return prefix, zone, width


def _rings(parcel: _RawParcel, prefix: int | None) -> list[list[tuple[float, float]]]:
    rings: dict[int, list[_RawPoint]] = {}
    order: list[int] = []
    for point in parcel.points:
        if not order or order[-1] != point.ring:
            if point.ring in rings:
                raise _line_error(
                    InvalidGeometry, point.line,
                    f"{parcel.label} 第 {point.ring} 圈的点不连续（该圈已在前面出现过），每一圈的点应连续排列。",
                    f"ring {point.ring} not contiguous", parcel_code=parcel.code, ring=point.ring,
                )
            if not order and point.ring != 1:
                raise _line_error(
                    InvalidGeometry, point.line,
                    f"{parcel.label} 的第一圈圈号为 {point.ring}，应为 1（外环）。",
                    "first ring is not 1", parcel_code=parcel.code, ring=point.ring,
                )
            order.append(point.ring)
            rings[point.ring] = []
        rings[point.ring].append(point)
    offset = (prefix or 0) * ZONE_FACTOR
    result = []
    for number in order:
        points = rings[number]
        kind = "外环" if number == 1 else "内环"
        lines_text = f"第 {points[0].line}～{points[-1].line} 行"
        if len(points) < 4:
            raise InvalidGeometry(
                f"{parcel.label} 第 {number} 圈（{kind}，{lines_text}）只有 {len(points)} 个点，"
                "至少需要 4 个（3 个不同的点，并重复首点闭合）。",
                detail=f"parcel {parcel.code} ring {number}: {len(points)} points",
                line=points[0].line, parcel_code=parcel.code, ring=number, point_count=len(points),
            )
        head, tail = points[0], points[-1]
        if (head.x, head.y) != (tail.x, tail.y):
            raise InvalidGeometry(
                f"{parcel.label} 第 {number} 圈（{kind}，{lines_text}）未闭合：首点 {head.name} "
                f"(X={fmt_num(head.x)}, Y={fmt_num(head.y)}) 与末点 {tail.name} "
                f"(X={fmt_num(tail.x)}, Y={fmt_num(tail.y)}) 不同。本格式要求每一圈以重复首点结束，系统不会自动闭合。",
                detail=f"parcel {parcel.code} ring {number} not closed",
                line=tail.line, parcel_code=parcel.code, ring=number, location=[head.x, head.y],
            )
        coords = []
        for point in points:
            easting = point.y - offset
            if not (0.0 < easting < MAX_EASTING and 0.0 < point.x < MAX_NORTHING):
                raise _line_error(
                    InvalidCoordinates, point.line,
                    f"点 {point.name} 的坐标 X={fmt_num(point.x)}、Y={fmt_num(point.y)} 超出合理范围"
                    "（X 北坐标 0～10,000,000 米，Y 东坐标去掉带号后 0～1,000,000 米）。",
                    "coordinate out of range", location=[point.x, point.y],
                )
            coords.append((easting, point.x))
        result.append(coords)
    return result


def parse_survey(data: bytes) -> SurveyFile:
    """Parse a land-survey coordinate exchange file (bytes) into parcels with polygons in EPSG:4548 metres."""
    text, encoding = decode_survey_bytes(data)
    header, header_lines, raw_parcels = _read_sections(text)
    for parcel in raw_parcels:
        if len(parcel.points) != parcel.declared_points:
            raise InvalidInput(
                f"第 {parcel.line} 行：{parcel.label} 声明点数为 {parcel.declared_points}，"
                f"实际有 {len(parcel.points)} 个界址点行。请核对点数或补全坐标。",
                detail=f"parcel {parcel.code}: declared {parcel.declared_points} points, found {len(parcel.points)}",
                line=parcel.line,
                parcel_code=parcel.code,
                declared_points=parcel.declared_points,
                found_points=len(parcel.points),
            )
    warnings: list[str] = []
    prefix, zone, width = _resolve_zone(header, header_lines, raw_parcels, warnings)
    parcels = []
    for index, raw in enumerate(raw_parcels, 1):
        rings = _rings(raw, prefix)
        polygon = Polygon(rings[0], rings[1:])
        validate_geometry(polygon, label=f"{raw.label}（第 {raw.line} 行）", line=raw.line, parcel_code=raw.code)
        parcels.append(
            SurveyParcel(
                index=index,
                code=raw.fields[2],
                name=raw.fields[3],
                use=raw.fields[6],
                declared_area=raw.declared_area,
                shape=raw.fields[4],
                sheet=raw.fields[5],
                point_count=raw.declared_points,
                polygon=polygon,
                line=raw.line,
                extra_fields=tuple(raw.fields[7:-1]),
            )
        )
    return SurveyFile(
        header=header,
        source_crs=_CRS_BY_PREFIX[prefix],
        zone=zone,
        zone_width=width,
        encoding=encoding,
        parcels=tuple(parcels),
        warnings=tuple(warnings),
    )
