"""GET /v1/lookup — the fast point answer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from app.api.responses import OrjsonResponse

from app.api.auth import officer_access
from app.api.deps import get_catalog
from app.domain.catalog import Catalog
from app.domain.lookup import lookup_point
from app.domain.versions import Actor
from app.geo.crs import to_metric, to_storage
from app.models.common import ErrorBody, Lookup

router = APIRouter(prefix="/v1", tags=["lookup"])


@router.get(
    "/lookup",
    response_model=Lookup,
    response_class=OrjsonResponse,
    responses={422: {"model": ErrorBody}},
    summary="Units and red-line status at a point",
)
async def lookup(
    _: Annotated[Actor, Depends(officer_access)],
    catalog: Annotated[Catalog, Depends(get_catalog)],
    lon: Annotated[float, Query(description="Longitude, or easting / survey X in a projected CRS")],
    lat: Annotated[float, Query(description="Latitude, or northing / survey Y in a projected CRS")],
    crs: Annotated[str, Query(description="EPSG:4490 (default), EPSG:4326, EPSG:4527, EPSG:4548, GCJ02, BD09")] = "EPSG:4490",
    axis_order: Annotated[Literal["xy", "survey"], Query()] = "xy",
) -> OrjsonResponse:
    # CPU-only and ~0.1 ms: answered on the event loop rather than paying a thread hop.
    glon, glat = to_storage(lon, lat, crs, axis_order=axis_order)
    x, y = to_metric(glon, glat)
    return OrjsonResponse(lookup_point(catalog, float(x), float(y), float(glon), float(glat)))
