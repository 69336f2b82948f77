"""The ASGI application: `create_app(settings)`; `app.main:app` builds one from the environment on first use."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI

from app.api import assessments, dataset, lookup, units
from app.api.errors import install_error_handlers
from app.api.limits import BodySizeLimit
from app.domain.catalog import load_catalog
from app.domain.store import AssessmentStore
from app.settings import Settings

log = logging.getLogger("app")


def create_app(settings: Settings) -> FastAPI:
    """Build the service for the given settings; the lifespan loads the dataset and rule base once."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog = load_catalog(settings.data.dataset_dir, settings.data.zones_dir)
        app.state.catalog = catalog
        app.state.store = AssessmentStore(settings.data.store_path)
        log.info("serving dataset %s (%s), rules %s", catalog.dataset_id, catalog.content_hash[:12],
                 catalog.rules.version[:12])
        yield

    app = FastAPI(
        title="满洲里市生态环境分区管控符合性分析服务",
        description="Zoning and ecological red-line screening for Manzhouli: verdicts with the clauses, their "
        "sources and the data version behind them.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_body_bytes)
    install_error_handlers(app)
    for router in (lookup.router, assessments.router, units.router, dataset.router):
        app.include_router(router)
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn app.main:app` needs a module attribute; build it on first access, not at import.
    if name == "app":
        global app
        app = create_app(Settings())
        return app
    raise AttributeError(name)
