# SPDX-License-Identifier: Apache-2.0
"""Audio sources for live monitoring: a file, standard input or a network stream as a steady
stream of mono float32 blocks, with reconnects, stall detection and typed failures as events.

FFmpeg (through PyAV) reads and decodes; PyAV's resampler mixes down to mono float at the input
rate and soxr converts the rate, streamed, as in :mod:`earmark.audio.decode`. Failures never
leave the iterator as exceptions: a monitor watching many streams sees a ``stream_error`` event
and carries on with the others.

Examples
--------
>>> for item in AudioSource("http://radio.example.com/live.mp3", sr=8000):  # doctest: +SKIP
...     if isinstance(item, Block):
...         matcher.feed(item.start, item.samples)
...     else:
...         log(item.kind, item.stream_ms, item.detail)
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast
from urllib.parse import urlsplit, urlunsplit

import av
import numpy as np

from earmark import __version__
from earmark.audio.decode import MonoResampler, _audio_stream, _open
from earmark.errors import (
    CorruptInput,
    EarmarkError,
    EmptyInput,
    FileMissing,
    InputError,
    UnsupportedFormat,
)

__all__ = ["BLOCK_S", "AudioSource", "Block", "RawFormat", "SourceEvent", "StreamLost",
           "StreamStalled", "StreamUnavailable", "network_options", "source_id"]

#: Consecutive undecodable packets after which an input counts as corrupt.
MAX_BAD_PACKETS = 50
#: Extra read time allowed to HLS, whose demuxer waits a segment duration for new segments, s.
HLS_WAIT_S = 30.0
BLOCK_S = 0.5  #: seconds of a source's block, by default
_FIRST_BACKOFF_S = 1.0
_SLICE_S = 0.1  #: longest single sleep, so that close() is noticed while waiting, s


class StreamUnavailable(InputError):
    """A network stream cannot be opened: refused, unreachable, HTTP error."""

    code = "stream_unavailable"


class StreamStalled(InputError):
    """A network stream sent no data for ``stall_s`` seconds."""

    code = "stream_stalled"


class StreamLost(InputError):
    """A network stream ended or its connection broke while it was being read."""

    code = "stream_lost"


@dataclass(frozen=True)
class RawFormat:
    """Headerless PCM: sample format (``s16le`` or ``f32le``), rate in Hz, interleaved channels."""

    fmt: Literal["s16le", "f32le"]
    rate: int
    channels: int

    def __post_init__(self) -> None:
        if self.fmt not in ("s16le", "f32le") or self.rate <= 0 or self.channels <= 0:
            raise ValueError(f"bad raw format {self!r}")

    def options(self) -> dict[str, str]:
        """FFmpeg demuxer options for this format."""
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels}c")
        return {"sample_rate": str(self.rate), "ch_layout": layout}


EventKind = Literal["stream_error", "stream_reconnected", "stream_ended"]


@dataclass(frozen=True)
class SourceEvent:
    """Something the monitor should know about a source besides its audio."""

    kind: EventKind
    stream_ms: int  #: stream time at which it happened (after the gap, for stream_reconnected)
    detail: str  #: what happened and what earmark does about it
    gap_ms: int = 0  #: stream_reconnected: wall-clock time without audio


@dataclass(frozen=True)
class Block:
    """Consecutive samples of a source.

    ``start`` is the index of ``samples[0]`` in the stream's own timeline, which advances by the
    length of every block and by the gap of every reconnection.
    """

    start: int
    samples: np.ndarray  #: [shape=(n,), dtype=float32], mono, at the source's ``sr``


def _is_url(spec: str) -> bool:
    """``scheme://…`` other than ``file://``: FFmpeg's protocols decide what they can read."""
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", spec)
    return m is not None and m.group(1).lower() != "file"


def safe_url(url: str) -> str:
    """``url`` without credentials and query string (they often carry secrets)."""
    u = urlsplit(url)
    host = u.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if u.port is not None:
        netloc += f":{u.port}"
    return urlunsplit((u.scheme, netloc, u.path, "", ""))


def source_id(spec: str) -> str:
    """A readable id for a source: ``stdin``, a file's stem, or a URL's host and path."""
    if spec == "-":
        return "stdin"
    if _is_url(spec):
        u = urlsplit(spec)
        path = u.path.rstrip("/")
        head, _, last = path.rpartition("/")
        path = f"{head}/{last.rsplit('.', 1)[0] if '.' in last[1:] else last}"
        raw = (u.hostname or "stream") + (f"-{u.port}" if u.port else "") + path
        return re.sub(r"[^A-Za-z0-9._]+", "-", raw).strip("-") or "stream"
    p = Path(spec)
    return p.stem or p.name or "input"


def network_options(url: str, *, stall_s: float) -> tuple[dict[str, str], float, float]:
    """FFmpeg options and PyAV timeouts for reading ``url`` as a live stream.

    Parameters
    ----------
    url : str
        An ``http(s)://``, HLS ``.m3u8``, ``rtmp://``, ``rtsp://``, ``srt://`` … URL.
    stall_s : float
        Seconds without data after which the stream counts as stalled.

    Returns
    -------
    options : dict of str to str
        Options for ``avformat_open_input``: I/O timeouts in microseconds, and for HTTP the
        transparent resume of *seekable* resources (a file served over HTTP continues from its
        byte offset); live streams are reconnected by :class:`AudioSource` itself, so that the
        gap is measured and reported.
    open_timeout_s, read_timeout_s : float
        Backstops for every protocol (PyAV's interrupt callback), per open and per packet.
    """
    scheme = urlsplit(url).scheme.lower()
    us = str(max(1, round(stall_s * 1e6)))
    hls = urlsplit(url).path.lower().endswith((".m3u8", ".m3u"))
    opts: dict[str, str] = {}
    if scheme in ("http", "https"):
        # reconnect: FFmpeg resumes a *seekable* resource at its byte offset by itself
        opts |= {"rw_timeout": us, "user_agent": f"earmark/{__version__}", "reconnect": "1",
                 "reconnect_delay_max": "2", "reconnect_max_retries": "2"}
        if hls:
            opts["seg_max_retry"] = "2"  # a failed segment is fetched again, timeline intact
    elif scheme in ("rtsp", "rtsps"):
        opts |= {"timeout": us, "rtsp_transport": "tcp"}
    else:  # rtmp's own "timeout" means "listen", so only the generic I/O timeout
        opts["rw_timeout"] = us
    read_s = stall_s + (HLS_WAIT_S if hls else 0.0)
    return opts, stall_s + 10.0 + (HLS_WAIT_S if hls else 0.0), read_s


class _Pipe:
    """A byte stream as PyAV reads it: ``read(n)`` returns what is there (at least a byte)."""

    def __init__(self, f: BinaryIO) -> None:
        self._read = getattr(f, "read1", f.read)

    def read(self, n: int) -> bytes:
        return bytes(self._read(n))


class AudioSource:
    """A file, standard input (``-``) or a network URL as mono float32 blocks and events.

    Parameters
    ----------
    spec : str
        A file path (a FIFO too), ``-`` for standard input, or a URL FFmpeg reads: ``http(s)://``
        (Icecast/Shoutcast, HLS ``.m3u8``), ``icecast://`` (read as ``http://``), ``rtmp://``,
        ``rtsp://``, ``srt://``, ``udp://`` …
    id : str, optional
        Name of the source in events and reports; default :func:`source_id` of ``spec``.
    sr : int
        Output sample rate in Hz.
    realtime : bool
        Yield each block no earlier than its end in stream time after the start (a 60 s file
        takes about 60 s); otherwise as fast as it decodes.
    reconnect : bool, optional
        Reopen the input after it ends, fails or stalls, with exponential back-off. Default: on
        for network URLs, off for files; standard input cannot be reopened.
    block_s : float
        Block length in seconds; a block is shorter only before a disconnection or the end.
    raw : RawFormat, optional
        Read headerless PCM in this format (standard input, a file or a stream).
    max_backoff_s : float
        Longest wait between reconnection attempts (1, 2, 4 … seconds up to this); the waits
        start again from 1 s once a connection has stayed up as long as the next wait.
    stall_s : float
        Seconds without data after which a network stream counts as stalled and is reopened.
    max_retries : int, optional
        Give up (``stream_ended``) after this many failed reconnection attempts in a row;
        default: retry until :meth:`close`.
    clock, sleep : callable
        Monotonic clock in seconds and the matching sleep (injectable for tests).

    Notes
    -----
    Iterating yields :class:`Block` and :class:`SourceEvent` items and always ends with one
    ``stream_ended`` event; no exception escapes it. A disconnection yields one
    ``stream_error`` (however many attempts follow), then ``stream_reconnected`` with the
    wall-clock gap, by which the stream timeline advances so that stream time keeps following
    wall-clock time. When the first connection fails, stream time 0 is the start of iteration.
    :meth:`close` (from any thread) ends the iteration at the next packet or wait: at once on a
    flowing stream, within ``stall_s`` on a stalled one, when the next bytes come on a silent
    standard input. A source is iterated once. Memory does not grow with the stream's length.
    """

    def __init__(
        self, spec: str, *, id: str | None = None, sr: int = 44100, realtime: bool = False,
        reconnect: bool | None = None, block_s: float = BLOCK_S,
        raw: RawFormat | None = None,
        max_backoff_s: float = 30.0, stall_s: float = 10.0, max_retries: int | None = None,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if sr <= 0 or block_s <= 0 or max_backoff_s <= 0 or stall_s <= 0:
            raise ValueError("sr, block_s, max_backoff_s and stall_s must be positive")
        self.spec = spec
        self.kind: Literal["file", "stdin", "network"] = (
            "stdin" if spec == "-" else "network" if _is_url(spec) else "file"
        )
        if reconnect and self.kind == "stdin":
            raise ValueError("standard input cannot be reopened (reconnect=True)")
        self.id = id or source_id(spec)
        self.sr = sr
        self.realtime = realtime
        self.reconnect = self.kind == "network" if reconnect is None else reconnect
        self.block_n = max(1, round(block_s * sr))
        self.raw = raw
        self.max_backoff_s = max_backoff_s
        self.stall_s = stall_s
        self.max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._url = "http" + spec[len("icecast"):] if spec.startswith("icecast://") else spec
        self._name = {"stdin": "standard input", "network": safe_url(self._url)}.get(
            self.kind, Path(spec).name or spec
        )
        self._closed = threading.Event()
        #: blocks come at the stream's own pace (a network stream, a file played in real
        #: time): one waiting for the matching loop means the loop is behind
        self.paced = realtime or self.kind == "network"
        self._started = False
        self._pos = 0  # next sample index of the timeline
        self._t0 = 0.0
        self._pending: list[np.ndarray] = []
        self._n_pending = 0

    def __repr__(self) -> str:
        return f"AudioSource({self._name!r}, id={self.id!r}, sr={self.sr})"

    def close(self) -> None:
        """Stop the source (from any thread); the iterator ends soon after."""
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __iter__(self) -> Iterator[Block | SourceEvent]:
        if self._started:
            raise RuntimeError(f"{self!r} is already being read (a source is iterated once)")
        self._started = True
        return self._run()

    # -- the reconnect loop ------------------------------------------------------------------

    def _run(self) -> Generator[Block | SourceEvent, None, None]:
        self._t0 = self._clock()
        backoff = min(_FIRST_BACKOFF_S, self.max_backoff_s)
        down_since: float | None = None  # start of the current outage (clock)
        retries = 0  # failed attempts in the current outage
        while not self.closed:
            attempt_at = self._clock()
            try:
                container, stream = self._open()
            except EarmarkError as exc:
                permanent = isinstance(exc.__cause__, av.error.ProtocolNotFoundError)
                if not self.reconnect or permanent:
                    yield self._event("stream_error", f"{exc.reason}; not retried")
                    yield self._event("stream_ended", "stopped after the error above")
                    return
                if down_since is None:
                    down_since = attempt_at
                    yield self._event("stream_error", f"{exc.reason}; {self._plan()}")
                else:
                    retries += 1
            else:
                up_since = self._clock()
                if down_since is not None:
                    gap_ms = max(0, round((up_since - down_since) * 1000))
                    self._pos += round(gap_ms * self.sr / 1000)
                    yield self._event(
                        "stream_reconnected",
                        f"reading {self._name} again after {gap_ms / 1000:.1f} s without "
                        "audio; stream time skips the gap",
                        gap_ms,
                    )
                down_since, retries = None, 0
                start = self._pos
                try:
                    failure, last_data = yield from self._session(container, stream)
                except Exception as exc:  # a surprise is one more failure, never out of here
                    failure = CorruptInput(f"{self._name}: {type(exc).__name__}: {exc}")
                    last_data, self._pending, self._n_pending = self._clock(), [], 0
                finally:
                    declared = container.duration  # None for a live stream
                    container.close()
                if self.closed:
                    break
                # a network input played to its declared end (a file over HTTP, HLS VOD) is done
                whole = failure is None and declared is not None and (
                    self._pos - start >= 0.9 * declared / av.time_base * self.sr)
                if not self.reconnect or (whole and self.kind == "network"):
                    if failure is not None:
                        yield self._event("stream_error", f"{failure.reason}; not retried")
                    yield self._event("stream_ended", self._end_detail(failure, whole))
                    return
                failure = failure or StreamLost(f"{self._name} ended (closed by the server)")
                if self._clock() - up_since >= backoff:
                    backoff = min(_FIRST_BACKOFF_S, self.max_backoff_s)  # a good period
                down_since = last_data
                yield self._event("stream_error", f"{failure.reason}; {self._plan()}")
            if self.max_retries is not None and retries >= self.max_retries:
                yield self._event("stream_ended", f"gave up after {retries} failed reconnections")
                return
            self._wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
        yield self._event("stream_ended", "stopped: the source was closed")

    def _plan(self) -> str:
        limit = "" if self.max_retries is None else f", at most {self.max_retries} times"
        first = min(_FIRST_BACKOFF_S, self.max_backoff_s)
        return f"reconnecting (waits of {first:g} s doubling up to {self.max_backoff_s:g} s{limit})"

    def _end_detail(self, failure: EarmarkError | None, whole: bool) -> str:
        if failure is not None:
            return "stopped after the error above"
        if self.kind == "network":
            why = "it has a fixed length" if whole else "reconnection is off"
            return f"{self._name} ended and is not reopened ({why})"
        return "end of standard input" if self.kind == "stdin" else "end of file"

    def _event(self, kind: EventKind, detail: str, gap_ms: int = 0) -> SourceEvent:
        return SourceEvent(kind, self._pos * 1000 // self.sr, detail, gap_ms)

    def _wait(self, seconds: float) -> None:
        end = self._clock() + seconds
        while not self.closed and (left := end - self._clock()) > 0:
            self._sleep(min(left, _SLICE_S))

    # -- one connection ----------------------------------------------------------------------

    def _open(self) -> tuple[av.container.InputContainer, av.audio.AudioStream]:
        """Open the input; every failure as a typed :class:`EarmarkError`."""
        kw: dict = {"mode": "r", "metadata_errors": "ignore"}
        if self.raw is not None:
            kw |= {"format": self.raw.fmt, "container_options": self.raw.options()}
        p = Path(self.spec)
        try:
            if self.kind == "network":
                opts, open_s, read_s = network_options(self._url, stall_s=self.stall_s)
                kw["container_options"] = opts | kw.get("container_options", {})
                container = av.open(self._url, timeout=(open_s, read_s), **kw)
            elif self.kind == "stdin":
                container = av.open(_Pipe(sys.stdin.buffer), **kw)
            elif self.raw is None and (p.is_file() or p.is_dir() or not p.exists()):
                container = _open(self.spec)  # decode's checks and typed errors
            else:  # raw PCM, or a FIFO or device
                container = av.open(self.spec, **kw)
        except EarmarkError:
            raise
        except av.error.FFmpegError as exc:
            raise self._failure(exc, opening=True) from exc
        except Exception as exc:  # e.g. no standard input at all
            raise InputError(f"cannot read {self._name} ({exc})") from exc
        try:
            stream = _audio_stream(container, self._name)
            if not stream.codec_context.sample_rate:
                raise CorruptInput(f"{self._name!r}: audio stream has no sample rate")
        except EarmarkError:
            container.close()
            raise
        return container, stream

    def _failure(self, exc: av.error.FFmpegError, *, opening: bool) -> EarmarkError:
        """The typed error for an FFmpeg error while opening or reading."""
        what, why = self._name, exc.strerror or str(exc)
        if isinstance(exc, av.error.ExitError | av.error.TimeoutError):
            when = " while opening" if opening else ""
            return StreamStalled(f"no data from {what} for {self.stall_s:g} s{when}")
        if not opening:
            if self.kind == "network":
                return StreamLost(f"connection to {what} lost ({why})")
            return CorruptInput(f"{what}: cannot read packets ({why})")
        if isinstance(exc, av.error.InvalidDataError):
            return UnsupportedFormat(f"FFmpeg does not recognise {what} as audio or video")
        if isinstance(exc, av.error.ProtocolNotFoundError):
            return UnsupportedFormat(f"FFmpeg cannot read {what} ({why})")
        if self.kind != "network":
            if isinstance(exc, av.error.FileNotFoundError):
                return FileMissing(f"no such file: {what!r}")
            return CorruptInput(f"cannot open {what} ({why})")
        return StreamUnavailable(f"cannot open {what} ({why})")

    def _session(
        self, container: av.container.InputContainer, stream: av.audio.AudioStream
    ) -> Generator[Block, None, tuple[EarmarkError | None, float]]:
        """Decode one opened input to blocks; returns (failure or None at its end, last data)."""
        # a fifth of a block: the batching saves most of the per-frame cost and delays
        # the stream by at most 0.1 s
        mono = MonoResampler(self.sr, batch_s=self.block_n / self.sr / 5)
        packets = cast(Generator[av.Packet, None, None], container.demux(stream))
        failure: EarmarkError | None = None
        last_data = self._clock()
        bad = n_packets = 0
        start = self._pos
        try:
            while not self.closed:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:
                    failure = self._failure(exc, opening=False)
                    break
                last_data = self._clock()
                n_packets += packet.size > 0
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:  # a damaged packet: skip it, like players do
                    bad += 1
                    if bad > MAX_BAD_PACKETS:
                        failure = CorruptInput(f"{self._name}: too many undecodable packets")
                        break
                    continue
                bad = 0
                for frame in frames:
                    if isinstance(frame, av.AudioFrame):
                        yield from self._blocks(mono.push(frame))
        finally:
            packets.close()
        yield from self._blocks(mono.flush(), last=True)
        if failure is None and not self.closed:
            if self.kind == "network" and self._clock() - last_data >= 0.9 * self.stall_s:
                failure = StreamStalled(f"no data from {self._name} for {self.stall_s:g} s")
            elif self._pos == start and self.kind != "network":
                failure = (
                    CorruptInput(f"{self._name}: no audio decoded from {n_packets} packets")
                    if n_packets else EmptyInput(f"{self._name} holds no audio samples")
                )
        if isinstance(failure, StreamStalled):  # a short last packet may come with the timeout
            last_data = min(last_data, self._clock() - self.stall_s)
        return failure, last_data

    def _blocks(self, chunks: list[np.ndarray], last: bool = False) -> Iterator[Block]:
        """Cut decoded samples into blocks of ``block_n``; ``last`` also yields the rest."""
        for y in chunks:
            if y.size:
                self._pending.append(y)
                self._n_pending += y.size
        while self._n_pending >= self.block_n or (last and self._n_pending):
            buf = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
            out, rest = buf[: self.block_n], buf[self.block_n:]
            self._pending, self._n_pending = ([rest], rest.size) if rest.size else ([], 0)
            if self.realtime:
                self._wait(self._t0 + (self._pos + out.size) / self.sr - self._clock())
            block = Block(self._pos, out)
            self._pos += out.size
            yield block
