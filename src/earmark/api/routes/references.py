# SPDX-License-Identifier: Apache-2.0
"""``/v1/references``: the catalog (list, read, add by upload, bulk import, edit, remove)
and exclusions (stretches of a reference that never count as a match)."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from earmark.api import problems
from earmark.api.deps import MAX_ID, Caller, Ctx, Id, may_act_for, require
from earmark.api.problems import InvalidRequest, NotFound
from earmark.errors import UnknownReference
from earmark.moderation import audit
from earmark.service.access import Forbidden, Principal
from earmark.service.catalog import (
    AddReport,
    Catalog,
    ReferenceOut,
    add_references,
    open_catalog,
    remove_reference,
)
from earmark.service.scans import display_name, store_upload
from earmark.store.models import Exclusion

router = APIRouter(prefix="/v1/references", tags=["references"],
                   responses=problems.responses(401, 403))
_ONE = problems.responses(404)  #: routes of one reference (or the catalog) that may be absent
_ADD = problems.responses(409, s409="The catalog refused the reference (`catalog_error`)")
OwnerKey = Annotated[Principal, Depends(require("owner"))]


def _reader(ctx: Ctx) -> Catalog:
    return open_catalog(home=ctx.home, write=False)


def _get(ctx: Ctx, reference_id: str) -> ReferenceOut:
    try:
        cat = _reader(ctx)
    except Exception as exc:
        raise NotFound("the catalog is empty: add references first") from exc
    with cat:
        row = cat.store.get(reference_id)
    if row is None:
        raise UnknownReference(f"no reference {reference_id!r}")
    return ReferenceOut.model_validate(row)


@router.get("", response_model=list[ReferenceOut])
def references(ctx: Ctx, who: Caller, owner: str | None = None) -> list[ReferenceOut]:
    """Every ready reference (owners see their own)."""
    if not (ctx.home / "catalog.sqlite").exists():
        return []
    with _reader(ctx) as cat:
        rows = [ReferenceOut.model_validate(r) for r in cat.store.all()]
    if who.role == "owner":
        owner = who.owner
    elif not who.at_least("moderator"):
        raise Forbidden("listing references needs the owner role or above")
    return [r for r in rows if owner is None or r.owner == owner]


@router.get("/{reference_id}", response_model=ReferenceOut, responses=_ONE)
def reference(ctx: Ctx, who: OwnerKey, reference_id: str) -> ReferenceOut:
    ref = _get(ctx, reference_id)
    may_act_for(who, ref.owner)
    return ref


@router.get("/{reference_id}/audio", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, **_ONE})
def reference_audio(ctx: Ctx, who: Annotated[Principal, Depends(require("moderator"))],
                    reference_id: str) -> FileResponse:
    """The reference's audio (for the review page's player), where the file is still there."""
    ref = _get(ctx, reference_id)
    if not Path(ref.source).is_file():
        raise NotFound(f"the audio of {reference_id!r} is no longer at its source path")
    return FileResponse(ref.source, media_type="application/octet-stream")


def _add(ctx: Ctx, rows: list[dict[str, str | None]], who: Principal) -> AddReport:
    with tempfile.TemporaryDirectory(dir=ctx.home) as tmp:
        man = Path(tmp) / "manifest.csv"
        with open(man, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["id", "path", "title", "artist", "owner", "isrc"])
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k) or "" for k in w.fieldnames})
        with open_catalog(home=ctx.home, write=True, wait_s=60) as cat:
            rep = add_references(catalog=cat, manifest=man, jobs=1)
    with ctx.db.session() as s:
        audit.append(s, actor=who.id, action="reference.add", subject="references",
                       data={"items": [o.model_dump(mode="json") for o in rep.items]})
    return rep


@router.post("", status_code=201, response_model=AddReport,
             responses={**_ADD, **problems.responses(413, 415)})
def add_reference(
    ctx: Ctx, who: OwnerKey,
    file: Annotated[UploadFile, File()],
    id: Annotated[str | None, Form(min_length=1, max_length=255,
                                   pattern=r"^[\w.\-]+$")] = None,
    title: Annotated[str | None, Form(max_length=500)] = None,
    artist: Annotated[str | None, Form(max_length=500)] = None,
    owner: Annotated[str | None, Form(max_length=120)] = None,
    isrc: Annotated[str | None, Form(pattern=r"^[A-Z]{2}[A-Z0-9]{3}\d{7}$")] = None,
) -> AddReport:
    """Add one recording. Owners add for themselves (``owner`` defaults to theirs)."""
    owner = owner or who.owner
    may_act_for(who, owner)
    tmp, _sha, _n, _fmt = store_upload(ctx.home, file.file, limits=ctx.limits,
                                      name=display_name(file.filename))
    audio = ctx.home / "reference-audio"
    audio.mkdir(exist_ok=True)
    dest = audio / uuid.uuid4().hex
    os.replace(tmp, dest)
    rid = id or Path(display_name(file.filename)).stem or dest.name
    try:
        rep = _add(ctx, [{"id": rid, "path": os.fspath(dest), "title": title,
                          "artist": artist, "owner": owner, "isrc": isrc}], who)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if rep.added == 0:
        dest.unlink(missing_ok=True)
    return rep


class ImportRow(BaseModel):
    path: str = Field(min_length=1, max_length=4096,
                      description="Relative to the server's EARMARK_SCAN_PATHS folder")
    id: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[\w.\-]+$")
    title: str | None = Field(default=None, max_length=500)
    artist: str | None = Field(default=None, max_length=500)
    owner: str | None = Field(default=None, max_length=120)
    isrc: str | None = Field(default=None, pattern=r"^[A-Z]{2}[A-Z0-9]{3}\d{7}$")


class ImportRequest(BaseModel):
    references: list[ImportRow] = Field(min_length=1, max_length=10_000)


@router.post("/import", response_model=AddReport, responses=_ADD)
def import_references(ctx: Ctx, who: OwnerKey, body: ImportRequest) -> AddReport:
    """Bulk import of files already on the server (under EARMARK_SCAN_PATHS)."""
    root = ctx.settings.scan_paths
    if root is None:
        raise Forbidden("bulk import reads server files; set EARMARK_SCAN_PATHS to a folder")
    base = root.resolve()
    rows: list[dict[str, str | None]] = []
    for r in body.references:
        owner = r.owner or who.owner
        may_act_for(who, owner)
        p = (base / r.path).resolve()
        if not p.is_relative_to(base):
            raise InvalidRequest(f"path {r.path!r} is outside the folder open to imports")
        rows.append({**r.model_dump(), "path": os.fspath(p), "owner": owner})
    return _add(ctx, rows, who)


class ReferencePatch(BaseModel):
    model_config = {"extra": "forbid"}

    title: str | None = Field(default=None, max_length=500)
    artist: str | None = Field(default=None, max_length=500)
    owner: str | None = Field(default=None, max_length=120)
    isrc: str | None = Field(default=None, pattern=r"^[A-Z]{2}[A-Z0-9]{3}\d{7}$")


@router.patch("/{reference_id}", response_model=ReferenceOut, responses=_ONE)
def edit_reference(ctx: Ctx, who: OwnerKey, reference_id: str,
                   body: ReferencePatch) -> ReferenceOut:
    ref = _get(ctx, reference_id)
    may_act_for(who, ref.owner)
    values = body.model_dump(exclude_unset=True)
    if "owner" in values and not who.at_least("admin"):
        raise Forbidden("only an admin moves a reference to another owner")
    with open_catalog(home=ctx.home, write=True, wait_s=60) as cat:
        row = cat.store.update_meta(reference_id, values)
    with ctx.db.session() as s:
        audit.append(s, actor=who.id, action="reference.edit",
                     subject=f"reference:{reference_id}", data=values)
    assert row is not None
    return ReferenceOut.model_validate(row)


@router.delete("/{reference_id}", response_model=ReferenceOut, responses=_ONE)
def delete_reference(ctx: Ctx, who: OwnerKey, reference_id: str) -> ReferenceOut:
    ref = _get(ctx, reference_id)
    may_act_for(who, ref.owner)
    with open_catalog(home=ctx.home, write=True, wait_s=60) as cat:
        out = remove_reference(catalog=cat, reference_id=reference_id)
    with ctx.db.session() as s:
        audit.append(s, actor=who.id, action="reference.remove",
                     subject=f"reference:{reference_id}")
    src = Path(out.source)
    if src.parent == ctx.home / "reference-audio":
        shutil.rmtree(src, ignore_errors=True) if src.is_dir() else src.unlink(missing_ok=True)
    return out


# -- exclusions -----------------------------------------------------------------------------
class ExclusionIn(BaseModel):
    start_ms: int = Field(ge=0, le=MAX_ID)  # INTEGER columns, like the ids
    end_ms: int = Field(gt=0, le=MAX_ID)
    reason: str = Field(min_length=1, max_length=255,
                        examples=["public-domain melody", "licensed sample"])

    @model_validator(mode="after")
    def _order(self) -> ExclusionIn:
        if self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")
        return self


class ExclusionOut(ExclusionIn):
    id: int
    reference_id: str


@router.get("/{reference_id}/exclusions", response_model=list[ExclusionOut], responses=_ONE)
def exclusions(ctx: Ctx, who: OwnerKey, reference_id: str) -> list[ExclusionOut]:
    may_act_for(who, _get(ctx, reference_id).owner)
    with ctx.db.reader() as s:
        rows = s.scalars(select(Exclusion).where(Exclusion.reference_id == reference_id)
                         .order_by(Exclusion.start_ms)).all()
    return [ExclusionOut(id=e.id, reference_id=e.reference_id, start_ms=e.start_ms,
                         end_ms=e.end_ms, reason=e.reason) for e in rows]


@router.post("/{reference_id}/exclusions", status_code=201, response_model=ExclusionOut,
             responses=_ONE)
def add_exclusion(ctx: Ctx, who: OwnerKey, reference_id: str,
                  body: ExclusionIn) -> ExclusionOut:
    """Exclude a stretch of the reference from matching (applies to later scans)."""
    may_act_for(who, _get(ctx, reference_id).owner)
    with ctx.db.session() as s:
        e = Exclusion(reference_id=reference_id, **body.model_dump())
        s.add(e)
        s.flush()
        audit.append(s, actor=who.id, action="exclusion.add",
                     subject=f"reference:{reference_id}", data=body.model_dump())
        return ExclusionOut(id=e.id, reference_id=reference_id, **body.model_dump())


@router.delete("/{reference_id}/exclusions/{exclusion_id}", status_code=204, responses=_ONE)
def delete_exclusion(ctx: Ctx, who: OwnerKey, reference_id: str, exclusion_id: Id) -> None:
    may_act_for(who, _get(ctx, reference_id).owner)
    with ctx.db.session() as s:
        e = s.get(Exclusion, exclusion_id)
        if e is None or e.reference_id != reference_id:
            raise NotFound(f"no exclusion {exclusion_id} on {reference_id!r}")
        s.delete(e)
        audit.append(s, actor=who.id, action="exclusion.remove",
                     subject=f"reference:{reference_id}", data={"id": exclusion_id})
