"""Batch screening of many sites — to be built (issue 7)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["batch"])
