# SPDX-License-Identifier: Apache-2.0
"""Watching streams: each source's blocks through the matcher, the AI detector and the
escalation ladder, out as events.

One :class:`StreamWatcher` per stream holds all of that stream's state (bounded: a window of
prints, the open matches, one AI segment of audio), so a stream that fails touches nothing
else; :func:`watch` reads each source in a thread of its own, runs every stream's watcher in
one loop, and returns when every source has ended.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import soxr

from earmark.detect.base import AI_THRESHOLD, SPAN_THRESHOLD, Detector
from earmark.live.escalate import Escalator, Grace
from earmark.live.events import LiveEvent, Sink
from earmark.live.matcher import StreamMatcher
from earmark.live.sources import AudioSource, Block, SourceEvent
from earmark.live.timeline import Change, LiveMatch, MatchTracker
from earmark.moderation.policy import PolicyVersion
from earmark.service.catalog import Catalog

REBASE_S = 6 * 3600.0  #: seconds of stream after which the matcher takes a new origin


@dataclass(frozen=True)
class WatchParams:
    window_s: float = 8.0
    hop_s: float = 1.25
    end_after_s: float = 4.0
    update_every_s: float = 5.0
    ai_segment_s: float = 5.0
    max_refs: int = 0
    #: look for talk over the music in windows without a match (:class:`StreamMatcher`)
    talk_over: bool = True
    #: under talk without a match, also decide the newest seconds of the window alone
    recent_s: float = 4.0
    #: while a window neither matches nor carries talk, vote the far rungs only this often
    far_hop_s: float = 2.5
    #: after this long of talk without a match, the talk-over search every other vote
    talk_rest_s: float = 15.0
    #: a paced stream's block (a network stream, a file played in real time) that waited
    #: this many seconds for the loop finds it behind: its vote leaves the talk-over search
    #: out (0: never)
    behind_s: float = 0.5
    grace: Grace = field(default_factory=Grace)
    territory: str | None = None


class StreamWatcher:
    """One stream: feed it blocks (at ``sr``), it emits events.

    Parameters
    ----------
    stream : str
        The stream id in events.
    catalog : Catalog or None
        Without one, only AI detection runs.
    detector : Detector or None
        Without one, only identification runs.
    sr : int
        Rate of the blocks fed in (the detector's rate when there is a detector).
    phase : float
        Where in the hop the matcher's votes fall (share of a hop; see
        :class:`StreamMatcher`): :func:`watch` spreads its streams over the hop.
    """

    def __init__(self, stream: str, *, catalog: Catalog | None, detector: Detector | None,
                 sink: Sink, sr: int, params: WatchParams = WatchParams(),
                 policies: Mapping[str, PolicyVersion] | None = None,
                 phase: float = 0.0) -> None:
        self.stream, self.sink, self.sr, self.p = stream, sink, sr, params
        self.phase = phase
        self.catalog, self.detector = catalog, detector
        self.matcher: StreamMatcher | None = None
        self.down = None
        if catalog is not None:
            fsr = catalog.identifier.fingerprinter.sr
            if fsr != sr:
                self.down = soxr.ResampleStream(sr, fsr, 1, dtype="float32", quality="HQ")
        self._restart(0)
        self.escalator = Escalator(policies=policies or {}, grace=params.grace,
                                   territory=params.territory, stream=stream)
        self.ai_buf: list[np.ndarray] = []
        self.ai_n = 0
        self.ai_start = 0  # stream sample of the AI segment being filled
        self.ai_open = False  # inside a run of AI-like segments
        self.n = 0  # samples seen (stream timeline, gaps included)
        self._refs: dict[int, dict[str, object]] = {}

    # -- input ----------------------------------------------------------------------------
    def ms(self, samples: int) -> int:
        return samples * 1000 // self.sr

    def emit(self, event: str, stream_ms: int, **data: object) -> None:
        self.sink(LiveEvent(event, self.stream, int(stream_ms), data))

    def feed(self, block: Block) -> None:
        """One block of the stream (``block.start`` places it; a jump is a gap)."""
        if block.start > self.n:  # a gap (reconnect): the window must not bridge it
            self._gap(block.start)
        elif self.matcher is not None and self._due_rebase():
            self._gap(self.n)  # a fresh origin: frame times are float32
        self.n = block.start + block.samples.size
        y = block.samples
        if self.matcher is not None:
            yd = self.down.resample_chunk(y) if self.down is not None else y
            found = self.matcher.push(yd)
            if found is not None:
                self._changes(self.tracker.update(found, self.matcher.now_ms))
                self.matcher.eager = any(not m.started for m in self.tracker.open)
        if self.detector is not None:
            self._ai(y)

    def _due_rebase(self) -> bool:
        """Every ~6 h of stream (12 h at most while a match is open) the matcher starts
        from a new origin: its frame times are float32, exact to a frame for hours, not
        for days."""
        assert self.matcher is not None
        age_s = self.matcher.n_samples / self.matcher.fp.sr
        busy = any(m.started for m in self.tracker.open)
        return age_s > (REBASE_S * 2 if busy else REBASE_S)

    def _restart(self, start: int) -> None:
        """A fresh matcher and match timeline whose origin is stream sample ``start``."""
        if self.catalog is not None:
            self.matcher = StreamMatcher(self.catalog.identifier, window_s=self.p.window_s,
                                         hop_s=self.p.hop_s, max_refs=self.p.max_refs,
                                         talk_over=self.p.talk_over,
                                         recent_s=self.p.recent_s,
                                         far_hop_s=self.p.far_hop_s,
                                         talk_rest_s=self.p.talk_rest_s,
                                         phase=self.phase)
            self.matcher.offset_ms = self.ms(start)
        self.tracker = MatchTracker(end_after_s=self.p.end_after_s,
                                    update_every_s=self.p.update_every_s)

    def _gap(self, start: int) -> None:
        self._changes(self.tracker.close(self.ms(self.n)))
        self._restart(start)  # (the old timeline's ended lines mean nothing to the new one)
        self.ai_buf, self.ai_n, self.ai_start = [], 0, start

    def end(self) -> None:
        """The stream ended: close open matches, score the last AI segment if long enough."""
        self._changes(self.tracker.close(self.ms(self.n)))
        if self.detector is not None and self.ai_n >= self.sr:
            self._score(np.concatenate(self.ai_buf))

    # -- matches --------------------------------------------------------------------------
    def _ref(self, key: int) -> dict[str, object]:
        if key not in self._refs and self.catalog is not None:
            r = self.catalog.references_by_key([key]).get(key)
            self._refs[key] = ({"id": r.id, "title": r.title, "owner": r.owner,
                                "duration_ms": r.duration_ms} if r is not None
                               else {"id": f"key:{key}"})
        return self._refs.get(key, {"id": f"key:{key}"})

    def _changes(self, changes: Sequence[Change]) -> None:
        off = self.matcher.offset_ms if self.matcher is not None else 0
        for ch in changes:
            m, ref = ch.match, self._ref(ch.match.ref_key)
            data = {"reference_id": ref["id"], "title": ref.get("title"),
                    "owner": ref.get("owner"), "confidence": round(m.confidence, 4),
                    "query_start_ms": m.stream_start_ms + off,
                    "query_end_ms": m.stream_end_ms + off,
                    "ref_start_ms": m.ref_start_ms, "ref_end_ms": m.ref_end_ms,
                    "match_ms": m.duration_ms, "speed_ratio": m.speed_ratio,
                    "pitch_semitones": m.pitch_semitones, "tempo_ratio": m.tempo_ratio}
            # the event happens now on the stream (the matcher's prints lag the input)
            self.emit(f"match_{ch.kind}", self.ms(self.n), **data)
            if ch.kind == "ended":
                self.escalator.forget(m)
                continue
            self._escalate(m, ref, ch.stream_ms, off)
        # open matches may cross a grace period without a change of their own
        if self.matcher is not None:
            now = self.matcher.now_ms
            for m in self.tracker.open:
                if m.started:
                    self._escalate(m, self._ref(m.ref_key), now, off)

    def _escalate(self, m: LiveMatch, ref: dict[str, object], now: int, off: int) -> None:
        for step in self.escalator.step(m, ref, now):
            if step.get("mute_from_ms") is not None:
                step["mute_from_ms"] = int(step["mute_from_ms"]) + off  # type: ignore[call-overload]
            self.emit("escalation", self.ms(self.n), reference_id=ref["id"],
                      owner=ref.get("owner"), **step)

    # -- AI -------------------------------------------------------------------------------
    def _ai(self, y: np.ndarray) -> None:
        seg = round(self.p.ai_segment_s * self.sr)
        while y.size:
            take = min(y.size, seg - self.ai_n)
            self.ai_buf.append(y[:take])
            self.ai_n += take
            y = y[take:]
            if self.ai_n == seg:
                self._score(np.concatenate(self.ai_buf))
                self.ai_start += self.ai_n
                self.ai_buf, self.ai_n = [], 0

    def _score(self, seg: np.ndarray) -> None:
        assert self.detector is not None
        s = self.detector.score(seg, self.sr, segment_ms=round(seg.size * 1000 / self.sr))
        p = float(np.nanmax(s.probability)) if np.isfinite(s.probability).any() else None
        t0 = self.ms(self.ai_start)
        if p is not None and p >= AI_THRESHOLD and not self.ai_open:
            self.ai_open = True
            self.emit("ai_suspected", t0, ai_probability=round(p, 4), segment_start_ms=t0,
                      segment_end_ms=t0 + self.ms(seg.size),
                      detector=f"{self.detector.name}-{self.detector.version}")
        elif p is None or p < SPAN_THRESHOLD:
            self.ai_open = False


def watch(sources: Iterable[AudioSource], *, catalog: Catalog | None,
          detector: Detector | None, sink: Sink, params: WatchParams = WatchParams(),
          policies: Mapping[str, PolicyVersion] | None = None,
          stop: threading.Event | None = None,
          on_lag: LagHook | None = None) -> None:
    """Watch every source until all have ended (or ``stop`` is set).

    Each source is read (decoded, paced, reconnected) in a thread of its own, and one loop
    in the calling thread runs every stream's :class:`StreamWatcher` on the blocks in the
    order they arrive. One thread per stream doing its own matching too was tried first: the
    per-window work is short numpy and numba calls that take and release the GIL, and twenty
    threads fighting over it cost 1.8–2.6× the CPU of the same work done in turn, so a
    process fell behind at half the streams it can carry. A reader holds at most
    :data:`READ_AHEAD` blocks not yet matched (a file read as fast as it decodes must not
    fill memory, nor crowd out the live streams).

    ``on_lag(stream, seconds, cpu, deferred)`` is told, after each block, how far the
    processing is behind the stream's clock (wall time since the first block minus the
    block's end in stream time: meaningful for sources played at real-time pace), the CPU
    seconds the block's processing took in this thread (what the stream costs; its reading
    and decoding run in the reader's thread and are not counted), and whether its vote left
    the talk-over search out because the block had waited more than ``params.behind_s`` for
    the loop: a burst of searches on some streams must not hold all the others back, and
    the search runs again once the loop has caught up. Only paced sources (network streams,
    files played in real time) defer: a file read as fast as it decodes, or standard input,
    always has blocks waiting. The sink is called from the calling thread only.
    """
    srcs = list(sources)
    #: (source, item, when its reader queued it)
    todo: queue.SimpleQueue[tuple[int, object, float]] = queue.SimpleQueue()
    room = [threading.Semaphore(READ_AHEAD) for _ in srcs]

    def read(i: int, src: AudioSource) -> None:
        try:
            for item in src:
                while not room[i].acquire(timeout=0.2):
                    if src.closed:
                        return
                todo.put((i, item, time.monotonic()))
        except Exception as exc:  # a bug must not take the other streams down
            todo.put((i, exc, time.monotonic()))
        finally:
            todo.put((i, _READ_DONE, time.monotonic()))

    threads = [threading.Thread(target=read, args=(i, s), name=f"read-{s.id}", daemon=True)
               for i, s in enumerate(srcs)]
    # the streams' votes spread over the hop (golden-ratio steps: even for any count), so
    # that streams started together do not all vote on the same block
    watchers = [StreamWatcher(s.id, catalog=catalog, detector=detector, sink=sink, sr=s.sr,
                              params=params, policies=policies, phase=(i * _GOLDEN) % 1.0)
                for i, s in enumerate(srcs)]
    t0: list[float | None] = [None] * len(srcs)
    failed = [False] * len(srcs)
    for t in threads:
        t.start()
    left = len(srcs)
    stopping = False
    try:
        while left:
            if stop is not None and stop.is_set() and not stopping:
                stopping = True  # (asked on every item: busy streams never leave it idle)
                for s in srcs:
                    s.close()
            try:
                i, item, queued = todo.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _READ_DONE:
                left -= 1
                continue
            if not isinstance(item, BaseException):
                room[i].release()
            if failed[i]:
                continue
            try:
                _take(watchers[i], srcs[i], item, t0, i, on_lag, queued)
            except Exception as exc:  # a bug must not take the other streams down
                failed[i] = True
                srcs[i].close()
                w = watchers[i]
                w.emit("stream_error", w.ms(w.n),
                       detail=f"internal_error: {type(exc).__name__}: {exc}")
                w.emit("stream_ended", w.ms(w.n), detail="stopped after an internal error")
    finally:
        for s in srcs:
            s.close()


#: ``on_lag(stream, lag_s, cpu_s, deferred)`` (see :func:`watch`)
LagHook = Callable[[str, float, float, bool], None]
_GOLDEN = 0.6180339887498949  #: the vote phase step from one stream to the next
READ_AHEAD = 8  #: blocks a source's reader may hold ahead of its matching (4 s of 0.5 s)
_READ_DONE = object()


def _take(w: StreamWatcher, src: AudioSource, item: object, t0: list[float | None], i: int,
          on_lag: LagHook | None, queued: float | None = None) -> None:
    """One item a source's reader put in the queue (at monotonic time ``queued``): a block,
    an event, or its failure."""
    if isinstance(item, BaseException):
        raise item
    if isinstance(item, SourceEvent):
        if item.kind == "stream_ended":
            w.end()
        w.emit(item.kind, item.stream_ms, detail=item.detail,
               **({"gap_ms": item.gap_ms} if item.kind == "stream_reconnected" else {}))
        return
    assert isinstance(item, Block)
    end_s = (item.start + item.samples.size) / src.sr
    if t0[i] is None:  # the first block came in when its end was due
        t0[i] = time.monotonic() - end_s
    m = w.matcher
    waited = m.deferred if m is not None else 0
    if m is not None and src.paced and queued is not None:
        # the block waited in the queue this long: the loop is behind (a burst of other
        # streams' searches), and the talk-over search waits until it has caught up (the
        # plain votes go on). The wait, not the stream's clock against the wall clock: a
        # network stream's sender drifts, stalls briefly or sends in bursts, which would
        # move the latter for good.
        m.behind = 0 < w.p.behind_s < time.monotonic() - queued
    c0 = time.thread_time()
    w.feed(item)
    if on_lag is not None:
        on_lag(src.id, time.monotonic() - cast(float, t0[i]) - end_s, time.thread_time() - c0,
               w.matcher is m and m is not None and m.deferred > waited)
