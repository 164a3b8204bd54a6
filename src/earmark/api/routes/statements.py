# SPDX-License-Identifier: Apache-2.0
"""``/v1/statements``: DSA statements of reasons, and their export to the Commission's
Transparency Database (see :mod:`earmark.moderation.statements`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from earmark.api import problems
from earmark.api.deps import After, Caller, Ctx, Id, require
from earmark.service.access import Principal
from earmark.service.statements import (
    EXPORT_MAX,
    StatementOut,
    export,
    get_statement,
    list_statements,
)

router = APIRouter(prefix="/v1/statements", tags=["statements"],
                   responses=problems.responses(401))
Moderator = Annotated[Principal, Depends(require("moderator"))]


@router.get("", response_model=list[StatementOut])
def statements(ctx: Ctx, who: Caller,
               scan_id: Annotated[str | None, Query(max_length=36)] = None,
               since: dt.datetime | None = None, until: dt.datetime | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[StatementOut]:
    """Newest first; uploaders see their scans', owners those of scans matching them."""
    return list_statements(ctx.db, who=who, scan_id=scan_id, since=since, until=until,
                           limit=limit)


@router.get("/export", responses={200: {"description": "The body of one submission to "
                                        "POST /api/v1/statements of the Transparency DB"},
                                   **problems.responses(403)})
def export_statements(ctx: Ctx, who: Moderator, response: Response,
                      since: dt.datetime | None = None, until: dt.datetime | None = None,
                      after: After = 0,
                      limit: Annotated[int, Query(ge=1, le=EXPORT_MAX)] = EXPORT_MAX,
                      ) -> dict[str, Any]:
    """``{"statements": [...]}`` in the Transparency Database's shape, without personal
    data; ``X-Next-After`` names the ``after`` of the next batch when there is one."""
    ex = export(ctx.db, since=since, until=until, after=after, limit=limit)
    if ex.next_after is not None:
        response.headers["X-Next-After"] = str(ex.next_after)
    if ex.skipped:
        response.headers["X-Skipped"] = ",".join(map(str, ex.skipped[:100]))
    return {"statements": ex.statements}


@router.get("/{statement_id}", response_model=StatementOut, responses=problems.responses(404))
def statement(ctx: Ctx, who: Caller, statement_id: Id) -> StatementOut:
    return get_statement(ctx.db, statement_id, who=who)
