# SPDX-License-Identifier: Apache-2.0
"""The match timeline of one stream: per-window matches in, started / updated / ended out.

:class:`MatchTracker` turns the matches :class:`~earmark.live.matcher.StreamMatcher` finds
in each window into a timeline: a match starts once two windows agree on the same alignment
of the same reference *with new evidence* (the matched stretch grew), stays open while later
windows extend it — also across a jump to another place of the same reference (a loop, a
repeated chorus) — and ends when the reference has not been seen for ``end_after_s``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from earmark.identify.calibrate import edit_distance

#: semitones from the nearest single edit beyond which a live match is two edits at once
#: (right alignments: median 0.03, 99th percentile 0.43, see ``edit_distance``)
COMBINED_ST = 0.5


@dataclass
class WindowMatch:
    """One reference found in the current window, on the stream's timeline (ms)."""

    ref_key: int
    confidence: float
    stream_start_ms: int
    stream_end_ms: int
    ref_start_ms: int
    ref_end_ms: int
    speed_ratio: float
    pitch_semitones: float
    tempo_ratio: float

    @property
    def ref_at_zero(self) -> float:
        """Reference time (ms) at stream time 0 on this alignment's line."""
        return self.ref_start_ms - self.tempo_ratio * self.stream_start_ms


@dataclass
class LiveMatch:
    """A match on the stream's timeline, open or closed."""

    ref_key: int
    stream_start_ms: int
    stream_end_ms: int
    ref_start_ms: int
    ref_end_ms: int
    speed_ratio: float
    pitch_semitones: float
    tempo_ratio: float
    confidence: float
    ref_at_zero: float
    seen: int = 1  #: windows that supported it
    started: bool = False
    last_update_ms: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def duration_ms(self) -> int:
        return self.stream_end_ms - self.stream_start_ms


@dataclass
class Change:
    kind: str  #: "started", "updated", "ended"
    match: LiveMatch
    stream_ms: int


class MatchTracker:
    """Turn per-window matches into started / updated / ended matches.

    Parameters
    ----------
    end_after_s : float
        A match ends when its reference has not been seen for this long (stream time).
    update_every_s : float
        An open match reports its growth at most this often.
    tempo_tol, offset_tol_ms : float
        Two window matches are the same alignment when their tempos differ by less than
        ``tempo_tol`` (relative) and their lines by less than ``offset_tol_ms``.
    instant_confidence, instant_ms : float, int
        A window match this confident and at least this long starts at once, without
        waiting for a second window (``None``: always wait).
    combined_confidence : float
        A match whose tempo and pitch are two edits at once (more than
        :data:`COMBINED_ST` semitones from the nearest single edit,
        :func:`~earmark.identify.calibrate.edit_distance`) starts only once a window is
        this confident. A stream is thousands of windows an hour, so the file matcher's
        bar lets chance alignments through at its rate per query; real streams are played
        faster or slower, pitch-shifted or stretched one way at a time (a DJ's key lock, a
        turntable's pitch fader), and a looped passage of non-catalog music aligned with
        one bar of a catalog track at tempo 0.70 and −2 semitones (confidence 0.96)
        for 17 s in the benchmark's hour. 1.0: combined edits never start.
    quick_confidence : float or None
        Two windows that agree on music played as it is (tempo within ``tempo_tol`` of 1,
        pitch within :data:`COMBINED_ST` of 0) and are both this confident start the match
        even when the second adds less than ``min_growth_ms`` of evidence (``None``:
        always wait for it). Under talk a window 0.5 s later rarely reaches further on the
        line (its newest hits are few and provisional), so a start waited for the next
        full hop. Chance alignments spread over the whole plane of tempo and pitch, and
        the unedited corner is a thousandth of it: without that condition the rule also
        started an octave alias (a non-catalog passage at −12.6 semitones, 0.92) in the
        benchmark's hour of non-catalog music and speech (docs/live.md).
    """

    def __init__(self, *, end_after_s: float = 4.0, update_every_s: float = 5.0,
                 tempo_tol: float = 0.03, offset_tol_ms: float = 600.0,
                 min_growth_ms: int = 400, instant_confidence: float | None = 0.999,
                 instant_ms: int = 1500, combined_confidence: float = 0.99,
                 quick_confidence: float | None = 0.9) -> None:
        self.instant_confidence, self.instant_ms = instant_confidence, instant_ms
        self.quick_confidence = quick_confidence
        self.combined_confidence = combined_confidence
        #: a new line of an open reference continues it when it starts within this of the
        #: match (before its start: the first window locked on a repeat of the music and a
        #: later one, seeing more, finds the true line from a few frames earlier)
        self.jump_gap_ms = 1000
        self.end_after_ms = round(end_after_s * 1000)
        self.update_every_ms = round(update_every_s * 1000)
        self.tempo_tol, self.offset_tol_ms = tempo_tol, offset_tol_ms
        self.min_growth_ms = min_growth_ms
        self.open: list[LiveMatch] = []
        #: recently ended matches: the window still holds their last seconds, which must not
        #: start them again
        self.ended: deque[LiveMatch] = deque(maxlen=16)

    def _same(self, a: LiveMatch, w: WindowMatch) -> bool:
        return (a.ref_key == w.ref_key
                and abs(a.tempo_ratio - w.tempo_ratio) <= self.tempo_tol * a.tempo_ratio
                and abs(a.ref_at_zero - w.ref_at_zero) <= self.offset_tol_ms)

    def _may_start(self, m: LiveMatch) -> bool:
        """One edit at a time, or two at once with ``combined_confidence``."""
        return (edit_distance(m.tempo_ratio, m.pitch_semitones) <= COMBINED_ST
                or m.confidence >= self.combined_confidence)

    def update(self, found: list[WindowMatch], now_ms: int) -> list[Change]:
        """Fold one window's matches in; ``now_ms`` is the stream time the window reaches."""
        out: list[Change] = []
        for w in found:
            old = next((a for a in self.ended if self._same(a, w)), None)
            if old is not None and w.stream_end_ms <= old.stream_end_ms + self.end_after_ms:
                continue  # the tail of a match that has ended, still in the window
            m = next((a for a in self.open if self._same(a, w)), None)
            if m is None or not m.started:
                # a jump within the same reference (a loop, a repeat, a DJ cut): a started
                # match of it that this window overlaps continues on the window's line, and
                # a candidate on that line, not started yet, is the same playback
                twin = next((a for a in self.open if a.started and a.ref_key == w.ref_key
                             and a.stream_start_ms - self.jump_gap_ms <= w.stream_start_ms
                             <= a.stream_end_ms + self.jump_gap_ms), None)
                if twin is not None:
                    if m is not None:
                        self.open.remove(m)
                    m = twin
                    m.ref_at_zero, m.tempo_ratio = w.ref_at_zero, w.tempo_ratio
            if m is None:
                m = LiveMatch(
                    ref_key=w.ref_key, stream_start_ms=w.stream_start_ms,
                    stream_end_ms=w.stream_end_ms, ref_start_ms=w.ref_start_ms,
                    ref_end_ms=w.ref_end_ms, speed_ratio=w.speed_ratio,
                    pitch_semitones=w.pitch_semitones, tempo_ratio=w.tempo_ratio,
                    confidence=w.confidence, ref_at_zero=w.ref_at_zero)
                self.open.append(m)
                if (self.instant_confidence is not None
                        and w.confidence >= self.instant_confidence
                        and w.stream_end_ms - w.stream_start_ms >= self.instant_ms
                        and self._may_start(m)):
                    m.started, m.last_update_ms = True, now_ms
                    out.append(Change("started", m, now_ms))
                continue
            grew = w.stream_end_ms >= m.stream_end_ms + self.min_growth_ms
            quick = (self.quick_confidence is not None and not m.started
                     and w.stream_end_ms >= m.stream_end_ms
                     and min(w.confidence, m.confidence) >= self.quick_confidence
                     and abs(w.tempo_ratio - 1.0) <= self.tempo_tol
                     and abs(w.pitch_semitones) <= COMBINED_ST)
            if w.stream_start_ms < m.stream_start_ms:
                m.stream_start_ms, m.ref_start_ms = w.stream_start_ms, w.ref_start_ms
            if w.stream_end_ms > m.stream_end_ms:
                m.stream_end_ms, m.ref_end_ms = w.stream_end_ms, w.ref_end_ms
            m.confidence = max(m.confidence, w.confidence)
            m.speed_ratio, m.pitch_semitones = w.speed_ratio, w.pitch_semitones
            m.tempo_ratio = w.tempo_ratio
            if grew or quick:
                m.seen += 1
            if not m.started and m.seen >= 2 and self._may_start(m):
                m.started, m.last_update_ms = True, now_ms
                out.append(Change("started", m, now_ms))
            elif m.started and now_ms - m.last_update_ms >= self.update_every_ms and grew:
                m.last_update_ms = now_ms
                out.append(Change("updated", m, now_ms))
        still = []
        for m in self.open:
            if now_ms - m.stream_end_ms > self.end_after_ms:
                if m.started:
                    out.append(Change("ended", m, now_ms))
                    self.ended.append(m)
            else:
                still.append(m)
        self.open = still
        return out

    def close(self, now_ms: int) -> list[Change]:
        """The stream ended: every open match ends."""
        out = [Change("ended", m, now_ms) for m in self.open if m.started]
        self.open = []
        return out
