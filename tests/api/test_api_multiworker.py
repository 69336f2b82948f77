"""A real server with two worker processes: a publish reaches every worker, queries never fail or mix versions."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from pathlib import Path

import pyogrio
import pytest

from tests.live import uvicorn_server

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "multiworker-admin-key-0123456789"


def request(port, method, path, body=None, headers=None, timeout=30):
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        con.request(method, path, body=body, headers=headers or {})
        r = con.getresponse()
        return r.status, r.read()
    finally:
        con.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiworker")
    with uvicorn_server(root, workers=2, args=["--http", "httptools", "--loop", "uvloop", "--log-level", "warning"],
                        MZL_BOOTSTRAP_ADMIN_KEY=ADMIN_KEY) as srv:
        yield srv.port, root


def multipart(fields: dict[str, str], file: tuple[str, bytes]) -> tuple[bytes, str]:
    boundary = "----mzl" + os.urandom(8).hex()
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file[0]}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + file[1] + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def wait_until_all(port, version, answers, stop_after=40, timeout=60):
    """Query on fresh connections (spread over the workers) until `stop_after` answers in a row name `version`."""
    streak, deadline = 0, time.monotonic() + timeout
    while streak < stop_after:
        assert time.monotonic() < deadline, f"workers did not converge on {version}: {answers[-10:]}"
        status, body = request(port, "GET", "/v1/lookup?lon=117.455&lat=49.585")
        answers.append((status, json.loads(body).get("dataset_version")))
        streak = streak + 1 if answers[-1] == (200, version) else 0


def test_publish_and_rollback_reach_every_worker_without_errors(server, tmp_path):
    port, _ = server
    units = pyogrio.read_dataframe(ROOT / "geodata" / "manzhouli.gpkg", layer="control_units")
    units.loc[units.HJZHGKDYBM == "ZH15078120001", "HJZHGKDYMC"] = "中心城区（多进程测试）"
    path = tmp_path / "units.gpkg"
    pyogrio.write_dataframe(units, path, layer="control_units")
    body, ctype = multipart({"layer": "control_units"}, ("units.gpkg", path.read_bytes()))
    status, raw = request(port, "POST", "/v1/versions", body, {"Content-Type": ctype, "X-API-Key": ADMIN_KEY}, 120)
    assert status == 201, raw
    draft = json.loads(raw)["version"]["id"]

    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            status, body = request(port, "GET", "/v1/lookup?lon=117.455&lat=49.585")
            answers.append((status, json.loads(body).get("dataset_version")))

    threads = [threading.Thread(target=stream) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        status, raw = request(port, "POST", f"/v1/versions/{draft}/publish", json.dumps({"acknowledge_warnings": True}),
                              {"Content-Type": "application/json", "X-API-Key": ADMIN_KEY}, 120)
        assert status == 200, raw
        wait_until_all(port, draft, answers)
        status, raw = request(port, "POST", "/v1/versions/v1/rollback", "{}",
                              {"Content-Type": "application/json", "X-API-Key": ADMIN_KEY}, 120)
        assert status == 200, raw
        wait_until_all(port, "v1", answers)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert answers and all(status == 200 for status, _ in answers)
    assert {version for _, version in answers} == {"v1", draft}
