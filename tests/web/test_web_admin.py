"""The GIS-staff page in a real browser: a draft whose units overlap is listed with its errors and drawn; publishing
as an editor is refused with the reason shown; publishing a clean draft as admin makes it the current version."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest

from app.geo.vector_io import read_layer
from tests.web.conftest import docs_shot, open_page

ROOT = Path(__file__).resolve().parents[2]
GPKG = ROOT / "geodata" / "manzhouli.gpkg"
GROWN_UNIT = "ZH15078120001"  # the central-city unit, surrounded by neighbours


def write_units(frame: gpd.GeoDataFrame, path: Path) -> Path:
    pyogrio.write_dataframe(frame, path, layer="control_units", driver="GPKG")
    return path


@pytest.fixture(scope="module")
def drafts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("drafts")
    units = read_layer(GPKG, "control_units")
    grown = units.to_crs(4548)
    row = grown.HJZHGKDYBM == GROWN_UNIT
    grown.loc[row, "geometry"] = grown.loc[row, "geometry"].buffer(300)
    renamed = units.copy()
    renamed.loc[renamed.HJZHGKDYBM == GROWN_UNIT, "HJZHGKDYMC"] = "满洲里市中心城区重点管控单元（2026年调整）"
    return {"overlap": write_units(grown.to_crs(4490), folder / "units_overlap.gpkg"),
            "clean": write_units(renamed, folder / "units_renamed.gpkg")}


def set_key(page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#key-save")


def upload(page, path: Path, note: str) -> None:
    page.set_input_files("#upload-file", str(path))
    page.select_option("#upload-layer", "control_units")
    page.fill("#upload-note", note)
    with page.expect_response("**/v1/versions/*/diff", timeout=60_000):
        page.click("#upload-submit")
    page.locator("#report-status").wait_for()


def test_upload_validate_compare_and_publish(page, drafts):
    server = page.server
    editor = server.create_key("editor")
    open_page(page, "/admin")
    assert "v1" in page.locator("#history-table").inner_text()

    # An editor uploads units with one unit grown by 300 m: the overlaps are listed, drawn, and the diff shown.
    set_key(page, editor)
    assert page.evaluate("sessionStorage.getItem('mzl.apiKey')") == editor
    upload(page, drafts["overlap"], "单元边界调整（含错误）")
    assert "未通过" in page.locator("#report-status").inner_text()
    errors = page.locator("#report-errors")
    assert "重叠" in errors.inner_text() and "unit_overlap" in errors.inner_text()
    assert page.locator("#report-errors .issue").count() >= 1
    assert page.evaluate("mzlAdmin.issueLayer.getLayers().length") >= 1
    diff = page.locator("#diff-table").inner_text()
    assert "环境管控单元" in diff
    assert page.evaluate("mzlAdmin.diffLayer.getLayers().length") >= 1
    page.locator("#report-errors .issue").first.click()
    docs_shot(page, "page-admin.png")

    # A clean draft: the editor may not publish it, and is told why next to the button.
    upload(page, drafts["clean"], "单元名称调整")
    assert "通过" in page.locator("#report-status").inner_text()
    draft = page.evaluate("mzlAdmin.version.id")
    # Before publishing, the impact on archived assessments can be read (none are archived on this server yet).
    page.click("#impact-run")
    page.locator("#impact-result").get_by_text("项将发生变化").wait_for()
    assert "已筛查 0 项" in page.locator("#impact-result").inner_text()
    page.check("#publish-ack")
    page.click("#publish-submit")
    refused = page.locator("#publish-error")
    refused.get_by_text("权限不足").wait_for()
    assert "403" in refused.inner_text() and "管理员" in refused.inner_text()

    # The admin publishes it: it becomes the current version in the history.
    set_key(page, server.admin_key)
    page.click("#publish-submit")
    page.locator("#publish-ok").get_by_text(f"当前版本为 {draft}").wait_for()
    row = page.locator(f"#history-table tr[data-version='{draft}']")
    row.get_by_text("当前版本").wait_for()
    assert "已发布" in row.inner_text()
    page.locator("#dataset-badge").get_by_text(draft).wait_for()
    status, health = server.call("GET", "/healthz")
    assert health["dataset_version"] == draft

    # The audit log (admin only) records the upload and the publication.
    page.click("[data-btab=audit]")
    page.locator("#audit-table").get_by_text("发布").first.wait_for()
    assert "上传草稿" in page.locator("#audit-table").inner_text()
