"""GET /v1/assessments/{id}/report: PDF and HTML reports for every kind of site, rendered and read back.

Each case is assessed through the API, its PDF rendered to images with pdftoppm (every page must exist and not be
blank) and its text extracted with pdftotext (verdict, unit codes, clause ids, id, versions, hash, page numbers).
`MZL_WRITE_DOCS=1` also writes the docs pictures (docs/img/report-page1.png, report-page2.png).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from pypdf import PdfReader
from pyproj import Transformer

from app.domain.report import VERDICT_COLOURS, boundary_points
from app.geo.crs import from_metric, to_metric

ROOT = Path(__file__).resolve().parents[2]
SURVEY = ROOT / "tests" / "fixtures" / "survey" / "two_parcels_utf8.txt"
DOCS_IMG = ROOT / "docs" / "img"
CLEAN = {
    "name": "国际物流园区冷链仓储项目", "construction_type": "new", "wastewater_discharge": False,
    "discharges_to_sewer": True, "air_emissions": False, "heavy_metals": False, "vocs": False,
    "hazardous_waste": False, "coal_use": False, "biomass_use": False, "boiler_fuel": "none",
    "annual_energy_tce": 100.0, "coal_gas_generator": False, "slag_yard": False, "water_supply_facility": False,
    "construction_land_approved": True, "industry_code": "5990",
}
TO_GK39 = Transformer.from_crs("EPSG:4490", "EPSG:4527", always_xy=True)

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
                                reason="poppler-utils (pdftoppm, pdftotext) not installed")


def square(lon: float, lat: float, side_m: float) -> dict:
    x, y = to_metric(lon, lat)
    h = side_m / 2
    ring = np.array([(x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h), (x - h, y - h)])
    lons, lats = from_metric(ring[:, 0], ring[:, 1])
    return {"type": "Polygon", "coordinates": [[[float(a), float(b)] for a, b in zip(lons, lats)]]}


def _sites(catalog) -> dict[str, tuple[dict, dict]]:
    red = catalog.layers["red_line"]
    p = red.geoms[10].representative_point()
    unit = catalog.units.metric[catalog.unit_row["ZH15078120004"]].buffer(-300).representative_point()
    ulon, ulat = (float(v) for v in from_metric(unit.x, unit.y))
    t = catalog.territory
    edge = shapely.get_coordinates(t.exterior if t.geom_type == "Polygon" else t.geoms[0].exterior)[500]
    elon, elat = (float(v) for v in from_metric(*edge))
    a, b = square(117.455, 49.585, 200), square(ulon, ulat, 200)
    return {
        "red_point": ({"type": "Point", "coordinates": [p.x, p.y]}, {"industry_code": "4430"}),
        "polygon": (square(117.455, 49.585, 300), CLEAN),
        "multipart": ({"type": "MultiPolygon", "coordinates": [a["coordinates"], b["coordinates"]]}, CLEAN),
        "partly_outside": (square(elon, elat, 400), CLEAN),
        "needs_review": (square(117.50, 49.57, 500), {"industry_code": "4430"}),
    }


class Case:
    """One assessment with its stored bytes, report PDF, page images and extracted text."""

    def __init__(self, name: str, client, body: bytes, tmp: Path) -> None:
        self.name, self.body, self.doc = name, body, json.loads(body)
        self.pdf_response = client.get(f"/v1/assessments/{self.doc['id']}/report")
        assert self.pdf_response.status_code == 200, self.pdf_response.text
        self.pdf = self.pdf_response.content
        path = tmp / f"{name}.pdf"
        path.write_bytes(self.pdf)
        subprocess.run(["pdftoppm", "-r", "60", "-png", str(path), str(tmp / name)], check=True)
        self.pages = sorted(tmp.glob(f"{name}-*.png"))
        self.text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                                   text=True).stdout
        self.flat = re.sub(r"\s+", "", self.text)
        self.html_response = client.get(f"/v1/assessments/{self.doc['id']}/report", params={"f": "html"})
        self.path = path


@pytest.fixture(scope="module")
def cases(client, tmp_path_factory) -> dict[str, Case]:
    catalog = client.app.state.datasets.current
    tmp = tmp_path_factory.mktemp("reports")
    out = {}
    for name, (site, project) in _sites(catalog).items():
        r = client.post("/v1/assessments", json={"site": site, "project": project})
        assert r.status_code == 201, r.text
        out[name] = Case(name, client, r.content, tmp)
    r = client.post("/v1/assessments/survey", files={"file": ("site.txt", SURVEY.read_bytes(), "text/plain")},
                    data={"project": json.dumps(CLEAN)})
    assert r.status_code == 201, r.text
    out["survey"] = Case("survey", client, r.content, tmp)
    if os.environ.get("MZL_WRITE_DOCS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for page in (1, 2):
            subprocess.run(["pdftoppm", "-r", "80", "-png", "-f", str(page), "-l", str(page), "-singlefile",
                            str(out["partly_outside"].path), str(DOCS_IMG / f"report-page{page}")], check=True)
    return out


CASES = ["red_point", "polygon", "multipart", "partly_outside", "needs_review", "survey"]


def test_the_cases_have_the_verdicts_they_stand_for(cases):
    assert cases["red_point"].doc["verdict"] == "prohibited"
    assert cases["needs_review"].doc["verdict"] == "needs_review"
    assert cases["multipart"].doc["site"]["geometry_type"] == "MultiPolygon"
    assert {u["code"] for u in cases["multipart"].doc["units"]} == {"ZH15078120001", "ZH15078120004"}
    assert any(w["code"] == "partly_outside" for w in cases["partly_outside"].doc["warnings"])
    assert cases["polygon"].doc["verdict"] in ("permitted", "conditional")
    assert len(cases["survey"].doc["site"]["survey"]["parcels"]) == 2


@pytest.mark.parametrize("name", CASES)
def test_pdf_is_a4_with_every_page_rendered_and_not_blank(cases, name):
    case = cases[name]
    r = case.pdf_response
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'inline; filename="assessment-{case.doc["id"]}.pdf"'
    assert case.pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(case.pdf))
    assert len(case.pages) == len(reader.pages) >= 2
    for page in reader.pages:
        assert (round(float(page.mediabox.width), 1), round(float(page.mediabox.height), 1)) == (595.3, 841.9)
    for png in case.pages:
        grey = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert grey.shape == (702, 497)  # A4 (210 × 297 mm) at 60 dpi
        assert grey.std() > 8, f"{png.name} looks blank"
        assert (grey < 128).mean() > 0.005, f"{png.name} has almost no ink"


@pytest.mark.parametrize("name", CASES)
def test_pdf_text_names_verdict_units_clauses_versions_and_hash(cases, name):
    case = cases[name]
    doc, flat = case.doc, case.flat
    digest = hashlib.sha256(case.body).hexdigest()
    assert "《建设项目生态环境分区管控符合性分析》" in flat
    assert doc["verdict_zh"] in flat
    assert f"分析结论：{doc['verdict_zh']}" in flat  # the running header of pages 2…
    for unit in doc["units"]:
        assert unit["code"] in flat
    for clause in doc["clauses"] + doc["undecided"]:
        assert clause["id"] in flat, clause["id"]
    assert doc["id"] in flat and doc["dataset_version"] in flat
    assert doc["rules_version"][:12] in flat
    assert digest in flat  # the full hash in the body
    n = len(case.pages)
    for page in range(1, n + 1):
        assert f"第{page}页/共{n}页" in flat
    assert flat.count(f"内容校验码SHA-256{digest[:16]}…") == n  # footer on every page
    assert flat.count(f"数据版本{doc['dataset_version']}（示意性参考数据") >= n  # provenance on every page
    assert f"http://testserver/v1/assessments/{doc['id']}" in flat


@pytest.mark.parametrize("name", CASES)
def test_the_verdict_is_shown_large_in_its_colour(cases, name):
    case = cases[name]
    rgb = np.asarray(Image.open(case.pages[0]).convert("RGB"), dtype=int)
    want = np.array([int(VERDICT_COLOURS[case.doc["verdict"]][i:i + 2], 16) for i in (1, 3, 5)])
    close = (np.abs(rgb - want).sum(axis=2) < 30).mean()
    assert close > 0.03  # a coloured box across the page


def test_colours_differ_per_verdict():
    assert VERDICT_COLOURS["prohibited"] == "#c62828"
    assert len(set(VERDICT_COLOURS.values())) == len(VERDICT_COLOURS)


def test_fetching_a_report_twice_gives_the_same_bytes(client, cases):
    cache = client.app.state.report_cache
    for name in ("polygon", "survey"):
        case = cases[name]
        cache._items.clear()  # rendered anew: the same bytes
        again = client.get(f"/v1/assessments/{case.doc['id']}/report")
        assert again.content == case.pdf
        html = client.get(f"/v1/assessments/{case.doc['id']}/report", params={"f": "html"})
        assert html.text == case.html_response.text


def test_a_report_is_rendered_once_and_then_served_from_the_cache(client, cases, monkeypatch):
    from app.api import reports as reports_api

    rendered = []
    for fn in ("render_pdf", "render_html"):
        original = getattr(reports_api, fn)
        monkeypatch.setattr(reports_api, fn, lambda *a, _f=original, _n=fn, **k: rendered.append(_n) or _f(*a, **k))
    case = cases["polygon"]
    client.app.state.report_cache._items.clear()
    url = f"/v1/assessments/{case.doc['id']}/report"
    first, second = client.get(url), client.get(url)
    assert first.content == second.content == case.pdf
    assert client.get(url, params={"f": "html"}).text == client.get(url, params={"f": "html"}).text
    assert rendered == ["render_pdf", "render_html"]
    # another verification address is another report
    other = client.get(url, headers={"host": "zoning.example"})
    assert other.content != case.pdf and rendered[-1] == "render_pdf" and len(rendered) == 3


def test_the_render_cache_stays_within_its_bound():
    from app.domain.report import RenderCache

    cache = RenderCache(max_bytes=250)
    for i in range(10):
        assert cache.get_or_render(("pdf", i), lambda i=i: bytes([i]) * 100) == bytes([i]) * 100
    assert sum(len(v) for v in cache._items.values()) <= 250
    assert list(cache._items) == [("pdf", 8), ("pdf", 9)]
    assert cache.get_or_render(("pdf", 0), lambda: b"x" * 300) == b"x" * 300  # too big to keep
    assert ("pdf", 0) not in cache._items


def test_a_paper_copy_verifies_against_the_stored_assessment(client, cases):
    case = cases["needs_review"]
    url = re.search(r"http://testserver/v1/assessments/[A-Z0-9-]+", case.text).group(0)
    stored = client.get(url.removeprefix("http://testserver")).content
    assert hashlib.sha256(stored).hexdigest() in case.flat
    reader = PdfReader(io.BytesIO(case.pdf))
    assert reader.metadata.title == f"建设项目生态环境分区管控符合性分析 {case.doc['id']}"
    created = case.doc["created_at"].replace("-", "").replace("T", "").replace(":", "").removesuffix("Z")
    assert reader.metadata["/CreationDate"].startswith(f"D:{created}")


def test_boundary_points_are_gauss_krueger_zone_39_with_x_northing(cases):
    for name in ("polygon", "multipart", "partly_outside", "red_point"):
        case = cases[name]
        geom = shapely.geometry.shape(case.doc["site"]["geometry"])
        rows = boundary_points(case.doc["site"]["geometry"])
        expected = []
        for part, poly in enumerate(shapely.get_parts(geom), 1):
            rings = [] if poly.geom_type == "Point" else [poly.exterior, *poly.interiors]
            if not rings:
                e, n = TO_GK39.transform(poly.x, poly.y)
                expected.append((1, "J1", f"{n:.3f}", f"{e:.3f}"))
            label = 0
            for ring in rings:
                coords = list(ring.coords)
                first = label + 1
                for lon, lat in coords[:-1]:
                    label += 1
                    e, n = TO_GK39.transform(lon, lat)
                    expected.append((part, f"J{label}", f"{n:.3f}", f"{e:.3f}"))
                e, n = TO_GK39.transform(*coords[0])
                expected.append((part, f"J{first}", f"{n:.3f}", f"{e:.3f}"))
        assert [(p.part, p.label, p.x_text, p.y_text) for p in rows] == expected
        for part, label, x, y in expected:
            assert y.startswith("39") and len(y.split(".")[0]) == 8 and len(x.split(".")[0]) == 7
            assert re.search(rf"\b{part}\s+\S+\s+{label}\s+{re.escape(x)}\s+{re.escape(y)}\b", case.text), (name, label, x, y)


def test_survey_site_table_reproduces_the_surveyors_file(cases):
    case = cases["survey"]
    lines = [line.split(",") for line in SURVEY.read_text(encoding="utf-8").splitlines() if line.startswith("J")]
    rows = boundary_points(case.doc["site"]["geometry"])
    assert [(p.label, str(p.ring), p.x_text, p.y_text) for p in rows] == [tuple(v) for v in lines]
    for label, ring, x, y in lines:
        assert re.search(rf"\s{ring}\s+{label}\s+{re.escape(x)}\s+{re.escape(y)}\b", case.text)
    for parcel in case.doc["site"]["survey"]["parcels"]:
        assert parcel["name"] in case.flat and f"{parcel['area_m2']:,.2f}" in case.flat
    area = case.doc["site"]["area"]
    assert f"用地总面积{area['m2']:,.2f}{area['ha']:,.4f}{area['mu']:,.3f}" in case.flat


def test_areas_and_shares_are_reported_in_m2_hectares_and_mu(cases):
    case = cases["multipart"]
    for unit in case.doc["units"]:
        assert (f"{unit['code']}{unit['name']}{unit['type_zh']}{unit['overlap_m2']:,.2f}{unit['overlap_ha']:,.4f}"
                f"{unit['overlap_mu']:,.3f}{unit['share'] * 100:.2f}%") in case.flat
    assert re.search(r"\s2\s+1\s+J1\s", case.text)  # the second part starts again at J1


def test_partly_outside_site_reports_the_part_inside_and_warns(cases):
    case = cases["partly_outside"]
    site = case.doc["site"]
    inside = site["inside_area"]
    assert f"其中：管辖范围内（据以分析）{inside['m2']:,.2f}{inside['ha']:,.4f}{inside['mu']:,.3f}" in case.flat
    outside = site["area"]["m2"] - inside["m2"]
    assert f"其中：管辖范围外{outside:,.2f}" in case.flat
    warning = next(w["message"] for w in case.doc["warnings"] if w["code"] == "partly_outside")
    assert re.sub(r"\s+", "", warning) in case.flat


def test_needs_review_report_lists_missing_facts_and_undecided_clauses(cases):
    case = cases["needs_review"]
    assert case.doc["missing_facts"] and case.doc["undecided"]
    for fact in case.doc["missing_facts"]:
        assert re.sub(r"\s+", "", fact["label_zh"]) in case.flat and fact["fact"] in case.flat
    assert "待定条款" in case.flat and "【待定】" in case.flat


def test_point_site_has_one_boundary_row_and_no_area(cases):
    case = cases["red_point"]
    rows = boundary_points(case.doc["site"]["geometry"])
    assert len(rows) == 1 and rows[0].label == "J1"
    assert "项目用地为点位，无面积" in case.flat
    assert "项目点位位于生态保护红线内" in case.flat
    prohibit = [c["id"] for c in case.doc["clauses"] if c["effect"] == "prohibit"]
    assert f"项目触及禁止类条款：{'、'.join(prohibit)}" in case.flat


def test_project_facts_appear_with_their_chinese_labels(cases, client):
    case = cases["polygon"]
    facts = client.app.state.datasets.current.rules.facts
    assert "项目名称国际物流园区冷链仓储项目" in case.flat
    assert f"{facts['construction_type'].label_zh}新建（new）" in re.sub(r"\s+", "", case.text)
    assert f"{facts['boiler_fuel'].label_zh}无锅炉（none）" in case.flat
    assert f"{facts['air_emissions'].label_zh}否" in case.flat  # long labels wrap in their cell: rows in the HTML
    html = case.html_response.text
    for key, value in (("heavy_metals", "否"), ("discharges_to_sewer", "是"), ("annual_energy_tce", "100 tce/a"),
                       ("industry_code", "5990 其他仓储业")):
        assert f"<tr><th>{facts[key].label_zh}</th><td>{value}</td></tr>" in html, key


@pytest.mark.parametrize("name", CASES)
def test_html_report_has_the_same_facts_and_no_outside_urls(cases, name):
    case = cases[name]
    r = case.html_response
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    doc = case.doc
    for needle in (doc["verdict_zh"], doc["id"], doc["dataset_version"], hashlib.sha256(case.body).hexdigest(),
                   "《建设项目生态环境分区管控符合性分析》"):
        assert needle in html
    for unit in doc["units"]:
        assert unit["code"] in html
    for clause in doc["clauses"] + doc["undecided"]:
        assert f'id="clause-{clause["id"]}"' in html
    for p in boundary_points(doc["site"]["geometry"]):
        assert f'<td class="num">{p.x_text}</td><td class="num">{p.y_text}</td>' in html
    hosts = set(re.findall(r"https?://([^/\s\"'<>)]+)", html))
    assert hosts == {"testserver"}
    assert 'url("/static/fonts/wqy-microhei.ttf")' in html
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}" alt="项目用地位置图">', html)
    assert "<script" not in html and "<link" not in html


def test_html_font_is_served_by_the_service(client):
    r = client.get("/static/fonts/wqy-microhei.ttf")
    assert r.status_code == 200 and len(r.content) > 1_000_000


def test_unknown_assessment_gives_404_with_the_json_error_body(client):
    for suffix in ("", "?f=html"):
        r = client.get(f"/v1/assessments/A20000101-NOSUCHID/report{suffix}")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found" and "A20000101-NOSUCHID" in r.json()["error"]["message"]
    r = client.get("/v1/assessments/" + "X" * 100 + "/report")
    assert r.status_code == 404


def test_unknown_format_is_a_422(client, cases):
    r = client.get(f"/v1/assessments/{cases['polygon'].doc['id']}/report", params={"f": "docx"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_the_report_endpoint_is_in_the_openapi_document(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/assessments/{assessment_id}/report"]["get"]
    assert "application/pdf" in op["responses"]["200"]["content"]
    assert "404" in op["responses"]
