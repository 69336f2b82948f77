"""GET /v1/units, GET /v1/units/{code} — control units with their attributes and clauses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from shapely.geometry import mapping

from app.api.deps import get_catalog
from app.domain.assessment import EFFECT_ZH
from app.domain.catalog import Catalog
from app.domain.rules import dimension_order
from app.domain.schema import DIMENSION_NAMES_ZH, UNIT_TYPE_NAMES_ZH
from app.errors import NotFound
from app.models.common import ErrorBody, UnitDetail, UnitList, UnitSummary

router = APIRouter(prefix="/v1/units", tags=["units"])


def _summary(catalog: Catalog, row: int) -> dict:
    rec = catalog.units.records[row]
    kind = catalog.unit_type(row)
    area = float(catalog.units.metric[row].area)
    return {"code": rec["HJZHGKDYBM"], "name": rec["HJZHGKDYMC"], "type": kind, "type_zh": UNIT_TYPE_NAMES_ZH[kind],
            "category": rec["DYLB"], "county": rec["AREA"], "county_code": rec["XZQDM"],
            "area_m2": round(area, 2), "area_km2": round(area / 1e6, 4)}


@router.get("", response_model=UnitList, summary="All control units")
def list_units(catalog: Annotated[Catalog, Depends(get_catalog)]) -> UnitList:
    rows = sorted(range(len(catalog.units.records)), key=lambda r: catalog.units.records[r]["HJZHGKDYBM"])
    return UnitList(dataset_version=catalog.dataset_version, units=[UnitSummary(**_summary(catalog, r)) for r in rows])


@router.get("/{code}", response_model=UnitDetail, responses={404: {"model": ErrorBody}}, summary="One control unit")
def get_unit(
    code: str,
    catalog: Annotated[Catalog, Depends(get_catalog)],
    geometry: Annotated[bool, Query(description="Include the unit's GeoJSON geometry (EPSG:4490)")] = False,
) -> UnitDetail:
    row = catalog.unit_row.get(code)
    if row is None:
        raise NotFound(f"找不到编码为 {code[:40]} 的环境管控单元", detail=f"unit {code[:40]} not found")
    clauses = [
        {"id": c.id, "dimension": c.dimension, "dimension_zh": DIMENSION_NAMES_ZH[c.dimension], "effect": c.effect,
         "effect_zh": EFFECT_ZH[c.effect], "text": c.text, "source": c.source, "illustrative": c.illustrative,
         "conditions": list(c.conditions)}
        for c in sorted(catalog.rules.for_unit(code), key=dimension_order)
    ]
    return UnitDetail(**_summary(catalog, row), attributes=catalog.units.records[row], clauses=clauses,
                      geometry=mapping(catalog.units.geoms[row]) if geometry else None)
