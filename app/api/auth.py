"""API keys and roles: officer (assess), editor (upload, validate), admin (publish, roll back, manage keys)."""

from __future__ import annotations

from typing import Annotated, Callable

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from app.domain.datasets import DatasetService
from app.domain.versions import Actor
from app.errors import Forbidden, Unauthorized

ANONYMOUS = Actor("anonymous", "anonymous", "officer")
ROLE_ZH = {"officer": "审批人员", "editor": "GIS 编辑", "admin": "管理员"}


async def get_service(request: Request) -> DatasetService:
    return request.app.state.datasets


def _key_from(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def require(role: str) -> Callable[..., Actor]:
    """A dependency that returns the caller's actor if its key has at least `role`, else 401/403."""

    def dependency(
        service: Annotated[DatasetService, Depends(get_service)],
        x_api_key: Annotated[str | None, Header(description="API key")] = None,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Actor:
        key = _key_from(x_api_key, authorization)
        if not key:
            raise Unauthorized(f"此操作需要{ROLE_ZH[role]}及以上权限的 API 密钥（请求头 X-API-Key）",
                               detail="missing API key", required_role=role)
        actor = service.store.actor_for(key[:200])
        if actor is None:
            raise Unauthorized("API 密钥无效或已吊销", detail="unknown or revoked API key", required_role=role)
        if not actor.allows(role):
            raise Forbidden(f"密钥“{actor.name}”的角色为{ROLE_ZH[actor.role]}，此操作需要{ROLE_ZH[role]}权限",
                            detail=f"{actor.key_id} has role {actor.role}, needs {role}", required_role=role,
                            role=actor.role)
        return actor

    return dependency


async def officer_access(
    request: Request,
    service: Annotated[DatasetService, Depends(get_service)],
    x_api_key: Annotated[str | None, Header(description="API key (needed only when the service requires it)")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Actor:
    """Lookups and assessments: open by default (a demo on one machine); one setting makes them need a key."""
    if not request.app.state.settings.access.require_officer_key:
        return ANONYMOUS
    return await run_in_threadpool(require("officer"), service, x_api_key, authorization)
