# SPDX-License-Identifier: Apache-2.0
"""Live audio sources: files, standard input and HTTP streams served by a real local server
(drops, stalls, restarts), bad input as events, and pacing on an injected clock."""

from __future__ import annotations

import itertools
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from conftest import music, needs_ffmpeg, write_audio
from earmark.audio.decode import decode
from earmark.live.sources import (
    AudioSource,
    Block,
    RawFormat,
    SourceEvent,
    network_options,
    source_id,
)

pytestmark = needs_ffmpeg

SR = 8000  #: output rate of most tests (fast)


def _split(items: list[Block | SourceEvent]) -> tuple[list[Block], list[SourceEvent]]:
    return ([i for i in items if isinstance(i, Block)],
            [i for i in items if isinstance(i, SourceEvent)])


def _contiguous(blocks: list[Block]) -> bool:
    return all(b.start == a.start + a.samples.size for a, b in itertools.pairwise(blocks))


def _mp3_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    """A bare MP3 stream (no ID3 tag, no Xing frame), as a live server sends it."""
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "-",
         "-c:a", "libmp3lame", "-b:a", "64k", "-id3v2_version", "0", "-f", "mp3", "-"],
        input=np.asarray(y, np.float32).tobytes(), capture_output=True, check=True,
    ).stdout


class FakeClock:
    """A clock that only moves when slept on."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        assert s >= 0
        self.slept += s
        self.t += s


# -- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["flac", "mp3", "ogg"])
def test_a_file_yields_every_sample_once(tmp_path: Path, ext: str) -> None:
    path = write_audio(tmp_path / f"a.{ext}", music(1, 6.0))
    blocks, events = _split(list(AudioSource(str(path), sr=22050, block_s=0.25)))
    whole = decode(path, 22050)
    y = np.concatenate([b.samples for b in blocks])
    assert abs(y.size - whole.size) <= 0.25 * 22050
    n = min(y.size, whole.size)
    assert np.max(np.abs(y[:n] - whole[:n])) < 1e-4
    assert blocks[0].start == 0 and _contiguous(blocks)
    assert all(b.samples.dtype == np.float32 and b.samples.ndim == 1 for b in blocks)
    assert all(b.samples.size == round(0.25 * 22050) for b in blocks[:-1])
    assert [e.kind for e in events] == ["stream_ended"]
    assert events[0].stream_ms == y.size * 1000 // 22050


def test_watch_reads_a_fast_file_only_a_few_blocks_ahead(tmp_path: Path) -> None:
    # one loop matches every stream; a file decoded as fast as it goes must wait for it
    # rather than pile up its whole length in memory
    from earmark.live.events import LiveEvent
    from earmark.live.monitor import READ_AHEAD, watch

    path = write_audio(tmp_path / "a.flac", music(3, 30.0))
    src = AudioSource(str(path), sr=SR, block_s=0.5)
    events: list[LiveEvent] = []
    read_at_first: list[int] = []

    def on_lag(stream: str, lag: float, cpu: float, deferred: bool) -> None:
        if not read_at_first:  # hold the loop on the first block a while
            time.sleep(1.0)
            read_at_first.append(src._pos)

    watch([src], catalog=None, detector=None, sink=events.append, on_lag=on_lag)
    assert read_at_first[0] <= (READ_AHEAD + 2) * src.block_n < 30 * SR // 2
    assert src._pos >= 29.5 * SR  # and all of it came through in the end
    assert [e.event for e in events] == ["stream_ended"]


def test_watch_stops_while_busy_streams_keep_it_busy(tmp_path: Path) -> None:
    # streams played in real time in blocks of 0.1 s put one in the loop's queue every
    # 0.1 s, so it is never idle for long: a stop must still end them all at once
    from earmark.live.monitor import watch

    path = write_audio(tmp_path / "a.flac", music(4, 30.0))
    srcs = [AudioSource(str(path), id=f"s{k}", sr=SR, realtime=True, block_s=0.1)
            for k in range(3)]
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    t0 = time.monotonic()
    watch(srcs, catalog=None, detector=None, sink=lambda e: None, stop=stop)
    assert time.monotonic() - t0 < 5.0
    assert all(s.closed for s in srcs)


def test_realtime_paces_blocks_by_stream_time(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a.flac", music(2, 10.0))
    fake = FakeClock()
    src = AudioSource(str(path), sr=SR, realtime=True, clock=fake.clock, sleep=fake.sleep)
    t_real = time.monotonic()
    lateness = []
    for item in src:
        if isinstance(item, Block):
            lateness.append(fake.t - (item.start + item.samples.size) / SR)
    assert time.monotonic() - t_real < 5.0  # no real waiting
    assert abs(fake.t - 10.0) < 0.1 and abs(fake.slept - 10.0) < 0.1  # wall time ≈ stream time
    assert min(lateness) >= -1e-9 and max(lateness) < 0.01  # each block when its end is due


# -- bad input -----------------------------------------------------------------------------------


def test_bad_files_are_events_not_exceptions(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all\n" * 500)
    garbage = tmp_path / "noise.mp3"
    garbage.write_bytes(np.random.default_rng(0).bytes(100_000))
    video = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=32x32:d=1",
                    "-c:v", "mpeg4", str(video)], check=True)
    cases = {tmp_path / "missing.wav": "file_missing", text: "unsupported_format",
             garbage: "", video: "no audio stream", tmp_path: "folder"}
    for path, reason in cases.items():
        items = list(AudioSource(str(path), sr=SR))
        assert [getattr(i, "kind", "block") for i in items][-2:] == ["stream_error",
                                                                    "stream_ended"], path
        assert reason in items[-2].detail  # type: ignore[union-attr]


def test_an_unreachable_port_is_an_event() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    items = list(AudioSource(f"http://127.0.0.1:{port}/live.mp3", reconnect=False))
    assert [e.kind for e in items] == ["stream_error", "stream_ended"]  # type: ignore[union-attr]
    assert "stream_unavailable" in items[0].detail and "refused" in items[0].detail  # type: ignore[union-attr]


def test_backoff_doubles_up_to_the_limit_with_one_error_event() -> None:
    fake = FakeClock()
    src = AudioSource("http://127.0.0.1:9/x.mp3", max_backoff_s=4.0, max_retries=5,
                      clock=fake.clock, sleep=fake.sleep)
    events = list(src)
    assert [e.kind for e in events] == ["stream_error", "stream_ended"]  # type: ignore[union-attr]
    assert "gave up after 5" in events[1].detail  # type: ignore[union-attr]
    assert abs(fake.t - (1 + 2 + 4 + 4 + 4)) < 1e-6  # waits 1, 2, 4, 4, 4 s


# -- standard input ------------------------------------------------------------------------------

_READER = """
import json, sys
import numpy as np
from earmark.live.sources import AudioSource, Block, RawFormat
raw = RawFormat(sys.argv[3], int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 3 else None
blocks, events = [], []
for item in AudioSource("-", sr=int(sys.argv[2]), raw=raw):
    if isinstance(item, Block):
        blocks.append(item)
    else:
        events.append([item.kind, item.detail])
np.save(sys.argv[1], np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(0))
print(json.dumps({"events": events, "contiguous": all(
    b.start == a.start + a.samples.size for a, b in zip(blocks, blocks[1:]))}))
"""


def _read_stdin(tmp_path: Path, data: bytes, *args: str) -> tuple[dict, np.ndarray]:
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    out = tmp_path / "out.npy"
    proc = subprocess.run([sys.executable, str(script), str(out), *args], input=data,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout), np.load(out)


def test_stdin_raw_pcm(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * 22050) / 22050)
         + 0.05 * rng.standard_normal(3 * 22050)).astype(np.float32)
    pcm = (np.stack([y, y], axis=1) * 32767).astype("<i2").tobytes()  # s16le, 2 channels
    summary, z = _read_stdin(tmp_path, pcm, "44100", "s16le", "22050", "2")
    assert [k for k, _ in summary["events"]] == ["stream_ended"] and summary["contiguous"]
    assert z.size == 2 * y.size
    want = soxr.resample(y, 22050, 44100, quality="HQ") * np.sqrt(2)  # FFmpeg's downmix gain
    assert np.corrcoef(z, want)[0, 1] > 0.999
    assert np.max(np.abs(z - want)) < 0.01


def test_stdin_container(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a.ogg", music(4, 4.0))
    summary, z = _read_stdin(tmp_path, path.read_bytes(), "16000")
    assert [k for k, _ in summary["events"]] == ["stream_ended"] and summary["contiguous"]
    whole = decode(path, 16000)
    assert z.size == whole.size and np.max(np.abs(z - whole)) < 1e-4


def test_stdin_garbage(tmp_path: Path) -> None:
    summary, z = _read_stdin(tmp_path, b"\x00\xff garbage \x13" * 5000, "8000")
    assert [k for k, _ in summary["events"]] == ["stream_error", "stream_ended"]
    assert "unsupported_format" in summary["events"][0][1] and z.size == 0


# -- HTTP streams from a real local server -------------------------------------------------------

Handler = Callable[[BaseHTTPRequestHandler, int], None]


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # dropped connections are the point of these tests


class Server:
    """An HTTP server on 127.0.0.1 whose answer depends on the request's number (1, 2 …)."""

    def __init__(self, handle: Handler) -> None:
        lock, count = threading.Lock(), [0]
        self.stopping = threading.Event()

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    count[0] += 1
                    n = count[0]
                handle(self, n)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = _Quiet(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/radio/live.mp3"
        self.requests = count
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    servers: list[Server] = []

    def start(handle: Handler) -> Server:
        servers.append(Server(handle))
        return servers[-1]

    yield start
    for s in servers:
        if not s.stopping.is_set():
            s.stop()


def _headers(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "audio/mpeg")
    h.end_headers()
    h.wfile.flush()


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Drop the connection the hard way (TCP reset)."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()


def test_http_drop_reconnects_and_the_timeline_skips_the_gap(serve: Callable) -> None:
    body = _mp3_bytes(music(5, 6.0))

    def handle(h: BaseHTTPRequestHandler, n: int) -> None:
        if n == 1:  # half the stream, then the connection drops
            _headers(h)
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            time.sleep(0.3)
            _reset(h)
        elif n == 2:  # the whole stream, then the server goes away
            _headers(h)
            h.wfile.write(body)
            h.wfile.flush()
            threading.Thread(target=server.stop).start()
        else:
            _reset(h)

    server = serve(handle)
    src = AudioSource(server.url, sr=SR, max_backoff_s=0.2, max_retries=2)
    assert src.id == "127.0.0.1-" + server.url.split(":")[2].split("/")[0] + "-radio-live"
    items = list(src)
    kinds = [getattr(i, "kind", "block") for i in items]
    events = [i for i in items if isinstance(i, SourceEvent)]
    assert [e.kind for e in events] == ["stream_error", "stream_reconnected",
                                        "stream_error", "stream_ended"], events
    assert "reconnecting" in events[0].detail and "gave up after 2" in events[3].detail
    cut = kinds.index("stream_reconnected")
    before, after = _split(items[:cut])[0], _split(items[cut:])[0]
    assert before and after and _contiguous(before) and _contiguous(after)
    gap = events[1].gap_ms
    assert 200 * 0.9 <= gap < 5000  # at least the back-off
    end = before[-1].start + before[-1].samples.size
    assert after[0].start == end + round(gap * SR / 1000)
    assert events[1].stream_ms == after[0].start * 1000 // SR
    y = np.concatenate([b.samples for b in after])
    assert abs(y.size - 6.0 * SR) < 0.5 * SR  # the second connection: the whole stream


def test_a_stalled_server_is_noticed_within_stall_s(serve: Callable) -> None:
    def handle(h: BaseHTTPRequestHandler, n: int) -> None:
        _headers(h)  # … then nothing
        server.stopping.wait(10)

    server = serve(handle)
    t0 = time.monotonic()
    items = list(AudioSource(server.url, sr=SR, stall_s=1.0, reconnect=False))
    assert time.monotonic() - t0 < 2.5
    assert [e.kind for e in items] == ["stream_error", "stream_ended"]  # type: ignore[union-attr]
    assert "stream_stalled" in items[0].detail  # type: ignore[union-attr]


def test_a_stall_mid_stream_reconnects_and_counts_the_silence(serve: Callable) -> None:
    body = _mp3_bytes(music(6, 4.0))

    def handle(h: BaseHTTPRequestHandler, n: int) -> None:
        _headers(h)
        h.wfile.write(body if n == 2 else body[: len(body) // 2])
        h.wfile.flush()
        if n == 1:
            server.stopping.wait(10)  # stalls
        elif n == 2:
            threading.Thread(target=server.stop).start()

    server = serve(handle)
    items = list(AudioSource(server.url, sr=SR, stall_s=1.0, max_backoff_s=0.1, max_retries=1))
    events = _split(items)[1]
    assert [e.kind for e in events][:2] == ["stream_error", "stream_reconnected"], events
    assert "stream_stalled" in events[0].detail
    assert events[1].gap_ms >= 1000  # no data since the stall began: counted in the gap
    assert events[-1].kind == "stream_ended"


def test_hls_of_fixed_length_plays_once(tmp_path: Path) -> None:
    y = music(9, 6.0)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "-",
         "-c:a", "aac", "-b:a", "48k", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
         str(tmp_path / "index.m3u8")],
        input=y.tobytes(), check=True,
    )

    class Files(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    httpd = _Quiet(("127.0.0.1", 0), Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/index.m3u8"
        blocks, events = _split(list(AudioSource(url, sr=SR, max_backoff_s=0.1)))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [e.kind for e in events] == ["stream_ended"] and "fixed length" in events[0].detail
    z = np.concatenate([b.samples for b in blocks])
    assert _contiguous(blocks) and abs(z.size - y.size) < 0.2 * SR  # AAC adds its priming
    ref = y[SR: 5 * SR]
    lag = int(np.argmax(np.correlate(z[SR: 5 * SR + 2048], ref, mode="valid")))
    assert np.corrcoef(z[SR + lag: 5 * SR + lag], ref)[0, 1] > 0.9  # the same music


def test_close_from_another_thread_ends_an_endless_stream(serve: Callable) -> None:
    chunk = _mp3_bytes(music(7, 2.0))

    def handle(h: BaseHTTPRequestHandler, n: int) -> None:
        _headers(h)
        try:
            while not server.stopping.is_set():
                for i in range(0, len(chunk), 2048):  # about 4× real time
                    h.wfile.write(chunk[i: i + 2048])
                    time.sleep(0.05)
        except OSError:
            pass  # the client went away

    server = serve(handle)
    src = AudioSource(server.url, sr=SR, block_s=0.25)
    closed_at: list[float] = []

    def close_later() -> None:
        time.sleep(1.5)
        closed_at.append(time.monotonic())
        src.close()

    threading.Thread(target=close_later).start()
    items = list(src)
    assert time.monotonic() - closed_at[0] < 1.0
    blocks, events = _split(items)
    assert len(blocks) >= 4 and _contiguous(blocks)
    assert [e.kind for e in events] == ["stream_ended"] and "closed" in events[0].detail


# -- names and options ---------------------------------------------------------------------------


def test_ids_and_ffmpeg_options() -> None:
    assert source_id("-") == "stdin"
    assert source_id("/music/In Rainbows.flac") == "In Rainbows"
    assert source_id("https://user:pw@cdn.example.com/radio1/index.m3u8?token=s3cret") \
        == "cdn.example.com-radio1-index"
    opts, open_s, read_s = network_options("http://h/live.mp3", stall_s=2.0)
    assert opts["rw_timeout"] == "2000000" and read_s == 2.0 and open_s >= read_s
    opts, _, read_s = network_options("rtsp://cam/stream", stall_s=2.0)
    assert opts["timeout"] == "2000000" and "rw_timeout" not in opts
    opts, _, _ = network_options("rtmp://h/app/key", stall_s=2.0)
    assert "timeout" not in opts  # rtmp's "timeout" would make it listen
    _, _, read_s = network_options("https://h/index.m3u8", stall_s=2.0)
    assert read_s > 2.0  # the HLS demuxer waits for new segments
    assert RawFormat("f32le", 48000, 6).options() == {"sample_rate": "48000", "ch_layout": "6c"}
    src = AudioSource("icecast://user:pw@radio.example.com:8000/live?key=1")
    assert "pw" not in repr(src) and "key" not in repr(src)


def test_memory_stays_flat_on_an_endless_stream(serve: Callable) -> None:
    chunk = _mp3_bytes(music(8, 5.0))

    def handle(h: BaseHTTPRequestHandler, n: int) -> None:
        _headers(h)
        try:
            while not server.stopping.is_set():  # as fast as the client reads
                h.wfile.write(chunk)
        except OSError:
            pass

    server = serve(handle)
    src = AudioSource(server.url, sr=SR, block_s=0.1)
    tracemalloc.start()
    try:
        n = 0
        for item in src:
            n += isinstance(item, Block)
            if n == 300:
                base = tracemalloc.get_traced_memory()[0]
            elif n == 3000:  # 270 s of stream later
                grown = tracemalloc.get_traced_memory()[0] - base
                src.close()
    finally:
        tracemalloc.stop()
    assert n >= 3000 and grown < 200_000, grown


@needs_ffmpeg
def test_parallel_watch_reports_lag_and_cpu_per_block(tmp_path: Path,
                                                      catalog_home: Path) -> None:
    """``watch_parallel`` (the worker processes of ``earmark monitor --jobs``) tells the
    caller, per block of each stream, its lag and the CPU its matching took: what
    ``earmark bench live`` sizes streams by."""
    from earmark.live.pool import SourceSpec, watch_parallel

    paths = [write_audio(tmp_path / f"s{i}.flac", music(10 + i, 12.0)) for i in range(2)]
    specs = [SourceSpec(str(p), f"s{i}", SR) for i, p in enumerate(paths)]
    got: dict[str, list[tuple[float, float]]] = {"s0": [], "s1": []}
    watch_parallel(specs, home=catalog_home, detector=None, sink=lambda e: None, jobs=2,
                   on_lag=lambda sid, lag, cpu, _: got[sid].append((lag, cpu)))
    for sid, rows in got.items():
        assert len(rows) == 24, sid  # 12 s in blocks of 0.5 s
        cpu = [c for _, c in rows]
        assert min(cpu) >= 0.0 and sum(cpu) > 0.0  # the catalog search ran in the worker


def test_a_block_that_waited_for_the_loop_defers_the_talk_over_search(
        tmp_path: Path, catalog: Any) -> None:
    """``watch``'s step: a paced source's block (played in real time, or a network stream)
    that waited in the queue more than ``behind_s`` sets the matcher's ``behind``, and a
    vote under talk then leaves the talk-over search out and says so through ``on_lag``; a
    block on time, a source read as fast as it decodes, or ``behind_s`` 0 does not."""
    from earmark.audio.effects import mix_over
    from earmark.audio.generators import synth_speech_like
    from earmark.live.monitor import StreamWatcher, WatchParams, _take

    talk = synth_speech_like(sr=SR, duration=12.0, rng=np.random.default_rng(1))
    y = mix_over(music(4, 12.0), talk, 0.0).astype(np.float32)
    path = write_audio(tmp_path / "a.flac", y)

    def run(realtime: bool, waited_s: float, behind_s: float = 0.5) -> list[bool]:
        src = AudioSource(str(path), sr=SR, realtime=realtime)
        assert src.paced is realtime
        w = StreamWatcher("s", catalog=catalog, detector=None, sink=lambda e: None, sr=SR,
                          params=WatchParams(behind_s=behind_s))
        said: list[bool] = []
        t0: list[float | None] = [None]
        for i in range(0, y.size, SR // 2):
            _take(w, src, Block(i, y[i:i + SR // 2]), t0, 0,
                  lambda sid, s, c, d: said.append(d), time.monotonic() - waited_s)
            assert w.matcher is not None and w.matcher.behind is (
                realtime and 0 < behind_s < waited_s)
        assert w.matcher.deferred == sum(said)
        return said

    late = run(True, 2.0)
    assert sum(late) >= 4  # every vote under talk once the probe has heard it
    assert not any(run(True, 0.0))
    assert not any(run(False, 2.0))
    assert not any(run(True, 2.0, behind_s=0.0))
