"""The ASGI application: `create_app(settings)`; `app.main:app` builds one from the environment on first use."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.api import assessments, batch, dataset, lookup, pages, reports, units, versions
from app.api.errors import install_error_handlers
from app.api.fastpath import FastPathMiddleware
from app.api.limits import BodySizeLimit
from app.domain.datasets import DatasetService
from app.domain.report import RenderCache
from app.domain.store import AssessmentStore
from app.domain.versions import SYSTEM, VersionStore
from app.settings import Settings

log = logging.getLogger("app")
STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"  # vendored assets and fonts: nothing from a CDN


def create_app(settings: Settings) -> FastAPI:
    """Build the service for the given settings; the lifespan opens the version store and loads the current version."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = VersionStore(settings.data.versions_dir)
        service = DatasetService(store, settings.data.zones_dir)
        catalog = service.start(settings.data.dataset_dir)
        if settings.access.bootstrap_admin_key:
            if store.register_key(settings.access.bootstrap_admin_key, "bootstrap-admin", "admin", SYSTEM):
                log.info("registered the bootstrap admin key from MZL_BOOTSTRAP_ADMIN_KEY")
        app.state.datasets = service
        app.state.store = AssessmentStore(settings.data.store_path)
        log.info("serving version %s (%s, %s), rules %s", catalog.dataset_version, catalog.dataset_id,
                 catalog.content_hash[:12], catalog.rules.version[:12])
        yield

    app = FastAPI(
        title="满洲里市生态环境分区管控符合性分析服务",
        description="Zoning and ecological red-line screening for Manzhouli: verdicts with the clauses, their "
        "sources and the data version behind them.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.report_cache = RenderCache(settings.limits.report_cache_bytes)
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_body_bytes,
                       overrides={"/v1/versions": settings.limits.max_upload_bytes,
                                  "/v1/batch": settings.limits.max_upload_bytes})
    # Outermost: well-formed point lookups are answered before FastAPI's middleware and routing (app/api/fastpath.py).
    app.state.fast_paths = {"/v1/lookup": lookup.fast_lookup}
    app.add_middleware(FastPathMiddleware, paths=app.state.fast_paths)
    install_error_handlers(app)
    for router in (lookup.router, assessments.router, batch.router, units.router, dataset.router, versions.router,
                   reports.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn app.main:app` needs a module attribute; build it on first access, not at import.
    if name == "app":
        global app
        app = create_app(Settings())
        return app
    raise AttributeError(name)
