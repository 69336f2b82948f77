"""Boundary versions: upload a draft, read its validation report, publish, roll back, diff, export; audit; keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.auth import get_service, require
from app.api.deps import get_settings
from app.domain.datasets import DatasetService
from app.domain.versions import Actor
from app.errors import InputTooLarge, InvalidInput
from app.geo.upload import UploadLimits, read_upload
from app.models.common import ErrorBody
from app.settings import Settings

router = APIRouter(prefix="/v1", tags=["versions"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody},
           413: {"model": ErrorBody}, 422: {"model": ErrorBody}}


class VersionOut(BaseModel):
    id: str
    parent: str | None
    status: Literal["draft", "published"]
    created_at: str
    created_by: str
    note: str
    source: str
    replaced_layers: list[str]
    content_hash: str | None
    dataset_id: str | None
    approval_ref: str | None
    published_at: str | None
    published_by: str | None
    errors: int
    warnings: int
    current: bool = False


class VersionDetail(BaseModel):
    version: VersionOut
    report: dict[str, Any] | None = Field(description="The validation report: errors, warnings, diff, red line, units")
    impact: dict[str, Any] | None = Field(None, description="The latest change-impact computation kept with the version")


class VersionList(BaseModel):
    current: str | None
    versions: list[VersionOut]


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acknowledge_warnings: bool = Field(False, description="Confirm the report's warnings were read")
    note: str = Field("", max_length=2000)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=2000)


class PointerMove(BaseModel):
    current: str
    previous: str | None


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=100)
    role: Literal["officer", "editor", "admin"]


class KeyCreated(BaseModel):
    id: str
    name: str
    role: str
    key: str = Field(description="Shown once; only its hash is stored")


def _out(service: DatasetService, version) -> VersionOut:
    current = service.current.version if service.current else None
    return VersionOut(**version.public(), current=version.id == current)


def _json_form(text: str | None, name: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{name} 参数应为 JSON 对象，如 {{\"源字段\": \"目标字段\"}}", detail=f"{name} not JSON") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidInput(f"{name} 参数应为字符串到字符串的 JSON 对象", detail=f"{name} not a str→str object")
    return value


@router.post("/versions", status_code=201, response_model=VersionDetail, responses=_ERRORS,
             summary="Upload boundaries as a draft version and validate them")
def upload_version(
    actor: Annotated[Actor, Depends(require("editor"))],
    service: Annotated[DatasetService, Depends(get_service)],
    settings: Annotated[Settings, Depends(get_settings)],
    file: Annotated[UploadFile, File(description="Zipped Shapefile, GeoPackage, GeoJSON or KML")],
    layer: Annotated[str | None, Form(description="Target layer for a one-layer file (control_units, red_line…)")] = None,
    layers: Annotated[str | None, Form(description='JSON {"file layer": "target layer"}')] = None,
    fields: Annotated[str | None, Form(description='JSON {"file field": "contract field"}')] = None,
    crs: Annotated[str | None, Form(description="CRS when the file declares none, e.g. EPSG:4527")] = None,
    encoding: Annotated[str | None, Form(description="Attribute encoding when the file declares none (GBK, UTF-8)")] = None,
    note: Annotated[str, Form(max_length=2000)] = "",
    approval_ref: Annotated[str | None, Form(max_length=500, description="Approval document for a red-line decrease")] = None,
) -> VersionDetail:
    limit = settings.limits.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise InputTooLarge(f"上传文件过大（上限 {limit:,} 字节）", detail="upload too large", limit=limit)
    upload = read_upload(data, file.filename or "upload", crs=crs, encoding=encoding,
                         limits=UploadLimits(max_bytes=limit))
    version_id, report = service.upload(actor, upload, filename=(file.filename or "upload")[:200], target=layer,
                                        layer_map=_json_form(layers, "layers"), field_map=_json_form(fields, "fields"),
                                        note=note, approval_ref=approval_ref or None)
    return VersionDetail(version=_out(service, service.store.get(version_id)), report=report)


@router.get("/versions", response_model=VersionList, summary="Version history")
def list_versions(service: Annotated[DatasetService, Depends(get_service)]) -> VersionList:
    return VersionList(current=service.store.current(), versions=[_out(service, v) for v in service.store.list()])


@router.get("/versions/{version_id}", response_model=VersionDetail, responses=_ERRORS, summary="A version and its report")
def get_version(version_id: str, service: Annotated[DatasetService, Depends(get_service)]) -> VersionDetail:
    version = service.store.get(version_id)
    return VersionDetail(version=_out(service, version), report=version.report, impact=service.saved_impact(version.id))


@router.get("/versions/{version_id}/validation.gpkg", responses=_ERRORS, response_class=FileResponse,
            summary="The validation issues as a GeoPackage layer (opens in QGIS)")
def validation_layer(version_id: str, _: Annotated[Actor, Depends(require("editor"))],
                     service: Annotated[DatasetService, Depends(get_service)]) -> FileResponse:
    return FileResponse(service.report_path(version_id), media_type="application/geopackage+sqlite3",
                        filename=f"{version_id}-validation.gpkg")


@router.get("/versions/{version_id}/export", responses=_ERRORS, response_class=FileResponse,
            summary="The version's GeoPackage")
def export_version(version_id: str, actor: Annotated[Actor, Depends(require("editor"))],
                   service: Annotated[DatasetService, Depends(get_service)]) -> FileResponse:
    path = service.export_path(version_id)
    service.store.record(actor, "export", to_version=version_id)
    return FileResponse(path, media_type="application/geopackage+sqlite3", filename=f"manzhouli-{version_id}.gpkg")


@router.get("/versions/{version_id}/diff", responses=_ERRORS, summary="What changed between two versions")
def diff_versions(version_id: str, service: Annotated[DatasetService, Depends(get_service)],
                  base: str | None = None) -> dict[str, Any]:
    version = service.store.get(version_id)
    base_id = base or version.parent or service.store.current()
    return service.diff(base_id, version.id)


@router.get("/versions/{version_id}/impact", responses=_ERRORS,
            summary="Stored assessments whose verdict, units or red-line status this version would change")
def impact(version_id: str, request: Request, _: Annotated[Actor, Depends(require("editor"))],
           service: Annotated[DatasetService, Depends(get_service)],
           settings: Annotated[Settings, Depends(get_settings)], base: str | None = None) -> dict[str, Any]:
    store = request.app.state.store
    result = service.impact(version_id, store.documents(), base_id=base, buffer_m=settings.limits.proximity_buffer_m)
    service.save_impact(result)
    return result


@router.post("/versions/{version_id}/publish", response_model=PointerMove, responses=_ERRORS,
             summary="Make a draft the current version")
def publish(version_id: str, body: PublishRequest, actor: Annotated[Actor, Depends(require("admin"))],
            service: Annotated[DatasetService, Depends(get_service)]) -> PointerMove:
    previous = service.publish(actor, version_id, acknowledge_warnings=body.acknowledge_warnings, note=body.note)
    return PointerMove(current=version_id, previous=previous)


@router.post("/versions/{version_id}/rollback", response_model=PointerMove, responses=_ERRORS,
             summary="Make an earlier published version current again")
def rollback(version_id: str, body: RollbackRequest, actor: Annotated[Actor, Depends(require("admin"))],
             service: Annotated[DatasetService, Depends(get_service)]) -> PointerMove:
    previous = service.rollback(actor, version_id, note=body.note)
    return PointerMove(current=version_id, previous=previous)


@router.get("/audit", responses=_ERRORS, summary="The append-only audit log, newest first")
def audit(_: Annotated[Actor, Depends(require("admin"))], service: Annotated[DatasetService, Depends(get_service)],
          limit: int = 500) -> list[dict[str, Any]]:
    return service.store.audit_log(max(1, min(limit, 5000)))


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=_ERRORS, summary="Create an API key")
def create_key(body: KeyRequest, actor: Annotated[Actor, Depends(require("admin"))],
               service: Annotated[DatasetService, Depends(get_service)]) -> KeyCreated:
    key_id, key = service.store.create_key(body.name, body.role, actor)
    return KeyCreated(id=key_id, name=body.name, role=body.role, key=key)


@router.get("/keys", responses=_ERRORS, summary="API keys (without the keys themselves)")
def list_keys(_: Annotated[Actor, Depends(require("admin"))],
              service: Annotated[DatasetService, Depends(get_service)]) -> list[dict[str, Any]]:
    return service.store.keys()


@router.delete("/keys/{key_id}", status_code=204, responses=_ERRORS, summary="Revoke an API key")
def revoke_key(key_id: str, actor: Annotated[Actor, Depends(require("admin"))],
               service: Annotated[DatasetService, Depends(get_service)]) -> None:
    service.store.revoke_key(key_id, actor)
