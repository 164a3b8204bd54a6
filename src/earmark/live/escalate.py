# SPDX-License-Identifier: Apache-2.0
"""Escalation on a live stream: warn → mute the segment → interrupt, with grace periods.

The owner policies of file scans decide here too: each open match is judged by
:func:`earmark.moderation.policy.decide` on an evidence record of the live match
(``content_type="live"``), again as it grows — a 4 s match under the policy's manifest bar
asks for review (a warning), the same match at 12 s may be a manifest ``block``. The action
sets how far the ladder may go:

=================  ==========================================
policy action      ladder
=================  ==========================================
allow, track,      none (the match events are the record)
label, monetize
review             warn
mute               warn, then mute after ``mute_after_s``
block              warn, mute, then interrupt after ``interrupt_after_s``
=================  ==========================================

Each step is an ``escalation`` event with ``level`` (``warn``, ``mute``, ``interrupt``),
the match, the action and the reasons; the platform acts on them (a placeholder, a muted
segment from ``mute_from_ms``, a stopped stream), as YouTube does with live streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from earmark import __version__
from earmark.evidence import Evidence
from earmark.live.timeline import LiveMatch
from earmark.moderation.policy import Decision, PolicyVersion, decide

LEVELS = ("warn", "mute", "interrupt")
_CEILING = {"review": 0, "mute": 1, "block": 2}


@dataclass(frozen=True)
class Grace:
    """Seconds a match must go on after the previous step before the next one."""

    mute_after_s: float = 10.0
    interrupt_after_s: float = 20.0


@dataclass
class _State:
    level: int = -1  # index into LEVELS reached so far
    since_ms: int = 0  # stream time of the last step


@dataclass
class Escalator:
    """Per-stream escalation state over the open matches.

    Parameters
    ----------
    policies : mapping owner → PolicyVersion
        The current policies (from the service database, or empty for the defaults).
    grace : Grace
    territory : str, optional
        Where the stream is watched (ISO 3166 alpha-2), for territorial rules.
    """

    policies: Mapping[str, PolicyVersion] = field(default_factory=dict)
    grace: Grace = field(default_factory=Grace)
    territory: str | None = None
    stream: str = "stream"
    _states: dict[int, _State] = field(default_factory=dict)

    def judge(self, m: LiveMatch, ref: Mapping[str, object]) -> Decision:
        """The policies' decision on the live match as it stands now."""
        dur = m.duration_ms
        ev = Evidence.model_validate({
            "scan_id": f"live:{self.stream}", "territory": self.territory,
            "content_type": "live",
            "input": {"filename": self.stream, "sha256": "", "size_bytes": 0},
            "identification": {"status": "match", "matches": [{
                "reference_id": ref.get("id"), "title": ref.get("title"),
                "owner": ref.get("owner"), "confidence": m.confidence,
                "query_match_ms": dur, "query_match_pct": 100.0,
                "ref_match_ms": m.ref_end_ms - m.ref_start_ms,
                "ref_match_pct": _pct(m.ref_end_ms - m.ref_start_ms, ref.get("duration_ms")),
                "segments": [{"query_start_ms": m.stream_start_ms,
                              "query_end_ms": m.stream_end_ms,
                              "ref_start_ms": m.ref_start_ms, "ref_end_ms": m.ref_end_ms,
                              "speed_ratio": m.speed_ratio,
                              "pitch_semitones": m.pitch_semitones,
                              "tempo_ratio": m.tempo_ratio}]}]},
            "versions": {"earmark": __version__}})
        return decide(ev, self.policies)

    def step(self, m: LiveMatch, ref: Mapping[str, object], now_ms: int
             ) -> list[dict[str, object]]:
        """The escalation steps due now for an open match (usually none)."""
        d = self.judge(m, ref)
        ceiling = _CEILING.get(d.action, -1)
        st = self._states.setdefault(id(m), _State())
        out: list[dict[str, object]] = []
        while st.level < ceiling:
            nxt = st.level + 1
            wait = (0.0, self.grace.mute_after_s, self.grace.interrupt_after_s)[nxt]
            if nxt > 0 and now_ms - st.since_ms < wait * 1000:
                break
            st.level, st.since_ms = nxt, now_ms
            out.append({"level": LEVELS[nxt], "action": d.action, "reasons": d.reasons,
                        "policy_versions": d.policy_versions,
                        "mute_from_ms": m.stream_start_ms if nxt >= 1 else None})
        return out

    def forget(self, m: LiveMatch) -> None:
        self._states.pop(id(m), None)


def _pct(part: int, whole: object) -> float:
    return round(min(100.0, 100.0 * part / whole), 1) if isinstance(whole, int) and whole else 0.0
