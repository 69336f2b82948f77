"""The report builder without HTTP: boundary-point table, determinism, fonts, figures, missing data, self-containment.

Assessments are made through the `client` fixture (the real app on the embedded data); the report functions are
then called directly with the stored bytes and the catalog of the version the assessment names.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader
from pyproj import Transformer

from app.domain import report, report_map
from app.domain.report import boundary_points, catalog_for_assessment, render_html, render_pdf

ROOT = Path(__file__).resolve().parents[2]
TO_GK39 = Transformer.from_crs("EPSG:4490", "EPSG:4527", always_xy=True)
URL = "https://zoning.example.gov.cn/v1/assessments/"
HOLED = {
    "type": "MultiPolygon",
    "coordinates": [
        [[[117.450, 49.580], [117.456, 49.580], [117.456, 49.584], [117.450, 49.584], [117.450, 49.580]],
         [[117.452, 49.581], [117.452, 49.583], [117.454, 49.583], [117.454, 49.581], [117.452, 49.581]]],
        [[[117.460, 49.586], [117.463, 49.586], [117.463, 49.588], [117.460, 49.588], [117.460, 49.586]]],
    ],
}


def _post(client, site, project) -> tuple[dict, bytes]:
    r = client.post("/v1/assessments", json={"site": site, "project": project})
    assert r.status_code == 201, r.text
    return r.json(), r.content


@pytest.fixture(scope="module")
def service(client):
    return client.app.state.datasets


@pytest.fixture(scope="module")
def holed(client):
    return _post(client, HOLED, {"industry_code": "5990", "construction_type": "new"})


@pytest.fixture(scope="module")
def outside(client):
    return _post(client, {"type": "Point", "coordinates": [117.0, 49.45]}, {})


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def test_boundary_points_number_each_part_continue_across_rings_and_close_each_ring():
    rows = boundary_points(HOLED)
    assert [(p.part, p.ring, p.label) for p in rows] == [
        (1, 1, "J1"), (1, 1, "J2"), (1, 1, "J3"), (1, 1, "J4"), (1, 1, "J1"),
        (1, 2, "J5"), (1, 2, "J6"), (1, 2, "J7"), (1, 2, "J8"), (1, 2, "J5"),
        (2, 1, "J1"), (2, 1, "J2"), (2, 1, "J3"), (2, 1, "J4"), (2, 1, "J1"),
    ]
    e, n = TO_GK39.transform(117.450, 49.580)
    assert (rows[0].x_text, rows[0].y_text) == (f"{n:.3f}", f"{e:.3f}")
    assert rows[0].x_text == "5494229.830" and rows[0].y_text == "39532543.227"  # X = northing, Y = 39 + easting
    e, n = TO_GK39.transform(117.452, 49.581)
    assert (rows[5].x, rows[5].y) == (n, e)
    assert rows[4] == report.BoundaryPoint(1, 1, "J1", rows[0].x, rows[0].y)


def test_a_point_gives_one_row():
    rows = boundary_points({"type": "Point", "coordinates": [117.447, 49.589]})
    e, n = TO_GK39.transform(117.447, 49.589)
    assert rows == [report.BoundaryPoint(1, 0, "J1", n, e)]
    assert rows[0].y_text.startswith("39") and rows[0].x_text.startswith("549")


def test_the_pdf_is_byte_identical_when_made_again_and_dated_by_the_assessment(holed, outside, service):
    doc, body = holed
    catalog = catalog_for_assessment(service, doc)
    assert catalog is service.current
    url = URL + doc["id"]
    first = render_pdf(doc, body, catalog, verify_url=url)
    render_pdf(outside[0], outside[1], catalog, verify_url=URL + outside[0]["id"])  # another document in between
    assert render_pdf(doc, body, catalog, verify_url=url) == first
    meta = PdfReader(io.BytesIO(first)).metadata
    stamp = "D:" + re.sub(r"[-T:Z]", "", doc["created_at"])
    assert meta["/CreationDate"].startswith(stamp) and meta["/ModDate"].startswith(stamp)
    assert meta.title == f"建设项目生态环境分区管控符合性分析 {doc['id']}"
    assert doc["id"] in meta.subject and report.content_hash(body) in meta.subject


def test_a_fresh_process_makes_the_same_bytes(holed, tmp_path):
    doc, body = holed
    (tmp_path / "body.json").write_bytes(body)
    script = (
        "import json, sys; from pathlib import Path; from app.domain.report import render_pdf\n"
        "body = Path(sys.argv[1]).read_bytes()\n"
        "sys.stdout.buffer.write(render_pdf(json.loads(body), body, None, verify_url=sys.argv[2]))\n"
    )
    url = URL + doc["id"]
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "body.json"), url], cwd=ROOT, check=True,
                         capture_output=True).stdout
    assert out == render_pdf(doc, body, None, verify_url=url)


def test_the_vendored_cjk_font_is_embedded_and_the_text_extractable(holed, tmp_path):
    doc, body = holed
    pdf = render_pdf(doc, body, None, verify_url=URL + doc["id"])
    reader = PdfReader(io.BytesIO(pdf))
    fonts = reader.pages[0]["/Resources"]["/Font"]
    embedded = [f.get_object() for f in fonts.values()
                if "/FontFile2" in f.get_object().get("/FontDescriptor", {})]
    assert embedded and all("WenQuanYi" in str(f["/BaseFont"]) for f in embedded)
    text = _text(pdf, tmp_path)
    assert "建设项目生态环境分区管控符合性分析" in text and "界址点坐标" in text


def test_without_the_versions_data_the_report_says_so_and_leaves_the_figures_out(holed, tmp_path):
    doc, body = holed
    pdf = render_pdf(doc, body, None, verify_url=URL + doc["id"])
    flat = re.sub(r"\s+", "", _text(pdf, tmp_path))
    assert f"数据版本{doc['dataset_version']}的图层已不可用" in flat
    assert all(not page.images for page in PdfReader(io.BytesIO(pdf)).pages)
    for unit in doc["units"]:
        assert unit["code"] in flat  # the tables come from the stored document, not from the data
    html = render_html(doc, body, None, verify_url=URL + doc["id"])
    assert "项目用地位置图" not in html and "图层已不可用" in html


def test_catalog_for_assessment_refuses_unknown_or_changed_versions(holed, service):
    doc, _ = holed
    assert catalog_for_assessment(service, {**doc, "dataset_version": "v999"}) is None
    assert catalog_for_assessment(service, {**doc, "dataset_hash": "0" * 64}) is None


def test_figures_are_deterministic_pngs_without_a_software_stamp(holed, service):
    doc, _ = holed
    catalog = service.current
    one = report_map.site_map_png(doc, catalog)
    assert one == report_map.site_map_png(doc, catalog)
    assert one.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in one and b"matplotlib" not in one
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(one)).convert("RGB"))
    assert img.shape[1] == 1380 and img.std() > 20
    site_blue = (np.abs(img.astype(int) - [0x0B, 0x2F, 0xA8]).sum(axis=2) < 40).sum()
    assert site_blue > 200  # the site outline is drawn
    lc = report_map.land_cover_png(doc, catalog)
    assert lc == report_map.land_cover_png(doc, catalog) and lc.startswith(b"\x89PNG")


def test_view_box_keeps_the_site_inside_with_room_around_it():
    import shapely

    site = shapely.box(0, 0, 1000, 200)
    minx, miny, maxx, maxy = report_map.view_box(site)
    assert minx < 0 and maxx > 1000 and miny < 0 and maxy > 200
    assert (maxx - minx) / (maxy - miny) == pytest.approx(1.5)
    assert maxy - miny >= 1800


def test_html_is_self_contained_and_names_only_the_services_own_host(holed, service):
    doc, body = holed
    html = render_html(doc, body, service.current, verify_url=URL + doc["id"])
    assert set(re.findall(r"https?://([^/\s\"'<>)]+)", html)) == {"zoning.example.gov.cn"}
    assert "<script" not in html and "<link" not in html and "@import" not in html
    srcs = re.findall(r'src="([^"]+)"', html)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)  # map, land cover, QR
    assert 'url("/static/fonts/wqy-microhei.ttf")' in html
    assert report.content_hash(body) in html and doc["verdict_zh"] in html


def test_outside_jurisdiction_report(outside, service, tmp_path):
    doc, body = outside
    assert doc["verdict"] == "outside_jurisdiction"
    pdf = render_pdf(doc, body, service.current, verify_url=URL + doc["id"])
    flat = re.sub(r"\s+", "", _text(pdf, tmp_path))
    assert "不在管辖范围内" in flat and "项目用地不在满洲里市（含扎赉诺尔区）管辖范围内" in flat
    assert "无（用地不在管辖范围内）" in flat and "无适用条款" in flat


def test_report_domain_code_does_not_import_fastapi():
    for name in ("report.py", "report_map.py"):
        tree = ast.parse((ROOT / "app" / "domain" / name).read_text(encoding="utf-8"))
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in modules if m.split(".")[0] in ("fastapi", "starlette")}, name


def test_the_report_context_reads_the_stored_document(holed, service):
    doc, body = holed
    r = report.build_report(json.loads(body), body, service.current, verify_url=URL + doc["id"], figures=False)
    assert r.hash_short == report.content_hash(body)[:16] and r.rules_short == doc["rules_version"][:12]
    assert [row[0] for row in r.unit_rows] == [u["code"] for u in doc["units"]]
    assert r.site_area_rows[0][1:] == [f"{doc['site']['area']['m2']:,.2f}", f"{doc['site']['area']['ha']:,.4f}",
                                       f"{doc['site']['area']['mu']:,.3f}"]
    assert r.project_rows[0][0] == service.current.rules.facts["industry_code"].label_zh
    assert r.created_utc_text == doc["created_at"].replace("T", " ").replace("Z", " UTC")
