# SPDX-License-Identifier: Apache-2.0
"""DSA statements of reasons: what a statement says for each restriction, that every one
passes the Transparency Database API's rules, and that the export holds only the
database's attributes and no personal data."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from earmark.moderation.policy import Decision, MuteSpan, decide
from earmark.moderation.statements import (
    EEA,
    REDRESS,
    TDB_FIELDS,
    build_statement,
    check,
    export_body,
)
from earmark.service import disputes as dsp
from earmark.service import statements as svc
from earmark.service.statements import StatementNotFound
from earmark.store.db import Database, open_db
from test_disputes import (
    FILENAME,
    MOD,
    OTHER,
    OWNER_A,
    OWNER_B,
    UPLOADER,
    Server,
    evidence,
    make_scan,
    match,
    policy,
    serve,
)

NOW = dt.datetime(2026, 3, 2, 9, 30, 15, 123456)


def statement(decision: Decision, **ev_kw: object) -> dict[str, object]:
    ev = evidence("scan-x", **ev_kw)  # type: ignore[arg-type]
    return build_statement(ev, decision, scan_id="scan-x", created_at=NOW)


def exported(body: dict[str, object]) -> dict[str, object]:
    out = export_body(body)
    assert out is not None
    assert check(out) == [], check(out)
    return out


def test_block_is_illegal_content_with_facts() -> None:
    ev = evidence("scan-x", [match("isrc-123", "label-a")])
    body = build_statement(ev, decide(ev, {"label-a": policy("label-a", "block")}),
                           scan_id="scan-x", created_at=NOW)
    out = exported(body)
    assert out["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_DISABLED"]
    assert out["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert out["category"] == "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS"
    assert out["category_specification"] == ["KEYWORD_COPYRIGHT_INFRINGEMENT"]
    assert (out["automated_detection"], out["automated_decision"]) == (
        "Yes", "AUTOMATED_DECISION_FULLY")
    assert out["application_date"] == "2026-03-02" and out["territorial_scope"] == ["DE"]
    assert out["source_type"] == "SOURCE_VOLUNTARY"
    facts = str(out["decision_facts"])
    assert "isrc-123" in facts and "30.0 s" in facts and "0.990" in facts
    assert "rights holder's policy (version 1) asks block" in facts
    assert "label-a" not in facts and "automatically" in facts
    assert re.fullmatch(r"[A-Za-z0-9_-]+", str(out["puid"]))
    em = body["earmark"]
    assert isinstance(em, dict) and em["redress"]["text"] == REDRESS
    assert em["redress"]["until"] == (NOW + dt.timedelta(days=183)).strftime("%Y-%m-%d")


def test_mute_says_where_in_ms() -> None:
    ev = evidence("scan-x", [match("r", "label-a", start_ms=12_000, end_ms=47_500)])
    body = build_statement(ev, decide(ev, {"label-a": policy("label-a", "mute")}),
                           scan_id="scan-x", created_at=NOW)
    out = exported(body)
    assert out["decision_visibility"] == ["DECISION_VISIBILITY_OTHER"]
    assert "12000–47500 ms" in str(out["decision_visibility_other"])
    assert "12000–47500 ms" in str(out["decision_facts"])
    assert body["earmark"]["mute_ms"] == [[12_000, 47_500]]
    many = Decision(action="mute", mute=[MuteSpan(start_ms=i * 1000, end_ms=i * 1000 + 500)
                                         for i in range(300)])
    assert len(str(exported(statement(many, matches=[]))["decision_visibility_other"])) <= 500


def test_ai_label_is_incompatible_content() -> None:
    ev = evidence("scan-x", [], ai=0.93)
    out = exported(build_statement(ev, decide(ev, {}), scan_id="scan-x", created_at=NOW))
    assert out["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_LABELLED"]
    assert out["decision_ground"] == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert out["category"] == "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"
    assert out["content_type"] == ["CONTENT_TYPE_AUDIO", "CONTENT_TYPE_SYNTHETIC_MEDIA"]
    assert out["incompatible_content_illegal"] == "No"
    assert "0.93" in str(out["incompatible_content_explanation"])


def test_monetize_and_a_person_decision() -> None:
    ev = evidence("scan-x", [match("r", "label-a")], ai=0.8)
    d = decide(ev, {"label-a": policy("label-a", "monetize")})
    out = exported(build_statement(ev, d, scan_id="s", created_at=NOW))
    assert out["decision_monetary"] == "DECISION_MONETARY_OTHER"
    assert out["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_LABELLED"]
    person = d.model_copy(update={"action": "block", "automated": False,
                                  "by": "review:user:jane.doe",
                                  "reasons": ["reviewed by user:jane.doe: block (Jane said)"]})
    body = build_statement(ev, person, scan_id="s", created_at=NOW)
    out = exported(body)
    assert out["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
    assert "jane" not in json.dumps(out).lower()  # reviewers and their notes stay out
    told = body["earmark"]["reasons"][0]  # the uploader reads the note, not who wrote it
    assert told == "reviewed by a moderator: block (Jane said)"


@pytest.mark.parametrize(("territory", "scope"), [
    (None, list(EEA)), ("fr", ["FR"]), ("EL", ["GR"]), ("NO", ["NO"]), ("US", None)])
def test_territorial_scope(territory: str | None, scope: list[str] | None) -> None:
    body = statement(Decision(action="block"), matches=[match("r", "x")], territory=territory)
    out = export_body(body)
    assert (out or {}).get("territorial_scope") == scope


def test_limits_hold_with_many_matches() -> None:
    matches = [match(f"ref-{i:03d}-" + "x" * 40, f"owner-{i}") for i in range(60)]
    ev = evidence("scan-x", matches, ai=0.7)
    d = decide(ev, {f"owner-{i}": policy(f"owner-{i}", "block") for i in range(60)})
    exported(build_statement(ev, d, scan_id="scan-x", created_at=NOW))


def test_check_catches_what_the_database_refuses() -> None:
    good = exported(statement(Decision(action="block"), matches=[match("r", "a")]))
    assert check({**good, "application_date": "02-03-2026"})
    assert check({**good, "category": "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE"})
    assert check({**good, "puid": "has space"})
    assert check({**good, "uploader": "key:1"})
    assert check({k: v for k, v in good.items() if k != "decision_visibility"})


# -- the service and the routes -------------------------------------------------------------
@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_db(home=tmp_path)
    yield d
    d.close()


def test_list_get_and_export_pages(db: Database) -> None:
    sids = [make_scan(db, [match("r", "label-a")], {"label-a": policy("label-a", "block")})
            for _ in range(3)]
    foreign = make_scan(db, [match("r", "label-a")], {"label-a": policy("label-a", "block")},
                        territory="US", submitted_by=OTHER.id)
    mine = svc.list_statements(db, who=UPLOADER)
    assert sorted(st.scan_id for st in mine) == sorted(sids)
    assert len(svc.list_statements(db, who=OWNER_A)) == 4
    assert svc.list_statements(db, who=OWNER_B) == []
    assert [st.scan_id for st in svc.list_statements(db, who=MOD, scan_id=foreign)] == [foreign]
    with pytest.raises(StatementNotFound):
        svc.get_statement(db, mine[0].id, who=OTHER)
    first = svc.export(db, limit=2)
    assert len(first.statements) == 2 and first.next_after is not None
    rest = svc.export(db, after=first.next_after, limit=2)
    assert len(rest.statements) == 1 and rest.next_after is None and len(rest.skipped) == 1
    later = NOW.replace(year=2100)
    assert svc.export(db, since=later).statements == []
    assert len(svc.export(db, until=later).statements) == 3


def test_export_over_http_has_no_personal_data(tmp_path: Path) -> None:
    with serve(tmp_path) as srv:
        sid = make_scan(srv.db, [match("r", "label-a")], {"label-a": policy("label-a", "block")},
                        submitted_by=srv.ids["uploader"],
                        decided_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
        ai = make_scan(srv.db, [], {}, ai=0.9, submitted_by=srv.ids["uploader"])
        moves = _dispute_to_takedown(srv, sid)
        with srv.client("moderator") as mod, srv.client("uploader") as up, \
                srv.client("other") as other:
            r = up.get("/v1/statements/export")
            assert r.status_code == 403
            r = mod.get("/v1/statements/export", params={"since": "2000-01-01T00:00:00"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert list(body) == ["statements"] and len(body["statements"]) == 3
            for st in body["statements"]:
                assert set(st) <= set(TDB_FIELDS) and check(st) == []
            text = json.dumps(body)
            for secret in (FILENAME, "Jane", *srv.ids.values(), *moves, "label-a", "earmark"):
                assert secret not in text, secret
            assert {st["automated_decision"] for st in body["statements"]} == {
                "AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_NOT_AUTOMATED"}
            listed = up.get("/v1/statements", params={"scan_id": sid}).json()
            assert [st["action"] for st in listed] == ["block", "block"]
            assert "earmark" in listed[0]["body"]  # the uploader's statement keeps redress
            assert up.get(f"/v1/statements/{listed[0]['id']}").status_code == 200
            assert other.get(f"/v1/statements/{listed[0]['id']}").status_code == 404
            assert other.get("/v1/statements").json() == []
            assert len(up.get("/v1/statements", params={"scan_id": ai}).json()) == 1


def _dispute_to_takedown(srv: Server, sid: str) -> tuple[str, ...]:
    notes = ("Jane Doe licensed this to me", "Jane's label says no", "Jane Doe, call me")
    with srv.client("uploader") as up, srv.client("owner-a") as own:
        did = up.post("/v1/disputes", json={"scan_id": sid, "reason": notes[0]}).json()["id"]
        assert own.post(f"/v1/disputes/{did}/uphold", json={"note": notes[1]}).is_success
        assert up.post(f"/v1/disputes/{did}/appeal", json={"note": notes[2]}).is_success
        assert own.post(f"/v1/disputes/{did}/takedown").json()["state"] == "taken_down"
    assert dsp.get_dispute(srv.db, did, who=MOD).state == "taken_down"
    return notes
