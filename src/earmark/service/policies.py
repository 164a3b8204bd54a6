# SPDX-License-Identifier: Apache-2.0
"""Policies: versioned owner rules, and replaying a draft over recent scans before it
goes live (``earmark policy simulate``, ``POST /v1/policies/{owner}/simulate``)."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel
from sqlalchemy import func, select

from earmark.errors import EarmarkError
from earmark.evidence import Evidence
from earmark.moderation import audit
from earmark.moderation.policy import PolicyBody, PolicyVersion, decide
from earmark.service.decisions import current_policies, newest_policies
from earmark.store.db import Database
from earmark.store.models import Policy, Scan
from earmark.utc import UtcDatetime


class PolicyNotFound(EarmarkError):
    code = "policy_not_found"


class PolicyOut(BaseModel):
    owner: str
    version: int
    body: PolicyBody
    created_by: str | None
    created_at: UtcDatetime


def _out(p: Policy) -> PolicyOut:
    return PolicyOut(owner=p.owner, version=p.version, body=PolicyBody.model_validate(p.body),
                     created_by=p.created_by, created_at=p.created_at)


def save_policy(db: Database, *, owner: str, body: PolicyBody, actor: str) -> PolicyOut:
    """Store ``body`` as the owner's next version (versions start at 1, never change)."""
    with db.session() as s:
        last = s.scalar(select(func.max(Policy.version)).where(Policy.owner == owner)) or 0
        p = Policy(owner=owner, version=last + 1, body=body.model_dump(mode="json"),
                   created_by=actor)
        s.add(p)
        audit.append(s, actor=actor, action="policy.save", subject=f"policy:{owner}",
                     data={"version": last + 1, "body": p.body})
        s.flush()
        return _out(p)


def list_policies(db: Database, *, owner: str | None = None) -> list[PolicyOut]:
    """The current version of each owner's policy (or every version of ``owner``'s)."""
    with db.reader() as s:
        if owner is not None:
            rows = s.scalars(select(Policy).where(Policy.owner == owner)
                             .order_by(Policy.version)).all()
            return [_out(p) for p in rows]
        return [_out(p) for p in newest_policies(s)]


def get_policy(db: Database, *, owner: str, version: int | None = None) -> PolicyOut:
    q = select(Policy).where(Policy.owner == owner)
    q = (q.where(Policy.version == version) if version is not None
         else q.order_by(Policy.version.desc()))
    with db.reader() as s:
        p = s.scalars(q.limit(1)).first()
    if p is None:
        raise PolicyNotFound(f"no policy for owner {owner!r}"
                             + (f" at version {version}" if version else ""))
    return _out(p)


class SimulationChange(BaseModel):
    scan_id: str
    before: str
    after: str


class SimulationOut(BaseModel):
    """How decisions of the last ``scans`` scans would change under the draft."""

    owner: str
    scans: int
    before: dict[str, int]
    after: dict[str, int]
    changed: int
    changes: list[SimulationChange]


def simulate(db: Database, *, owner: str, body: PolicyBody, last: int = 1000) -> SimulationOut:
    """Replay the last ``last`` decided scans with ``body`` in place of the owner's policy
    (every other owner keeps its current version). Nothing is written."""
    with db.reader() as s:
        live = current_policies(s)
        rows = s.execute(select(Scan.id, Scan.evidence).where(Scan.evidence.is_not(None))
                         .order_by(Scan.created_at.desc()).limit(max(1, last))).all()
    draft = dict(live)
    draft[owner] = PolicyVersion(owner=owner, version=(live[owner].version + 1
                                                       if owner in live else 1), body=body)
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    changes = []
    for sid, evd in rows:
        ev = Evidence.model_validate(evd)
        a, b = decide(ev, live).action, decide(ev, draft).action
        before[a] += 1
        after[b] += 1
        if a != b:
            changes.append(SimulationChange(scan_id=str(sid), before=a, after=b))
    return SimulationOut(owner=owner, scans=len(rows), before=dict(before), after=dict(after),
                         changed=len(changes), changes=changes[:200])
