"""POST /v1/batch and the background jobs: inputs (JSON, CSV, GeoPackage, zipped Shapefile), streamed outputs that
parse back, versions named, bad rows reported, hostile input refused with 4xx and Chinese messages."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import orjson
import pyogrio
import pytest
import shapely

import app.api.batch as batch_api
from app.domain.assessment import assess

SQUARE = "POLYGON ((117.40 49.55, 117.41 49.55, 117.41 49.56, 117.40 49.56, 117.40 49.55))"


def csv_rows(body: bytes) -> tuple[str, list[dict]]:
    text = body.decode("utf-8-sig")
    first, rest = text.split("\n", 1)
    return first, list(csv.DictReader(io.StringIO(rest)))


def assert_versions(response, client) -> None:
    dataset = client.get("/v1/dataset").json()
    assert response.headers["x-dataset-version"] == dataset["dataset_version"]
    assert response.headers["x-rules-version"] == dataset["rules_version"]


def test_json_batch_streams_csv_naming_the_versions(client, catalog):
    body = {"sites": [
        {"id": "A", "lon": 117.447, "lat": 49.589, "project": {"industry_code": "3011"}},
        {"id": "B", "site": SQUARE, "project": {"industry_code": "0610", "construction_type": "new"}},
        {"id": "C", "lon": 117.447, "lat": 200.0},
        {"id": "D", "site": {"type": "Point", "coordinates": [116.0, 48.0]}},
    ]}
    r = client.post("/v1/batch", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-site-count"] == "4"
    assert_versions(r, client)
    first, rows = csv_rows(r.content)
    assert first.startswith("# dataset_version=") and r.headers["x-rules-version"] in first
    assert [row["id"] for row in rows] == ["A", "B", "C", "D"]
    for row, site in zip(rows[:2], body["sites"][:2]):
        doc = client.post("/v1/assessments", json={"site": site.get("site") or [site["lon"], site["lat"]],
                                                    "project": site["project"]}).json()
        assert row["verdict"] == doc["verdict"]
        assert row["units"] == ";".join(u["code"] for u in doc["units"])
        assert row["clauses"] == ";".join(c["id"] for c in doc["clauses"])
        assert float(row["red_line_distance_m"]) == doc["red_line"]["distance_m"]
    assert rows[2]["verdict"] == "" and "第 3 个场址" in rows[2]["error"] and "纬度" in rows[2]["error"]
    assert rows[3]["verdict"] == "outside_jurisdiction" and rows[3]["red_line_distance_m"] == ""


def test_csv_body_answered_as_ndjson_from_the_accept_header(client, catalog):
    text = "id,lon,lat,industry_code,wastewater_discharge\nA1,117.447,49.589,3011,是\nA2,117.5,abc,,\nA3,117.52,49.55,,否\n"
    r = client.post("/v1/batch", content=text.encode("gbk"),
                    headers={"content-type": "text/csv", "accept": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert lines[0]["type"] == "batch" and lines[0]["dataset_version"] == r.headers["x-dataset-version"]
    assert lines[0]["rules_version"] == r.headers["x-rules-version"] and lines[0]["site_count"] == 3
    a1, a2, a3 = lines[1:]
    doc = assess(shapely.Point(117.447, 49.589), {"industry_code": "3011", "wastewater_discharge": True}, catalog)
    assert a1["verdict"] == doc["verdict"] and a1["clauses"] == [c["id"] for c in doc["clauses"]]
    assert a1["missing_facts"] == [m["fact"] for m in doc["missing_facts"]]
    assert a2["verdict"] is None and "文件第 3 行" in a2["error"] and "lat" in a2["error"]
    assert a3["error"] is None and a3["verdict"]


def test_geojson_output(client):
    r = client.post("/v1/batch?format=geojson", json={"sites": [{"lon": 117.447, "lat": 49.589}, {"site": SQUARE}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    doc = r.json()
    assert doc["type"] == "FeatureCollection" and doc["dataset_version"] == r.headers["x-dataset-version"]
    assert [f["geometry"]["type"] for f in doc["features"]] == ["Point", "Polygon"]
    assert all(f["properties"]["verdict"] for f in doc["features"])


def sites_frame(n: int = 30) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(4)
    lon, lat = rng.uniform(117.35, 117.60, n), rng.uniform(49.50, 49.65, n)
    geoms = [shapely.Point(a, b) if i % 3 else shapely.Point(a, b).buffer(0.002, quad_segs=2)
             for i, (a, b) in enumerate(zip(lon, lat))]
    return gpd.GeoDataFrame({"id": [f"F{i}" for i in range(n)],
                             "industry_code": ["3011" if i % 2 else "0610" for i in range(n)],
                             "wastewater_discharge": [bool(i % 2) for i in range(n)]}, geometry=geoms, crs=4490)


@pytest.mark.filterwarnings("ignore:Normalized/laundered field name")
def test_geopackage_and_zipped_shapefile_uploads(client, catalog, tmp_path):
    frame = sites_frame()
    gpkg = tmp_path / "sites.gpkg"
    pyogrio.write_dataframe(frame.to_crs(4548), gpkg, layer="sites")
    r = client.post("/v1/batch?format=ndjson", files={"file": ("sites.gpkg", gpkg.read_bytes())})
    assert r.status_code == 200, r.text
    rows = [orjson.loads(line) for line in r.content.splitlines()[1:]]
    assert [row["id"] for row in rows] == list(frame["id"])
    assert all(row["error"] is None and row["verdict"] for row in rows)
    for i in (0, 1, 2):
        facts = {"industry_code": frame["industry_code"][i], "wastewater_discharge": bool(frame["wastewater_discharge"][i])}
        assert rows[i]["verdict"] == assess(frame.geometry[i], facts, catalog)["verdict"]

    points = frame[frame.geometry.geom_type == "Point"]
    shp_dir = tmp_path / "shp"
    shp_dir.mkdir()
    pyogrio.write_dataframe(points, shp_dir / "sites.shp", encoding="UTF-8")
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        for part in shp_dir.iterdir():
            zf.write(part, part.name)
    r = client.post("/v1/batch", files={"file": ("sites.zip", data.getvalue(), "application/zip")},
                    data={"crs": "EPSG:4490"})
    assert r.status_code == 200, r.text
    _, rows = csv_rows(r.content)
    assert [row["id"] for row in rows] == list(points["id"]) and all(row["verdict"] for row in rows)

    two = tmp_path / "two.gpkg"
    pyogrio.write_dataframe(frame, two, layer="a")
    pyogrio.write_dataframe(frame, two, layer="b", append=True)
    r = client.post("/v1/batch", files={"file": ("two.gpkg", two.read_bytes())})
    assert r.status_code == 422 and "2 个图层" in r.json()["error"]["message"]


def hostile_cases():
    nested = b'{"sites": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    return [
        ("no coordinate columns", dict(content=b"name,addr\nx,y\n", headers={"content-type": "text/csv"}), 422, "缺少场址列"),
        ("unknown column", dict(content=b"lon,lat,remark\n117.4,49.5,x\n", headers={"content-type": "text/csv"}),
         422, "remark"),
        ("NaN in JSON", dict(content=b'{"sites": [{"lon": NaN, "lat": 49.5}]}',
                             headers={"content-type": "application/json"}), 422, "NaN"),
        ("nested JSON", dict(content=nested, headers={"content-type": "application/json"}), 422, "JSON"),
        ("empty body", dict(content=b"", headers={"content-type": "application/json"}), 422, "请求体为空"),
        ("sites not a list", dict(json={"sites": {"lon": 1}}), 422, "sites"),
        ("bad crs", dict(json={"sites": [{"lon": 1, "lat": 2}], "crs": "EPSG:3857"}), 422, "坐标系"),
        ("content type", dict(content=b"<x/>", headers={"content-type": "application/xml"}), 422, "内容类型"),
        ("multipart without file", dict(data={"crs": "EPSG:4490"}, files={"other": ("a.txt", b"x")}), 422, "file"),
        ("garbage file", dict(files={"file": ("x.gpkg", b"SQLite format 3\x00" + bytes(range(256)) * 8)}), 422, ""),
        ("zip without shapefile", dict(files={"file": ("x.zip", _zip({"readme.txt": b"hello"}))}), 422, "Shapefile"),
        ("too many sites for one request", dict(content=b"lon,lat\n" + b"117.4,49.5\n" * 250_000,
                                                headers={"content-type": "text/csv"}), 413, "后台任务"),
    ]


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("case", hostile_cases(), ids=lambda c: c[0])
def test_hostile_input_gets_4xx_with_a_chinese_message(client, case):
    _, kwargs, status, fragment = case
    r = client.post("/v1/batch", **kwargs)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert fragment in message and any("\u4e00" <= ch <= "\u9fff" for ch in message)


def test_bad_query_parameters_and_too_many_sites(client, monkeypatch):
    r = client.post("/v1/batch?format=xlsx", json={"sites": [{"lon": 117.4, "lat": 49.5}]})
    assert r.status_code == 422 and "format" in r.json()["error"]["message"]
    monkeypatch.setattr(batch_api, "SYNC_MAX_SITES", 100)
    text = "lon,lat\n" + "117.45,49.58\n" * 101
    r = client.post("/v1/batch", content=text, headers={"content-type": "text/csv"})
    assert r.status_code == 413 and "/v1/batch/jobs" in r.json()["error"]["message"]


def test_background_job_runs_to_completion_with_progress(client, monkeypatch):
    monkeypatch.setattr(batch_api, "STREAM_BLOCK", 250)
    rng = np.random.default_rng(9)
    sites = [{"id": f"J{i}", "lon": float(a), "lat": float(b)}
             for i, (a, b) in enumerate(zip(rng.uniform(117.3, 117.7, 4000), rng.uniform(49.45, 49.7, 4000)))]
    r = client.post("/v1/batch/jobs?format=ndjson", json={"sites": sites, "project": {"industry_code": "3011"}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done") and job["total"] == 4000
    assert r.headers["location"] == f"/v1/batch/jobs/{job['id']}"
    assert_versions(r, client)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(f"/v1/batch/jobs/{job['id']}").json()
        seen.append(status["done"])
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.02)
    assert status["status"] == "done", status
    assert status["done"] == status["total"] == 4000 and status["progress"] == 1.0
    assert seen == sorted(seen)
    r = client.get(status["result_url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert_versions(r, client)
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert lines[0]["site_count"] == 4000 and lines[0]["rules_version"] == status["rules_version"]
    assert [x["id"] for x in lines[1:]] == [s["id"] for s in sites]
    assert all(x["verdict"] for x in lines[1:])


def test_job_lookups_limits_and_unfinished_results(client, monkeypatch):
    assert client.get("/v1/batch/jobs/B20260101-AAAAAAAAAAAA").status_code == 404
    assert client.get("/v1/batch/jobs/../../etc/passwd").status_code == 404
    assert client.get("/v1/batch/jobs/nonsense/result").status_code == 404
    reg = batch_api.registry(SimpleNamespace(app=client.app))
    monkeypatch.setattr(reg, "max_active", 0)
    r = client.post("/v1/batch/jobs", json={"sites": [{"lon": 117.45, "lat": 49.58}]})
    assert r.status_code == 429 and "批量任务已满" in r.json()["error"]["message"]
    monkeypatch.setattr(reg, "max_active", batch_api.MAX_ACTIVE_JOBS)
    pending = batch_api.Job(id="B20260101-BBBBBBBBBBBB", status="running", total=10, done=3, format="csv",
                            dataset_version="v1", dataset_hash="h", rules_version="r", created_at="2026-01-01T00:00:00Z")
    monkeypatch.setitem(reg.jobs, pending.id, pending)
    r = client.get(f"/v1/batch/jobs/{pending.id}/result")
    assert r.status_code == 409 and "尚未完成" in r.json()["error"]["message"]
    assert client.get(f"/v1/batch/jobs/{pending.id}").json()["progress"] == 0.3


def test_batch_needs_an_officer_key_when_the_service_requires_one(client):
    access = client.app.state.settings.access
    before = access.require_officer_key
    access.require_officer_key = True
    try:
        assert client.post("/v1/batch", json={"sites": [{"lon": 117.45, "lat": 49.58}]}).status_code == 401
        assert client.post("/v1/batch/jobs", json={"sites": [{"lon": 117.45, "lat": 49.58}]}).status_code == 401
        assert client.get("/v1/batch/jobs/B20260101-AAAAAAAAAAAA").status_code == 401
    finally:
        access.require_officer_key = before
