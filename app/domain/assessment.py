"""Site assessment: which units and layers a site touches, how much, and which clauses apply with what verdict.

`assess` takes a validated site geometry (EPSG:4490), the project facts and a catalog, and returns a plain,
JSON-safe document: the same site, facts and data always give the same document apart from `id` and
`created_at`. Areas and distances are computed in Gauss-Krüger CM 117E (EPSG:4548).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

import numpy as np
import shapely
from shapely.geometry import mapping

from app.domain.catalog import Catalog
from app.domain.rules import Clause, evaluate, resolve_facts
from app.domain.schema import (
    DIMENSION_NAMES_ZH,
    DIMENSIONS,
    LAND_COVER_CLASSES,
    LAYERS,
    MU_PER_M2,
    PROVENANCE_ILLUSTRATIVE_ZH,
    UNIT_TYPE_NAMES_ZH,
)
from app.domain.spatial import MIN_OVERLAP_M2
from app.geo.crs import to_metric

VERDICT_ZH = {
    "prohibited": "禁止",
    "conditional": "有条件准入",
    "permitted": "准入",
    "needs_review": "需补充信息后复核",
    "outside_jurisdiction": "不在管辖范围内",
}
EFFECT_ZH = {"prohibit": "禁止", "conditional": "限制（有条件准入）", "encourage": "鼓励", "note": "提示"}
# Which attributes name a feature of each layer in findings and reasons.
FEATURE_LABEL = {
    "admin_boundary": ("county_name",),
    "red_line": ("patch_id", "function_name"),
    "nature_reserve": ("name", "zone_name"),
    "wetland_parks": ("name",),
    "drinking_water": ("source_name", "zone_name"),
    "basic_grassland": ("name",),
    "basic_farmland": ("name",),
    "urban_boundary": ("name",),
    "no_burn_zone": ("name",),
    "mining_areas": ("name",),
    "water_env_zones": ("catchment",),
    "air_env_zones": ("zone_name",),
    "rivers": ("name",),
    "lakes": ("name",),
}
ELEMENT_LAYERS = [n for n in LAYERS if n not in ("control_units", "red_line", "admin_boundary", "rivers")]

def to_metric_geometry(geom):
    """EPSG:4490 geometry → EPSG:4548 (through the one CRS module)."""
    return shapely.transform(geom, lambda xy: np.column_stack(to_metric(xy[:, 0], xy[:, 1])))


def areas(m2: float) -> dict[str, float]:
    """An area in m², hectares and 亩, rounded for reporting."""
    return {"m2": round(m2, 2), "ha": round(m2 / 10_000, 4), "mu": round(m2 * MU_PER_M2, 3)}


@dataclass
class Context:
    """What the site touches, for binding clauses: per layer the touched rows with overlap areas."""

    is_point: bool
    site_m2: float
    touched: dict[str, list[tuple[int, float, bool]]] = field(default_factory=dict)  # layer → (row, m², edge only)
    land_cover: dict[str, float] = field(default_factory=dict)

    @property
    def min_overlap(self) -> float:
        """Overlap below which a polygon only touches a feature's edge (relative for sites of a few cm²)."""
        return min(MIN_OVERLAP_M2, self.site_m2 * 1e-3)

    def occupied(self, layer: str) -> list[tuple[int, float, bool]]:
        """Touches that occupy the feature: a point covered by it, or a polygon overlapping it by area."""
        return [t for t in self.touched.get(layer, []) if self.is_point or t[1] >= self.min_overlap]


def assess(site, project: Mapping[str, Any], catalog: Catalog, *, buffer_m: float = 500.0,
           input_crs: str = "EPSG:4490", warnings: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Assess one site (EPSG:4490, validated) for one project against one catalog."""
    warnings = list(warnings or [])
    metric_full = to_metric_geometry(site)
    is_point = site.geom_type == "Point"
    if is_point:
        inside = metric_full if catalog.territory.covers(metric_full) else shapely.Point()
    elif catalog.territory.contains(metric_full):  # the common case: no overlay with the whole territory needed
        inside = metric_full
    else:
        inside = shapely.intersection(metric_full, catalog.territory)
        inside = shapely.get_parts(inside)
        inside = shapely.union_all([g for g in inside if g.geom_type == "Polygon"]) if len(inside) else shapely.Polygon()
    site_m2 = 0.0 if is_point else float(metric_full.area)
    inside_m2 = 0.0 if is_point else float(inside.area)
    facts = resolve_facts(project, catalog.rules.facts)
    doc: dict[str, Any] = {
        "id": new_assessment_id(),
        "created_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "dataset_version": catalog.dataset_version,
        "dataset_hash": catalog.content_hash,
        "dataset_illustrative": catalog.illustrative,
        "dataset_provenance": catalog.info.get("provenance_zh", "") if catalog.illustrative else catalog.info.get("provenance", ""),
        "rules_version": catalog.rules.version,
        "site": _site_summary(site, metric_full, site_m2, inside_m2, input_crs),
        "project": dict(project),
        "proximity_buffer_m": buffer_m,
    }
    if inside.is_empty:
        warnings.append({"code": "outside_territory",
                         "message": "项目用地不在满洲里市（含扎赉诺尔区）管辖范围内，不适用本市生态环境分区管控要求"})
        nearest = catalog.territory.boundary.distance(metric_full)
        doc["site"]["distance_to_territory_m"] = round(float(nearest), 2)
        doc.update(verdict="outside_jurisdiction", verdict_zh=VERDICT_ZH["outside_jurisdiction"], units=[],
                   red_line={"inside": False, "overlap_m2": 0.0, "overlap_ha": 0.0, "overlap_mu": 0.0, "share": 0.0,
                             "distance_m": None, "nearest_patch": None, "groups": []},
                   layers=[], proximity=[], land_cover=[], clauses=[], clauses_by_dimension={d: [] for d in DIMENSIONS},
                   conditions=[], undecided=[], missing_facts=[], warnings=warnings)
        return doc
    if not is_point and site_m2 - inside_m2 > max(MIN_OVERLAP_M2, site_m2 * 1e-9):
        outside = site_m2 - inside_m2
        warnings.append({"code": "partly_outside",
                         "message": f"项目用地有 {outside:,.2f} m²（{outside * MU_PER_M2:,.2f} 亩）位于本市管辖范围外，"
                                    f"仅对范围内的 {inside_m2:,.2f} m² 进行分析"})
    ctx = Context(is_point=is_point, site_m2=inside_m2)
    for name, layer in catalog.layers.items():
        ctx.touched[name] = [(t.row, t.overlap_m2, t.boundary_only) for t in layer.index.touches(inside)]
    ctx.land_cover = catalog.land_cover.composition(inside)
    doc["units"] = _units(catalog, ctx, warnings)
    doc["red_line"] = _red_line(catalog, ctx, inside)
    doc["layers"] = _layers(catalog, ctx)
    doc["proximity"] = _proximity(catalog, inside, buffer_m, warnings)
    doc["land_cover"] = [
        {"class": key, "name_zh": next(n for k, n, _ in LAND_COVER_CLASSES.values() if k == key),
         "share": round(share, 4), "area_m2": round(share * inside_m2, 2)}
        for key, share in sorted(ctx.land_cover.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    given = {k for k, v in project.items() if v is not None}
    applied, undecided = _clauses(catalog, ctx, facts, given)
    doc["clauses"] = applied
    doc["clauses_by_dimension"] = {d: [c["id"] for c in applied if c["dimension"] == d] for d in DIMENSIONS}
    doc["undecided"] = undecided
    doc["conditions"] = [{"clause": c["id"], "condition": text} for c in applied if c["effect"] == "conditional"
                         for text in c["conditions"]]
    verdict, missing = decide_verdict(applied, undecided)
    doc["missing_facts"] = [
        {"fact": name, "label_zh": catalog.rules.facts[name].label_zh if name in catalog.rules.facts else name,
         "clauses": sorted(u["id"] for u in undecided if name in u["missing_facts"])}
        for name in sorted(missing)
    ]
    if catalog.illustrative:
        warnings.append({"code": "illustrative_data", "message": f"本结果基于{PROVENANCE_ILLUSTRATIVE_ZH}，仅供演示与测试"})
    doc["verdict"] = verdict
    doc["verdict_zh"] = VERDICT_ZH[verdict]
    doc["warnings"] = warnings
    return doc


def new_assessment_id() -> str:
    """A short, unguessable, date-prefixed id an officer can read off paper: e.g. A20261128-7KQ2M9XD."""
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    token = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"A{datetime.now(timezone.utc):%Y%m%d}-{token}"


def _site_summary(site, metric, site_m2: float, inside_m2: float, input_crs: str) -> dict[str, Any]:
    centroid = site.centroid if not site.is_empty else site
    return {
        "geometry": mapping(site),
        "geometry_type": site.geom_type,
        "input_crs": input_crs,
        "vertex_count": int(shapely.get_num_coordinates(site)),
        "area": areas(site_m2),
        "inside_area": areas(inside_m2),
        "centroid": [round(centroid.x, 8), round(centroid.y, 8)],
        "centroid_metric": [round(metric.centroid.x, 3), round(metric.centroid.y, 3)],
    }


def _share(ctx: Context, overlap: float) -> float:
    if ctx.is_point:
        return 1.0
    return round(overlap / ctx.site_m2, 6) if ctx.site_m2 > 0 else 0.0


def _label(layer: str, record: Mapping[str, Any]) -> str:
    return " ".join(str(record[f]) for f in FEATURE_LABEL.get(layer, ()) if record.get(f) not in (None, ""))


def _units(catalog: Catalog, ctx: Context, warnings: list[dict[str, str]]) -> list[dict[str, Any]]:
    layer = catalog.units
    out = []
    for row, overlap, edge in ctx.touched["control_units"]:
        if not ctx.is_point and overlap < ctx.min_overlap:
            continue
        rec = layer.records[row]
        kind = catalog.unit_type(row)
        out.append({
            "code": rec["HJZHGKDYBM"], "name": rec["HJZHGKDYMC"], "type": kind, "type_zh": UNIT_TYPE_NAMES_ZH[kind],
            "category": rec["DYLB"], "county": rec["AREA"], "overlap_m2": round(overlap, 2),
            "overlap_ha": round(overlap / 10_000, 4), "overlap_mu": round(overlap * MU_PER_M2, 3),
            "share": _share(ctx, overlap), "on_boundary": bool(ctx.is_point and edge),
        })
    out.sort(key=lambda u: (-u["overlap_m2"], u["code"]))
    if ctx.is_point and len(out) > 1:
        names = "、".join(f"{u['code']}（{u['name']}）" for u in out)
        warnings.append({"code": "on_unit_boundary", "message": f"该点位于环境管控单元交界处，同时属于：{names}，各单元管控要求均适用"})
    return out


def _red_line(catalog: Catalog, ctx: Context, inside) -> dict[str, Any]:
    layer = catalog.layers["red_line"]
    occupied = ctx.occupied("red_line")
    total = sum(t[1] for t in occupied)
    groups: dict[str, dict[str, Any]] = {}
    for row, overlap, _ in occupied:
        rec = layer.records[row]
        g = groups.setdefault(rec["function"], {"function": rec["function"], "function_name": rec["function_name"],
                                                "overlap_m2": 0.0, "patches": []})
        g["overlap_m2"] += overlap
        g["patches"].append(rec["patch_id"])
    for g in groups.values():
        g["overlap_m2"] = round(g["overlap_m2"], 2)
        g["overlap_ha"] = round(g["overlap_m2"] / 10_000, 4)
        g["overlap_mu"] = round(g["overlap_m2"] * MU_PER_M2, 3)
        g["share"] = _share(ctx, g["overlap_m2"])
        g["patches"].sort()
    nearest = layer.index.distance(inside)
    return {
        "inside": bool(occupied),
        "overlap_m2": round(total, 2), "overlap_ha": round(total / 10_000, 4), "overlap_mu": round(total * MU_PER_M2, 3),
        "share": _share(ctx, total) if occupied else 0.0,
        "distance_m": round(nearest[0], 2) if nearest else None,
        "nearest_patch": layer.records[nearest[1]]["patch_id"] if nearest else None,
        "groups": sorted(groups.values(), key=lambda g: g["function"]),
    }


def _layers(catalog: Catalog, ctx: Context) -> list[dict[str, Any]]:
    out = []
    for name in ELEMENT_LAYERS:
        layer = catalog.layers.get(name)
        if layer is None:
            continue
        features = []
        for row, overlap, edge in ctx.occupied(name):
            rec = layer.records[row]
            features.append({
                "label": _label(name, rec), "attributes": rec, "overlap_m2": round(overlap, 2),
                "overlap_ha": round(overlap / 10_000, 4), "overlap_mu": round(overlap * MU_PER_M2, 3),
                "share": _share(ctx, overlap),
            })
        if features:
            features.sort(key=lambda f: (-f["overlap_m2"], f["label"]))
            out.append({"layer": name, "title_zh": layer.spec.title_zh, "features": features})
    return out


def _proximity(catalog: Catalog, inside, buffer_m: float, warnings: list[dict[str, str]]) -> list[dict[str, Any]]:
    out = []
    for name, layer in catalog.layers.items():
        if not layer.spec.protected:
            continue
        nearest = layer.index.distance(inside)
        if nearest is None:
            continue
        distance, row = nearest
        if distance > buffer_m:
            continue
        label = _label(name, layer.records[row])
        out.append({"layer": name, "title_zh": layer.spec.title_zh, "feature": label, "distance_m": round(distance, 2)})
        if distance > 0:
            warnings.append({"code": "near_protected_layer",
                             "message": f"项目用地距{layer.spec.title_zh}（{label}）{distance:,.1f} m，在 {buffer_m:g} m 范围内，请关注影响"})
    out.sort(key=lambda p: (p["distance_m"], p["layer"]))
    return out


def _binding(clause: Clause, catalog: Catalog, ctx: Context) -> tuple[bool, str, list[str]]:
    """Whether the clause's place applies to the site, with a Chinese reason and the evidence (codes, ids)."""
    units = catalog.units
    if clause.unit:
        rows = [t for t in ctx.occupied("control_units") if units.records[t[0]]["HJZHGKDYBM"] == clause.unit]
        if not rows:
            return False, "", []
        rec = units.records[rows[0][0]]
        where = "位于" if ctx.is_point else f"占用 {rows[0][1]:,.2f} m²"
        return True, f"项目用地{where}环境管控单元 {rec['HJZHGKDYBM']}（{rec['HJZHGKDYMC']}）", [rec["HJZHGKDYBM"]]
    b = clause.binding
    if b is None:
        return True, "全市通用要求，适用于本市管辖范围内的项目", []
    if b.layer:
        layer = catalog.layers.get(b.layer)
        if layer is None:
            return False, "", []
        hits = []
        for row, overlap, _ in ctx.occupied(b.layer):
            rec = layer.records[row]
            if all(str(rec.get(f)) in {str(v) for v in vals} for f, vals in b.where.items()):
                hits.append((row, overlap, _label(b.layer, rec)))
        if not hits:
            return False, "", []
        labels = [h[2] for h in hits]
        total = sum(h[1] for h in hits)
        where = "位于" if ctx.is_point else f"占用 {total:,.2f} m²（{total * MU_PER_M2:,.2f} 亩）"
        return True, f"项目用地{where}{layer.spec.title_zh}（{'、'.join(labels[:6])}{' 等' if len(labels) > 6 else ''}）", labels
    if b.land_cover:
        share = sum(ctx.land_cover.get(c, 0.0) for c in b.land_cover)
        if share <= 0 or share < b.min_share:
            return False, "", []
        names = "、".join(next(n for k, n, _ in LAND_COVER_CLASSES.values() if k == c) for c in b.land_cover)
        return True, f"项目用地土地覆被中{names}占 {share:.1%}", list(b.land_cover)
    if b.unit_type or b.units:
        hits = []
        for row, _, _ in ctx.occupied("control_units"):
            rec = units.records[row]
            if (b.unit_type and catalog.unit_type(row) == b.unit_type) or rec["HJZHGKDYBM"] in b.units:
                hits.append(rec["HJZHGKDYBM"])
        if not hits:
            return False, "", []
        kind = UNIT_TYPE_NAMES_ZH.get(b.unit_type or "", "环境管控单元")
        return True, f"项目用地涉及{kind}（{'、'.join(hits)}）", hits
    return False, "", []


def _fact_reason(used: list[dict[str, Any]], catalog: Catalog) -> str:
    parts = []
    for u in used:
        fact = catalog.rules.facts.get(u["fact"])
        label = fact.label_zh if fact else u["fact"]
        value = u["value"]
        if fact and fact.type == "enum":
            value = fact.values.get(str(value), value)
        elif isinstance(value, bool):
            value = "是" if value else "否"
        if u["fact"] == "industry_code":
            name = catalog.rules.industries.get(str(u["expected"]), "") if isinstance(u["expected"], str) else ""
            parts.append(f"{label}为 {value}{'（属 ' + str(u['expected']) + ' ' + name + '）' if name else ''}")
        else:
            parts.append(f"{label}：{value}")
    return "；".join(dict.fromkeys(parts))


def _clauses(catalog: Catalog, ctx: Context, facts: Mapping[str, Any], given: set[str]) -> tuple[list[dict], list[dict]]:
    applied, undecided = [], []
    codes = [catalog.units.records[t[0]]["HJZHGKDYBM"] for t in ctx.occupied("control_units")]
    for clause in catalog.rules.candidates(codes):  # a unit's clauses bind only sites occupying that unit
        bound, place_reason, evidence = _binding(clause, catalog, ctx)
        if not bound:
            continue
        outcome = evaluate(clause.condition, facts)
        if outcome.value is False:
            continue
        entry = {
            "id": clause.id, "dimension": clause.dimension, "dimension_zh": DIMENSION_NAMES_ZH[clause.dimension],
            "effect": clause.effect, "effect_zh": EFFECT_ZH[clause.effect], "text": clause.text,
            "source": clause.source, "source_document": clause.source_document, "source_section": clause.source_section,
            "illustrative": clause.illustrative, "unit": clause.unit, "layer": clause.binding.layer if clause.binding else None,
            "conditions": list(clause.conditions), "evidence": evidence,
        }
        if outcome.value is None:
            entry["missing_facts"] = sorted(outcome.missing)
            entry["reason"] = place_reason + "；是否适用取决于未提供的项目信息：" + "、".join(
                catalog.rules.facts[m].label_zh if m in catalog.rules.facts else m for m in sorted(outcome.missing))
            undecided.append(entry)
            continue
        fact_reason = _fact_reason(outcome.used, catalog)
        defaults = [u["fact"] for u in outcome.used if u["fact"] not in given]
        entry["reason"] = place_reason + (f"；{fact_reason}" if fact_reason else "")
        if defaults:
            entry["reason"] += "（" + "；".join(catalog.rules.facts[d].default_reason_zh for d in dict.fromkeys(defaults)
                                             if catalog.rules.facts[d].default_reason_zh) + "）"
        entry["facts_used"] = outcome.used
        applied.append(entry)
    return applied, undecided


def decide_verdict(applied: list[dict], undecided: list[dict]) -> tuple[str, set[str]]:
    """The verdict from the applied and undecided clauses, and the facts that would decide the undecided ones."""
    missing = {m for u in undecided if u["effect"] in ("prohibit", "conditional") for m in u["missing_facts"]}
    if any(c["effect"] == "prohibit" for c in applied):
        return "prohibited", missing
    has_conditions = any(c["effect"] == "conditional" for c in applied)
    if any(u["effect"] == "prohibit" for u in undecided):
        return "needs_review", missing
    if not has_conditions and any(u["effect"] == "conditional" for u in undecided):
        return "needs_review", missing
    return ("conditional" if has_conditions else "permitted"), missing
