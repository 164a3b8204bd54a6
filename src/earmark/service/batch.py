# SPDX-License-Identifier: Apache-2.0
"""Batch scans into the service database (``earmark scan --record``).

A batch of uploads — a folder, a manifest, a million files on shared storage — ends up as it
would through the API: one ``scans`` row per input with its evidence and decision, reviews
opened where the owners' policies say ``review``, statements of reasons, audit entries and
webhook deliveries (:func:`earmark.service.decisions.record_decision`). Only the transport
differs: the input is not copied (``blob`` is its own absolute path, ``filename`` its display
name) and no queue job is made; the scan is recorded ``done`` at once.

The work is split where it runs. A batch worker, next to the catalog, scans the input, hashes
it (one streaming read) and looks up the matched references' owners (:func:`observe`); a
detector worker — on a GPU where the cluster has one — adds the detector's verdict
(:func:`add_detection`); the driver, next to the database, judges and records
(:func:`record_batch`) with the same :func:`earmark.service.judge.judge` as the queue worker.

**Inputs the API refuses.** The API refuses an upload it cannot decode (``empty_input``,
``corrupt_input``, ``unsupported_format``, ``input_too_long``: a 4xx and no scan). A batch
cannot answer its uploader, so such an input is recorded as a ``failed`` scan whose ``error``
is the reason, with no evidence and no decision — listed by ``status=failed``, and recorded
once like any other. Inputs the API accepts but cannot identify (silence) are judged as the
worker judges them.

**Each input once.** A batch scan's ``external_id`` is ``batch:`` and the SHA-256 of the
input's resume key — absolute path, size and modification time, the key of
``earmark scan --results`` (:class:`earmark.runners.inputs.InputKey`) — and ``external_id`` is
unique. A re-run skips every input whose id is recorded (one indexed look-up per input, not a
hash of its bytes); two runs racing over the same inputs record each once (the second insert
fails on the unique id and is skipped). A file changed in place (new size or mtime) is a new
upload and gets a new scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from earmark.audio.decode import DEFAULT_MAX_SECONDS, URL_SCHEMES, URL_TIMEOUT_S
from earmark.detect.base import Detector
from earmark.evidence import InputInfo
from earmark.service.catalog import Catalog
from earmark.service.decisions import current_policies, record_decision
from earmark.service.detect import detect_file
from earmark.service.judge import CatalogFacts, catalog_facts, judge
from earmark.service.scans import display_name
from earmark.store.db import Database
from earmark.store.models import Scan, utcnow

#: error codes of inputs the API refuses at upload: recorded as ``failed`` scans
REFUSED = ("file_missing", "unsupported_format", "corrupt_input", "empty_input",
           "input_too_long", "bad_input")
#: prefixes of results a re-run tries again: never recorded (see earmark.runners.inputs)
RETRY = ("internal_error", "worker_lost")
CHUNK = 1 << 20
_LOOKUP = 500  #: external ids per ``IN (...)`` query


def external_id_of(path: str, size: int | None, mtime_ns: int | None) -> str:
    """The ``external_id`` of a batch scan of the input with this resume key."""
    key = json.dumps([path, size, mtime_ns], ensure_ascii=False, separators=(",", ":"))
    return "batch:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class Observed(BaseModel):
    """What batch workers learned of one input besides its scan result.

    ``error`` set: an unexpected failure (the detector crashed, the file vanished between
    scan and hash); the input is not recorded and a re-run tries it again.
    """

    sha256: str = ""
    size_bytes: int = 0
    facts: CatalogFacts = CatalogFacts()
    detect: dict[str, Any] | None = None
    #: where the detector ran: ``gpu:<ids>`` (a Ray actor given GPUs) or ``cpu``, then
    #: ``/cuda`` or ``/cpu`` for what it computed on; ``None`` when it did not run
    device: str | None = None
    error: str | None = None


def refused(result: dict[str, Any]) -> bool:
    """Whether the API would have refused this input at upload (see the module docstring)."""
    reason = str(result.get("reason") or "")
    return result.get("status") == "error" and reason.split(":", 1)[0] in REFUSED


def retried(result: dict[str, Any]) -> bool:
    """Whether the result is a failure a re-run tries again (never recorded)."""
    return str(result.get("reason") or "").startswith(RETRY)


def digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """``(SHA-256 hex, size in bytes)`` of a file, or of an ``http(s)://`` input's body,
    read once in 1 MiB chunks (a URL is fetched again for this: decoding streamed it)."""
    h = hashlib.sha256()
    n = 0
    src = os.fspath(path)
    opened = (urllib.request.urlopen(src, timeout=URL_TIMEOUT_S)
              if src.startswith(URL_SCHEMES) else open(src, "rb"))
    with opened as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def observe(catalog: Catalog, path: str, result: dict[str, Any]) -> Observed:
    """The catalog's side of one input: its hash and size, and the catalog facts of its
    scan ``result``. Run where the catalog is (the identification worker)."""
    if retried(result):
        return Observed(error=result["reason"])
    try:
        sha, size = digest(path)
    except OSError as exc:
        if not refused(result):  # scanned, then gone or unreadable: try again later
            return Observed(error=f"internal_error: cannot read {path!r} to hash it: "
                                  f"{exc.strerror or exc}")
        sha, size = "", 0  # a missing file: nothing to hash
    return Observed(sha256=sha, size_bytes=size, facts=catalog_facts(catalog, result))


def add_detection(obs: Observed, path: str, result: dict[str, Any], detector: Detector, *,
                  max_seconds: float | None = DEFAULT_MAX_SECONDS,
                  device: str = "cpu") -> Observed:
    """``obs`` with the detector's verdict on ``path`` (not for inputs that are recorded
    without it: refused or failed ones). ``device`` says where this runs."""
    if obs.error is not None or refused(result):
        return obs
    try:
        det = detect_file(path, detector, max_seconds=max_seconds,
                          name=display_name(path)).model_dump(mode="json")
    except Exception as exc:  # the worker would release the job: here, a re-run retries
        return obs.model_copy(update={
            "error": f"internal_error: detector {type(exc).__name__}: {exc}"})
    compute = getattr(detector, "device", "cpu")
    return obs.model_copy(update={"detect": det, "device": f"{device}/{compute}"})


@dataclass(frozen=True)
class BatchItem:
    """One answered input for :func:`record_batch`."""

    external_id: str
    path: str  #: absolute path: the scan's ``blob``
    result: dict[str, Any]  #: the scan result (the JSON line)
    observed: Observed


@dataclass
class RecordReport:
    """What :func:`record_batch` did with its items."""

    recorded: list[str] = field(default_factory=list)  #: scan ids, in item order
    failed: int = 0  #: of them, recorded as ``failed`` (inputs the API refuses)
    existing: int = 0  #: already recorded (by an earlier or a concurrent run)
    skipped: int = 0  #: not recordable now (a failure a re-run tries again)
    actions: dict[str, int] = field(default_factory=dict)  #: decisions by action

    def add(self, other: RecordReport) -> None:
        self.recorded += other.recorded
        self.failed += other.failed
        self.existing += other.existing
        self.skipped += other.skipped
        for k, v in other.actions.items():
            self.actions[k] = self.actions.get(k, 0) + v


def recorded(db: Database, external_ids: Iterable[str]) -> set[str]:
    """Which of ``external_ids`` have a scan already."""
    ids = list(dict.fromkeys(external_ids))
    out: set[str] = set()
    with db.reader() as s:
        for lo in range(0, len(ids), _LOOKUP):
            part = ids[lo: lo + _LOOKUP]
            out.update(x for x in s.scalars(select(Scan.external_id)
                                            .where(Scan.external_id.in_(part))) if x)
    return out


def batch_actor() -> str:
    """Who records a batch, in the audit log: ``batch:<host>:<pid>``."""
    return f"batch:{socket.gethostname()}:{os.getpid()}"[:120]


def record_batch(db: Database, items: Sequence[BatchItem], *,
                 actor: str | None = None) -> RecordReport:
    """Record answered inputs as scans, in one transaction (see the module docstring).

    Each input gets a scan ``done`` with its evidence and its decision (and what the
    decision causes: reviews, statements, audit, webhooks), or ``failed`` when the API would
    have refused it; inputs already recorded and failures a re-run retries are skipped.
    Should another run record one of the same inputs meanwhile, the items are recorded one
    transaction each, and the ones it took are skipped.
    """
    actor = actor or batch_actor()
    try:
        with db.session() as s:
            return _record(s, items, actor)
    except IntegrityError:  # a concurrent run recorded one of them: one at a time
        report = RecordReport()
        for item in items:
            try:
                with db.session() as s:
                    report.add(_record(s, [item], actor))
            except IntegrityError:
                report.existing += 1
        return report


def _record(s: Session, items: Sequence[BatchItem], actor: str) -> RecordReport:
    report = RecordReport()
    todo = [i for i in items if not retried(i.result) and i.observed.error is None]
    report.skipped = len(items) - len(todo)
    ids = [i.external_id for i in todo]
    have = {x for lo in range(0, len(ids), _LOOKUP)
            for x in s.scalars(select(Scan.external_id)
                               .where(Scan.external_id.in_(ids[lo: lo + _LOOKUP])))}
    policies = current_policies(s)  # once per transaction, as of its start
    now = utcnow()
    for item in todo:
        if item.external_id in have:
            report.existing += 1
            continue
        have.add(item.external_id)  # an input named twice in one batch
        obs, res = item.observed, item.result
        sid = str(uuid.uuid4())
        scan = Scan(id=sid, external_id=item.external_id, submitted_by=None,
                    filename=display_name(item.path), blob=item.path, sha256=obs.sha256,
                    size_bytes=obs.size_bytes, content_type="upload", attempts=1,
                    worker=actor, created_at=now, started_at=now, finished_at=now)
        if refused(res):
            scan.status, scan.error = "failed", str(res["reason"])
            s.add(scan)
            report.failed += 1
            report.recorded.append(sid)
            continue
        info = InputInfo(filename=scan.filename, sha256=obs.sha256, size_bytes=obs.size_bytes)
        ev, decision = judge(s, scan_id=sid, info=info, result=res, facts=obs.facts,
                             detect=obs.detect, external_id=item.external_id,
                             policies=policies)
        scan.status, scan.evidence = "done", ev.model_dump(mode="json")
        s.add(scan)
        s.flush()
        record_decision(s, scan, decision, actor=actor)
        report.recorded.append(sid)
        report.actions[decision.action] = report.actions.get(decision.action, 0) + 1
    return report
