"""POST /v1/assessments, POST /v1/assessments/survey, GET /v1/assessments/{id}."""

from __future__ import annotations

from typing import Annotated

import orjson
import shapely
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError

from app.api.auth import get_service, officer_access
from app.api.deps import get_catalog, get_settings, get_store
from app.domain.datasets import DatasetService
from app.domain.versions import Actor
from app.domain.assessment import assess
from app.domain.catalog import Catalog
from app.domain.store import AssessmentStore
from app.errors import InputTooLarge, InvalidInput, NotFound
from app.geo.geometry import parse_site, transform_geometry
from app.geo.survey import parse_survey
from app.models.assessment import Assessment, AssessmentRequest, Project
from app.models.common import ErrorBody
from app.settings import Settings

router = APIRouter(prefix="/v1/assessments", tags=["assessments"])

_ERRORS = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}}


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


@router.post(
    "",
    status_code=201,
    response_model=Assessment,
    responses=_ERRORS,
    summary="Assess a site for a project",
)
def create_assessment(
    request: AssessmentRequest,
    _: Annotated[Actor, Depends(officer_access)],
    current: Annotated[Catalog, Depends(get_catalog)],
    service: Annotated[DatasetService, Depends(get_service)],
    store: Annotated[AssessmentStore, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
    as_of: Annotated[str | None, Query(max_length=40, description="Assess against an earlier version, e.g. v1")] = None,
) -> Response:
    catalog = current if as_of is None else service.catalog_for(as_of)
    site = parse_site(request.site, request.crs, axis_order=request.axis_order,
                      max_vertices=settings.limits.max_vertices)
    project = request.project.model_dump(exclude_none=True)
    doc = assess(site, project, catalog, buffer_m=settings.limits.proximity_buffer_m, input_crs=request.crs)
    return _json(store.put(doc), 201)


@router.post(
    "/survey",
    status_code=201,
    response_model=Assessment,
    responses=_ERRORS,
    summary="Assess the parcels of a land-survey coordinate file (界址点坐标交换文件)",
)
def create_survey_assessment(
    file: Annotated[UploadFile, File(description="Survey coordinate text ([属性描述] / [地块坐标]), UTF-8 or GBK")],
    _: Annotated[Actor, Depends(officer_access)],
    catalog: Annotated[Catalog, Depends(get_catalog)],
    store: Annotated[AssessmentStore, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
    project: Annotated[str, Form(description="Project facts as a JSON object (same fields as in /v1/assessments)")] = "{}",
) -> Response:
    # A plain def: parsing and assessing a large file must not hold up the event loop.
    data = file.file.read(settings.limits.max_survey_bytes + 1)
    if len(data) > settings.limits.max_survey_bytes:
        raise InputTooLarge(f"坐标文件过大（上限 {settings.limits.max_survey_bytes:,} 字节）",
                            detail="survey file too large", limit=settings.limits.max_survey_bytes)
    facts = _project_from_form(project)
    survey = parse_survey(data)
    parts = [p.polygon for p in survey.parcels]
    if sum(shapely.get_num_coordinates(p) for p in parts) > settings.limits.max_vertices:
        raise InputTooLarge(f"坐标文件顶点数超过上限 {settings.limits.max_vertices}", detail="survey vertices",
                            limit=settings.limits.max_vertices)
    _refuse_overlapping_parcels(survey.parcels)
    site_metric = shapely.MultiPolygon(parts) if len(parts) > 1 else parts[0]
    if not site_metric.is_valid:
        # Parcels that share an edge (neighbouring plots of one project) cannot stand side by side in a
        # MultiPolygon: the site is their union. Disjoint parcels keep their points as the surveyor wrote them.
        site_metric = shapely.union_all(parts)
    site = transform_geometry(site_metric, "EPSG:4548")
    warnings = [{"code": "survey_assumption", "message": w} for w in survey.warnings]
    doc = assess(site, facts, catalog, buffer_m=settings.limits.proximity_buffer_m, input_crs=survey.source_crs,
                 warnings=warnings)
    doc["site"]["survey"] = {
        "source_crs": survey.source_crs, "zone": survey.zone, "zone_width": survey.zone_width,
        "encoding": survey.encoding, "header": survey.header,
        "parcels": [{"index": p.index, "code": p.code, "name": p.name, "use": p.use, "declared_area": p.declared_area,
                     "point_count": p.point_count, "area_m2": round(p.polygon.area, 2)} for p in survey.parcels],
    }
    return _json(store.put(doc), 201)


def _refuse_overlapping_parcels(parcels) -> None:
    """Two parcels that overlap by area are a drafting error; sharing an edge or a corner is normal."""
    tree = shapely.STRtree([p.polygon for p in parcels])
    for i, parcel in enumerate(parcels):
        for j in tree.query(parcel.polygon):
            if j <= i:
                continue
            area = shapely.intersection(parcel.polygon, parcels[j].polygon).area
            if area > 0.01:
                raise InvalidInput(
                    f"坐标文件中的地块 {parcel.code or parcel.index}（{parcel.name}）与地块 "
                    f"{parcels[j].code or parcels[j].index}（{parcels[j].name}）重叠 {area:,.2f} m²，请核对界址点坐标",
                    detail=f"parcels {i} and {j} overlap by {area} m2", overlap_m2=round(area, 2))


def _project_from_form(text: str) -> dict:
    try:
        raw = orjson.loads(text or "{}")
        return Project.model_validate(raw).model_dump(exclude_none=True)
    except orjson.JSONDecodeError:
        raise InvalidInput("project 字段不是合法的 JSON 对象", detail="project form field is not JSON") from None
    except ValidationError as exc:
        fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
        raise InvalidInput(f"project 字段有误：{', '.join(fields)}", detail=str(fields), fields=fields) from None


@router.get(
    "/{assessment_id}",
    response_model=Assessment,
    responses={404: {"model": ErrorBody}},
    summary="A stored assessment, exactly as it was answered",
)
def get_assessment(assessment_id: str, _: Annotated[Actor, Depends(officer_access)],
                   store: Annotated[AssessmentStore, Depends(get_store)]) -> Response:
    body = store.get(assessment_id) if len(assessment_id) <= 64 else None
    if body is None:
        raise NotFound(f"找不到编号为 {assessment_id[:64]} 的分析记录", detail=f"assessment {assessment_id[:64]} not found")
    return _json(body)
