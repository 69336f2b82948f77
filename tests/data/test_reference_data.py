"""The embedded reference dataset keeps the published facts and its own structural promises."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import rasterio
import shapely

from app.domain.schema import (
    LAND_COVER_KEYS,
    LAYERS,
    METRIC_EPSG,
    PROVENANCE_ILLUSTRATIVE,
    PROVENANCE_TABLE,
    STORAGE_EPSG,
)
from app.geo.vector_io import content_hash, list_layers, read_layer, read_table
from scripts import build_reference_data as builder

GPKG = builder.ROOT / "geodata" / "manzhouli.gpkg"
TIF = builder.ROOT / "geodata" / "landcover.tif"


@pytest.fixture(scope="module")
def layers():
    return {name: read_layer(GPKG, name) for name in LAYERS}


@pytest.fixture(scope="module")
def metric(layers):
    return {name: gdf.to_crs(METRIC_EPSG) for name, gdf in layers.items()}


def test_every_contract_layer_is_present_in_cgcs2000(layers):
    present = set(list_layers(GPKG))
    assert set(LAYERS) <= present
    for name, gdf in layers.items():
        assert gdf.crs.to_epsg() == STORAGE_EPSG, name
        assert list(LAYERS[name].fields) == [c for c in gdf.columns if c != "geometry"], name
        assert len(gdf) > 0, name


def test_every_geometry_is_valid_and_not_empty(layers):
    for name, gdf in layers.items():
        assert gdf.geometry.is_valid.all(), name
        assert not gdf.geometry.is_empty.any(), name


def test_territory_is_about_732_km2_in_two_counties(metric):
    admin = metric["admin_boundary"].set_index("county_code")
    assert sorted(admin.index) == ["150703", "150781"]
    assert admin.area.sum() / 1e6 == pytest.approx(732.0, abs=0.001)
    assert 430 < admin.area["150781"] / 1e6 < 480  # 满洲里市 without 扎赉诺尔区 ≈ 465 km² (domain brief §2)
    lon_min, lat_min, lon_max, lat_max = read_layer(GPKG, "admin_boundary").total_bounds
    # Published extent 117°12′–117°53′E, 49°19′–49°41′N.
    assert 117.2 <= lon_min and lon_max <= 117 + 53 / 60 and 49 + 19 / 60 - 0.002 <= lat_min and lat_max <= 49 + 41 / 60


def test_units_tile_the_territory_without_gap_or_overlap(metric):
    units = metric["control_units"]
    territory = shapely.union_all(metric["admin_boundary"].geometry.values)
    union = shapely.union_all(units.geometry.values)
    overlap = units.area.sum() - union.area
    gap = territory.difference(union).area
    spill = union.difference(territory).area
    assert overlap < 1.0 and gap < 1.0 and spill < 1.0, (overlap, gap, spill)
    for i, a in enumerate(units.geometry):
        for b in units.geometry[i + 1 :]:
            assert a.intersection(b).area < 1.0


def test_five_priority_and_ten_key_units_with_well_formed_codes(layers):
    units = layers["control_units"]
    assert len(units) == 15
    assert (units.ZHGKDYFL == "1").sum() == 5 and (units.ZHGKDYFL == "2").sum() == 10
    assert units.HJZHGKDYBM.is_unique
    for _, u in units.iterrows():
        m = re.fullmatch(r"ZH(150781|150703)([123])(\d{4})", u.HJZHGKDYBM)
        assert m, u.HJZHGKDYBM
        assert m.group(1) == u.XZQDM and m.group(2) == u.ZHGKDYFL
        assert u.AREA == {"150781": "满洲里市", "150703": "扎赉诺尔区"}[u.XZQDM]
        assert u.PROV == "内蒙古自治区" and u.CITY == "呼伦贝尔市"
        assert re.search(r"[\u4e00-\u9fff]", u.HJZHGKDYMC)
        for field in ("KJBJYS", "PWWPFGK", "HJFXFK", "ZYKFXLYQ"):
            assert re.search(r"[\u4e00-\u9fff]", u[field]), (u.HJZHGKDYBM, field)


def test_units_lie_in_the_county_their_code_names(metric):
    counties = metric["admin_boundary"].set_index("county_code").geometry
    for _, u in metric["control_units"].iterrows():
        assert u.geometry.difference(counties[u.XZQDM]).area < 1.0, u.HJZHGKDYBM


def test_unit_categories_follow_plan_3_3(layers):
    units = layers["control_units"]
    priority = " ".join(units[units.ZHGKDYFL == "1"].DYLB)
    key = " ".join(units[units.ZHGKDYFL == "2"].DYLB)
    for category in ("生态保护红线", "一般生态空间", "自然保护地", "饮用水水源保护区"):
        assert category in priority
    for category in ("工业园区", "贸易区", "保税区", "城市", "采矿用地", "生态需水补给区"):
        assert category in key


def test_published_sizes(metric):
    units = metric["control_units"].set_index("HJZHGKDYBM")
    assert units.area["ZH15078120002"] / 1e6 == pytest.approx(11.8, abs=0.001)  # 中俄互市贸易区
    assert units.area["ZH15078120003"] / 1e6 == pytest.approx(1.44, abs=0.001)  # 综合保税区
    parks = metric["wetland_parks"].set_index("name")
    assert parks.area["霍勒金布拉格国家湿地公园"] / 1e4 == pytest.approx(972.0, abs=0.01)
    assert parks.area["二卡国家湿地公园"] / 1e4 == pytest.approx(5878.5, abs=0.01)
    reserve = metric["nature_reserve"]
    assert 65 <= reserve.area.sum() / 1e6 <= 69
    rivers = metric["rivers"].set_index("name")
    assert rivers.length["霍尔津河"] / 1000 == pytest.approx(24.693, abs=0.001)
    pit = metric["mining_areas"][metric["mining_areas"].kind == "open_pit"].area.max()
    assert pit / 1e6 == pytest.approx(38.0, abs=0.01)


def test_red_line_total_count_shape_and_place(metric, layers):
    red = metric["red_line"]
    assert red.area.sum() / 1e6 == pytest.approx(71.39, abs=0.01)
    assert len(red) >= 150
    vertices = shapely.get_num_coordinates(layers["red_line"].geometry.values)
    assert vertices.min() >= 200 and vertices.max() >= 1000  # hundreds to thousands, like digitised boundaries
    assert set(red.function) == {"wetland", "grassland", "water_conservation", "windbreak_sand_fixation"}
    assert red.patch_id.is_unique
    units = metric["control_units"]
    priority = shapely.union_all(units[units.ZHGKDYFL == "1"].geometry.values)
    shapely.prepare(priority)
    assert all(priority.contains(g) for g in red.geometry)
    cities = units[units.DYLB == "城市"].geometry
    assert len(cities) == 2
    assert not any(shapely.intersects(c, g) for c in cities for g in red.geometry)
    assert shapely.union_all(red.geometry.values).area == pytest.approx(red.area.sum(), abs=1.0)  # no overlap


def test_element_layers_carry_what_the_rules_need(metric, layers):
    units = metric["control_units"].set_index("HJZHGKDYBM").geometry
    reserve = layers["nature_reserve"]
    assert sorted(reserve.zone) == ["core", "general_control"]
    assert set(reserve.effective_date) == {"2026-03-15"}
    core = metric["nature_reserve"].set_index("zone").geometry["core"]
    red = shapely.union_all(metric["red_line"].geometry.values)
    assert core.difference(red).area < 1.0  # the reserve's core zone lies in the red line
    dw = layers["drinking_water"]
    assert dw.groupby("source_name").zone.apply(sorted).tolist() == [["level1", "level2", "quasi"]] * 2
    assert "满洲里市第二水源地" in set(dw.source_name)
    assert metric["drinking_water"].geometry.union_all().difference(units["ZH15078110003"]).area < 1.0
    water = layers["water_env_zones"].set_index("section")
    assert water.compliant["二卡牧场（国考断面）"] == 0 and water.measured_class["二卡牧场（国考断面）"] == "劣Ⅴ"
    assert water.compliant.sum() == len(water) - 1
    mining = layers["mining_areas"]
    assert {"open_pit", "dump", "subsidence"} <= set(mining.kind)
    territory = shapely.union_all(metric["admin_boundary"].geometry.values)
    for name in ("water_env_zones", "air_env_zones"):
        zones = metric[name]
        assert zones.area.sum() == pytest.approx(territory.area, abs=1.0), name
    burn = shapely.union_all(metric["no_burn_zone"].geometry.values)
    assert burn.contains(units["ZH15078120001"].representative_point())
    assert len(layers["basic_grassland"]) >= 3 and len(layers["basic_farmland"]) >= 3
    assert len(layers["urban_boundary"]) == 2


def test_provenance_says_illustrative_everywhere():
    prov = read_table(GPKG, PROVENANCE_TABLE).set_index("layer")
    assert set(LAYERS) | {"land_cover"} == set(prov.index)
    assert (prov.provenance == PROVENANCE_ILLUSTRATIVE).all()
    assert prov.source.str.contains("示意").all()
    info = dict(read_table(GPKG, "dataset_info")[["key", "value"]].values)
    assert info["illustrative"] == "true" and info["provenance"] == PROVENANCE_ILLUSTRATIVE
    with rasterio.open(TIF) as src:
        assert src.tags()["PROVENANCE"] == PROVENANCE_ILLUSTRATIVE


def test_recorded_layer_hashes_match_the_content():
    prov = read_table(GPKG, PROVENANCE_TABLE).set_index("layer")
    for name in LAYERS:
        assert content_hash(read_layer(GPKG, name)) == prov.content_hash[name], name


def test_land_cover_raster_is_compressed_30m_with_overviews():
    with rasterio.open(TIF) as src:
        assert src.crs.to_epsg() == METRIC_EPSG
        assert abs(src.transform.a) <= 30 and abs(src.transform.e) <= 30
        assert src.compression.name.lower() == "deflate"
        assert src.overviews(1) == [2, 4, 8, 16]
        assert src.dtypes[0] == "uint8" and src.nodata == 0
        grid = src.read(1)
    present = set(np.unique(grid)) - {0}
    assert {LAND_COVER_KEYS[k] for k in ("grassland", "wetland", "water", "cropland", "forest", "built_up",
                                         "mining", "bare_sand")} <= present


def _sample(metric, geom, n, seed):
    """n seeded points well inside `geom` (metric)."""
    rng = np.random.default_rng(seed)
    inner = geom.buffer(-60)
    minx, miny, maxx, maxy = inner.bounds
    pts = []
    while len(pts) < n:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if inner.contains(shapely.points(x, y)):
            pts.append((x, y))
    return pts


def test_land_cover_agrees_with_the_vectors(metric):
    with rasterio.open(TIF) as src:
        def classes(points):
            return [int(v[0]) for v in src.sample(points)]

        rivers = shapely.union_all(metric["rivers"].geometry.buffer(200).values)
        units = metric["control_units"].set_index("HJZHGKDYBM").geometry
        city = units["ZH15078120001"].difference(rivers)
        assert set(classes(_sample(metric, city, 200, 1))) == {LAND_COVER_KEYS["built_up"]}
        parks = shapely.union_all(metric["wetland_parks"].geometry.values)
        assert set(classes(_sample(metric, parks, 200, 2))) <= {LAND_COVER_KEYS["wetland"], LAND_COVER_KEYS["water"]}
        mining = metric["mining_areas"]
        pit = shapely.union_all(mining[mining.kind == "open_pit"].geometry.values).difference(rivers)
        assert set(classes(_sample(metric, pit, 200, 3))) == {LAND_COVER_KEYS["mining"]}
        lakes = shapely.union_all(metric["lakes"].geometry.values)
        assert set(classes(_sample(metric, lakes, 100, 4))) == {LAND_COVER_KEYS["water"]}
        outside = shapely.box(*src.bounds).difference(shapely.union_all(metric["admin_boundary"].geometry.values).buffer(60))
        assert set(classes(_sample(metric, outside, 100, 5))) == {0}


def test_unit_text_fields_are_generated_from_the_clause_files(layers):
    texts = builder.unit_texts()
    for _, u in layers["control_units"].iterrows():
        for dimension, field in (("spatial_layout", "KJBJYS"), ("emission_control", "PWWPFGK"),
                                 ("risk_prevention", "HJFXFK"), ("resource_efficiency", "ZYKFXLYQ")):
            assert u[field] == texts[u.HJZHGKDYBM][dimension]


def test_fixture_build_is_deterministic_and_matches_the_committed_fixture(tmp_path):
    first = builder.build(tmp_path / "a", "fixture")
    second = builder.build(tmp_path / "b", "fixture")
    assert first == second
    committed = json.loads((builder.ROOT / "tests" / "fixtures" / "mini" / "BUILD_HASHES.json").read_text())
    assert committed["layers"] == first


def test_full_build_reproduces_the_committed_geodata(tmp_path):
    """geodata/ is built by the script, never edited by hand: a rebuild gives the same content hashes."""
    hashes = builder.build(tmp_path, "full")
    committed = json.loads((builder.ROOT / "geodata" / "BUILD_HASHES.json").read_text())
    assert committed["layers"] == hashes
    prov = read_table(GPKG, PROVENANCE_TABLE).set_index("layer")
    assert all(prov.content_hash[name] == digest for name, digest in hashes.items())
