# SPDX-License-Identifier: Apache-2.0
"""The evidence record: everything known about one upload, in one JSON document.

Identification (``earmark scan``'s result, with each reference's owner) and AI detection
(``earmark detect``'s result) meet here with the versions that produced them. The policy
engine, the review pages, disputes and DSA statements all read this record and nothing
else, so a decision can always be replayed and explained from what is stored.

>>> ev = Evidence.model_validate({"scan_id": "s1", "input": {"filename": "a.mp3",
...     "sha256": "0" * 64, "size_bytes": 10}, "identification": {"status": "no_match",
...     "reason": "no_candidate"}, "versions": {"earmark": "0"}})
>>> ev.best_match is None
True
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from earmark.utc import UtcDatetime

#: a speed or tempo ratio further than this from 1.0 counts as "modified"
SPEED_TOLERANCE = 0.02
#: a pitch change larger than this (semitones) counts as "modified"
PITCH_TOLERANCE = 0.3


class SegmentEvidence(BaseModel):
    """A stretch of the upload that plays a stretch of the reference (ms on both sides)."""

    query_start_ms: int
    query_end_ms: int
    ref_start_ms: int
    ref_end_ms: int
    speed_ratio: float = 1.0
    pitch_semitones: float = 0.0
    tempo_ratio: float = 1.0


class MatchEvidence(BaseModel):
    """One catalog reference found in the upload, with its owner."""

    reference_id: str
    title: str | None = None
    owner: str | None = None
    confidence: float
    query_match_ms: int
    query_match_pct: float
    ref_match_ms: int
    ref_match_pct: float
    segments: list[SegmentEvidence] = []
    excluded_ms: int = 0  #: matched time dropped by the reference's exclusions

    @property
    def speed_modified(self) -> bool:
        return any(abs(s.speed_ratio - 1) > SPEED_TOLERANCE
                   or abs(s.tempo_ratio - 1) > SPEED_TOLERANCE for s in self.segments)

    @property
    def pitch_modified(self) -> bool:
        return any(abs(s.pitch_semitones) > PITCH_TOLERANCE for s in self.segments)


class Identification(BaseModel):
    status: Literal["match", "no_match", "error"]
    reason: str | None = None
    matches: list[MatchEvidence] = []


class AiSegment(BaseModel):
    start_ms: int
    end_ms: int
    ai_probability: float | None


class AiEvidence(BaseModel):
    """The AI detector's verdict (``earmark detect``'s record without ``input``)."""

    status: Literal["ok", "error"]
    reason: str | None = None
    ai_probability: float | None = None
    label: Literal["ai", "human", "uncertain"] = "uncertain"
    segments: list[AiSegment] = []
    spans: list[dict[str, int]] = []
    family: dict[str, Any] | None = None


class InputInfo(BaseModel):
    filename: str  #: as uploaded; shown to people, never used as a path
    sha256: str
    size_bytes: int
    duration_ms: int | None = None
    format: str | None = None  #: the container FFmpeg found (content sniffing)


class Versions(BaseModel):
    """Which code and models produced the evidence."""

    earmark: str
    fingerprinter: str | None = None
    index: str | None = None
    detector: str | None = None


class Evidence(BaseModel):
    """One upload's evidence."""

    scan_id: str
    external_id: str | None = None
    territory: str | None = None
    content_type: str = "upload"
    input: InputInfo
    identification: Identification
    ai: AiEvidence | None = None
    versions: Versions
    created_at: UtcDatetime = Field(
        default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))

    @property
    def best_match(self) -> MatchEvidence | None:
        return self.identification.matches[0] if self.identification.matches else None

    @property
    def owners(self) -> list[str]:
        """Owners of the matched references, each once, in match order."""
        return list(dict.fromkeys(m.owner for m in self.identification.matches if m.owner))


def apply_exclusions(match: MatchEvidence,
                     exclusions: Iterable[tuple[int, int]]) -> MatchEvidence | None:
    """Drop the parts of ``match`` whose reference side lies in an excluded stretch.

    A segment is cut to what remains outside every exclusion (its upload side moves with
    it, at the segment's tempo); a match with nothing left is ``None``.
    """
    spans = sorted((int(a), int(b)) for a, b in exclusions if b > a)
    if not spans:
        return match
    kept: list[SegmentEvidence] = []
    dropped = 0
    for seg in match.segments:
        pieces = [(seg.ref_start_ms, seg.ref_end_ms)]
        for a, b in spans:
            pieces = [p for lo, hi in pieces
                      for p in ((lo, min(hi, a)), (max(lo, b), hi)) if p[1] > p[0]]
        rlen = max(1, seg.ref_end_ms - seg.ref_start_ms)
        qlen = seg.query_end_ms - seg.query_start_ms
        for lo, hi in pieces:
            q0 = seg.query_start_ms + round((lo - seg.ref_start_ms) * qlen / rlen)
            q1 = seg.query_start_ms + round((hi - seg.ref_start_ms) * qlen / rlen)
            kept.append(seg.model_copy(update={"ref_start_ms": lo, "ref_end_ms": hi,
                                               "query_start_ms": q0, "query_end_ms": q1}))
        dropped += qlen - sum(round((hi - lo) * qlen / rlen) for lo, hi in pieces)
    if not kept:
        return None
    q_ms = sum(s.query_end_ms - s.query_start_ms for s in kept)
    r_ms = sum(s.ref_end_ms - s.ref_start_ms for s in kept)
    scale_q = q_ms / max(1, match.query_match_ms)
    scale_r = r_ms / max(1, match.ref_match_ms)
    return match.model_copy(update={
        "segments": kept, "query_match_ms": q_ms, "ref_match_ms": r_ms,
        "query_match_pct": round(match.query_match_pct * min(1.0, scale_q), 1),
        "ref_match_pct": round(match.ref_match_pct * min(1.0, scale_r), 1),
        "excluded_ms": match.excluded_ms + max(0, dropped),
    })


def build_evidence(*, scan_id: str, input: InputInfo, scan: Mapping[str, Any],
                   detect: Mapping[str, Any] | None, owners: Mapping[str, str | None],
                   exclusions: Mapping[str, list[tuple[int, int]]], versions: Versions,
                   external_id: str | None = None, territory: str | None = None,
                   content_type: str = "upload") -> Evidence:
    """Assemble the record from a scan result and a detect result (both as JSON data).

    ``owners`` maps reference ids to owners; ``exclusions`` maps reference ids to the
    excluded reference stretches (ms). A match left empty by its exclusions is dropped,
    and a scan left without matches becomes ``no_match`` with reason ``excluded``.
    """
    matches: list[MatchEvidence] = []
    for m in scan.get("matches") or []:
        ev = MatchEvidence.model_validate({**m, "owner": owners.get(m["reference_id"])})
        kept = apply_exclusions(ev, exclusions.get(ev.reference_id, ()))
        if kept is not None:
            matches.append(kept)
    status, reason = scan["status"], scan.get("reason")
    if status == "match" and not matches:
        status, reason = "no_match", "excluded"
    ai = None
    if detect is not None:
        ai = AiEvidence.model_validate({k: v for k, v in detect.items()
                                        if k in AiEvidence.model_fields})
    info = input.model_copy(update={"duration_ms": input.duration_ms or scan.get("duration_ms")})
    return Evidence(scan_id=scan_id, external_id=external_id, territory=territory,
                    content_type=content_type, input=info,
                    identification=Identification(status=status, reason=reason,
                                                  matches=matches),
                    ai=ai, versions=versions)
