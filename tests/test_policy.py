# SPDX-License-Identifier: Apache-2.0
"""The evidence record and the policy engine (pure: no audio, no database)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from earmark.evidence import Evidence, MatchEvidence, SegmentEvidence, apply_exclusions
from earmark.moderation.policy import (
    ACTIONS,
    PLATFORM,
    Conditions,
    PolicyBody,
    PolicyVersion,
    Rule,
    decide,
)


def match(ref: str = "song", owner: str | None = "label-a", *, conf: float = 0.99,
          q_ms: int = 20_000, speed: float = 1.0, pitch: float = 0.0,
          q0: int = 0, r0: int = 30_000) -> dict[str, Any]:
    return {"reference_id": ref, "title": ref, "owner": owner, "confidence": conf,
            "query_match_ms": q_ms, "query_match_pct": 80.0, "ref_match_ms": q_ms,
            "ref_match_pct": 10.0,
            "segments": [{"query_start_ms": q0, "query_end_ms": q0 + q_ms, "ref_start_ms": r0,
                          "ref_end_ms": r0 + round(q_ms * speed), "speed_ratio": speed,
                          "pitch_semitones": pitch, "tempo_ratio": speed}]}


def evidence(*matches: dict[str, Any], ai: float | None = None, label: str = "human",
             territory: str | None = "DE") -> Evidence:
    return Evidence.model_validate({
        "scan_id": "s1", "territory": territory,
        "input": {"filename": "up.mp3", "sha256": "0" * 64, "size_bytes": 1},
        "identification": {"status": "match" if matches else "no_match",
                           "reason": None if matches else "no_candidate",
                           "matches": list(matches)},
        "ai": None if ai is None else {"status": "ok", "ai_probability": ai, "label": label},
        "versions": {"earmark": "test"}})


def pol(owner: str, *rules: Rule, default: str = "track", version: int = 1,
        **manifest: Any) -> dict[str, PolicyVersion]:
    body = PolicyBody(rules=list(rules), default_action=default,  # type: ignore[arg-type]
                      manifest=manifest or {})  # type: ignore[arg-type]
    return {owner: PolicyVersion(owner=owner, version=version, body=body)}


def test_no_match_no_ai_is_allowed_with_a_reason() -> None:
    d = decide(evidence(), {})
    assert d.action == "allow" and d.automated
    assert "no catalog match" in d.reasons[0]


def test_owner_default_and_rule_order() -> None:
    ev = evidence(match())
    assert decide(ev, {}).action == "track"  # built-in default
    rules = (Rule(name="long", when=Conditions(min_query_match_ms=15_000), action="monetize"),
             Rule(name="any", action="block"))
    d = decide(ev, pol("label-a", *rules, version=7))
    assert d.action == "monetize"  # the first rule that holds decides
    assert d.policy_versions["label-a"] == 7
    assert d.owners[0].rule == "long"


def test_block_below_the_manifest_bar_goes_to_review() -> None:
    rule = Rule(name="block all", action="block")
    assert decide(evidence(match(q_ms=20_000)), pol("label-a", rule)).action == "block"
    short = decide(evidence(match(q_ms=6_000)), pol("label-a", rule))
    assert short.action == "review" and "not manifest" in short.reasons[0]
    weak = decide(evidence(match(conf=0.9)), pol("label-a", rule))
    assert weak.action == "review"
    lenient = decide(evidence(match(q_ms=6_000)),
                     pol("label-a", rule, min_query_match_ms=5_000))
    assert lenient.action == "block"


def test_most_restrictive_owner_wins_and_mute_spans_merge() -> None:
    ev = evidence(match("a", "label-a", q0=0), match("b", "label-b", q0=25_000))
    policies = {**pol("label-a", Rule(name="m", action="monetize")),
                **pol("label-b", Rule(name="mute", action="mute"))}
    d = decide(ev, policies)
    assert d.action == "mute"
    assert [(m.start_ms, m.end_ms) for m in d.mute] == [(25_000, 45_000)]
    assert {o.owner: o.action for o in d.owners} == {"label-a": "monetize", "label-b": "mute"}


@pytest.mark.parametrize(("cond", "holds"), [
    (Conditions(speed_modified=True), True),
    (Conditions(speed_modified=False), False),
    (Conditions(pitch_modified=True), False),
    (Conditions(territories=["de", "AT"]), True),
    (Conditions(territories=["US"]), False),
    (Conditions(exclude_territories=["DE"]), False),
    (Conditions(min_query_match_pct=90), False),
    (Conditions(max_ref_match_pct=20), True),
    (Conditions(content_types=["live"]), False),
])
def test_conditions(cond: Conditions, holds: bool) -> None:
    ev = evidence(match(speed=1.25))
    d = decide(ev, pol("label-a", Rule(name="r", when=cond, action="monetize")))
    assert (d.action == "monetize") is holds


def test_platform_rules_label_ai_music_and_combine_with_owners() -> None:
    ai = evidence(ai=0.97, label="ai")
    d = decide(ai, {})
    assert d.action == "label" and d.labels == ["ai_generated"]
    both = decide(evidence(match(), ai=0.97, label="ai"),
                  pol("label-a", Rule(name="m", action="monetize")))
    assert both.action == "monetize" and both.labels == ["ai_generated"]
    strict = pol(PLATFORM, Rule(name="very likely AI",
                                when=Conditions(min_ai_probability=0.95), action="review"),
                 default="allow")
    assert decide(ai, strict).action == "review"
    assert decide(evidence(ai=0.2, label="human"), strict).action == "allow"


def test_ordering_is_total() -> None:
    assert ACTIONS[0] == "allow" and ACTIONS[-1] == "block"
    assert ACTIONS.index("review") < ACTIONS.index("mute")


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="ISO 3166"):
        Conditions(territories=["Germany"])
    with pytest.raises(ValueError):
        PolicyBody.model_validate({"rules": [{"name": "x", "action": "delete"}]})
    with pytest.raises(ValueError):
        PolicyBody.model_validate({"rules": [{"name": "x", "action": "block",
                                              "when": {"min_confidnce": 0.5}}]})


@given(q0=st.integers(0, 60_000), r0=st.integers(0, 120_000), length=st.integers(1000, 60_000),
       speed=st.sampled_from([0.8, 1.0, 1.25]),
       excl=st.lists(st.tuples(st.integers(0, 200_000), st.integers(1, 60_000)), max_size=4))
def test_exclusions_never_leave_matched_time_inside_an_excluded_stretch(
        q0: int, r0: int, length: int, speed: float, excl: list[tuple[int, int]]) -> None:
    m = MatchEvidence.model_validate(match(q_ms=length, speed=speed, q0=q0, r0=r0))
    spans = [(a, a + n) for a, n in excl]
    out = apply_exclusions(m, spans)
    ref_len = m.segments[0].ref_end_ms - m.segments[0].ref_start_ms
    covered = sum(max(0, min(b, r0 + ref_len) - max(a, r0)) for a, b in _union(spans))
    if out is None:
        assert covered >= ref_len
        return
    for s in out.segments:
        assert all(s.ref_end_ms <= a or s.ref_start_ms >= b for a, b in spans)
        assert m.segments[0].query_start_ms <= s.query_start_ms < s.query_end_ms \
            <= m.segments[0].query_end_ms
    kept = sum(s.ref_end_ms - s.ref_start_ms for s in out.segments)
    assert kept == ref_len - covered


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def test_exclusion_shifts_the_upload_side_with_the_tempo() -> None:
    m = MatchEvidence.model_validate(match(q_ms=10_000, speed=2.0, q0=1000, r0=0))
    out = apply_exclusions(m, [(0, 10_000)])  # the first half of the reference side
    assert out is not None
    (seg,) = out.segments
    assert (seg.ref_start_ms, seg.ref_end_ms) == (10_000, 20_000)
    assert (seg.query_start_ms, seg.query_end_ms) == (6000, 11_000)
    assert out.excluded_ms == 5000


def test_segment_flags() -> None:
    s = SegmentEvidence(query_start_ms=0, query_end_ms=1, ref_start_ms=0, ref_end_ms=1,
                        pitch_semitones=2.0)
    m = MatchEvidence(reference_id="x", confidence=1, query_match_ms=1, query_match_pct=1,
                      ref_match_ms=1, ref_match_pct=1, segments=[s])
    assert m.pitch_modified and not m.speed_modified
