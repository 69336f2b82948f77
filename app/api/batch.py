"""POST /v1/batch (streamed answer) and background jobs: POST /v1/batch/jobs, GET /v1/batch/jobs/{id}[/result].

A batch is JSON (`{"sites": [...], "crs": …}`), CSV (lon/lat or WKT column plus project columns), or a file in a
multipart `file` field: GeoPackage, zipped Shapefile, GeoJSON, CSV. The input is read and checked completely
before the answer starts (problems of the request → 4xx; problems of one site → its own row), then screened
block by block and streamed as CSV, GeoJSON or NDJSON. Every answer names the dataset and rules versions in
headers and in its first line. Batches above `SYNC_MAX_SITES` go to a background job instead.

Jobs live in this process's memory, with their status mirrored to `<store folder>/batch-jobs/<id>.json` (so any
worker process can report them) and their result written there as `<id>.<csv|geojson|ndjson>`; results are kept
for `JOB_TTL_S`. At most `MAX_RUNNING_JOBS` run at once and `MAX_ACTIVE_JOBS` may wait or run; more → 429.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse

from app.api.auth import officer_access
from app.api.deps import get_catalog, get_settings
from app.api.errors import error_response
from app.api.responses import OrjsonResponse
from app.domain import batch as engine
from app.domain.catalog import Catalog
from app.domain.versions import Actor
from app.errors import InputTooLarge, InvalidInput, NotFound
from app.models.common import ErrorBody
from app.settings import Settings

log = logging.getLogger("app.batch")
router = APIRouter(prefix="/v1/batch", tags=["batch"])

SYNC_MAX_SITES = 50_000  # above this, POST /v1/batch/jobs
JOB_MAX_SITES = engine.MAX_SITES
MAX_RUNNING_JOBS = 1  # one core for jobs, the other for requests (2-core machine)
MAX_ACTIVE_JOBS = 4  # running + waiting, per process
JOB_TTL_S = 24 * 3600
JOB_DIR_NAME = "batch-jobs"
STREAM_BLOCK = 10_000
_JOB_ID = re.compile(r"^B\d{8}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{12}$")

_ERRORS = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {
                "type": "object", "required": ["sites"],
                "properties": {
                    "sites": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"},
                        "site": {"description": "GeoJSON geometry/Feature, WKT, [x, y] pairs or DMS text"},
                        "lon": {"type": "number"}, "lat": {"type": "number"},
                        "project": {"$ref": "#/components/schemas/Project"}}}},
                    "crs": {"type": "string", "default": "EPSG:4490"},
                    "axis_order": {"type": "string", "enum": ["xy", "survey"]},
                    "project": {"$ref": "#/components/schemas/Project"}}},
                "example": {"sites": [{"id": "A1", "lon": 117.447, "lat": 49.589},
                                      {"id": "A2", "site": "POLYGON ((117.40 49.55, 117.41 49.55, 117.41 49.56, "
                                                           "117.40 49.55))", "project": {"industry_code": "3011"}}]}},
            "text/csv": {"schema": {"type": "string"},
                         "example": "id,lon,lat,industry_code\nA1,117.447,49.589,3011\n"},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary",
                                        "description": "GeoPackage, zipped Shapefile, GeoJSON or CSV of sites"},
                               "crs": {"type": "string"}, "axis_order": {"type": "string"}}}},
        },
    },
}

Format = Literal["csv", "geojson", "ndjson"]


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------------------------
# Reading the request


def output_format(fmt: str | None, accept: str | None) -> str:
    """`format` wins; else the Accept header; else CSV."""
    if fmt:
        key = fmt.strip().lower()
        key = {"json": "geojson", "jsonl": "ndjson", "geo+json": "geojson"}.get(key, key)
        if key not in engine.OUTPUT_FORMATS:
            raise InvalidInput(f"不支持的输出格式“{fmt[:20]}”，可选：csv、geojson、ndjson",
                               detail=f"format {fmt[:20]!r}", field="format", accepted=list(engine.OUTPUT_FORMATS))
        return key
    accept = (accept or "").lower()
    if "ndjson" in accept or "jsonl" in accept:
        return "ndjson"
    if "geo+json" in accept:
        return "geojson"
    if "text/csv" in accept:
        return "csv"
    if "application/json" in accept:
        return "geojson"
    return "csv"


async def read_request(request: Request, *, crs: str | None, axis_order: str | None, extra_columns: str,
                       max_sites: int, settings: Settings) -> engine.SiteBatch:
    """The sites of a request, whatever its content type (checked completely before any answer is sent)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    filename = ""
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InvalidInput("缺少上传文件：请用 multipart 字段 file 上传 CSV、GeoPackage 或 Shapefile 压缩包",
                                   detail="no file field", field="file")
            crs = _form_param(form, "crs", crs)
            axis_order = _form_param(form, "axis_order", axis_order)
            extra_columns = _form_param(form, "extra_columns", extra_columns) or "refuse"
            data = await upload.read()
            filename = upload.filename or ""
        finally:
            await form.close()
        kind = "auto"
    else:
        data = await request.body()
        if ctype in ("application/json", "application/geo+json") or ctype.endswith("+json"):
            kind = "json"
        elif ctype in ("text/csv", "text/plain", "application/csv", "text/comma-separated-values"):
            kind = "csv"
        elif ctype in ("application/octet-stream", "application/zip", "application/x-zip-compressed",
                       "application/geopackage+sqlite3", "application/vnd.google-earth.kml+xml", ""):
            kind = "auto"
        else:
            raise InvalidInput(f"不支持的内容类型 {ctype[:60]}：请提交 JSON（application/json）、CSV（text/csv），"
                               "或以 multipart/form-data 的 file 字段上传文件", detail=f"content type {ctype[:60]!r}")
    if extra_columns not in ("refuse", "ignore"):
        raise InvalidInput("extra_columns 应为 refuse 或 ignore", detail="extra_columns", field="extra_columns")
    return await run_in_threadpool(engine.read_sites, data, kind=kind, filename=filename, crs=crs, axis_order=axis_order,
                                   extra_columns=extra_columns, max_sites=max_sites,
                                   max_vertices=settings.limits.max_vertices)


def _form_param(form: Any, name: str, query: str | None) -> str | None:
    value = form.get(name)
    if value is None:
        return query
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput(f"表单字段 {name} 无效", detail=f"form field {name}", field=name)
    if query is not None and query != value:
        raise InvalidInput(f"{name} 在查询参数与表单字段中不一致，请只给一处", detail=f"{name} conflict", field=name)
    return value


def version_headers(meta: dict[str, Any]) -> dict[str, str]:
    return {"X-Dataset-Version": str(meta["dataset_version"]), "X-Dataset-Hash": str(meta["dataset_hash"]),
            "X-Rules-Version": str(meta["rules_version"])}


def _guarded(chunks: Iterator[bytes], fmt: str) -> Iterator[bytes]:
    """Stream the answer; should screening fail midway (it should not), end with a marker instead of silence."""
    try:
        yield from chunks
    except Exception:  # noqa: BLE001 - the status line is gone; say so in the body
        log.exception("batch stream failed")
        note = "批量筛查中断：服务内部错误，以上结果不完整，请重新提交"
        if fmt == "csv":
            yield f"# {note}\n".encode()
        elif fmt == "ndjson":
            yield orjson.dumps({"type": "error", "error": note}) + b"\n"
        else:
            yield orjson.dumps({"type": "error", "error": note})


# ---------------------------------------------------------------------------------------------------------------
# POST /v1/batch


@router.post(
    "",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/geo+json": {}, "application/x-ndjson": {}},
                     "description": "Per-site results, streamed; the first line names the dataset and rules versions"},
               **_ERRORS},
    openapi_extra=_BODY_DOC,
    summary=f"Screen many sites (up to {SYNC_MAX_SITES:,}) and stream the results",
)
async def screen_batch(
    request: Request,
    _: Annotated[Actor, Depends(officer_access)],
    catalog: Annotated[Catalog, Depends(get_catalog)],
    settings: Annotated[Settings, Depends(get_settings)],
    format: Annotated[Format | None, Query(description="csv (default), geojson or ndjson; else from Accept")] = None,
    crs: Annotated[str | None, Query(max_length=40, description="CRS of the coordinates (default EPSG:4490)")] = None,
    axis_order: Annotated[Literal["xy", "survey"] | None, Query()] = None,
    extra_columns: Annotated[Literal["refuse", "ignore"], Query(
        description="Columns that are neither coordinates, id nor project fields: refuse (422) or ignore")] = "refuse",
) -> Response:
    fmt = output_format(format, request.headers.get("accept"))
    try:
        batch = await read_request(request, crs=crs, axis_order=axis_order, extra_columns=extra_columns,
                                   max_sites=SYNC_MAX_SITES, settings=settings)
    except InputTooLarge as exc:
        if exc.context.get("limit") == SYNC_MAX_SITES:
            raise InputTooLarge(f"{exc.message_zh}超过 {SYNC_MAX_SITES:,} 个场址的批量请提交后台任务：POST /v1/batch/jobs",
                                detail=exc.detail, limit=SYNC_MAX_SITES, jobs="/v1/batch/jobs") from None
        raise
    meta = engine.provenance(catalog, len(batch), generated_at=_now())
    chunks = engine.render(engine.screen_blocks(batch, catalog, block=STREAM_BLOCK), fmt, meta)
    headers = {**version_headers(meta), "X-Site-Count": str(len(batch)),
               "Content-Disposition": f'inline; filename="batch.{engine.EXTENSIONS[fmt]}"'}
    return StreamingResponse(_guarded(chunks, fmt), media_type=engine.MEDIA_TYPES[fmt], headers=headers)


# ---------------------------------------------------------------------------------------------------------------
# Background jobs


@dataclass
class Job:
    id: str
    status: str  # queued, running, done, failed
    total: int
    format: str
    dataset_version: str
    dataset_hash: str
    rules_version: str
    created_at: str
    done: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["progress"] = round(self.done / self.total, 4) if self.total else 1.0
        doc["status_url"] = f"/v1/batch/jobs/{self.id}"
        doc["result_url"] = f"/v1/batch/jobs/{self.id}/result" if self.status == "done" else None
        return doc


class TooManyJobs(Exception):
    pass


class JobRegistry:
    """Background batch jobs of this process: a bounded queue, daemon worker threads, results on disk."""

    def __init__(self, folder: Path, *, max_running: int = MAX_RUNNING_JOBS, max_active: int = MAX_ACTIVE_JOBS,
                 ttl_s: float = JOB_TTL_S) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_active = max_active
        self.ttl_s = ttl_s
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.queue: queue.Queue = queue.Queue()
        self.workers = [threading.Thread(target=self._work, name=f"batch-job-{i}", daemon=True)
                        for i in range(max_running)]
        for w in self.workers:
            w.start()

    def active(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status in ("queued", "running"))

    def submit(self, batch: engine.SiteBatch, catalog: Catalog, fmt: str) -> Job:
        self.purge()
        with self.lock:
            if self.active() >= self.max_active:
                raise TooManyJobs()
            alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
            job_id = f"B{datetime.now(timezone.utc):%Y%m%d}-" + "".join(secrets.choice(alphabet) for _ in range(12))
            job = Job(id=job_id, status="queued", total=len(batch), format=fmt,
                      dataset_version=catalog.dataset_version, dataset_hash=catalog.content_hash,
                      rules_version=catalog.rules.version, created_at=_now(), warnings=list(batch.warnings[:10]))
            self.jobs[job_id] = job
        self._save(job)
        self.queue.put((job, batch, catalog))
        return job

    def _work(self) -> None:
        while True:
            job, batch, catalog = self.queue.get()
            try:
                self._run(job, batch, catalog)
            except Exception:  # noqa: BLE001 - a job never takes the worker down
                log.exception("batch job %s failed", job.id)
                job.status, job.error, job.finished_at = "failed", "批量筛查失败：服务内部错误，请重新提交", _now()
                self._save(job)
            finally:
                del batch, catalog
                self.queue.task_done()

    def _run(self, job: Job, batch: engine.SiteBatch, catalog: Catalog) -> None:
        job.status, job.started_at = "running", _now()
        self._save(job)
        final = self.result_path(job.id, job.format)
        part = final.with_suffix(final.suffix + ".part")
        meta = engine.provenance(catalog, job.total, generated_at=job.created_at)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            job.done = done
            if time.monotonic() - last[0] > 0.5 or done == total:
                last[0] = time.monotonic()
                self._save(job)

        with open(part, "wb") as out:
            engine.write_results(batch, catalog, job.format, out, meta=meta, progress=progress, block=STREAM_BLOCK)
        os.replace(part, final)
        job.done, job.status, job.finished_at = job.total, "done", _now()
        self._save(job)

    def result_path(self, job_id: str, fmt: str) -> Path:
        return self.folder / f"{job_id}.{engine.EXTENSIONS[fmt]}"

    def _save(self, job: Job) -> None:
        job.updated_at = _now()
        path = self.folder / f"{job.id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(orjson.dumps(job.public()))
        os.replace(tmp, path)

    def get(self, job_id: str) -> dict[str, Any]:
        if not _JOB_ID.match(job_id):
            raise NotFound("找不到该批量任务（任务编号格式不正确）", detail=f"bad job id {job_id[:40]!r}")
        job = self.jobs.get(job_id)
        if job is not None:
            return job.public()
        path = self.folder / f"{job_id}.json"  # a job of another worker process of the service
        try:
            return orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            raise NotFound(f"找不到批量任务 {job_id}（可能已过期，结果保留 {self.ttl_s / 3600:g} 小时）",
                           detail=f"job {job_id} not found") from None

    def purge(self) -> None:
        """Forget finished jobs and delete their files after the retention time."""
        cutoff = time.time() - self.ttl_s
        for path in self.folder.glob("B*"):
            try:
                if path.stat().st_mtime < cutoff:
                    job = self.jobs.get(path.name.split(".", 1)[0])
                    if job is None or job.status in ("done", "failed"):
                        path.unlink(missing_ok=True)
            except OSError:
                continue
        with self.lock:
            for job_id in [k for k, j in self.jobs.items() if j.status in ("done", "failed")
                           and not (self.folder / f"{k}.json").exists()]:
                del self.jobs[job_id]


_REGISTRY_LOCK = threading.Lock()


def registry(request: Request) -> JobRegistry:
    """This app's job registry (created on first use), with its files beside the assessment store."""
    state = request.app.state
    with _REGISTRY_LOCK:
        reg = getattr(state, "batch_jobs", None)
        if reg is None:
            settings: Settings = state.settings
            reg = JobRegistry(Path(settings.data.store_path).parent / JOB_DIR_NAME)
            state.batch_jobs = reg
    return reg


@router.post(
    "/jobs",
    status_code=202,
    responses={202: {"description": "The job, queued"}, 429: {"model": ErrorBody}, **_ERRORS},
    openapi_extra=_BODY_DOC,
    summary=f"Screen a large batch (up to {JOB_MAX_SITES:,} sites) in the background",
)
async def create_job(
    request: Request,
    _: Annotated[Actor, Depends(officer_access)],
    catalog: Annotated[Catalog, Depends(get_catalog)],
    settings: Annotated[Settings, Depends(get_settings)],
    format: Annotated[Format | None, Query(description="Result format: csv (default), geojson or ndjson")] = None,
    crs: Annotated[str | None, Query(max_length=40)] = None,
    axis_order: Annotated[Literal["xy", "survey"] | None, Query()] = None,
    extra_columns: Annotated[Literal["refuse", "ignore"], Query()] = "refuse",
) -> Response:
    fmt = output_format(format, None)
    reg = registry(request)
    if reg.active() >= reg.max_active:  # answer before reading a large body
        return _busy(reg)
    batch = await read_request(request, crs=crs, axis_order=axis_order, extra_columns=extra_columns,
                               max_sites=JOB_MAX_SITES, settings=settings)
    try:
        job = reg.submit(batch, catalog, fmt)
    except TooManyJobs:
        return _busy(reg)
    doc = job.public()
    return OrjsonResponse(doc, status_code=202, headers={**version_headers(doc), "Location": doc["status_url"]})


def _busy(reg: JobRegistry) -> Response:
    return error_response(429, "too_many_jobs",
                          f"批量任务已满（同时最多 {reg.max_active} 个在排队或运行），请等已有任务完成后再提交",
                          {"limit": reg.max_active})


@router.get("/jobs/{job_id}", responses={404: {"model": ErrorBody}}, summary="Status and progress of a batch job")
async def get_job(job_id: str, request: Request, _: Annotated[Actor, Depends(officer_access)]) -> Response:
    doc = registry(request).get(job_id[:64])
    return OrjsonResponse(doc, headers=version_headers(doc))


@router.get(
    "/jobs/{job_id}/result",
    response_class=FileResponse,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    summary="The result file of a finished batch job",
)
async def get_job_result(job_id: str, request: Request, _: Annotated[Actor, Depends(officer_access)]) -> Response:
    reg = registry(request)
    doc = reg.get(job_id[:64])
    if doc["status"] != "done":
        what = "已失败：" + str(doc.get("error") or "") if doc["status"] == "failed" else \
            f"尚未完成（{doc['status']}，{doc['done']:,}/{doc['total']:,}）"
        return error_response(409, "job_not_done", f"批量任务 {doc['id']} {what}",
                              {"status": doc["status"], "done": doc["done"], "total": doc["total"]})
    path = reg.result_path(doc["id"], doc["format"])
    if not path.is_file():
        raise NotFound(f"批量任务 {doc['id']} 的结果文件已过期或被清理", detail=f"result of {doc['id']} missing")
    return FileResponse(path, media_type=engine.MEDIA_TYPES[doc["format"]], headers=version_headers(doc),
                        filename=f"batch-{doc['id']}.{engine.EXTENSIONS[doc['format']]}")
