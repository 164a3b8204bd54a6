# SPDX-License-Identifier: Apache-2.0
"""Errors as RFC 9457 problem details (``application/problem+json``).

Every :class:`~earmark.errors.EarmarkError` maps by its ``code`` to an HTTP status in this
one table; the body carries ``type`` (a stable URN with the code), ``title``, ``status``,
``detail`` (what happened and what to do) and, for invalid requests, ``errors``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from earmark.errors import EarmarkError

MEDIA_TYPE = "application/problem+json"

STATUS: dict[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "scan_not_found": 404,
    "review_not_found": 404,
    "policy_not_found": 404,
    "dispute_not_found": 404,
    "statement_not_found": 404,
    "unknown_reference": 404,
    "not_found": 404,
    "key_not_found": 404,
    "review_already_decided": 409,
    "dispute_conflict": 409,
    "catalog_error": 409,
    "external_id_taken": 409,
    "upload_too_large": 413,
    "input_too_long": 413,
    "unsupported_format": 415,
    "bad_input": 422,
    "empty_input": 422,
    "corrupt_input": 422,
    "silent_input": 422,
    "file_missing": 422,
    "bad_manifest": 422,
    "unknown_detector": 422,
    "invalid_request": 422,
}


class NotFound(EarmarkError):
    code = "not_found"


class InvalidRequest(EarmarkError):
    code = "invalid_request"


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:earmark:problem:{code}", "title": code.replace("_", " "),
            "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response."""

    @app.exception_handler(EarmarkError)
    async def _earmark(_req: Request, exc: EarmarkError) -> JSONResponse:
        return problem(STATUS.get(exc.code, 400), exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(x) for x in e.get("loc", ())], "msg": e.get("msg", "")}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem(422, "invalid_request", detail or "invalid request", errors=errors)

    @app.exception_handler(OverflowError)
    async def _overflow(_req: Request, exc: OverflowError) -> JSONResponse:
        # an integer in the path or query that SQLite cannot bind (beyond 64 bits) is the
        # caller's mistake; any other overflow stays a server error
        if "SQLite INTEGER" not in str(exc):
            raise exc
        return problem(422, "invalid_request", "a number in the request is out of range "
                       "(integers are 64-bit)")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
                403: "forbidden", 413: "upload_too_large"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail))
