# SPDX-License-Identifier: Apache-2.0
"""``/v1/reviews``: the review queue and a person's decision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from earmark.api import problems
from earmark.api.deps import Ctx, Id, require
from earmark.moderation.policy import MuteSpan
from earmark.service.access import Principal
from earmark.service.reviews import ReviewOut, decide_review, get_review, list_reviews

router = APIRouter(prefix="/v1/reviews", tags=["reviews"], responses=problems.responses(401, 403))
Moderator = Annotated[Principal, Depends(require("moderator"))]


@router.get("", response_model=list[ReviewOut])
def reviews(ctx: Ctx, who: Moderator,
            status: Annotated[str | None, Query(pattern="^(pending|decided)$")] = "pending",
            owner: Annotated[str | None, Query(max_length=120)] = None,
            reason: Annotated[str | None, Query(max_length=64)] = None,
            ai: bool | None = None, short: bool | None = None,
            older_than_h: Annotated[float | None, Query(ge=0, le=1e6)] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[ReviewOut]:
    """Oldest first."""
    return list_reviews(ctx.db, status=status, owner=owner, reason=reason, ai=ai,
                        short=short, older_than_h=older_than_h, limit=limit)


@router.get("/{review_id}", response_model=ReviewOut, responses=problems.responses(404))
def review(ctx: Ctx, who: Moderator, review_id: Id) -> ReviewOut:
    return get_review(ctx.db, review_id)


class ReviewDecision(BaseModel):
    model_config = {"extra": "forbid"}

    action: str = Field(pattern="^(allow|track|label|monetize|mute|block)$")
    note: str | None = Field(default=None, max_length=2000)
    mute: list[MuteSpan] | None = Field(default=None, max_length=1000)


@router.post("/{review_id}/decision", response_model=ReviewOut, responses=problems.responses(
    404, 409, s409="Already decided (`review_already_decided`)"))
def decide(ctx: Ctx, who: Moderator, review_id: Id, body: ReviewDecision) -> ReviewOut:
    """Decide a pending review (409 when someone already has)."""
    return decide_review(ctx.db, review_id, action=body.action,  # type: ignore[arg-type]
                         reviewer=who.id, note=body.note, mute=body.mute)
