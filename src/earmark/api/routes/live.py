# SPDX-License-Identifier: Apache-2.0
"""``/v1/live``: the events of ``earmark monitor`` processes that share this database, as
a list or as a server-sent-events stream (``text/event-stream``, resumable with
``Last-Event-ID``)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from earmark.api import problems
from earmark.api.deps import MAX_ID, After, Ctx, require
from earmark.service.access import Principal
from earmark.store.db import Database
from earmark.store.models import LiveEvent

router = APIRouter(prefix="/v1/live", tags=["live"], responses=problems.responses(401, 403))
Moderator = Annotated[Principal, Depends(require("moderator"))]


def events_after(db: Database, after: int, *, stream: str | None = None,
                 limit: int = 500) -> list[dict[str, Any]]:
    """Events with a sequence number above ``after``, oldest first."""
    q = select(LiveEvent).where(LiveEvent.seq > after).order_by(LiveEvent.seq).limit(limit)
    if stream:
        q = q.where(LiveEvent.stream == stream)
    with db.reader() as s:
        return [{"seq": e.seq, **e.data} for e in s.scalars(q)]


@router.get("/events")
def live_events(ctx: Ctx, who: Moderator,
                after: After = 0,
                stream: Annotated[str | None, Query(max_length=255)] = None,
                limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[dict[str, Any]]:
    """Events after sequence number ``after`` (each carries its ``seq``)."""
    return events_after(ctx.db, after, stream=stream, limit=limit)


@router.get("/events/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def live_event_stream(
    request: Request, ctx: Ctx, who: Moderator,
    stream: Annotated[str | None, Query(max_length=255)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> StreamingResponse:
    """Server-sent events as they are recorded; ``id`` is the sequence number, ``event``
    the event name. Without ``Last-Event-ID`` or ``after`` it starts with new events."""
    if after is None:
        ok = last_event_id is not None and re.fullmatch(r"[0-9]{1,10}", last_event_id)
        after = int(last_event_id) if ok and last_event_id else None
        after = after if after is not None and after <= MAX_ID else None
    if after is None:
        with ctx.db.reader() as s:
            after = s.scalar(select(LiveEvent.seq).order_by(LiveEvent.seq.desc()).limit(1)) or 0

    async def gen() -> AsyncIterator[str]:
        last = after
        yield ": earmark live events\n\n"
        idle = 0.0
        while not await request.is_disconnected():
            rows = await asyncio.to_thread(events_after, ctx.db, last, stream=stream)
            for e in rows:
                last = e["seq"]
                yield f"id: {last}\nevent: {e.get('event', 'message')}\ndata: {json.dumps(e)}\n\n"
            if rows:
                idle = 0.0
                continue
            await asyncio.sleep(0.5)
            idle += 0.5
            if idle >= 15:  # a comment keeps proxies from closing an idle stream
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
