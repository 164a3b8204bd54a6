# SPDX-License-Identifier: Apache-2.0
"""``/v1/disputes``: dispute a restriction, answer it, appeal, take down (Content ID's
timeline; see :mod:`earmark.moderation.disputes`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from earmark.api import problems
from earmark.api.deps import Caller, Ctx, Id
from earmark.moderation.disputes import STATES
from earmark.service.disputes import DisputeOut, act, get_dispute, list_disputes, open_dispute

router = APIRouter(prefix="/v1/disputes", tags=["disputes"], responses=problems.responses(401))
_MOVE = problems.responses(
    403, 404, 409, s409="The move does not fit the dispute's state or deadline",
    s403="Not the dispute's claimant or uploader (or a moderator)")


class DisputeIn(BaseModel):
    model_config = {"extra": "forbid"}

    scan_id: str = Field(min_length=1, max_length=36)
    reason: str = Field(min_length=1, max_length=5000,
                        description="Why the decision is wrong (shown to the claimant)")


class Move(BaseModel):
    model_config = {"extra": "forbid"}

    note: str | None = Field(None, max_length=2000,
                             description="Why (required for an appeal)")


@router.post("", status_code=201, response_model=DisputeOut, responses=problems.responses(
    403, 404, 409, s409="The scan has no decision yet, or it is (or was) disputed already"))
def create(ctx: Ctx, who: Caller, body: DisputeIn, response: Response) -> DisputeOut:
    """Dispute the restriction on one of your scans (within 183 days of the decision)."""
    out = open_dispute(ctx.db, scan_id=body.scan_id, reason=body.reason, who=who)
    response.headers["Location"] = f"/v1/disputes/{out.id}"
    return out


@router.get("", response_model=list[DisputeOut])
def disputes(ctx: Ctx, who: Caller,
             state: Annotated[str | None, Query(pattern="^(" + "|".join(STATES) + ")$")] = None,
             scan_id: Annotated[str | None, Query(max_length=36)] = None,
             limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DisputeOut]:
    """Newest first: yours, those you are claimant of, or (moderators) all."""
    return list_disputes(ctx.db, who=who, state=state, scan_id=scan_id, limit=limit)


@router.get("/{dispute_id}", response_model=DisputeOut, responses=problems.responses(404))
def dispute(ctx: Ctx, who: Caller, dispute_id: Id) -> DisputeOut:
    return get_dispute(ctx.db, dispute_id, who=who)


@router.post("/{dispute_id}/release", response_model=DisputeOut, responses=_MOVE)
def release(ctx: Ctx, who: Caller, dispute_id: Id, body: Move | None = None) -> DisputeOut:
    """Claimant: release the claim (the decision drops it)."""
    return act(ctx.db, dispute_id, event="release", who=who, note=body.note if body else None)


@router.post("/{dispute_id}/uphold", response_model=DisputeOut, responses=_MOVE)
def uphold(ctx: Ctx, who: Caller, dispute_id: Id, body: Move | None = None) -> DisputeOut:
    """Claimant: the claim stands; the uploader may appeal within 30 days."""
    return act(ctx.db, dispute_id, event="uphold", who=who, note=body.note if body else None)


@router.post("/{dispute_id}/appeal", response_model=DisputeOut, responses=_MOVE)
def appeal(ctx: Ctx, who: Caller, dispute_id: Id, body: Move) -> DisputeOut:
    """Uploader: appeal an upheld claim (a note is required)."""
    return act(ctx.db, dispute_id, event="appeal", who=who, note=body.note)


@router.post("/{dispute_id}/takedown", response_model=DisputeOut, responses=_MOVE)
def takedown(ctx: Ctx, who: Caller, dispute_id: Id, body: Move | None = None) -> DisputeOut:
    """Claimant: answer an appeal with a takedown (``block``, decided by a person)."""
    return act(ctx.db, dispute_id, event="takedown", who=who,
               note=body.note if body else None)
