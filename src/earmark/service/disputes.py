# SPDX-License-Identifier: Apache-2.0
"""Disputes and appeals of decisions, recorded: who may move, and what each move causes.

The timeline itself is the pure state machine of :mod:`earmark.moderation.disputes`; this
module checks who is asking, applies a legal move to the ``disputes`` row and records it
everywhere in one transaction: the dispute's ``history`` (actor, time, note), the audit
chain (``dispute.<event>``), a ``dispute`` webhook event and — when the outcome changes the
scan's decision — :func:`~earmark.service.decisions.record_decision`, which also issues the
statement of reasons of a new restriction.

Opening a dispute on an automated ``block`` or ``mute`` also queues the scan for a person
(review reason ``dispute``): the EU copyright directive's Art. 17(9) asks that complaints
about such removals get human review. The review is closed when the dispute ends.
:func:`expire_due` (run by every worker's housekeeping) ends the windows that ran out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from earmark.errors import EarmarkError
from earmark.evidence import Evidence
from earmark.moderation import audit
from earmark.moderation.disputes import (
    ACTIVE,
    MODERATORS,
    PARTY,
    DeadlinePassed,
    DisputeConflict,
    Party,
    Step,
    allowed,
    claimant_of,
    released,
    start,
    taken_down,
    transition,
)
from earmark.moderation.policy import Decision
from earmark.service.access import Forbidden, Principal
from earmark.service.decisions import emit, open_review, record_decision
from earmark.service.scans import ScanNotFound
from earmark.store.db import Database
from earmark.store.models import Dispute, Review, Scan, utcnow
from earmark.utc import UtcDatetime, naive_utc, rfc3339

__all__ = ["DisputeConflict", "DisputeInvalid", "DisputeNotFound", "DisputeOut", "act",
           "expire_due", "get_dispute", "list_disputes", "open_dispute"]

#: the moves a party makes through the API (``expire`` is the clock's)
MOVES: tuple[str, ...] = ("release", "uphold", "appeal", "takedown")
MAX_REASON = 5000
MAX_NOTE = 2000
_BATCH = 200


class DisputeNotFound(EarmarkError):
    code = "dispute_not_found"


class DisputeInvalid(EarmarkError):
    code = "invalid_request"


class DisputeOut(BaseModel):
    """A dispute as the API shows it; ``next`` lists the moves its state allows."""

    id: int
    scan_id: str
    owner: str | None  #: the claimant owner; None when the moderators answer
    claimant: str
    state: str
    active: bool
    opened_by: str | None
    reason: str
    history: list[dict[str, Any]]
    due_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    next: list[str]


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return utcnow()
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now


def _iso(t: dt.datetime | None) -> str | None:
    """A time in the dispute's history: RFC 3339 UTC, like the API's (:mod:`earmark.utc`)."""
    return rfc3339(t, "seconds") if t is not None else None


def _time(v: Any) -> dt.datetime | None:
    """A time read back from a dispute's history (naive UTC; rows written before the times
    carried ``Z`` have none)."""
    return naive_utc(dt.datetime.fromisoformat(v)) if isinstance(v, str) else None


def _is_uploader(who: Principal, scan: Scan) -> bool:
    return scan.submitted_by is not None and scan.submitted_by == who.id


def _is_claimant(who: Principal, owner: str | None) -> bool:
    return who.role == "owner" and owner is not None and who.owner == owner


def _visible(who: Principal, d: Dispute, scan: Scan) -> bool:
    return who.at_least("moderator") or _is_uploader(who, scan) or _is_claimant(who, d.owner)


def _may(who: Principal, party: Party, d: Dispute, scan: Scan) -> bool:
    if who.at_least("moderator"):
        return party != "system"
    if party == "uploader":
        return _is_uploader(who, scan)
    if party == "claimant":
        return _is_claimant(who, d.owner)
    return False


def _out(d: Dispute, scan: Scan, who: Principal) -> DisputeOut:
    """Non-moderators see the actors of their own moves only (the other side's keys and
    names are not theirs to know)."""
    mod = who.at_least("moderator")
    history = [h if mod or h.get("actor") in (who.id, "system") else {**h, "actor": None}
               for h in d.history or []]
    return DisputeOut(
        id=d.id, scan_id=d.scan_id, owner=d.owner, claimant=d.owner or MODERATORS,
        state=d.state, active=d.state in ACTIVE,
        opened_by=d.opened_by if mod or d.opened_by == who.id else None, reason=d.reason,
        history=history, due_at=d.due_at, created_at=d.created_at, updated_at=d.updated_at,
        next=[e for e in allowed(d.state) if e != "expire"])


def _scan_for(s: Session, scan_id: str) -> Scan:
    scan = s.get(Scan, scan_id, with_for_update=True)  # PostgreSQL: one dispute step at once
    if scan is None:
        raise ScanNotFound(f"no scan {scan_id!r}")
    return scan


# -- opening --------------------------------------------------------------------------------
def _check_new(s: Session, scan: Scan, decision: Decision) -> None:
    """One active dispute per scan, one dispute per decision, none of a takedown."""
    decided = decision.decided_at
    for d in s.scalars(select(Dispute).where(Dispute.scan_id == scan.id)):
        if d.state in ACTIVE:
            raise DisputeConflict(f"dispute {d.id} on this scan is still {d.state}; one "
                                  "dispute at a time")
        hist = d.history or []
        if hist and _time((hist[0].get("decision") or {}).get("decided_at")) == decided:
            raise DisputeConflict(f"this decision was already disputed (dispute {d.id}, "
                                  f"{d.state})")
        if any(_time((h.get("result") or {}).get("decided_at")) == decided
               and h.get("event") == "takedown" for h in hist):
            raise DisputeConflict(
                f"this decision ended the appeal of dispute {d.id}; the platform's complaint "
                "handling is done: out-of-court dispute settlement (DSA Art. 21) and the "
                "courts remain open")


def _queue_review(s: Session, scan: Scan, decision: Decision) -> int | None:
    """Art. 17(9): a person looks at a disputed automated removal."""
    if decision.action not in ("block", "mute") or not decision.automated:
        return None
    return open_review(s, scan, Evidence.model_validate(scan.evidence), "dispute")


def open_dispute(db: Database, *, scan_id: str, reason: str, who: Principal,
                 now: dt.datetime | None = None) -> DisputeOut:
    """Dispute the restrictive decision on ``scan_id`` (the uploader, or a moderator).

    Raises
    ------
    ScanNotFound
        No such scan, or not one the caller may see.
    Forbidden
        The caller sees the scan (as a claimant) but did not upload it.
    DisputeConflict
        No restriction to dispute, the window closed, or a dispute already runs.
    DisputeInvalid
        The reason is empty or longer than 5000 characters.
    """
    now = _now(now)
    reason = (reason or "").strip()
    if not 1 <= len(reason) <= MAX_REASON:
        raise DisputeInvalid(f"a dispute needs a reason of 1 to {MAX_REASON} characters")
    with db.session() as s:
        scan = _scan_for(s, scan_id)
        if not (who.at_least("moderator") or _is_uploader(who, scan)):
            if who.owns_a_match(scan.evidence):
                raise Forbidden("only the uploader (or a moderator) may dispute a decision")
            raise ScanNotFound(f"no scan {scan_id!r}")
        if scan.decision is None or scan.evidence is None:
            raise DisputeConflict(f"scan {scan_id} has no decision yet ({scan.status})")
        decision = Decision.model_validate(scan.decision)
        _check_new(s, scan, decision)
        step = start(decision_action=decision.action, decided_at=decision.decided_at, now=now)
        owner = claimant_of(decision)
        d = Dispute(scan_id=scan.id, owner=owner, state=step.state, opened_by=who.id,
                    reason=reason, due_at=step.due_at, created_at=now, updated_at=now,
                    history=[])
        s.add(d)
        s.flush()
        review_id = _queue_review(s, scan, decision)
        d.history = [{"at": _iso(now), "event": "open", "party": "uploader", "actor": who.id,
                      "from": None, "to": step.state, "due_at": _iso(step.due_at),
                      "note": None, "claimant": owner or MODERATORS, "review_id": review_id,
                      "decision": {"action": decision.action, "by": decision.by,
                                   "automated": decision.automated,
                                   "decided_at": rfc3339(decision.decided_at)}}]
        _record(s, d, scan, event="open", actor=who.id, prev=None,
                extra={"review_id": review_id, "disputed": decision.action})
        return _out(d, scan, who)


# -- moves ----------------------------------------------------------------------------------
def _record(s: Session, d: Dispute, scan: Scan, *, event: str, actor: str,
            prev: str | None, extra: dict[str, Any] | None = None) -> None:
    audit.append(s, actor=actor, action=f"dispute.{event}", subject=f"dispute:{d.id}",
                 data={"scan_id": scan.id, "from": prev, "to": d.state,
                       "due_at": _iso(d.due_at), "claimant": d.owner or MODERATORS,
                       "action": scan.action, **(extra or {})})
    emit(s, "dispute", {"dispute_id": d.id, "scan_id": scan.id,
                        "external_id": scan.external_id, "event": event, "state": d.state,
                        "claimant": d.owner or MODERATORS, "due_at": _iso(d.due_at),
                        "action": scan.action})


def _outcome(s: Session, d: Dispute, scan: Scan, step: Step, *, event: str, actor: str,
             now: dt.datetime) -> dict[str, Any] | None:
    """Apply the move's outcome to the scan's decision; what it became (None: unchanged)."""
    if step.outcome is None or scan.decision is None or scan.evidence is None:
        return None
    prior = Decision.model_validate(scan.decision)
    claimant = d.owner or MODERATORS
    if step.outcome == "takedown":
        new = taken_down(prior, by=f"notice:{d.id}" if d.owner else f"dispute:{d.id}",
                         why=f"dispute {d.id}: taken down after the appeal ({claimant})")
    else:
        ev = Evidence.model_validate(scan.evidence)
        why = (f"dispute {d.id}: no answer from {claimant} in time; the claim lapsed"
               if event == "expire" else f"dispute {d.id}: {claimant} released the claim")
        new = released(prior, ev, d.owner, by=f"dispute:{d.id}",
                       automated=event == "expire", why=why)
        if (new.action, new.mute, new.labels) == (prior.action, prior.mute, prior.labels):
            return None
    new = new.model_copy(update={"decided_at": now})
    record_decision(s, scan, new, actor=actor, note=f"dispute {d.id}: {event}")
    return {"action": new.action, "decided_at": rfc3339(new.decided_at)}


def _close_review(s: Session, d: Dispute, scan: Scan, *, actor: str,
                  now: dt.datetime) -> int | None:
    r = s.scalars(select(Review).where(Review.scan_id == scan.id, Review.status == "pending",
                                       Review.reason == "dispute")).first()
    if r is None:
        return None
    r.status, r.action, r.reviewer, r.decided_at = "decided", scan.action, actor, now
    r.note = f"resolved by dispute {d.id} ({d.state})"
    return r.id


def _apply(s: Session, d: Dispute, scan: Scan, step: Step, *, event: str, actor: str,
           note: str | None, now: dt.datetime) -> None:
    prev = d.state
    result = _outcome(s, d, scan, step, event=event, actor=actor, now=now)
    d.state, d.due_at, d.updated_at = step.state, step.due_at, now
    entry: dict[str, Any] = {"at": _iso(now), "event": event, "party": PARTY[event],
                             "actor": actor, "from": prev, "to": step.state,
                             "due_at": _iso(step.due_at), "note": note}
    if result is not None:
        entry["result"] = result
    d.history = [*(d.history or []), entry]
    closed = _close_review(s, d, scan, actor=actor, now=now) if step.final else None
    _record(s, d, scan, event=event, actor=actor, prev=prev,
            extra={"has_note": note is not None, "decision_changed": result is not None,
                   "review_closed": closed})


def act(db: Database, dispute_id: int, *, event: str, who: Principal,
        note: str | None = None, now: dt.datetime | None = None) -> DisputeOut:
    """Make a party's move (``release``, ``uphold``, ``appeal`` or ``takedown``).

    The uploader appeals; the claimant (its owner, or moderators) releases, upholds and
    takes down; moderators and admins may make any move. A move after its window ended
    expires the dispute instead (and is refused with 409).

    Raises
    ------
    DisputeNotFound
        No such dispute, or not one the caller may see.
    Forbidden
        The caller is not the party that makes this move.
    DisputeConflict
        The move does not follow the dispute's state, or its window ended.
    DisputeInvalid
        Unknown move, a note over 2000 characters, or an appeal without a note.
    """
    if event not in MOVES:
        raise DisputeInvalid(f"a move is one of {', '.join(MOVES)}")
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise DisputeInvalid(f"a note has at most {MAX_NOTE} characters")
    if event == "appeal" and note is None:
        raise DisputeInvalid("an appeal needs a note saying why the claim is wrong")
    now = _now(now)
    late: DeadlinePassed | None = None
    with db.session() as s:
        d = s.get(Dispute, dispute_id, with_for_update=True)
        scan = s.get(Scan, d.scan_id) if d is not None else None
        if d is None or scan is None or not _visible(who, d, scan):
            raise DisputeNotFound(f"no dispute {dispute_id}")
        party = PARTY[event]
        if not _may(who, party, d, scan):
            side = ("the uploader" if party == "uploader"
                    else f"the claimant ({d.owner or MODERATORS})")
            raise Forbidden(f"only {side} or a moderator may {event} this dispute")
        try:
            step = transition(d.state, event, now=now, due_at=d.due_at)
        except DeadlinePassed as exc:
            late = exc
            step = transition(d.state, "expire", now=now, due_at=d.due_at)
            _apply(s, d, scan, step, event="expire", actor="system", note=None, now=now)
        else:
            _apply(s, d, scan, step, event=event, actor=who.id, note=note, now=now)
        out = _out(d, scan, who)
    if late is not None:
        raise DisputeConflict(f"{late}; the dispute is now {out.state}")
    return out


def expire_due(db: Database, *, now: dt.datetime | None = None) -> int:
    """End every window that ran out by ``now``; the number of disputes moved.

    An open dispute or an appeal without an answer expires (the claim is released); an
    upheld claim without an appeal stands. Called by :meth:`Worker.housekeeping`; ``now``
    lets tests run the clock forward.
    """
    now = _now(now)
    n = 0
    while True:
        with db.session() as s:
            rows = s.scalars(
                select(Dispute).where(Dispute.state.in_(ACTIVE), Dispute.due_at <= now)
                .order_by(Dispute.due_at, Dispute.id).limit(_BATCH)
                .with_for_update(skip_locked=True)).all()
            for d in rows:
                scan = s.get(Scan, d.scan_id)
                assert scan is not None
                step = transition(d.state, "expire", now=now, due_at=d.due_at)
                _apply(s, d, scan, step, event="expire", actor="system", note=None, now=now)
            n += len(rows)
        if len(rows) < _BATCH:
            return n


# -- reading --------------------------------------------------------------------------------
def list_disputes(db: Database, *, who: Principal, state: str | None = None,
                  scan_id: str | None = None, limit: int = 100) -> list[DisputeOut]:
    """Newest first: uploaders see disputes of their scans, owners those they are
    claimant of (and of their own uploads), moderators and admins all."""
    q = (select(Dispute, Scan).join(Scan, Scan.id == Dispute.scan_id)
         .order_by(Dispute.created_at.desc(), Dispute.id.desc())
         .limit(max(1, min(limit, 1000))))
    if state:
        q = q.where(Dispute.state == state)
    if scan_id:
        q = q.where(Dispute.scan_id == scan_id)
    if not who.at_least("moderator"):
        mine = [Scan.submitted_by == who.id]
        if who.role == "owner" and who.owner:
            mine.append(Dispute.owner == who.owner)
        q = q.where(or_(*mine))
    with db.reader() as s:
        return [_out(d, scan, who) for d, scan in s.execute(q).all()]


def get_dispute(db: Database, dispute_id: int, *, who: Principal) -> DisputeOut:
    with db.reader() as s:
        d = s.get(Dispute, dispute_id)
        scan = s.get(Scan, d.scan_id) if d is not None else None
        if d is None or scan is None or not _visible(who, d, scan):
            raise DisputeNotFound(f"no dispute {dispute_id}")
        return _out(d, scan, who)
