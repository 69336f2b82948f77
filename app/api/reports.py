"""GET /v1/assessments/{id}/report: the printable report of a stored assessment, as PDF (default) or HTML."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.api.auth import get_service, officer_access
from app.api.deps import get_store
from app.domain.datasets import DatasetService
from app.domain.report import catalog_for_assessment, render_html, render_pdf
from app.domain.store import AssessmentStore
from app.domain.versions import Actor
from app.errors import NotFound
from app.models.common import ErrorBody

router = APIRouter(tags=["reports"])


@router.get(
    "/v1/assessments/{assessment_id}/report",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}, "text/html": {}},
              "description": "《建设项目生态环境分区管控符合性分析》: A4 PDF, or HTML with f=html"},
        404: {"model": ErrorBody},
    },
    summary="The printable report of a stored assessment (PDF, or HTML with f=html)",
)
def get_report(
    assessment_id: str,
    request: Request,
    _: Annotated[Actor, Depends(officer_access)],
    store: Annotated[AssessmentStore, Depends(get_store)],
    service: Annotated[DatasetService, Depends(get_service)],
    f: Annotated[Literal["pdf", "html"], Query(description="pdf (default) or html")] = "pdf",
) -> Response:
    body = store.get(assessment_id) if len(assessment_id) <= 64 else None
    if body is None:
        raise NotFound(f"找不到编号为 {assessment_id[:64]} 的分析记录", detail=f"assessment {assessment_id[:64]} not found")
    doc = orjson.loads(body)
    catalog = catalog_for_assessment(service, doc)
    base = request.app.state.settings.access.public_base_url or str(request.base_url)
    verify_url = f"{base.rstrip('/')}/v1/assessments/{doc['id']}"
    cache = request.app.state.report_cache
    key = cache.key(f, body, catalog, verify_url)
    if f == "html":
        return HTMLResponse(cache.get_or_render(key, lambda: render_html(doc, body, catalog, verify_url=verify_url)))
    pdf = cache.get_or_render(key, lambda: render_pdf(doc, body, catalog, verify_url=verify_url))
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="assessment-{doc["id"]}.pdf"'})
