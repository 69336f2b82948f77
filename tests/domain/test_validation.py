"""Draft validation on the real reference data: each check fires on a derived draft with the right code, severity,
feature and numbers, and the reference data itself passes clean."""

from __future__ import annotations

import json
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Polygon

from app.domain.rules import load_rule_base
from app.domain.schema import LAYERS
from app.domain.validation import ISSUE_CODES, _Validation, report_to_gpkg, validate_draft
from app.geo.vector_io import list_layers, read_layer

ROOT = Path(__file__).resolve().parents[2]
GPKG = ROOT / "geodata" / "manzhouli.gpkg"
ZONES = ROOT / "zones"


@pytest.fixture(scope="module")
def ref() -> dict[str, gpd.GeoDataFrame]:
    present = set(list_layers(GPKG))
    return {name: read_layer(GPKG, name) for name in LAYERS if name in present}


@pytest.fixture(scope="module")
def rules():
    return load_rule_base(ZONES)


def draft_of(ref, **layers):
    out = dict(ref)
    out.update(layers)
    return out


def run(ref, rules=None, approval_ref=None, **layers):
    report = validate_draft(draft_of(ref, **layers), ref, replaced=list(layers), rules=rules,
                            approval_ref=approval_ref)
    json.dumps(report, allow_nan=False)  # JSON-safe, always
    return report


def codes(report) -> set[tuple[str, str]]:
    found = {(i["code"], i["severity"]) for i in report["errors"] + report["warnings"]}
    assert all(ISSUE_CODES[code][0] == severity for code, severity in found)
    assert all(i["severity"] == "error" for i in report["errors"])
    assert report["ok"] is (not report["errors"])
    return found


def issues(report, code: str) -> list[dict]:
    return [i for i in report["errors"] + report["warnings"] if i["code"] == code]


def units_m(ref) -> gpd.GeoDataFrame:
    return ref["control_units"].to_crs(4548)


def row_of(frame, code: str) -> int:
    return int(frame.index[frame.HJZHGKDYBM == code][0])


def geom_m(issue) -> shapely.Geometry:
    g = shapely.from_geojson(json.dumps(issue["geometry"]))
    return gpd.GeoSeries([g], crs=4490).to_crs(4548).iloc[0]


# ---------------------------------------------------------------------------------------------------------------
# The reference data


def test_reference_data_validates_clean_and_fast(ref, rules):
    start = time.perf_counter()
    report = validate_draft(draft_of(ref), ref, replaced=list(ref), rules=rules)
    elapsed = time.perf_counter() - start
    json.dumps(report, allow_nan=False)
    assert report["ok"] is True
    assert report["errors"] == [] and report["warnings"] == []
    assert report["units"] == {"count": 15, "priority": 5, "key": 10, "general": 0}
    assert report["red_line"]["before_m2"] == report["red_line"]["after_m2"]
    assert report["red_line"]["after_m2"] == pytest.approx(71.39e6, abs=5)
    assert report["red_line"]["decrease"] is False and report["red_line"]["approval_ref"] is None
    assert report["territory"] == "draft"
    assert set(report["layers"]) == set(ref)
    units = report["layers"]["control_units"]
    assert units["unchanged"] == 15 and units["changed"] == units["added"] == units["removed"] == 0
    assert len(units["units"]) == 15 and all(u["change_m2"] == 0 for u in units["units"])
    for name in ref:
        d = report["diff"][name]
        assert d["added"] == d["removed"] == d["changed"] == [], name
    assert elapsed < 5.0, elapsed


def test_replacing_one_layer_with_itself_is_clean_and_the_territory_comes_from_current(ref):
    report = run(ref, red_line=ref["red_line"].copy())
    assert report["ok"] and not report["errors"] and not report["warnings"]
    assert report["territory"] == "current"
    assert list(report["layers"]) == ["red_line"] and list(report["diff"]) == ["red_line", "summary"]


# ---------------------------------------------------------------------------------------------------------------
# Contract


def test_a_missing_required_field_is_named_with_the_fields_the_file_has(ref):
    units = ref["control_units"].drop(columns=["DYLB"])
    report = run(ref, control_units=units)
    assert codes(report) == {("missing_field", "error")}
    issue = issues(report, "missing_field")[0]
    assert issue["layer"] == "control_units" and issue["detail"]["field"] == "DYLB"
    assert "DYLB" in issue["message"] and "HJZHGKDYBM" in issue["message"] and "ZYKFXLYQ" in issue["message"]
    assert report["ok"] is False


def test_a_value_outside_the_enum_is_an_error_on_that_feature(ref):
    units = ref["control_units"].copy()
    row = row_of(units, "ZH15078120003")
    units.loc[row, "ZHGKDYFL"] = "4"
    report = run(ref, control_units=units)
    # the type digit 4 is neither priority nor key: the plan's 5 + 10 structure changes as well
    assert codes(report) == {("invalid_enum_value", "error"), ("unit_structure", "warning")}
    issue = issues(report, "invalid_enum_value")[0]
    assert issue["feature"] == {"HJZHGKDYBM": "ZH15078120003", "row": row}
    assert issue["detail"]["value"] == "4" and issue["detail"]["allowed"] == ["1", "2", "3"]
    assert "ZHGKDYFL" in issue["message"] and "“4”" in issue["message"]
    assert issue["location"] is not None
    assert issues(report, "unit_structure")[0]["detail"]["counts"] == {"priority": 5, "key": 9, "general": 0}


def test_a_field_of_the_wrong_type_is_an_error(ref):
    units = ref["control_units"].copy()
    units["ZHGKDYFL"] = units["ZHGKDYFL"].astype(int)  # a shapefile that stored the type digit as a number
    report = run(ref, control_units=units)
    assert codes(report) == {("wrong_field_type", "error")}
    issue = issues(report, "wrong_field_type")[0]
    assert issue["detail"]["field"] == "ZHGKDYFL" and issue["detail"]["count"] == 15
    assert "文本" in issue["message"] and "整数" in issue["message"]


def test_layer_level_problems(ref):
    report = validate_draft(draft_of(ref), ref, replaced=["no_such_layer"])
    assert codes(report) == {("layer_unknown", "error")}
    draft = draft_of(ref)
    del draft["wetland_parks"]
    report = validate_draft(draft, ref, replaced=["wetland_parks"])
    assert codes(report) == {("layer_missing", "error")}
    report = run(ref, basic_farmland=ref["basic_farmland"].to_crs(4548))
    assert codes(report) == {("layer_crs", "error")}  # checked after conversion: nothing else is wrong


# ---------------------------------------------------------------------------------------------------------------
# Per feature


def _patch(ref, geom_4490, patch_id="HX1507819999"):
    red = ref["red_line"]
    extra = gpd.GeoDataFrame([{"patch_id": patch_id, "function": "grassland", "function_name": "草原生物多样性维护",
                               "county_code": "150781", "geometry": geom_4490}], crs=4490)
    return gpd.GeoDataFrame(pd_concat([red, extra]), crs=4490)


def pd_concat(frames):
    return pd.concat(frames, ignore_index=True)


_SPOTS: dict[str, shapely.Point] = {}


def _free_spot(ref, code="ZH15078110001"):
    """A metric point inside a priority unit, 600 m from its edge and 500 m from any red-line patch."""
    if code not in _SPOTS:
        units = units_m(ref)
        unit = units.geometry[row_of(units, code)]
        shapely.prepare(unit)
        red = shapely.STRtree(ref["red_line"].to_crs(4548).geometry.values)
        minx, miny, maxx, maxy = unit.bounds
        for x in range(int(minx), int(maxx), 1000):
            for y in range(int(miny), int(maxy), 1000):
                p = shapely.Point(x, y)
                if unit.contains(p) and unit.boundary.distance(p) > 600 and not len(red.query(p, "dwithin", 500)):
                    _SPOTS[code] = p
                    break
            if code in _SPOTS:
                break
    return _SPOTS[code]


def _to_4490(geom_m):
    return gpd.GeoSeries([geom_m], crs=4548).to_crs(4490).iloc[0]


def test_a_bowtie_is_invalid_with_its_reason_and_location(ref):
    c = _free_spot(ref)
    bowtie = Polygon([(c.x - 200, c.y - 200), (c.x + 200, c.y + 200), (c.x + 200, c.y - 200), (c.x - 200, c.y + 200)])
    red = _patch(ref, _to_4490(bowtie))
    report = run(ref, red_line=red)
    assert codes(report) == {("geometry_invalid", "error")}
    issue = issues(report, "geometry_invalid")[0]
    assert issue["feature"] == {"patch_id": "HX1507819999", "row": len(red) - 1}
    assert "自相交" in issue["message"] and issue["detail"]["reason"].startswith("Self-intersection")
    centre = _to_4490(c)
    assert issue["location"] == pytest.approx([centre.x, centre.y], abs=1e-6)


def test_empty_and_non_polygon_geometry(ref):
    c = _free_spot(ref)
    red = _patch(ref, None, "HX1507819998")
    red = gpd.GeoDataFrame(pd_concat([red, _patch(ref, _to_4490(LineString([(c.x, c.y), (c.x + 300, c.y)])),
                                                  "HX1507819997").iloc[[-1]]]), crs=4490)
    report = run(ref, red_line=red)
    assert codes(report) == {("geometry_empty", "error"), ("geometry_wrong_type", "error")}
    assert issues(report, "geometry_empty")[0]["feature"]["patch_id"] == "HX1507819998"
    wrong = issues(report, "geometry_wrong_type")[0]
    assert wrong["feature"]["patch_id"] == "HX1507819997" and wrong["detail"]["geometry_type"] == "LineString"


def test_a_feature_moved_outside_the_territory(ref):
    farm = ref["basic_farmland"].to_crs(4548)
    area = farm.geometry[2].area
    farm.loc[2, "geometry"] = affinity.translate(farm.geometry[2], 0, 40_000)  # 40 km north, into Russia
    report = run(ref, basic_farmland=farm.to_crs(4490))
    assert codes(report) == {("outside_territory", "error")}
    issue = issues(report, "outside_territory")[0]
    assert issue["feature"] == {"name": farm.name[2], "row": 2}
    assert issue["detail"]["area_m2"] == pytest.approx(area, abs=1.0)
    assert issue["location"] is not None and issue["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_a_unit_spilling_over_the_border_and_a_shrunken_territory(ref):
    units = units_m(ref)
    row = row_of(units, "ZH15078120002")  # the trade zone, on the Russian border
    territory = ref["admin_boundary"].to_crs(4548).union_all()
    grown = units.geometry[row].buffer(200)
    units.loc[row, "geometry"] = MultiPolygon([grown]) if grown.geom_type == "Polygon" else grown
    report = run(ref, control_units=units.to_crs(4490))
    spill = issues(report, "outside_territory")
    assert [i["feature"]["HJZHGKDYBM"] for i in spill] == ["ZH15078120002"]
    assert spill[0]["detail"]["area_m2"] == pytest.approx(grown.difference(territory).area, abs=1.0)
    assert ("unit_overlap", "error") in codes(report) and ("unit_area_change", "warning") in codes(report)

    admin = ref["admin_boundary"].to_crs(4548)
    admin["geometry"] = admin.geometry.buffer(-300)
    report = run(ref, admin_boundary=admin.to_crs(4490))
    assert report["territory"] == "draft"
    outside = {i["layer"] for i in issues(report, "outside_territory")}
    assert "control_units" in outside and "admin_boundary" not in outside
    assert ("unit_gap", "error") not in codes(report)  # units now cover more than the territory, not less


# ---------------------------------------------------------------------------------------------------------------
# Keys and unit codes


def test_a_duplicate_unit_code(ref, rules):
    units = ref["control_units"].copy()
    a, b = row_of(units, "ZH15078120001"), row_of(units, "ZH15078120002")
    units.loc[b, "HJZHGKDYBM"] = "ZH15078120001"
    report = run(ref, rules, control_units=units)
    assert codes(report) == {("key_duplicate", "error"), ("unit_removed", "warning"), ("rule_unit_missing", "error")}
    dup = issues(report, "key_duplicate")[0]
    assert dup["feature"] == {"HJZHGKDYBM": "ZH15078120001", "rows": [a, b]}
    assert dup["detail"]["rows"] == [a, b]
    assert issues(report, "unit_removed")[0]["feature"] == {"HJZHGKDYBM": "ZH15078120002"}
    assert issues(report, "rule_unit_missing")[0]["feature"] == {"HJZHGKDYBM": "ZH15078120002"}


def test_a_missing_key(ref):
    red = ref["red_line"].copy()
    red.loc[7, "patch_id"] = ""
    report = run(ref, red_line=red)
    # the patch no longer matches the current version, but the red line keeps its area
    assert ("key_missing", "error") in codes(report)
    issue = issues(report, "key_missing")[0]
    assert issue["feature"] == {"row": 7} and "patch_id" in issue["message"]
    assert not report["red_line"]["decrease"]


def test_a_changed_type_digit_disagrees_with_the_code_and_the_category(ref):
    units = ref["control_units"].copy()
    row = row_of(units, "ZH15078120001")
    units.loc[row, "ZHGKDYFL"] = "1"
    report = run(ref, control_units=units)
    assert codes(report) == {("unit_code_type_mismatch", "error"), ("unit_category_mismatch", "error"),
                             ("unit_structure", "warning")}
    mismatch = issues(report, "unit_code_type_mismatch")[0]
    assert mismatch["feature"] == {"HJZHGKDYBM": "ZH15078120001", "row": row}
    assert mismatch["detail"] == {"code_type": "2", "field_type": "1"}
    category = issues(report, "unit_category_mismatch")[0]
    assert category["detail"]["matched"] == ["城市"] and category["feature"]["HJZHGKDYBM"] == "ZH15078120001"
    assert issues(report, "unit_structure")[0]["detail"]["counts"] == {"priority": 6, "key": 9, "general": 0}


def test_code_format_county_and_category_checks(ref):
    units = ref["control_units"].copy()
    fmt = row_of(units, "ZH15070320003")
    county = row_of(units, "ZH15070320001")
    cat_bad = row_of(units, "ZH15078110003")
    cat_unknown = row_of(units, "ZH15078120006")
    units.loc[fmt, "HJZHGKDYBM"] = "ZH1507032003"
    units.loc[county, "XZQDM"] = "150781"
    units.loc[cat_bad, "DYLB"] = "工业园区"
    units.loc[cat_unknown, "DYLB"] = "风景名胜区"
    report = run(ref, control_units=units)
    assert codes(report) == {("unit_code_format", "error"), ("unit_code_county_mismatch", "error"),
                             ("unit_category_mismatch", "error"), ("unit_category_unknown", "warning"),
                             ("unit_removed", "warning"), ("unit_added", "warning")}
    assert issues(report, "unit_code_format")[0]["feature"] == {"HJZHGKDYBM": "ZH1507032003", "row": fmt}
    assert issues(report, "unit_code_county_mismatch")[0]["detail"] == {"code_county": "150703",
                                                                         "field_county": "150781"}
    assert issues(report, "unit_category_mismatch")[0]["feature"]["HJZHGKDYBM"] == "ZH15078110003"
    assert issues(report, "unit_category_unknown")[0]["feature"]["HJZHGKDYBM"] == "ZH15078120006"
    assert issues(report, "unit_removed")[0]["feature"] == {"HJZHGKDYBM": "ZH15070320003"}


# ---------------------------------------------------------------------------------------------------------------
# Control units as a partition


def test_a_shifted_unit_overlaps_its_neighbours_and_leaves_a_gap(ref):
    units = units_m(ref)
    row = row_of(units, "ZH15078120004")
    moved = affinity.translate(units.geometry[row], 120, 0)
    units.loc[row, "geometry"] = moved
    territory = ref["admin_boundary"].to_crs(4548).union_all()
    expected = {}
    for code, g in zip(units.HJZHGKDYBM, units.geometry):
        if code != "ZH15078120004" and g.intersection(moved).area > 1:
            expected[code] = g.intersection(moved).area
    gap = territory.difference(units.union_all()).area
    report = run(ref, control_units=units.to_crs(4490))
    assert codes(report) == {("unit_overlap", "error"), ("unit_gap", "error")}
    overlaps = issues(report, "unit_overlap")
    found = {}
    for o in overlaps:
        pair = {o["feature"]["HJZHGKDYBM"], o["detail"]["other_feature"]["HJZHGKDYBM"]}
        assert "ZH15078120004" in pair
        (other,) = pair - {"ZH15078120004"}
        found[other] = o["detail"]["area_m2"]
        assert geom_m(o).area == pytest.approx(o["detail"]["area_m2"], rel=1e-3)
        assert o["location"] is not None
    assert set(found) == set(expected)
    for code, area in expected.items():
        assert found[code] == pytest.approx(area, abs=1.0)
    gaps = issues(report, "unit_gap")
    assert sum(g["detail"]["area_m2"] for g in gaps) == pytest.approx(gap, abs=1.0)
    assert all(g["feature"] is None and g["location"] for g in gaps)
    summary = report["layers"]["control_units"]
    assert summary["changed"] == 1 and summary["errors"] == len(overlaps) + len(gaps)


def test_moving_a_shared_boundary_changes_areas_without_errors(ref):
    units = units_m(ref)
    a, b = row_of(units, "ZH15078120004"), row_of(units, "ZH15078120001")
    taken = units.geometry[a].buffer(150).intersection(units.geometry[b])
    units.loc[a, "geometry"] = MultiPolygon(shapely.get_parts(units.geometry[a].union(taken)).tolist())
    rest = units.geometry[b].difference(taken)
    units.loc[b, "geometry"] = rest if rest.geom_type == "MultiPolygon" else MultiPolygon([rest])
    before_a = ref["control_units"].to_crs(4548).geometry[a].area
    report = run(ref, control_units=units.to_crs(4490))
    assert report["ok"] is True, report["errors"]
    changes = {i["feature"]["HJZHGKDYBM"]: i for i in issues(report, "unit_area_change")}
    assert "ZH15078120004" in changes
    detail = changes["ZH15078120004"]["detail"]
    assert detail["change_m2"] == pytest.approx(taken.area, abs=1.0)
    assert detail["change_pct"] == pytest.approx(taken.area / before_a * 100, abs=1e-3)
    rows = {u["code"]: u for u in report["layers"]["control_units"]["units"]}
    assert rows["ZH15078120004"]["change_m2"] == pytest.approx(taken.area, abs=1.0)
    assert rows["ZH15078120001"]["change_m2"] == pytest.approx(-taken.area, abs=1.0)


def test_deleting_a_unit_with_a_clause_file(ref, rules):
    units = ref["control_units"]
    row = row_of(units, "ZH15078120005")
    area = units.to_crs(4548).geometry[row].area
    report = run(ref, rules, control_units=units.drop(index=row).reset_index(drop=True))
    assert codes(report) == {("rule_unit_missing", "error"), ("unit_gap", "error"), ("unit_removed", "warning"),
                             ("unit_structure", "warning")}
    rule = issues(report, "rule_unit_missing")[0]
    assert rule["feature"] == {"HJZHGKDYBM": "ZH15078120005"}
    assert rule["detail"]["files"] == ["units/ZH15078120005.yaml"] and "units/ZH15078120005.yaml" in rule["message"]
    assert rule["location"] is not None
    assert sum(g["detail"]["area_m2"] for g in issues(report, "unit_gap")) == pytest.approx(area, abs=1.0)
    assert issues(report, "unit_structure")[0]["detail"]["counts"] == {"priority": 5, "key": 9, "general": 0}
    assert report["units"] == {"count": 14, "priority": 5, "key": 9, "general": 0}
    assert [r["feature"] for r in issues(report, "unit_removed")] == [{"HJZHGKDYBM": "ZH15078120005"}]


# ---------------------------------------------------------------------------------------------------------------
# Red line


def _shrunk(ref, row: int, metres: float):
    red = ref["red_line"].to_crs(4548)
    old = red.geometry[row]
    red.loc[row, "geometry"] = MultiPolygon(shapely.get_parts(old.buffer(-metres)).tolist())
    return red.to_crs(4490), old.area - red.geometry[row].area


def test_a_shrunken_red_line_patch_is_a_decrease_error(ref):
    red, lost = _shrunk(ref, 10, 20.0)
    report = run(ref, red_line=red)
    assert codes(report) == {("red_line_decrease", "error"), ("red_line_patch_reduced", "warning")}
    assert report["ok"] is False
    rl = report["red_line"]
    assert rl["decrease"] is True and rl["approval_ref"] is None
    assert rl["change_m2"] == pytest.approx(-lost, abs=1.0)
    error = issues(report, "red_line_decrease")[0]
    assert error["layer"] == "red_line" and "面积不减少" in error["message"]
    patch = issues(report, "red_line_patch_reduced")[0]
    assert patch["feature"] == {"patch_id": ref["red_line"].patch_id[10], "row": 10}
    assert patch["detail"]["area_m2"] == pytest.approx(lost, abs=1.0)
    assert geom_m(patch).area == pytest.approx(lost, rel=0.02)  # the embedded ring may be simplified


def test_an_approved_decrease_is_a_warning_that_records_the_approval(ref):
    red, lost = _shrunk(ref, 10, 20.0)
    report = run(ref, approval_ref="内政字〔2026〕15号", red_line=red)
    assert report["ok"] is True
    assert codes(report) == {("red_line_decrease_approved", "warning"), ("red_line_patch_reduced", "warning")}
    assert report["red_line"]["approval_ref"] == "内政字〔2026〕15号" and report["red_line"]["decrease"] is True
    warning = issues(report, "red_line_decrease_approved")[0]
    assert warning["detail"]["approval_ref"] == "内政字〔2026〕15号" and "内政字〔2026〕15号" in warning["message"]


def test_overlapping_red_line_patches(ref):
    red = ref["red_line"].to_crs(4548)
    copy = red.iloc[[20]].copy()
    copy["patch_id"] = "HX1507819999"
    copy["geometry"] = copy.geometry.translate(5, 0)
    expected = copy.geometry.iloc[0].intersection(red.geometry[20]).area
    report = run(ref, red_line=pd_concat([red, copy]).pipe(gpd.GeoDataFrame, crs=4548).to_crs(4490))
    assert ("red_line_overlap", "error") in codes(report)
    assert ("red_line_decrease", "error") not in codes(report)
    issue = issues(report, "red_line_overlap")[0]
    pair = {issue["feature"]["patch_id"], issue["detail"]["other_feature"]["patch_id"]}
    assert pair == {red.patch_id[20], "HX1507819999"}
    assert issue["detail"]["area_m2"] == pytest.approx(expected, abs=1.0)
    assert report["diff"]["red_line"]["added"][0]["key"] == {"patch_id": "HX1507819999"}


def test_a_red_line_patch_outside_priority_units(ref):
    units = units_m(ref)
    city = units.geometry[row_of(units, "ZH15078120001")].buffer(-300).point_on_surface()
    patch = Polygon([(city.x, city.y), (city.x + 400, city.y), (city.x + 400, city.y + 300), (city.x, city.y + 300)])
    red = _patch(ref, _to_4490(MultiPolygon([patch])))
    report = run(ref, red_line=red)
    assert codes(report) == {("red_line_outside_priority", "warning")}
    issue = issues(report, "red_line_outside_priority")[0]
    assert issue["feature"]["patch_id"] == "HX1507819999"
    assert issue["detail"]["area_m2"] == pytest.approx(120_000, abs=1.0)
    assert report["red_line"]["change_m2"] == pytest.approx(120_000, abs=1.0) and report["ok"] is True


# ---------------------------------------------------------------------------------------------------------------
# The GeoPackage of issues


def test_issues_as_a_geopackage(ref, tmp_path):
    units = units_m(ref)
    row = row_of(units, "ZH15078120004")
    units.loc[row, "geometry"] = affinity.translate(units.geometry[row], 120, 0)
    units.loc[row_of(units, "ZH15078120003"), "ZHGKDYFL"] = "4"
    report = run(ref, control_units=units.to_crs(4490))
    path = tmp_path / "issues.gpkg"
    path.write_bytes(b"stale")
    report_to_gpkg(report, path)
    assert {"validation_issues", "validation_issue_list", "validation_summary"} <= set(list_layers(path))
    spatial = pyogrio.read_dataframe(path, layer="validation_issues")
    assert spatial.crs.to_epsg() == 4490
    assert list(spatial.columns) == ["n", "code", "severity", "layer", "feature", "message", "geometry"]
    everything = report["errors"] + report["warnings"]
    placed = [i for i in everything if i["location"] or i["geometry"]]
    assert len(spatial) == len(placed)
    kinds = dict(zip(spatial.code, spatial.geometry.geom_type))
    assert kinds["unit_overlap"] in ("Polygon", "MultiPolygon") and kinds["invalid_enum_value"] == "Point"
    assert json.loads(spatial.feature[spatial.code == "invalid_enum_value"].iloc[0])["HJZHGKDYBM"] == "ZH15078120003"
    listing = pyogrio.read_dataframe(path, layer="validation_issue_list", read_geometry=False)
    assert len(listing) == len(everything)
    assert set(listing.code) == {i["code"] for i in everything}
    table = pyogrio.read_dataframe(path, layer="validation_summary", read_geometry=False)
    summary = dict(table[["key", "value"]].values)
    assert summary["ok"] == "false" and summary["errors"] == str(len(report["errors"]))


def test_a_clean_report_writes_an_empty_issue_layer(ref, tmp_path):
    report = run(ref, lakes=ref["lakes"].copy())
    path = tmp_path / "clean.gpkg"
    report_to_gpkg(report, path)
    assert len(pyogrio.read_dataframe(path, layer="validation_issues")) == 0
    assert pyogrio.read_info(path, layer="validation_issues")["crs"] == "EPSG:4490"


# ---------------------------------------------------------------------------------------------------------------
# First upload, access list


def test_a_first_upload_without_a_current_version_or_territory(ref):
    report = validate_draft({"control_units": ref["control_units"], "red_line": ref["red_line"]}, None,
                            replaced=["control_units", "red_line"])
    json.dumps(report, allow_nan=False)
    assert codes(report) == {("territory_missing", "warning")}
    assert report["ok"] is True and report["territory"] is None
    assert report["red_line"]["before_m2"] is None and report["red_line"]["decrease"] is False
    assert report["red_line"]["after_m2"] == pytest.approx(71.39e6, abs=5)
    assert len(report["diff"]["control_units"]["added"]) == 15
    assert report["layers"]["control_units"]["features_before"] == 0


def test_a_clause_binding_the_dataset_lacks_is_reported(ref, rules):
    import dataclasses

    from app.domain.rules import Binding

    bad = dataclasses.replace(rules.clauses[0], id="CW-TEST-99", binding=Binding(layer="no_such_layer"))
    broken = dataclasses.replace(rules, clauses=(*rules.clauses, bad))
    report = run(ref, broken, control_units=ref["control_units"].copy())
    assert codes(report) == {("rule_binding_invalid", "error")}
    issue = issues(report, "rule_binding_invalid")[0]
    assert "CW-TEST-99" in issue["message"] and "no_such_layer" in issue["message"]


def test_issues_of_one_kind_are_capped_with_a_count_of_the_rest(ref):
    red = ref["red_line"].copy()
    red["function"] = "forest"  # every one of the 172 patches
    report = run(ref, red_line=red)
    enum = issues(report, "invalid_enum_value")
    assert len(enum) == 101 and enum[-1]["feature"] is None
    assert enum[-1]["detail"] == {"suppressed": len(red) - 100} and str(len(red) - 100) in enum[-1]["message"]
    assert enum[0]["detail"]["allowed"] == list(LAYERS["red_line"].enums["function"])


def test_a_spatial_check_that_geos_cannot_finish_is_an_error_not_a_crash(ref, monkeypatch):
    def broken(self):
        raise shapely.errors.GEOSException("TopologyException: side location conflict at 117.5 49.6")

    monkeypatch.setattr(_Validation, "check_unit_partition", broken)
    report = run(ref, control_units=ref["control_units"].copy())
    assert codes(report) == {("check_failed", "error")}
    assert issues(report, "check_failed")[0]["layer"] == "control_units"
