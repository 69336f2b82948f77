"""Request dependencies: the catalog, store and settings the lifespan put on `app.state`."""

from __future__ import annotations

from fastapi import Request

from app.domain.catalog import Catalog
from app.domain.store import AssessmentStore
from app.settings import Settings


def get_catalog(request: Request) -> Catalog:
    """The catalog of the dataset version being served; read once per request, so a request sees one version."""
    return request.app.state.catalog


def get_store(request: Request) -> AssessmentStore:
    return request.app.state.store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings
