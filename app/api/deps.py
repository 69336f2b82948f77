"""Request dependencies: the catalog of the version being served, the assessment store and the settings.

They are `async` because they only read `app.state`: a sync dependency costs a thread hop on every request.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.domain.catalog import Catalog
from app.domain.store import AssessmentStore
from app.settings import Settings


def current_catalog(app: Any) -> Catalog:
    """The catalog of the version being served, after noticing a pointer moved by another process."""
    service = app.state.datasets
    service.refresh()
    return service.current


async def get_catalog(request: Request) -> Catalog:
    """The current version's catalog, read once per request, so a request sees one version from start to end."""
    return current_catalog(request.app)


async def get_store(request: Request) -> AssessmentStore:
    return request.app.state.store


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings
