"""The HTTP API on the embedded data: the contract, each input CRS and form, storage and reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer

from app.geo.crs import gcj02_to_bd09, wgs84_to_gcj02
from app.main import create_app
from app.models.assessment import Assessment, Project
from app.models.common import Dataset, Lookup, UnitDetail, UnitList
from app.settings import DataSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
SURVEY = ROOT / "tests" / "fixtures" / "survey"
# A point in 满洲里市工业园区 (ZH15078120004), well away from its edges.
LON, LAT, UNIT = 117.548, 49.574, "ZH15078120004"


def test_health_and_dataset_name_the_versions_and_say_illustrative(client, catalog):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "dataset_version": "v1", "rules_version": catalog.rules.version}
    body = client.get("/v1/dataset").json()
    Dataset.model_validate(body)
    assert body["dataset_version"] == "v1" and body["dataset_id"] == catalog.dataset_id
    assert body["dataset_hash"] == catalog.content_hash  # the embedded data was imported unchanged as v1
    assert body["illustrative"] is True and "示意" in body["provenance_zh"]
    assert {layer["name"] for layer in body["layers"]} >= {"control_units", "red_line"}
    assert body["clause_count"] == len(catalog.rules.clauses)


def test_units_list_and_detail(client):
    listing = client.get("/v1/units").json()
    UnitList.model_validate(listing)
    assert len(listing["units"]) == 15
    assert sum(u["type"] == "priority" for u in listing["units"]) == 5
    assert sum(u["area_km2"] for u in listing["units"]) == pytest.approx(732.0, abs=0.01)
    detail = client.get(f"/v1/units/{UNIT}", params={"geometry": "true"}).json()
    UnitDetail.model_validate(detail)
    assert detail["attributes"]["HJZHGKDYBM"] == UNIT and detail["attributes"]["ZHGKDYFL"] == "2"
    assert {c["dimension"] for c in detail["clauses"]} == {"spatial_layout", "emission_control", "risk_prevention",
                                                          "resource_efficiency"}
    assert detail["geometry"]["type"] == "MultiPolygon"
    missing = client.get("/v1/units/ZH15078129999")
    assert missing.status_code == 404 and "ZH15078129999" in missing.json()["error"]["message"]


def _variants():
    to_4527 = Transformer.from_crs(4490, 4527, always_xy=True)
    to_4548 = Transformer.from_crs(4490, 4548, always_xy=True)
    e39, n39 = to_4527.transform(LON, LAT)
    e, n = to_4548.transform(LON, LAT)
    glon, glat = wgs84_to_gcj02(LON, LAT)
    blon, blat = gcj02_to_bd09(glon, glat)
    return [
        ("EPSG:4490", "xy", LON, LAT), ("EPSG:4326", "xy", LON, LAT), ("CGCS2000", "xy", LON, LAT),
        ("EPSG:4527", "xy", e39, n39), ("EPSG:4527", "survey", n39, e39), ("EPSG:4548", "xy", e, n),
        ("EPSG:4548", "survey", n, e), ("GCJ02", "xy", float(glon), float(glat)), ("BD09", "xy", float(blon), float(blat)),
    ]


@pytest.mark.parametrize("crs, axis_order, x, y", _variants(), ids=lambda v: str(v) if isinstance(v, str) else None)
def test_a_known_point_in_each_crs_lands_in_the_same_unit(client, crs, axis_order, x, y):
    r = client.get("/v1/lookup", params={"lon": x, "lat": y, "crs": crs, "axis_order": axis_order})
    assert r.status_code == 200, r.text
    body = r.json()
    Lookup.model_validate(body)
    assert [u["code"] for u in body["units"]] == [UNIT]
    to_4548 = Transformer.from_crs(4490, 4548, always_xy=True)
    x0, y0 = to_4548.transform(LON, LAT)
    x1, y1 = to_4548.transform(body["lon"], body["lat"])
    assert np.hypot(x1 - x0, y1 - y0) < 1.0  # GCJ-02 and BD-09 convert back within 1 m of the source


def test_gcj02_taken_as_cgcs2000_lands_hundreds_of_metres_off(client):
    glon, glat = wgs84_to_gcj02(LON, LAT)
    plain = client.get("/v1/lookup", params={"lon": float(glon), "lat": float(glat)}).json()
    to_4548 = Transformer.from_crs(4490, 4548, always_xy=True)
    x0, y0 = to_4548.transform(LON, LAT)
    x1, y1 = to_4548.transform(plain["lon"], plain["lat"])
    assert 550 < np.hypot(x1 - x0, y1 - y0) < 700


def test_lookup_in_the_red_line(client, catalog):
    red = catalog.layers["red_line"]
    p = red.geoms[10].representative_point()
    body = client.get("/v1/lookup", params={"lon": p.x, "lat": p.y}).json()
    assert body["red_line"] == {"inside": True, "distance_m": 0.0, "nearest_patch": red.records[10]["patch_id"]}
    assert body["units"][0]["type"] == "priority"


@pytest.mark.parametrize("site", [
    {"type": "Point", "coordinates": [LON, LAT]},
    {"type": "Feature", "properties": {"name": "x"}, "geometry": {"type": "Point", "coordinates": [LON, LAT]}},
    f"POINT ({LON} {LAT})",
    [LON, LAT],
    [[LON, LAT]],
    "117°32′52.8″E, 49°34′26.4″N",
    "117度32分52.8秒,49度34分26.4秒",
], ids=["geojson", "feature", "wkt", "pair", "pair-list", "dms-symbols", "dms-chinese"])
def test_every_site_form_is_understood(client, site):
    r = client.post("/v1/assessments", json={"site": site, "project": {"industry_code": "5810"}})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert [u["code"] for u in doc["units"]] == [UNIT]
    assert doc["site"]["geometry"]["type"] == "Point"


def test_post_answers_the_contract_and_get_returns_the_same_bytes(client, catalog):
    polygon = {"type": "Polygon", "coordinates": [[[117.545, 49.572], [117.551, 49.572], [117.551, 49.576],
                                                   [117.545, 49.576], [117.545, 49.572]]]}
    r = client.post("/v1/assessments", json={"site": polygon, "project": {"name": "测试项目", "industry_code": "2614",
                                                                         "construction_type": "new"}})
    assert r.status_code == 201
    doc = r.json()
    Assessment.model_validate(doc)
    for key in ("id", "verdict", "dataset_version", "rules_version", "units", "red_line", "layers", "land_cover",
                "clauses", "missing_facts", "warnings"):
        assert key in doc
    assert doc["verdict"] in ("prohibited", "conditional", "permitted", "needs_review")
    assert doc["dataset_version"] == "v1" and doc["dataset_hash"] == catalog.content_hash
    for clause in doc["clauses"]:
        assert {"id", "dimension", "effect", "text", "source", "reason"} <= set(clause)
    assert {"code", "overlap_m2", "share"} <= set(doc["units"][0])
    assert {"overlap_m2", "distance_m"} <= set(doc["red_line"])
    again = client.get(f"/v1/assessments/{doc['id']}")
    assert again.status_code == 200 and again.content == r.content


def test_a_stored_assessment_is_unchanged_after_the_data_changes(app_settings, client):
    r = client.post("/v1/assessments", json={"site": [LON, LAT], "project": {"industry_code": "4430"}})
    stored = r.content
    other = Settings(data=DataSettings(dataset_dir=ROOT / "tests" / "fixtures" / "mini", zones_dir=ROOT / "zones",
                                       store_path=app_settings.data.store_path,
                                       versions_dir=app_settings.data.store_path.parent / "other-versions"))
    with TestClient(create_app(other)) as c2:
        assert c2.get("/v1/dataset").json()["dataset_hash"] != r.json()["dataset_hash"]
        assert c2.get(f"/v1/assessments/{r.json()['id']}").content == stored
        fresh = c2.post("/v1/assessments", json={"site": [LON, LAT], "project": {"industry_code": "4430"}}).json()
        assert fresh["dataset_hash"] != r.json()["dataset_hash"]


def test_survey_file_upload_assesses_every_parcel_and_ring(client):
    data = (SURVEY / "two_parcels_utf8.txt").read_bytes()
    r = client.post("/v1/assessments/survey", files={"file": ("site.txt", data, "text/plain")},
                    data={"project": json.dumps({"industry_code": "5990"})})
    assert r.status_code == 201, r.text
    doc = r.json()
    survey = doc["site"]["survey"]
    assert len(survey["parcels"]) == 2 and survey["source_crs"] == "EPSG:4527"
    assert doc["site"]["geometry"]["type"] == "MultiPolygon"
    assert doc["site"]["area"]["m2"] == pytest.approx(sum(p["area_m2"] for p in survey["parcels"]), abs=0.05)
    geom = shapely.geometry.shape(doc["site"]["geometry"])
    assert any(len(p.interiors) for p in geom.geoms) == any(
        "2" in line.split(",")[1] for line in data.decode("utf-8").splitlines() if line.startswith("J"))


def test_survey_file_in_gbk_is_read(client):
    r = client.post("/v1/assessments/survey",
                    files={"file": ("gbk.txt", (SURVEY / "one_parcel_gbk.txt").read_bytes(), "text/plain")})
    assert r.status_code == 201, r.text
    assert r.json()["site"]["survey"]["encoding"].lower() in ("gbk", "gb18030")
    assert r.json()["site"]["survey"]["parcels"][0]["name"]


def test_the_openapi_document_is_the_contract(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/lookup", "/v1/assessments", "/v1/assessments/{assessment_id}", "/v1/units",
                 "/v1/units/{code}", "/v1/dataset", "/healthz", "/v1/assessments/survey"):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert set(schemas["Assessment"]["properties"]["verdict"]["enum"]) == {
        "prohibited", "conditional", "permitted", "needs_review", "outside_jurisdiction"}
    assert "201" in spec["paths"]["/v1/assessments"]["post"]["responses"]


def test_the_project_model_names_every_fact_of_the_rule_base(catalog):
    assert set(catalog.rules.facts) <= set(Project.model_fields)
    assert set(Project.model_fields) - set(catalog.rules.facts) == {"name"}


def test_a_huge_projected_coordinate_is_a_422_not_a_crash(client):
    for crs in ("EPSG:4548", "EPSG:4527"):
        r = client.get("/v1/lookup", params={"lon": 1e26, "lat": 5493000, "crs": crs})
        assert r.status_code == 422 and r.json()["error"]["message"]


def test_survey_parcels_that_share_an_edge_are_one_site(client):
    def parcel(code, x0):
        pts = [(5494100.0, x0), (5494100.0, x0 + 100), (5494000.0, x0 + 100), (5494000.0, x0), (5494100.0, x0)]
        lines = [f"5,1.0000,{code},地块{code},面,,工业用地,@"]
        lines += [f"J{i + 1},1,{x:.3f},{y:.3f}" for i, (x, y) in enumerate(pts)]
        return lines

    text = "\n".join(["[属性描述]", "坐标系=2000国家大地坐标系", "几度分带=3", "投影类型=高斯克吕格", "计量单位=米", "带号=39",
                      "[地块坐标]", *parcel("1", 39531000.0), *parcel("2", 39531100.0)]) + "\n"
    r = client.post("/v1/assessments/survey", files={"file": ("adjacent.txt", text.encode("utf-8"), "text/plain")})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert len(doc["site"]["survey"]["parcels"]) == 2
    assert doc["site"]["area"]["m2"] == pytest.approx(20_000, abs=1.0)
    overlapping = "\n".join(["[属性描述]", "坐标系=2000国家大地坐标系", "几度分带=3", "投影类型=高斯克吕格", "计量单位=米",
                             "带号=39", "[地块坐标]", *parcel("1", 39531000.0), *parcel("2", 39531050.0)]) + "\n"
    r = client.post("/v1/assessments/survey", files={"file": ("overlap.txt", overlapping.encode("utf-8"), "text/plain")})
    assert r.status_code == 422 and "重叠" in r.json()["error"]["message"]
