"""The printable assessment report 《建设项目生态环境分区管控符合性分析》 as PDF (A4) and as HTML.

A report is made only from the stored assessment bytes (what `GET /v1/assessments/{id}` returns) and the catalog of
the dataset version the assessment names (for the map figures), so a report made later for the same id is the
same: the PDF is byte-identical (reportlab invariant mode, document dates taken from the assessment's
`created_at`, deterministic PNG figures, the QR code drawn as vectors). Every page carries a footer with the
assessment id, the dataset version and its provenance, the rules version, the assessment time, the page number,
the first digits of the content hash (sha256 of the stored bytes) and a QR code of the verification URL.

No FastAPI here: `render_pdf` and `render_html` take the document, its bytes, a catalog (or None when the
version's data is no longer available, in which case the figures are left out with a note) and the URL.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from xml.sax.saxutils import escape

import jinja2
import segno
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import TimeStamp
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    CondPageBreak,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from app.domain.catalog import Catalog
from app.domain.schema import DIMENSION_NAMES_ZH, DIMENSIONS, MU_PER_M2
from app.errors import DataError, NotFound
from app.geo.crs import transformer

log = logging.getLogger("app.report")

TITLE = "建设项目生态环境分区管控符合性分析"
SERVICE_ZH = "满洲里市生态环境分区管控符合性分析服务"
ROOT = Path(__file__).resolve().parents[1]
FONT_PATH = ROOT / "web" / "static" / "fonts" / "wqy-microhei.ttf"
FONT_URL = "/static/fonts/wqy-microhei.ttf"
TEMPLATES = ROOT / "web" / "templates"
FONT = "WQYMicroHei"
GK_ZONE_EPSG = 4527  # CGCS2000 3-degree Gauss-Krüger zone 39, easting with the zone prefix
MAX_TABLE_POINTS = 1500  # boundary points listed in the table; the stored GeoJSON holds them all

VERDICT_COLOURS = {
    "prohibited": "#c62828",
    "conditional": "#e67e00",
    "permitted": "#2e7d32",
    "needs_review": "#546e9a",
    "outside_jurisdiction": "#757575",
}
EFFECT_COLOURS = {"prohibit": "#c62828", "conditional": "#e67e00", "encourage": "#2e7d32", "note": "#546e7a"}
GEOMETRY_ZH = {"Point": "点位", "Polygon": "单一地块（面）", "MultiPolygon": "多地块（多面）"}
BEIJING = timezone(timedelta(hours=8))

_GK = transformer(4490, GK_ZONE_EPSG)


# --------------------------------------------------------------------------------------------------------------
# What the report shows, as display strings: one context for both renderers
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundaryPoint:
    """One row of the boundary-point table: part (地块), ring (圈号), label (J1…), X = northing, Y = easting."""

    part: int
    ring: int
    label: str
    x: float
    y: float

    @property
    def x_text(self) -> str:
        return f"{self.x:.3f}"

    @property
    def y_text(self) -> str:
        return f"{self.y:.3f}"


def boundary_points(geometry: Mapping[str, Any]) -> list[BoundaryPoint]:
    """Every vertex of every ring of every part in Gauss-Krüger zone 39 (EPSG:4527) as surveyors write it.

    Points are numbered J1, J2… per part, continuing across the rings of a part; each ring ends by repeating its
    first point, as land-survey coordinate files do. A point site gives one row (part 1, ring 0).
    """
    kind = geometry["type"]
    if kind == "Point":
        lon, lat = geometry["coordinates"][:2]
        e, n = _GK.transform(lon, lat)
        return [BoundaryPoint(1, 0, "J1", float(n), float(e))]
    polygons = [geometry["coordinates"]] if kind == "Polygon" else list(geometry["coordinates"])
    rows: list[BoundaryPoint] = []
    for part, rings in enumerate(polygons, 1):
        number = 0
        for ring_no, ring in enumerate(rings, 1):
            coords = [tuple(c[:2]) for c in ring]
            closed = len(coords) > 1 and coords[0] == coords[-1]
            unique = coords[:-1] if closed else coords
            es, ns = _GK.transform([c[0] for c in unique], [c[1] for c in unique])
            first = number + 1
            for e, n in zip(es, ns):
                number += 1
                rows.append(BoundaryPoint(part, ring_no, f"J{number}", float(n), float(e)))
            if unique:
                head = rows[-len(unique)]
                rows.append(BoundaryPoint(part, ring_no, f"J{first}", head.x, head.y))
    return rows


def content_hash(body: bytes) -> str:
    """sha256 of the stored assessment bytes: what a paper copy is checked against."""
    return hashlib.sha256(body).hexdigest()


class RenderCache:
    """The most recently rendered reports, bounded in bytes, shared by the threads of one worker.

    A report is a function of the stored assessment bytes, the content and rule base of the catalog it names, the
    verification URL and the format only (re-rendering gives the same bytes), so keys made of exactly those never
    serve a stale copy; the cache only saves the second and later renderings (about a second each for a PDF).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, bytes | str] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(fmt: str, body: bytes, catalog: Catalog | None, verify_url: str) -> tuple:
        data = (catalog.content_hash, catalog.rules.version) if catalog is not None else None
        return fmt, content_hash(body), data, verify_url

    def get_or_render(self, key: tuple, render: Callable[[], bytes | str]) -> bytes | str:
        """The cached rendering for `key`, else `render()`, kept while the cache has room for it."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = render()
        size = len(value)
        if size > self.max_bytes:
            return value
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._size += size
                while self._size > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._size -= len(old)
        return value


def catalog_for_assessment(service: Any, doc: Mapping[str, Any]) -> Catalog | None:
    """The catalog of the version the assessment names, if it is still there with the same content; else None."""
    try:
        catalog = service.catalog_for(doc["dataset_version"])
    except (NotFound, DataError) as exc:
        log.warning("report for %s without figures: version %s unavailable (%s)", doc.get("id"),
                    doc.get("dataset_version"), exc.detail)
        return None
    if catalog is None or catalog.content_hash != doc.get("dataset_hash"):
        log.warning("report for %s without figures: version %s content differs", doc.get("id"),
                    doc.get("dataset_version"))
        return None
    return catalog


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _area_cells(m2: float, ha: float, mu: float) -> list[str]:
    return [_num(m2, 2), _num(ha, 4), _num(mu, 3)]


def _share(value: float, is_point: bool) -> str:
    return "点位所在" if is_point else f"{value * 100:.2f}%"


def _timestamps(created_at: str) -> tuple[datetime, str, str]:
    when = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    utc = when.astimezone(timezone.utc)
    return utc, utc.strftime("%Y-%m-%d %H:%M:%S UTC"), utc.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _industry_name(code: str, industries: Mapping[str, str]) -> str:
    for n in range(len(code), 1, -1):
        if code[:n] in industries:
            return industries[code[:n]]
    return ""


def _fact_rows(project: Mapping[str, Any], catalog: Catalog | None) -> list[tuple[str, str]]:
    facts = catalog.rules.facts if catalog is not None else {}
    industries = catalog.rules.industries if catalog is not None else {}
    order = ["name", *facts.keys()]
    keys = [k for k in order if k in project] + sorted(k for k in project if k not in order)
    rows = []
    for key in keys:
        value = project[key]
        fact = facts.get(key)
        label = "项目名称" if key == "name" else (fact.label_zh if fact else key)
        if isinstance(value, bool):
            text = "是" if value else "否"
        elif fact is not None and fact.type == "enum":
            text = f"{fact.values.get(str(value), value)}（{value}）"
        elif key == "industry_code":
            name = _industry_name(str(value), industries)
            text = f"{value} {name}".strip()
        elif isinstance(value, float):
            text = f"{value:g}" + (f" {fact.unit}" if fact and fact.unit else "")
        else:
            text = str(value) + (f" {fact.unit}" if fact and fact.unit else "")
        rows.append((label, text))
    return rows


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class Report:
    """Everything a report shows, computed once from the stored document."""

    doc: dict[str, Any]
    content_hash: str
    verify_url: str
    created_utc: datetime
    created_utc_text: str
    created_bj_text: str
    project_rows: list[tuple[str, str]]
    points: list[BoundaryPoint]
    map_png: bytes | None = None
    land_cover_png: bytes | None = None
    map_note: str = ""

    # -- short accessors -----------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.doc["id"]

    @property
    def is_point(self) -> bool:
        return self.doc["site"]["geometry_type"] == "Point"

    @property
    def hash_short(self) -> str:
        return self.content_hash[:16]

    @property
    def rules_short(self) -> str:
        return self.doc["rules_version"][:12]

    @property
    def verdict_colour(self) -> str:
        return VERDICT_COLOURS.get(self.doc["verdict"], "#757575")

    @property
    def provenance(self) -> str:
        text = self.doc.get("dataset_provenance") or ""
        if self.doc.get("dataset_illustrative"):
            return text or "示意性参考数据"
        return text or "正式数据"

    @property
    def version_line(self) -> str:
        return f"{self.doc['dataset_version']}（{self.provenance}）"

    @property
    def verdict_summary(self) -> str:
        d = self.doc
        verdict = d["verdict"]
        prohibit = [c["id"] for c in d["clauses"] if c["effect"] == "prohibit"]
        if verdict == "prohibited":
            return f"项目触及禁止类条款：{'、'.join(prohibit)}。"
        if verdict == "conditional":
            return f"项目须满足下列 {len(d['conditions'])} 项条件后方可准入（见第七部分）。"
        if verdict == "permitted":
            return "未发现禁止或限制类条款，符合生态环境分区管控要求；仍须遵守适用的提示性要求。"
        if verdict == "needs_review":
            return (f"有 {len(d['missing_facts'])} 项项目信息未提供，涉及 {len(d['undecided'])} 条可能禁止或附加条件的条款；"
                    "请补充后重新分析（见第八部分）。")
        return "项目用地不在满洲里市（含扎赉诺尔区）管辖范围内，不适用本市生态环境分区管控要求。"

    @property
    def site_area_rows(self) -> list[list[str]]:
        site = self.doc["site"]
        if self.is_point:
            return []
        rows = [["用地总面积", *_area_cells(site["area"]["m2"], site["area"]["ha"], site["area"]["mu"])]]
        if self.partly_outside:
            inside = site["inside_area"]
            out_m2 = site["area"]["m2"] - inside["m2"]
            rows.append(["其中：管辖范围内（据以分析）", *_area_cells(inside["m2"], inside["ha"], inside["mu"])])
            rows.append(["其中：管辖范围外", *_area_cells(out_m2, out_m2 / 10_000, out_m2 * MU_PER_M2)])
        return rows

    @property
    def partly_outside(self) -> bool:
        return any(w["code"] == "partly_outside" for w in self.doc["warnings"])

    @property
    def site_warnings(self) -> list[str]:
        return [w["message"] for w in self.doc["warnings"] if w["code"] in ("partly_outside", "outside_territory")]

    @property
    def survey_rows(self) -> list[list[str]]:
        survey = self.doc["site"].get("survey")
        if not survey:
            return []
        return [[str(i), str(p.get("code") or ""), str(p.get("name") or ""), str(p.get("use") or ""),
                 str(p.get("point_count") or ""), "" if p.get("declared_area") is None else f"{p['declared_area']:g}",
                 _num(p["area_m2"], 2), _num(p["area_m2"] / 10_000, 4), _num(p["area_m2"] * MU_PER_M2, 3)]
                for i, p in enumerate(survey["parcels"], 1)]

    @property
    def survey_note(self) -> str:
        survey = self.doc["site"].get("survey")
        if not survey:
            return ""
        return (f"用地范围取自界址点坐标文件（{survey.get('source_crs', '')}，{survey.get('zone_width', '')}度带第 "
                f"{survey.get('zone', '')} 带，{survey.get('encoding', '')} 编码），共 {len(survey['parcels'])} 个地块。")

    @property
    def table_points(self) -> list[BoundaryPoint]:
        return self.points[:MAX_TABLE_POINTS]

    @property
    def points_left_out(self) -> int:
        return max(len(self.points) - MAX_TABLE_POINTS, 0)

    @property
    def unit_rows(self) -> list[list[str]]:
        p = self.is_point
        return [[u["code"], u["name"], u["type_zh"],
                 *(["—", "—", "—"] if p else _area_cells(u["overlap_m2"], u["overlap_ha"], u["overlap_mu"])),
                 _share(u["share"], p) + ("（边界）" if u.get("on_boundary") else "")]
                for u in self.doc["units"]]

    @property
    def red_line_text(self) -> str:
        r = self.doc["red_line"]
        if self.doc["verdict"] == "outside_jurisdiction":
            return "不适用（用地不在管辖范围内）。"
        if r["inside"]:
            if self.is_point:
                return f"项目点位位于生态保护红线内（图斑 {r['nearest_patch']}）。"
            return (f"项目用地占用生态保护红线 {_num(r['overlap_m2'], 2)} m²（{_num(r['overlap_ha'], 4)} 公顷，"
                    f"{_num(r['overlap_mu'], 3)} 亩），占用地面积的 {r['share'] * 100:.2f}%。")
        if r["distance_m"] is None:
            return "项目用地未占用生态保护红线。"
        return f"项目用地未占用生态保护红线；距最近的红线图斑 {r['nearest_patch']} {_num(r['distance_m'], 2)} m。"

    @property
    def red_line_rows(self) -> list[list[str]]:
        p = self.is_point
        return [[g["function_name"], "、".join(g["patches"]),
                 *(["—", "—", "—"] if p else _area_cells(g["overlap_m2"], g["overlap_ha"], g["overlap_mu"])),
                 _share(g["share"], p)] for g in self.doc["red_line"]["groups"]]

    @property
    def layer_rows(self) -> list[list[str]]:
        p = self.is_point
        return [[layer["title_zh"], f["label"],
                 *(["—", "—", "—"] if p else _area_cells(f["overlap_m2"], f["overlap_ha"], f["overlap_mu"])),
                 _share(f["share"], p)]
                for layer in self.doc["layers"] for f in layer["features"]]

    @property
    def proximity_rows(self) -> list[list[str]]:
        return [[p["title_zh"], p["feature"], "0（相交或位于其中）" if p["distance_m"] == 0 else _num(p["distance_m"], 2)]
                for p in self.doc["proximity"]]

    @property
    def land_cover_rows(self) -> list[list[str]]:
        p = self.is_point
        return [[lc["name_zh"], f"{lc['share'] * 100:.2f}%",
                 *(["—", "—", "—"] if p else _area_cells(lc["area_m2"], lc["area_m2"] / 10_000, lc["area_m2"] * MU_PER_M2))]
                for lc in self.doc["land_cover"]]

    @property
    def clause_groups(self) -> list[tuple[str, list[dict[str, Any]]]]:
        by_dim = {d: [c for c in self.doc["clauses"] if c["dimension"] == d] for d in DIMENSIONS}
        return [(DIMENSION_NAMES_ZH[d], by_dim[d]) for d in DIMENSIONS]

    @property
    def missing_rows(self) -> list[list[str]]:
        return [[m["label_zh"], m["fact"], "、".join(m["clauses"])] for m in self.doc["missing_facts"]]

    @property
    def qr_data_uri(self) -> str:
        return segno.make_qr(self.verify_url, error="m").png_data_uri(scale=4, border=2)

    @property
    def map_data_uri(self) -> str:
        return _data_uri(self.map_png) if self.map_png else ""

    @property
    def land_cover_data_uri(self) -> str:
        return _data_uri(self.land_cover_png) if self.land_cover_png else ""


def build_report(doc: dict[str, Any], body: bytes, catalog: Catalog | None, *, verify_url: str,
                 figures: bool = True) -> Report:
    """Gather what the report shows; draw the figures when the version's catalog is at hand."""
    utc, utc_text, bj_text = _timestamps(doc["created_at"])
    report = Report(doc=doc, content_hash=content_hash(body), verify_url=verify_url, created_utc=utc,
                    created_utc_text=utc_text, created_bj_text=bj_text, project_rows=_fact_rows(doc["project"], catalog),
                    points=boundary_points(doc["site"]["geometry"]))
    if not figures:
        return report
    if catalog is None:
        report.map_note = (f"数据版本 {doc['dataset_version']} 的图层已不可用或内容与分析时不一致，本报告未绘制位置图；"
                           "各项分析结果以存档的分析原文为准。")
        return report
    from app.domain.report_map import land_cover_png, site_map_png  # matplotlib only when drawing

    report.map_png = site_map_png(doc, catalog)
    report.land_cover_png = land_cover_png(doc, catalog)
    return report


# --------------------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------------------


def _register_font() -> None:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT, str(FONT_PATH)))
        pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT, italic=FONT, boldItalic=FONT)


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=FONT, fontSize=9.5, leading=14, wordWrap="CJK", spaceAfter=3)
    return {
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=11),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8, leading=10.5, spaceAfter=0),
        "head": ParagraphStyle("head", parent=base, fontSize=8, leading=10.5, spaceAfter=0,
                               textColor=colors.HexColor("#222222")),
        "title": ParagraphStyle("title", parent=base, fontSize=19, leading=26, alignment=TA_CENTER, spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=9, leading=13, alignment=TA_CENTER,
                                   textColor=colors.HexColor("#555555"), spaceAfter=8),
        "h1": ParagraphStyle("h1", parent=base, fontSize=12.5, leading=18, spaceBefore=9, spaceAfter=4,
                             textColor=colors.HexColor("#1a237e"), keepWithNext=1),
        "h2": ParagraphStyle("h2", parent=base, fontSize=10.5, leading=15, spaceBefore=5, spaceAfter=3,
                             keepWithNext=1),
        "caption": ParagraphStyle("caption", parent=base, fontSize=8.5, leading=12, alignment=TA_CENTER,
                                  textColor=colors.HexColor("#333333"), spaceAfter=6),
        "verdict_label": ParagraphStyle("vl", parent=base, fontSize=9, leading=12, textColor=colors.white),
        "verdict": ParagraphStyle("v", parent=base, fontSize=30, leading=38, textColor=colors.white),
        "verdict_text": ParagraphStyle("vt", parent=base, fontSize=9.5, leading=13.5, textColor=colors.white),
        "clause_head": ParagraphStyle("ch", parent=base, fontSize=9.5, leading=13.5, spaceBefore=4, spaceAfter=1),
        "clause_body": ParagraphStyle("cb", parent=base, fontSize=9, leading=13, leftIndent=10, spaceAfter=1),
        "mono": ParagraphStyle("mono", parent=base, fontName="Courier", fontSize=8.5, leading=11),
    }


def _p(text: Any, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def _table(header: list[str], rows: Iterable[list[str]], widths: list[float], st: dict[str, ParagraphStyle], *,
           align_right: Iterable[int] = ()) -> Table:
    right = ParagraphStyle("cell_r", parent=st["cell"], alignment=2)
    cols_right = set(align_right)
    data = [[_p(h, st["head"]) for h in header]]
    for row in rows:
        data.append([_p(v, right if i in cols_right else st["cell"]) for i, v in enumerate(row)])
    table = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9e9e9e")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eaf6")),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 2.2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]))
    return table


def _kv_table(rows: list[tuple[str, str]], width: float, st: dict[str, ParagraphStyle], *,
              mono_rows: Iterable[int] = ()) -> Table:
    mono = set(mono_rows)
    data = [[_p(k, st["head"]), _p(v, st["mono"] if i in mono else st["cell"])] for i, (k, v) in enumerate(rows)]
    table = Table(data, colWidths=[52 * mm, width - 52 * mm], hAlign="LEFT")
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9e9e9e")),
        ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f2f3f8")),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
    ]))
    return table


def _none(text: str, st: dict[str, ParagraphStyle]) -> Paragraph:
    return _p(text, st["small"])


def _clause_block(c: Mapping[str, Any], st: dict[str, ParagraphStyle], *, undecided: bool = False) -> KeepTogether:
    colour = EFFECT_COLOURS.get(c["effect"], "#546e7a")
    tags = f'<font color="{colour}">【{escape(c["effect_zh"])}】</font>'
    if c.get("illustrative"):
        tags += '<font color="#8d6e63">【示意条款】</font>'
    if undecided:
        tags += '<font color="#546e9a">【待定】</font>'
    parts = [Paragraph(f'<font color="{colour}">■</font> <b>{escape(c["id"])}</b>　{tags}', st["clause_head"]),
             _p(c["text"], st["clause_body"]),
             Paragraph(f'<font color="#555555">来源：</font>{escape(c["source"])}', st["clause_body"]),
             Paragraph(f'<font color="#555555">适用理由：</font>{escape(c["reason"])}', st["clause_body"])]
    for i, cond in enumerate(c.get("conditions") or [], 1):
        parts.append(Paragraph(f'<font color="{colour}">须满足条件 {i}：</font>{escape(cond)}', st["clause_body"]))
    return KeepTogether(parts)


def _numbered(lines: list[str], st: dict[str, ParagraphStyle]) -> list[Any]:
    """Numbered body paragraphs, or 无。 when there are none."""
    return [_p(f"{i}. {text}", st["body"]) for i, text in enumerate(lines, 1)] or [_none("无。", st)]


def _verdict_box(r: Report, width: float, st: dict[str, ParagraphStyle]) -> Table:
    cell = [_p("分析结论", st["verdict_label"]), _p(r.doc["verdict_zh"], st["verdict"]),
            _p(r.verdict_summary, st["verdict_text"])]
    box = Table([[cell]], colWidths=[width], hAlign="LEFT")
    box.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(r.verdict_colour)),
        ("LEFTPADDING", (0, 0), (-1, -1), 10), ("RIGHTPADDING", (0, 0), (-1, -1), 10),
        ("TOPPADDING", (0, 0), (-1, -1), 6), ("BOTTOMPADDING", (0, 0), (-1, -1), 8),
    ]))
    return box


def _story(r: Report, width: float) -> list[Any]:
    st = _styles()
    d = r.doc
    story: list[Any] = [
        _p(f"《{TITLE}》", st["title"]),
        _p(f"{SERVICE_ZH} · 分析编号 {r.id}", st["subtitle"]),
        _verdict_box(r, width, st),
        Spacer(1, 4),
    ]
    if d.get("dataset_illustrative"):
        story.append(_p(f"注意：本分析所用数据为{r.provenance}，结论仅供演示与测试，不作为审批依据。", st["small"]))

    story.append(_p("一、基本信息", st["h1"]))
    basic = [
        ("分析编号", r.id),
        ("分析时间", f"{r.created_bj_text}（北京时间）／ {r.created_utc_text}"),
        ("数据版本", r.version_line),
        ("数据内容哈希", d["dataset_hash"]),
        ("规则版本", r.rules_short),
        ("规则内容哈希", d["rules_version"]),
        ("输入坐标系", d["site"]["input_crs"]),
        ("内容校验码 SHA-256", r.content_hash),
        ("核验地址", r.verify_url),
    ]
    story.append(_kv_table(basic, width, st, mono_rows=(3, 5, 7)))

    story.append(_p("二、项目信息（按申报填写）", st["h1"]))
    story.append(_kv_table(r.project_rows, width, st) if r.project_rows else _none("未填写项目信息。", st))

    story.append(_p("三、用地范围", st["h1"]))
    site = d["site"]
    story.append(_p(f"用地形式：{GEOMETRY_ZH.get(site['geometry_type'], site['geometry_type'])}；界址点数 "
                    f"{site['vertex_count']}；中心点经纬度（CGCS2000）{site['centroid'][0]:.6f}°E，{site['centroid'][1]:.6f}°N。",
                    st["body"]))
    if r.survey_note:
        story.append(_p(r.survey_note, st["body"]))
        story.append(_table(["序号", "地块编号", "地块名称", "用途", "点数", "申报面积（公顷）", "计算面积（m²）", "公顷", "亩"],
                            r.survey_rows, [9 * mm, 16 * mm, 34 * mm, 20 * mm, 10 * mm, 20 * mm, 25 * mm, 20 * mm,
                                            width - 154 * mm], st, align_right=(4, 5, 6, 7, 8)))
        story.append(Spacer(1, 4))
    if r.site_area_rows:
        story.append(_table(["面积", "平方米（m²）", "公顷", "亩"], r.site_area_rows,
                            [width - 114 * mm, 44 * mm, 35 * mm, 35 * mm], st, align_right=(1, 2, 3)))
    else:
        story.append(_p("项目用地为点位，无面积；以下按点位所在位置分析。", st["body"]))
    for text in r.site_warnings:
        story.append(Paragraph(f'<font color="#c62828">注意：{escape(text)}</font>', st["body"]))
    story.append(_p("界址点坐标（CGCS2000 高斯-克吕格 3° 带第 39 带，中央经线 117°E，EPSG:4527；X 为北坐标，Y 为东坐标并含带号 39，"
                    "单位米）：", st["h2"]))
    rows = [[str(p.part), "—" if p.ring == 0 else str(p.ring), p.label, p.x_text, p.y_text] for p in r.table_points]
    story.append(_table(["地块", "圈号", "点号", "X（北坐标，m）", "Y（东坐标，m）"], rows,
                        [16 * mm, 16 * mm, 18 * mm, 45 * mm, 45 * mm], st, align_right=(3, 4)))
    if r.points_left_out:
        story.append(_p(f"另有 {r.points_left_out} 个界址点未列出，完整坐标见核验地址返回的分析原文（site.geometry）。",
                        st["small"]))

    story.append(CondPageBreak(120 * mm))
    story.append(_p("四、位置图", st["h1"]))
    if r.map_png:
        img = Image(io.BytesIO(r.map_png), width=width, height=width * 5.25 / 6.9)
        story.append(img)
        story.append(_p(f"图 1　项目用地与环境管控单元、生态保护红线及相关要素图层的位置关系（数据版本 {r.doc['dataset_version']}；{r.provenance}）", st["caption"]))
    else:
        story.append(_p(r.map_note, st["body"]))

    story.append(_p("五、空间关系分析", st["h1"]))
    story.append(_p("（一）涉及的环境管控单元", st["h2"]))
    if r.unit_rows:
        story.append(_table(["单元编码", "单元名称", "类型", "重叠面积 m²", "公顷", "亩", "占用地比例"], r.unit_rows,
                            [26 * mm, width - 126 * mm, 20 * mm, 24 * mm, 17 * mm, 19 * mm, 20 * mm], st,
                            align_right=(3, 4, 5, 6)))
    else:
        story.append(_none("无（用地不在管辖范围内）。", st))
    story.append(_p("（二）生态保护红线", st["h2"]))
    story.append(_p(r.red_line_text, st["body"]))
    if r.red_line_rows:
        story.append(_table(["红线功能类型", "图斑", "占用面积 m²", "公顷", "亩", "占用地比例"], r.red_line_rows,
                            [34 * mm, width - 114 * mm, 24 * mm, 17 * mm, 19 * mm, 20 * mm], st, align_right=(2, 3, 4, 5)))
    story.append(_p("（三）涉及的其他要素图层", st["h2"]))
    if r.layer_rows:
        story.append(_table(["图层", "要素", "重叠面积 m²", "公顷", "亩", "占用地比例"], r.layer_rows,
                            [32 * mm, width - 112 * mm, 24 * mm, 17 * mm, 19 * mm, 20 * mm], st, align_right=(2, 3, 4, 5)))
    else:
        story.append(_none("无。", st))
    story.append(_p(f"（四）与生态保护红线及受保护图层的距离（{d['proximity_buffer_m']:g} m 范围内）", st["h2"]))
    if r.proximity_rows:
        story.append(_table(["图层", "最近要素", "距离（m）"], r.proximity_rows,
                            [50 * mm, width - 90 * mm, 40 * mm], st, align_right=(2,)))
    else:
        story.append(_none(f"{d['proximity_buffer_m']:g} m 范围内无生态保护红线或受保护图层。", st))
    story.append(_p("（五）土地覆被构成", st["h2"]))
    if r.land_cover_rows:
        story.append(_table(["地类", "比例", "面积 m²", "公顷", "亩"], r.land_cover_rows,
                            [40 * mm, 30 * mm, 40 * mm, 30 * mm, width - 140 * mm], st, align_right=(1, 2, 3, 4)))
    else:
        story.append(_none("无。", st))
    if r.land_cover_png:
        story.append(Spacer(1, 4))
        story.append(KeepTogether([
            Image(io.BytesIO(r.land_cover_png), width=width, height=width * 3.0 / 6.9),
            _p("图 2　项目用地及周边土地覆被", st["caption"]),
        ]))

    story.append(_p("六、适用的生态环境准入要求（按四个维度）", st["h1"]))
    if not d["clauses"]:
        story.append(_none("无适用条款。", st))
    for i, (dim_zh, clauses) in enumerate(r.clause_groups):
        story.append(_p(f"（{'一二三四'[i]}）{dim_zh}（{len(clauses)} 条）", st["h2"]))
        if not clauses:
            story.append(_none("本维度无适用条款。", st))
        for c in clauses:
            story.append(_clause_block(c, st))

    story.append(_p("七、须满足的条件", st["h1"]))
    story += _numbered([f"{c['condition']}（条款 {c['clause']}）" for c in d["conditions"]], st)

    story.append(_p("八、需补充的项目信息与待定条款", st["h1"]))
    if d["missing_facts"]:
        story.append(_p("下列项目信息未提供，相关条款是否适用无法判定；补充后请重新分析：", st["body"]))
        story.append(_table(["项目信息", "字段", "涉及条款"], r.missing_rows,
                            [width - 110 * mm, 40 * mm, 70 * mm], st))
    else:
        story.append(_none("无缺失的项目信息。", st))
    if d["undecided"]:
        story.append(_p(f"待定条款（{len(d['undecided'])} 条）：", st["h2"]))
        for c in d["undecided"]:
            story.append(_clause_block(c, st, undecided=True))

    story.append(_p("九、提示", st["h1"]))
    story += _numbered([w["message"] for w in d["warnings"]], st)

    story.append(_p("十、核验方法", st["h1"]))
    story.append(_p("本报告由存档的分析原文生成。核验纸质报告时，访问下列地址（或扫描页脚二维码）取得该编号的分析原文（JSON），"
                    "计算其 SHA-256 值，应与本报告记载的内容校验码完全一致；页脚的校验码为其前 16 位。", st["body"]))
    story.append(_kv_table([("核验地址", r.verify_url), ("内容校验码 SHA-256", r.content_hash),
                            ("命令行示例", f"curl -s {r.verify_url} | sha256sum")], width, st, mono_rows=(1, 2)))
    story.append(_p("分析原文自生成后不再改变；此后数据版本或规则更新不影响该编号的分析结果与本报告。", st["small"]))
    return story


def _timestamp(utc: datetime) -> TimeStamp:
    ts = TimeStamp(1)
    ts.t = utc.timestamp()
    ts.lt = utc.timetuple()
    ts.YMDhms = tuple(ts.lt)[:6]
    ts.dhh = ts.dmm = 0
    ts.tzname = "UTC"
    return ts


class _Footer:
    """Draws the footer (and a running header) on a finished page, knowing the page count."""

    def __init__(self, r: Report) -> None:
        self.r = r
        self.qr = segno.make_qr(r.verify_url, error="m").matrix
        self.timestamp = _timestamp(r.created_utc)

    def draw(self, canvas: Canvas, page: int, total: int) -> None:
        r = self.r
        w, h = A4
        left, right = 16 * mm, w - 16 * mm
        canvas.saveState()
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.setFont(FONT, 7.5)
        if page > 1:
            canvas.drawString(left, h - 10 * mm, f"《{TITLE}》　{r.id}")
            canvas.drawRightString(right, h - 10 * mm, f"分析结论：{r.doc['verdict_zh']}")
            canvas.setStrokeColor(colors.HexColor("#bbbbbb"))
            canvas.setLineWidth(0.4)
            canvas.line(left, h - 11.5 * mm, right, h - 11.5 * mm)
        qr_size = 18 * mm
        top = 27 * mm
        canvas.setStrokeColor(colors.HexColor("#9e9e9e"))
        canvas.setLineWidth(0.5)
        canvas.line(left, top, right, top)
        self._draw_qr(canvas, right - qr_size, top - 1.5 * mm - qr_size, qr_size)
        canvas.setFillColor(colors.HexColor("#333333"))
        text_w = right - qr_size - 3 * mm - left
        lines = [
            f"分析编号 {r.id}　　分析时间 {r.created_bj_text}（北京时间）",
            f"数据版本 {r.version_line}",
            f"规则版本 {r.rules_short}　　内容校验码 SHA-256 {r.hash_short}…",
            f"扫描二维码或访问 {r.verify_url} 核验",
        ]
        y = top - 4.5 * mm
        for line in lines:
            size = 7.0
            while pdfmetrics.stringWidth(line, FONT, size) > text_w and size > 4.5:
                size -= 0.25
            canvas.setFont(FONT, size)
            canvas.drawString(left, y, line)
            y -= 3.6 * mm
        canvas.setFont(FONT, 8.5)
        canvas.drawCentredString(w / 2, 6 * mm, f"第 {page} 页 / 共 {total} 页")
        canvas.restoreState()

    def _draw_qr(self, canvas: Canvas, x: float, y: float, size: float) -> None:
        n = len(self.qr)
        border = 2
        module = size / (n + 2 * border)
        canvas.setFillColor(colors.white)
        canvas.rect(x, y, size, size, stroke=0, fill=1)
        canvas.setFillColor(colors.black)
        for r, row in enumerate(self.qr):
            c = 0
            while c < n:
                if row[c] & 1:
                    start = c
                    while c < n and row[c] & 1:
                        c += 1
                    canvas.rect(x + (border + start) * module, y + size - (border + r + 1) * module,
                                (c - start) * module, module, stroke=0, fill=1)
                else:
                    c += 1


def _canvas_class(footer: _Footer) -> type[Canvas]:
    class ReportCanvas(Canvas):
        """Keeps every page until the end, then stamps each with its footer and the total page count."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._doc._timeStamp = footer.timestamp  # document dates = the assessment's time, not now
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 (reportlab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for number, state in enumerate(self._pages, 1):
                self.__dict__.update(state)
                footer.draw(self, number, total)
                Canvas.showPage(self)
            Canvas.save(self)

    return ReportCanvas


def pdf_from_report(r: Report) -> bytes:
    _register_font()
    out = io.BytesIO()
    margin = 16 * mm
    template = SimpleDocTemplate(
        out, pagesize=A4, leftMargin=margin, rightMargin=margin, topMargin=15 * mm, bottomMargin=30 * mm,
        title=f"{TITLE} {r.id}", author=SERVICE_ZH, subject=f"assessment {r.id}; sha256 {r.content_hash}",
        creator=SERVICE_ZH, producer=SERVICE_ZH, keywords=[r.id, r.doc["dataset_version"], r.doc["verdict"]],
        invariant=1, lang="zh-CN",
    )
    template.build(_story(r, A4[0] - 2 * margin), canvasmaker=_canvas_class(_Footer(r)))
    return out.getvalue()


def render_pdf(doc: dict[str, Any], body: bytes, catalog: Catalog | None, *, verify_url: str) -> bytes:
    """The report as an A4 PDF; the same stored assessment and catalog always give the same bytes."""
    return pdf_from_report(build_report(doc, body, catalog, verify_url=verify_url))


# --------------------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------------------

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True,
                          lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def html_from_report(r: Report) -> str:
    return _ENV.get_template("report.html.j2").render(
        r=r, d=r.doc, title=TITLE, service=SERVICE_ZH, font_url=FONT_URL, effect_colours=EFFECT_COLOURS,
        geometry_zh=GEOMETRY_ZH, dimension_numbers="一二三四")


def render_html(doc: dict[str, Any], body: bytes, catalog: Catalog | None, *, verify_url: str) -> str:
    """The same report as one self-contained HTML page (figures inlined; only the font is fetched, from /static)."""
    return html_from_report(build_report(doc, body, catalog, verify_url=verify_url))
