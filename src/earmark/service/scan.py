# SPDX-License-Identifier: Apache-2.0
"""Scan service: one input file → the JSON result users rely on (``earmark scan --json``).

The input is decoded once, streamed; inputs up to :data:`WINDOW_S` are identified in one
piece, longer ones in windows of :data:`WINDOW_S` overlapping by :data:`OVERLAP_S`, whose
matches are put back on the whole input's timeline and merged when they are the same
alignment of the same reference (tempo within 1 %, reference offset within 200 ms).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from earmark.audio.decode import DEFAULT_MAX_SECONDS, SILENCE_PEAK, iter_blocks
from earmark.errors import EarmarkError, SilentInput
from earmark.identify.identifier import RefMatch, SegmentMatch
from earmark.service.catalog import Catalog

WINDOW_S = 60.0  #: longest piece identified at once, seconds
OVERLAP_S = 10.0  #: overlap of consecutive windows, seconds
TEMPO_TOL = 0.01  #: relative tempo difference under which two window matches may merge
OFFSET_TOL_MS = 200  #: reference offset difference under which two window matches may merge
#: which no-match reason wins when windows disagree (the most informative first)
_REASON_ORDER = ("no_candidate", "too_little_signal", "too_short")


#: a stretch of the input that plays a stretch of the reference (the identifier's own record;
#: pydantic validates and serialises the dataclass as it is)
SegmentOut = SegmentMatch


class MatchOut(BaseModel):
    """One reference found in the input."""

    reference_id: str
    title: str | None
    confidence: float
    query_match_ms: int
    query_match_pct: float
    ref_match_ms: int
    ref_match_pct: float
    segments: list[SegmentOut]


class ScanResult(BaseModel):
    """The result for one input: ``match`` (matches best first), ``no_match`` or ``error``.

    ``reason`` is ``None`` on a match; ``duration_ms`` is ``None`` when the input could not
    be decoded.
    """

    input: str
    status: Literal["match", "no_match", "error"]
    reason: str | None
    duration_ms: int | None
    matches: list[MatchOut] = []


def iter_windows(
    blocks: Iterable[np.ndarray], *, win: int, hop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of samples into windows ``(start, samples)``.

    Windows of ``win`` samples start every ``hop`` samples while more samples follow them;
    the last window is the last ``win`` samples (or the whole stream when it is shorter), so
    every window has full length and every sample is covered. Holds at most about
    ``win + hop`` samples plus one block.
    """
    buf = np.zeros(0, np.float32)
    buf0 = 0  # stream position of buf[0]
    start = 0  # next regular window
    covered = 0  # end of the last window yielded
    for b in blocks:
        buf = np.concatenate([buf, np.asarray(b, np.float32)])
        while buf0 + buf.size > start + win:
            yield start, buf[start - buf0: start - buf0 + win]
            covered = start + win
            start += hop
            keep = min(start, buf0 + buf.size - win) - buf0
            if keep > 0:
                buf, buf0 = buf[keep:], buf0 + keep
    total = buf0 + buf.size
    if total > covered or total == 0:
        s = max(0, total - win)
        yield s, buf[s - buf0:]


@dataclass
class _Cluster:
    """Window matches of one reference on one alignment line."""

    ref_key: int
    confidence: float
    tempo: float
    segments: list[SegmentMatch] = field(default_factory=list)


def _on_line(c: _Cluster, s: SegmentMatch) -> bool:
    """Whether ``s`` continues one of ``c``'s segments: the reference time that the nearest
    segment predicts at ``s``'s start (along its own line, so a small tempo error does not
    grow with the distance from the input's start) is within :data:`OFFSET_TOL_MS`."""
    near = min(c.segments, key=lambda x: abs(x.query_start_ms - s.query_start_ms))
    predicted = near.ref_start_ms + near.tempo_ratio * (s.query_start_ms - near.query_start_ms)
    return abs(predicted - s.ref_start_ms) <= OFFSET_TOL_MS


def merge_matches(parts: Sequence[tuple[int, RefMatch]]) -> list[_Cluster]:
    """Merge matches found in windows (``(window start ms, match)``) into clusters.

    Two matches merge when they name the same reference with tempos within
    :data:`TEMPO_TOL` and lie on one line (:func:`_on_line`); overlapping segments of a
    cluster are joined. Clusters come best first.
    """
    shifted = []
    for w0, m in parts:
        segs = [replace(s, query_start_ms=s.query_start_ms + w0, query_end_ms=s.query_end_ms + w0)
                for s in m.segments]
        if segs:
            shifted.append((m, segs))
    shifted.sort(key=lambda p: -p[0].confidence)
    clusters: list[_Cluster] = []
    for m, segs in shifted:
        tempo = segs[0].tempo_ratio
        for c in clusters:
            if (c.ref_key == m.ref_key and abs(tempo / c.tempo - 1.0) <= TEMPO_TOL
                    and _on_line(c, segs[0])):
                c.segments.extend(segs)
                c.confidence = max(c.confidence, m.confidence)
                break
        else:
            clusters.append(_Cluster(m.ref_key, m.confidence, tempo, list(segs)))
    for c in clusters:
        c.segments = _join(c.segments)
    clusters.sort(key=lambda c: (-c.confidence, -_span(c.segments)))
    return clusters


def _join(segs: list[SegmentMatch]) -> list[SegmentMatch]:
    """Union of segments that overlap in input time (the first one's ratios are kept)."""
    out: list[SegmentMatch] = []
    for s in sorted(segs, key=lambda s: (s.query_start_ms, -s.query_end_ms)):
        if out and s.query_start_ms <= out[-1].query_end_ms:
            last = out[-1]
            if s.query_end_ms > last.query_end_ms:
                out[-1] = replace(last, query_end_ms=s.query_end_ms, ref_end_ms=s.ref_end_ms)
        else:
            out.append(s)
    return out


def _span(segs: Sequence[SegmentMatch]) -> int:
    return sum(s.query_end_ms - s.query_start_ms for s in segs)


def _pct(part: int, whole: int | None) -> float:
    return round(min(100.0, 100.0 * part / whole), 1) if whole else 0.0


def scan_file(
    *, catalog: Catalog, path: str | os.PathLike[str],
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> dict[str, Any]:
    """Identify the catalog references an input file contains.

    Parameters
    ----------
    catalog : Catalog
    path : path-like
        Any audio or video file FFmpeg reads.
    max_seconds : float or None
        Longer inputs are an error (``input_too_long``).

    Returns
    -------
    dict
        :class:`ScanResult` as JSON-ready data: ``input``, ``status``, ``reason``,
        ``duration_ms``, ``matches``. Any :class:`EarmarkError` gives ``status: "error"``
        with the error's reason.
    """
    try:
        res = _scan(catalog, path, max_seconds)
    except EarmarkError as exc:
        res = ScanResult(input=os.fspath(path), status="error", reason=exc.reason,
                         duration_ms=None)
    return res.model_dump(mode="json")


def _scan(catalog: Catalog, path: str | os.PathLike[str],
          max_seconds: float | None) -> ScanResult:
    ident = catalog.identifier
    sr = ident.fingerprinter.sr
    parts: list[tuple[int, RefMatch]] = []
    reasons: set[str] = set()
    n_total = 0
    peak = 0.0
    blocks = iter_blocks(path, sr, max_seconds=max_seconds)
    for start, y in iter_windows(blocks, win=int(WINDOW_S * sr),
                                 hop=int((WINDOW_S - OVERLAP_S) * sr)):
        n_total = max(n_total, start + y.size)
        peak = max(peak, float(np.max(np.abs(y))) if y.size else 0.0)
        found = ident.identify(y)
        w0 = round(start * 1000 / sr)
        parts.extend((w0, m) for m in found.matches)
        if found.reason:
            reasons.add(found.reason)
    if peak < SILENCE_PEAK:
        raise SilentInput(f"{Path(path).name!r} is silent (peak under -80 dBFS)")
    duration_ms = round(n_total * 1000 / sr)
    clusters = merge_matches(parts)
    rows = catalog.references_by_key(c.ref_key for c in clusters)
    # one entry per reference: a reference used twice (a repeat in a medley, or at two
    # tempos) is one match with several segments
    by_ref: dict[int, list[_Cluster]] = {}
    for c in clusters:
        by_ref.setdefault(c.ref_key, []).append(c)
    matches = []
    for key, cs in by_ref.items():
        ref = rows.get(key)
        if ref is None:  # removed while we were scanning
            continue
        segs = sorted((s for c in cs for s in c.segments), key=lambda s: s.query_start_ms)
        q_ms = _span(_join(segs))
        r_ms = sum(s.ref_end_ms - s.ref_start_ms for s in segs)
        matches.append(MatchOut(
            reference_id=ref.id, title=ref.title,
            confidence=round(max(c.confidence for c in cs), 4),
            query_match_ms=q_ms, query_match_pct=_pct(q_ms, duration_ms),
            ref_match_ms=r_ms, ref_match_pct=_pct(r_ms, ref.duration_ms),
            segments=segs,
        ))
    matches.sort(key=lambda m: (-m.confidence, -m.query_match_ms))
    if matches:
        return ScanResult(input=os.fspath(path), status="match", reason=None,
                          duration_ms=duration_ms, matches=matches)
    reason = next((r for r in _REASON_ORDER if r in reasons), "no_candidate")
    return ScanResult(input=os.fspath(path), status="no_match", reason=reason,
                      duration_ms=duration_ms)


def scan_paths(
    *, catalog: Catalog, paths: Iterable[str | os.PathLike[str]],
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> Iterator[dict[str, Any]]:
    """:func:`scan_file` over many inputs, lazily; an unexpected failure of one input is
    reported as its ``error`` (``internal_error: ...``) and the others go on."""
    for p in paths:
        try:
            yield scan_file(catalog=catalog, path=p, max_seconds=max_seconds)
        except Exception as exc:
            yield ScanResult(input=os.fspath(p), status="error", duration_ms=None,
                             reason=f"internal_error: {type(exc).__name__}: {exc}"
                             ).model_dump(mode="json")
