"""Boundary updates over HTTP: upload a draft, read its report, publish, roll back, roles, audit, consistency."""

from __future__ import annotations

import io
import sqlite3
import threading
import zipfile
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from fastapi.testclient import TestClient

from app.errors import DataError
from app.geo.vector_io import read_layer
from app.main import create_app
from app.settings import AccessSettings, DataSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
GPKG = ROOT / "geodata" / "manzhouli.gpkg"
ADMIN_KEY = "test-admin-key-0123456789abcdef"


def make_settings(root: Path, **access) -> Settings:
    return Settings(
        data=DataSettings(dataset_dir=ROOT / "geodata", zones_dir=ROOT / "zones", store_path=root / "a.sqlite3",
                          versions_dir=root / "versions"),
        access=AccessSettings(bootstrap_admin_key=ADMIN_KEY, **access),
    )


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions-api")
    with TestClient(create_app(make_settings(root)), raise_server_exceptions=False) as c:
        admin = {"X-API-Key": ADMIN_KEY}
        keys = {}
        for role in ("officer", "editor"):
            r = c.post("/v1/keys", json={"name": f"测试{role}", "role": role}, headers=admin)
            assert r.status_code == 201, r.text
            keys[role] = {"X-API-Key": r.json()["key"]}
        keys["admin"] = admin
        c.keys = keys
        yield c


def gpkg_bytes(frames: dict[str, gpd.GeoDataFrame], tmp_path: Path) -> bytes:
    path = tmp_path / "upload.gpkg"
    for name, frame in frames.items():
        pyogrio.write_dataframe(frame, path, layer=name, driver="GPKG", append=path.exists())
    return path.read_bytes()


def upload(client, data: bytes, filename: str, headers, **form):
    return client.post("/v1/versions", files={"file": (filename, data, "application/octet-stream")}, data=form,
                       headers=headers)


def shrunk_red_line(metres: float) -> gpd.GeoDataFrame:
    red = read_layer(GPKG, "red_line").to_crs(4548)
    red = red.set_geometry(red.geometry.buffer(-metres))
    return red.to_crs(4490)


def test_write_endpoints_check_roles(svc, tmp_path):
    data = gpkg_bytes({"red_line": read_layer(GPKG, "red_line")}, tmp_path)
    calls = [
        ("post", "/v1/versions", "editor", {"files": {"file": ("r.gpkg", data)}}),
        ("get", "/v1/versions/v1/export", "editor", {}),
        ("get", "/v1/versions/v1/validation.gpkg", "editor", {}),
        ("post", "/v1/versions/v1/publish", "admin", {"json": {}}),
        ("post", "/v1/versions/v1/rollback", "admin", {"json": {}}),
        ("get", "/v1/audit", "admin", {}),
        ("get", "/v1/keys", "admin", {}),
        ("post", "/v1/keys", "admin", {"json": {"name": "x", "role": "officer"}}),
        ("delete", "/v1/keys/k_nonexistent", "admin", {}),
    ]
    order = ["officer", "editor", "admin"]
    for method, path, needed, kwargs in calls:
        anonymous = getattr(svc, method)(path, **kwargs)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert "密钥" in anonymous.json()["error"]["message"]
        bad = getattr(svc, method)(path, headers={"X-API-Key": "mzl_not_a_key"}, **kwargs)
        assert bad.status_code == 401
        for role in order[: order.index(needed)]:
            r = getattr(svc, method)(path, headers=svc.keys[role], **kwargs)
            assert r.status_code == 403, (path, role, r.text)
            assert r.json()["error"]["code"] == "forbidden"
        allowed = getattr(svc, method)(path, headers=svc.keys[needed], **kwargs)
        assert allowed.status_code not in (401, 403), (path, needed, allowed.text)


def test_upload_publish_and_roll_back(svc, tmp_path):
    before = svc.get("/healthz").json()["dataset_version"]
    units = read_layer(GPKG, "control_units")
    units.loc[units.HJZHGKDYBM == "ZH15078120001", "HJZHGKDYMC"] = "满洲里市中心城区重点管控单元（2026年调整）"
    r = upload(svc, gpkg_bytes({"control_units": units}, tmp_path), "units.gpkg", svc.keys["editor"],
               note="单元名称调整")
    assert r.status_code == 201, r.text
    body = r.json()
    draft = body["version"]["id"]
    assert body["version"]["status"] == "draft" and body["version"]["parent"] == before
    assert body["report"]["ok"] is True and body["report"]["errors"] == []
    assert svc.get("/healthz").json()["dataset_version"] == before  # nothing changes until published
    refused = svc.post(f"/v1/versions/{draft}/publish", json={}, headers=svc.keys["editor"])
    assert refused.status_code == 403
    ack = {"acknowledge_warnings": True, "note": "测试发布"}
    published = svc.post(f"/v1/versions/{draft}/publish", json=ack, headers=svc.keys["admin"])
    assert published.status_code == 200, published.text
    assert published.json() == {"current": draft, "previous": before}
    assert svc.get("/healthz").json()["dataset_version"] == draft
    unit = svc.get("/v1/units/ZH15078120001").json()
    assert unit["name"].endswith("（2026年调整）")
    doc = svc.post("/v1/assessments", json={"site": [117.455, 49.585]}).json()
    assert doc["dataset_version"] == draft and doc["units"][0]["name"].endswith("（2026年调整）")
    old = svc.post("/v1/assessments", params={"as_of": before}, json={"site": [117.455, 49.585]}).json()
    assert old["dataset_version"] == before and not old["units"][0]["name"].endswith("（2026年调整）")
    diff = svc.get(f"/v1/versions/{draft}/diff", params={"base": before}).json()
    changed = diff["layers"]["control_units"]["changed"] if "layers" in diff else diff["control_units"]["changed"]
    assert [c for c in changed if "ZH15078120001" in str(c)]
    back = svc.post(f"/v1/versions/{before}/rollback", json={"note": "回滚测试"}, headers=svc.keys["admin"])
    assert back.status_code == 200 and back.json() == {"current": before, "previous": draft}
    assert svc.get("/healthz").json()["dataset_version"] == before
    history = svc.get("/v1/versions").json()
    assert history["current"] == before
    assert {v["id"]: v["status"] for v in history["versions"]}[draft] == "published"
    audit = svc.get("/v1/audit", headers=svc.keys["admin"]).json()
    actions = [(e["action"], e["to_version"]) for e in audit[:3]]
    assert actions == [("rollback", before), ("publish", draft), ("upload", draft)]
    assert audit[1]["actor"].startswith("测试editor") is False and "admin" in audit[1]["role"]
    assert audit[2]["actor"].startswith("测试editor")


def test_red_line_decrease_needs_an_approval_reference(svc, tmp_path):
    data = gpkg_bytes({"red_line": shrunk_red_line(5.0)}, tmp_path)
    r = upload(svc, data, "red.gpkg", svc.keys["editor"])
    assert r.status_code == 201
    report = r.json()["report"]
    assert report["ok"] is False and report["red_line"]["decrease"] is True
    assert report["red_line"]["after_m2"] < report["red_line"]["before_m2"]
    decrease = [e for e in report["errors"] if e["layer"] == "red_line"]
    assert decrease and "面积" in decrease[0]["message"]
    draft = r.json()["version"]["id"]
    refused = svc.post(f"/v1/versions/{draft}/publish", json={"acknowledge_warnings": True}, headers=svc.keys["admin"])
    assert refused.status_code == 409 and "错误" in refused.json()["error"]["message"]
    as_of_draft = svc.post("/v1/assessments", params={"as_of": draft}, json={"site": [117.455, 49.585]})
    assert as_of_draft.status_code == 409 and "草稿" in as_of_draft.json()["error"]["message"]
    approved = upload(svc, data, "red.gpkg", svc.keys["editor"], approval_ref="内政发〔2026〕12号")
    report = approved.json()["report"]
    assert report["ok"] is True and report["red_line"]["approval_ref"] == "内政发〔2026〕12号"
    draft = approved.json()["version"]["id"]
    assert svc.post(f"/v1/versions/{draft}/publish", json={}, headers=svc.keys["admin"]).status_code == 409
    ok = svc.post(f"/v1/versions/{draft}/publish", json={"acknowledge_warnings": True}, headers=svc.keys["admin"])
    assert ok.status_code == 200
    entry = svc.get("/v1/audit", headers=svc.keys["admin"]).json()[0]
    assert entry["action"] == "publish" and entry["detail"]["approval_ref"] == "内政发〔2026〕12号"
    assert svc.get("/v1/dataset").json()["dataset_version"] == draft


def test_an_upload_with_errors_is_reported_and_drawable_but_not_publishable(svc, tmp_path):
    units = read_layer(GPKG, "control_units").to_crs(4548)
    row = units.index[units.HJZHGKDYBM == "ZH15078120004"][0]
    units.loc[row, "geometry"] = units.geometry[row].buffer(300)  # now overlaps its neighbours
    r = upload(svc, gpkg_bytes({"control_units": units.to_crs(4490)}, tmp_path), "units.gpkg", svc.keys["editor"])
    assert r.status_code == 201
    report = r.json()["report"]
    assert not report["ok"]
    overlap = [e for e in report["errors"] if "ZH15078120004" in str(e.get("feature")) or "ZH15078120004" in e["message"]]
    assert overlap
    draft = r.json()["version"]["id"]
    layer = svc.get(f"/v1/versions/{draft}/validation.gpkg", headers=svc.keys["editor"])
    assert layer.status_code == 200
    path = tmp_path / "issues.gpkg"
    path.write_bytes(layer.content)
    issues = pyogrio.read_dataframe(path, layer="validation_issues")
    assert len(issues) >= 1 and issues.crs.to_epsg() == 4490
    assert svc.post(f"/v1/versions/{draft}/publish", json={"acknowledge_warnings": True},
                    headers=svc.keys["admin"]).status_code == 409


def test_a_gbk_shapefile_upload_keeps_chinese_names(svc, tmp_path):
    units = read_layer(GPKG, "control_units")[["HJZHGKDYBM", "HJZHGKDYMC", "ZHGKDYFL", "geometry"]]
    folder = tmp_path / "shp"
    folder.mkdir()
    pyogrio.write_dataframe(units, folder / "units.shp", encoding="GBK")
    assert (folder / "units.cpg").read_text().upper() in ("GBK", "CP936", "936")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f.name)
    r = upload(svc, buffer.getvalue(), "units.zip", svc.keys["editor"], layer="control_units")
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    missing = [e for e in report["errors"] if e["code"].startswith("missing_field")]
    assert missing  # the four access-list fields and others were left out of this file
    draft = r.json()["version"]["id"]
    exported = svc.get(f"/v1/versions/{draft}/export", headers=svc.keys["editor"])
    assert exported.status_code == 200
    path = tmp_path / "draft.gpkg"
    path.write_bytes(exported.content)
    stored = pyogrio.read_dataframe(path, layer="control_units").set_index("HJZHGKDYBM").HJZHGKDYMC
    assert stored.to_dict() == units.set_index("HJZHGKDYBM").HJZHGKDYMC.to_dict()


def test_queries_during_publish_and_rollback_never_fail_or_mix(svc, tmp_path):
    versions = svc.get("/v1/versions").json()
    published = [v["id"] for v in versions["versions"] if v["status"] == "published"]
    hashes = {v["id"]: v["content_hash"] for v in versions["versions"]}
    assert len(published) >= 2
    results, stop = [], threading.Event()

    def query():
        while not stop.is_set():
            r = svc.post("/v1/assessments", json={"site": [117.455, 49.585], "project": {"industry_code": "5810"}})
            results.append((r.status_code, r.json().get("dataset_version"), r.json().get("dataset_hash")))

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for target in published[:2] * 2:
            svc.post(f"/v1/versions/{target}/rollback", json={}, headers=svc.keys["admin"])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert results and all(status == 201 for status, _, _ in results)
    for _, version, digest in results:
        assert version in hashes and hashes[version] == digest  # one version per answer, never mixed
    assert len({v for _, v, _ in results}) >= 2


def test_a_corrupted_version_is_refused_at_start_up(tmp_path):
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
    gpkg = tmp_path / "versions" / "versions" / "v1" / "manzhouli.gpkg"
    with sqlite3.connect(gpkg) as con:  # a silent change of one attribute, as a damaged or tampered file would have
        for (trigger,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            con.execute(f'DROP TRIGGER "{trigger}"')
        con.execute("UPDATE control_units SET HJZHGKDYMC = '篡改' WHERE HJZHGKDYBM = 'ZH15078120001'")
    with pytest.raises(DataError) as err:
        with TestClient(create_app(settings)):
            pass
    assert "损坏" in err.value.message_zh and "control_units" in err.value.message_zh


def test_officer_key_can_be_required_for_queries(tmp_path):
    settings = make_settings(tmp_path, require_officer_key=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert c.get("/v1/lookup", params={"lon": 117.455, "lat": 49.585}).status_code == 401
        assert c.post("/v1/assessments", json={"site": [117.455, 49.585]}).status_code == 401
        key = c.post("/v1/keys", json={"name": "审批员", "role": "officer"}, headers={"X-API-Key": ADMIN_KEY}).json()["key"]
        ok = c.get("/v1/lookup", params={"lon": 117.455, "lat": 49.585}, headers={"X-API-Key": key})
        assert ok.status_code == 200
        assert c.get("/healthz").status_code == 200  # liveness stays open


def test_change_impact_lists_stored_assessments_a_draft_would_change(tmp_path):
    with TestClient(create_app(make_settings(tmp_path)), raise_server_exceptions=False) as c:
        admin = {"X-API-Key": ADMIN_KEY}
        red = read_layer(GPKG, "red_line")
        patch = red.geometry.iloc[3].representative_point()
        inside = c.post("/v1/assessments", json={"site": [patch.x, patch.y], "project": {"name": "红线内项目"}}).json()
        city = c.post("/v1/assessments", json={"site": [117.455, 49.585], "project": {"name": "城区项目"}}).json()
        assert inside["red_line"]["inside"] and inside["verdict"] == "prohibited"
        smaller = red.drop(index=red.index[3])  # the patch under the first project is removed
        r = upload(c, gpkg_bytes({"red_line": smaller}, tmp_path), "red.gpkg", admin, approval_ref="测试批文")
        draft = r.json()["version"]["id"]
        assert c.get(f"/v1/versions/{draft}/impact").status_code == 401
        impact = c.get(f"/v1/versions/{draft}/impact", headers=admin).json()
        assert impact["base"] == "v1" and impact["screened"] == 2 and impact["changed"] == 1
        changed = impact["assessments"][0]
        assert changed["assessment"] == inside["id"] and changed["project"] == "红线内项目"
        assert changed["red_line_inside"] == {"before": True, "after": False}
        assert changed["verdict"]["before"] == "prohibited" and changed["verdict"]["after"] != "prohibited"
        assert city["id"] not in {a["assessment"] for a in impact["assessments"]}
        kept = c.get(f"/v1/versions/{draft}").json()["impact"]
        assert kept["changed"] == 1 and kept["version"] == draft
