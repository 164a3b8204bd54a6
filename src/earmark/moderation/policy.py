# SPDX-License-Identifier: Apache-2.0
"""Owner policies and the engine that turns evidence into one decision.

A policy belongs to an owner (a rights holder, or ``platform`` for rules that hold for every
upload, such as labelling AI music). It is an ordered list of rules; each rule has
conditions and an action, and the first rule whose conditions hold decides for one match of
that owner's references (``platform`` rules are tried on the upload as a whole, with its best
match if any). An owner without a policy gets :data:`DEFAULT_POLICY`.

Across owners the most restrictive action wins (:data:`ACTIONS` is ordered from least to most
restrictive), as Content ID does with ownership conflicts. ``block`` and ``mute`` are only
automatic for a manifest match (the EU copyright directive's Art. 17 asks that only manifest
infringements be removed without a person): below the policy's ``manifest`` bar they become
``review``. Every decision carries the policy versions and the reasons it rests on.

>>> from earmark.evidence import Evidence
>>> ev = Evidence.model_validate({"scan_id": "s", "input": {"filename": "a", "sha256": "0",
...     "size_bytes": 1}, "identification": {"status": "no_match"}, "versions": {"earmark": "0"}})
>>> decide(ev, {}).action
'allow'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from earmark.evidence import Evidence, MatchEvidence
from earmark.utc import UtcDatetime

Action = Literal["allow", "track", "label", "monetize", "review", "mute", "block"]
#: actions from least to most restrictive
ACTIONS: tuple[Action, ...] = ("allow", "track", "label", "monetize", "review", "mute", "block")
#: actions that restrict the upload (each gets a DSA statement of reasons)
RESTRICTIONS: frozenset[str] = frozenset({"label", "monetize", "mute", "block"})
PLATFORM = "platform"


def severity(action: str) -> int:
    return ACTIONS.index(action)  # type: ignore[arg-type,unused-ignore]


class Conditions(BaseModel):
    """All given conditions must hold (an empty set of conditions always holds).

    Match conditions (``min_*`` / ``max_*`` on confidence, duration, percentage and the
    modified flags) need a match; AI conditions need the detector's verdict.
    """

    model_config = {"extra": "forbid"}

    min_confidence: float | None = Field(default=None, ge=0, le=1)
    min_query_match_ms: int | None = Field(default=None, ge=0)
    max_query_match_ms: int | None = Field(default=None, ge=0)
    min_query_match_pct: float | None = Field(default=None, ge=0, le=100)
    min_ref_match_ms: int | None = Field(default=None, ge=0)
    min_ref_match_pct: float | None = Field(default=None, ge=0, le=100)
    max_ref_match_pct: float | None = Field(default=None, ge=0, le=100)
    speed_modified: bool | None = None
    pitch_modified: bool | None = None
    min_ai_probability: float | None = Field(default=None, ge=0, le=1)
    ai_label: list[Literal["ai", "human", "uncertain"]] | None = None
    territories: list[str] | None = None  #: ISO 3166 alpha-2; None = everywhere
    exclude_territories: list[str] | None = None
    content_types: list[str] | None = None  #: upload, live, ...

    @field_validator("territories", "exclude_territories")
    @classmethod
    def _codes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        bad = [c for c in v if len(c) != 2 or not c.isalpha()]
        if bad:
            raise ValueError(f"territories are ISO 3166 alpha-2 codes, got {bad}")
        return [c.upper() for c in v]

    def needs_match(self) -> bool:
        return any(getattr(self, f) is not None for f in (
            "min_confidence", "min_query_match_ms", "max_query_match_ms", "min_query_match_pct",
            "min_ref_match_ms", "min_ref_match_pct", "max_ref_match_pct", "speed_modified",
            "pitch_modified"))

    def failures(self, ev: Evidence, m: MatchEvidence | None) -> list[str]:
        """The conditions that do not hold (empty: the rule applies)."""
        out: list[str] = []
        if m is None and self.needs_match():
            return ["no match"]
        if m is not None:
            checks = [
                (self.min_confidence, lambda v: m.confidence >= v, "confidence"),
                (self.min_query_match_ms, lambda v: m.query_match_ms >= v, "query_match_ms"),
                (self.max_query_match_ms, lambda v: m.query_match_ms <= v, "query_match_ms"),
                (self.min_query_match_pct, lambda v: m.query_match_pct >= v, "query_match_pct"),
                (self.min_ref_match_ms, lambda v: m.ref_match_ms >= v, "ref_match_ms"),
                (self.min_ref_match_pct, lambda v: m.ref_match_pct >= v, "ref_match_pct"),
                (self.max_ref_match_pct, lambda v: m.ref_match_pct <= v, "ref_match_pct"),
                (self.speed_modified, lambda v: m.speed_modified == v, "speed_modified"),
                (self.pitch_modified, lambda v: m.pitch_modified == v, "pitch_modified"),
            ]
            out += [name for v, ok, name in checks if v is not None and not ok(v)]
        ai = ev.ai if ev.ai is not None and ev.ai.status == "ok" else None
        if self.min_ai_probability is not None and (
                ai is None or ai.ai_probability is None
                or ai.ai_probability < self.min_ai_probability):
            out.append("ai_probability")
        if self.ai_label is not None and (ai is None or ai.label not in self.ai_label):
            out.append("ai_label")
        terr = (ev.territory or "").upper()
        if self.territories is not None and terr not in self.territories:
            out.append("territory")
        if self.exclude_territories is not None and terr in self.exclude_territories:
            out.append("territory")
        if self.content_types is not None and ev.content_type not in self.content_types:
            out.append("content_type")
        return out


class Rule(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(..., min_length=1, max_length=120)
    when: Conditions = Conditions()
    action: Action


class Manifest(BaseModel):
    """The bar above which ``block`` / ``mute`` may be applied without a person."""

    model_config = {"extra": "forbid"}

    min_confidence: float = Field(default=0.95, ge=0, le=1)
    min_query_match_ms: int = Field(default=10_000, ge=0)


class PolicyBody(BaseModel):
    """What an owner submits (``POST /v1/policies``); versions are assigned on save."""

    model_config = {"extra": "forbid"}

    rules: list[Rule] = Field(default_factory=list, max_length=200)
    default_action: Action = "track"  #: for a match of this owner that no rule decides
    manifest: Manifest = Manifest()


class PolicyVersion(BaseModel):
    owner: str
    version: int
    body: PolicyBody


DEFAULT_POLICY = PolicyBody(rules=[
    Rule(name="weak match", when=Conditions(max_query_match_ms=2999), action="review"),
])
PLATFORM_DEFAULT = PolicyBody(rules=[
    Rule(name="AI-generated", when=Conditions(ai_label=["ai"]), action="label"),
], default_action="allow")


class OwnerDecision(BaseModel):
    owner: str
    policy_version: int  #: 0 = the built-in default
    action: Action
    rule: str | None
    reference_ids: list[str] = []
    reasons: list[str] = []


class MuteSpan(BaseModel):
    start_ms: int
    end_ms: int


class Decision(BaseModel):
    """The outcome for one upload; ``by`` says who decided (``policy`` or a person)."""

    action: Action
    labels: list[str] = []
    mute: list[MuteSpan] = []
    owners: list[OwnerDecision] = []
    reasons: list[str] = []
    policy_versions: dict[str, int] = {}
    automated: bool = True
    by: str = "policy"
    decided_at: UtcDatetime = Field(
        default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))


def _describe(m: MatchEvidence) -> str:
    mods = [w for w, f in (("speed", m.speed_modified), ("pitch", m.pitch_modified)) if f]
    return (f"{m.reference_id} matched {m.query_match_ms / 1000:.1f} s "
            f"({m.query_match_pct:.0f}% of the upload, {m.ref_match_pct:.0f}% of the "
            f"reference) at confidence {m.confidence:.3f}"
            + (f", {' and '.join(mods)} modified" if mods else ""))


def _decide_one(ev: Evidence, m: MatchEvidence | None, body: PolicyBody,
                ) -> tuple[Action, str | None, str]:
    for rule in body.rules:
        if not rule.when.failures(ev, m):
            act: Action = rule.action
            why = f"rule {rule.name!r}"
            if act in ("block", "mute") and m is not None and (
                    m.confidence < body.manifest.min_confidence
                    or m.query_match_ms < body.manifest.min_query_match_ms):
                return "review", rule.name, why + f" asks {act}; not manifest, so review"
            if act in ("block", "mute") and m is None:
                return "review", rule.name, why + f" asks {act} without a match; review"
            return act, rule.name, why
    return body.default_action, None, "default action"


def decide(ev: Evidence, policies: Mapping[str, PolicyVersion]) -> Decision:
    """Evaluate every owner's policy on the evidence; the most restrictive action wins.

    Parameters
    ----------
    ev : Evidence
    policies : mapping owner → PolicyVersion
        The current version of each owner's policy; owners missing here get the defaults.
    """
    owners: dict[str, OwnerDecision] = {}
    mute: list[MuteSpan] = []
    for m in ev.identification.matches:
        owner = m.owner or "unknown"
        pv = policies.get(owner)
        body, version = (pv.body, pv.version) if pv else (DEFAULT_POLICY, 0)
        act, rule, why = _decide_one(ev, m, body)
        od = owners.setdefault(owner, OwnerDecision(owner=owner, policy_version=version,
                                                    action="allow", rule=None))
        od.reference_ids.append(m.reference_id)
        od.reasons.append(f"{_describe(m)}: {act} ({why})")
        if severity(act) >= severity(od.action):
            od.action, od.rule = act, rule
        if act == "mute":
            mute += [MuteSpan(start_ms=s.query_start_ms, end_ms=s.query_end_ms)
                     for s in m.segments]
    pv = policies.get(PLATFORM)
    body, version = (pv.body, pv.version) if pv else (PLATFORM_DEFAULT, 0)
    act, rule, why = _decide_one(ev, ev.best_match, body)
    if act != "allow" or rule is not None:
        ai = ev.ai
        what = (f"AI probability {ai.ai_probability:.3f}, label {ai.label}"
                if ai is not None and ai.ai_probability is not None else "upload")
        owners[PLATFORM] = OwnerDecision(owner=PLATFORM, policy_version=version, action=act,
                                         rule=rule, reasons=[f"{what}: {act} ({why})"])
    labels = ["ai_generated"] if any(o.action == "label" for o in owners.values()) else []
    final: Action = max((o.action for o in owners.values()), key=severity, default="allow")
    if final == "mute":
        mute = _merge(mute)
    else:
        mute = []
    reasons = [r for o in owners.values() for r in o.reasons] or [
        f"no catalog match ({ev.identification.reason or 'no_candidate'}) and no platform "
        "rule applies"]
    return Decision(action=final, labels=labels, mute=mute, owners=list(owners.values()),
                    reasons=reasons,
                    policy_versions={o.owner: o.policy_version for o in owners.values()})


def _merge(spans: list[MuteSpan]) -> list[MuteSpan]:
    out: list[MuteSpan] = []
    for s in sorted(spans, key=lambda s: s.start_ms):
        if out and s.start_ms <= out[-1].end_ms:
            out[-1].end_ms = max(out[-1].end_ms, s.end_ms)
        else:
            out.append(s.model_copy())
    return out
