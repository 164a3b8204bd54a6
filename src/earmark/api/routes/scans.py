# SPDX-License-Identifier: Apache-2.0
"""``/v1/scans``: upload (or name a server file) → 202 and a scan id; poll for the evidence
and decision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from earmark.api import problems
from earmark.api.deps import Caller, Ctx, require
from earmark.api.problems import NotFound
from earmark.service.access import Forbidden, Principal
from earmark.service.scans import ScanOut, get_scan, list_scans, submit_path, submit_scan
from earmark.store.models import Scan

router = APIRouter(prefix="/v1/scans", tags=["scans"], responses=problems.responses(401))
#: what a new scan can meet: another client's external_id, the limits, not audio
_NEW = problems.responses(409, 413, 415,
                          s409="This external_id is another client's (`external_id_taken`)")

ExternalId = Annotated[str | None, Field(min_length=1, max_length=200)]
Territory = Annotated[str | None, Field(pattern="^[A-Za-z]{2}$")]
ContentType = Annotated[str, Field(pattern="^(upload|live|short|podcast)$")]


@router.post("", status_code=202, response_model=ScanOut,
             responses={200: {"model": ScanOut,
                              "description": "A scan with this external_id already exists"},
                        **_NEW})
def create_scan(
    ctx: Ctx, response: Response,
    who: Annotated[Principal, Depends(require("uploader"))],
    file: Annotated[UploadFile, File(description="Audio or video; the content is sniffed, "
                                                 "the name is only shown")],
    external_id: Annotated[ExternalId, Form()] = None,
    territory: Annotated[Territory, Form(description="ISO 3166 alpha-2")] = None,
    content_type: Annotated[ContentType, Form()] = "upload",
) -> ScanOut:
    """Queue an upload for identification, AI detection and a decision."""
    scan, created = submit_scan(ctx.db, home=ctx.home, src=file.file, filename=file.filename,
                                limits=ctx.limits, external_id=external_id,
                                territory=territory, content_type=content_type,
                                submitted_by=who.id)
    if not created:
        response.status_code = 200
    return scan if who.at_least("moderator") else public(scan)


class PathScan(BaseModel):
    path: str = Field(min_length=1, max_length=4096,
                      description="Relative to the server's EARMARK_SCAN_PATHS folder")
    external_id: ExternalId = None
    territory: Territory = None
    content_type: ContentType = "upload"


@router.post("/by-path", status_code=202, response_model=ScanOut,
             responses={**_NEW, **problems.responses(403)})
def create_scan_by_path(ctx: Ctx, body: PathScan, response: Response,
                        who: Annotated[Principal, Depends(require("moderator"))]) -> ScanOut:
    """Queue a file already on the server (only where EARMARK_SCAN_PATHS is set)."""
    root = ctx.settings.scan_paths
    if root is None:
        raise Forbidden("scans by server path are off; set EARMARK_SCAN_PATHS to a folder")
    scan, created = submit_path(ctx.db, home=ctx.home, root=root, rel=body.path,
                                limits=ctx.limits, external_id=body.external_id,
                                territory=body.territory, content_type=body.content_type,
                                submitted_by=who.id)
    if not created:
        response.status_code = 200
    return scan


@router.get("", response_model=list[ScanOut])
def scans(ctx: Ctx, who: Caller,
          status: Annotated[str | None, Query(pattern="^(queued|running|done|failed)$")] = None,
          action: Annotated[str | None, Query(max_length=16)] = None,
          limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ScanOut]:
    """Newest first. Uploaders see their own scans, owners those that match them."""
    mine = who.id if who.role == "uploader" else None
    rows = list_scans(ctx.db, status=status, action=action, submitted_by=mine, limit=limit)
    if who.role == "owner":
        rows = [r for r in rows if who.owns_a_match(r.evidence)]
    return rows if who.at_least("moderator") else [public(r) for r in rows]


def public(scan: ScanOut) -> ScanOut:
    """The scan as an uploader or an owner sees it: who reviewed it stays with the
    moderators ("a moderator" instead of the reviewer's id)."""
    if not (scan.decided_by or "").startswith("review:"):
        return scan
    who = scan.decided_by.split(":", 1)[1]  # type: ignore[union-attr]
    dec = dict(scan.decision or {})
    dec["by"] = "review"
    dec["reasons"] = [r.replace(f"reviewed by {who}", "reviewed by a moderator")
                      for r in dec.get("reasons") or []]
    return scan.model_copy(update={"decided_by": "review", "decision": dec})


def check_visible(ctx: Ctx, who: Principal, scan_id: str) -> ScanOut:
    scan = get_scan(ctx.db, scan_id)
    if who.at_least("moderator"):
        return scan
    if who.role == "uploader" and _submitter(ctx, scan_id) == who.id:
        return public(scan)
    if who.owns_a_match(scan.evidence):
        return public(scan)
    raise NotFound(f"no scan {scan_id!r}")  # do not reveal that it exists


def _submitter(ctx: Ctx, scan_id: str) -> str | None:
    with ctx.db.reader() as s:
        row = s.get(Scan, scan_id)
        return row.submitted_by if row else None


@router.get("/{scan_id}", response_model=ScanOut, responses=problems.responses(404))
def scan(ctx: Ctx, who: Caller, scan_id: str) -> ScanOut:
    """The scan; once ``done``, its evidence and decision."""
    return check_visible(ctx, who, scan_id)


@router.get("/{scan_id}/audio", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}},
                       **problems.responses(403, 404)})
def scan_audio(ctx: Ctx, who: Annotated[Principal, Depends(require("moderator"))],
               scan_id: str) -> FileResponse:
    """The uploaded file as it was received (for the review page's player)."""
    with ctx.db.reader() as s:
        row = s.get(Scan, scan_id)
    if row is None:
        raise NotFound(f"no scan {scan_id!r}")
    return FileResponse(row.blob, media_type="application/octet-stream",
                        headers={"Cache-Control": "private, max-age=3600"})
