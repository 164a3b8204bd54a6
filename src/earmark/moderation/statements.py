# SPDX-License-Identifier: Apache-2.0
"""DSA statements of reasons (Regulation (EU) 2022/2065, Art. 17 and Art. 24(5)).

Every restriction earmark decides — disabling access to an upload, muting parts of it,
paying its revenue to a rights holder, labelling it as AI-generated — gets a statement
that says what was restricted and where, why (the facts, the ground, the rule), whether
detection and decision were automated, and how to complain.

The body uses the field names and enumerated values of the Commission's DSA Transparency
Database API, version 2 (the schema in force since 1 July 2025), as documented at
https://transparency.dsa.ec.europa.eu/page/api-documentation (source:
``resources/markdown/api-documentation-two.md`` and ``app/Models/Statement.php`` of
https://github.com/digital-services-act/transparency-database). In particular:

- ``decision_visibility`` and ``content_type`` are arrays; ``*_other`` texts ≤ 500 characters;
- ``decision_facts`` ≤ 5000, ``illegal_content_explanation`` and
  ``incompatible_content_explanation`` ≤ 2000, the grounds ≤ 500 characters;
- ``automated_detection`` and ``incompatible_content_illegal`` are ``"Yes"``/``"No"``;
  ``automated_decision`` is ``AUTOMATED_DECISION_FULLY|PARTIALLY|NOT_AUTOMATED``;
- ``application_date`` and ``content_date`` are ``YYYY-MM-DD``;
- ``territorial_scope`` lists EU/EEA alpha-2 codes (Greece is ``GR``);
- ``puid`` is unique per statement within the platform, ``[A-Za-z0-9_-]``, ≤ 500 characters;
- v2 categories: copyright is ``STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS`` with
  the keyword ``KEYWORD_COPYRIGHT_INFRINGEMENT``; a platform rule (AI labelling) is
  ``STATEMENT_CATEGORY_OTHER_VIOLATION_TC``.

What is earmark's own — the redress route, the mute spans in ms, the matches with their
owners and titles, the decision's reasons (a reviewer's note included, the reviewer not),
policy and model versions — stays in the stored body under ``earmark``,
which :func:`export_body` drops together with anything else the database does not know.
The exported part holds no personal data: no uploader, no file name, no reviewer and no
free text a person wrote (the facts are generated from the evidence alone).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from earmark.evidence import Evidence, MatchEvidence
from earmark.moderation.disputes import COMPLAINT_WINDOW_DAYS, complaint_deadline
from earmark.moderation.policy import PLATFORM, Decision, OwnerDecision, severity
from earmark.utc import rfc3339

#: EU member states (alpha-2 as the Transparency Database spells them: Greece is GR)
EU: tuple[str, ...] = ("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR",
                       "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL",
                       "PT", "RO", "SE", "SI", "SK")
#: the European Economic Area: the EU and Iceland, Liechtenstein, Norway
EEA: tuple[str, ...] = tuple(sorted((*EU, "IS", "LI", "NO")))

DECISION_VISIBILITIES = frozenset({
    "DECISION_VISIBILITY_CONTENT_REMOVED", "DECISION_VISIBILITY_CONTENT_DISABLED",
    "DECISION_VISIBILITY_CONTENT_DEMOTED", "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_LABELLED", "DECISION_VISIBILITY_OTHER"})
DECISION_MONETARIES = frozenset({"DECISION_MONETARY_SUSPENSION",
                                 "DECISION_MONETARY_TERMINATION", "DECISION_MONETARY_OTHER"})
DECISION_GROUNDS = frozenset({"DECISION_GROUND_ILLEGAL_CONTENT",
                              "DECISION_GROUND_INCOMPATIBLE_CONTENT"})
CONTENT_TYPES = frozenset({"CONTENT_TYPE_APP", "CONTENT_TYPE_AUDIO", "CONTENT_TYPE_IMAGE",
                           "CONTENT_TYPE_PRODUCT", "CONTENT_TYPE_SYNTHETIC_MEDIA",
                           "CONTENT_TYPE_TEXT", "CONTENT_TYPE_VIDEO", "CONTENT_TYPE_OTHER"})
#: the v2 categories
CATEGORIES = frozenset({
    "STATEMENT_CATEGORY_ANIMAL_WELFARE", "STATEMENT_CATEGORY_CONSUMER_INFORMATION",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE", "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN",
    "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
    "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
    "STATEMENT_CATEGORY_NOT_SPECIFIED_NOTICE", "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
    "STATEMENT_CATEGORY_PROTECTION_OF_MINORS", "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
    "STATEMENT_CATEGORY_SCAMS_AND_FRAUD", "STATEMENT_CATEGORY_SELF_HARM",
    "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS", "STATEMENT_CATEGORY_VIOLENCE"})
SOURCE_TYPES = frozenset({"SOURCE_ARTICLE_16", "SOURCE_TRUSTED_FLAGGER",
                          "SOURCE_TYPE_OTHER_NOTIFICATION", "SOURCE_VOLUNTARY"})
AUTOMATED_DECISIONS = frozenset({"AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_PARTIALLY",
                                 "AUTOMATED_DECISION_NOT_AUTOMATED"})
YES_NO = frozenset({"Yes", "No"})

#: every attribute the Transparency Database accepts (API v2); the export keeps only these
TDB_FIELDS: tuple[str, ...] = (
    "decision_visibility", "decision_visibility_other", "end_date_visibility_restriction",
    "decision_monetary", "decision_monetary_other", "end_date_monetary_restriction",
    "decision_provision", "end_date_service_restriction", "decision_account",
    "end_date_account_restriction", "account_type", "decision_ground",
    "decision_ground_reference_url", "illegal_content_legal_ground",
    "illegal_content_explanation", "incompatible_content_ground",
    "incompatible_content_explanation", "incompatible_content_illegal", "category",
    "category_addition", "category_specification", "category_specification_other",
    "content_type", "content_type_other", "content_id", "content_language", "content_date",
    "territorial_scope", "application_date", "decision_facts", "source_type",
    "automated_detection", "automated_decision", "puid")
#: free texts and their limits (characters)
LIMITS: dict[str, int] = {
    "decision_visibility_other": 500, "decision_monetary_other": 500,
    "illegal_content_legal_ground": 500, "illegal_content_explanation": 2000,
    "incompatible_content_ground": 500, "incompatible_content_explanation": 2000,
    "category_specification_other": 500, "content_type_other": 500,
    "decision_facts": 5000, "puid": 500}
REQUIRED: tuple[str, ...] = ("decision_ground", "content_type", "category",
                             "territorial_scope", "content_date", "application_date",
                             "decision_facts", "source_type", "automated_detection",
                             "automated_decision", "puid")
_PUID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: who reviewed (``reviewed by user:jane: …``, :mod:`earmark.service.reviews`) is not told
_REVIEWER = re.compile(r"^(reviewed by) \S+:")

COPYRIGHT_GROUND = (
    "Copyright and related rights: communication to the public of a protected sound "
    "recording without the rights holder's authorisation (Directive 2001/29/EC, Art. 3; "
    "Directive (EU) 2019/790, Art. 17).")
#: how to complain (Art. 17(3)(f)); the dispute endpoint is earmark's complaint system
REDRESS = (f"Dispute this decision with the platform's internal complaint-handling system "
           f"(earmark: POST /v1/disputes with the scan id) within {COMPLAINT_WINDOW_DAYS} "
           "days; a certified out-of-court dispute settlement body (DSA Art. 21) and the "
           "courts remain open in any case.")
_RESTRICTION = {
    "block": "Access to the upload is disabled.",
    "label": "The upload is shown with a label saying that it is AI-generated.",
    "monetize": "The upload stays available; its revenue is paid to the rights holder of "
                "the matched recording.",
}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _span_text(spans: list[tuple[int, int]], limit: int) -> str:
    parts = [f"{a}–{b} ms" for a, b in spans]
    out = ""
    for i, p in enumerate(parts):
        more = f" and {len(parts) - i} more spans"
        if len(out) + len(p) + 2 + len(more) > limit:
            return out + more
        out = f"{out}, {p}" if out else p
    return out


def _drivers(decision: Decision) -> list[OwnerDecision]:
    """The parts that explain the action: those asking it, else the most restrictive."""
    same = [o for o in decision.owners if o.action == decision.action]
    if same or not decision.owners:
        return same
    top = max(severity(o.action) for o in decision.owners)
    return [o for o in decision.owners if severity(o.action) == top]


def _match_fact(m: MatchEvidence) -> str:
    mods = [w for w, f in (("speed", m.speed_modified), ("pitch", m.pitch_modified)) if f]
    return (f"Audio fingerprinting found catalog recording {m.reference_id} in the upload: "
            f"{m.query_match_ms / 1000:.1f} s ({m.query_match_pct:.0f}% of the upload, "
            f"{m.ref_match_pct:.0f}% of the recording) at confidence {m.confidence:.3f}"
            + (f", {' and '.join(mods)} modified" if mods else "") + ".")


def _ai_fact(ev: Evidence) -> str | None:
    ai = ev.ai
    if ai is None or ai.status != "ok" or ai.ai_probability is None:
        return None
    return (f"An AI-music detector scored the audio {ai.ai_probability:.2f} as AI-generated "
            f"(verdict: {ai.label}).")


def _who_decided(decision: Decision) -> str:
    if decision.automated:
        return "The decision was taken automatically by the platform's policy engine."
    if decision.by.startswith(("dispute:", "notice:")):
        return ("The decision was taken by a person, as the outcome of the uploader's "
                "dispute and appeal.")
    return "The decision was taken by a person who reviewed the automated detection."


def _restriction(decision: Decision) -> str:
    if decision.action == "mute":
        spans = [(m.start_ms, m.end_ms) for m in decision.mute]
        return "The audio is muted at " + _span_text(spans, 600) + "."
    return _RESTRICTION.get(decision.action, f"Restriction: {decision.action}.")


def build_statement(ev: Evidence, decision: Decision, *, scan_id: str,
                    created_at: dt.datetime) -> dict[str, Any]:
    """The statement of reasons for ``decision`` on ``ev``.

    Parameters
    ----------
    ev : Evidence
        What the decision rests on.
    decision : Decision
        A restriction (``label``, ``monetize``, ``mute`` or ``block``).
    scan_id : str
        The scan; with ``created_at`` it makes the statement's ``puid``.
    created_at : datetime
        When the statement is issued (naive UTC): the ``application_date``.

    Returns
    -------
    dict
        Transparency Database fields (API v2), plus earmark's own under ``earmark``.
    """
    act = decision.action
    drivers = _drivers(decision)
    copyright_ = bool(ev.identification.matches) and any(
        o.owner != PLATFORM for o in drivers)
    ai_label = "ai_generated" in decision.labels
    refs = {r for o in drivers for r in o.reference_ids} if copyright_ else set()
    matches = [m for m in ev.identification.matches if m.reference_id in refs]
    # the platform's rules are its terms and are named; an owner's rule names are its own
    # free text, which stays in the uploader's statement (``earmark.rules``) only
    rules = [f"platform's rule {o.rule!r} (policy version {o.policy_version}) asks {o.action}"
             if o.owner == PLATFORM else
             f"rights holder's policy (version {o.policy_version}) asks {o.action}"
             for o in drivers]
    rules = list(dict.fromkeys(rules))
    facts = [_match_fact(m) for m in matches[:20]]
    if (ai := _ai_fact(ev)) is not None:
        facts.append(ai)
    if rules:
        facts.append("The " + "; the ".join(rules) + ".")
    facts += [_restriction(decision), _who_decided(decision)]
    if ai_label and act != "label":
        facts.append("The upload is also labelled as AI-generated.")

    visibility: list[str] = []
    if act == "block":
        visibility.append("DECISION_VISIBILITY_CONTENT_DISABLED")
    elif act == "mute":
        visibility.append("DECISION_VISIBILITY_OTHER")
    if act == "label" or ai_label:
        visibility.append("DECISION_VISIBILITY_CONTENT_LABELLED")
    territory = (ev.territory or "").upper()
    territory = {"EL": "GR"}.get(territory, territory)  # the EU's code for Greece
    body: dict[str, Any] = {}
    if visibility:
        body["decision_visibility"] = visibility
    if act == "mute":
        body["decision_visibility_other"] = (
            "Parts of the audio are muted: "
            + _span_text([(m.start_ms, m.end_ms) for m in decision.mute], 460))
    if act == "monetize":
        body["decision_monetary"] = "DECISION_MONETARY_OTHER"
        body["decision_monetary_other"] = (
            "Revenue from the content is paid to the rights holder of the matched recording.")
    matched = _cut(" ".join(_match_fact(m) for m in matches[:10]), 1600)
    if copyright_ and act in ("block", "mute"):
        body["decision_ground"] = "DECISION_GROUND_ILLEGAL_CONTENT"
        body["illegal_content_legal_ground"] = COPYRIGHT_GROUND
        body["illegal_content_explanation"] = _cut(
            f"{matched} The rights holder has not licensed this use: its policy asks {act}.",
            2000)
    elif copyright_:
        body["decision_ground"] = "DECISION_GROUND_INCOMPATIBLE_CONTENT"
        body["incompatible_content_ground"] = (
            "Platform terms: an upload that uses catalog recordings follows their rights "
            "holder's policy for them.")
        body["incompatible_content_explanation"] = _cut(
            f"{matched} The rights holder's policy asks {act}.", 2000)
        body["incompatible_content_illegal"] = "No"
    else:
        rule = next((o.rule for o in drivers if o.rule), None)
        body["decision_ground"] = "DECISION_GROUND_INCOMPATIBLE_CONTENT"
        body["incompatible_content_ground"] = _cut(
            "Platform terms: " + ("AI-generated music must be identified as such"
                                  if act == "label" else "platform content rules")
            + (f" (rule {rule!r})" if rule else "") + ".", 500)
        body["incompatible_content_explanation"] = _cut(
            _ai_fact(ev) or "The platform's policy applies to this upload.", 2000)
        body["incompatible_content_illegal"] = "No"
    body["category"] = ("STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS" if copyright_
                        else "STATEMENT_CATEGORY_OTHER_VIOLATION_TC")
    if copyright_:
        body["category_specification"] = ["KEYWORD_COPYRIGHT_INFRINGEMENT"]
    body["content_type"] = ["CONTENT_TYPE_AUDIO"] + (
        ["CONTENT_TYPE_SYNTHETIC_MEDIA"] if ai_label else [])
    body["territorial_scope"] = ([territory] if territory in EEA
                                 else [] if territory else list(EEA))
    uploaded = ev.created_at.replace(tzinfo=None)
    body["content_date"] = min(uploaded, created_at).strftime("%Y-%m-%d")
    body["application_date"] = created_at.strftime("%Y-%m-%d")
    body["decision_facts"] = _cut(" ".join(facts), 5000)
    body["source_type"] = ("SOURCE_ARTICLE_16" if decision.by.startswith("notice:")
                           else "SOURCE_VOLUNTARY")
    body["automated_detection"] = "Yes"  # fingerprinting and the AI detector found it
    body["automated_decision"] = ("AUTOMATED_DECISION_FULLY" if decision.automated
                                  else "AUTOMATED_DECISION_NOT_AUTOMATED")
    body["puid"] = re.sub(r"[^A-Za-z0-9_-]", "_",
                          f"{scan_id}-{created_at.strftime('%Y%m%dT%H%M%S%f')}")[:500]
    body["earmark"] = {
        "scan_id": scan_id,
        "action": act,
        "labels": list(decision.labels),
        "mute_ms": [[m.start_ms, m.end_ms] for m in decision.mute],
        "automated": decision.automated,
        "decided_by": "policy" if decision.automated else "person",
        "decided_at": rfc3339(decision.decided_at),
        "policy_versions": dict(decision.policy_versions),
        "reasons": [_REVIEWER.sub(r"\1 a moderator:", r)[:2000] for r in decision.reasons[:20]],
        "rules": [{"owner": o.owner, "rule": o.rule, "action": o.action,
                   "policy_version": o.policy_version} for o in decision.owners],
        "matches": [{"reference_id": m.reference_id, "title": m.title, "owner": m.owner,
                     "confidence": m.confidence, "query_match_ms": m.query_match_ms,
                     "segments_ms": [[s.query_start_ms, s.query_end_ms] for s in m.segments]}
                    for m in ev.identification.matches[:50]],
        "ai": ({"probability": ev.ai.ai_probability, "label": ev.ai.label}
               if ev.ai is not None and ev.ai.status == "ok" else None),
        "redress": {"text": REDRESS, "endpoint": "POST /v1/disputes",
                    "until": complaint_deadline(created_at).strftime("%Y-%m-%d"),
                    "window_days": COMPLAINT_WINDOW_DAYS,
                    "out_of_court": "DSA Art. 21"},
        "versions": ev.versions.model_dump(),
    }
    return body


def export_body(body: dict[str, Any]) -> dict[str, Any] | None:
    """The part of a stored statement the Transparency Database takes (None: not for it).

    Only :data:`TDB_FIELDS` are kept, and empty values dropped; a statement whose
    territorial scope lies outside the EU/EEA is not the database's business (None).
    """
    out = {k: body[k] for k in TDB_FIELDS if body.get(k) not in (None, "", [])}
    return out if out.get("territorial_scope") else None


def check(body: dict[str, Any]) -> list[str]:
    """What the Transparency Database would refuse in ``body`` (empty: nothing)."""
    bad = [f"{k} is required" for k in REQUIRED if body.get(k) in (None, "", [])]
    bad += [f"{k} is not a Transparency Database attribute" for k in body
            if k not in TDB_FIELDS]
    if not any(body.get(k) for k in ("decision_visibility", "decision_monetary",
                                     "decision_provision", "decision_account")):
        bad.append("one of decision_visibility, _monetary, _provision, _account is required")
    enums: list[tuple[str, frozenset[str]]] = [
        ("decision_monetary", DECISION_MONETARIES), ("decision_ground", DECISION_GROUNDS),
        ("category", CATEGORIES), ("source_type", SOURCE_TYPES),
        ("automated_decision", AUTOMATED_DECISIONS), ("automated_detection", YES_NO),
        ("incompatible_content_illegal", YES_NO)]
    bad += [f"{k}={body[k]!r} is not allowed" for k, allowed in enums
            if k in body and body[k] not in allowed]
    for k, allowed in (("decision_visibility", DECISION_VISIBILITIES),
                       ("content_type", CONTENT_TYPES), ("territorial_scope", frozenset(EEA)),
                       ("category_addition", CATEGORIES)):
        v = body.get(k)
        if v is not None and (not isinstance(v, list) or not set(v) <= allowed):
            bad.append(f"{k}={v!r} is not a list of allowed values")
    bad += [f"{k} is longer than {n} characters" for k, n in LIMITS.items()
            if isinstance(body.get(k), str) and len(body[k]) > n]
    bad += [f"{k}={body[k]!r} is not YYYY-MM-DD" for k in ("content_date", "application_date")
            if k in body and not _DATE.match(str(body[k]))]
    if "puid" in body and not _PUID.match(str(body["puid"])):
        bad.append("puid may hold only A-Z, a-z, 0-9, '-' and '_'")
    if ("DECISION_VISIBILITY_OTHER" in (body.get("decision_visibility") or [])
            and not body.get("decision_visibility_other")):
        bad.append("decision_visibility_other is required with DECISION_VISIBILITY_OTHER")
    if body.get("decision_monetary") == "DECISION_MONETARY_OTHER" and not body.get(
            "decision_monetary_other"):
        bad.append("decision_monetary_other is required with DECISION_MONETARY_OTHER")
    need = {"DECISION_GROUND_ILLEGAL_CONTENT": ("illegal_content_legal_ground",
                                                "illegal_content_explanation"),
            "DECISION_GROUND_INCOMPATIBLE_CONTENT": ("incompatible_content_ground",
                                                     "incompatible_content_explanation")}
    bad += [f"{k} is required with {body['decision_ground']}"
            for k in need.get(body.get("decision_ground", ""), ()) if not body.get(k)]
    return bad
