# SPDX-License-Identifier: Apache-2.0
"""The review queue: scans a policy sent to a person, and the person's decision."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select

from earmark.errors import EarmarkError
from earmark.evidence import Evidence
from earmark.moderation import audit
from earmark.moderation.policy import Action, Decision, MuteSpan
from earmark.service.decisions import record_decision
from earmark.store.db import Database
from earmark.store.models import Dispute, Review, Scan, utcnow
from earmark.utc import UtcDatetime

#: what a reviewer may decide (``review`` again would loop)
REVIEW_ACTIONS: tuple[Action, ...] = ("allow", "track", "label", "monetize", "mute", "block")


class ReviewNotFound(EarmarkError):
    code = "review_not_found"


class ReviewConflict(EarmarkError):
    code = "review_already_decided"


class ReviewOut(BaseModel):
    id: int
    scan_id: str
    status: Literal["pending", "decided"]
    reason: str
    owners: list[str]
    ai_probability: float | None
    match_ms: int | None
    created_at: UtcDatetime
    decided_at: UtcDatetime | None
    reviewer: str | None
    action: str | None
    note: str | None
    filename: str | None = None


def _out(r: Review, filename: str | None = None) -> ReviewOut:
    return ReviewOut(id=r.id, scan_id=r.scan_id, status=r.status,  # type: ignore[arg-type]
                     reason=r.reason, owners=list(r.owners or []),
                     ai_probability=r.ai_probability, match_ms=r.match_ms,
                     created_at=r.created_at, decided_at=r.decided_at, reviewer=r.reviewer,
                     action=r.action, note=r.note, filename=filename)


def list_reviews(db: Database, *, status: str | None = "pending", owner: str | None = None,
                 reason: str | None = None, ai: bool | None = None,
                 short: bool | None = None, older_than_h: float | None = None,
                 limit: int = 100, short_ms: int = 10_000) -> list[ReviewOut]:
    """Oldest first (the queue's order), filtered as the review page's controls ask."""
    q = (select(Review, Scan.filename).join(Scan, Scan.id == Review.scan_id)
         .order_by(Review.created_at, Review.id))
    if status:
        q = q.where(Review.status == status)
    if reason:
        q = q.where(Review.reason == reason)
    if ai is True:
        q = q.where(Review.ai_probability >= 0.5)
    elif ai is False:
        q = q.where((Review.ai_probability < 0.5) | Review.ai_probability.is_(None))
    if short is True:
        q = q.where(Review.match_ms < short_ms)
    elif short is False:
        q = q.where((Review.match_ms >= short_ms) | Review.match_ms.is_(None))
    if older_than_h is not None:
        q = q.where(Review.created_at < utcnow() - dt.timedelta(hours=older_than_h))
    with db.reader() as s:
        rows = s.execute(q).all()
    out = [_out(r, fn) for r, fn in rows if owner is None or owner in (r.owners or [])]
    return out[:max(1, min(limit, 1000))]


def get_review(db: Database, review_id: int) -> ReviewOut:
    with db.reader() as s:
        r = s.get(Review, review_id)
        if r is None:
            raise ReviewNotFound(f"no review {review_id}")
        scan = s.get(Scan, r.scan_id)
        return _out(r, scan.filename if scan else None)


def decide_review(db: Database, review_id: int, *, action: Action, reviewer: str,
                  note: str | None = None, mute: list[MuteSpan] | None = None) -> ReviewOut:
    """Record a person's decision on a pending review; the scan's decision becomes it (with
    every consequence: statement, audit, webhooks)."""
    if action not in REVIEW_ACTIONS:
        raise EarmarkError(f"a review decides one of {', '.join(REVIEW_ACTIONS)}")
    with db.session() as s:
        r = s.get(Review, review_id, with_for_update=True)  # PostgreSQL: one decider
        if r is None:
            raise ReviewNotFound(f"no review {review_id}")
        if r.status != "pending":
            raise ReviewConflict(f"review {review_id} was already decided ({r.action} by "
                                 f"{r.reviewer})")
        if r.reason == "dispute":
            did = s.scalars(select(Dispute.id).where(Dispute.scan_id == r.scan_id)
                            .order_by(Dispute.id.desc())).first()
            raise ReviewConflict(
                f"review {review_id} is the human review of dispute {did}: decide it there "
                f"(POST /v1/disputes/{did}/release or /uphold, or /takedown on an appeal), "
                "so that the dispute and the decision agree")
        scan = s.get(Scan, r.scan_id, with_for_update=True)
        assert scan is not None and scan.evidence is not None
        ev = Evidence.model_validate(scan.evidence)
        prior = Decision.model_validate(scan.decision) if scan.decision else None
        if action == "mute" and not mute:
            mute = [MuteSpan(start_ms=sg.query_start_ms, end_ms=sg.query_end_ms)
                    for m in ev.identification.matches for sg in m.segments]
        labels = ["ai_generated"] if action == "label" or (
            prior is not None and "ai_generated" in prior.labels) else []
        reason = f"reviewed by {reviewer}: {action}" + (f" ({note})" if note else "")
        d = Decision(action=action, labels=labels, mute=(mute or []) if action == "mute" else [],
                     owners=prior.owners if prior else [],
                     reasons=[reason, *(prior.reasons if prior else [])],
                     policy_versions=prior.policy_versions if prior else {},
                     automated=False, by=f"review:{reviewer}")
        r.status, r.action, r.reviewer, r.note = "decided", action, reviewer, note
        r.decided_at = utcnow()
        audit.append(s, actor=reviewer, action="review.decide", subject=f"review:{r.id}",
                     data={"scan_id": scan.id, "action": action, "note": note})
        record_decision(s, scan, d, actor=reviewer, note=note)
        s.flush()
        return _out(r, scan.filename)
