"""The officer page in a real browser: identify and pick a point in the red line and see 禁止; paste a Gauss-Krüger
table in survey X/Y order and see it drawn where it belongs; upload a land-survey file and see its two parcels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pyproj import Transformer

from app.geo.vector_io import read_layer
from tests.web.conftest import docs_shot, open_page

ROOT = Path(__file__).resolve().parents[2]
GPKG = ROOT / "geodata" / "manzhouli.gpkg"
SURVEY = ROOT / "tests" / "fixtures" / "survey" / "two_parcels_utf8.txt"

# Parcel 1 of two_parcels_utf8.txt as a survey table: point, X (northing), Y (easting with zone prefix 39).
GK_TABLE = """点号  X  Y
J1  5494100.000  39531000.000
J2  5494100.000  39531262.500
J3  5493880.250  39531262.500
J4  5493835.500  39531120.000
J5  5493861.750  39531000.000
"""


@pytest.fixture(scope="module")
def red_line_point() -> tuple[str, float, float]:
    """A point inside the largest red-line patch of the served data: (patch id, lon, lat)."""
    red = read_layer(GPKG, "red_line")
    i = red.to_crs(4548).geometry.area.idxmax()
    p = red.geometry.iloc[i].representative_point()
    return str(red.patch_id.iloc[i]), round(p.x, 7), round(p.y, 7)


def test_click_a_point_in_the_red_line_and_see_prohibited(page, red_line_point):
    patch, lon, lat = red_line_point
    open_page(page, "/")
    banner = page.locator("#illustrative-banner")
    assert banner.is_visible() and "示意性" in banner.inner_text()
    assert "v1" in page.locator("#dataset-badge").inner_text()
    # Click the map on the patch: the popup names the red-line patch and the unit, with their clauses.
    page.evaluate("([lat, lon]) => { mzl.base.map.setView([lat, lon], 13, {animate: false}); }", [lat, lon])
    xy = page.evaluate("([lat, lon]) => { const p = mzl.base.map.latLngToContainerPoint([lat, lon]); return [p.x, p.y]; }",
                       [lat, lon])
    page.locator("#map").click(position={"x": xy[0], "y": xy[1]})
    popup = page.locator(".leaflet-popup-content")
    popup.get_by_text("单元管控要求").wait_for()
    text = popup.inner_text()
    assert "生态保护红线" in text and patch in text
    assert re.search(r"ZH\d{11}", text) and "环境管控单元" in text and "来源：" in text
    # The industry search finds a class by its Chinese name.
    page.fill("#industry-search", "原油加工")
    page.locator("#industry-list .opt").first.click()
    assert "251" in page.locator("#industry-chosen").inner_text()
    # Use the clicked point as the site: it is drawn and described before assessing.
    popup.locator("#use-point").click()
    summary = page.locator("#site-summary")
    summary.get_by_text("地图点选").wait_for()
    assert "点位" in summary.inner_text()
    page.click("#assess")
    verdict = page.locator("#verdict-text")
    verdict.wait_for()
    assert verdict.inner_text() == "禁止"
    assert page.locator("#verdict").get_attribute("data-verdict") == "prohibited"
    assert "位于生态保护红线内" in page.locator("#red-line-result").inner_text()
    result = page.evaluate("mzl.result")
    assert result["project"]["industry_code"].startswith("251")
    assert re.fullmatch(r".*/assessments/A\d{8}-[0-9A-Z]{8}", page.url)
    assert page.locator("#report-link").get_attribute("href") == f"/v1/assessments/{result['id']}/report"
    clauses = page.locator("#clauses").inner_text()
    for dimension in ("空间布局约束", "污染物排放管控", "环境风险防控", "资源开发效率要求"):
        assert dimension in clauses
    docs_shot(page, "page-result.png")
    # The permanent link opens the stored assessment.
    page.goto(page.url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#verdict-text").inner_text() == "禁止"
    assert result["id"] in page.locator("#result-panel").inner_text()


def test_paste_a_gauss_kruger_table_in_survey_order(page):
    open_page(page, "/")
    page.click("[data-tab=paste]")
    page.select_option("#paste-crs", "gk39_survey")
    page.fill("#paste-text", GK_TABLE)
    with page.expect_response("**/ui/preview") as info:
        page.click("#paste-show")
    preview = info.value.json()
    assert info.value.status == 200, preview
    to_lonlat = Transformer.from_crs(4527, 4490, always_xy=True)
    expected = [to_lonlat.transform(e, n) for n, e in
                [(5494100.0, 39531000.0), (5494100.0, 39531262.5), (5493880.25, 39531262.5)]]
    ring = preview["geometry"]["coordinates"][0]
    assert preview["geometry_type"] == "Polygon" and len(ring) == 6
    for (lon, lat), (elon, elat) in zip(ring, expected):
        assert abs(lon - elon) < 2e-6 and abs(lat - elat) < 2e-6
    assert preview["inside_territory"] is True and abs(preview["area"]["m2"] - 50_000) < 15_000
    # What the map drew is what the service understood.
    bounds = page.evaluate("(() => { const b = mzl.siteLayer.getBounds(); "
                           "return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()")
    assert bounds == pytest.approx(preview["bounds"], abs=1e-6)
    summary = page.locator("#site-summary").inner_text()
    assert "EPSG:4527" in summary and "X=北" in summary and "6 个顶点" in summary
    docs_shot(page, "page-officer.png")
    # The same table read as easting-first is refused, in Chinese, next to the input.
    page.select_option("#paste-crs", "gk39_xy")
    page.click("#paste-show")
    error = page.locator("#paste-error")
    error.get_by_text("颠倒").wait_for()
    assert "北坐标" in error.inner_text()


def test_draw_a_polygon_with_the_vendored_plugin(page):
    open_page(page, "/")
    page.evaluate("() => { mzl.base.map.setView([49.585, 117.455], 13, {animate: false}); }")
    page.click("[data-tab=draw]")
    page.click("#draw-start")
    corners = [(250, 250), (400, 250), (400, 400), (250, 400), (250, 250)]
    expected = page.evaluate("pts => pts.map(([x, y]) => { const ll = mzl.base.map.containerPointToLatLng([x, y]);"
                             " return [ll.lng, ll.lat]; })", corners[:4])
    box = page.locator("#map").bounding_box()
    with page.expect_response("**/ui/preview") as info:
        for x, y in corners:
            page.mouse.click(box["x"] + x, box["y"] + y)
    preview = info.value.json()
    ring = preview["geometry"]["coordinates"][0]
    assert preview["geometry_type"] == "Polygon" and len(ring) == 5
    for (lon, lat), (elon, elat) in zip(ring, expected):
        assert abs(lon - elon) < 1e-4 and abs(lat - elat) < 1e-4
    page.locator("#site-summary").get_by_text("地图绘制").wait_for()
    assert page.locator("#assess").is_enabled()


def test_upload_a_survey_file_and_see_two_parcels(page):
    open_page(page, "/")
    page.click("[data-tab=file]")
    page.set_input_files("#survey-file", str(SURVEY))
    page.locator("#parcel-count").get_by_text("2 个地块").wait_for()
    assert page.evaluate("mzl.site.preview.parcels.features.length") == 2
    assert page.locator(".parcel-label").count() == 2
    summary = page.locator("#site-summary").inner_text()
    assert "国际物流园区仓储项目" in summary and "光伏发电项目用地" in summary and "EPSG:4527" in summary
    page.fill("#project-name", "物流园与光伏项目")
    page.click("#assess")
    page.locator("#verdict-text").wait_for()
    result = page.evaluate("mzl.result")
    assert len(result["site"]["survey"]["parcels"]) == 2
    assert result["site"]["geometry_type"] == "MultiPolygon"
    assert page.locator("#verdict-text").inner_text() == result["verdict_zh"]
    units = page.locator("#result-panel").inner_text()
    assert "公顷" in units and "亩" in units
