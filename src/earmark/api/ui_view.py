# SPDX-License-Identifier: Apache-2.0
"""What the review pages show, computed from the evidence record: the timeline's lanes,
segment labels, ages and durations. Pure functions; the templates only lay them out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from earmark.evidence import PITCH_TOLERANCE, SPEED_TOLERANCE, Evidence, SegmentEvidence

#: SVG geometry of the timeline (viewBox units)
WIDTH, LABEL_W, LANE_H, AXIS_H = 1000, 170, 22, 20
#: tick spacings to choose from, seconds
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200)


def fmt_ms(ms: float | None) -> str:
    """``m:ss.s`` (``—`` for nothing)."""
    if ms is None:
        return "—"
    s = max(0.0, ms / 1000)
    return f"{int(s // 60)}:{s % 60:04.1f}"


def fmt_age(created: dt.datetime, now: dt.datetime) -> str:
    """How long ago, coarsely: ``42 s``, ``7 min``, ``3 h 12 min``, ``2 d 5 h``."""
    sec = max(0, int((now - created).total_seconds()))
    if sec < 60:
        return f"{sec} s"
    if sec < 3600:
        return f"{sec // 60} min"
    if sec < 86400:
        return f"{sec // 3600} h {sec % 3600 // 60} min"
    return f"{sec // 86400} d {sec % 86400 // 3600} h"


def ai_colour(p: float | None) -> str:
    """Green (0) through yellow to red (1); grey when unknown."""
    if p is None:
        return "#bbbbbb"
    p = min(1.0, max(0.0, p))
    return f"hsl({round(120 * (1 - p))}, 70%, 45%)"


def modifications(seg: SegmentEvidence) -> list[str]:
    """What was changed in the upload against the reference, in words (empty: nothing)."""
    out = []
    if abs(seg.speed_ratio - 1) > SPEED_TOLERANCE:
        out.append(f"speed ×{seg.speed_ratio:.3f}")
    if abs(seg.tempo_ratio - 1) > SPEED_TOLERANCE and abs(seg.tempo_ratio - seg.speed_ratio) > 1e-3:
        out.append(f"tempo ×{seg.tempo_ratio:.3f}")
    if abs(seg.pitch_semitones) > PITCH_TOLERANCE:
        out.append(f"pitch {seg.pitch_semitones:+.1f} st")
    return out


@dataclass
class Rect:
    x: float
    w: float
    fill: str
    tip: str
    data: dict[str, str] = field(default_factory=dict)


@dataclass
class Lane:
    label: str
    y: float
    rects: list[Rect]
    outlines: list[Rect] = field(default_factory=list)


@dataclass
class Timeline:
    """An inline SVG: one lane per matched reference, one for AI probability."""

    height: float
    duration_ms: int
    lanes: list[Lane]
    ticks: list[tuple[float, str]]
    x0: float = LABEL_W
    width: float = WIDTH


@dataclass
class SegmentView:
    n: int
    reference_id: str
    query_start_ms: int
    ref_start_ms: int
    tempo_ratio: float
    label: str
    modified: bool


def duration_ms(ev: Evidence) -> int:
    """The upload's length: as decoded, else the furthest thing the evidence mentions."""
    if ev.input.duration_ms:
        return ev.input.duration_ms
    ends = [s.query_end_ms for m in ev.identification.matches for s in m.segments]
    ends += [s.end_ms for s in (ev.ai.segments if ev.ai else [])]
    return max([1, *ends])


def segments(ev: Evidence) -> list[SegmentView]:
    """Every matched segment, numbered in upload order, with a label for its play button."""
    rows = sorted(((m, s) for m in ev.identification.matches for s in m.segments),
                  key=lambda ms: ms[1].query_start_ms)
    out = []
    for n, (m, s) in enumerate(rows, 1):
        mods = modifications(s)
        label = (f"{fmt_ms(s.query_start_ms)}–{fmt_ms(s.query_end_ms)} ↔ "
                 f"{m.title or m.reference_id} {fmt_ms(s.ref_start_ms)}–{fmt_ms(s.ref_end_ms)}"
                 + (f" ({', '.join(mods)})" if mods else ""))
        out.append(SegmentView(n=n, reference_id=m.reference_id,
                               query_start_ms=s.query_start_ms, ref_start_ms=s.ref_start_ms,
                               tempo_ratio=s.tempo_ratio, label=label, modified=bool(mods)))
    return out


def _ticks(dur_ms: int, span: float) -> list[tuple[float, str]]:
    dur_s = dur_ms / 1000
    step = next((s for s in _STEPS if dur_s / s <= 12), _STEPS[-1])
    return [(LABEL_W + span * t * 1000 / dur_ms, fmt_ms(t * 1000).removesuffix(".0"))
            for t in range(0, int(dur_s) + 1, step)]


def timeline(ev: Evidence) -> Timeline:
    """Lay out the matched segments and the AI verdict along the upload."""
    dur = duration_ms(ev)
    span = WIDTH - LABEL_W - 10

    def x(ms: float) -> float:
        return LABEL_W + span * min(max(ms, 0), dur) / dur

    def w(a: float, b: float) -> float:
        return max(1.5, x(b) - x(a))

    lanes: list[Lane] = []
    y = float(AXIS_H)
    for m in ev.identification.matches:
        rects = []
        for s in m.segments:
            mods = modifications(s)
            tip = (f"{m.title or m.reference_id}: upload {fmt_ms(s.query_start_ms)}–"
                   f"{fmt_ms(s.query_end_ms)} = reference {fmt_ms(s.ref_start_ms)}–"
                   f"{fmt_ms(s.ref_end_ms)}" + (f" ({', '.join(mods)})" if mods else ""))
            rects.append(Rect(x(s.query_start_ms), w(s.query_start_ms, s.query_end_ms),
                              "#c0392b" if mods else "#2e6fb7", tip,
                              {"q": str(s.query_start_ms), "r": str(s.ref_start_ms),
                               "ref": m.reference_id, "tempo": f"{s.tempo_ratio:.4f}"}))
        owner = f" ({m.owner})" if m.owner else ""
        lanes.append(Lane(label=f"{m.title or m.reference_id}{owner}"[:28], y=y, rects=rects))
        y += LANE_H
    if ev.ai is not None:
        rects = [Rect(x(s.start_ms), w(s.start_ms, s.end_ms), ai_colour(s.ai_probability),
                      f"AI probability {s.ai_probability:.2f} at {fmt_ms(s.start_ms)}–"
                      f"{fmt_ms(s.end_ms)}" if s.ai_probability is not None
                      else f"no AI verdict at {fmt_ms(s.start_ms)}")
                 for s in ev.ai.segments]
        outlines = [Rect(x(sp.get("start_ms", 0)),
                         w(sp.get("start_ms", 0), sp.get("end_ms", 0)), "none",
                         f"AI span {fmt_ms(sp.get('start_ms'))}–{fmt_ms(sp.get('end_ms'))}")
                    for sp in ev.ai.spans]
        lanes.append(Lane(label="AI probability", y=y, rects=rects, outlines=outlines))
        y += LANE_H
    return Timeline(height=y + 4, duration_ms=dur, lanes=lanes, ticks=_ticks(dur, span))


def _range(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else \
        f"{format(lo, fmt)}…{format(hi, fmt)}"


@dataclass
class MatchRow:
    reference_id: str
    title: str
    owner: str
    confidence: str
    upload: str
    reference: str
    speed: str
    pitch: str
    tempo: str
    excluded: str
    modified: bool


def match_rows(ev: Evidence) -> list[MatchRow]:
    """The matches table: one row per reference, ms and % on both sides, edits."""
    out = []
    for m in ev.identification.matches:
        segs = m.segments
        out.append(MatchRow(
            reference_id=m.reference_id, title=m.title or "", owner=m.owner or "—",
            confidence=f"{m.confidence:.3f}",
            upload=f"{m.query_match_ms / 1000:.1f} s · {m.query_match_pct:.1f} %",
            reference=f"{m.ref_match_ms / 1000:.1f} s · {m.ref_match_pct:.1f} %",
            speed=_range([s.speed_ratio for s in segs], ".3f"),
            pitch=_range([s.pitch_semitones for s in segs], "+.2f") + " st",
            tempo=_range([s.tempo_ratio for s in segs], ".3f"),
            excluded=f"{m.excluded_ms / 1000:.1f} s" if m.excluded_ms else "—",
            modified=m.speed_modified or m.pitch_modified))
    return out
