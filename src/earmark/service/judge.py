# SPDX-License-Identifier: Apache-2.0
"""Judging one upload: its scan result and detector verdict become evidence and a decision.

Every path into the service database comes through here — the queue worker
(:mod:`earmark.service.worker`) for uploads of the API, and ``earmark scan --record``
(:mod:`earmark.service.batch`) for batch scans — so a scan's evidence does not depend on how
the upload arrived. The work is cut where the batch cuts it over Ray workers:

1. :func:`catalog_facts` — what the catalog says of a scan result (each matched reference's
   owner, the fingerprinter and index versions); needs the catalog, not the database.
2. the detector's record (:func:`earmark.service.detect.detect_file`); needs neither.
3. :func:`judge` — the evidence (with the database's exclusions) and the decision (with the
   owners' current policies); needs the database, not the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from earmark import __version__
from earmark.evidence import Evidence, InputInfo, Versions, build_evidence
from earmark.moderation.policy import Decision, PolicyVersion, decide
from earmark.service.catalog import Catalog
from earmark.service.decisions import current_policies
from earmark.store.models import Exclusion

#: the identification of a scan when the service has no catalog (judged on AI evidence alone)
NO_CATALOG: dict[str, Any] = {"status": "error", "reason": "no_catalog: no catalog in "
                              "EARMARK_HOME", "duration_ms": None, "matches": []}


class CatalogFacts(BaseModel):
    """What the catalog adds to a scan result: the matched references' owners (``None``:
    the reference has none, or was removed meanwhile) and the versions that matched."""

    owners: dict[str, str | None] = {}
    fingerprinter: str | None = None
    index: str | None = None


def catalog_facts(catalog: Catalog | None, result: Mapping[str, Any]) -> CatalogFacts:
    """The owners of the references matched in ``result`` (a scan result, as JSON data) —
    the matched ones only, not the whole catalog — and the catalog's versions."""
    if catalog is None:
        return CatalogFacts()
    owners: dict[str, str | None] = {}
    for m in result.get("matches") or []:
        row = catalog.store.get(m["reference_id"])
        owners[m["reference_id"]] = row.owner if row is not None else None
    fp = catalog.fingerprinter
    n_refs, _ = catalog.store.totals()
    return CatalogFacts(owners=owners, fingerprinter=f"{fp.name}-{fp.version}",
                        index=f"segments:{n_refs} refs")


def judge(s: Session, *, scan_id: str, info: InputInfo, result: Mapping[str, Any],
          facts: CatalogFacts, detect: Mapping[str, Any] | None,
          external_id: str | None = None, territory: str | None = None,
          content_type: str = "upload",
          policies: Mapping[str, PolicyVersion] | None = None) -> tuple[Evidence, Decision]:
    """The evidence of one upload and the decision the owners' policies give it.

    Parameters
    ----------
    s : Session
        The service database (read: exclusions of the matched references, policies).
    scan_id : str
    info : InputInfo
        The upload's display name, SHA-256 and size.
    result : mapping
        The scan result (:func:`earmark.service.scan.scan_file`, or :data:`NO_CATALOG`).
    facts : CatalogFacts
        :func:`catalog_facts` of ``result``.
    detect : mapping or None
        The detector's record (:class:`earmark.service.detect.DetectResult` as JSON data);
        its ``detector`` names the detector version in the evidence.
    policies : mapping owner → PolicyVersion, optional
        The current policies, when the caller already read them (a batch reads them once per
        transaction); default: read from ``s``.
    """
    ids = [m["reference_id"] for m in result.get("matches") or []]
    excl: dict[str, list[tuple[int, int]]] = {}
    if ids:
        for e in s.scalars(select(Exclusion).where(Exclusion.reference_id.in_(ids))):
            excl.setdefault(e.reference_id, []).append((e.start_ms, e.end_ms))
    if policies is None:
        policies = current_policies(s)
    det = (detect or {}).get("detector") or {}
    ev = build_evidence(
        scan_id=scan_id, input=info, scan=result, detect=detect, owners=facts.owners,
        exclusions=excl,
        versions=Versions(earmark=__version__, fingerprinter=facts.fingerprinter,
                          index=facts.index,
                          detector=f"{det['name']}-{det['version']}" if det else None),
        external_id=external_id, territory=territory, content_type=content_type)
    return ev, decide(ev, policies)
