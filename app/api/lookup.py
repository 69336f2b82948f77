"""GET /v1/lookup — the fast point answer."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, MutableMapping

from fastapi import APIRouter, Depends, Query

from app.api.auth import officer_access
from app.api.deps import current_catalog, get_catalog
from app.api.responses import OrjsonResponse
from app.domain.catalog import Catalog
from app.domain.lookup import lookup_point
from app.domain.versions import Actor
from app.errors import ZoningError
from app.geo.crs import point_to_storage_metric
from app.models.common import ErrorBody, Lookup

router = APIRouter(prefix="/v1", tags=["lookup"])

# A plain decimal number: what the fast path parses itself. Anything else ("1,5", " 1", "nan", "0x1") is left to
# FastAPI's validation and its error message.
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PARAMS = frozenset(("lon", "lat", "crs", "axis_order"))


def _answer(catalog: Catalog, lon: float, lat: float, crs: str, axis_order: str) -> OrjsonResponse:
    glon, glat, x, y = point_to_storage_metric(lon, lat, crs, axis_order=axis_order)  # type: ignore[arg-type]
    return OrjsonResponse(lookup_point(catalog, x, y, glon, glat))


@router.get(
    "/lookup",
    response_model=Lookup,  # the endpoint returns its OrjsonResponse itself; the model is the documented contract
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
    # CPU-only and a few µs: answered on the event loop rather than paying a thread hop.
    return _answer(catalog, lon, lat, crs, axis_order)


def fast_lookup(scope: MutableMapping[str, Any]) -> OrjsonResponse | None:
    """The well-formed lookup without FastAPI's parameter machinery; None leaves the request to FastAPI."""
    app = scope["app"]
    if app.state.settings.access.require_officer_key:
        return None
    query = scope["query_string"]
    if b"%" in query or b"+" in query:  # encoded text: leave the decoding to Starlette
        return None
    given: dict[str, str] = {}
    for pair in query.decode("latin-1").split("&"):
        key, sep, value = pair.partition("=")
        if not sep or key not in _PARAMS or key in given:
            return None
        given[key] = value
    lon, lat = given.get("lon"), given.get("lat")
    axis_order = given.get("axis_order", "xy")
    if lon is None or lat is None or not (_NUMBER.fullmatch(lon) and _NUMBER.fullmatch(lat)) \
            or axis_order not in ("xy", "survey"):
        return None
    try:
        return _answer(current_catalog(app), float(lon), float(lat), given.get("crs", "EPSG:4490"), axis_order)
    except ZoningError:
        return None  # the FastAPI path raises it again and answers it the usual way
