"""Validation of a draft dataset before it is published: what is wrong (errors) and what needs a look (warnings).

A draft is the current version with one or more layers replaced by an upload. Every replaced layer is checked
against the dataset contract (fields, types, enums), feature by feature (geometry valid, non-empty, of the layer's
kind, inside the territory) and by key (present, unique; unit codes well formed and consistent with the unit's type,
county and category). Control units are checked as a partition of the territory (no overlaps, no gaps, the plan's
5 + 10 structure, units lost, added or resized), the red line against Plan 8.1 "面积不减少" (total area must not
decrease unless an approval document is cited; patches inside priority units and not overlapping), and the access
list against the draft's unit codes.

Every issue names a machine code, a severity, the layer and the feature, and says in Chinese what to change; where
it can, it gives a location ([lon, lat], EPSG:4490) and the geometry at fault (GeoJSON, EPSG:4490). Areas are m² in
EPSG:4548. Errors block publishing; warnings need acknowledgement (the caller's business). Nothing here repairs
data: invalid geometry is measured after a structural repair only so that the other checks can still run.

Overlaps use an STRtree over the features (only pairs whose envelopes meet are intersected); gaps use one union.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely.errors import GEOSException

from app.domain.diff import (
    AREA_DECIMALS,
    as_storage,
    clean,
    diff_layers,
    embed,
    geometry_delta,
    is_lineal,
    is_polygonal,
    lonlat,
    metric_geoms,
    ordered_layer_names,
    plain,
    polygonal_part,
    union,
    union_area,
)
from app.domain.rules import RuleBase, check_against_dataset
from app.domain.schema import LAYERS, STORAGE_EPSG, UNIT_TYPE_NAMES_ZH, UNIT_TYPES, LayerSpec
from app.errors import RuleBaseError
from app.geo.geometry import explain_invalid

AREA_TOLERANCE_M2 = 1.0  # overlaps, gaps, spill-outs and red-line decreases at or below this are noise
LINE_TOLERANCE_M = 1.0  # a line may run this far outside the territory (a river on the boundary)
UNIT_AREA_CHANGE_WARN = 0.01  # a unit whose area changes by more than this share gets a warning
EXPECTED_UNIT_STRUCTURE = {"priority": 5, "key": 10, "general": 0}  # Plan 3.3
MAX_ISSUES_PER_CHECK = 50  # gap parts and reduced red-line patches beyond this are summed in one more issue
MAX_ISSUES_PER_CODE = 100  # issues of one code in one layer beyond this are counted in one more issue
ISSUE_MAX_VERTICES = 500  # vertices embedded per issue geometry
DIFF_MAX_VERTICES = 500  # vertices embedded per geometry of the report's diff

# Every issue code the validator emits, with its severity and a short Chinese title (for legends and docs).
ISSUE_CODES: dict[str, tuple[str, str]] = {
    "layer_unknown": ("error", "图层不在数据集约定中"),
    "layer_missing": ("error", "草稿缺少要替换的图层"),
    "layer_crs": ("error", "坐标系不是 CGCS2000（EPSG:4490）"),
    "missing_field": ("error", "缺少必填字段"),
    "wrong_field_type": ("error", "字段取值类型不符"),
    "invalid_enum_value": ("error", "字段取值不在允许范围内"),
    "geometry_empty": ("error", "几何为空"),
    "geometry_wrong_type": ("error", "几何类型与图层不符"),
    "geometry_invalid": ("error", "几何无效"),
    "outside_territory": ("error", "要素超出行政区域"),
    "key_missing": ("error", "标识字段为空"),
    "key_duplicate": ("error", "标识重复"),
    "unit_code_format": ("error", "单元编码格式错误"),
    "unit_code_type_mismatch": ("error", "编码类型码与 ZHGKDYFL 不一致"),
    "unit_code_county_mismatch": ("error", "编码行政区划代码与 XZQDM 不一致"),
    "unit_category_mismatch": ("error", "单元类别与单元类型不符"),
    "unit_category_unknown": ("warning", "单元类别无法识别"),
    "unit_overlap": ("error", "管控单元相互重叠"),
    "unit_gap": ("error", "行政区域内有未被管控单元覆盖的空隙"),
    "unit_structure": ("warning", "单元结构与规划 5 + 10 不一致"),
    "unit_removed": ("warning", "删除了现行版本的单元"),
    "unit_added": ("warning", "新增了单元"),
    "unit_area_change": ("warning", "单元面积变化超过阈值"),
    "red_line_decrease": ("error", "生态保护红线面积减少（无批准文件）"),
    "red_line_decrease_approved": ("warning", "生态保护红线面积减少（已登记批准文件）"),
    "red_line_patch_reduced": ("warning", "红线斑块缩小或被删除"),
    "red_line_outside_priority": ("warning", "红线斑块不在优先保护单元内"),
    "red_line_overlap": ("error", "红线斑块相互重叠"),
    "rule_unit_missing": ("error", "准入清单条款绑定的单元已不存在"),
    "rule_binding_invalid": ("error", "准入清单条款绑定无效"),
    "territory_missing": ("warning", "无法确定行政区域"),
    "check_failed": ("error", "空间检查无法完成"),
}

UNIT_CODE = re.compile(r"^ZH\d{6}[123]\d{4}$")
# Plan 3.3: what priority and key units mainly cover (matched as substrings of the unit's category DYLB).
PRIORITY_CATEGORIES = ("生态保护红线", "一般生态空间", "自然保护地", "饮用水水源保护区")
KEY_CATEGORIES = ("工业园区", "贸易区", "保税区", "城市", "采矿用地", "生态需水补给区")
CATEGORY_TYPE = {**{c: "1" for c in PRIORITY_CATEGORIES}, **{c: "2" for c in KEY_CATEGORIES}}

TYPE_NAMES_ZH = {"str": "文本", "int": "整数", "float": "数值", "date": "日期（YYYY-MM-DD）"}
ISSUE_LAYER = "validation_issues"
ISSUE_TABLE = "validation_issue_list"
SUMMARY_TABLE = "validation_summary"
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ----------------------------------------------------------------------------------------------------------------
# One layer of one version, read once
# ----------------------------------------------------------------------------------------------------------------


class _Layer:
    """Attributes, keys and geometry (storage, metric, usable metric) of one layer of one version."""

    def __init__(self, name: str, frame: gpd.GeoDataFrame) -> None:
        self.name = name
        self.spec: LayerSpec | None = LAYERS.get(name)
        self.kind = self.spec.geometry if self.spec else "polygon"
        self.frame = as_storage(frame)
        gcol = self.frame.geometry.name
        self.columns = [c for c in self.frame.columns if c != gcol]
        self.raw = {c: list(self.frame[c]) for c in self.columns}  # values as read, for the type check
        self.records = [{c: plain(self.raw[c][i]) for c in self.columns} for i in range(len(self.frame))]
        self.storage = list(self.frame.geometry.values)
        self.metric_raw = metric_geoms(self.frame)
        self.metric = [clean(g, "line" if self.kind == "line" else "polygon") for g in self.metric_raw]
        key = self.spec.key if self.spec else ()
        self.key_fields = key if key and all(f in self.columns for f in key) else ()
        self.keys: list[tuple | None] = []
        for rec in self.records:
            values = tuple(_text(rec.get(f)) for f in self.key_fields)
            self.keys.append(values if self.key_fields and all(values) else None)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def title(self) -> str:
        return f"{self.spec.title_zh}（{self.name}）" if self.spec else self.name

    def feature(self, i: int) -> dict[str, Any]:
        """The feature's key values and its row (0-based position in the layer)."""
        out: dict[str, Any] = {}
        if self.keys[i] is not None:
            out.update(dict(zip(self.key_fields, self.keys[i])))
        out["row"] = i
        return out

    def name_zh(self, i: int) -> str:
        """How a message names the feature."""
        rec = self.records[i]
        if self.name == "control_units":
            code = _text(rec.get("HJZHGKDYBM"))
            name = _text(rec.get("HJZHGKDYMC"))
            if code:
                return f"单元 {code}{f'（{name}）' if name else ''}"
            return f"第 {i + 1} 个单元{f'（{name}）' if name else ''}"
        title = self.spec.title_zh if self.spec else self.name
        if self.keys[i] is not None:
            return f"{title}要素 {' / '.join(self.keys[i])}"
        return f"{title}第 {i + 1} 个要素"

    def area(self, i: int) -> float:
        g = self.metric[i]
        return float(g.area) if g is not None and self.kind != "line" else 0.0

    def codes(self) -> dict[str, int]:
        """Unit code → row, first occurrence (control units)."""
        out: dict[str, int] = {}
        for i, k in enumerate(self.keys):
            if k is not None:
                out.setdefault(k[0], i)
        return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _type_ok(value: Any, kind: str) -> bool:
    if _is_null(value):
        return True
    if isinstance(value, (bool, np.bool_)):
        return False
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        if isinstance(value, (float, np.floating)):
            return float(value).is_integer()  # integer columns with nulls are read as floats
        return isinstance(value, (int, np.integer))
    if kind == "float":
        return isinstance(value, (int, float, np.integer, np.floating))
    if kind == "date":
        if isinstance(value, (date, datetime, pd.Timestamp, np.datetime64)):
            return True
        if isinstance(value, str) and _DATE_TEXT.match(value.strip()):
            try:
                date.fromisoformat(value.strip())
                return True
            except ValueError:
                return False
        return False
    return True


def _describe(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return f"布尔值 {bool(value)}"
    if isinstance(value, (int, np.integer)):
        return f"整数 {int(value)}"
    if isinstance(value, (float, np.floating)):
        return f"小数 {float(value):g}"
    if isinstance(value, str):
        return f"文本“{value[:30]}”"
    if isinstance(value, (date, datetime, pd.Timestamp, np.datetime64)):
        return f"日期 {plain(value)}"
    return type(value).__name__


def _m2(value: float) -> float:
    return round(float(value), AREA_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def _km2(value: float) -> str:
    return f"{value / 1e6:,.4f} 平方公里"


def _at(location: list[float] | None) -> str:
    return f"，位置约在 ({location[0]:.6f}, {location[1]:.6f})" if location else ""


def _where(geom_metric) -> list[float] | None:
    if geom_metric is None or geom_metric.is_empty:
        return None
    return lonlat(shapely.point_on_surface(geom_metric))


# ----------------------------------------------------------------------------------------------------------------
# The validator
# ----------------------------------------------------------------------------------------------------------------


class _Validation:
    def __init__(self, draft: Mapping[str, gpd.GeoDataFrame], current: Mapping[str, gpd.GeoDataFrame] | None,
                 replaced: list[str], rules: RuleBase | None, approval_ref: str | None) -> None:
        self.draft_frames = draft
        self.current_frames = current or {}
        self.replaced = replaced
        self.rules = rules
        self.approval_ref = approval_ref
        self.issues: list[dict[str, Any]] = []
        self._counts: dict[tuple, int] = defaultdict(int)
        self._suppressed: dict[tuple, int] = defaultdict(int)
        self._cache: dict[tuple[str, str], _Layer | None] = {}
        self.territory = None
        self.territory_source = None

    # -- plumbing -----------------------------------------------------------------------------------------------

    def layer(self, side: str, name: str) -> _Layer | None:
        if (side, name) not in self._cache:
            frames = self.draft_frames if side == "draft" else self.current_frames
            frame = frames.get(name)
            self._cache[(side, name)] = _Layer(name, frame) if frame is not None else None
        return self._cache[(side, name)]

    def add(self, code_: str, severity_: str, layer_: str | None, feature_: Any, message_: str, *,
            location: list[float] | None = None, geometry_metric=None, **detail: Any) -> None:
        """Record one issue; `detail` holds the numbers and names a caller may want (areas, rows, fields)."""
        group = (code_, severity_, layer_)
        if self._counts[group] >= MAX_ISSUES_PER_CODE:
            self._suppressed[group] += 1
            return
        self._counts[group] += 1
        geometry, capped, note = embed(geometry_metric, ISSUE_MAX_VERTICES) if geometry_metric is not None \
            else (None, False, None)
        if location is None and geometry_metric is not None:
            location = _where(geometry_metric)
        if capped:
            detail["geometry_capped"] = True
            detail["geometry_note"] = note
        self.issues.append({"code": code_, "severity": severity_, "layer": layer_, "feature": feature_,
                            "message": message_, "location": location, "geometry": geometry, "detail": detail})

    def guarded(self, check, layer: str | None) -> None:
        """Run one spatial check; a GEOS failure on broken input becomes an error instead of a crash."""
        try:
            check()
        except GEOSException as exc:
            self.add("check_failed", "error", layer, None,
                     f"图层 {layer or ''} 的空间检查无法完成（{exc}）。通常是几何严重损坏所致，请先修正上面列出的几何错误。",
                     reason=str(exc))

    # -- the run ------------------------------------------------------------------------------------------------

    def run(self) -> None:
        usable: list[str] = []
        for name in self.replaced:
            if name not in LAYERS:
                self.add("layer_unknown", "error", name, None,
                         f"要替换的图层 {name} 不在数据集约定中。可用的图层：{'、'.join(LAYERS)}。请检查图层名称。")
                continue
            if self.draft_frames.get(name) is None:
                self.add("layer_missing", "error", name, None,
                         f"草稿中没有要替换的图层 {LAYERS[name].title_zh}（{name}）。请确认上传文件包含该图层。")
                continue
            self.check_crs(name)
            usable.append(name)
        self.usable = usable
        for name in usable:
            layer = self.layer("draft", name)
            self.check_contract(layer)
            self.check_geometry(layer)
            self.check_keys(layer)
            if name == "control_units":
                self.check_unit_codes(layer)
        self.resolve_territory()
        self.guarded(self.check_outside, None)
        if {"control_units", "admin_boundary"} & set(usable):
            self.guarded(self.check_unit_partition, "control_units")
        if "control_units" in usable:
            self.check_unit_structure()
            self.check_unit_changes()
        self.guarded(self.check_red_line, "red_line")
        if self.rules is not None:
            self.check_rules()
        for (code, severity, layer), n in self._suppressed.items():
            self.issues.append({
                "code": code, "severity": severity, "layer": layer, "feature": None,
                "message": f"另有 {n} 个同类问题（{code}）未逐一列出。请先修正上面列出的问题，重新上传后再查看其余问题。",
                "location": None, "geometry": None, "detail": {"suppressed": n}})

    # -- contract -----------------------------------------------------------------------------------------------

    def check_crs(self, name: str) -> None:
        crs = self.draft_frames[name].crs
        if crs is None:
            self.add("layer_crs", "error", name, None,
                     f"图层 {LAYERS[name].title_zh}（{name}）没有声明坐标系。数据集图层应为 CGCS2000 地理坐标"
                     f"（EPSG:{STORAGE_EPSG}）；本次按 EPSG:{STORAGE_EPSG} 检查。请在 GIS 软件中正确声明坐标系后重新上传。")
        elif crs.to_epsg() != STORAGE_EPSG:
            self.add("layer_crs", "error", name, None,
                     f"图层 {LAYERS[name].title_zh}（{name}）的坐标系为 {crs.name}，应为 CGCS2000 地理坐标"
                     f"（EPSG:{STORAGE_EPSG}）。请在 GIS 软件中转换坐标系后重新上传。", crs=str(crs.name))

    def check_contract(self, layer: _Layer) -> None:
        spec = layer.spec
        assert spec is not None
        for fld, kind in spec.fields.items():
            if fld not in layer.columns:
                have = "、".join(layer.columns) if layer.columns else "（无属性字段）"
                self.add("missing_field", "error", layer.name, None,
                         f"图层 {layer.title} 缺少必填字段 {fld}（{TYPE_NAMES_ZH[kind]}）。文件中的字段为：{have}。"
                         f"请补充该字段（或在上传时指定字段对应关系）后重新上传。",
                         field=fld, present=list(layer.columns))
                continue
            bad = [i for i, v in enumerate(layer.raw[fld]) if not _type_ok(v, kind)]
            if bad:
                first = bad[0]
                self.add("wrong_field_type", "error", layer.name, None,
                         f"图层 {layer.title} 的字段 {fld} 应为{TYPE_NAMES_ZH[kind]}，有 {len(bad)} 个要素的取值类型不符"
                         f"（如{layer.name_zh(first)}为{_describe(layer.raw[fld][first])}）。"
                         f"请在上传文件中把该字段改为{TYPE_NAMES_ZH[kind]}后重新上传。",
                         field=fld, expected=kind, rows=bad[:20], count=len(bad))
            allowed = spec.enums.get(fld)
            if allowed is None:
                continue
            for i, rec in enumerate(layer.records):
                value = _text(rec.get(fld))
                if value in allowed:
                    continue
                shown = "为空" if value is None else f"“{value}”"
                self.add("invalid_enum_value", "error", layer.name, layer.feature(i),
                         f"{layer.name_zh(i)}的字段 {fld} 取值{shown}不在允许范围内（允许：{'、'.join(allowed)}）。"
                         f"请改为允许的取值。", field=fld, value=value, allowed=list(allowed),
                         location=self.point_of(layer, i))

    def point_of(self, layer: _Layer, i: int) -> list[float] | None:
        g = layer.metric[i]
        try:
            return _where(g)
        except GEOSException:
            return None

    # -- per feature --------------------------------------------------------------------------------------------

    def check_geometry(self, layer: _Layer) -> None:
        polygon = layer.kind != "line"
        expected = "面（Polygon / MultiPolygon）" if polygon else "线（LineString / MultiLineString）"
        for i, g in enumerate(layer.storage):
            if g is None or g.is_empty:
                self.add("geometry_empty", "error", layer.name, layer.feature(i),
                         f"{layer.name_zh(i)}没有几何（几何为空）。请补绘边界或删除该要素。")
                continue
            if (polygon and not is_polygonal(g)) or (not polygon and not is_lineal(g)):
                self.add("geometry_wrong_type", "error", layer.name, layer.feature(i),
                         f"{layer.name_zh(i)}的几何类型为 {g.geom_type}，而图层 {layer.title} 应为{expected}。"
                         f"请检查是否误传了其他类型的图层，或把该要素改绘为{expected}。",
                         geometry_type=g.geom_type, location=_storage_point(g))
                continue
            problem = explain_invalid(g)
            if problem is None:
                continue
            text, location, reason = problem
            location = [round(v, 7) for v in location] if location else None
            self.add("geometry_invalid", "error", layer.name, layer.feature(i),
                     f"{layer.name_zh(i)}的几何无效：{text}{_at(location)}。请在 GIS 软件中修正该处边界后重新上传"
                     f"（系统不会自动修复）。", reason=reason, location=location)

    # -- keys ---------------------------------------------------------------------------------------------------

    def check_keys(self, layer: _Layer) -> None:
        spec = layer.spec
        if not spec or not spec.key or any(f not in layer.columns for f in spec.key):
            return  # a missing key field is reported by the contract check
        fields = "、".join(spec.key)
        rows: dict[tuple, list[int]] = defaultdict(list)
        for i, k in enumerate(layer.keys):
            if k is None:
                self.add("key_missing", "error", layer.name, {"row": i},
                         f"{layer.name_zh(i)}的标识字段 {fields} 为空，版本之间无法识别该要素。请填写{fields}。",
                         fields=list(spec.key), location=self.point_of(layer, i))
            else:
                rows[k].append(i)
        for k, idx in sorted(rows.items()):
            if len(idx) < 2:
                continue
            label = " / ".join(k)
            self.add("key_duplicate", "error", layer.name, {**dict(zip(spec.key, k)), "rows": idx},
                     f"图层 {layer.title} 中有 {len(idx)} 个要素的标识 {fields} 同为“{label}”"
                     f"（第 {'、'.join(str(i + 1) for i in idx)} 个要素）。标识必须唯一，请修改重复的编码，"
                     f"或把属于同一对象的要素合并为一个多面要素。", rows=idx, location=self.point_of(layer, idx[0]))

    def check_unit_codes(self, layer: _Layer) -> None:
        cols = set(layer.columns)
        for i, rec in enumerate(layer.records):
            raw_code = rec.get("HJZHGKDYBM")
            code = _text(raw_code)
            if code is None:
                continue  # key_missing
            where = self.point_of(layer, i)
            feature = layer.feature(i)
            if not UNIT_CODE.match(str(raw_code)):
                self.add("unit_code_format", "error", layer.name, feature,
                         f"{layer.name_zh(i)}的编码“{raw_code}”不符合格式：应为 ZH + 6 位县级行政区划代码 + 类型码"
                         f"（1 优先保护 / 2 重点管控 / 3 一般管控）+ 4 位流水号，例如 ZH15078110001。请更正编码。",
                         unit_code=str(raw_code), location=where)
                continue
            digit, county = code[8], code[2:8]
            declared = _text(rec.get("ZHGKDYFL")) if "ZHGKDYFL" in cols else None
            if declared in UNIT_TYPES and declared != digit:
                self.add("unit_code_type_mismatch", "error", layer.name, feature,
                         f"{layer.name_zh(i)}编码中的类型码为 {digit}（{_type_zh(digit)}），但字段 ZHGKDYFL 为 {declared}"
                         f"（{_type_zh(declared)}）。请核对单元类型，使编码与 ZHGKDYFL 一致。",
                         code_type=digit, field_type=declared, location=where)
            xzqdm = _text(rec.get("XZQDM")) if "XZQDM" in cols else None
            if xzqdm is not None and xzqdm != county:
                self.add("unit_code_county_mismatch", "error", layer.name, feature,
                         f"{layer.name_zh(i)}编码中的行政区划代码为 {county}，但字段 XZQDM 为 {xzqdm}。"
                         f"请核对单元所在县级行政区，使编码与 XZQDM 一致。",
                         code_county=county, field_county=xzqdm, location=where)
            if "DYLB" not in cols or declared not in UNIT_TYPES:
                continue
            category = _text(rec.get("DYLB")) or ""
            matched = sorted({c for c in CATEGORY_TYPE if c in category})
            expected = {CATEGORY_TYPE[c] for c in matched}
            if not matched:
                self.add("unit_category_unknown", "warning", layer.name, feature,
                         f"{layer.name_zh(i)}的单元类别“{category or '（空）'}”不在规划第三章第三节列出的类别中，"
                         f"无法核对其单元类型。请确认类别填写无误。", category=category, location=where)
            elif declared not in expected:
                wants = "、".join(_type_zh(t) for t in sorted(expected))
                self.add("unit_category_mismatch", "error", layer.name, feature,
                         f"{layer.name_zh(i)}的类别“{category}”（{'、'.join(matched)}）应属于{wants}，但 ZHGKDYFL 为 "
                         f"{declared}（{_type_zh(declared)}）。规划第三章第三节：优先保护单元主要包括生态保护红线、一般生态空间、"
                         f"自然保护地、集中式饮用水水源保护区；重点管控单元主要包括工业园区、贸易区、保税区、城市、采矿用地和"
                         f"生态需水补给区。请核对单元类型或类别。",
                         category=category, matched=matched, field_type=declared, location=where)

    # -- territory ----------------------------------------------------------------------------------------------

    def resolve_territory(self) -> None:
        side = "draft" if "admin_boundary" in self.replaced or self.layer("current", "admin_boundary") is None \
            else "current"
        admin = self.layer(side, "admin_boundary")
        if admin is None or not any(g is not None for g in admin.metric):
            self.add("territory_missing", "warning", "admin_boundary", None,
                     "无法确定行政区域（缺少有效的行政区划图层 admin_boundary），未检查要素是否超出行政区域、"
                     "管控单元是否覆盖全域。请同时提供行政区划图层。")
            return
        self.territory = union(admin.metric)
        shapely.prepare(self.territory)
        self.territory_source = side

    def check_outside(self) -> None:
        if self.territory is None:
            return
        names = list(self.usable)
        if "admin_boundary" in self.usable:  # a new territory: every layer of the draft must still fit in it
            names = ordered_layer_names(set(names) | {n for n in self.draft_frames if n in LAYERS})
        buffered = None
        for name in names:
            if name == "admin_boundary":
                continue
            layer = self.layer("draft", name)
            if layer is None:
                continue
            for i, g in enumerate(layer.metric):
                if g is None or self.territory.contains(g):
                    continue
                if layer.kind == "line":
                    if buffered is None:
                        buffered = self.territory.buffer(LINE_TOLERANCE_M)
                    outside = shapely.difference(g, buffered)
                    if outside.length <= LINE_TOLERANCE_M:
                        continue
                    self.add("outside_territory", "error", name, layer.feature(i),
                             f"{layer.name_zh(i)}有 {outside.length:,.1f} 米位于行政区域之外"
                             f"{_at(_where(outside))}。请把该要素裁剪到行政区域之内，或核对坐标系。",
                             geometry_metric=outside, length_m=_m2(outside.length))
                    continue
                outside = polygonal_part(shapely.difference(g, self.territory))
                area = outside.area if outside is not None else 0.0
                if area <= AREA_TOLERANCE_M2:
                    continue
                where = _where(outside)
                self.add("outside_territory", "error", name, layer.feature(i),
                         f"{layer.name_zh(i)}有 {area:,.1f} 平方米位于行政区域之外{_at(where)}。"
                         f"请把边界裁剪到行政区域之内，或核对坐标系。",
                         geometry_metric=outside, location=where, area_m2=_m2(area))

    # -- control units as a partition ---------------------------------------------------------------------------

    def check_unit_partition(self) -> None:
        layer = self.layer("draft", "control_units")
        if layer is None:
            return
        geoms = layer.metric
        present = [i for i, g in enumerate(geoms) if g is not None]
        if present:
            tree = shapely.STRtree([geoms[i] for i in present])
            left, right = tree.query([geoms[i] for i in present], predicate="intersects")
            for a, b in sorted({(min(x, y), max(x, y)) for x, y in zip(left.tolist(), right.tolist()) if x != y}):
                i, j = present[a], present[b]
                overlap = polygonal_part(shapely.intersection(geoms[i], geoms[j]))
                area = overlap.area if overlap is not None else 0.0
                if area <= AREA_TOLERANCE_M2:
                    continue
                where = _where(overlap)
                self.add("unit_overlap", "error", "control_units", layer.feature(i),
                         f"{layer.name_zh(i)}与{layer.name_zh(j)}重叠 {area:,.1f} 平方米{_at(where)}。"
                         f"同一城市的环境管控单元不得重叠，请修正两者的公共边界。",
                         geometry_metric=overlap, location=where, area_m2=_m2(area),
                         other_feature=layer.feature(j))
        if self.territory is None:
            return
        gap = polygonal_part(shapely.difference(self.territory, union(geoms)))
        parts = sorted((p for p in (shapely.get_parts(gap) if gap is not None else []) if p.area > AREA_TOLERANCE_M2),
                       key=lambda p: (-p.area, p.centroid.x, p.centroid.y))
        for p in parts[:MAX_ISSUES_PER_CHECK]:
            where = _where(p)
            self.add("unit_gap", "error", "control_units", None,
                     f"行政区域内有 {p.area:,.1f} 平方米未被任何环境管控单元覆盖{_at(where)}。环境管控单元应无缝覆盖全部"
                     f"行政区域，请把该区域划入相邻单元。", geometry_metric=p, location=where, area_m2=_m2(p.area))
        rest = parts[MAX_ISSUES_PER_CHECK:]
        if rest:
            total = sum(p.area for p in rest)
            self.add("unit_gap", "error", "control_units", None,
                     f"另有 {len(rest)} 处空隙共 {total:,.1f} 平方米未被环境管控单元覆盖，请在差异图中逐一核对。",
                     area_m2=_m2(total), parts=len(rest))

    def check_unit_structure(self) -> None:
        counts = self.unit_counts("draft")
        if counts is None:
            return
        got = {k: counts[k] for k in EXPECTED_UNIT_STRUCTURE}
        if got == EXPECTED_UNIT_STRUCTURE:
            return
        self.add("unit_structure", "warning", "control_units", None,
                 f"草稿有优先保护单元 {got['priority']} 个、重点管控单元 {got['key']} 个、一般管控单元 {got['general']} 个，"
                 f"与规划第三章第三节“5 个优先保护单元、10 个重点管控单元”的结构不一致。如属规划调整，请确认有批准依据。",
                 counts=got, expected=dict(EXPECTED_UNIT_STRUCTURE))

    def unit_counts(self, side: str) -> dict[str, int] | None:
        layer = self.layer(side, "control_units")
        if layer is None:
            return None
        out = {"count": len(layer), "priority": 0, "key": 0, "general": 0}
        for rec in layer.records:
            t = UNIT_TYPES.get(_text(rec.get("ZHGKDYFL")) or "")
            if t:
                out[t] += 1
        return out

    def check_unit_changes(self) -> None:
        old, new = self.layer("current", "control_units"), self.layer("draft", "control_units")
        if old is None or new is None or not old.key_fields or not new.key_fields:
            return
        before, after = old.codes(), new.codes()
        for code in sorted(set(before) - set(after)):
            i = before[code]
            self.add("unit_removed", "warning", "control_units", {"HJZHGKDYBM": code},
                     f"与现行版本相比，草稿删除了{old.name_zh(i)}。请确认删除有依据，并同步修订该单元的准入清单。",
                     location=self.point_of(old, i), area_m2_before=_m2(old.area(i)))
        for code in sorted(set(after) - set(before)):
            j = after[code]
            self.add("unit_added", "warning", "control_units", new.feature(j),
                     f"与现行版本相比，草稿新增了{new.name_zh(j)}。请确认新增有依据，并为其编制准入清单。",
                     location=self.point_of(new, j), area_m2_after=_m2(new.area(j)))
        for code in sorted(set(before) & set(after)):
            i, j = before[code], after[code]
            a, b = old.area(i), new.area(j)
            if a <= 0 or abs(b - a) / a <= UNIT_AREA_CHANGE_WARN:
                continue
            pct = (b - a) / a * 100
            self.add("unit_area_change", "warning", "control_units", new.feature(j),
                     f"{new.name_zh(j)}面积由 {_km2(a)} 变为 {_km2(b)}（{pct:+.2f}%），变化超过 "
                     f"{UNIT_AREA_CHANGE_WARN * 100:g}%。请确认边界调整有依据。",
                     location=self.point_of(new, j), area_m2_before=_m2(a), area_m2_after=_m2(b),
                     change_m2=_m2(b - a), change_pct=round(pct, 4))

    # -- red line -----------------------------------------------------------------------------------------------

    def red_line_totals(self) -> tuple[float | None, float | None]:
        old, new = self.layer("current", "red_line"), self.layer("draft", "red_line")
        before = _m2(union_area(old.metric)) if old is not None else None
        after = _m2(union_area(new.metric)) if new is not None else None
        return before, after

    def check_red_line(self) -> None:
        replaced = "red_line" in self.usable
        units_replaced = "control_units" in self.usable
        if not (replaced or units_replaced):
            return
        new = self.layer("draft", "red_line")
        if new is None:
            return
        if replaced:
            before, after = self.red_line_totals()
            if before is not None and after is not None and after < before - AREA_TOLERANCE_M2:
                lost = before - after
                text = (f"生态保护红线总面积由 {_km2(before)} 减少到 {_km2(after)}（减少 {lost:,.1f} 平方米）。"
                        f"规划第八章第一节要求生态保护红线“面积不减少”")
                if self.approval_ref:
                    self.add("red_line_decrease_approved", "warning", "red_line", None,
                             f"{text}；已登记批准文件“{self.approval_ref}”，请核实该文件确实批准了本次调整后再发布。",
                             before_m2=before, after_m2=after, change_m2=_m2(after - before),
                             approval_ref=self.approval_ref)
                else:
                    self.add("red_line_decrease", "error", "red_line", None,
                             f"{text}，减少须经批准：请修正边界使面积不减少，或在上传时填写批准文件文号。",
                             before_m2=before, after_m2=after, change_m2=_m2(after - before))
            self.check_red_line_patches()
            self.check_red_line_overlap(new)
        self.check_red_line_in_priority(new)

    def check_red_line_patches(self) -> None:
        """Where the red line lost ground: patches removed or shrunk, matched by patch_id."""
        old, new = self.layer("current", "red_line"), self.layer("draft", "red_line")
        if old is None or new is None or not old.key_fields:
            return
        after = {k: j for j, k in enumerate(new.keys) if k is not None}
        losses = []
        for i, k in enumerate(old.keys):
            g = old.metric[i]
            if k is None or g is None:
                continue
            j = after.get(k)
            h = new.metric[j] if j is not None else None
            if h is None:
                lost = g
            else:
                changed, _, lost = geometry_delta(g, h)
                if not changed:
                    continue
            area = lost.area if lost is not None else 0.0
            if area > AREA_TOLERANCE_M2:
                losses.append((area, i, k, lost, j is None))
        losses.sort(key=lambda t: (-t[0], t[2]))
        for area, i, k, lost, removed in losses[:MAX_ISSUES_PER_CHECK]:
            what = "被删除" if removed else "缩小"
            self.add("red_line_patch_reduced", "warning", "red_line", old.feature(i),
                     f"红线斑块 {' / '.join(k)}{what}，减少 {area:,.1f} 平方米{_at(_where(lost))}。"
                     f"请核对该处调整有依据。", geometry_metric=lost, area_m2=_m2(area), removed=removed)
        rest = losses[MAX_ISSUES_PER_CHECK:]
        if rest:
            total = sum(t[0] for t in rest)
            self.add("red_line_patch_reduced", "warning", "red_line", None,
                     f"另有 {len(rest)} 个红线斑块共减少 {total:,.1f} 平方米，请在差异图中逐一核对。",
                     area_m2=_m2(total), patches=len(rest))

    def check_red_line_overlap(self, layer: _Layer) -> None:
        present = [i for i, g in enumerate(layer.metric) if g is not None]
        if not present:
            return
        geoms = [layer.metric[i] for i in present]
        left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
        for a, b in sorted({(min(x, y), max(x, y)) for x, y in zip(left.tolist(), right.tolist()) if x != y}):
            i, j = present[a], present[b]
            overlap = polygonal_part(shapely.intersection(geoms[a], geoms[b]))
            area = overlap.area if overlap is not None else 0.0
            if area <= AREA_TOLERANCE_M2:
                continue
            where = _where(overlap)
            self.add("red_line_overlap", "error", "red_line", layer.feature(i),
                     f"{layer.name_zh(i)}与{layer.name_zh(j)}重叠 {area:,.1f} 平方米{_at(where)}。重叠部分会被重复统计，"
                     f"请合并这两个斑块或修正边界。", geometry_metric=overlap, location=where, area_m2=_m2(area),
                     other_feature=layer.feature(j))

    def check_red_line_in_priority(self, layer: _Layer) -> None:
        units = self.layer("draft", "control_units")
        if units is None or "ZHGKDYFL" not in units.columns:
            return
        priority = union([g for g, rec in zip(units.metric, units.records) if _text(rec.get("ZHGKDYFL")) == "1"])
        shapely.prepare(priority)
        for i, g in enumerate(layer.metric):
            if g is None or priority.contains(g):
                continue
            outside = polygonal_part(shapely.difference(g, priority))
            area = outside.area if outside is not None else 0.0
            if area <= AREA_TOLERANCE_M2:
                continue
            where = _where(outside)
            self.add("red_line_outside_priority", "warning", "red_line", layer.feature(i),
                     f"{layer.name_zh(i)}有 {area:,.1f} 平方米不在任何优先保护单元内{_at(where)}。生态保护红线应划入"
                     f"优先保护单元（规划第三章第三节），请核对红线或单元边界。",
                     geometry_metric=outside, location=where, area_m2=_m2(area))

    # -- access list --------------------------------------------------------------------------------------------

    def check_rules(self) -> None:
        units = self.layer("draft", "control_units")
        if units is None or not units.key_fields:
            return
        codes = set(units.codes())
        try:
            check_against_dataset(self.rules, codes)
            return
        except RuleBaseError as exc:
            first = exc
        missing: dict[str, list] = defaultdict(list)
        for clause in self.rules.clauses:
            if clause.unit and clause.unit not in codes:
                missing[clause.unit].append(clause)
            if clause.binding is not None:
                for code in clause.binding.units:
                    if code not in codes:
                        missing[code].append(clause)
        old = self.layer("current", "control_units")
        old_rows = old.codes() if old is not None and old.key_fields else {}
        for code in sorted(missing):
            clauses = missing[code]
            files = sorted({c.file for c in clauses})
            ids = sorted(c.id for c in clauses)
            where = self.point_of(old, old_rows[code]) if code in old_rows else None
            self.add("rule_unit_missing", "error", "control_units", {"HJZHGKDYBM": code},
                     f"草稿中已没有单元 {code}，但准入清单规则文件 {'、'.join(files)} 仍有 {len(ids)} 条条款绑定到该单元"
                     f"（{'、'.join(ids[:5])}{' 等' if len(ids) > 5 else ''}）。请同时修订或删除这些条款，或在草稿中保留该单元。",
                     files=files, clauses=ids, location=where)
        try:
            check_against_dataset(self.rules, codes | set(missing))
        except RuleBaseError as exc:
            self.add("rule_binding_invalid", "error", None, None, f"{exc.message_zh}。请修订规则文件。",
                     **{k: v for k, v in exc.context.items() if isinstance(v, (str, int, float, type(None)))})
        else:
            if not missing:  # not a unit problem after all: report what the rule base said
                self.add("rule_binding_invalid", "error", None, None, f"{first.message_zh}。请修订规则文件。")

    # -- the report ---------------------------------------------------------------------------------------------

    def layer_summaries(self, diff: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ordered_layer_names(self.replaced):
            d = diff.get(name)
            issues = [x for x in self.issues if x["layer"] == name]
            entry: dict[str, Any] = {
                "title_zh": LAYERS[name].title_zh if name in LAYERS else name,
                "features_before": d["features_before"] if d else 0,
                "features_after": d["features_after"] if d else 0,
                "added": len(d["added"]) if d else 0,
                "removed": len(d["removed"]) if d else 0,
                "changed": len(d["changed"]) if d else 0,
                "unchanged": d["unchanged"] if d else 0,
                "area_m2_before": d["area_m2_before"] if d else 0.0,
                "area_m2_after": d["area_m2_after"] if d else 0.0,
                "errors": sum(1 for x in issues if x["severity"] == "error"),
                "warnings": sum(1 for x in issues if x["severity"] == "warning"),
            }
            if name == "control_units":
                entry["units"] = self.unit_areas()
            out[name] = entry
        return out

    def unit_areas(self) -> list[dict[str, Any]]:
        old, new = self.layer("current", "control_units"), self.layer("draft", "control_units")
        before = old.codes() if old is not None and old.key_fields else {}
        after = new.codes() if new is not None and new.key_fields else {}
        rows = []
        for code in sorted(set(before) | set(after)):
            i, j = before.get(code), after.get(code)
            a = old.area(i) if i is not None else None
            b = new.area(j) if j is not None else None
            rec = new.records[j] if j is not None else old.records[i]
            rows.append({
                "code": code, "name": _text(rec.get("HJZHGKDYMC")),
                "type": UNIT_TYPES.get(_text(rec.get("ZHGKDYFL")) or ""),
                "area_m2_before": _m2(a) if a is not None else None,
                "area_m2_after": _m2(b) if b is not None else None,
                "change_m2": _m2(b - a) if a is not None and b is not None else None,
                "change_pct": round((b - a) / a * 100, 4) if a and b is not None else None,
            })
        return rows

    def report(self) -> dict[str, Any]:
        old = {n: self.current_frames[n] for n in self.usable if n in self.current_frames}
        new = {n: self.layer("draft", n).frame for n in self.usable}
        diff = diff_layers(old, new, max_vertices=DIFF_MAX_VERTICES)
        before, after = self.red_line_totals()
        change = _m2(after - before) if before is not None and after is not None else None
        errors = [x for x in self.issues if x["severity"] == "error"]
        warnings = [x for x in self.issues if x["severity"] == "warning"]
        units = self.unit_counts("draft") or {"count": 0, "priority": 0, "key": 0, "general": 0}
        return {
            "ok": not errors,
            "errors": errors,
            "warnings": warnings,
            "replaced": ordered_layer_names(self.replaced),
            "territory": self.territory_source,
            "layers": self.layer_summaries(diff),
            "diff": diff,
            "red_line": {
                "before_m2": before,
                "after_m2": after,
                "change_m2": change,
                "decrease": bool(change is not None and change < -AREA_TOLERANCE_M2),
                "approval_ref": self.approval_ref,
            },
            "units": units,
        }


def _type_zh(digit: str | None) -> str:
    return UNIT_TYPE_NAMES_ZH.get(UNIT_TYPES.get(digit or "", ""), "未知类型")


def _storage_point(g) -> list[float] | None:
    try:
        p = shapely.point_on_surface(g)
    except GEOSException:
        return None
    if p is None or p.is_empty or not (math.isfinite(p.x) and math.isfinite(p.y)):
        return None
    return [round(p.x, 7), round(p.y, 7)]


def validate_draft(draft: Mapping[str, gpd.GeoDataFrame], current: Mapping[str, gpd.GeoDataFrame] | None, *,
                   replaced: Iterable[str], rules: RuleBase | None = None,
                   approval_ref: str | None = None) -> dict[str, Any]:
    """Check a draft dataset (the current version with `replaced` layers swapped in) and report what is wrong.

    `draft` and `current` map layer names to GeoDataFrames in EPSG:4490 (`current` None for a first upload).
    Returns a JSON-safe dict: `ok` (no errors), `errors`, `warnings` (each issue: code, severity, layer, feature,
    message, location, geometry, detail), `layers` (per replaced layer), `diff` (current → draft for the replaced
    layers), `red_line` (before/after/change m², decrease, approval_ref) and `units` (counts by type).
    """
    names = list(dict.fromkeys(str(n) for n in replaced))
    ref = (approval_ref or "").strip() or None
    v = _Validation(draft, current, names, rules, ref)
    v.run()
    return v.report()


# ----------------------------------------------------------------------------------------------------------------
# The issues as a GeoPackage
# ----------------------------------------------------------------------------------------------------------------


def _issue_geometry(issue: Mapping[str, Any]):
    if issue.get("geometry"):
        try:
            return shapely.from_geojson(json.dumps(issue["geometry"]))
        except (GEOSException, ValueError, TypeError):
            pass
    loc = issue.get("location")
    if loc and len(loc) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in loc):
        return shapely.Point(float(loc[0]), float(loc[1]))
    return None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def report_to_gpkg(report: Mapping[str, Any], path: Path) -> None:
    """Write a report's issues to a GeoPackage that opens in QGIS (an existing file at `path` is replaced).

    `validation_issues` (EPSG:4490): every issue with a location or geometry, drawn as its geometry (overlap, gap,
    part outside the territory) or as a point at its location; fields n, code, severity, layer, feature, message.
    `validation_issue_list`: every issue (also those without a place), with lon/lat and detail as JSON.
    `validation_summary`: ok, counts, red-line totals and the approval reference.
    """
    path = Path(path)
    if path.exists():
        path.unlink()
    issues = [*report.get("errors", []), *report.get("warnings", [])]
    rows, geoms, table = [], [], []
    for n, issue in enumerate(issues, start=1):
        base = {"n": n, "code": str(issue.get("code", "")), "severity": str(issue.get("severity", "")),
                "layer": str(issue.get("layer") or ""), "feature": _json(issue.get("feature")) or "",
                "message": str(issue.get("message", ""))}
        loc = issue.get("location") or [None, None]
        table.append({**base, "lon": loc[0], "lat": loc[1], "has_geometry": int(bool(issue.get("geometry"))),
                      "detail": _json(issue.get("detail")) or ""})
        g = _issue_geometry(issue)
        if g is not None and not g.is_empty:
            rows.append(base)
            geoms.append(g)
    columns = ["n", "code", "severity", "layer", "feature", "message"]
    frame = gpd.GeoDataFrame(pd.DataFrame(rows, columns=columns).astype({"n": "int64"}),
                             geometry=gpd.GeoSeries(geoms, crs=STORAGE_EPSG), crs=STORAGE_EPSG)
    pyogrio.write_dataframe(frame, path, layer=ISSUE_LAYER, driver="GPKG", geometry_type="Unknown",
                            layer_options={"IDENTIFIER": "校验问题", "DESCRIPTION": "草稿数据集校验发现的问题（错误与警告）"})
    listing = pd.DataFrame(table, columns=[*columns, "lon", "lat", "has_geometry", "detail"])
    pyogrio.write_dataframe(listing.astype({"lon": "float64", "lat": "float64"}), path, layer=ISSUE_TABLE,
                            driver="GPKG", append=True, layer_options={"DESCRIPTION": "全部校验问题（含无位置的问题）"})
    red = report.get("red_line") or {}
    summary = {
        "ok": str(bool(report.get("ok"))).lower(),
        "errors": str(len(report.get("errors", []))),
        "warnings": str(len(report.get("warnings", []))),
        "replaced": ",".join(report.get("replaced", [])),
        "red_line_before_m2": "" if red.get("before_m2") is None else str(red["before_m2"]),
        "red_line_after_m2": "" if red.get("after_m2") is None else str(red["after_m2"]),
        "approval_ref": red.get("approval_ref") or "",
    }
    pyogrio.write_dataframe(pd.DataFrame({"key": list(summary), "value": list(summary.values())}), path,
                            layer=SUMMARY_TABLE, driver="GPKG", append=True)
