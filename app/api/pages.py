"""Map pages for officers (`/`, `/assessments/{id}`) and GIS staff (`/admin`), and the JSON/GeoJSON/PNG they draw.

The pages are plain HTML + vendored Leaflet and leaflet-geoman under /static: nothing is loaded from outside the
service. The page-support endpoints live under /ui (not part of the v1 contract): the page configuration, simplified
GeoJSON per layer, the land-cover image, identify-at-a-point and the site previews that show where the service
understood a site before it is assessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from app.api.auth import officer_access
from app.api.deps import get_catalog, get_settings
from app.domain import mapdata
from app.domain.catalog import Catalog
from app.domain.schema import DIMENSION_NAMES_ZH, DIMENSIONS, LAYERS, UNIT_TYPE_NAMES_ZH
from app.domain.versions import Actor
from app.errors import InputTooLarge, InvalidInput
from app.geo.crs import parse_crs
from app.geo.geometry import parse_site
from app.geo.survey import parse_survey
from app.models.assessment import Project
from app.settings import Settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "web" / "templates"))
IMMUTABLE = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False)
ui = APIRouter(prefix="/ui", include_in_schema=False)


# ---------------------------------------------------------------------------------------------------------------
# Pages


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, context, headers={"Cache-Control": "no-cache"})


@router.get("/", response_class=HTMLResponse)
def officer_page(request: Request) -> HTMLResponse:
    return _page(request, "officer.html", assessment_id="")


@router.get("/assessments/{assessment_id}", response_class=HTMLResponse)
def assessment_page(request: Request, assessment_id: str) -> HTMLResponse:
    return _page(request, "officer.html", assessment_id=assessment_id[:64])


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request) -> HTMLResponse:
    return _page(request, "admin.html")


# ---------------------------------------------------------------------------------------------------------------
# Page support (JSON, GeoJSON, PNG)


def _json(value: Any, cache: str = "no-cache") -> Response:
    return Response(orjson.dumps(value), media_type="application/json", headers={"Cache-Control": cache})


def _cache_for(catalog: Catalog, v: str | None) -> str:
    return IMMUTABLE if v and v == mapdata.version_tag(catalog) else "no-cache"


@ui.get("/config")
def page_config(catalog: Annotated[Catalog, Depends(get_catalog)],
                settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    """Everything the pages need to draw their forms and map for the version being served."""
    tag = mapdata.version_tag(catalog)
    _, bounds = mapdata.land_cover_overlay(catalog)
    project_fields = set(Project.model_fields)
    facts = [
        {"name": f.name, "type": f.type, "label_zh": f.label_zh, "values": [[k, v] for k, v in f.values.items()],
         "default": f.default, "has_default": f.has_default, "default_reason_zh": f.default_reason_zh, "unit": f.unit}
        for f in catalog.rules.facts.values() if f.name in project_fields
    ]
    return _json({
        "dataset": {"version": catalog.dataset_version, "dataset_id": catalog.dataset_id, "tag": tag,
                    "illustrative": catalog.illustrative, "provenance_zh": catalog.info.get("provenance_zh", ""),
                    "title_zh": catalog.info.get("title_zh", ""), "rules_version": catalog.rules.version},
        "layers": [{**entry, "url": f"/ui/layers/{entry['name']}.geojson?v={tag}"}
                   for entry in mapdata.layer_list(catalog)],
        "land_cover": {"url": f"/ui/landcover.png?v={tag}", "bounds": bounds, "legend": mapdata.land_cover_legend()},
        "unit_types": [{"key": k, "name_zh": UNIT_TYPE_NAMES_ZH[k], "color": c}
                       for k, c in mapdata.UNIT_TYPE_COLORS.items()],
        "dimensions": [{"key": d, "name_zh": DIMENSION_NAMES_ZH[d]} for d in DIMENSIONS],
        "verdict_colors": mapdata.VERDICT_COLORS,
        "crs_choices": [{**c, "title_zh": parse_crs(c["crs"]).title_zh} for c in mapdata.SITE_CRS_CHOICES],
        "facts": facts,
        "industries": [[code, name] for code, name in catalog.rules.industries.items()],
        "upload_layers": [{"name": n, "title_zh": s.title_zh} for n, s in LAYERS.items()],
        "limits": {"max_survey_bytes": settings.limits.max_survey_bytes,
                   "max_upload_bytes": settings.limits.max_upload_bytes,
                   "max_vertices": settings.limits.max_vertices},
    })


@ui.get("/layers/{name}.geojson")
def layer_geojson(name: str, request: Request, catalog: Annotated[Catalog, Depends(get_catalog)],
                  v: str | None = None) -> Response:
    """One layer, simplified (5 m in EPSG:4548), in EPSG:4490; gzip-compressed when the browser accepts it."""
    body, zipped = mapdata.layer_geojson(catalog, name[:60])
    headers = {"Cache-Control": _cache_for(catalog, v), "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(zipped, media_type="application/geo+json", headers={**headers, "Content-Encoding": "gzip"})
    return Response(body, media_type="application/geo+json", headers=headers)


@ui.get("/landcover.png")
def land_cover_png(catalog: Annotated[Catalog, Depends(get_catalog)], v: str | None = None) -> Response:
    """The land-cover raster warped to EPSG:3857 as a transparent PNG (bounds in /ui/config)."""
    png, bounds = mapdata.land_cover_overlay(catalog)
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": _cache_for(catalog, v), "X-Bounds": orjson.dumps(bounds).decode()})


@ui.get("/identify")
def identify(catalog: Annotated[Catalog, Depends(get_catalog)],
             lon: Annotated[float, Query(ge=-180, le=180)], lat: Annotated[float, Query(ge=-90, le=90)],
             layers: Annotated[str | None, Query(max_length=1000)] = None) -> Response:
    """The features (and their clauses) at a clicked point, in the layers shown on the map."""
    names = [n for n in (layers or "").split(",") if n] if layers is not None else None
    return _json(mapdata.identify(catalog, lon, lat, names))


class SitePreview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str | list[Any] | dict[str, Any] = Field(..., description="Pasted text, a list of pairs or GeoJSON")
    crs: str = "EPSG:4490"
    axis_order: Literal["xy", "survey"] = "xy"


@ui.post("/preview")
def preview_site(body: SitePreview, _: Annotated[Actor, Depends(officer_access)],
                 catalog: Annotated[Catalog, Depends(get_catalog)],
                 settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    """Parse a site exactly as /v1/assessments will and return where it lies (EPSG:4490), without assessing it.

    `site` in the answer is the input as the assessment should receive it (pasted tables become [x, y] pairs).
    """
    value = mapdata.site_input(body.site) if isinstance(body.site, str) else body.site
    geom = parse_site(value, body.crs, axis_order=body.axis_order, max_vertices=settings.limits.max_vertices)
    return _json({"site": value, "crs": parse_crs(body.crs).name, "axis_order": body.axis_order,
                  **mapdata.site_summary(catalog, geom)})


@ui.post("/preview/survey")
async def preview_survey(file: Annotated[UploadFile, File()], _: Annotated[Actor, Depends(officer_access)],
                         catalog: Annotated[Catalog, Depends(get_catalog)],
                         settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    """Read a land-survey coordinate file as /v1/assessments/survey will and return its parcels (EPSG:4490)."""
    limit = settings.limits.max_survey_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise InputTooLarge(f"坐标文件过大（上限 {limit:,} 字节）", detail="survey file too large", limit=limit,
                            field="file")
    if not data:
        raise InvalidInput("坐标文件是空的", detail="empty survey file", field="file")
    survey = parse_survey(data)
    return _json({"filename": (file.filename or "")[:200], **mapdata.survey_summary(catalog, survey)})


router.include_router(ui)
