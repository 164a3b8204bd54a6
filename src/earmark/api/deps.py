# SPDX-License-Identifier: Apache-2.0
"""What every route needs: the service context, the caller, and role checks.

A caller is authenticated by an API key (``Authorization: Bearer em_…`` or ``X-API-Key``),
or — on the review pages — by the signed session cookie a login sets. Mutating API calls
are written to the audit log as key use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import fastapi
from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from earmark.config import Settings
from earmark.moderation import audit
from earmark.service.access import AuthError, Forbidden, Principal, Role, authenticate
from earmark.service.scans import Limits
from earmark.store.db import Database


@dataclass
class Context:
    """The running service: settings, database, catalog folder, limits."""

    settings: Settings
    db: Database
    home: Path
    limits: Limits
    dev: bool = False
    extras: dict[str, object] = field(default_factory=dict)


def get_ctx(request: Request) -> Context:
    return request.app.state.ctx


Ctx = Annotated[Context, Depends(get_ctx)]

#: The largest id or sequence number a path or query may name. The service tables keep them
#: in INTEGER columns, 32-bit on PostgreSQL (SQLite's hold 64 bits), so a larger one could not
#: name a row and would fail the query (PostgreSQL: "integer out of range"; SQLite's driver:
#: OverflowError beyond 64 bits): it is refused as invalid (422) instead, and OpenAPI says so.
MAX_ID = 2**31 - 1
#: a row id in the path (webhooks, reviews, disputes, statements, exclusions, versions)
Id = Annotated[int, fastapi.Path(ge=1, le=MAX_ID)]
#: "entries after this sequence number / id" in the query (0: from the start)
After = Annotated[int, Query(ge=0, le=MAX_ID)]

_bearer = HTTPBearer(auto_error=False, description="An earmark API key: em_<id>_<secret>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def principal(
    request: Request, ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    key: Annotated[str | None, Depends(_header)] = None,
) -> Principal:
    """The authenticated caller, or 401."""
    presented = bearer.credentials if bearer is not None else key
    if presented:
        who = authenticate(ctx.db, presented)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            with ctx.db.session() as s:
                audit.append(s, actor=who.id, action="key.use",
                             subject=f"{request.method} {request.url.path}"[:255])
        return who
    sess = request.scope.get("session") or {}
    if sess.get("principal") and request.method in ("GET", "HEAD"):
        # a signed-in reviewer's page reads the API (audio, JSON); changes go through the
        # pages' own CSRF-checked forms. The user row is read again: a removed or demoted
        # person loses access at once, whatever the cookie says.
        from earmark.store.models import User

        name = str(sess["principal"].get("id", "")).removeprefix("user:")
        with ctx.db.reader() as s:
            u = s.get(User, name)
        if u is not None:
            return Principal(id=f"user:{u.name}", role=u.role,  # type: ignore[arg-type]
                             owner=u.owner)
    raise AuthError("send an API key: 'Authorization: Bearer em_…' or 'X-API-Key: em_…' "
                    "(make one with `earmark keys create`)")


Caller = Annotated[Principal, Depends(principal)]


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits callers of ``role`` or above."""

    def check(who: Caller) -> Principal:
        if not who.at_least(role):
            raise Forbidden(f"this needs the {role} role or above; your key is {who.role}")
        return who

    return check


def may_act_for(who: Principal, owner: str | None) -> None:
    """Owners act only for themselves; moderators and admins for anyone."""
    if who.at_least("moderator"):
        return
    if who.role == "owner" and owner is not None and who.owner == owner:
        return
    raise Forbidden(f"a key of owner {who.owner!r} cannot act for owner {owner!r}")
