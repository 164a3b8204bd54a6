# SPDX-License-Identifier: Apache-2.0
"""``earmark bench service``: the moderation service under load, a worker killed mid-run.

1. A seeded 80/20 split of the corpus (:func:`earmark.bench.identify.split_manifest`); the
   catalog side is added with ``earmark catalog add --manifest`` and its tracks are given to
   two owners, one of which saves a policy (review a short excerpt, block a full copy), so
   decisions vary: allow, track, review, block (and label, where the detector says AI).
2. A pool of 5–30 s clips is cut with FFmpeg from both sides, as MP3, Ogg Vorbis, AAC/M4A and
   WAV.
3. ``earmark serve --workers 0`` and one ``earmark worker`` run as subprocesses on one machine
   over one SQLite database (WAL): the single-box layout, with the worker in its own process
   so that it can be killed.
4. N clients (asyncio + httpx), closed loop: upload a clip under a unique ``external_id``,
   poll ``GET /v1/scans/{id}`` until ``done``/``failed``, upload the next. A share of uploads
   is sent twice: the second answer must be 200 with the same scan id.
5. At ``--kill-worker-at`` the worker gets SIGKILL and a new one starts; the job it held runs
   again once its lease has run out.
6. When the queue has drained, the database is checked: one scan row per accepted upload,
   every scan ``done``, exactly one ``decision`` audit entry per scan, the audit chain intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from earmark import __version__
from earmark.bench.identify import split_manifest
from earmark.bench.service_report import (
    busy_cpu_s,
    kill_report,
    machine,
    percentiles,
    plot,
    read_only,
    verify,
)
from earmark.bench.service_report import write as write_report

FORMATS = {"mp3": ["-c:a", "libmp3lame", "-b:a", "128k"], "ogg": ["-c:a", "libvorbis", "-q:a", "4"],
           "m4a": ["-c:a", "aac", "-b:a", "128k"], "wav": ["-c:a", "pcm_s16le"]}
MIME = {"mp3": "audio/mpeg", "ogg": "audio/ogg", "m4a": "audio/mp4", "wav": "audio/wav"}
OWNERS = ("label-a", "label-b")  #: label-a saves POLICY; label-b keeps the built-in default
POLICY = {"rules": [
    {"name": "short excerpt", "when": {"max_query_match_ms": 7999}, "action": "review"},
    {"name": "full copy", "when": {"min_confidence": 0.95, "min_query_match_ms": 15000},
     "action": "block"},
    {"name": "not licensed in JP", "when": {"territories": ["JP"]}, "action": "block"},
], "default_action": "track"}
TERRITORIES = ("DE", "FR", "US", "JP", "BR")


@dataclass
class ServiceBenchConfig:
    corpus: Path
    out: Path
    clients: int = 50
    duration_s: float = 600.0
    kill_worker_at: float | None = None
    seed: int = 0
    clips: int = 96
    max_tracks: int | None = None
    lease_s: float = 60.0  #: the worker's lease (``earmark worker --lease-s``; 60 s default)
    poll_s: float = 0.5
    resend: float = 0.05  #: share of uploads sent twice with one external_id (half at once)
    drain_s: float = 900.0
    jobs: int = 2
    keep: bool = False


@dataclass
class Clip:
    name: str
    fmt: str
    kind: str  #: "catalog:<owner>" or "non-catalog"
    source: str
    start_s: float
    length_s: float
    data: bytes = field(repr=False, default=b"")


@dataclass
class Upload:
    client: int
    external_id: str
    clip: str
    kind: str
    t_submit: float  #: seconds since the load started
    posts: int = 0  #: POSTs until an answer (more than 1: retried after an error)
    status_code: int | None = None
    scan_id: str | None = None
    t_accepted: float | None = None
    t_done: float | None = None
    final: str | None = None
    action: str | None = None
    dup: str | None = None  #: sent twice: "after" it was accepted, or "concurrent"ly
    dup_codes: list[int | None] = field(default_factory=list)
    dup_ok: bool | None = None  #: one 202 and one 200, both with the same scan id


def _earmark(*args: str) -> list[str]:
    """The ``earmark`` command line, run by this interpreter (its pid is the process's)."""
    return [sys.executable, "-c", "from earmark.cli.main import main; main()", *args]


def _cli(env: dict[str, str], *args: str) -> str:
    """Run an ``earmark`` command; its stdout, or an error with the end of its stderr."""
    p = subprocess.run(_earmark(*args), env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"earmark {' '.join(args[:2])} failed: {p.stderr[-2000:]}")
    return p.stdout.strip()


# -- setup: catalog, policy, clips --------------------------------------------------------------
def build_catalog(cfg: ServiceBenchConfig, home: Path, rows: list[dict], env: dict[str, str],
                  log: Callable[[str], None]) -> dict[str, str]:
    """Add the catalog side with owners from a manifest; returns reference id → owner."""
    rng = np.random.default_rng(cfg.seed + 1)
    owners = {r["id"]: OWNERS[int(rng.integers(len(OWNERS)))] for r in rows}
    man = home.parent / "catalog.csv"
    with open(man, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "title", "owner"])
        for r in rows:
            w.writerow([r["id"], os.fspath((cfg.corpus / r["path"]).resolve()), r["id"],
                        owners[r["id"]]])
    t = time.monotonic()
    _cli(env, "catalog", "add", "--db", os.fspath(home), "--manifest", os.fspath(man),
         "--jobs", str(cfg.jobs))
    log(f"catalog: {len(rows)} tracks in {time.monotonic() - t:.0f} s")
    pol = home.parent / "policy.json"
    pol.write_text(json.dumps(POLICY))
    _cli(env, "policy", "set", OWNERS[0], os.fspath(pol), "--db", os.fspath(home))
    return owners


def cut_clips(cfg: ServiceBenchConfig, dest: Path, catalog: list[dict], other: list[dict],
              owners: dict[str, str]) -> list[Clip]:
    """Half the pool from catalog tracks, half from held-out ones; formats in turn."""
    rng = np.random.default_rng(cfg.seed + 2)
    dest.mkdir(parents=True, exist_ok=True)
    fmts = list(FORMATS)
    plan: list[Clip] = []
    for i in range(cfg.clips):
        side = catalog if i % 2 == 0 else other
        side = [r for r in side if float(r["duration_s"]) >= 6.0]
        r = side[int(rng.integers(len(side)))]
        dur = float(r["duration_s"])
        length = float(min(rng.uniform(5.0, 30.0), dur - 0.5))
        start = float(rng.uniform(0.0, dur - length))
        fmt = fmts[i % len(fmts)]
        kind = f"catalog:{owners[r['id']]}" if i % 2 == 0 else "non-catalog"
        plan.append(Clip(f"clip{i:03d}_{r['id'][:40]}_{start:.0f}s-{start + length:.0f}s.{fmt}",
                         fmt, kind, r["id"], round(start, 2), round(length, 2)))

    def cut(c: Clip) -> None:
        src = cfg.corpus / next(r["path"] for r in catalog + other if r["id"] == c.source)
        out = dest / c.name
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", str(c.start_s),
                        "-t", str(c.length_s), "-i", os.fspath(src), "-vn", "-map_metadata",
                        "-1", *FORMATS[c.fmt], os.fspath(out)], check=True)
        c.data = out.read_bytes()

    with ThreadPoolExecutor(cfg.jobs) as ex:
        list(ex.map(cut, plan))
    return plan


# -- the service under test ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux ``/proc``), else None."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Service:
    """``earmark serve --workers 0`` plus ``earmark worker`` processes over one home."""

    def __init__(self, home: Path, env: dict[str, str], logs: Path, lease_s: float) -> None:
        self.home, self.env, self.logs, self.lease_s = home, env, logs, lease_s
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.cpu: dict[str, float] = {}

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        logs = open(self.logs / f"{name}.log", "wb")  # the child process keeps it open
        return subprocess.Popen(_earmark(*args), env=self.env, stdout=logs, stderr=logs)

    def start(self) -> None:
        self.server = self._spawn("serve", "serve", "--db", os.fspath(self.home), "--workers",
                                  "0", "--port", str(self.port))
        self.start_worker()
        t = time.monotonic()
        while time.monotonic() - t < 120:
            if self.server.poll() is not None:
                raise RuntimeError(f"earmark serve exited; see {self.logs / 'serve.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError("earmark serve did not answer /healthz within 120 s")

    def start_worker(self) -> int:
        p = self._spawn(f"worker-{len(self.workers)}", "worker", "--db", os.fspath(self.home),
                        "--lease-s", str(self.lease_s))
        self.workers.append(p)
        return p.pid

    def kill_worker(self) -> tuple[int, list[str]]:
        """SIGKILL the current worker; returns its pid and the jobs it held."""
        p = self.workers[-1]
        self.cpu[f"worker-{len(self.workers) - 1}"] = proc_cpu_s(p.pid) or 0.0
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        with contextlib.closing(read_only(self.home)) as con:
            held = [r[0] for r in con.execute(
                "SELECT id FROM scans WHERE status = 'running' AND worker LIKE ?",
                (f"%:{p.pid}:%",))]
        return p.pid, held

    def stop(self) -> None:
        procs = [(f"worker-{i}", p) for i, p in enumerate(self.workers) if p.poll() is None]
        if self.server is not None:
            procs.append(("serve", self.server))
        for name, p in procs:
            if p.poll() is None:
                self.cpu[name] = proc_cpu_s(p.pid) or 0.0
                p.send_signal(signal.SIGTERM)
        for _, p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# -- the load --------------------------------------------------------------------------------
class Load:
    """Closed-loop clients; every upload is recorded in :attr:`uploads`."""

    def __init__(self, cfg: ServiceBenchConfig, svc: Service, key: str, pool: list[Clip],
                 log: Callable[[str], None]) -> None:
        self.cfg, self.svc, self.pool, self.log = cfg, svc, pool, log
        self.headers = {"Authorization": f"Bearer {key}"}
        self.uploads: list[Upload] = []
        self.errors: Counter[str] = Counter()
        self.kill: dict[str, Any] | None = None
        self.others: list[tuple[float, float]] = []  #: (s, cores used by other processes)
        self.t0 = 0.0
        self.t0_wall = dt.datetime.min

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.cfg.clients + 10)
        async with httpx.AsyncClient(base_url=self.svc.url, headers=self.headers,
                                     timeout=httpx.Timeout(120.0), limits=limits) as http:
            self.t0, self.t0_wall = time.monotonic(), _utcnow()
            tasks = [asyncio.create_task(self.client(i, http)) for i in range(self.cfg.clients)]
            if self.cfg.kill_worker_at is not None:
                tasks.append(asyncio.create_task(self.killer()))
            tasks.append(asyncio.create_task(self.ticker()))
            await asyncio.gather(*tasks)

    async def ticker(self, every_s: float = 10.0) -> None:
        """Progress every 30 s; every ``every_s`` the cores busy outside the service and
        this load generator (other work on the machine) go to :attr:`others`."""
        last = (self.now(), busy_cpu_s(), self._ours())
        while self.now() < self.cfg.duration_s:
            await asyncio.sleep(every_s)
            cur = (self.now(), busy_cpu_s(), self._ours())
            dt_s = cur[0] - last[0]
            self.others.append((cur[0], max(0.0, (cur[1] - last[1]) - (cur[2] - last[2]))
                                / dt_s))
            last = cur
            if int(cur[0] // 30) != int((cur[0] - every_s) // 30):
                done = sum(u.final == "done" for u in self.uploads)
                self.log(f"{self.now():5.0f} s: {len(self.uploads)} uploads, {done} decided, "
                         f"errors {dict(self.errors) or 0}")

    def _ours(self) -> float:
        procs = [p for p in [self.svc.server, *self.svc.workers] if p and p.poll() is None]
        gone = sum(self.svc.cpu.values())  # the killed worker's, read just before the kill
        return time.process_time() + gone + sum(proc_cpu_s(p.pid) or 0.0 for p in procs)

    async def killer(self) -> None:
        assert self.cfg.kill_worker_at is not None
        await asyncio.sleep(max(0.0, self.cfg.kill_worker_at - self.now()))
        t, wall = self.now(), _utcnow()
        pid, held = await asyncio.to_thread(self.svc.kill_worker)
        new = await asyncio.to_thread(self.svc.start_worker)
        self.kill = {"at_s": round(t, 2), "at_utc": wall.isoformat(), "killed_pid": pid,
                     "held": held, "new_pid": new}
        self.log(f"{t:.0f} s: worker {pid} killed (SIGKILL) holding {held}; worker {new} started")

    async def client(self, i: int, http: httpx.AsyncClient) -> None:
        rng = np.random.default_rng([self.cfg.seed, i])
        n = 0
        while self.now() < self.cfg.duration_s:
            clip = self.pool[int(rng.integers(len(self.pool)))]
            up = Upload(client=i, external_id=f"bench-{self.cfg.seed}-{i}-{n}", clip=clip.name,
                        kind=clip.kind, t_submit=self.now())
            n += 1
            self.uploads.append(up)
            terr = TERRITORIES[int(rng.integers(len(TERRITORIES)))]
            dup = rng.random() < self.cfg.resend
            twin = dup and rng.random() < 0.5  # half of the re-sends race the first POST
            if twin:
                (code, body), (code2, body2) = await asyncio.gather(
                    self.post(http, clip, up.external_id, terr, up),
                    self.post(http, clip, up.external_id, terr, None))
                if body is None:  # the first failed: the twin's answer is the acceptance
                    (code, body), (code2, body2) = (code2, body2), (code, body)
            else:
                code, body = await self.post(http, clip, up.external_id, terr, up)
            up.status_code = code
            if body is None or code not in (200, 202):
                continue
            up.scan_id, up.t_accepted = body["id"], self.now()
            if dup and not twin:  # the same upload again, once accepted
                code2, body2 = await self.post(http, clip, up.external_id, terr, None)
            if dup:
                up.dup = "concurrent" if twin else "after"
                up.dup_codes = [code, code2]
                up.dup_ok = (sorted(x or 0 for x in up.dup_codes) == [200, 202]
                             and body2 is not None and body2["id"] == up.scan_id)
            await self.poll(http, up)

    async def post(self, http: httpx.AsyncClient, clip: Clip, ext: str, terr: str,
                   up: Upload | None) -> tuple[int | None, dict[str, Any] | None]:
        """POST /v1/scans; a transport error or a 5xx is retried (same external_id)."""
        code = None
        for attempt in range(5):
            if up is not None:
                up.posts += 1
            try:
                r = await http.post("/v1/scans", files={"file": (clip.name, clip.data,
                                                                 MIME[clip.fmt])},
                                    data={"external_id": ext, "territory": terr,
                                          "content_type": "upload"})
            except httpx.HTTPError as exc:
                self.errors[f"POST {type(exc).__name__}"] += 1
                await asyncio.sleep(1.0 + attempt)
                continue
            code = r.status_code
            if code >= 500:
                self.errors[f"POST {code}"] += 1
                await asyncio.sleep(1.0 + attempt)
                continue
            if code not in (200, 202):
                self.errors[f"POST {code}"] += 1
                return code, None
            return code, r.json()
        return code, None

    async def poll(self, http: httpx.AsyncClient, up: Upload) -> None:
        end = self.cfg.duration_s + self.cfg.drain_s
        while self.now() < end:
            await asyncio.sleep(self.cfg.poll_s)
            try:
                r = await http.get(f"/v1/scans/{up.scan_id}")
            except httpx.HTTPError as exc:
                self.errors[f"GET {type(exc).__name__}"] += 1
                continue
            if r.status_code != 200:
                self.errors[f"GET {r.status_code}"] += 1
                continue
            body = r.json()
            if body["status"] in ("done", "failed"):
                up.t_done, up.final, up.action = self.now(), body["status"], body["action"]
                return


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# -- the run ---------------------------------------------------------------------------------
def _exit_on_term(*_: object) -> None:
    raise SystemExit(143)


def run(cfg: ServiceBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Set up, load, kill, drain, check; writes report.md, result.json and latency.png."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    logs = cfg.out / "logs"
    logs.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="earmark-bench-service-"))
    home = work / "home"
    env = {**os.environ, "EARMARK_SECRET": secrets.token_urlsafe(32),
           "EARMARK_HOME": os.fspath(home)}
    if threading.current_thread() is threading.main_thread():  # SIGTERM: stop what we started
        signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        catalog, other = split_manifest(cfg.corpus, cfg.seed, cfg.max_tracks)
        owners = build_catalog(cfg, home, catalog, env, log)
        pool = cut_clips(cfg, work / "clips", catalog, other, owners)
        log(f"clips: {len(pool)} ({sum(len(c.data) for c in pool) / 1e6:.0f} MB)")
        key = _cli(env, "keys", "create", "--role", "uploader", "--name", "bench", "--db",
                   os.fspath(home))
        svc = Service(home, env, logs, cfg.lease_s)
        busy0, self0, load0 = busy_cpu_s(), time.process_time(), os.getloadavg()
        svc.start()
        try:
            load = Load(cfg, svc, key, pool, log)
            t = time.monotonic()
            asyncio.run(load.run())
            drained_s = time.monotonic() - t - cfg.duration_s
            with contextlib.closing(read_only(home)) as con:
                left = dict(con.execute("SELECT status, count(*) FROM scans WHERE status IN "
                                        "('queued', 'running') GROUP BY status").fetchall())
        finally:
            busy, mine = busy_cpu_s() - busy0, time.process_time() - self0
            svc.stop()
        svc.cpu["bench clients"] = mine
        svc.cpu["other processes"] = busy - sum(svc.cpu.values())
        checks = verify(home, load)
        ups = load.uploads
        result = {
            "config": {k: os.fspath(v) if isinstance(v, Path) else v
                       for k, v in asdict(cfg).items()},
            "machine": machine(), "earmark": __version__,
            "catalog": {"tracks": len(catalog), "owners": dict(Counter(owners.values())),
                        "policy": {OWNERS[0]: POLICY}},
            "clips": {"n": len(pool), "formats": dict(Counter(c.fmt for c in pool)),
                      "kinds": dict(Counter(c.kind for c in pool))},
            "uploads": len(ups), "accepted": checks["accepted"],
            "rejected": sum(u.scan_id is None for u in ups),
            "post_retries": sum(max(0, u.posts - 1) for u in ups),
            "resent": {k: sum(u.dup == k for u in ups) for k in ("after", "concurrent")},
            "resent_ok": {k: sum(u.dup == k and bool(u.dup_ok) for u in ups)
                          for k in ("after", "concurrent")},
            "http_errors": dict(load.errors), "drain_s": round(drained_s, 1),
            "left_in_queue": left,
            "throughput_per_min": round(checks["decided_in_window"] / (cfg.duration_s / 60), 1),
            "latency_client_s": percentiles([u.t_done - u.t_submit for u in ups if u.t_done]),
            "decisions": dict(Counter(u.action for u in ups if u.action)),
            "decisions_by_kind": {k: dict(Counter(u.action for u in ups
                                                  if u.kind == k and u.action))
                                  for k in sorted({u.kind for u in ups})},
            "cpu_s": {k: round(v, 1) for k, v in svc.cpu.items()},
            "loadavg_before": [round(x, 2) for x in load0],
            "other_cores": [(round(t, 1), round(c, 2)) for t, c in load.others],
            "kill": kill_report(load, checks),
            "checks": {k: v for k, v in checks.items() if not k.startswith("_")},
        }
        (cfg.out / "result.json").write_text(json.dumps(result, indent=2, default=str))
        plot(cfg.out / "latency.png", checks["_series"], checks["_finished"],
             result["kill"], cfg.duration_s, load.others)
        write_report(cfg.out / "report.md", result)
        return result
    finally:
        if not cfg.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
