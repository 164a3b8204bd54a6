# SPDX-License-Identifier: Apache-2.0
"""Scan jobs of the moderation service: accept an upload, queue it, report it.

An upload is copied to ``$EARMARK_HOME/uploads/<scan id>`` while its size is counted and
its SHA-256 computed (the name the client gave is kept for display only and never becomes
part of a path), sniffed by FFmpeg (the container must hold an audio stream no longer than
the limit; the file extension is ignored), and queued. The caller's ``external_id`` makes
the call idempotent: the same id again returns the scan it already made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from earmark.audio.decode import probe
from earmark.errors import EarmarkError, InputError, InputTooLong
from earmark.store.db import Database
from earmark.store.models import Review, Scan
from earmark.utc import UtcDatetime

CHUNK = 1 << 20


class UploadTooLarge(InputError):
    code = "upload_too_large"


class ScanNotFound(EarmarkError):
    code = "scan_not_found"


class ExternalIdTaken(EarmarkError):
    code = "external_id_taken"


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 3600.0


class ReviewRef(BaseModel):
    id: int
    status: str


class ScanOut(BaseModel):
    """A scan as the API returns it: the job, then its evidence and decision once done."""

    id: str
    external_id: str | None
    status: Literal["queued", "running", "done", "failed"]
    filename: str
    sha256: str
    size_bytes: int
    territory: str | None
    content_type: str
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    attempts: int
    error: str | None
    action: str | None
    decided_by: str | None
    evidence: dict[str, Any] | None
    decision: dict[str, Any] | None
    reviews: list[ReviewRef] = []


def display_name(name: str | None) -> str:
    """A file name safe to show: the last path component, no control characters, ≤ 200
    characters (``upload`` when nothing is left)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return base[:200] or "upload"


def uploads_dir(home: str | os.PathLike[str]) -> Path:
    d = Path(home) / "uploads"
    d.mkdir(parents=True, exist_ok=True)
    return d


def store_upload(home: str | os.PathLike[str], src: BinaryIO, *, limits: Limits,
                 name: str = "upload") -> tuple[Path, str, int, str]:
    """Copy ``src`` into the uploads folder and sniff it.

    Returns ``(path, sha256, size, container)``; raises :class:`UploadTooLarge`,
    :class:`InputTooLong`, or the decoder's typed errors (``empty_input``,
    ``unsupported_format``, ``corrupt_input``) — and then nothing is left behind.
    """
    tmp = uploads_dir(home) / f".incoming-{uuid.uuid4().hex}"
    h = hashlib.sha256()
    n = 0
    try:
        with open(tmp, "wb") as out:
            while chunk := src.read(CHUNK):
                n += len(chunk)
                if n > limits.max_bytes:
                    raise UploadTooLarge(
                        f"upload is larger than the limit of {limits.max_bytes / 1e6:.0f} MB "
                        "(EARMARK_MAX_UPLOAD_MB)")
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        try:
            info = probe(tmp)
        except EarmarkError as exc:  # say it of the upload's name, not of the temporary file
            raise type(exc)(str(exc).replace(tmp.name, name)) from exc
        if info.duration_s is not None and info.duration_s > limits.max_seconds:
            raise InputTooLong(
                f"upload lasts {info.duration_s:.0f} s, over the limit of "
                f"{limits.max_seconds:.0f} s (EARMARK_MAX_UPLOAD_SECONDS)")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, h.hexdigest(), n, info.container


def submit_scan(db: Database, *, home: str | os.PathLike[str], src: BinaryIO,
                filename: str | None, limits: Limits, external_id: str | None = None,
                territory: str | None = None, content_type: str = "upload",
                submitted_by: str | None = None) -> tuple[ScanOut, bool]:
    """Store and queue an upload; ``(scan, created)``. With a known ``external_id`` the
    existing scan is returned (``created`` False) and the new bytes are discarded."""
    if external_id is not None:
        found = _by_external(db, external_id, submitted_by)
        if found is not None:
            return found, False
    tmp, sha, size, _fmt = store_upload(home, src, limits=limits,
                                        name=display_name(filename))
    sid = str(uuid.uuid4())
    blob = uploads_dir(home) / sid
    os.replace(tmp, blob)
    try:
        with db.session() as s:
            s.add(Scan(id=sid, external_id=external_id, submitted_by=submitted_by,
                       filename=display_name(filename), blob=os.fspath(blob), sha256=sha,
                       size_bytes=size, content_type=content_type,
                       territory=territory.upper() if territory else None))
    except IntegrityError:  # the same external id raced us: the first one wins
        blob.unlink(missing_ok=True)
        found = _by_external(db, external_id or "", submitted_by)
        if found is None:
            raise
        return found, False
    except BaseException:
        blob.unlink(missing_ok=True)
        raise
    return get_scan(db, sid), True


def submit_path(db: Database, *, home: str | os.PathLike[str], root: Path, rel: str,
                limits: Limits, **kw: Any) -> tuple[ScanOut, bool]:
    """Queue a file that is already on the server, under ``root`` (the configured
    ``scan_paths``); a path that leaves ``root`` is refused."""
    base = root.resolve()
    p = (base / rel).resolve()
    if not p.is_relative_to(base):
        raise InputError(f"path {rel!r} is outside the folder open to scans")
    if not p.is_file():
        raise InputError(f"no file {rel!r} in the folder open to scans")
    with open(p, "rb") as f:
        return submit_scan(db, home=home, src=f, filename=p.name, limits=limits, **kw)


def _by_external(db: Database, external_id: str, submitted_by: str | None) -> ScanOut | None:
    """The scan this caller already made under ``external_id``; another caller's id is a
    conflict, never its scan (that would hand one client another's evidence)."""
    with db.reader() as s:
        row = s.execute(select(Scan.id, Scan.submitted_by)
                        .where(Scan.external_id == external_id)).first()
    if row is None:
        return None
    if row[1] != submitted_by:
        raise ExternalIdTaken(f"external_id {external_id!r} is already used by another "
                              "client; choose ids unique to your system (e.g. prefix them)")
    return get_scan(db, row[0])


def _out(scan: Scan, reviews: list[Review]) -> ScanOut:
    return ScanOut(
        id=scan.id, external_id=scan.external_id, status=scan.status,  # type: ignore[arg-type]
        filename=scan.filename, sha256=scan.sha256, size_bytes=scan.size_bytes,
        territory=scan.territory, content_type=scan.content_type, created_at=scan.created_at,
        finished_at=scan.finished_at, attempts=scan.attempts, error=scan.error,
        action=scan.action, decided_by=scan.decided_by, evidence=scan.evidence,
        decision=scan.decision,
        reviews=[ReviewRef(id=r.id, status=r.status) for r in reviews])


def get_scan(db: Database, scan_id: str) -> ScanOut:
    with db.reader() as s:
        scan = s.get(Scan, scan_id)
        if scan is None:
            raise ScanNotFound(f"no scan {scan_id!r}")
        reviews = list(s.scalars(select(Review).where(Review.scan_id == scan_id)).all())
        return _out(scan, reviews)


def list_scans(db: Database, *, status: str | None = None, action: str | None = None,
               submitted_by: str | None = None, limit: int = 50,
               before: dt.datetime | None = None) -> list[ScanOut]:
    """Newest first; ``before`` pages on ``created_at``."""
    q = select(Scan).order_by(Scan.created_at.desc()).limit(max(1, min(limit, 500)))
    if status:
        q = q.where(Scan.status == status)
    if action:
        q = q.where(Scan.action == action)
    if submitted_by:
        q = q.where(Scan.submitted_by == submitted_by)
    if before:
        q = q.where(Scan.created_at < before)
    with db.reader() as s:
        return [_out(x, []) for x in s.scalars(q).all()]

