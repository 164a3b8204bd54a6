# SPDX-License-Identifier: Apache-2.0
"""DSA statements of reasons (Regulation (EU) 2022/2065, Art. 17 and Art. 24(5)).

Every restriction earmark decides — blocking or muting an upload, moving its revenue to a
rights owner, labelling it as AI-generated — gets a statement that says what was restricted
and where, why (the facts, the ground, the rule), whether detection and decision were
automated, and how to complain. The body uses the field names and enumerated values of the
Commission's DSA Transparency Database API, so it can be submitted there as it is; it holds
no personal data (the uploader appears only as the platform's own unique id of the content,
``puid``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from earmark.evidence import Evidence
from earmark.moderation.policy import Decision

#: how to complain (Art. 17(3)(f)); the service's own dispute endpoint
REDRESS = ("Dispute this decision through the platform's internal complaint-handling "
           "system (earmark: POST /v1/disputes) within six months; out-of-court dispute "
           "settlement (Art. 21) and judicial redress remain open.")

_VISIBILITY = {
    "block": ["DECISION_VISIBILITY_CONTENT_DISABLED"],
    "mute": ["DECISION_VISIBILITY_OTHER"],
    "label": ["DECISION_VISIBILITY_CONTENT_LABELLED"],
}
_MONETARY = {"monetize": "DECISION_MONETARY_OTHER"}


def build_statement(ev: Evidence, decision: Decision, *, scan_id: str,
                    created_at: dt.datetime) -> dict[str, Any]:
    """The statement of reasons for ``decision`` on ``ev`` (Transparency Database shape)."""
    act = decision.action
    copyright_ = bool(ev.identification.matches) and act != "label"
    refs = ", ".join(m.reference_id for m in ev.identification.matches[:5])
    facts = " ".join(decision.reasons)[:4900]
    body: dict[str, Any] = {
        "decision_ground": ("DECISION_GROUND_ILLEGAL_CONTENT" if copyright_
                            else "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
        "category": ("STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS" if copyright_
                     else "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE"),
        "content_type": ["CONTENT_TYPE_AUDIO"],
        "decision_facts": facts or f"decision {act}",
        "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": "Yes",
        "automated_decision": ("AUTOMATED_DECISION_FULLY" if decision.automated
                               else "AUTOMATED_DECISION_NOT_AUTOMATED"),
        "application_date": created_at.strftime("%d-%m-%Y"),
        "content_date": created_at.strftime("%d-%m-%Y"),
        "puid": scan_id,
        "territorial_scope": [ev.territory] if ev.territory else [],
    }
    if act in _VISIBILITY:
        body["decision_visibility"] = _VISIBILITY[act]
        if act == "mute":
            spans = ", ".join(f"{m.start_ms / 1000:.1f}–{m.end_ms / 1000:.1f} s"
                              for m in decision.mute)
            body["decision_visibility_other"] = f"audio muted at {spans}"
    if act in _MONETARY:
        body["decision_monetary"] = _MONETARY[act]
        body["decision_monetary_other"] = "revenue from the content goes to the rights owner"
    if copyright_:
        body["illegal_content_legal_ground"] = (
            "Copyright: use of a protected sound recording without licence (Directive "
            "2001/29/EC; Directive (EU) 2019/790, Art. 17)")
        body["illegal_content_explanation"] = f"The upload contains catalog recordings: {refs}."
    else:
        body["incompatible_content_ground"] = "AI-generated music must be labelled"
        body["incompatible_content_explanation"] = (
            "An AI-music detector scored the audio as generated"
            + (f" (probability {ev.ai.ai_probability:.2f})"
               if ev.ai and ev.ai.ai_probability is not None else "") + ".")
        body["incompatible_content_illegal"] = "No"
    body["earmark"] = {"action": act, "policy_versions": decision.policy_versions,
                       "redress": REDRESS, "versions": ev.versions.model_dump()}
    return body
