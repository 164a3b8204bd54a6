# SPDX-License-Identifier: Apache-2.0
"""``/v1/audit``, ``/v1/keys`` and ``/v1/webhooks``: the administrator's resources."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AnyHttpUrl, BaseModel, Field
from sqlalchemy import select

from earmark.api import problems
from earmark.api.deps import After, Ctx, Id, require
from earmark.api.problems import NotFound
from earmark.live.sources import safe_url
from earmark.moderation import audit
from earmark.service.access import KeyOut, Principal, Role, create_key, list_keys, revoke_key
from earmark.store.models import AuditEntry, Webhook
from earmark.utc import UtcDatetime

router = APIRouter(prefix="/v1", tags=["admin"], responses=problems.responses(401, 403))
Admin = Annotated[Principal, Depends(require("admin"))]
Moderator = Annotated[Principal, Depends(require("moderator"))]


class AuditOut(BaseModel):
    seq: int
    at: UtcDatetime
    actor: str
    action: str
    subject: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    first_bad: int | None
    problem: str | None
    head: str


@router.get("/audit", response_model=list[AuditOut], tags=["audit"])
def audit_log(ctx: Ctx, who: Moderator,
              after: After = 0,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              subject: Annotated[str | None, Query(max_length=255)] = None) -> list[AuditOut]:
    """Entries after sequence number ``after``, oldest first."""
    q = select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(limit)
    if subject:
        q = q.where(AuditEntry.subject == subject)
    with ctx.db.reader() as s:
        return [AuditOut.model_validate(e, from_attributes=True) for e in s.scalars(q)]


@router.get("/audit/verify", response_model=VerifyOut, tags=["audit"])
def audit_verify(ctx: Ctx, who: Moderator) -> VerifyOut:
    """Recompute the hash chain."""
    with ctx.db.reader() as s:
        v = audit.verify(s)
    return VerifyOut(ok=v.ok, entries=v.entries, first_bad=v.first_bad, problem=v.problem,
                     head=v.head)


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    role: Role
    owner: str | None = Field(default=None, min_length=1, max_length=120)


class KeyCreated(KeyOut):
    key: str = Field(description="The full key; shown only in this response")


@router.get("/keys", response_model=list[KeyOut], tags=["keys"])
def keys(ctx: Ctx, who: Admin) -> list[KeyOut]:
    return list_keys(ctx.db)


@router.post("/keys", status_code=201, response_model=KeyCreated, tags=["keys"])
def new_key(ctx: Ctx, who: Admin, body: KeyIn) -> KeyCreated:
    out, secret = create_key(ctx.db, name=body.name, role=body.role, owner=body.owner,
                             actor=who.id)
    return KeyCreated(**out.model_dump(), key=secret)


@router.delete("/keys/{key_id}", response_model=KeyOut, tags=["keys"],
                responses=problems.responses(404))
def delete_key(ctx: Ctx, who: Admin, key_id: str) -> KeyOut:
    return revoke_key(ctx.db, key_id, actor=who.id)


EVENTS = ("decision", "review", "dispute", "live")


class WebhookIn(BaseModel):
    url: AnyHttpUrl
    events: list[str] = Field(default_factory=list, max_length=10,
                              description=f"Any of {', '.join(EVENTS)}; empty: all")


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    secret: str | None = Field(default=None, description="HMAC-SHA256 key; shown only on creation")


@router.get("/webhooks", response_model=list[WebhookOut], tags=["webhooks"])
def webhooks(ctx: Ctx, who: Admin) -> list[WebhookOut]:
    with ctx.db.reader() as s:
        return [WebhookOut(id=w.id, url=w.url, events=w.events, active=w.active)
                for w in s.scalars(select(Webhook).order_by(Webhook.id))]


@router.post("/webhooks", status_code=201, response_model=WebhookOut, tags=["webhooks"])
def new_webhook(ctx: Ctx, who: Admin, body: WebhookIn) -> WebhookOut:
    """Deliveries are POSTs signed with ``X-Earmark-Signature: sha256=<hex HMAC of body>``."""
    bad = [e for e in body.events if e not in EVENTS]
    if bad:
        from earmark.api.problems import InvalidRequest

        raise InvalidRequest(f"unknown events {bad}; choose from {', '.join(EVENTS)}")
    with ctx.db.session() as s:
        w = Webhook(url=str(body.url), events=body.events, secret=secrets.token_hex(32))
        s.add(w)
        s.flush()
        audit.append(s, actor=who.id, action="webhook.create", subject=f"webhook:{w.id}",
                     data={"url": safe_url(w.url), "events": w.events})
        return WebhookOut(id=w.id, url=w.url, events=w.events, active=True, secret=w.secret)


@router.delete("/webhooks/{webhook_id}", status_code=204, tags=["webhooks"],
                responses=problems.responses(404))
def delete_webhook(ctx: Ctx, who: Admin, webhook_id: Id) -> None:
    with ctx.db.session() as s:
        w = s.get(Webhook, webhook_id)
        if w is None:
            raise NotFound(f"no webhook {webhook_id}")
        w.active = False
        audit.append(s, actor=who.id, action="webhook.delete", subject=f"webhook:{w.id}")
