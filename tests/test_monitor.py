# SPDX-License-Identifier: Apache-2.0
"""``earmark monitor`` end to end: real files and stdin through the real command, the event
contract on stdout, a bad stream beside good ones, and events into the service database
(read back through the API's server-sent events)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import SR, Library, music, needs_ffmpeg, running, write_audio

EVENT_KEYS = {"event", "stream", "stream_ms", "wall_time"}


def monitor(home: Path, *args: str, stdin: bytes | None = None,
            timeout: float = 120) -> list[dict[str, Any]]:
    p = subprocess.run([sys.executable, "-m", "earmark.cli.main", "monitor", "--db", str(home),
                        "--json", "--detector", "none", *args], input=stdin,
                       capture_output=True, timeout=timeout, check=False)
    assert p.returncode == 0, p.stderr.decode()
    return [json.loads(line) for line in p.stdout.decode().splitlines() if line.strip()]


@pytest.fixture
def stream_file(library: Library, tmp_path: Path) -> Path:
    """40 s: 10 s of other music, 22 s of the catalog's `long` from 30 s, 8 s of other."""
    y = np.concatenate([music(906, 10.0), library.signals["long"][30 * SR: 52 * SR],
                        music(907, 8.0)])
    return write_audio(tmp_path / "stream.ogg", y)


@needs_ffmpeg
def test_monitor_reports_the_match_with_the_event_contract(catalog_home: Path,
                                                           stream_file: Path,
                                                           tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\x00\xff" * 5000)
    events = monitor(catalog_home, f"radio={stream_file}", f"bad={garbage}")
    assert all(EVENT_KEYS <= set(e) for e in events)
    radio = [e for e in events if e["stream"] == "radio"]
    kinds = [e["event"] for e in radio]
    assert kinds[0] == "match_started" and kinds[-1] == "stream_ended"
    assert "match_ended" in kinds
    start = next(e for e in radio if e["event"] == "match_started")
    assert start["reference_id"] == "long"
    assert 9_000 < start["query_start_ms"] < 11_500  # where the catalog music begins
    assert abs(start["ref_start_ms"] - start["query_start_ms"] - 20_000) < 300
    assert start["stream_ms"] <= 16_000  # first detection within 6 s (generated music)
    bad = [e["event"] for e in events if e["stream"] == "bad"]
    assert bad == ["stream_error", "stream_ended"]


@needs_ffmpeg
def test_monitor_reads_raw_pcm_from_stdin(catalog_home: Path, library: Library) -> None:
    y = np.concatenate([music(906, 6.0), library.signals["long"][10 * SR: 30 * SR]])
    # stereo 16-bit at 8 kHz: what a capture card would send
    pcm = (np.repeat(y[:, None], 2, axis=1) * 20000).astype("<i2").tobytes()
    # (every vote with every speed rung and the talk search: the options reach the matcher)
    events = monitor(catalog_home, "-", "--raw", f"s16le:{SR}:2", "--far-hop-s", "0",
                     "--talk-rest-s", "0", stdin=pcm)
    start = next(e for e in events if e["event"] == "match_started")
    assert start["stream"] == "stdin" and start["reference_id"] == "long"


@needs_ffmpeg
def test_events_reach_the_service_and_its_event_stream(catalog_home: Path, stream_file: Path,
                                                       tmp_path: Path) -> None:
    from earmark.api.app import create_app, make_context
    from earmark.config import Settings
    from earmark.service.access import create_key

    home = tmp_path / "home"
    shutil.copytree(catalog_home, home)
    ctx = make_context(Settings(home=home, secret="k" * 40), home=home)
    key = create_key(ctx.db, name="mod", role="moderator")[1]
    server = running(create_app(ctx, workers=0))
    url = server.__enter__()
    got: list[str] = []

    def listen() -> None:
        with httpx.stream("GET", url + "/v1/live/events/stream", params={"after": 0},
                          headers={"X-API-Key": key}, timeout=60) as r:
            for line in r.iter_lines():
                got.append(line)
                if line.startswith("event: stream_ended"):
                    return

    lt = threading.Thread(target=listen, daemon=True)
    lt.start()
    try:
        out = monitor(home, f"radio={stream_file}")
        lt.join(30)
        assert any(e["event"] == "match_started" for e in out)
        listed = httpx.get(url + "/v1/live/events", headers={"X-API-Key": key}).json()
        assert [e["event"] for e in listed] == [e["event"] for e in out]
        assert "event: match_started" in got and "event: stream_ended" in got
        ids = [int(x.split(": ")[1]) for x in got if x.startswith("id: ")]
        assert ids == sorted(ids) and len(ids) == len(out)
        r = httpx.get(url + "/v1/live/events", headers={"X-API-Key": "nope"})
        assert r.status_code == 401
        # the review pages list them too (signed in as a moderator)
        import re

        from earmark.service.access import add_user

        add_user(ctx.db, name="mo", password="a long password", role="moderator")
        with httpx.Client(base_url=url, follow_redirects=True) as c:
            form = c.get("/ui/login").text
            token = re.search(r'name="csrf" value="([^"]+)"', form)
            assert token is not None
            c.post("/ui/login", data={"name": "mo", "password": "a long password",
                                      "csrf": token.group(1)})
            page = c.get("/ui/live")
            assert page.status_code == 200 and "match_started" in page.text
            assert "radio" in page.text
    finally:
        server.__exit__(None, None, None)
        ctx.db.close()


def test_the_live_page_shows_every_event_shape(catalog_home: Path, tmp_path: Path) -> None:
    """Escalations name a reference but carry no offsets: the page must still render."""
    import re

    from earmark.api.app import create_app, make_context
    from earmark.config import Settings
    from earmark.live.events import LiveEvent, ServiceSink
    from earmark.service.access import add_user

    home = tmp_path / "home"
    shutil.copytree(catalog_home, home)
    ctx = make_context(Settings(home=home, secret="k" * 40), home=home)
    sink = ServiceSink(ctx.db)
    sink(LiveEvent("match_started", "tv", 3000, {"reference_id": "ref1", "query_start_ms": 1000,
                                                 "ref_start_ms": 5000}))
    sink(LiveEvent("escalation", "tv", 13000, {"reference_id": "ref1", "level": "mute",
                                               "action": "mute"}))
    sink(LiveEvent("stream_error", "tv", 14000, {"detail": "decoder failed"}))
    add_user(ctx.db, name="mo", password="a long password", role="moderator")
    try:
        with running(create_app(ctx, workers=0)) as url, \
                httpx.Client(base_url=url, follow_redirects=True) as c:
            token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
            assert token is not None
            c.post("/ui/login", data={"name": "mo", "password": "a long password",
                                      "csrf": token.group(1)})
            page = c.get("/ui/live")
            assert page.status_code == 200
            for text in ("escalation", "mute (mute)", "1.0 s", "→ ref 5.0 s", "decoder failed"):
                assert text in page.text
    finally:
        ctx.db.close()
