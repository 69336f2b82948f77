"""Map pages for officers and GIS staff — to be built (issue 5)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
