# SPDX-License-Identifier: Apache-2.0
"""The REST API over real HTTP: a uvicorn server in a thread, its in-process worker, a real
catalog and database. Bad input must get a 4xx problem and leave nothing behind."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import (
    Library,
    excerpt,
    needs_ffmpeg,
    needs_postgres,
    pg_schema,
    ref_offset_ms,
    running,
    write_audio,
)
from earmark.api.app import ConfigError, create_app, make_context
from earmark.api.deps import MAX_ID, Context
from earmark.config import Settings
from earmark.service.access import Role, create_key

PROBLEM = "application/problem+json"


@dataclass
class Server:
    url: str
    ctx: Context
    keys: dict[str, str]
    clips: Path
    library: Library

    def client(self, role: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def clip(self, rid: str = "ref1", start: float = 2.0, dur: float = 8.0,
             ext: str = "mp3") -> Path:
        p = self.clips / f"{rid}-{start}-{dur}.{ext}"
        if not p.exists():
            write_audio(p, excerpt(self.library.signals[rid], start, dur))
        return p



@contextlib.contextmanager
def serve(catalog_home: Path, library: Library, clips: Path, home: Path,
          database_url: str | None = None) -> Iterator[Server]:
    """A server over a copy of the shared catalog in ``home``, with a key per role."""
    shutil.copytree(catalog_home, home)
    settings = Settings(home=home, secret="s" * 40, max_upload_mb=2.0)
    if database_url:  # else EARMARK_DATABASE_URL, if set
        settings = settings.model_copy(update={"database_url": database_url})
    ctx = make_context(settings, home=home)
    try:
        keys: dict[str, str] = {}
        roles: list[tuple[Role, str | None]] = [("admin", None), ("moderator", None),
                                                ("uploader", None), ("owner", "label-a")]
        for role, owner in roles:
            keys[role] = create_key(ctx.db, name=role, role=role, owner=owner)[1]
        keys["other-uploader"] = create_key(ctx.db, name="u2", role="uploader")[1]
        keys["other-owner"] = create_key(ctx.db, name="o2", role="owner", owner="label-b")[1]
        with running(create_app(ctx, workers=1)) as url:
            yield Server(url, ctx, keys, clips, library)
    finally:
        ctx.db.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def server(catalog_home: Path, library: Library, clips: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on SQLite for the whole module (tests share its state)."""
    with serve(catalog_home, library, clips, tmp_path_factory.mktemp("svc") / "home") as srv:
        yield srv


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def any_server(request: pytest.FixtureRequest, catalog_home: Path, library: Library,
               clips: Path, tmp_path: Path) -> Iterator[Server]:
    """The shared SQLite :func:`server`, then a fresh server on PostgreSQL (a schema of its
    own): for the flows whose SQL differs there (``SKIP LOCKED`` claims, row locks, JSON
    columns, the audit chain's advisory lock and triggers)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("server")
        return
    with pg_schema() as url, serve(catalog_home, library, clips, tmp_path / "home",
                                   database_url=url) as srv:
        assert srv.ctx.db.engine.dialect.name == "postgresql"
        yield srv


def upload(c: httpx.Client, path: Path, name: str | None = None, **form: Any) -> httpx.Response:
    with open(path, "rb") as f:
        return c.post("/v1/scans", files={"file": (name or path.name, f)}, data=form)


def wait_done(c: httpx.Client, sid: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/v1/scans/{sid}")
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("done", "failed"):
            return dict(r.json())
        assert time.monotonic() < deadline
        time.sleep(0.1)


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["detail"]
    if code:
        assert body["type"].endswith(code), body


def uploads(server: Server) -> set[str]:
    return {p.name for p in (server.ctx.home / "uploads").iterdir()}


def test_no_secret_no_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EARMARK_SECRET"):
        make_context(Settings(home=tmp_path), home=tmp_path)


def test_openapi_health_metrics(server: Server) -> None:
    with server.client(None) as c:
        spec = c.get("/openapi.json").json()
        assert {"/v1/scans", "/v1/policies/{owner}", "/v1/reviews/{review_id}/decision",
                "/v1/references/{reference_id}/exclusions",
                "/v1/audit/verify"} <= set(spec["paths"])
        assert c.get("/docs").status_code == 200
        h = c.get("/healthz").json()
        assert h["status"] == "ok" and h["catalog"] and h["workers"] == 1
        m = c.get("/metrics").text
        assert "earmark_queue_jobs" in m and "earmark_http_requests_total" in m


def test_openapi_declares_problems(server: Server) -> None:
    with server.client(None) as c:
        spec = c.get("/openapi.json").json()
    ref = {"$ref": "#/components/schemas/Problem"}
    assert {"type", "title", "status", "detail"} <= set(spec["components"]["schemas"]["Problem"]
                                                        ["required"])

    def declared(path: str, method: str) -> set[int]:
        out = set()
        for status, r in spec["paths"][path][method]["responses"].items():
            if status[0] in "45":
                assert r["content"] == {PROBLEM: {"schema": ref}}, (path, method, status)
                out.add(int(status))
        return out

    assert {401, 409, 413, 415, 422} <= declared("/v1/scans", "post")
    assert {401, 404} <= declared("/v1/scans/{scan_id}", "get")
    assert {401, 403, 404, 409, 422} <= declared("/v1/reviews/{review_id}/decision", "post")
    assert {401, 403} <= declared("/v1/keys", "get")
    # every 4xx of every /v1 route is a problem; FastAPI's own validation error is gone
    for path, ops in spec["paths"].items():
        for method in ops:
            assert not path.startswith("/v1") or 401 in declared(path, method), path
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@needs_ffmpeg
def test_upload_is_identified_decided_and_idempotent(any_server: Server) -> None:
    with any_server.client("uploader") as c:
        r = upload(c, any_server.clip(), external_id="ext-42", territory="de")
        assert r.status_code == 202, r.text
        sid = r.json()["id"]
        assert r.json()["status"] in ("queued", "running")
        again = upload(c, any_server.clip(), external_id="ext-42")
        assert again.status_code == 200 and again.json()["id"] == sid
        done = wait_done(c, sid)
    assert done["status"] == "done" and done["external_id"] == "ext-42"
    m = done["evidence"]["identification"]["matches"][0]
    assert m["reference_id"] == "ref1" and abs(ref_offset_ms(m["segments"][0]) - 2000) < 150
    assert done["decision"]["action"] == "track" and done["decision"]["policy_versions"]
    # another uploader cannot see it; an owner of other music neither (404, not 403)
    with any_server.client("other-uploader") as c:
        assert_problem(c.get(f"/v1/scans/{sid}"), 404)
        assert all(s["id"] != sid for s in c.get("/v1/scans").json())
    with any_server.client("other-owner") as c:
        assert_problem(c.get(f"/v1/scans/{sid}"), 404)


def test_authentication_and_roles(server: Server) -> None:
    with server.client(None) as c:
        assert_problem(c.get("/v1/scans"), 401, "unauthorized")
        r = c.get("/v1/scans", headers={"Authorization": "Bearer em_nope_nope"})
        assert_problem(r, 401)
        assert_problem(c.get("/v1/scans", headers={"X-API-Key": "garbage"}), 401)
    with server.client("uploader") as c:
        assert_problem(c.get("/v1/reviews"), 403, "forbidden")
        assert_problem(c.get("/v1/audit"), 403)
        assert_problem(c.post("/v1/keys", json={"name": "x", "role": "admin"}), 403)
        assert_problem(c.post("/v1/policies/label-a", json={"rules": []}), 403)
    with server.client("owner") as c:
        assert_problem(c.post("/v1/policies/label-b", json={"rules": []}), 403)
        assert_problem(c.post("/v1/policies/platform", json={"rules": []}), 403)
    with server.client("admin") as c:
        made = c.post("/v1/keys", json={"name": "tmp", "role": "uploader"})
        assert made.status_code == 201
        key = made.json()["key"]
        assert c.delete(f"/v1/keys/{made.json()['id']}").json()["revoked"]
    with httpx.Client(base_url=server.url) as c:
        assert_problem(c.get("/v1/scans", headers={"X-API-Key": key}), 401)


def test_bad_uploads_get_4xx_and_leave_nothing(server: Server, tmp_path: Path) -> None:
    before = uploads(server)
    text = tmp_path / "notes.mp3"
    text.write_text("not audio, whatever the extension says\n" * 50)
    truncated = tmp_path / "cut.m4a"
    truncated.write_bytes(server.clip(ext="m4a").read_bytes()[:300])
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + b"\0" * 2_100_000)
    empty = tmp_path / "empty.ogg"
    empty.write_bytes(b"")
    with server.client("uploader") as c:
        assert_problem(upload(c, text), 415, "unsupported_format")
        r = upload(c, truncated)
        assert r.status_code in (415, 422), r.text
        assert_problem(upload(c, big), 413, "upload_too_large")
        assert_problem(upload(c, empty), 422, "empty_input")
        assert_problem(c.post("/v1/scans", data={"external_id": "x"}), 422, "invalid_request")
        assert_problem(upload(c, server.clip(), territory="Germany"), 422)
        r = c.post("/v1/scans/by-path", json={"path": "../../etc/passwd"})
        assert_problem(r, 403)
    with server.client("admin") as c:
        assert_problem(c.post("/v1/scans/by-path", json={"path": "../../etc/passwd"}), 403)
        r = c.post("/v1/policies/label-a", content=b"{not json",
                   headers={"content-type": "application/json"})
        assert_problem(r, 422, "invalid_request")
        r = c.post("/v1/policies/label-a", json={"rules": [{"name": "x", "action": "nuke"}]})
        assert_problem(r, 422)
    assert uploads(server) == before


@needs_ffmpeg
def test_hostile_file_name_is_kept_as_text_only(server: Server) -> None:
    name = '../../<script>alert("x")</script>\r\n.mp3'
    with server.client("uploader") as c:
        r = upload(c, server.clip(start=4.0), name=name)
        assert r.status_code == 202, r.text
        body = r.json()
    assert "/" not in body["filename"] and "\n" not in body["filename"]
    assert body["id"] in uploads(server)


@needs_ffmpeg
def test_policy_versions_review_and_audit(any_server: Server) -> None:
    with any_server.client("admin") as c:
        r = c.patch("/v1/references/ref2", json={"owner": "label-a", "title": "Ref two"})
        assert r.status_code == 200 and r.json()["owner"] == "label-a"
    policy = {"rules": [{"name": "block uses", "action": "block"}]}
    with any_server.client("owner") as c:
        v1 = c.post("/v1/policies/label-a", json=policy)
        assert v1.status_code == 201 and v1.json()["version"] >= 1
        sim = c.post("/v1/policies/label-a/simulate", json={"rules": []}, params={"last": 50})
        assert sim.status_code == 200 and "before" in sim.json()
        assert [p["owner"] for p in c.get("/v1/policies").json()] == ["label-a"]
    with any_server.client("uploader") as c:
        sid = upload(c, any_server.clip("ref2", 3.0, 6.0)).json()["id"]  # 6 s: not manifest
        done = wait_done(c, sid)
    assert done["decision"]["action"] == "review"
    assert done["decision"]["policy_versions"]["label-a"] == v1.json()["version"]
    with any_server.client("moderator") as c:
        queue = c.get("/v1/reviews", params={"owner": "label-a"}).json()
        rv = next(q for q in queue if q["scan_id"] == sid)
        assert rv["reason"] == "not_manifest" and rv["owners"] == ["label-a"]
        r = c.post(f"/v1/reviews/{rv['id']}/decision",
                   json={"action": "block", "note": "full chorus, no licence"})
        assert r.status_code == 200 and r.json()["status"] == "decided"
        again = c.post(f"/v1/reviews/{rv['id']}/decision", json={"action": "allow"})
        assert_problem(again, 409, "review_already_decided")
        scan = c.get(f"/v1/scans/{sid}").json()
        assert scan["action"] == "block" and scan["decision"]["automated"] is False
        assert scan["decided_by"].startswith("review:key:")
        trail = c.get("/v1/audit", params={"subject": f"scan:{sid}"}).json()
        assert [e["action"] for e in trail] == ["decision", "decision"]
        assert c.get("/v1/audit/verify").json()["ok"]


@needs_ffmpeg
def test_references_crud_and_exclusions(server: Server) -> None:
    with server.client("owner") as c:
        with open(server.clip("ref3", 0.0, 15.0, "ogg"), "rb") as f:
            r = c.post("/v1/references", files={"file": ("x.ogg", f)},
                       data={"id": "owned-1", "title": "Owned"})
        assert r.status_code == 201, r.text
        assert r.json()["items"][0]["status"] in ("added", "skipped")
        mine = [x["id"] for x in c.get("/v1/references").json()]
        assert "owned-1" in mine or r.json()["items"][0]["status"] == "skipped"
        assert_problem(c.post("/v1/references/ref0/exclusions",
                              json={"start_ms": 0, "end_ms": 10, "reason": "x"}), 403)
    with server.client("admin") as c:
        assert_problem(c.get("/v1/references/nope"), 404)
        r = c.post("/v1/references/ref4/exclusions",
                   json={"start_ms": 0, "end_ms": 60_000, "reason": "public domain"})
        assert r.status_code == 201
        assert_problem(c.post("/v1/references/ref4/exclusions",
                              json={"start_ms": 50, "end_ms": 10, "reason": "x"}), 422)
    with server.client("uploader") as c:
        sid = upload(c, server.clip("ref4", 2.0, 8.0)).json()["id"]
        done = wait_done(c, sid)
    ident = done["evidence"]["identification"]
    assert ident["status"] == "no_match" and ident["reason"] == "excluded"
    assert done["decision"]["action"] == "allow"


@needs_ffmpeg
def test_webhooks_deliver_signed_decisions(server: Server) -> None:
    import hashlib
    import hmac
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(204 if len(got) > 1 else 500)  # the first try fails
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    rx = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    try:
        with server.client("admin") as c:
            r = c.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{rx.server_port}/hook",
                                             "events": ["decision"]})
            assert r.status_code == 201
            secret, hook = r.json()["secret"], r.json()["id"]
            assert_problem(c.post("/v1/webhooks", json={"url": "ftp://x", "events": []}), 422)
        with server.client("uploader") as c:
            sid = upload(c, server.clip("ref5", 1.0, 7.0), external_id="hooked").json()["id"]
            wait_done(c, sid)
        deadline = time.monotonic() + 20  # the retry comes after a 2 s back-off
        while len(got) < 2:
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        headers, body = got[1]
        sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Earmark-Signature"] == sig
        event = json.loads(body)
        assert event["event"] == "decision" and event["data"]["scan_id"] == sid
        assert event["data"]["external_id"] == "hooked"
        assert json.loads(got[0][1])["delivery_id"] == event["delivery_id"]  # same delivery
    finally:
        rx.shutdown()
        with server.client("admin") as c:
            c.delete(f"/v1/webhooks/{hook}")


@needs_ffmpeg
def test_an_external_id_is_its_clients_own(any_server: Server) -> None:
    with any_server.client("uploader") as c:
        r = upload(c, any_server.clip("ref0", 1.0, 6.0), external_id="mine-1")
        assert r.status_code == 202
    with any_server.client("other-uploader") as c:
        assert_problem(upload(c, any_server.clip("ref0", 1.0, 6.0), external_id="mine-1"), 409,
                       "external_id_taken")


#: RFC 3339 in UTC, as every time in a response is written (earmark.utc.UtcDatetime)
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
TIME_KEYS = {"at", "created_at", "finished_at", "decided_at", "due_at", "updated_at"}


def times_in(body: Any) -> list[str]:
    """Every value of a time-like key in a JSON body, however deep."""
    if isinstance(body, list):
        return [t for x in body for t in times_in(x)]
    if not isinstance(body, dict):
        return []
    return [t for k, v in body.items()
            for t in ([v] if k in TIME_KEYS and v is not None else times_in(v))]


@needs_ffmpeg
def test_times_in_responses_are_rfc3339_utc(server: Server) -> None:
    with server.client("uploader") as c:
        sid = upload(c, server.clip("ref3", 1.0, 6.0)).json()["id"]
        scan = wait_done(c, sid)
    with server.client("admin") as c:
        bodies = [scan, c.get("/v1/keys").json(), c.get("/v1/audit").json(),
                  c.get("/v1/references/ref3").json()]
    times = [t for b in bodies for t in times_in(b)]
    assert {"created_at", "finished_at"} <= set(scan) and scan["decision"]["decided_at"]
    assert len(times) >= 6 and all(RFC3339_UTC.match(t) for t in times), times


def test_every_response_time_is_typed_utc(server: Server) -> None:
    """No model in the API keeps a bare ``datetime`` (it would be written without a zone):
    each is :data:`earmark.utc.UtcDatetime`, whose schema says so."""
    with server.client(None) as c:
        schemas = c.get("/openapi.json").json()["components"]["schemas"]

    def bare(node: Any, where: str) -> list[str]:
        if isinstance(node, list):
            return [x for v in node for x in bare(v, where)]
        if not isinstance(node, dict):
            return []
        if node.get("format") == "date-time" and "UTC" not in node.get("description", ""):
            return [where]
        return [x for k, v in node.items() for x in bare(v, f"{where}.{k}")]

    found = [x for name, sch in schemas.items() for x in bare(sch, name)]
    assert not found, found
    assert sum(json.dumps(s).count("date-time") for s in schemas.values()) >= 10


def test_ids_are_bounded_by_what_the_database_holds(any_server: Server) -> None:
    """Ids and sequence numbers beyond the INTEGER columns (32-bit on PostgreSQL) are a 422
    that names the parameter, on both databases, and OpenAPI gives the bounds."""
    top = MAX_ID
    too_big = [top + 1, 2**63, 2**64]
    with any_server.client("admin") as c:
        for n in [*too_big, 0]:
            for method, url in [("GET", f"/v1/reviews/{n}"), ("GET", f"/v1/disputes/{n}"),
                                ("POST", f"/v1/disputes/{n}/uphold"),
                                ("GET", f"/v1/statements/{n}"),
                                ("GET", f"/v1/policies/label-a/{n}"),
                                ("DELETE", f"/v1/webhooks/{n}"),
                                ("DELETE", f"/v1/references/ref0/exclusions/{n}")]:
                r = c.request(method, url)
                assert_problem(r, 422, "invalid_request")
                assert r.json()["errors"][0]["loc"][0] == "path", r.json()
        for n in too_big:
            for url in ("/v1/audit", "/v1/statements/export", "/v1/live/events"):
                assert_problem(c.get(url, params={"after": n}), 422, "invalid_request")
        assert_problem(c.post("/v1/references/ref0/exclusions",
                              json={"start_ms": 0, "end_ms": top + 1, "reason": "x"}), 422)
        # the largest one is a fine question with no answer, on PostgreSQL too
        assert_problem(c.get(f"/v1/reviews/{top}"), 404)
        assert_problem(c.post(f"/v1/disputes/{top}/uphold"), 404)
        assert c.get("/v1/audit", params={"after": top}).json() == []
        spec = c.get("/openapi.json").json()
    (param,) = spec["paths"]["/v1/reviews/{review_id}"]["get"]["parameters"]
    assert (param["schema"]["minimum"], param["schema"]["maximum"]) == (1, top)
    after = next(p for p in spec["paths"]["/v1/audit"]["get"]["parameters"]
                 if p["name"] == "after")
    assert after["schema"]["maximum"] == top
