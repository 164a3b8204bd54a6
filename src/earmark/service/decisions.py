# SPDX-License-Identifier: Apache-2.0
"""Recording a decision and everything it causes, in one transaction.

Whoever decides — the policy engine after a scan, a reviewer, a dispute's outcome — goes
through :func:`record_decision`: the scan gets the decision, a ``review`` decision opens a
review, a restriction gets its DSA statement of reasons, the audit chain gets an entry and
each subscribed webhook an outbox delivery. Nothing of it is visible until all of it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from earmark.evidence import Evidence
from earmark.moderation import audit
from earmark.moderation.policy import RESTRICTIONS, Decision, PolicyBody, PolicyVersion
from earmark.moderation.statements import build_statement
from earmark.store.models import Delivery, Policy, Review, Scan, Statement, Webhook

#: a match shorter than this is a "short match" in the review queue
SHORT_MATCH_MS = 10_000


def newest_policies(s: Session) -> list[Policy]:
    """The rows of the newest version of every owner's policy, by owner."""
    newest = (select(Policy.owner, func.max(Policy.version).label("v"))
              .group_by(Policy.owner).subquery())
    return list(s.scalars(select(Policy).join(newest, (Policy.owner == newest.c.owner)
                                              & (Policy.version == newest.c.v))
                          .order_by(Policy.owner)).all())


def current_policies(s: Session) -> dict[str, PolicyVersion]:
    """The newest version of every owner's policy (read once per scan: one row per owner,
    not every version ever saved)."""
    return {p.owner: PolicyVersion(owner=p.owner, version=p.version,
                                   body=PolicyBody.model_validate(p.body))
            for p in newest_policies(s)}


def review_reason(ev: Evidence, decision: Decision) -> str:
    """Why a scan is in the review queue, in one word the queue can filter on."""
    joined = " ".join(decision.reasons)
    if "not manifest" in joined:
        return "not_manifest"
    best = ev.best_match
    if best is not None and best.query_match_ms < SHORT_MATCH_MS:
        return "short_match"
    if ev.ai is not None and ev.ai.label == "ai":
        return "ai"
    return "policy"


def emit(s: Session, event: str, payload: Mapping[str, Any]) -> int:
    """Queue ``event`` for every active webhook that subscribes to it (outbox)."""
    n = 0
    for wh in s.scalars(select(Webhook).where(Webhook.active.is_(True))).all():
        if not wh.events or event in wh.events:
            s.add(Delivery(webhook_id=wh.id, event=event, payload=dict(payload)))
            n += 1
    return n


def open_review(s: Session, scan: Scan, ev: Evidence, reason: str) -> int:
    """The scan's pending review, opened (and announced to webhooks) if it has none."""
    pending = s.scalars(select(Review).where(Review.scan_id == scan.id,
                                             Review.status == "pending")).first()
    if pending is not None:
        return pending.id
    best = ev.best_match
    r = Review(scan_id=scan.id, reason=reason, owners=ev.owners,
               ai_probability=ev.ai.ai_probability if ev.ai else None,
               match_ms=best.query_match_ms if best else None)
    s.add(r)
    s.flush()
    emit(s, "review", {"scan_id": scan.id, "external_id": scan.external_id, "reason": reason})
    return r.id


def record_decision(s: Session, scan: Scan, decision: Decision, *, actor: str,
                    note: str | None = None) -> None:
    """Give ``scan`` its decision with every consequence, in the session's transaction."""
    if scan.evidence is None:
        raise ValueError(f"scan {scan.id} has no evidence to decide on")
    ev = Evidence.model_validate(scan.evidence)
    data = decision.model_dump(mode="json")
    scan.decision, scan.action, scan.decided_by = data, decision.action, decision.by
    if decision.action == "review":
        open_review(s, scan, ev, review_reason(ev, decision))
    if decision.action in RESTRICTIONS:
        body = build_statement(ev, decision, scan_id=scan.id, created_at=decision.decided_at)
        s.add(Statement(scan_id=scan.id, action=decision.action, body=body))
    audit.append(s, actor=actor, action="decision", subject=f"scan:{scan.id}",
                 data={"action": decision.action, "by": decision.by,
                       "policy_versions": decision.policy_versions,
                       "reasons": decision.reasons[:20], "note": note})
    emit(s, "decision", {"scan_id": scan.id, "external_id": scan.external_id,
                         "action": decision.action, "labels": decision.labels,
                         "by": decision.by})
