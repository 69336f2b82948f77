"""Domain errors → HTTP: one status table, one JSON error body, Chinese messages, details only in the log."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from app.api.responses import OrjsonResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import (
    Conflict,
    DataError,
    Forbidden,
    InputTooLarge,
    InvalidInput,
    NotFound,
    Unauthorized,
    ZoningError,
)

log = logging.getLogger("app.errors")

# Most specific first: the first class an error is an instance of decides its status.
STATUS_BY_ERROR: list[tuple[type[ZoningError], int]] = [
    (InputTooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (Conflict, 409),
    (DataError, 503),
    (ZoningError, 400),
]

_PYDANTIC_ZH = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不认识的字段（请检查拼写）",
    "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "finite_number": "不能是 NaN 或无穷大",
    "string_type": "应为文本",
    "string_pattern_mismatch": "格式不正确",
    "string_too_long": "文本过长",
    "literal_error": "取值不在允许范围内",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "greater_than": "数值过小",
    "less_than": "数值过大",
    "dict_type": "应为 JSON 对象",
    "model_type": "应为 JSON 对象",
    "model_attributes_type": "应为 JSON 对象",
    "list_type": "应为数组",
    "json_invalid": "请求体不是合法的 JSON",
    "json_type": "请求体不是合法的 JSON",
    "union_tag_invalid": "类型不正确",
}


def error_response(status: int, code: str, message: str, context: dict[str, Any] | None = None) -> OrjsonResponse:
    """The one error body of the API."""
    return OrjsonResponse({"error": {"code": code, "message": message, "context": context or {}}}, status_code=status)


def status_for(exc: ZoningError) -> int:
    return next(status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls))


def _safe(value: Any) -> Any:
    """Keep context JSON-safe: numbers that are not finite become strings."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)  # JSON encoders refuse integers beyond 64 bits
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on an app."""

    @app.exception_handler(ZoningError)
    async def zoning_error(request: Request, exc: ZoningError) -> OrjsonResponse:
        status = status_for(exc)
        log.info("%s %s -> %d %s: %s", request.method, request.url.path, status, exc.code, exc.detail)
        return error_response(status, exc.code, exc.message_zh, _safe(exc.context))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> OrjsonResponse:
        problems = []
        fields = []
        for err in exc.errors()[:10]:
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query")]
            where = ".".join(loc) or "请求体"
            text = _PYDANTIC_ZH.get(err.get("type", ""), "取值无效")
            expected = (err.get("ctx") or {}).get("expected")
            if expected and err.get("type") == "literal_error":
                text += f"，可选：{expected}"
            problems.append(f"{where}：{text}")
            fields.append({"field": where, "type": err.get("type", "")})
        log.info("%s %s -> 422 validation: %s", request.method, request.url.path, fields)
        return error_response(422, "invalid_request", "请求内容有误：" + "；".join(problems), {"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        if exc.status_code == 400:
            # FastAPI answers 400 when the body cannot be parsed at all (nesting too deep for the JSON parser,
            # bytes that are not UTF-8, broken multipart): the same problem as malformed JSON, so the same answer.
            log.info("%s %s -> 422 unparseable body: %s", request.method, request.url.path, exc.detail)
            return error_response(422, "invalid_body", "请求体无法解析：应为 UTF-8 编码的合法 JSON（嵌套不超过几层），"
                                  "上传文件须使用 multipart/form-data 格式")
        messages = {404: "请求的地址不存在", 405: "不支持该请求方法", 413: "请求体过大"}
        return error_response(exc.status_code, f"http_{exc.status_code}", messages.get(exc.status_code, "请求无法处理"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> OrjsonResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "服务内部错误，请稍后重试或联系管理员")
