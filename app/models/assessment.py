"""Request and response models of the assessment API: the contract the permitting system is built against."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.common import UnitIdentity

Verdict = Literal["prohibited", "conditional", "permitted", "needs_review", "outside_jurisdiction"]
Dimension = Literal["spatial_layout", "emission_control", "risk_prevention", "resource_efficiency"]
Effect = Literal["prohibit", "conditional", "encourage", "note"]
RedLineActivity = Literal[
    "none", "patrol_research_defence", "resident_livelihood", "archaeology_heritage", "forest_tending",
    "eco_tourism", "linear_infrastructure", "mineral_exploration", "ecological_restoration", "border_works",
    "other_lawful",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Project(Strict):
    """What the project is. Every field is optional; a clause whose deciding facts are missing is not passed."""

    name: str | None = Field(None, max_length=200, description="项目名称")
    industry_code: str | None = Field(None, pattern=r"^[0-9]{2,4}$", description="GB/T 4754-2017 code (2–4 digits)")
    construction_type: Literal["new", "expansion", "rebuild", "relocation"] | None = None
    wastewater_discharge: bool | None = None
    receiving_water: str | None = Field(None, max_length=200)
    discharges_to_sewer: bool | None = None
    air_emissions: bool | None = None
    heavy_metals: bool | None = None
    vocs: bool | None = None
    hazardous_waste: bool | None = None
    coal_use: bool | None = None
    biomass_use: bool | None = None
    boiler_fuel: Literal["none", "coal", "gas", "biomass", "oil", "electric"] | None = None
    boiler_capacity_tph: float | None = Field(None, ge=0, le=10_000, description="t/h, largest single boiler")
    annual_energy_tce: float | None = Field(None, ge=0, le=1e9, description="tonnes of standard coal equivalent a year")
    coal_gas_generator: bool | None = None
    slag_yard: bool | None = None
    water_supply_facility: bool | None = None
    red_line_activity: RedLineActivity | None = None
    national_major_project: bool | None = None
    clean_production_audit: bool | None = None
    construction_land_approved: bool | None = Field(
        None, description="The land is already lawfully approved for construction (grassland/farmland conversion done)")


class AssessmentRequest(Strict):
    """A site and a project to assess."""

    site: dict[str, Any] | str | list[Any] = Field(
        ...,
        description="GeoJSON geometry or Feature (Point, Polygon, MultiPolygon), WKT, or a list of [x, y] pairs "
        "(one pair = point, three or more = polygon ring)",
        examples=[{"type": "Point", "coordinates": [117.447, 49.589]}],
    )
    crs: str = Field("EPSG:4490", description="EPSG:4490 (default), EPSG:4326, EPSG:4527, EPSG:4548, GCJ02, BD09")
    axis_order: Literal["xy", "survey"] = Field(
        "xy", description="'survey': coordinates are given as Chinese survey tables write them, X = northing, Y = easting")
    project: Project = Field(default_factory=Project)


class AreaOut(BaseModel):
    m2: float
    ha: float
    mu: float


class SiteOut(BaseModel):
    geometry: dict[str, Any] = Field(description="The site as understood, GeoJSON in EPSG:4490")
    geometry_type: str
    input_crs: str
    vertex_count: int
    area: AreaOut
    inside_area: AreaOut = Field(description="Part of the site inside the city's jurisdiction")
    centroid: list[float]
    centroid_metric: list[float]
    distance_to_territory_m: float | None = None
    survey: dict[str, Any] | None = Field(None, description="The parsed survey file (CRS, header, parcels) when the "
                                          "site came from one")


class UnitFinding(UnitIdentity):
    overlap_m2: float
    overlap_ha: float
    overlap_mu: float
    share: float = Field(description="Share of the (inside part of the) site in this unit; 1 for a point")
    on_boundary: bool = Field(description="The point lies on this unit's boundary (it then belongs to each unit there)")


class RedLineGroup(BaseModel):
    function: str
    function_name: str
    overlap_m2: float
    overlap_ha: float
    overlap_mu: float
    share: float
    patches: list[str]


class RedLineFinding(BaseModel):
    inside: bool
    overlap_m2: float
    overlap_ha: float
    overlap_mu: float
    share: float
    distance_m: float | None = Field(description="0 when the site touches the red line")
    nearest_patch: str | None
    groups: list[RedLineGroup]


class FeatureFinding(BaseModel):
    label: str
    attributes: dict[str, Any]
    overlap_m2: float
    overlap_ha: float
    overlap_mu: float
    share: float


class LayerFinding(BaseModel):
    layer: str
    title_zh: str
    features: list[FeatureFinding]


class Proximity(BaseModel):
    layer: str
    title_zh: str
    feature: str
    distance_m: float


class LandCoverShare(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class")
    name_zh: str
    share: float
    area_m2: float


class ClauseFinding(BaseModel):
    id: str
    dimension: Dimension
    dimension_zh: str
    effect: Effect
    effect_zh: str
    text: str
    source: str
    source_document: str
    source_section: str
    illustrative: bool
    unit: str | None
    layer: str | None
    conditions: list[str]
    evidence: list[str]
    reason: str = Field(description="Why the clause applies: which layer or unit, which project facts")
    facts_used: list[dict[str, Any]] = Field(default_factory=list)
    missing_facts: list[str] = Field(default_factory=list)


class ConditionOut(BaseModel):
    clause: str
    condition: str


class MissingFact(BaseModel):
    fact: str
    label_zh: str
    clauses: list[str]


class Warning(BaseModel):
    code: str
    message: str


class Assessment(BaseModel):
    """A stored assessment: verdict, findings, clauses and the versions they were computed from."""

    id: str
    created_at: str
    verdict: Verdict
    verdict_zh: str
    dataset_version: str
    dataset_hash: str
    dataset_illustrative: bool
    dataset_provenance: str
    rules_version: str
    site: SiteOut
    project: dict[str, Any]
    proximity_buffer_m: float
    units: list[UnitFinding]
    red_line: RedLineFinding
    layers: list[LayerFinding]
    proximity: list[Proximity]
    land_cover: list[LandCoverShare]
    clauses: list[ClauseFinding]
    clauses_by_dimension: dict[str, list[str]]
    conditions: list[ConditionOut]
    undecided: list[ClauseFinding] = Field(description="Clauses that would apply but depend on facts not given")
    missing_facts: list[MissingFact]
    warnings: list[Warning]
