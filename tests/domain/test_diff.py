"""Version diff on the real reference data: matching by key, what changed, by how much and where."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon

from app.domain.diff import diff_layers
from app.domain.schema import LAYERS
from app.geo.vector_io import list_layers, read_layer

GPKG = Path(__file__).resolve().parents[2] / "geodata" / "manzhouli.gpkg"


@pytest.fixture(scope="module")
def ref() -> dict[str, gpd.GeoDataFrame]:
    present = set(list_layers(GPKG))
    return {name: read_layer(GPKG, name) for name in LAYERS if name in present}


def with_layers(ref, **layers):
    out = dict(ref)
    out.update(layers)
    return out


def to_m(geojson) -> shapely.Geometry:
    g = shapely.from_geojson(json.dumps(geojson))
    return gpd.GeoSeries([g], crs=4490).to_crs(4548).iloc[0]


def test_unchanged_data_has_no_changes(ref):
    copy = {name: frame.copy() for name, frame in ref.items()}
    d = diff_layers(ref, copy)
    json.dumps(d, allow_nan=False)
    assert list(d) == [*ref, "summary"]  # contract order, summary last
    for name, frame in ref.items():
        assert d[name]["added"] == d[name]["removed"] == d[name]["changed"] == [], name
        assert d[name]["unchanged"] == len(frame)
        assert d[name]["area_m2_before"] == d[name]["area_m2_after"]
    s = d["summary"]
    assert s["added"] == s["removed"] == s["changed"] == 0
    assert s["red_line"]["before_m2"] == s["red_line"]["after_m2"] == pytest.approx(71.39e6, abs=5)
    assert s["red_line"]["change_m2"] == 0
    assert d["control_units"]["area_m2_before"] == pytest.approx(732e6, abs=5)


def test_a_moved_unit_is_changed_with_the_parts_gained_and_lost(ref):
    units = ref["control_units"].to_crs(4548)
    row = int(units.index[units.HJZHGKDYBM == "ZH15078120004"][0])
    old = units.geometry[row]
    units.loc[row, "geometry"] = affinity.translate(old, 80, 40)
    new_4490 = units.to_crs(4490)
    new = new_4490.to_crs(4548).geometry[row]  # what the diff sees after the round trip through storage
    d = diff_layers({"control_units": ref["control_units"]}, {"control_units": new_4490}, max_vertices=100_000)
    layer = d["control_units"]
    assert layer["added"] == [] and layer["removed"] == [] and layer["unchanged"] == 14
    (entry,) = layer["changed"]
    assert entry["key"] == {"HJZHGKDYBM": "ZH15078120004"}
    assert entry["label"] == "ZH15078120004 满洲里市工业园区重点管控单元"
    assert entry["attributes"] == [] and entry["geometry_changed"] is True
    assert entry["row_before"] == entry["row_after"] == row
    assert entry["area_m2_before"] == pytest.approx(old.area, abs=0.01)
    assert entry["area_m2_after"] == pytest.approx(old.area, abs=0.05)
    assert entry["area_m2_added"] == pytest.approx(new.difference(old).area, abs=0.05)
    assert entry["area_m2_removed"] == pytest.approx(old.difference(new).area, abs=0.05)
    assert entry["area_m2_added"] + entry["area_m2_removed"] == pytest.approx(old.symmetric_difference(new).area,
                                                                               abs=0.1)
    assert entry["geometry_capped"] is False and entry["geometry_note"] is None
    assert to_m(entry["geometry_added"]).area == pytest.approx(entry["area_m2_added"], abs=1.0)
    assert to_m(entry["geometry_removed"]).area == pytest.approx(entry["area_m2_removed"], abs=1.0)
    assert d["summary"]["layers"]["control_units"]["changed"] == 1 and d["summary"]["red_line"] is None


def test_embedded_geometry_is_capped_and_says_so(ref):
    units = ref["control_units"].to_crs(4548)
    row = int(units.index[units.HJZHGKDYBM == "ZH15078120004"][0])
    units.loc[row, "geometry"] = affinity.translate(units.geometry[row], 80, 40)
    d = diff_layers({"control_units": ref["control_units"]}, {"control_units": units.to_crs(4490)}, max_vertices=300)
    (entry,) = d["control_units"]["changed"]
    assert entry["geometry_capped"] is True and "300" in entry["geometry_note"]
    for key in ("geometry_added", "geometry_removed"):
        g = shapely.from_geojson(json.dumps(entry[key]))
        assert shapely.get_num_coordinates(g) <= 300
        assert to_m(entry[key]).area == pytest.approx(entry[key.replace("geometry", "area_m2")], rel=0.05)
    assert d["summary"]["vertex_cap"] == 300


def test_a_new_red_line_patch_is_added_with_its_area(ref):
    red = ref["red_line"]
    c = ref["control_units"].to_crs(4548).geometry[0].representative_point()
    square = Polygon([(c.x, c.y), (c.x + 500, c.y), (c.x + 500, c.y + 400), (c.x, c.y + 400)])
    extra = gpd.GeoDataFrame([{"patch_id": "HX1507819999", "function": "grassland", "function_name": "草原生物多样性维护",
                               "county_code": "150781", "geometry": MultiPolygon([square])}], crs=4548).to_crs(4490)
    new = gpd.GeoDataFrame(pd.concat([red, extra], ignore_index=True), crs=4490)
    d = diff_layers({"red_line": red}, {"red_line": new})
    layer = d["red_line"]
    assert layer["changed"] == [] and layer["removed"] == [] and layer["unchanged"] == len(red)
    (entry,) = layer["added"]
    assert entry["key"] == {"patch_id": "HX1507819999"} and entry["label"] == "HX1507819999 草原生物多样性维护"
    assert entry["area_m2_before"] is None and entry["row_before"] is None and entry["row_after"] == len(red)
    assert entry["area_m2_after"] == pytest.approx(200_000, abs=0.5)
    assert to_m(entry["geometry_added"]).area == pytest.approx(200_000, abs=0.5)
    assert layer["area_m2_after"] - layer["area_m2_before"] == pytest.approx(200_000, abs=0.5)
    rl = d["summary"]["red_line"]
    assert rl["change_m2"] == pytest.approx(200_000, abs=0.5)


def test_removed_features_and_attribute_changes(ref):
    red = ref["red_line"].drop(index=[5]).reset_index(drop=True)
    units = ref["control_units"].copy()
    units.loc[3, "HJZHGKDYMC"] = "满洲里市中心城区重点管控单元（调整）"
    d = diff_layers({"red_line": ref["red_line"], "control_units": ref["control_units"]},
                    {"red_line": red, "control_units": units})
    (removed,) = d["red_line"]["removed"]
    assert removed["key"] == {"patch_id": ref["red_line"].patch_id[5]} and removed["area_m2_after"] is None
    assert removed["area_m2_before"] == pytest.approx(ref["red_line"].to_crs(4548).geometry[5].area, abs=0.01)
    assert d["summary"]["red_line"]["change_m2"] == pytest.approx(-removed["area_m2_before"], abs=0.05)
    (changed,) = d["control_units"]["changed"]
    assert changed["geometry_changed"] is False and changed["area_m2_added"] == changed["area_m2_removed"] == 0
    assert changed["geometry_added"] is None and changed["geometry_removed"] is None
    assert changed["attributes"] == [{"field": "HJZHGKDYMC", "old": "满洲里市中心城区重点管控单元",
                                      "new": "满洲里市中心城区重点管控单元（调整）"}]


def test_geometry_within_tolerance_and_reordered_rows_are_unchanged(ref):
    red = ref["red_line"].to_crs(4548)
    g = red.geometry[0]
    coords = shapely.get_coordinates(g)
    coords[1] += 0.001  # one vertex moved by a millimetre
    red.loc[0, "geometry"] = shapely.set_coordinates(g, coords)
    shuffled = red.iloc[::-1].reset_index(drop=True).to_crs(4490)
    d = diff_layers({"red_line": ref["red_line"]}, {"red_line": shuffled})
    assert d["red_line"]["changed"] == [] and d["red_line"]["unchanged"] == len(red)


def test_layers_in_one_version_only_and_deterministic_order(ref):
    old = {"lakes": ref["lakes"]}
    new = {"wetland_parks": ref["wetland_parks"], "red_line": ref["red_line"].iloc[:3]}
    d = diff_layers(old, new)
    assert list(d) == ["red_line", "wetland_parks", "lakes", "summary"]
    assert [e["key"]["patch_id"] for e in d["red_line"]["added"]] == sorted(ref["red_line"].patch_id[:3])
    assert len(d["lakes"]["removed"]) == len(ref["lakes"]) and d["lakes"]["in_after"] is False
    assert d["summary"]["red_line"]["before_m2"] is None and d["summary"]["red_line"]["change_m2"] is None
    assert json.dumps(d, sort_keys=True) == json.dumps(diff_layers(old, new), sort_keys=True)


def test_empty_keys_and_duplicate_keys_are_matched_conservatively(ref):
    farm = ref["basic_farmland"].copy()
    farm.loc[0, "name"] = None  # no key: cannot be matched, shows as removed + added
    farm.loc[2, "name"] = farm.name[1]  # duplicate: matched by occurrence
    d = diff_layers({"basic_farmland": ref["basic_farmland"]}, {"basic_farmland": farm})
    layer = d["basic_farmland"]
    added_keys = [e["key"] for e in layer["added"]]
    assert {"name": None} in added_keys
    assert {"name": ref["basic_farmland"].name[1], "occurrence": 1} in added_keys
    assert sorted(e["key"]["name"] for e in layer["removed"]) == sorted(ref["basic_farmland"].name[[0, 2]])
    json.dumps(d, allow_nan=False)


def test_a_line_layer_reports_lengths(ref):
    rivers = ref["rivers"].to_crs(4548)
    rivers.loc[0, "geometry"] = affinity.translate(rivers.geometry[0], 30, 0)
    d = diff_layers({"rivers": ref["rivers"]}, {"rivers": rivers.to_crs(4490)})
    (entry,) = d["rivers"]["changed"]
    assert entry["geometry_changed"] is True and entry["key"] == {"name": ref["rivers"].name[0]}
    assert entry["length_m_before"] == pytest.approx(entry["length_m_after"], abs=0.01)
    assert entry["length_m_added"] > 0
    assert d["rivers"]["area_m2_before"] == 0.0
