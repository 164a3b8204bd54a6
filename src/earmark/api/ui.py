# SPDX-License-Identifier: Apache-2.0
"""The review pages: ``/ui/login``, the queue ``/ui/reviews`` and the scan page
``/ui/scans/{id}`` where a moderator listens, reads the evidence and decides.

Server-rendered Jinja2 (autoescaped: file names and titles come from uploaders), a little
vanilla JavaScript for keyboard shortcuts and synchronised players, served from
``/ui/static``. People sign in with a name and password (:func:`earmark.service.access.login`,
scrypt); the signed session cookie (``SameSite=strict``) then also authenticates the
players' audio requests to ``/v1/scans/{id}/audio`` and ``/v1/references/{id}/audio``,
whose ``FileResponse`` answers HTTP ``Range`` requests (Starlette ≥ 0.39), so seeking works.

Every form carries the session's random CSRF token, and every POST checks it (403 on a
mismatch). The session is started afresh at login, and each request re-reads the user, so a
removed or demoted person loses access at once. Pages send a strict Content-Security-Policy
(no inline script or style), so even an escaping mistake could not run a script.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import select

from earmark.api import ui_view
from earmark.api.deps import Ctx, Id
from earmark.api.spectrogram import cached_spectrogram
from earmark.errors import EarmarkError
from earmark.evidence import Evidence
from earmark.moderation import audit
from earmark.service.access import AuthError, Principal, login
from earmark.service.reviews import (
    REVIEW_ACTIONS,
    ReviewConflict,
    ReviewNotFound,
    ReviewOut,
    decide_review,
    get_review,
    list_reviews,
)
from earmark.service.scans import ScanNotFound, get_scan
from earmark.store.models import Dispute, Scan, User, utcnow

HERE = Path(__file__).parent
router = APIRouter(prefix="/ui", include_in_schema=False)
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                  trim_blocks=True, lstrip_blocks=True)
env.globals.update(fmt_ms=ui_view.fmt_ms, ai_colour=ui_view.ai_colour)

#: reasons a scan is sent to review (see :func:`earmark.service.decisions.review_reason`)
REASONS = ("not_manifest", "short_match", "ai", "policy", "dispute")
#: the decision buttons in page order, with their keys (mute is "u": "m" is monetize)
SHORTCUTS = {"allow": "a", "track": "t", "monetize": "m", "label": "l", "mute": "u",
             "block": "b"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; media-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
assert set(SHORTCUTS) == set(REVIEW_ACTIONS)


class _NeedLogin(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


# -- pages, sessions, tokens ------------------------------------------------------------------
def page(request: Request, template: str, code: int = 200, /, **context: Any) -> HTMLResponse:
    """Render ``templates/<template>`` with the session's user, CSRF token and flash
    messages, as an HTML response of status ``code``."""
    sess = request.session
    context.setdefault("user", sess.get("principal"))
    html = env.get_template(template).render(request=request, csrf=csrf_token(request),
                                             flash=sess.pop("flash", []), **context)
    return HTMLResponse(html, status_code=code, headers=HEADERS)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    tok = request.session.get("csrf")
    if not isinstance(tok, str) or not tok:
        tok = request.session["csrf"] = secrets.token_urlsafe(32)
    return tok


def check_csrf(request: Request, presented: str) -> None:
    tok = request.session.get("csrf")
    if not (isinstance(tok, str) and tok and presented
            and hmac.compare_digest(tok.encode(), presented.encode())):
        raise _Refused(403, "The form's security token is missing or does not match this "
                            "session (it may have expired, or the form came from elsewhere). "
                            "Reload the page and submit again.")


def flash(request: Request, message: str) -> None:
    request.session["flash"] = [*request.session.get("flash", []), message][-5:]


def reviewer(request: Request, ctx: Ctx) -> Principal:
    """The signed-in moderator (or admin); else a redirect to the login page, or 403."""
    p = request.session.get("principal")
    if not isinstance(p, dict) or not str(p.get("id", "")).startswith("user:"):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise _NeedLogin(here if request.method == "GET" else "/ui/reviews")
    with ctx.db.reader() as s:
        u = s.get(User, p["id"].removeprefix("user:"))
    if u is None:
        request.session.clear()
        raise _NeedLogin(request.url.path)
    who = Principal(id=p["id"], role=u.role, owner=u.owner)  # type: ignore[arg-type]
    if (p.get("role"), p.get("owner")) != (who.role, who.owner):
        request.session["principal"] = {"id": who.id, "role": who.role, "owner": who.owner}
    if not who.at_least("moderator"):
        raise _Refused(403, f"The review pages need the moderator role; {u.name} has the "
                            f"{u.role} role.")
    return who


Reviewer = Annotated[Principal, Depends(reviewer)]


def _safe_next(url: str | None) -> str:
    """A local ``/ui`` address to go to after login (never another site)."""
    if url and url.startswith("/ui/") and not url.startswith("//") and "\\" not in url:
        return url
    return "/ui/reviews"


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their error pages to ``app``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    async def need_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _NeedLogin)
        return RedirectResponse("/ui/login?" + urlencode({"next": exc.next_url}), 303)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return page(request, "error.html", exc.status, status=exc.status, message=exc.message)

    app.add_exception_handler(_NeedLogin, need_login)
    app.add_exception_handler(_Refused, refused)


# -- login ------------------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
def home() -> Response:
    return RedirectResponse("/ui/reviews", 303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    """The sign-in form."""
    return page(request, "login.html", user=None, next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login_submit(request: Request, ctx: Ctx, name: Annotated[str, Form(max_length=120)] = "",
                 password: Annotated[str, Form(max_length=1000)] = "",
                 csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "") -> Response:
    """Check the password; start a fresh session."""
    try:
        check_csrf(request, csrf)
    except _Refused as exc:
        return page(request, "login.html", 403, user=None, next=_safe_next(next),
                    error=exc.message, name=name)
    try:
        who = login(ctx.db, name.strip(), password)
    except AuthError:
        return page(request, "login.html", user=None, next=_safe_next(next),
                    error="Wrong name or password.", name=name)
    request.session.clear()  # a new session: nothing from before the login survives
    request.session.update({"principal": {"id": who.id, "role": who.role, "owner": who.owner},
                            "csrf": secrets.token_urlsafe(32)})
    with ctx.db.session() as s:
        audit.append(s, actor=who.id, action="user.login", subject=who.id,
                     data={"via": "review pages"})
    return RedirectResponse(_safe_next(next), 303)


@router.post("/logout", response_class=HTMLResponse)
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session."""
    check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/ui/login", 303)


# -- the queue --------------------------------------------------------------------------------
@dataclass
class Filters:
    """The queue's filters as the form sent them, and as :func:`list_reviews` takes them."""

    raw: dict[str, str]
    kwargs: dict[str, Any]
    errors: list[str]

    @property
    def query(self) -> str:
        return urlencode({k: v for k, v in self.raw.items() if v})


def parse_filters(raw: dict[str, Any]) -> Filters:
    keys = ("status", "owner", "reason", "ai", "short", "older_than_h")
    r = {k: str(raw.get(k) or "").strip()[:120] for k in keys}
    r["status"] = r["status"] if r["status"] in ("pending", "decided", "any") else "pending"
    yes_no = {"yes": True, "no": False}
    kw: dict[str, Any] = {"status": None if r["status"] == "any" else r["status"],
                          "owner": r["owner"] or None, "reason": r["reason"] or None,
                          "ai": yes_no.get(r["ai"]), "short": yes_no.get(r["short"])}
    errors = []
    if r["older_than_h"]:
        try:
            hours = float(r["older_than_h"])
        except ValueError:
            hours = -1.0
        if 0 <= hours <= 1e6:
            kw["older_than_h"] = hours
        else:
            errors.append(f"Age: {r['older_than_h']!r} is not a number of hours; ignored.")
            r["older_than_h"] = ""
    return Filters(raw=r, kwargs=kw, errors=errors)


@router.get("/reviews", response_class=HTMLResponse)
def queue(request: Request, ctx: Ctx, who: Reviewer) -> Response:
    """The review queue, oldest first, with filters."""
    f = parse_filters(dict(request.query_params))
    request.session["queue"] = f.raw
    rows = list_reviews(ctx.db, limit=500, **f.kwargs)
    now = utcnow()
    return page(request, "reviews.html", rows=rows, f=f, reasons=REASONS,
                ages={r.id: ui_view.fmt_age(r.created_at, now) for r in rows})


def _queue_filters(request: Request) -> Filters:
    return parse_filters(request.session.get("queue") or {})


def next_pending(ctx: Ctx, request: Request, after: int | None = None) -> ReviewOut | None:
    """The next pending review of the reviewer's queue (its filters), after ``after``."""
    kw = {**_queue_filters(request).kwargs, "status": "pending"}
    rows = list_reviews(ctx.db, limit=1000, **kw)
    ids = [r.id for r in rows]
    if after in ids:
        rows = rows[ids.index(after) + 1:]
    return next((r for r in rows if r.id != after), None)


# -- the scan page ----------------------------------------------------------------------------
def scan_page(request: Request, ctx: Ctx, scan_id: str, *, status: int = 200,
              error: str | None = None, note: str = "") -> Response:
    try:
        scan = get_scan(ctx.db, scan_id)
    except ScanNotFound:
        return page(request, "error.html", 404, status=404, message=f"No scan {scan_id!r}.")
    reviews = [get_review(ctx.db, r.id) for r in scan.reviews]
    pending = next((r for r in reviews if r.status == "pending"), None)
    ev = Evidence.model_validate(scan.evidence) if scan.evidence else None
    nxt = next_pending(ctx, request, pending.id if pending else None)
    with ctx.db.reader() as s:
        disputes = list(s.scalars(select(Dispute).where(Dispute.scan_id == scan.id)
                                  .order_by(Dispute.id)).all())
    ref_urls = {m.reference_id: f"/v1/references/{quote(m.reference_id, safe='')}/audio"
                for m in (ev.identification.matches if ev else [])}
    return page(
        request, "scan.html", status, scan=scan, ev=ev, reviews=reviews, pending=pending,
        decision=scan.decision, error=error, note=note, shortcuts=SHORTCUTS,
        timeline=ui_view.timeline(ev) if ev else None,
        segments=ui_view.segments(ev) if ev else [], ref_urls=ref_urls,
        matches=ui_view.match_rows(ev) if ev else [], disputes=disputes,
        upload_url=f"/v1/scans/{quote(scan.id, safe='')}/audio",
        spectrogram_url=f"/ui/scans/{quote(scan.id, safe='')}/spectrogram.png",
        queue_url="/ui/reviews" + (f"?{q}" if (q := _queue_filters(request).query) else ""),
        next_scan=nxt.scan_id if nxt and (not pending or nxt.id != pending.id) else None)


@router.get("/scans/{scan_id}", response_class=HTMLResponse)
def scan(request: Request, ctx: Ctx, who: Reviewer, scan_id: str) -> Response:
    """One scan: players, timeline, spectrogram, evidence, decision, and the review form."""
    return scan_page(request, ctx, scan_id)


@router.get("/scans/{scan_id}/spectrogram.png")
def spectrogram(ctx: Ctx, who: Reviewer, scan_id: str) -> Response:
    """The upload's mel spectrogram (first minute), drawn once and cached."""
    with ctx.db.reader() as s:
        row = s.get(Scan, scan_id)
    if row is None:
        return Response("no such scan", 404, media_type="text/plain")
    try:
        png = cached_spectrogram(ctx.home, blob=row.blob, sha256=row.sha256)
    except (EarmarkError, ValueError) as exc:
        return Response(f"no spectrogram: {exc}", 404, media_type="text/plain")
    return FileResponse(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400"})


@router.post("/reviews/{review_id}/decision", response_class=HTMLResponse)
def decide(request: Request, ctx: Ctx, who: Reviewer, review_id: Id,
           action: Annotated[str, Form(max_length=16)] = "",
           note: Annotated[str, Form(max_length=4000)] = "",
           csrf: Annotated[str, Form()] = "") -> Response:
    """Record the reviewer's decision, then open the next pending review."""
    check_csrf(request, csrf)
    try:
        review = get_review(ctx.db, review_id)
    except ReviewNotFound:
        raise _Refused(404, f"No review {review_id}.") from None
    note = note.strip()
    problem = None
    if action not in REVIEW_ACTIONS:
        problem = f"Choose a decision: {', '.join(REVIEW_ACTIONS)}."
    elif not note:
        problem = "Give a reason: it is recorded with the decision and sent in the statement."
    elif len(note) > 2000:
        problem = "The reason is longer than 2000 characters."
    if problem:
        return scan_page(request, ctx, review.scan_id, status=422, error=problem, note=note)
    try:
        done = decide_review(ctx.db, review_id, action=action,  # type: ignore[arg-type]
                             reviewer=who.id, note=note)
    except ReviewConflict as exc:
        now = get_review(ctx.db, review_id)
        msg = (f"Someone decided this review first: {now.action} by {now.reviewer}."
               if now.status == "decided" else str(exc))
        return scan_page(request, ctx, review.scan_id, status=409,
                         error=f"{msg} Your decision was not recorded.")
    flash(request, f"Recorded: {done.action} for “{done.filename}”.")
    nxt = next_pending(ctx, request, review_id)
    if nxt is None:
        flash(request, "No more pending reviews match your filters.")
        return RedirectResponse("/ui/reviews?" + _queue_filters(request).query, 303)
    return RedirectResponse(f"/ui/scans/{quote(nxt.scan_id, safe='')}", 303)


# -- live streams -----------------------------------------------------------------------------
@router.get("/live", response_class=HTMLResponse)
def live(request: Request, ctx: Ctx, who: Reviewer) -> Response:
    """The events of `earmark monitor` streams: the last 200, then new ones as they come
    (server-sent events from /v1/live/events/stream)."""
    from earmark.store.models import LiveEvent

    with ctx.db.reader() as s:
        rows = list(s.scalars(select(LiveEvent).order_by(LiveEvent.seq.desc()).limit(200)))
    return page(request, "live.html", rows=[{"seq": r.seq, **r.data} for r in rows],
                last=rows[0].seq if rows else 0)
