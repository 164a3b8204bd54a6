# SPDX-License-Identifier: Apache-2.0
"""Errors as RFC 9457 problem details (``application/problem+json``).

Every :class:`~earmark.errors.EarmarkError` maps by its ``code`` to an HTTP status in this
one table; the body carries ``type`` (a stable URN with the code), ``title``, ``status``,
``detail`` (what happened and what to do) and, for invalid requests, ``errors``.

OpenAPI declares them too: routers and routes pass :func:`responses` (the statuses they can
answer with, as :class:`Problem` in ``application/problem+json``), and :func:`install` puts
the schema in the document and declares every ``422`` FastAPI would have documented as its
own validation error as a problem instead.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
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


class FieldError(BaseModel):
    loc: list[str] = Field(description="Where: body / query / path / header, then the field")
    msg: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    type: str = Field(description="urn:earmark:problem:<code>; the code is stable",
                      examples=["urn:earmark:problem:scan_not_found"])
    title: str = Field(description="The code in words", examples=["scan not found"])
    status: int = Field(description="The HTTP status", examples=[404])
    detail: str = Field(description="What happened and what to do")
    errors: list[FieldError] | None = Field(
        default=None, description="For invalid requests: each field refused, and why")


#: what each status means here, as OpenAPI says it
DESCRIPTIONS: dict[int, str] = {
    401: "No API key, or an unknown or revoked one (`unauthorized`)",
    403: "The key's role or owner may not do this (`forbidden`)",
    404: "No such resource, or none this key may see",
    409: "In conflict with the resource's state",
    413: "Larger than EARMARK_MAX_UPLOAD_MB or longer than EARMARK_MAX_UPLOAD_SECONDS",
    415: "Not audio or video (`unsupported_format`)",
    422: "Malformed JSON or fields (`invalid_request`, with `errors`), or empty, corrupt or "
         "silent input",
}
_SCHEMA = {"$ref": "#/components/schemas/Problem"}


def responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a router or route that can answer with these statuses.

    Parameters
    ----------
    *statuses : int
        HTTP statuses, each a :class:`Problem` in ``application/problem+json``.
    **descriptions : str
        A description of one status for this route instead of the shared one, keyed
        ``s409`` for 409 and so on.

    Returns
    -------
    dict
        ``{status: {"description": …, "content": {"application/problem+json": …}}}``.
    """
    return {s: {"description": descriptions.get(f"s{s}", DESCRIPTIONS[s]),
                "content": {MEDIA_TYPE: {"schema": _SCHEMA}}} for s in statuses}


def _declare(spec: dict[str, Any]) -> None:
    """Put :class:`Problem` in ``spec``'s schemas; FastAPI's own ``422`` becomes a problem."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for path in spec.get("paths", {}).values():
        for op in path.values():
            r422 = op.get("responses", {}).get("422") if isinstance(op, dict) else None
            if r422 and "application/json" in r422.get("content", {}):
                op["responses"]["422"] = responses(422)[422]
    paths = json.dumps(spec.get("paths", {}))
    if "/HTTPValidationError" not in paths:  # FastAPI's validation error, now unused
        schemas.pop("HTTPValidationError", None)
        if "/ValidationError" not in paths + json.dumps(schemas):
            schemas.pop("ValidationError", None)


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
    """Register the handlers that turn every error into a problem response, and declare
    the problems in the app's OpenAPI document."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        spec = base()
        if fresh:
            _declare(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(EarmarkError)
    async def _earmark(_req: Request, exc: EarmarkError) -> JSONResponse:
        return problem(STATUS.get(exc.code, 400), exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(x) for x in e.get("loc", ())], "msg": e.get("msg", "")}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem(422, "invalid_request", detail or "invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
                403: "forbidden", 413: "upload_too_large"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail))
