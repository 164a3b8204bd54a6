# SPDX-License-Identifier: Apache-2.0
"""Disputes and appeals: the pure timeline (every legal and illegal move, the deadlines),
the service over a real SQLite database with an injected clock, and the routes over real
HTTP (a uvicorn server in a thread)."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import running
from earmark.api.app import create_app, make_context
from earmark.config import Settings
from earmark.evidence import Evidence
from earmark.moderation import audit
from earmark.moderation import disputes as tl
from earmark.moderation.disputes import DeadlinePassed, DisputeConflict, transition
from earmark.moderation.policy import (
    Conditions,
    Decision,
    OwnerDecision,
    PolicyBody,
    PolicyVersion,
    Rule,
    decide,
)
from earmark.service import disputes as svc
from earmark.service.access import Forbidden, Principal, create_key
from earmark.service.decisions import record_decision
from earmark.service.scans import ScanNotFound
from earmark.store.db import Database, open_db
from earmark.store.models import AuditEntry, Delivery, Review, Scan, Statement, Webhook

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)
DAY = dt.timedelta(days=1)
FILENAME = "Jane Doe - private demo.mp3"  #: must never reach an export
UPLOADER = Principal(id="key:up1", role="uploader")
OTHER = Principal(id="key:up2", role="uploader")
OWNER_A = Principal(id="key:own-a", role="owner", owner="label-a")
OWNER_B = Principal(id="key:own-b", role="owner", owner="label-b")
MOD = Principal(id="key:mod", role="moderator")


# -- fixtures shared with test_statements ---------------------------------------------------
def match(ref: str, owner: str | None, *, start_ms: int = 10_000, end_ms: int = 40_000,
          confidence: float = 0.99) -> dict[str, Any]:
    ms = end_ms - start_ms
    return {"reference_id": ref, "title": f"{ref} title", "owner": owner,
            "confidence": confidence, "query_match_ms": ms, "query_match_pct": 50.0,
            "ref_match_ms": ms, "ref_match_pct": 80.0,
            "segments": [{"query_start_ms": start_ms, "query_end_ms": end_ms,
                          "ref_start_ms": 0, "ref_end_ms": ms}]}


def evidence(sid: str, matches: list[dict[str, Any]], *, ai: float | None = None,
             territory: str | None = "DE") -> Evidence:
    return Evidence.model_validate({
        "scan_id": sid, "territory": territory,
        "input": {"filename": FILENAME, "sha256": "0" * 64, "size_bytes": 10},
        "identification": {"status": "match" if matches else "no_match", "matches": matches},
        "ai": ({"status": "ok", "ai_probability": ai, "label": "ai" if ai >= 0.5 else "human"}
               if ai is not None else None),
        "versions": {"earmark": "0", "detector": "residue-1"}})


def policy(owner: str, action: str, version: int = 1) -> PolicyVersion:
    return PolicyVersion(owner=owner, version=version, body=PolicyBody(rules=[
        Rule(name=f"{owner} {action}", when=Conditions(min_confidence=0.9),
             action=action)]))  # type: ignore[arg-type]


_ids = itertools.count(1)


def make_scan(db: Database, ev_matches: list[dict[str, Any]],
              policies: dict[str, PolicyVersion], *, submitted_by: str = UPLOADER.id,
              ai: float | None = None, territory: str | None = "DE",
              decided_at: dt.datetime = T0) -> str:
    """A finished scan whose decision the policy engine made (no audio involved)."""
    sid = f"scan-{next(_ids):04d}"
    ev = evidence(sid, ev_matches, ai=ai, territory=territory)
    decision = decide(ev, policies).model_copy(update={"decided_at": decided_at})
    with db.session() as s:
        scan = Scan(id=sid, submitted_by=submitted_by, filename=FILENAME, blob=f"uploads/{sid}",
                    sha256="0" * 64, size_bytes=10, status="done", territory=territory,
                    evidence=ev.model_dump(mode="json"))
        s.add(scan)
        s.flush()
        record_decision(s, scan, decision, actor="worker")
    return sid


def scan_row(db: Database, sid: str) -> Scan:
    with db.reader() as s:
        scan = s.get(Scan, sid)
        assert scan is not None
        return scan


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_db(home=tmp_path)
    with d.session() as s:
        s.add(Webhook(url="http://127.0.0.1:9/hook", events=["dispute"], secret="s" * 32))
    yield d
    d.close()


# -- the pure timeline ----------------------------------------------------------------------
LEGAL = {("open", "release"): "released", ("open", "uphold"): "upheld",
         ("open", "expire"): "expired", ("upheld", "appeal"): "appealed",
         ("upheld", "release"): "released", ("upheld", "expire"): "claim_stands",
         ("appealed", "release"): "released", ("appealed", "takedown"): "taken_down",
         ("appealed", "expire"): "expired"}
EVENTS = ("open", "release", "uphold", "appeal", "takedown", "expire")


@pytest.mark.parametrize(("state", "event"), list(itertools.product(tl.STATES, EVENTS)))
def test_every_pair_is_legal_or_refused(state: str, event: str) -> None:
    due = T0 + 10 * DAY
    now = due if event == "expire" else T0  # each move inside its window
    if (state, event) in LEGAL:
        step = transition(state, event, now=now, due_at=due)
        assert step.state == LEGAL[(state, event)]
        assert step.final == (step.state in tl.FINAL)
        assert event in tl.allowed(state)
    else:
        with pytest.raises(DisputeConflict, match=state):
            transition(state, event, now=now, due_at=due)
        assert event not in tl.allowed(state)


def test_windows_and_outcomes() -> None:
    due = T0 + 30 * DAY
    up = transition("open", "uphold", now=T0, due_at=due)
    assert up.due_at == T0 + tl.APPEAL_DAYS * DAY and up.outcome is None
    ap = transition("upheld", "appeal", now=T0 + DAY, due_at=up.due_at)
    assert ap.due_at == T0 + DAY + tl.RESPONSE_DAYS * DAY
    assert transition("appealed", "takedown", now=T0, due_at=due).outcome == "takedown"
    for state in ("open", "appealed"):  # no answer counts as a release
        assert transition(state, "expire", now=due, due_at=due).outcome == "release"
    stands = transition("upheld", "expire", now=due, due_at=due)
    assert (stands.state, stands.outcome, stands.due_at) == ("claim_stands", None, None)


def test_deadlines() -> None:
    due = T0 + 30 * DAY
    for state, event in (("open", "uphold"), ("upheld", "appeal"), ("appealed", "takedown")):
        with pytest.raises(DeadlinePassed, match="ended"):
            transition(state, event, now=due, due_at=due)
        transition(state, event, now=due - dt.timedelta(seconds=1), due_at=due)
    assert transition("open", "release", now=due + DAY, due_at=due).state == "released"
    with pytest.raises(DisputeConflict, match="cannot expire before"):
        transition("open", "expire", now=due - dt.timedelta(seconds=1), due_at=due)


def test_start_needs_a_restriction_within_183_days() -> None:
    step = tl.start(decision_action="block", decided_at=T0, now=T0 + 182 * DAY)
    assert step.state == "open" and step.due_at == T0 + 212 * DAY
    with pytest.raises(DisputeConflict, match="183 days closed"):
        tl.start(decision_action="mute", decided_at=T0, now=T0 + 183 * DAY)
    for action in ("allow", "track", "review"):
        with pytest.raises(DisputeConflict, match="only restrictions"):
            tl.start(decision_action=action, decided_at=T0, now=T0)


def _od(owner: str, action: str, refs: list[str] | None = None) -> OwnerDecision:
    return OwnerDecision(owner=owner, policy_version=1, action=action,  # type: ignore[arg-type]
                         rule="r", reference_ids=refs or [])


def test_claimant_and_outcome_decisions() -> None:
    both = Decision(action="block", owners=[_od("label-a", "block", ["a"]),
                                            _od("label-b", "mute", ["b"]),
                                            _od("platform", "label")], labels=["ai_generated"])
    assert tl.claimant_of(both) == "label-a"
    assert tl.claimant_of(Decision(action="label", owners=[_od("label-a", "track"),
                                                            _od("platform", "label")])) is None
    assert tl.claimant_of(Decision(action="block", owners=[_od("label-a", "monetize"),
                                                            _od("platform", "block")])) is None
    ev = evidence("s", [match("a", "label-a"), match("b", "label-b", start_ms=50_000,
                                                      end_ms=60_000)])
    rel = tl.released(both, ev, "label-a", by="dispute:1", automated=False, why="released")
    assert rel.action == "mute" and [(m.start_ms, m.end_ms) for m in rel.mute] == [
        (50_000, 60_000)]
    assert rel.labels == ["ai_generated"] and not rel.automated
    assert tl.released(rel, ev, None, by="dispute:2", automated=True, why="x").action == "mute"
    alone = Decision(action="block", owners=[_od("label-a", "block", ["a"])])
    assert tl.released(alone, ev, "label-a", by="d", automated=True, why="x").action == "allow"
    down = tl.taken_down(alone, by="notice:1", why="takedown")
    assert (down.action, down.automated, down.by) == ("block", False, "notice:1")


# -- the service, on a real database --------------------------------------------------------
def test_full_timeline_to_takedown(db: Database) -> None:
    sid = make_scan(db, [match("ref1", "label-a")], {"label-a": policy("label-a", "block")})
    assert scan_row(db, sid).action == "block"
    d = svc.open_dispute(db, scan_id=sid, reason="I own a licence for this sample.",
                         who=UPLOADER, now=T0 + DAY)
    assert (d.state, d.owner, d.due_at) == ("open", "label-a", T0 + 31 * DAY)
    with db.reader() as s:  # Art. 17(9): an automated block that is disputed gets a person
        review = s.scalars(select(Review).where(Review.scan_id == sid)).one()
    assert (review.reason, review.status) == ("dispute", "pending")
    d = svc.act(db, d.id, event="uphold", who=OWNER_A, note="no licence on file",
                now=T0 + 2 * DAY)
    assert d.state == "upheld" and d.due_at == T0 + 32 * DAY and d.next == ["appeal", "release"]
    d = svc.act(db, d.id, event="appeal", who=UPLOADER, note="see the attached licence",
                now=T0 + 3 * DAY)
    assert d.state == "appealed" and d.due_at == T0 + 33 * DAY
    d = svc.act(db, d.id, event="takedown", who=OWNER_A, now=T0 + 4 * DAY)
    assert d.state == "taken_down" and not d.active and d.next == []
    assert [h["event"] for h in d.history] == ["open", "uphold", "appeal", "takedown"]
    assert d.history[-1]["result"]["action"] == "block"
    scan = scan_row(db, sid)
    decision = Decision.model_validate(scan.decision)
    assert (scan.action, decision.automated, decision.by) == ("block", False, f"notice:{d.id}")
    with db.reader() as s:
        st = s.scalars(select(Statement).where(Statement.scan_id == sid)
                       .order_by(Statement.id)).all()
        assert len(st) == 2  # the policy's block, then the person's takedown
        assert st[-1].body["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
        assert st[-1].body["source_type"] == "SOURCE_ARTICLE_16"
        assert st[0].body["automated_decision"] == "AUTOMATED_DECISION_FULLY"
        assert s.get(Review, review.id).status == "decided"  # type: ignore[union-attr]
        assert audit.verify(s).ok
        actions = s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
        assert [a for a in actions if a.startswith("dispute.")] == [
            "dispute.open", "dispute.uphold", "dispute.appeal", "dispute.takedown"]
        events = s.scalars(select(Delivery.payload).where(Delivery.event == "dispute")).all()
        assert [e["state"] for e in events] == ["open", "upheld", "appealed", "taken_down"]
    with pytest.raises(DisputeConflict, match="ended the appeal"):
        svc.open_dispute(db, scan_id=sid, reason="again", who=UPLOADER, now=T0 + 5 * DAY)


def test_release_allows(db: Database) -> None:
    sid = make_scan(db, [match("ref1", "label-a")], {"label-a": policy("label-a", "mute")})
    d = svc.open_dispute(db, scan_id=sid, reason="public domain", who=UPLOADER, now=T0)
    d = svc.act(db, d.id, event="release", who=OWNER_A, now=T0 + DAY)
    assert d.state == "released" and d.history[-1]["result"]["action"] == "allow"
    scan = scan_row(db, sid)
    assert scan.action == "allow" and scan.decided_by == f"dispute:{d.id}"
    assert not Decision.model_validate(scan.decision).automated
    with db.reader() as s:
        assert audit.verify(s).ok
        assert s.scalars(select(Review.status).where(Review.scan_id == sid)).all() == [
            "decided"]


def test_release_drops_only_the_claimant_part(db: Database) -> None:
    sid = make_scan(db, [match("a1", "label-a"),
                         match("b1", "label-b", start_ms=50_000, end_ms=65_000)],
                    {"label-a": policy("label-a", "block"), "label-b": policy("label-b", "mute")})
    d = svc.open_dispute(db, scan_id=sid, reason="mine", who=UPLOADER, now=T0)
    assert d.owner == "label-a"
    svc.act(db, d.id, event="release", who=MOD, now=T0 + DAY)
    scan = scan_row(db, sid)
    assert scan.action == "mute"
    assert scan.decision is not None and scan.decision["mute"] == [
        {"start_ms": 50_000, "end_ms": 65_000}]
    again = svc.open_dispute(db, scan_id=sid, reason="this one too", who=UPLOADER,
                             now=T0 + 2 * DAY)  # the new restriction is another claim
    assert again.owner == "label-b"


def test_expiry_with_an_injected_clock(db: Database) -> None:
    pol = {"label-a": policy("label-a", "block")}
    silent, upheld, appealed = (make_scan(db, [match("r", "label-a")], pol) for _ in range(3))
    ids = [svc.open_dispute(db, scan_id=sid, reason="no", who=UPLOADER, now=T0).id
           for sid in (silent, upheld, appealed)]
    svc.act(db, ids[1], event="uphold", who=OWNER_A, now=T0 + 10 * DAY)
    svc.act(db, ids[2], event="uphold", who=OWNER_A, now=T0 + 10 * DAY)
    svc.act(db, ids[2], event="appeal", who=UPLOADER, note="please", now=T0 + 20 * DAY)
    assert svc.expire_due(db, now=T0 + 29 * DAY) == 0
    assert svc.expire_due(db, now=T0 + 30 * DAY) == 1  # the unanswered dispute
    assert svc.get_dispute(db, ids[0], who=MOD).state == "expired"
    assert scan_row(db, silent).action == "allow"
    assert Decision.model_validate(scan_row(db, silent).decision).automated
    assert svc.expire_due(db, now=T0 + 45 * DAY) == 1  # no appeal: the claim stands
    assert svc.get_dispute(db, ids[1], who=MOD).state == "claim_stands"
    assert scan_row(db, upheld).action == "block"
    assert svc.expire_due(db, now=T0 + 50 * DAY) == 1  # the unanswered appeal
    assert svc.get_dispute(db, ids[2], who=MOD).state == "expired"
    assert scan_row(db, appealed).action == "allow"
    assert svc.expire_due(db, now=T0 + 400 * DAY) == 0
    with db.reader() as s:
        assert audit.verify(s).ok


def test_late_move_expires_instead(db: Database) -> None:
    sid = make_scan(db, [match("r", "label-a")], {"label-a": policy("label-a", "block")})
    d = svc.open_dispute(db, scan_id=sid, reason="no", who=UPLOADER, now=T0)
    with pytest.raises(DisputeConflict, match=r"ended .* now expired"):
        svc.act(db, d.id, event="uphold", who=OWNER_A, now=T0 + 31 * DAY)
    assert svc.get_dispute(db, d.id, who=UPLOADER).state == "expired"
    assert scan_row(db, sid).action == "allow"


def test_window_closes_after_183_days(db: Database) -> None:
    sid = make_scan(db, [match("r", "label-a")], {"label-a": policy("label-a", "block")})
    with pytest.raises(DisputeConflict, match="183 days"):
        svc.open_dispute(db, scan_id=sid, reason="late", who=UPLOADER, now=T0 + 184 * DAY)
    assert svc.open_dispute(db, scan_id=sid, reason="just in time", who=UPLOADER,
                            now=T0 + 182 * DAY).state == "open"


def test_one_dispute_at_a_time_and_only_restrictions(db: Database) -> None:
    sid = make_scan(db, [match("r", "label-a")], {"label-a": policy("label-a", "block")})
    svc.open_dispute(db, scan_id=sid, reason="first", who=UPLOADER, now=T0)
    with pytest.raises(DisputeConflict, match="one dispute at a time"):
        svc.open_dispute(db, scan_id=sid, reason="second", who=MOD, now=T0)
    tracked = make_scan(db, [match("r", "label-a")], {"label-a": policy("label-a", "track")})
    with pytest.raises(DisputeConflict, match="only restrictions"):
        svc.open_dispute(db, scan_id=tracked, reason="?", who=UPLOADER, now=T0)
    with pytest.raises(svc.DisputeInvalid):
        svc.open_dispute(db, scan_id=tracked, reason="x" * 5001, who=UPLOADER, now=T0)


def test_parties_and_visibility(db: Database) -> None:
    sid = make_scan(db, [match("r", "label-a")], {"label-a": policy("label-a", "block")})
    with pytest.raises(ScanNotFound):
        svc.open_dispute(db, scan_id=sid, reason="not mine", who=OTHER, now=T0)
    with pytest.raises(Forbidden):  # the claimant sees the scan but did not upload it
        svc.open_dispute(db, scan_id=sid, reason="owner", who=OWNER_A, now=T0)
    d = svc.open_dispute(db, scan_id=sid, reason="mine", who=UPLOADER, now=T0)
    with pytest.raises(Forbidden, match="claimant"):
        svc.act(db, d.id, event="uphold", who=UPLOADER, now=T0)
    with pytest.raises(svc.DisputeNotFound):
        svc.act(db, d.id, event="uphold", who=OWNER_B, now=T0)
    svc.act(db, d.id, event="uphold", who=OWNER_A, now=T0)
    with pytest.raises(Forbidden, match="uploader"):
        svc.act(db, d.id, event="appeal", who=OWNER_A, note="x", now=T0)
    with pytest.raises(svc.DisputeInvalid, match="note"):
        svc.act(db, d.id, event="appeal", who=UPLOADER, now=T0)
    seen_by_owner = svc.get_dispute(db, d.id, who=OWNER_A)
    assert seen_by_owner.opened_by is None and seen_by_owner.history[0]["actor"] is None
    assert [x.id for x in svc.list_disputes(db, who=UPLOADER)] == [d.id]
    assert [x.id for x in svc.list_disputes(db, who=OWNER_A, state="upheld")] == [d.id]
    assert svc.list_disputes(db, who=OWNER_B) == svc.list_disputes(db, who=OTHER) == []
    assert svc.list_disputes(db, who=MOD, state="open") == []


def test_platform_label_is_answered_by_moderators(db: Database) -> None:
    sid = make_scan(db, [], {}, ai=0.93)
    assert scan_row(db, sid).action == "label"
    d = svc.open_dispute(db, scan_id=sid, reason="I played every note", who=UPLOADER, now=T0)
    assert (d.owner, d.claimant) == (None, "moderators")
    with db.reader() as s:  # a label is not a removal: no Art. 17(9) review
        assert s.scalars(select(Review).where(Review.scan_id == sid)).all() == []
    with pytest.raises(svc.DisputeNotFound):
        svc.act(db, d.id, event="release", who=OWNER_A, now=T0)
    svc.act(db, d.id, event="release", who=MOD, note="human performance", now=T0 + DAY)
    assert scan_row(db, sid).action == "allow"


# -- the routes, over HTTP ------------------------------------------------------------------
@dataclass
class Server:
    url: str
    db: Database
    keys: dict[str, str]  #: role name → API key
    ids: dict[str, str]  #: role name → principal id

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10,
                            headers={"Authorization": f"Bearer {self.keys[who]}"})



@contextlib.contextmanager
def serve(home: Path) -> Iterator[Server]:
    """A server over a fresh database in ``home``, with one key per party."""
    ctx = make_context(Settings(home=home, secret="x" * 40), home=home)
    keys: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name, role, owner in (("admin", "admin", None), ("moderator", "moderator", None),
                              ("uploader", "uploader", None), ("other", "uploader", None),
                              ("owner-a", "owner", "label-a"), ("owner-b", "owner", "label-b")):
        k, keys[name] = create_key(ctx.db, name=name, role=role, owner=owner)  # type: ignore[arg-type]
        ids[name] = f"key:{k.id}"
    try:
        with running(create_app(ctx, workers=0, webhooks=False), timeout_s=20) as url:
            yield Server(url, ctx.db, keys, ids)
    finally:
        ctx.db.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("disputes-api")) as srv:
        yield srv


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"].endswith(code), body
    return body


def test_api_timeline_and_roles(server: Server) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    sid = make_scan(server.db, [match("r", "label-a")], {"label-a": policy("label-a", "block")},
                    submitted_by=server.ids["uploader"], decided_at=now)
    up, own, other_owner = (server.client(n) for n in ("uploader", "owner-a", "owner-b"))
    with up, own, other_owner, server.client("other") as other, \
            server.client("moderator") as mod:
        problem(up.post("/v1/disputes", json={"scan_id": sid, "reason": ""}), 422,
                "invalid_request")
        problem(other.post("/v1/disputes", json={"scan_id": sid, "reason": "x"}), 404,
                "scan_not_found")
        r = up.post("/v1/disputes", json={"scan_id": sid, "reason": "licensed"})
        assert r.status_code == 201, r.text
        did = r.json()["id"]
        assert r.headers["location"] == f"/v1/disputes/{did}"
        problem(up.post("/v1/disputes", json={"scan_id": sid, "reason": "again"}), 409,
                "dispute_conflict")
        problem(up.post(f"/v1/disputes/{did}/uphold", json={}), 403, "forbidden")
        problem(other_owner.post(f"/v1/disputes/{did}/uphold"), 404, "dispute_not_found")
        problem(own.post(f"/v1/disputes/{did}/appeal", json={"note": "x"}), 403,
                "forbidden")
        problem(own.post(f"/v1/disputes/{did}/takedown"), 409, "dispute_conflict")
        assert own.post(f"/v1/disputes/{did}/uphold", json={"note": "stands"}).json()[
            "state"] == "upheld"
        problem(up.post(f"/v1/disputes/{did}/appeal", json={}), 422, "invalid_request")
        assert up.post(f"/v1/disputes/{did}/appeal", json={"note": "see licence"}).json()[
            "state"] == "appealed"
        r = own.post(f"/v1/disputes/{did}/takedown", json={"note": "notice"})
        assert r.status_code == 200 and r.json()["state"] == "taken_down"
        scan = up.get(f"/v1/scans/{sid}").json()
        assert scan["action"] == "block" and scan["decision"]["automated"] is False
        assert [d["id"] for d in up.get("/v1/disputes").json()] == [did]
        assert other.get("/v1/disputes").json() == []
        assert [d["id"] for d in own.get("/v1/disputes?state=taken_down").json()] == [did]
        assert other_owner.get("/v1/disputes").json() == []
        assert did in [d["id"] for d in mod.get("/v1/disputes").json()]
        problem(mod.get("/v1/disputes?state=bogus"), 422, "invalid_request")
        problem(other.get(f"/v1/disputes/{did}"), 404, "dispute_not_found")
        assert up.get(f"/v1/disputes/{did}").json()["history"][-1]["event"] == "takedown"
    with server.db.reader() as s:
        assert audit.verify(s).ok


def test_worker_housekeeping_expires_on_the_real_clock(db: Database, tmp_path: Path) -> None:
    from earmark.service.worker import Worker

    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - 40 * DAY
    sid = make_scan(db, [match("r", "label-a")], {"label-a": policy("label-a", "block")},
                    decided_at=past)
    d = svc.open_dispute(db, scan_id=sid, reason="no answer will come", who=UPLOADER,
                         now=past + DAY)
    Worker(db, home=tmp_path).housekeeping()
    assert svc.get_dispute(db, d.id, who=MOD).state == "expired"
    assert scan_row(db, sid).action == "allow"
