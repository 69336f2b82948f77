"""Batch screening gives, site for site, what assess() gives — on random and boundary points and polygons — and reads
CSV, JSON and GIS files with per-row errors; its outputs parse back. The point grid (quadtree of clean cells) and the
red-line distance index (numpy and compiled kernels) give the exact answers on points crowded around boundaries.
Throughput is measured by `scripts/bench_batch.py`, not here."""

from __future__ import annotations

import contextlib
import csv
import io

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


try:
    import numba  # noqa: F401
    KERNELS = ["numpy", "compiled"]
except ImportError:  # the compiled red-line distance kernel needs numba (optional)
    KERNELS = ["numpy"]


@contextlib.contextmanager
def kernel(name: str):
    """Red-line distances from the numpy path or the compiled (numba) kernel."""
    saved = engine.COMPILED_DISTANCE
    engine.COMPILED_DISTANCE = name == "compiled"
    try:
        yield
    finally:
        engine.COMPILED_DISTANCE = saved


@pytest.mark.parametrize("use_grid,dist_kernel", [(False, "numpy")] + [(True, k) for k in KERNELS],
                         ids=["exact"] + [f"grid-{k}" for k in KERNELS])
def test_points_equal_assess(catalog, point_sample, point_docs, use_grid, dist_kernel):
    lon, lat = point_sample
    with kernel(dist_kernel):
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


def near_boundaries(catalog, rng, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Metric points crowded around the boundaries the grid classifies by (city, units, red line, bound layers):
    on a random boundary segment, pushed off it along its normal by distances around the boundary tolerance
    (0.01 m) and the grid's margin (1.01 m), and a few metres either way."""
    layers = ["control_units", "red_line", "admin_boundary", "drinking_water", "nature_reserve", "basic_grassland",
              "urban_boundary", "mining_areas"]
    offsets = np.array([0.0, 0.001, 0.005, 0.0099, 0.0101, 0.02, 0.5, 0.99, 1.0, 1.02, 1.05, 3.0, 12.0])
    xs, ys = [], []
    for k in range(count):
        chunks = catalog.layers[layers[k % len(layers)]].index.chunks
        xy = shapely.get_coordinates(chunks[rng.integers(len(chunks))])
        i = int(rng.integers(len(xy) - 1))
        a, b = xy[i], xy[i + 1]
        t = rng.choice([0.0, 0.5, rng.random()])
        e = b - a
        normal = np.array([-e[1], e[0]]) / max(float(np.hypot(*e)), 1e-12)
        off = rng.choice(offsets) * rng.choice([-1.0, 1.0]) + (rng.normal(0, 2.0) if rng.random() < 0.2 else 0.0)
        p = a + t * e + off * normal
        xs.append(p[0])
        ys.append(p[1])
    return np.array(xs), np.array(ys)


@pytest.fixture(scope="module")
def crowded(catalog):
    """20,000 points around boundaries and 20,000 uniform over the territory's bounding box, lon/lat."""
    rng = np.random.default_rng(2027)
    x, y = near_boundaries(catalog, rng, 20_000)
    minx, miny, maxx, maxy = catalog.territory.bounds
    x = np.r_[x, rng.uniform(minx - 500, maxx + 500, 20_000)]
    y = np.r_[y, rng.uniform(miny - 500, maxy + 500, 20_000)]
    return from_metric(x, y)


@pytest.mark.parametrize("dist_kernel", KERNELS)
def test_point_grid_equals_the_exact_tests(catalog, crowded, dist_kernel):
    """Clean quadtree cells really are clean: the grid path answers what the piece tests answer for every point,
    including points a millimetre to a metre from unit, red-line and layer boundaries."""
    lon, lat = crowded
    batch = point_batch(lon, lat)
    exact = engine.screen(batch, catalog, use_grid=False)
    with kernel(dist_kernel):
        grid = engine.screen(batch, catalog, use_grid=True)
    assert list(grid.verdict) == list(exact.verdict)
    assert list(grid.units) == list(exact.units)
    assert list(grid.clauses) == list(exact.clauses) and list(grid.missing) == list(exact.missing)
    assert list(grid.undecided) == list(exact.undecided)
    assert np.array_equal(grid.red_inside, exact.red_inside)
    assert np.array_equal(grid.red_distance, exact.red_distance, equal_nan=True)
    assert sum(len(u) > 1 for u in exact.units) > 100  # many points on shared unit boundaries
    assert exact.red_inside.sum() > 1000 and (exact.red_distance == 0).sum() > 1000
    g = engine.prepared(catalog).grid(catalog)
    _, node = g.locate(*to_metric(lon, lat))
    assert (g.node_dirty[node] == g.clean_mask).mean() > 0.3  # the grid answered many of them from clean cells


def test_clean_grid_cells_are_far_from_their_boundaries(catalog):
    """The grid's invariant: a leaf clean for a slot (territory, units, a bound layer) is more than a metre from
    every boundary of that slot — well beyond the 0.01 m boundary tolerance — and a leaf outside the territory is
    clean for all. Checked with GEOS on the leaf boxes."""
    prep = engine.prepared(catalog)
    g = prep.grid(catalog)
    leaves = np.flatnonzero(g.child < 0)
    size = g.node_size(leaves)
    boxes = shapely.box(g.node_mx[leaves] - size / 2, g.node_my[leaves] - size / 2, g.node_mx[leaves] + size / 2,
                        g.node_my[leaves] + size / 2)
    masks = g.dirty_masks[g.node_dirty[leaves]]
    bits = g.sig_bits[g.node_sig[leaves]]
    assert size.min() == engine.GRID_MIN_CELL_M and size.max() == engine.GRID_CELL_M
    assert not masks[~bits[:, 0] & ~masks[:, 0]].any()  # outside the territory: nothing left to test
    slots = [engine.boundary_chunks(catalog.territory)] + [lp.index.chunks for lp in [prep.units, *prep.layers]]
    for s, chunks in enumerate(slots):
        clean = np.flatnonzero(~masks[:, s] & (bits[:, 0] | (s == 0)))
        assert clean.size > 1000
        hits, _ = shapely.STRtree(np.asarray(chunks)).query(boxes[clean], predicate="dwithin", distance=1.0)
        assert hits.size == 0, f"slot {s}: {hits.size} clean leaves within a metre of a boundary"


def test_points_near_boundaries_equal_assess(catalog):
    rng = np.random.default_rng(31)
    x, y = near_boundaries(catalog, rng, 240)
    lon, lat = from_metric(x, y)
    result = engine.screen(point_batch(lon, lat), catalog, use_grid=True)
    records = list(result.records())
    assert sum(len(r["units"]) > 1 for r in records) > 5
    for i, rec in enumerate(records):
        doc = assess(shapely.Point(lon[i], lat[i]), PROJECTS[i % len(PROJECTS)], catalog)
        assert_same(rec, doc, f"point {i} ({lon[i]}, {lat[i]})")


@pytest.mark.parametrize("dist_kernel", KERNELS)
def test_red_line_distance_index_is_exact(catalog, dist_kernel):
    """The distance index gives GEOS's metres (`query_nearest` on the boundary chunks, what
    `LayerIndex.distance` returns outside the patches) to the last bit, for points near and far, in and around
    the territory; NaN outside every cell."""
    red = catalog.layers["red_line"].index
    g = engine.prepared(catalog).grid(catalog)
    rng = np.random.default_rng(99)
    x, y = near_boundaries(catalog, rng, 6000)
    minx, miny, maxx, maxy = catalog.territory.bounds
    x = np.r_[x, rng.uniform(minx, maxx, 30_000)]
    y = np.r_[y, rng.uniform(miny, maxy, 30_000)]
    inside = np.flatnonzero(g.cells(x, y) >= 0)
    x, y = x[inside], y[inside]
    _, expected = red.chunk_tree.query_nearest(shapely.points(x, y), return_distance=True, all_matches=False)
    got = g.red.distance(x, y, compiled=dist_kernel == "compiled")
    assert np.array_equal(got, expected)
    for k in rng.choice(x.size, 50, replace=False):  # and what assess() uses, point by point
        d = red.distance(shapely.Point(x[k], y[k]))
        assert d[0] == 0.0 or d[0] == got[k]
    far = g.red.distance(np.array([minx - 10_000.0]), np.array([miny - 10_000.0]),
                         compiled=dist_kernel == "compiled")
    assert np.isnan(far[0])


def test_large_batches_use_the_grid_and_write_every_row(catalog):
    """A batch of GRID_MIN_POINTS points or more takes the grid path by itself; the CSV answer has every row."""
    rng = np.random.default_rng(2026)
    minx, miny, maxx, maxy = catalog.territory.bounds
    x, y = rng.uniform(minx, maxx, 60_000), rng.uniform(miny, maxy, 60_000)
    keep = shapely.intersects_xy(catalog.territory, x, y)
    n = engine.GRID_MIN_POINTS
    lon, lat = from_metric(x[keep][:n], y[keep][:n])
    assert lon.size == n
    batch = point_batch(lon, lat, [{"industry_code": "3011", "construction_type": "new"}])
    result = engine.screen(batch, catalog)
    assert engine.prepared(catalog).has_grid
    assert all(v is not None for v in result.verdict) and not any(result.errors)
    assert not np.isnan(result.red_distance).any()  # every point is in the territory
    exact = engine.screen(batch, catalog, use_grid=False)
    assert list(result.verdict) == list(exact.verdict)
    assert np.array_equal(result.red_distance, exact.red_distance)
    text = "id,lon,lat,industry_code,construction_type\n" + "".join(
        f"S{i},{a!r},{b!r},3011,new\n" for i, (a, b) in enumerate(zip(lon.tolist(), lat.tolist())))
    out = io.BytesIO()
    engine.write_results(engine.sites_from_csv(text.encode()), catalog, "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8-sig").split("\n", 1)[1])))
    assert len(rows) == n
    assert [r["verdict"] for r in rows] == list(result.verdict)
    assert [float(r["red_line_distance_m"]) for r in rows] == result.red_distance.tolist()


def test_bench_script_reports_its_figures(catalog):
    from scripts import bench_batch

    lines = []
    figures = bench_batch.run(catalog, n=3000, seed=5, repeat=3, assess_seconds=0.05, fresh_grid=False,
                              out=lines.append)
    assert figures["screen_rate"] > 0 and figures["assess_rate"] > 0 and figures["csv_rate"] > 0
    assert lines[0].startswith("| batch points") and any("assess()" in line for line in lines)
