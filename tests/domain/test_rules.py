"""The rule base loads, validates against its schema and the dataset, and evaluates with three-valued logic."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from app.domain.rules import check_against_dataset, evaluate, load_rule_base, resolve_facts
from app.domain.schema import DIMENSIONS
from app.errors import RuleBaseError

ZONES = Path(__file__).resolve().parents[2] / "zones"


@pytest.fixture(scope="module")
def rules():
    return load_rule_base(ZONES)


def test_reference_rule_base_loads_and_binds_to_the_reference_dataset(rules, catalog):
    assert len(rules.clauses) >= 150
    check_against_dataset(rules, set(catalog.unit_row))
    assert len({c.id for c in rules.clauses}) == len(rules.clauses)


def test_every_unit_has_clauses_in_all_four_dimensions(rules, catalog):
    for code in catalog.unit_row:
        dims = {c.dimension for c in rules.for_unit(code)}
        assert dims == set(DIMENSIONS), code


def test_every_clause_has_chinese_text_and_a_source(rules):
    for c in rules.clauses:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in c.text), c.id
        assert c.source_document and c.source_section, c.id
        if c.effect == "conditional":
            assert c.conditions, c.id


def test_citywide_clauses_cover_every_rule_kind(rules):
    layers = {c.binding.layer for c in rules.clauses if c.binding and c.binding.layer}
    assert {"red_line", "nature_reserve", "wetland_parks", "drinking_water", "basic_grassland", "basic_farmland",
            "no_burn_zone", "mining_areas", "water_env_zones", "urban_boundary"} <= layers
    assert any(c.binding and "grassland" in c.binding.land_cover for c in rules.clauses)


def test_rules_version_is_a_content_hash(tmp_path, rules):
    copy = tmp_path / "zones"
    shutil.copytree(ZONES, copy)
    assert load_rule_base(copy).version == rules.version
    path = copy / "units" / "ZH15078120001.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["clauses"][0]["text"] += "（修订）"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert load_rule_base(copy).version != rules.version


def _broken(tmp_path: Path, mutate) -> Path:
    copy = tmp_path / "zones"
    shutil.copytree(ZONES, copy)
    path = copy / "citywide.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    mutate(doc["clauses"])
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return copy


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda cs: cs[0].update(when={"fact": "wind_speed", "eq": True}), ["wind_speed"]),
        (lambda cs: cs[0].update(when={"fact": "boiler_fuel", "eq": "uranium"}), ["boiler_fuel", "uranium"]),
        (lambda cs: cs[0].update(when={"industry": ["9999"]}), ["9999"]),
        (lambda cs: cs[0].update(dimension="layout"), ["dimension", "layout"]),
        (lambda cs: cs[0].pop("source"), ["source"]),
        (lambda cs: cs[1].update(id=cs[0]["id"]), ["重复"]),
        (lambda cs: cs[0].update(binds={"land_cover": {"classes": ["tundra"]}}), ["tundra"]),
    ],
    ids=["unknown-fact", "bad-enum-value", "unknown-industry", "bad-dimension", "missing-source", "duplicate-id",
         "unknown-land-cover"],
)
def test_a_bad_clause_is_a_load_error_naming_file_and_clause(tmp_path, mutate, words):
    copy = _broken(tmp_path, mutate)
    with pytest.raises(RuleBaseError) as err:
        load_rule_base(copy)
    message = err.value.message_zh
    assert "citywide.yaml" in message
    for word in words:
        assert word in message or word in err.value.detail


@pytest.mark.parametrize(
    "binds, words",
    [
        ({"layer": "volcanoes"}, ["volcanoes"]),
        ({"layer": "drinking_water", "where": {"zone": "level9"}}, ["level9"]),
        ({"layer": "drinking_water", "where": {"depth": "deep"}}, ["depth"]),
        ({"units": ["ZH15078129999"]}, ["ZH15078129999"]),
    ],
    ids=["unknown-layer", "unknown-value", "unknown-field", "unknown-unit"],
)
def test_a_clause_bound_to_something_missing_is_refused(tmp_path, catalog, binds, words):
    copy = _broken(tmp_path, lambda cs: cs[0].update(binds=binds))
    with pytest.raises(RuleBaseError) as err:
        check_against_dataset(load_rule_base(copy), set(catalog.unit_row))
    first_id = yaml.safe_load((ZONES / "citywide.yaml").read_text(encoding="utf-8"))["clauses"][0]["id"]
    assert "citywide.yaml" in err.value.message_zh and first_id in err.value.message_zh
    for word in words:
        assert word in err.value.message_zh


def test_a_unit_file_for_a_unit_the_dataset_lacks_is_refused(tmp_path, catalog):
    copy = tmp_path / "zones"
    shutil.copytree(ZONES, copy)
    src = copy / "units" / "ZH15078120001.yaml"
    doc = yaml.safe_load(src.read_text(encoding="utf-8"))
    doc["unit"] = "ZH15078120099"
    for c in doc["clauses"]:
        c["id"] = c["id"].replace("ZH15078120001", "ZH15078120099")
    (copy / "units" / "ZH15078120099.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RuleBaseError) as err:
        check_against_dataset(load_rule_base(copy), set(catalog.unit_row))
    assert "ZH15078120099" in err.value.message_zh and "units/ZH15078120099.yaml" in err.value.message_zh


def test_three_valued_evaluation():
    cond = {"all": [{"industry": ["44"]}, {"fact": "boiler_capacity_tph", "lte": 10}]}
    assert evaluate(cond, {"industry_code": "4430", "boiler_capacity_tph": 8}).value is True
    assert evaluate(cond, {"industry_code": "4430", "boiler_capacity_tph": 12}).value is False
    unknown = evaluate(cond, {"industry_code": "4430"})
    assert unknown.value is None and unknown.missing == {"boiler_capacity_tph"}
    # A false conjunct decides the whole regardless of the unknown one.
    assert evaluate(cond, {"industry_code": "2610"}).value is False
    assert evaluate({"any": [{"industry": ["44"]}, {"fact": "coal_use", "eq": True}]}, {"coal_use": True}).value is True
    assert evaluate({"not": {"fact": "coal_use", "eq": True}}, {}).value is None
    assert evaluate(None, {}).value is True


def test_defaults_apply_only_to_facts_the_applicant_must_declare(rules):
    values = resolve_facts({"coal_use": True, "boiler_fuel": None}, rules.facts)
    assert values["red_line_activity"] == "none" and values["national_major_project"] is False
    assert "boiler_fuel" not in values and "wastewater_discharge" not in values


def test_a_coarser_industry_code_leaves_a_finer_clause_undecided():
    cond = {"industry": ["4411", "4412"]}
    assert evaluate(cond, {"industry_code": "4411"}).value is True
    assert evaluate(cond, {"industry_code": "4415"}).value is False
    coarse = evaluate(cond, {"industry_code": "44"})  # 电力、热力生产和供应业: may or may not be thermal power
    assert coarse.value is None and coarse.missing == {"industry_code"}
    assert evaluate(cond, {"industry_code": "26"}).value is False


def test_candidates_are_the_city_wide_clauses_and_the_units_own_in_order(catalog):
    rules = catalog.rules
    code = catalog.units.records[3]["HJZHGKDYBM"]
    picked = rules.candidates([code, code])
    assert [c.id for c in picked] == [c.id for c in rules.clauses if c.unit in (None, code)]
    assert {c.unit for c in picked} == {None, code}
    assert [c.id for c in rules.candidates([])] == [c.id for c in rules.clauses if c.unit is None]
