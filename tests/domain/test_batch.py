"""Batch screening gives, site for site, what assess() gives — on random and boundary points and polygons — and reads
CSV, JSON and GIS files with per-row errors; its outputs parse back. One run also prints the point throughput."""

from __future__ import annotations

import csv
import io
import time

import geopandas as gpd
import numpy as np
import orjson
import pyogrio
import pytest
import shapely

from app.domain import batch as engine
from app.domain.assessment import assess
from app.errors import InputTooLarge, InvalidInput
from app.geo.crs import from_metric, to_metric

PROJECTS = [
    {},
    {"industry_code": "3011", "construction_type": "new", "wastewater_discharge": True, "discharges_to_sewer": False},
    {"industry_code": "5810", "red_line_activity": "none", "national_major_project": False,
     "construction_land_approved": True, "air_emissions": False, "coal_use": False, "boiler_fuel": "gas"},
    {"name": "某项目", "red_line_activity": "border_works", "industry_code": "9221"},
]


def expected(doc: dict) -> dict:
    """The batch fields of an assessment document."""
    return {
        "verdict": doc["verdict"],
        "units": [u["code"] for u in doc["units"]],
        "red_line_inside": doc["red_line"]["inside"],
        "red_line_overlap_m2": doc["red_line"]["overlap_m2"],
        "red_line_distance_m": doc["red_line"]["distance_m"],
        "clauses": [c["id"] for c in doc["clauses"]],
        "undecided_clauses": [c["id"] for c in doc["undecided"]],
        "missing_facts": [m["fact"] for m in doc["missing_facts"]],
    }


def assert_same(rec: dict, doc: dict, where: str) -> None:
    exp = expected(doc)
    for key in ("verdict", "units", "red_line_inside", "clauses", "undecided_clauses", "missing_facts"):
        assert rec[key] == exp[key], f"{where}: {key} {rec[key]} != {exp[key]}"
    d1, d2 = exp["red_line_distance_m"], rec["red_line_distance_m"]
    assert (d1 is None) == (d2 is None), f"{where}: distance {d2} != {d1}"
    if d1 is not None:
        assert abs(d1 - d2) <= 0.01, f"{where}: distance {d2} != {d1}"
    assert abs(rec["red_line_overlap_m2"] - exp["red_line_overlap_m2"]) <= 0.01, where


def refused(call, *args, error=InvalidInput, **kwargs) -> str:
    """The Chinese message of the error a call raises."""
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    return info.value.message_zh


def boundary_points(catalog, rng, layer: str, count: int) -> list[tuple[float, float]]:
    """Vertices and segment midpoints of a layer's boundary (shared unit edges among them), in metres."""
    chunks = catalog.layers[layer].index.chunks
    out = []
    for k in rng.integers(0, len(chunks), count):
        xy = shapely.get_coordinates(chunks[k])
        i = int(rng.integers(0, len(xy) - 1))
        out.append(tuple(xy[i]) if rng.random() < 0.5 else tuple((xy[i] + xy[i + 1]) / 2))
    return out


@pytest.fixture(scope="module")
def point_sample(catalog):
    """Random points over (and beyond) the territory plus points on unit, red-line and city boundaries, lon/lat."""
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = catalog.territory.bounds
    xy = list(zip(rng.uniform(minx - 3000, maxx + 3000, 260), rng.uniform(miny - 3000, maxy + 3000, 260)))
    xy += boundary_points(catalog, rng, "control_units", 60)
    xy += boundary_points(catalog, rng, "red_line", 30)
    xy += boundary_points(catalog, rng, "admin_boundary", 20)
    xy += boundary_points(catalog, rng, "drinking_water", 10)
    x, y = np.array(xy).T
    lon, lat = from_metric(x, y)
    return lon, lat


@pytest.fixture(scope="module")
def point_docs(catalog, point_sample):
    lon, lat = point_sample
    return [assess(shapely.Point(lon[i], lat[i]), PROJECTS[i % len(PROJECTS)], catalog) for i in range(len(lon))]


def point_batch(lon, lat, projects=PROJECTS) -> engine.SiteBatch:
    collector = engine.SiteCollector()
    ids = [collector.projects.add_raw(p) for p in projects]
    for i in range(len(lon)):
        collector.add_point(f"P{i}", float(lon[i]), float(lat[i]), ids[i % len(ids)])
    return collector.finish()


@pytest.mark.parametrize("use_grid", [False, True], ids=["exact", "grid"])
def test_points_equal_assess(catalog, point_sample, point_docs, use_grid):
    lon, lat = point_sample
    result = engine.screen(point_batch(lon, lat), catalog, use_grid=use_grid)
    records = list(result.records())
    verdicts = {r["verdict"] for r in records}
    assert {"outside_jurisdiction", "prohibited", "needs_review"} <= verdicts
    assert any(len(r["units"]) > 1 for r in records), "no point on a shared unit boundary in the sample"
    assert any(r["red_line_inside"] for r in records)
    for i, (rec, doc) in enumerate(zip(records, point_docs)):
        assert rec["id"] == f"P{i}" and rec["row"] == i + 1 and rec["error"] is None
        assert_same(rec, doc, f"point {i} ({lon[i]}, {lat[i]})")


def polygon_sample(catalog, rng, n: int) -> list:
    """Quadrilaterals and a few two-part sites of 2 m to 2 km, some across the city line, some outside it."""
    minx, miny, maxx, maxy = catalog.territory.bounds
    sites = []
    for i in range(n):
        cx, cy = rng.uniform(minx - 1000, maxx + 1000), rng.uniform(miny - 1000, maxy + 1000)
        h = float(rng.choice([1.0, 20.0, 158.0, 600.0, 1000.0])) / 2
        ring = np.array([(cx - h, cy - h), (cx + h, cy - h * 0.9), (cx + h * 0.8, cy + h), (cx - h, cy + h),
                         (cx - h, cy - h)])
        lon, lat = from_metric(ring[:, 0], ring[:, 1])
        poly = shapely.Polygon(np.column_stack([lon, lat]))
        if i % 10 == 0:
            lon2, lat2 = from_metric(ring[:, 0] + 4 * h, ring[:, 1])
            poly = shapely.MultiPolygon([poly, shapely.Polygon(np.column_stack([lon2, lat2]))])
        sites.append(poly)
    return sites


def test_polygons_equal_assess(catalog):
    rng = np.random.default_rng(11)
    sites = polygon_sample(catalog, rng, 160)
    # A few whose corners sit on unit and red-line boundaries.
    for x, y in boundary_points(catalog, rng, "control_units", 20) + boundary_points(catalog, rng, "red_line", 20):
        ring = np.array([(x, y), (x + 80, y), (x + 80, y + 60), (x, y + 60), (x, y)])
        lon, lat = from_metric(ring[:, 0], ring[:, 1])
        sites.append(shapely.Polygon(np.column_stack([lon, lat])))
    collector = engine.SiteCollector()
    ids = [collector.projects.add_raw(p) for p in PROJECTS]
    for i, site in enumerate(sites):
        value = shapely.to_wkt(site, rounding_precision=-1) if i % 2 else orjson.loads(shapely.to_geojson(site))
        collector.add_site(i, value, ids[i % len(ids)])
    batch = collector.finish()
    assert all(e is None for e in batch.errors)
    records = list(engine.screen(batch, catalog).records())
    kinds = {r["verdict"] for r in records}
    assert {"outside_jurisdiction", "prohibited"} <= kinds and len(kinds) >= 3
    assert any(r["red_line_overlap_m2"] > 0 for r in records)
    for i, rec in enumerate(records):
        doc = assess(batch.geoms[i], PROJECTS[i % len(PROJECTS)], catalog)
        assert_same(rec, doc, f"polygon {i}")


def test_same_signature_is_evaluated_once(catalog, monkeypatch):
    calls = []
    real = engine.evaluate
    monkeypatch.setattr(engine, "evaluate", lambda cond, facts: calls.append(1) or real(cond, facts))
    rng = np.random.default_rng(3)
    unit = catalog.units.metric[catalog.unit_row["ZH15078120001"]].buffer(-200)
    minx, miny, maxx, maxy = unit.bounds
    x, y = rng.uniform(minx, maxx, 20_000), rng.uniform(miny, maxy, 20_000)
    keep = shapely.contains_xy(unit, x, y)
    lon, lat = from_metric(x[keep], y[keep])
    project = {"industry_code": "1391", "construction_type": "expansion"}
    result = engine.screen(point_batch(lon, lat, [project]), catalog, use_grid=False)
    assert len(result) > 5000
    assert len(set(result.verdict)) <= 3
    assert len(calls) < 2 * len(catalog.rules.clauses)  # a few signatures, not one evaluation per site


def test_bad_rows_are_reported_and_the_rest_screened(catalog):
    doc = {
        "crs": "EPSG:4490",
        "project": {"industry_code": "3011"},
        "sites": [
            {"id": "ok", "lon": 117.447, "lat": 49.589},
            {"id": "swapped", "lon": 49.589, "lat": 117.447},
            {"id": "abroad", "lon": 30.0, "lat": 49.5},
            {"id": "bowtie", "site": "POLYGON ((117.40 49.55, 117.42 49.56, 117.42 49.55, 117.40 49.56, 117.40 49.55))"},
            {"id": "bad-project", "lon": 117.45, "lat": 49.58, "project": {"boiler_fuel": "wood"}},
            {"id": "typo", "lon": 117.45, "lat": 49.58, "projet": {}},
            {"id": "ok2", "site": {"type": "Point", "coordinates": [117.5, 49.55]}},
            "not an object",
            {"id": "nothing"},
            {"id": "dms", "site": "117°26′48.5″E, 49°35′20.1″N"},
        ],
    }
    batch = engine.sites_from_json(doc)
    records = list(engine.screen(batch, catalog).records())
    by_id = {r["id"]: r for r in records}
    for good in ("ok", "ok2", "dms"):
        assert by_id[good]["error"] is None and by_id[good]["verdict"] in engine.VERDICT_ZH
    assert "经纬度可能颠倒" in by_id["swapped"]["error"] and by_id["swapped"]["error"].startswith("第 2 个场址")
    assert "中国境外" in by_id["abroad"]["error"]
    assert "自相交" in by_id["bowtie"]["error"]
    assert "boiler_fuel" in by_id["bad-project"]["error"]
    assert "projet" in by_id["typo"]["error"]
    assert records[7]["error"].startswith("第 8 个场址") and records[7]["id"] == "8"
    assert "缺少场址" in by_id["nothing"]["error"]
    assert all(r["verdict"] is None for r in records if r["error"])
    # The default project applies where a site gives none.
    ok = assess(shapely.Point(117.447, 49.589), {"industry_code": "3011"}, catalog)
    assert by_id["ok"]["verdict"] == ok["verdict"] and by_id["ok"]["clauses"] == [c["id"] for c in ok["clauses"]]


def test_a_site_the_geometry_engine_fails_on_is_reported_alone(catalog, monkeypatch):
    batch = engine.sites_from_json({"sites": [
        {"id": "a", "site": "POLYGON ((117.40 49.55, 117.41 49.55, 117.41 49.56, 117.40 49.56, 117.40 49.55))"},
        {"id": "b", "site": "POLYGON ((117.42 49.55, 117.43 49.55, 117.43 49.56, 117.42 49.56, 117.42 49.55))"},
        {"id": "c", "lon": 117.45, "lat": 49.58},
    ]})
    real = engine._screen_polygons

    def flaky(prep, catalog, batch, gidx, *args):
        if 1 in gidx:
            raise shapely.errors.GEOSException("TopologyException: side location conflict")
        return real(prep, catalog, batch, gidx, *args)

    monkeypatch.setattr(engine, "_screen_polygons", flaky)
    a, b, c = engine.screen(batch, catalog, offset=100).records()
    assert a["error"] is None and a["verdict"] and c["error"] is None and c["verdict"]
    assert b["verdict"] is None and b["error"].startswith("第 102 个场址：") and "几何" in b["error"]


def test_json_request_shape_problems_fail_the_request():
    assert "不认识的字段：site" in refused(engine.sites_from_json, {"site": []})
    assert "缺少 sites 数组" in refused(engine.sites_from_json, {"crs": "EPSG:4490"})
    assert "不认识的字段：crss" in refused(engine.sites_from_json, {"sites": [{"lon": 1, "lat": 2}], "crss": "x"})
    assert "不支持的坐标系" in refused(engine.sites_from_json, {"sites": [{"lon": 1, "lat": 2}], "crs": "EPSG:3857"})
    assert "最多 10 个" in refused(engine.sites_from_json, {"sites": [{"lon": 117.4, "lat": 49.5}] * 11},
                                 max_sites=10, error=InputTooLarge)


def test_csv_with_projected_survey_coordinates_gbk_and_project_columns(catalog):
    lon = np.array([117.447, 117.52, 117.38])
    lat = np.array([49.589, 49.55, 49.60])
    e, n = to_metric(lon, lat)
    rows = ["编号,X,Y,industry_code,wastewater_discharge,discharges_to_sewer,name"]
    for i in range(3):  # survey order: X = northing, Y = easting with zone prefix 39
        rows.append(f"S{i},{n[i]:.4f},{39_000_000 + e[i]:.4f},{'0610' if i else '3011'},{'是' if i else '否'},false,项目{i}")
    rows.append("S3,5490000,nan,3011,否,false,坏点")
    rows.append("S4,5490000,39500000,3011,也许,false,坏值")
    text = "\n".join(rows) + "\n"
    batch = engine.sites_from_csv(text.encode("gbk"), crs="EPSG:4527", axis_order="survey")
    records = list(engine.screen(batch, catalog).records())
    assert [r["id"] for r in records] == ["S0", "S1", "S2", "S3", "S4"]
    assert "不是有效数值" in records[3]["error"] and "文件第 5 行" in records[3]["error"]
    assert "wastewater_discharge" in records[4]["error"]
    for i in range(3):
        project = {"industry_code": "0610" if i else "3011", "wastewater_discharge": bool(i),
                   "discharges_to_sewer": False, "name": f"项目{i}"}
        site = shapely.Point(*[float(v[0]) for v in from_metric(e[i:i + 1], n[i:i + 1])])
        assert_same(records[i], assess(site, project, catalog), f"csv row {i}")


def test_csv_header_problems_fail_the_request():
    assert "缺少场址列" in refused(engine.sites_from_csv, b"a,b\n1,2\n")
    assert "不认识的列：remark" in refused(engine.sites_from_csv, b"id,lon,lat,remark\n1,117.4,49.5,x\n")
    ignored = engine.sites_from_csv(b"id,lon,lat,remark\n1,117.4,49.5,x\n", extra_columns="ignore")
    assert ignored.warnings and "remark" in ignored.warnings[0]
    assert "重复" in refused(engine.sites_from_csv, b"id,lon,lon,lat\n1,2,3,4\n")
    assert "只保留一种" in refused(engine.sites_from_csv, b"lon,lat,wkt\n1,2,POINT (1 2)\n")
    assert "只有表头" in refused(engine.sites_from_csv, b"lon,lat\n")
    assert "中文逗号" in refused(engine.sites_from_csv, "lon，lat\n1，2\n".encode())
    assert "编码" in refused(engine.sites_from_csv, b"lon,lat\n\xff\xfe\xfd,1\n")
    short = engine.sites_from_csv(b"id,lon,lat\n1,117.4\n2,117.4,49.5\n")
    assert "个字段，与表头的 3 列不一致" in short.errors[0] and short.errors[1] is None


def test_wkt_csv_and_geopackage_of_sites(catalog, tmp_path):
    rng = np.random.default_rng(5)
    polys = polygon_sample(catalog, rng, 12)
    minx, miny, maxx, maxy = catalog.territory.bounds
    lon, lat = from_metric(rng.uniform(minx, maxx, 12), rng.uniform(miny, maxy, 12))
    pts = [shapely.Point(a, b) for a, b in zip(lon, lat)]
    geoms = polys + pts
    projects = [PROJECTS[i % 3] for i in range(len(geoms))]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "wkt", "industry_code", "construction_type"])
    for i, g in enumerate(geoms):
        w.writerow([f"W{i}", shapely.to_wkt(g, rounding_precision=-1), projects[i].get("industry_code", ""),
                    projects[i].get("construction_type", "")])
    from_csv = list(engine.screen(engine.sites_from_csv(buf.getvalue()), catalog).records())
    frame = gpd.GeoDataFrame({"id": [f"G{i}" for i in range(len(geoms))],
                              "industry_code": [p.get("industry_code") for p in projects],
                              "construction_type": [p.get("construction_type") for p in projects]},
                             geometry=geoms, crs=4490).to_crs(4548)
    path = tmp_path / "sites.gpkg"
    pyogrio.write_dataframe(frame, path, layer="sites")
    batch = engine.read_sites(path.read_bytes(), kind="auto", filename="sites.gpkg", max_sites=1000,
                              max_vertices=20_000)
    from_gpkg = list(engine.screen(batch, catalog).records())
    for i, g in enumerate(geoms):
        facts = {k: v for k, v in projects[i].items() if k in ("industry_code", "construction_type")}
        doc = assess(g, facts, catalog)
        assert_same(from_csv[i], doc, f"wkt row {i}")
        assert from_gpkg[i]["id"] == f"G{i}"
        # Read back from EPSG:4548 the coordinates differ in the last digits: same verdict and places.
        assert from_gpkg[i]["verdict"] == doc["verdict"] and from_gpkg[i]["units"] == expected(doc)["units"]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "geojson"])
def test_outputs_parse_back(catalog, fmt):
    batch = engine.sites_from_json({"sites": [
        {"id": "p", "lon": 117.447, "lat": 49.589, "project": {"industry_code": "3011"}},
        {"id": "g", "site": "POLYGON ((117.40 49.55, 117.41 49.55, 117.41 49.56, 117.40 49.55))"},
        {"id": "bad", "lon": 500, "lat": 49},
        {"id": "far", "lon": 116.0, "lat": 48.0},
    ]})
    meta = engine.provenance(catalog, len(batch))
    records = [r for b in engine.screen_blocks(batch, catalog, block=3) for r in b.records()]
    body = b"".join(engine.render(engine.screen_blocks(batch, catalog, block=3), fmt, meta))
    if fmt == "csv":
        text = body.decode("utf-8-sig")
        first, rest = text.split("\n", 1)
        assert first.startswith("# dataset_version=") and catalog.rules.version in first
        parsed = list(csv.DictReader(io.StringIO(rest)))
        assert [p["id"] for p in parsed] == ["p", "g", "bad", "far"]
        for p, r in zip(parsed, records):
            assert p["verdict"] == (r["verdict"] or "") and p["units"] == ";".join(r["units"])
            assert p["clauses"].split(";") == (r["clauses"] or [""])
            assert p["error"] == (r["error"] or "")
            if r["red_line_distance_m"] is not None:
                assert float(p["red_line_distance_m"]) == r["red_line_distance_m"]
    elif fmt == "ndjson":
        lines = [orjson.loads(line) for line in body.splitlines()]
        assert lines[0]["type"] == "batch" and lines[0]["dataset_version"] == catalog.dataset_version
        assert lines[0]["rules_version"] == catalog.rules.version and lines[0]["site_count"] == 4
        assert lines[1:] == records
    else:
        doc = orjson.loads(body)
        assert doc["type"] == "FeatureCollection" and doc["rules_version"] == catalog.rules.version
        assert [f["properties"] for f in doc["features"]] == records
        assert doc["features"][0]["geometry"]["type"] == "Point"
        assert doc["features"][1]["geometry"]["type"] == "Polygon"
        assert doc["features"][2]["geometry"] is None
    assert records[3]["verdict"] == "outside_jurisdiction" and records[3]["red_line_distance_m"] is None
    assert "超出" in records[2]["error"]


def test_point_throughput(catalog):
    """Points per second for 200,000 random points in the territory, on one core (printed; see docs/batch.md).

    screen(): coordinates already read (lon/lat arrays) → verdicts, units, red-line status and distance, clause ids,
    missing facts. End to end: CSV text in (read, validated, transformed) → CSV bytes out."""
    rng = np.random.default_rng(2026)
    minx, miny, maxx, maxy = catalog.territory.bounds
    x, y = rng.uniform(minx, maxx, 600_000), rng.uniform(miny, maxy, 600_000)
    inside = shapely.intersects_xy(catalog.territory, x, y)
    x, y = x[inside][:200_000], y[inside][:200_000]
    lon, lat = from_metric(x, y)
    n = lon.size
    assert n == 200_000
    prep = engine.prepared(catalog)
    fresh = not prep.has_grid
    t0 = time.perf_counter()
    prep.grid(catalog)
    build = time.perf_counter() - t0
    collector = engine.SiteCollector()
    pid = collector.projects.add_raw({"industry_code": "3011", "construction_type": "new"})
    batch = engine.SiteBatch(ids=[str(i) for i in range(n)], kind=np.full(n, engine.KIND_POINT, np.int8),
                             lon=lon, lat=lat, geoms=np.full(n, None, object), project_idx=np.full(n, pid, np.int32),
                             projects=collector.projects.items, errors=[None] * n)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = engine.screen(batch, catalog)
        runs.append(time.perf_counter() - t0)
    assert all(v is not None for v in result.verdict)
    text = "id,lon,lat,industry_code,construction_type\n" + "".join(
        f"S{i},{a!r},{b!r},3011,new\n" for i, (a, b) in enumerate(zip(lon.tolist(), lat.tolist())))
    t0 = time.perf_counter()
    read = engine.sites_from_csv(text.encode())
    t_read = time.perf_counter() - t0
    out = io.BytesIO()
    engine.write_results(read, catalog, "csv", out)
    t_all = time.perf_counter() - t0
    assert len(read) == n and out.getvalue().count(b"\n") == n + 2
    best, median = min(runs), sorted(runs)[1]
    print(f"\nbatch points, {n:,} random points in the territory, one core:"
          f"\n  screen(): best {best:.3f} s = {n / best:,.0f} points/s, median {median:.3f} s = {n / median:,.0f} points/s"
          f"\n  end to end CSV in -> CSV out: {t_all:.2f} s = {n / t_all:,.0f} points/s (reading {t_read:.2f} s)"
          f"\n  point grid {'built in' if fresh else 'already built, lookup'} {build:.2f} s (once per dataset version)")
