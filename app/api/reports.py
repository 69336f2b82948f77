"""Printable assessment reports (PDF and HTML) — to be built (issue 6)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["reports"])
