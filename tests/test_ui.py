# SPDX-License-Identifier: Apache-2.0
"""The review pages over real HTTP, driven by headless Chromium.

A real uvicorn server in a thread with its in-process worker, over a catalog of real music
(the dev corpus, or generated music where ``$EARMARK_CORPUS`` holds none): two short
excerpts with hostile file names are scanned, found, and sent to review (a short match is
not manifest, so the owner's ``block`` becomes ``review``). A reviewer signs in through the
form, filters the queue, opens the scan page, listens, and blocks with the keyboard; the
database must then hold the decision, its DSA statement and an intact audit chain.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import music, needs_ffmpeg, running, write_audio
from earmark.api.app import create_app, make_context
from earmark.api.deps import Context
from earmark.config import Settings
from earmark.moderation import audit
from earmark.moderation.policy import PolicyBody, Rule
from earmark.service.access import add_user
from earmark.service.catalog import add_references, open_catalog
from earmark.service.policies import save_policy
from earmark.service.reviews import decide_review, get_review
from earmark.service.scans import get_scan, submit_scan
from earmark.store.models import Statement

CORPUS = Path(os.environ.get("EARMARK_CORPUS", Path.home() / ".cache/earmark-corpus"))
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PASSWORD = "correct horse battery"
#: no "/" or "\": the upload's display name keeps them (a slash would cut the name)
HOSTILE = "<img src=x onerror=alert(1)>\"'&amp;.mp3"

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()
         and importlib.util.find_spec("selenium") is not None),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
           "/usr/bin/chromedriver: apt-get install chromium chromium-driver) and selenium "
           "(pip install -e '.[dev]')")


@dataclass
class Site:
    url: str
    ctx: Context
    scans: list[str]  #: scan ids, oldest first; each has one pending review at the start
    reviews: list[int]

    @contextlib.contextmanager
    def client(self, user: str | None = None) -> Iterator[httpx.Client]:
        """An HTTP client (signed in as ``user`` through the login form)."""
        with httpx.Client(base_url=self.url, timeout=30, follow_redirects=False) as c:
            if user:
                r = login(c, user, PASSWORD)
                assert r.status_code == 303, r.text
            yield c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def login(c: httpx.Client, name: str, password: str) -> httpx.Response:
    token = csrf_of(c.get("/ui/login").text)
    return c.post("/ui/login", data={"name": name, "password": password, "csrf": token})



def _references(folder: Path) -> list[tuple[str, Path]]:
    """Three real tracks of the corpus (the shortest ones), or generated music without it."""
    if (CORPUS / "manifest.csv").is_file():
        with open(CORPUS / "manifest.csv") as fh:
            rows = [r for r in csv.DictReader(fh) if 30 < float(r["duration_s"]) < 120
                    and (CORPUS / r["path"]).is_file()]
        rows.sort(key=lambda r: (float(r["duration_s"]), r["id"]))
        if len(rows) >= 3:
            return [(r["id"], CORPUS / r["path"]) for r in rows[:3]]
    return [(f"gen{i}", write_audio(folder / f"gen{i}.flac", music(100 + i, 30.0)))
            for i in range(3)]


def _cut(src: Path, dest: Path, start_s: float, dur_s: float) -> Path:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-ss", str(start_s),
                    "-t", str(dur_s), "-i", "file:" + str(src), "-c:a", "libmp3lame",
                    "-b:a", "96k", "file:" + str(dest)], check=True)
    return dest


def _wait(cond: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return got


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg CLI")
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "home"
    refs = _references(tmp)
    manifest = tmp / "catalog.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "title", "artist", "owner", "isrc"])
        for rid, path in refs:
            w.writerow([rid, str(path), f"<b>{rid.split('__')[-1]}</b>", "", "label-a", ""])
    with open_catalog(home=home, write=True) as cat:
        assert add_references(catalog=cat, manifest=manifest, jobs=1).added == len(refs)
    ctx = make_context(Settings(home=home, secret="x" * 40), home=home)
    save_policy(ctx.db, owner="label-a", actor="test",
                body=PolicyBody(rules=[Rule(name="block everything", action="block")]))
    add_user(ctx.db, name="rita", password=PASSWORD, role="moderator")
    add_user(ctx.db, name="olga", password=PASSWORD, role="moderator")
    add_user(ctx.db, name="ulf", password=PASSWORD, role="uploader")

    server = running(create_app(ctx, workers=1, webhooks=False))
    url = server.__enter__()
    scans, reviews = [], []
    # one after the other, so that the queue's order is known
    for n, name in enumerate((HOSTILE, "<script>alert(1)</script>.mp3")):
        clip = _cut(refs[2 - n][1], tmp / f"clip{n}.mp3", 10.0, 6.0)
        with open(clip, "rb") as audio:
            scan, _ = submit_scan(ctx.db, home=home, src=audio, filename=name, limits=ctx.limits,
                                  submitted_by="user:ulf")
        done = _wait(lambda sid=scan.id: (s := get_scan(ctx.db, sid)).status == "done" and s,
                     "the worker")
        assert done.action == "review", done.decision
        scans.append(done.id)
        reviews.append(done.reviews[0].id)
    try:
        yield Site(url, ctx, scans, reviews)
    finally:
        server.__exit__(None, None, None)
        ctx.db.close()


# -- over HTTP ------------------------------------------------------------------------------
@needs_ffmpeg
def test_signed_out_goes_to_login_and_wrong_password_says_so(site: Site) -> None:
    with site.client() as c:
        for path in ("/ui/reviews?reason=ai", f"/ui/scans/{site.scans[0]}",
                     f"/ui/scans/{site.scans[0]}/spectrogram.png"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
        r = c.post(f"/ui/reviews/{site.reviews[0]}/decision", data={"action": "allow"})
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
        r = login(c, "rita", "not the password")
        assert r.status_code == 200 and "Wrong name or password" in r.text
        assert c.get("/ui/reviews").status_code == 303  # still signed out
        r = login(c, "nobody", PASSWORD)
        assert "Wrong name or password" in r.text
    assert get_review(site.ctx.db, site.reviews[0]).status == "pending"


@needs_ffmpeg
def test_uploader_is_refused(site: Site) -> None:
    with site.client("ulf") as c:
        for path in ("/ui/reviews", f"/ui/scans/{site.scans[0]}"):
            r = c.get(path)
            assert r.status_code == 403 and "moderator role" in r.text
        r = c.post(f"/ui/reviews/{site.reviews[0]}/decision",
                   data={"action": "allow", "note": "x", "csrf": "y"})
        assert r.status_code == 403
    assert get_review(site.ctx.db, site.reviews[0]).status == "pending"


@needs_ffmpeg
def test_posts_need_the_session_csrf_token(site: Site) -> None:
    with site.client("rita") as c:
        page = c.get(f"/ui/scans/{site.scans[0]}")
        assert page.status_code == 200
        good = csrf_of(page.text)
        url = f"/ui/reviews/{site.reviews[0]}/decision"
        for token in (None, "", "forged-" + good[7:], good[:-1]):
            data = {"action": "allow", "note": "csrf test"}
            if token is not None:
                data["csrf"] = token
            r = c.post(url, data=data)
            assert r.status_code == 403 and "security token" in r.text, r.text
        assert c.post("/ui/logout", data={}).status_code == 403
        assert c.get("/ui/reviews").status_code == 200  # still signed in
        # a form without a reason is refused before anything is recorded
        r = c.post(url, data={"action": "allow", "note": "  ", "csrf": good})
        assert r.status_code == 422 and "Give a reason" in r.text
        # a token from another session does not work here
        with site.client("olga") as other:
            theirs = csrf_of(other.get("/ui/reviews").text)
        assert c.post(url, data={"action": "allow", "note": "x", "csrf": theirs}).status_code \
            == 403
        # the login form is protected too (login CSRF)
        r = c.post("/ui/login", data={"name": "rita", "password": PASSWORD, "csrf": "nope"})
        assert r.status_code == 403
    assert get_review(site.ctx.db, site.reviews[0]).status == "pending"


@needs_ffmpeg
def test_pages_escape_names_and_players_get_ranges(site: Site) -> None:
    with site.client("rita") as c:
        r = c.get(f"/ui/scans/{site.scans[0]}")
        assert r.status_code == 200
        assert "&lt;img src=x onerror=alert(1)&gt;" in r.text and "<img src=x" not in r.text
        assert "&lt;b&gt;" in r.text and "<b>" not in r.text  # reference titles too
        assert "script-src 'self'" in r.headers["content-security-policy"]
        q = c.get("/ui/reviews")
        assert "&lt;script&gt;" in q.text or "script&gt;" in q.text
        assert "<script>alert" not in q.text
        for path in (f"/v1/scans/{site.scans[0]}/audio", _ref_audio(site, site.scans[0])):
            r = c.get(path, headers={"Range": "bytes=100-199"})
            assert r.status_code == 206, (path, r.status_code)
            assert r.headers["content-range"].startswith("bytes 100-199/")
            assert len(r.content) == 100
        png = c.get(f"/ui/scans/{site.scans[0]}/spectrogram.png")
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        cached = list((site.ctx.home / "cache" / "spectrograms").glob("*.png"))
        assert [p.name for p in cached] == [f"{get_scan(site.ctx.db, site.scans[0]).sha256}.png"]
        assert c.get("/ui/scans/no-such-scan").status_code == 404
        for bad in ("abc", "nan", "-1", "1e9"):
            r = c.get("/ui/reviews", params={"older_than_h": bad, "reason": "not_manifest"})
            assert r.status_code == 200 and "is not a number of hours" in r.text


def _ref_audio(site: Site, scan_id: str) -> str:
    ev = get_scan(site.ctx.db, scan_id).evidence
    assert ev is not None
    return f"/v1/references/{ev['identification']['matches'][0]['reference_id']}/audio"


# -- in the browser -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--autoplay-policy=no-user-gesture-required",
                "--mute-audio"):
        opts.add_argument(arg)
    opts.binary_location = str(CHROMIUM)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    drv.implicitly_wait(0)
    yield drv
    drv.quit()


def _until(drv: Any, cond: Any, what: str, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.05).until(cond, message=what)


def _keys(drv: Any, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(drv).send_keys(keys).perform()


def _no_alert(drv: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        drv.switch_to.alert.text  # noqa: B018 - reading it is the check


def _browser_errors(drv: Any, expected: str = "\0") -> list[str]:
    """Script errors, CSP violations and failed loads the page logged (except ``expected``)."""
    return [e["message"] for e in drv.get_log("browser")
            if e["level"] == "SEVERE" and expected not in e["message"]]


@needs_ffmpeg
@needs_chromium
def test_reviewer_blocks_with_the_keyboard(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    drv, first, second = browser, site.scans[0], site.scans[1]
    drv.get(site.url + "/ui/reviews")
    assert "/ui/login" in drv.current_url
    drv.find_element(By.NAME, "name").send_keys("rita")
    drv.find_element(By.NAME, "password").send_keys(PASSWORD + Keys.ENTER)
    _until(drv, lambda d: d.current_url.endswith("/ui/reviews"), "the queue after login")
    rows = drv.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert [r.get_attribute("data-review") for r in rows] == [str(i) for i in site.reviews]
    assert rows[0].find_element(By.CSS_SELECTOR, "td.file").text == HOSTILE
    assert "not_manifest" in rows[0].text and "label-a" in rows[0].text

    # filters: none of these is AI music; both are short matches of label-a
    drv.find_element(By.CSS_SELECTOR, "select[name=ai] option[value=yes]").click()
    drv.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    _until(drv, lambda d: "ai=yes" in d.current_url, "the filtered queue")
    assert not drv.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert "with these filters" in drv.find_element(By.CSS_SELECTOR, "p.empty").text
    drv.get(site.url + "/ui/reviews?short=yes&owner=label-a&reason=not_manifest&older_than_h=0")
    assert len(drv.find_elements(By.CSS_SELECTOR, "#queue tbody tr")) == 2

    # j / k / Enter
    _keys(drv, "jjk")
    sel = drv.find_elements(By.CSS_SELECTOR, "#queue tbody tr.selected")
    assert [s.get_attribute("data-review") for s in sel] == [str(site.reviews[0])]
    _keys(drv, Keys.ENTER)
    _until(drv, lambda d: d.current_url.endswith(f"/ui/scans/{first}"), "the scan page")

    # the hostile name is text, nothing ran
    assert drv.find_element(By.ID, "filename").text == HOSTILE
    assert drv.title.startswith(HOSTILE)
    assert drv.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    _no_alert(drv)

    # players (with Range requests), timeline, spectrogram
    def media_ready(d: Any) -> Any:
        return d.execute_script(
            "const a = ['upload-audio', 'ref-audio'].map(i => document.getElementById(i));"
            "return a.every(x => x.readyState >= 1) && a.map(x => x.duration);")

    dur_up, dur_ref = _until(drv, media_ready, "both players' metadata")
    assert 5.0 < dur_up < 7.0 and dur_ref > 25
    assert _until(drv, lambda d: d.execute_script(
        "const i = document.getElementById('spectrogram');"
        "return i.complete && i.naturalWidth"), "the spectrogram") > 0
    segs = drv.find_elements(By.CSS_SELECTOR, "#timeline rect.seg")
    assert segs and drv.find_elements(By.CSS_SELECTOR, "#timeline rect.ai")
    ev = get_scan(site.ctx.db, first).evidence
    assert ev is not None
    seg = ev["identification"]["matches"][0]["segments"][0]
    btn = drv.find_element(By.CSS_SELECTOR, ".play-seg")
    assert btn.get_attribute("data-q") == str(seg["query_start_ms"])
    assert btn.get_attribute("data-r") == str(seg["ref_start_ms"])
    btn.click()
    t_up, t_ref = drv.execute_script(
        "return ['upload-audio', 'ref-audio'].map(i => document.getElementById(i).currentTime)")
    assert abs(t_up - seg["query_start_ms"] / 1000) < 0.5
    assert abs(t_ref - seg["ref_start_ms"] / 1000) < 0.5
    assert "review" in drv.find_element(By.ID, "decision").text
    assert "label-a v1" in drv.page_source

    # b, a reason, Enter: recorded, and on to the next pending review
    _keys(drv, "b")
    assert drv.find_element(By.ID, "act-block").is_selected()
    assert drv.switch_to.active_element.get_attribute("id") == "note"
    reason = "Full chorus of a <label-a> track, 6 s & more"
    drv.switch_to.active_element.send_keys(reason + Keys.ENTER)
    _until(drv, lambda d: d.current_url.endswith(f"/ui/scans/{second}"), "the next review")
    assert "Recorded: block" in drv.find_element(By.CSS_SELECTOR, ".flash").text
    name2 = get_scan(site.ctx.db, second).filename
    assert drv.find_element(By.ID, "filename").text == name2
    _no_alert(drv)

    review = get_review(site.ctx.db, site.reviews[0])
    assert (review.status, review.action, review.reviewer, review.note) == (
        "decided", "block", "user:rita", reason)
    scan = get_scan(site.ctx.db, first)
    assert scan.action == "block" and scan.decided_by == "review:user:rita"
    assert scan.decision is not None and not scan.decision["automated"]
    with site.ctx.db.reader() as s:
        statements = s.scalars(select(Statement).where(Statement.scan_id == first)).all()
        assert [st.action for st in statements] == ["block"]
        check = audit.verify(s)
    assert check.ok, check

    # the decided scan shows who decided what and why, and no form
    drv.get(site.url + f"/ui/scans/{first}")
    text = drv.find_element(By.ID, "review").text
    assert "block" in text and "user:rita" in text and reason in text
    assert not drv.find_elements(By.ID, "decide")
    assert _browser_errors(drv) == []


@needs_ffmpeg
@needs_chromium
def test_a_review_decided_meanwhile_is_a_clear_409(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    drv, scan_id, rid = browser, site.scans[1], site.reviews[1]
    drv.get(site.url + f"/ui/scans/{scan_id}")
    if "/ui/login" in drv.current_url:  # run alone: sign in first
        drv.find_element(By.NAME, "name").send_keys("rita")
        drv.find_element(By.NAME, "password").send_keys(PASSWORD + Keys.ENTER)
        _until(drv, lambda d: f"/ui/scans/{scan_id}" in d.current_url, "the scan page")
    assert drv.find_elements(By.ID, "decide")
    decide_review(site.ctx.db, rid, action="allow", reviewer="user:olga", note="licensed")
    _keys(drv, "m")
    drv.switch_to.active_element.send_keys("monetize it" + Keys.ENTER)
    err = _until(drv, lambda d: d.find_elements(By.ID, "form-error"), "the conflict message")
    assert "Someone decided this review first: allow by user:olga" in err[0].text
    assert "user:olga" in drv.find_element(By.ID, "review").text
    assert get_review(site.ctx.db, rid).action == "allow"
    with site.client("rita") as c:  # the status says so too
        token = csrf_of(c.get("/ui/reviews").text)
        r = c.post(f"/ui/reviews/{rid}/decision",
                   data={"action": "block", "note": "late", "csrf": token})
        assert r.status_code == 409 and "Someone decided this review first" in r.text
    # the queue lists what is still pending, the decided list the rest
    decided = [r for r in site.reviews if get_review(site.ctx.db, r).status == "decided"]
    drv.get(site.url + "/ui/reviews?status=pending")
    rows = drv.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert len(rows) == len(site.reviews) - len(decided)
    drv.get(site.url + "/ui/reviews?status=decided")
    rows = drv.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert [r.get_attribute("data-review") for r in rows] == [str(r) for r in decided]
    assert "allow by user:olga" in rows[-1].text
    # sign out: the pages need a new login
    drv.find_element(By.CSS_SELECTOR, "header form button").click()
    _until(drv, lambda d: "/ui/login" in d.current_url, "the login page")
    drv.get(site.url + "/ui/reviews")
    assert "/ui/login" in drv.current_url
    assert _browser_errors(drv, expected="status of 409") == []
