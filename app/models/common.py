"""Response models of the lookup, units, dataset and health endpoints, and the error body."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code")
    message: str = Field(description="What is wrong and what to change, in Chinese")
    context: dict[str, Any] = Field(default_factory=dict, description="Structured facts: field, vertex, location…")


class ErrorBody(BaseModel):
    error: ErrorDetail


class LookupUnit(BaseModel):
    code: str
    name: str
    type: Literal["priority", "key", "general"]
    on_boundary: bool = False


class LookupRedLine(BaseModel):
    inside: bool
    distance_m: float | None
    nearest_patch: str | None = None


class Lookup(BaseModel):
    """The fast point answer."""

    dataset_version: str
    lon: float = Field(description="CGCS2000 longitude of the point as understood")
    lat: float = Field(description="CGCS2000 latitude of the point as understood")
    inside_territory: bool
    units: list[LookupUnit]
    red_line: LookupRedLine


class ClauseOut(BaseModel):
    id: str
    dimension: str
    dimension_zh: str
    effect: str
    effect_zh: str
    text: str
    source: str
    illustrative: bool
    conditions: list[str]


class UnitIdentity(BaseModel):
    """What names a control unit wherever one is reported."""

    code: str = Field(description="HJZHGKDYBM")
    name: str = Field(description="HJZHGKDYMC")
    type: Literal["priority", "key", "general"]
    type_zh: str
    category: str = Field(description="The unit's category as Plan 3.3 lists it")
    county: str


class UnitSummary(UnitIdentity):
    county_code: str
    area_m2: float
    area_km2: float


class UnitDetail(UnitSummary):
    attributes: dict[str, Any] = Field(description="The deliverable fields of the unit (HJZHGKDYBM, ZHGKDYFL, KJBJYS…)")
    clauses: list[ClauseOut] = Field(description="The unit's own access-list clauses, by dimension")
    geometry: dict[str, Any] | None = Field(None, description="GeoJSON in EPSG:4490 when ?geometry=true")


class UnitList(BaseModel):
    dataset_version: str
    units: list[UnitSummary]


class LayerInfo(BaseModel):
    name: str
    title_zh: str
    features: int
    source: str
    provenance: str
    content_hash: str


class Dataset(BaseModel):
    """Version and provenance of the dataset and the rule base in use."""

    dataset_version: str = Field(description="The version id answers name (the store's current version)")
    dataset_id: str = Field(description="The dataset's own identifier, from its dataset_info table")
    dataset_hash: str
    illustrative: bool
    provenance: str
    provenance_zh: str
    reference_date: str | None
    storage_crs: str
    metric_crs: str
    rules_version: str
    clause_count: int
    layers: list[LayerInfo]


class Health(BaseModel):
    status: Literal["ok"]
    dataset_version: str
    rules_version: str
