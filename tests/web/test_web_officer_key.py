"""The officer page on a service that requires officer keys: the key field appears on 401 and the key works."""

from __future__ import annotations

import pytest

from conftest import open_page, run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("web-key-server"), MZL_REQUIRE_OFFICER_KEY="true") as srv:
        yield srv


def test_an_officer_key_is_asked_for_and_used(page, server):
    officer = server.create_key("officer")
    open_page(page, "/")
    page.click("[data-tab=paste]")
    page.select_option("#paste-crs", "gk39_survey")
    page.fill("#paste-text", "J1  5494100.000  39531000.000\nJ2  5494100.000  39531262.500\n"
                             "J3  5493880.250  39531262.500\nJ4  5493861.750  39531000.000\n")
    page.click("#paste-show")
    page.locator("#paste-error").get_by_text("401").wait_for()  # even the preview needs the key here
    assert page.locator("#officer-key-row").is_visible()
    page.fill("#officer-key", officer)
    page.click("#paste-show")
    page.locator("#site-summary").get_by_text("EPSG:4527").first.wait_for()
    with page.expect_response("**/v1/assessments") as info:
        page.click("#assess")
    assert info.value.status == 201
    assert info.value.request.headers.get("x-api-key") == officer
    page.locator("#result-panel").get_by_text("ZH15078120001").first.wait_for()
    assert page.evaluate("sessionStorage.getItem('mzl-officer-key')") == officer
