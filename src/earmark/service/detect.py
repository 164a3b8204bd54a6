# SPDX-License-Identifier: Apache-2.0
"""Detect service: one input file → the JSON result of ``earmark detect --json``.

The input is decoded in blocks of whole segments, so a 3-hour file never sits whole in memory;
when some segment is labelled AI, a second pass follows the grid frame by frame to give the AI
spans at frame resolution (``spans``), which is how a partly-AI track is localised.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from earmark.audio.decode import DEFAULT_MAX_SECONDS, iter_blocks
from earmark.detect.base import (
    SPAN_THRESHOLD,
    Detector,
    SegmentScores,
    get_detector,
    label_of,
)
from earmark.errors import EarmarkError

BLOCK_S = 30.0  #: about this much audio is decoded at a time


class SegmentOut(BaseModel):
    start_ms: int
    end_ms: int
    #: None where the segment holds too little signal to judge (silence, too short)
    ai_probability: float | None


class SpanOut(BaseModel):
    start_ms: int
    end_ms: int


class FamilyOut(BaseModel):
    name: str
    probability: float


class DetectorOut(BaseModel):
    name: str
    version: str


class ShadowOut(BaseModel):
    """What the shadow model says (it never decides: ``label`` above is the active one's)."""

    detector: DetectorOut
    ai_probability: float | None
    label: Literal["ai", "human", "uncertain"]


class DetectResult(BaseModel):
    """One input's result; ``reason`` explains an error or an ``uncertain`` without evidence."""

    input: str
    status: Literal["ok", "error"]
    reason: str | None = None
    duration_ms: int | None = None
    ai_probability: float | None = None
    label: Literal["ai", "human", "uncertain"] = "uncertain"
    segments: list[SegmentOut] = []
    spans: list[SpanOut] = []
    family: FamilyOut | None = None
    detector: DetectorOut
    shadow: ShadowOut | None = None


def _blocks(path: str | os.PathLike[str], sr: int, segment_ms: int,
            max_seconds: float | None) -> Iterator[np.ndarray]:
    """Blocks of whole segments; a last block under 1 s joins the one before it."""
    seg_s = segment_ms / 1000
    block_s = seg_s * max(1, round(BLOCK_S / seg_s))
    held: np.ndarray | None = None
    for block in iter_blocks(path, sr, block_s=block_s, max_seconds=max_seconds):
        if held is not None:
            if block.size < sr:
                block = np.concatenate([held, block])
            else:
                yield held
        held = block
    if held is not None:
        yield held


def detect_file(path: str | os.PathLike[str], detector: Detector, *, segment_ms: int = 5000,
                max_seconds: float | None = DEFAULT_MAX_SECONDS, name: str | None = None,
                ) -> DetectResult:
    """Score one file segment by segment; typed input errors become ``status: error``."""
    label = name if name is not None else str(path)
    det_out = DetectorOut(name=detector.name, version=detector.version)
    try:
        if segment_ms < 1000:
            raise ValueError("segment_ms must be at least 1000")
        parts: list[SegmentScores] = []
        n = 0
        for block in _blocks(path, detector.sr, segment_ms, max_seconds):
            s = detector.score(block, detector.sr, segment_ms=segment_ms)
            parts.append(s.shifted(n * 1000 // detector.sr))
            n += block.size
        scores = SegmentScores.concat(parts)
        spans = _spans(path, detector, scores, segment_ms, max_seconds)
    except EarmarkError as exc:
        return DetectResult(input=label, status="error", reason=exc.reason, detector=det_out)
    return result_of(label, scores, n * 1000 // detector.sr, detector, spans)


def _spans(path: str | os.PathLike[str], detector: Detector, scores: SegmentScores,
           segment_ms: int, max_seconds: float | None) -> list[tuple[int, int]]:
    from earmark.detect import residue

    if not isinstance(detector, residue.ResidueDetector):  # segment resolution, runs merged
        prob = np.nan_to_num(scores.probability, nan=0.0)
        spans: list[tuple[int, int]] = []
        for a, b, p in zip(scores.start_ms, scores.end_ms, prob, strict=True):
            if p < SPAN_THRESHOLD:
                continue
            if spans and spans[-1][1] == a:
                spans[-1] = (spans[-1][0], int(b))
            else:
                spans.append((int(a), int(b)))
        return spans
    prob = np.nan_to_num(scores.probability, nan=0.0)
    if not prob.size or prob.max() < SPAN_THRESHOLD:
        return []
    grid = residue.best_grid(scores)
    ts: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    n = 0
    for block in _blocks(path, detector.sr, segment_ms, max_seconds):
        t, c = residue.grid_activity(block, grid, detector.params)
        ts.append(t + n * 1000.0 / detector.sr)
        cs.append(c)
        n += block.size
    return residue.spans_of(np.concatenate(ts), np.concatenate(cs), scores,
                            threshold=SPAN_THRESHOLD,
                            hop_ms=detector.params.hop * 1000.0 / detector.sr)


def result_of(label: str, scores: SegmentScores, duration_ms: int, detector: Detector,
              spans: Iterable[tuple[int, int]] = ()) -> DetectResult:
    """The JSON record of already computed scores."""
    finite = scores.probability[np.isfinite(scores.probability)]
    p = float(finite.max()) if finite.size else None
    reason = None if p is not None else "too_little_signal: silent or too short to judge"
    lab = label_of(p)
    family = None
    if lab == "ai" and scores.grid_hz.size:
        from earmark.detect.residue import best_grid, grid_family

        grid = best_grid(scores)
        if math.isfinite(grid):
            family = FamilyOut(name=grid_family(grid), probability=round(p or 0.0, 4))
    return DetectResult(
        input=label, status="ok", reason=reason, duration_ms=duration_ms,
        ai_probability=None if p is None else round(p, 4), label=lab,
        segments=[SegmentOut(start_ms=int(a), end_ms=int(b),
                             ai_probability=None if not math.isfinite(v) else round(float(v), 4))
                  for a, b, v in zip(scores.start_ms, scores.end_ms, scores.probability,
                                     strict=True)],
        spans=[SpanOut(start_ms=a, end_ms=b) for a, b in spans],
        family=family,
        detector=DetectorOut(name=detector.name, version=detector.version),
    )


def detect_paths(paths: Iterable[str], *, detector: str | Detector = "residue",
                 shadow: Detector | None = None, segment_ms: int = 5000,
                 max_seconds: float | None = DEFAULT_MAX_SECONDS) -> Iterator[dict[str, Any]]:
    """``detect_file`` over many inputs; a bad input gives an error record and the batch goes
    on. A ``shadow`` detector scores each input too; its verdict is reported, never used."""
    det = get_detector(detector) if isinstance(detector, str) else detector
    for p in paths:
        res = detect_file(p, det, segment_ms=segment_ms, max_seconds=max_seconds, name=p)
        if shadow is not None and res.status == "ok":
            sh = detect_file(p, shadow, segment_ms=segment_ms, max_seconds=max_seconds, name=p)
            res.shadow = ShadowOut(detector=sh.detector, ai_probability=sh.ai_probability,
                                   label=sh.label)
        yield res.model_dump()
