# SPDX-License-Identifier: Apache-2.0
"""Disputes and appeals: Content ID's timeline as a pure state machine.

An uploader disputes a restrictive decision within the complaint window (the DSA's Art. 20
keeps the internal complaint-handling system open for at least six months after the
decision: :data:`COMPLAINT_WINDOW_DAYS`). The claimant — the owner whose policy decided, or
the moderators for a platform rule or a person's decision — then has
:data:`RESPONSE_DAYS` to answer:

============  ==========  =========  ===================================================
state         event       party      next state (outcome for the scan's decision)
============  ==========  =========  ===================================================
(none)        open        uploader   ``open`` (claimant's window starts)
``open``      release     claimant   ``released`` (decision drops the claim)
``open``      uphold      claimant   ``upheld`` (uploader's appeal window starts)
``open``      expire      system     ``expired`` (treated as a release)
``upheld``    appeal      uploader   ``appealed`` (claimant's window starts again)
``upheld``    release     claimant   ``released`` (the claimant withdraws)
``upheld``    expire      system     ``claim_stands`` (no appeal came)
``appealed``  release     claimant   ``released``
``appealed``  takedown    claimant   ``taken_down`` (``block``, decided by a person)
``appealed``  expire      system     ``expired`` (treated as a release)
============  ==========  =========  ===================================================

Every other pair is refused (:class:`DisputeConflict`). A party's move must come before the
window's end (``due_at``), except a release, which is always possible while the dispute is
active; ``expire`` only once the window has ended. Moderators and admins may act as either
party. Nothing here touches a database: :mod:`earmark.service.disputes` records the steps.

>>> import datetime as dt
>>> t0 = dt.datetime(2026, 1, 1)
>>> step = transition("open", "uphold", now=t0, due_at=t0 + dt.timedelta(days=30))
>>> step.state, step.due_at
('upheld', datetime.datetime(2026, 1, 31, 0, 0))
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from earmark.errors import EarmarkError
from earmark.evidence import Evidence
from earmark.moderation.policy import (
    ACTIONS,
    PLATFORM,
    RESTRICTIONS,
    Action,
    Decision,
    MuteSpan,
    OwnerDecision,
    severity,
)

#: days after a decision during which it may be disputed (DSA Art. 20(1): at least six months)
COMPLAINT_WINDOW_DAYS = 183
#: days the claimant has to answer a dispute or an appeal
RESPONSE_DAYS = 30
#: days the uploader has to appeal an upheld claim
APPEAL_DAYS = 30

State = Literal["open", "upheld", "appealed", "released", "expired", "claim_stands",
                "taken_down"]
Event = Literal["open", "release", "uphold", "appeal", "takedown", "expire"]
Party = Literal["uploader", "claimant", "system"]
Outcome = Literal["release", "takedown"]

#: states in which the dispute waits for someone (one such dispute per scan)
ACTIVE: frozenset[str] = frozenset({"open", "upheld", "appealed"})
#: states that end a dispute
FINAL: frozenset[str] = frozenset({"released", "expired", "claim_stands", "taken_down"})
STATES: tuple[str, ...] = ("open", "upheld", "appealed", "released", "expired",
                           "claim_stands", "taken_down")
#: who makes each move
PARTY: dict[str, Party] = {"open": "uploader", "appeal": "uploader", "release": "claimant",
                           "uphold": "claimant", "takedown": "claimant", "expire": "system"}
#: claimant shown for a claim that no owner made (platform rules, a person's decision)
MODERATORS = "moderators"


@dataclass(frozen=True)
class _Edge:
    to: State
    window_days: int | None  #: a new window of this many days starts (None: none)
    outcome: Outcome | None


_EDGES: dict[tuple[str, str], _Edge] = {
    ("open", "release"): _Edge("released", None, "release"),
    ("open", "uphold"): _Edge("upheld", APPEAL_DAYS, None),
    ("open", "expire"): _Edge("expired", None, "release"),
    ("upheld", "appeal"): _Edge("appealed", RESPONSE_DAYS, None),
    ("upheld", "release"): _Edge("released", None, "release"),
    ("upheld", "expire"): _Edge("claim_stands", None, None),
    ("appealed", "release"): _Edge("released", None, "release"),
    ("appealed", "takedown"): _Edge("taken_down", None, "takedown"),
    ("appealed", "expire"): _Edge("expired", None, "release"),
}


class DisputeConflict(EarmarkError):
    """The move does not fit the dispute's state or its deadlines (HTTP 409)."""

    code = "dispute_conflict"


class DeadlinePassed(DisputeConflict):
    """A party moved after its window ended; the dispute expires instead."""


@dataclass(frozen=True)
class Step:
    """The result of one legal move."""

    state: State
    due_at: dt.datetime | None  #: end of the window now running (None once final)
    outcome: Outcome | None  #: what happens to the scan's decision, if anything

    @property
    def final(self) -> bool:
        return self.state in FINAL


def allowed(state: str) -> list[str]:
    """The events that may follow ``state`` (empty for a final state)."""
    return [e for (s, e) in _EDGES if s == state]


def _fmt(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds") + "Z"


def transition(state: str, event: str, *, now: dt.datetime,
               due_at: dt.datetime | None) -> Step:
    """The state after ``event``, with the new window's end and the outcome.

    Parameters
    ----------
    state : str
        The dispute's state now.
    event : str
        One of ``release``, ``uphold``, ``appeal``, ``takedown``, ``expire``.
    now : datetime
        The time of the move (naive UTC).
    due_at : datetime or None
        End of the window now running.

    Raises
    ------
    DisputeConflict
        The pair is not in the table, or ``expire`` came before ``due_at``.
    DeadlinePassed
        A party's move (other than a release) came at or after ``due_at``.
    """
    edge = _EDGES.get((state, event))
    if edge is None:
        if state in FINAL:
            raise DisputeConflict(f"the dispute is closed ({state}); nothing can follow")
        nxt = ", ".join(allowed(state)) or "nothing"
        raise DisputeConflict(f"cannot {event} a dispute that is {state} (possible: {nxt})")
    if event == "expire":
        if due_at is not None and now < due_at:
            raise DisputeConflict(f"the window of this {state} dispute runs until "
                                  f"{_fmt(due_at)}; it cannot expire before")
    elif event != "release" and due_at is not None and now >= due_at:
        raise DeadlinePassed(f"the window for {event} ended at {_fmt(due_at)}")
    new_due = now + dt.timedelta(days=edge.window_days) if edge.window_days else None
    return Step(edge.to, new_due, edge.outcome)


def start(*, decision_action: str, decided_at: dt.datetime, now: dt.datetime) -> Step:
    """Opening a dispute on a decision: only a restriction, only within the window.

    Raises
    ------
    DisputeConflict
        The decision restricts nothing, or the complaint window has closed.
    """
    if decision_action not in RESTRICTIONS:
        raise DisputeConflict(
            f"the decision is {decision_action!r}; only restrictions "
            f"({', '.join(a for a in ACTIONS if a in RESTRICTIONS)}) can be disputed")
    closes = complaint_deadline(decided_at)
    if now >= closes:
        raise DisputeConflict(
            f"the complaint window of {COMPLAINT_WINDOW_DAYS} days closed at {_fmt(closes)}; "
            "out-of-court dispute settlement (DSA Art. 21) and the courts remain open")
    return Step("open", now + dt.timedelta(days=RESPONSE_DAYS), None)


def complaint_deadline(decided_at: dt.datetime) -> dt.datetime:
    """The end of the window in which a decision may be disputed."""
    return decided_at + dt.timedelta(days=COMPLAINT_WINDOW_DAYS)


# -- the claim and what a dispute's outcome makes of the decision ---------------------------
def _key(owner: str | None) -> str | None:
    """An owner as a claimant: ``None`` (moderators) for platform and unknown owners."""
    return None if owner in (None, PLATFORM, "unknown") else owner


def claimant_of(decision: Decision) -> str | None:
    """The owner whose claim restricts the upload, or ``None`` when the moderators answer.

    The owner with the most restrictive part among those asking a restriction or a review;
    a platform rule, an unowned reference or a decision no owner's part explains (a
    person's) is answered by the moderators.
    """
    parts = [o for o in decision.owners
             if _key(o.owner) is not None and (o.action in RESTRICTIONS or o.action == "review")]
    if not parts:
        return None
    best = max(parts, key=lambda o: severity(o.action))
    top = max((o for o in decision.owners), key=lambda o: severity(o.action))
    if severity(top.action) > severity(best.action) and _key(top.owner) is None:
        return None  # the platform's part decided
    return best.owner


def _merge(spans: list[MuteSpan]) -> list[MuteSpan]:
    out: list[MuteSpan] = []
    for s in sorted(spans, key=lambda s: s.start_ms):
        if out and s.start_ms <= out[-1].end_ms:
            out[-1] = MuteSpan(start_ms=out[-1].start_ms, end_ms=max(out[-1].end_ms, s.end_ms))
        else:
            out.append(MuteSpan(start_ms=s.start_ms, end_ms=s.end_ms))
    return out


def released(prior: Decision, ev: Evidence, claimant: str | None, *, by: str,
             automated: bool, why: str) -> Decision:
    """``prior`` without the released claim.

    The claimant's part is dropped (the moderators' release drops the platform's part and
    any person's restriction, and a review they would answer themselves); the other owners'
    parts decide again, most restrictive first, and never more restrictively than
    ``prior``. With no part left the upload is allowed.
    """
    def dropped(o: OwnerDecision) -> bool:
        return _key(o.owner) == claimant if claimant is not None else _key(o.owner) is None

    rest = [o for o in prior.owners if not dropped(o)]
    asked = [o.action for o in rest if claimant is not None or o.action != "review"]
    action: Action = max(asked, key=severity, default="allow")
    if severity(action) > severity(prior.action):
        action = prior.action
    mute: list[MuteSpan] = []
    if action == "mute":
        refs = {r for o in rest if o.action == "mute" for r in o.reference_ids}
        mute = _merge([MuteSpan(start_ms=sg.query_start_ms, end_ms=sg.query_end_ms)
                       for m in ev.identification.matches if m.reference_id in refs
                       for sg in m.segments]) or list(prior.mute)
    labels = ["ai_generated"] if any(o.action == "label" for o in rest) else []
    return Decision(action=action, labels=labels, mute=mute, owners=rest,
                    reasons=[why, *[r for o in rest for r in o.reasons]],
                    policy_versions={o.owner: o.policy_version for o in rest},
                    automated=automated, by=by)


def taken_down(prior: Decision, *, by: str, why: str) -> Decision:
    """The takedown that ends an appeal: ``block``, decided by a person."""
    return Decision(action="block", labels=list(prior.labels), mute=[],
                    owners=list(prior.owners), reasons=[why, *prior.reasons],
                    policy_versions=dict(prior.policy_versions), automated=False, by=by)
