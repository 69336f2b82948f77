"""Domain errors: one hierarchy, each with a machine code, a Chinese message for people and a detail for the log.

The HTTP layer maps these to status codes in one table (`app.api.errors.STATUS_BY_ERROR`); domain code never
imports FastAPI. `message_zh` is what an officer reads and must say what to change; `detail` is for the log and
may hold internals. `context` carries structured, JSON-safe facts (which vertex, which field) for the response.
"""

from __future__ import annotations

from typing import Any


class ZoningError(Exception):
    """Base of every error the service raises on purpose."""

    code = "error"

    def __init__(self, message_zh: str, *, detail: str | None = None, **context: Any) -> None:
        super().__init__(detail or message_zh)
        self.message_zh = message_zh
        self.detail = detail or message_zh
        self.context = context


class InvalidInput(ZoningError):
    """The request cannot be understood as given (bad coordinates, geometry, CRS, project facts)."""

    code = "invalid_input"


class InvalidGeometry(InvalidInput):
    """A geometry is not valid (self-intersection, unclosed ring, hole outside shell...). Never repaired."""

    code = "invalid_geometry"


class InvalidCoordinates(InvalidInput):
    """Coordinates are NaN, infinite, out of range, swapped, or in the wrong Gauss-Krüger zone."""

    code = "invalid_coordinates"


class UnknownCRS(InvalidInput):
    """A coordinate-system name the service does not accept."""

    code = "unknown_crs"


class InputTooLarge(ZoningError):
    """The body, vertex count or nesting depth exceeds a configured limit."""

    code = "input_too_large"


class NotFound(ZoningError):
    """A unit, assessment or version that does not exist."""

    code = "not_found"


class DataError(ZoningError):
    """A dataset or rule base that fails its contract (missing layer, invalid clause, hash mismatch)."""

    code = "data_error"


class RuleBaseError(DataError):
    """A clause file that fails the schema or binds to a unit, layer or fact that does not exist."""

    code = "rule_base_error"


class Conflict(ZoningError):
    """The operation is not allowed in the present state (publishing a draft with errors, and the like)."""

    code = "conflict"


class Unauthorized(ZoningError):
    """No valid API key was given."""

    code = "unauthorized"


class Forbidden(ZoningError):
    """The API key's role does not allow the operation."""

    code = "forbidden"
