"""Browser tests of the map pages: a real uvicorn server per module, driven by Playwright in Debian's Chromium.

The browser may talk to 127.0.0.1 only: every other request is aborted and recorded, and a test that made one
fails (the pages must work with the network unplugged). Screenshots for the docs are written to docs/img/ only when
MZL_WRITE_DOCS=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.live import uvicorn_server

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMG = ROOT / "docs" / "img"
CHROMIUM = os.environ.get("MZL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_KEY = "web-test-admin-key-0123456789abcdef"
VIEWPORT = {"width": 1366, "height": 768}


class Server:
    def __init__(self, base: str, log: Path) -> None:
        self.base = base
        self.log = log
        self.admin_key = ADMIN_KEY

    def call(self, method: str, path: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("X-API-Key", key)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def create_key(self, role: str) -> str:
        status, body = self.call("POST", "/v1/keys", {"name": f"网页测试{role}", "role": role}, key=ADMIN_KEY)
        assert status == 201, body
        return body["key"]


@contextlib.contextmanager
def run_server(root: Path, **extra_env: str):
    """The service on a free port, with its own version store and assessment store under `root`."""
    with uvicorn_server(root, MZL_BOOTSTRAP_ADMIN_KEY=ADMIN_KEY, **extra_env) as srv:
        yield Server(srv.base, srv.log)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The service on a free port, with its own version store and assessment store in a temporary folder."""
    with run_server(tmp_path_factory.mktemp("web-server")) as srv:
        yield srv


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM} (CI installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on a laptop-sized screen that may reach 127.0.0.1 only; fails on script errors."""
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", device_scale_factor=1)
    outside: list[str] = []
    errors: list[str] = []

    def guard(route):
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.server = server
    yield pg
    context.close()
    assert not outside, f"the page tried to reach other hosts: {outside}"
    assert not errors, f"script errors on the page: {errors}"


def open_page(pg, path: str) -> None:
    pg.goto(pg.server.base + path)
    pg.wait_for_selector("body[data-ready='1']")


def docs_shot(pg, name: str) -> None:
    """Save a screenshot for docs/img/ when MZL_WRITE_DOCS=1 (the committed pictures are made that way)."""
    if os.environ.get("MZL_WRITE_DOCS") == "1":
        pg.wait_for_timeout(400)  # let canvas layers and the font settle
        pg.screenshot(path=str(DOCS_IMG / name))
