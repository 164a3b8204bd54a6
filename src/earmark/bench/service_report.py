# SPDX-License-Identifier: Apache-2.0
"""Checks, figures and the report of ``earmark bench service`` (:mod:`earmark.bench.service`).

The checks read the service database directly (read-only SQLite, so they take no write lock
while the service runs) and compare it with what the clients were told.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import platform
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from earmark.bench.service import Load


def read_only(home: Path) -> sqlite3.Connection:
    """A read-only connection to the service database (no write lock, unlike a session)."""
    return sqlite3.connect(f"file:{home / 'service.sqlite'}?mode=ro", uri=True, timeout=30)


# -- the checks ----------------------------------------------------------------------------------
def percentiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    a = np.asarray(xs)
    return {"p50": round(float(np.percentile(a, 50)), 3),
            "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3),
            "n": len(xs)}


@dataclass
class ScanRow:
    """A bench scan as the database holds it; times in seconds since the load started."""

    id: str
    status: str
    attempts: int
    created: float
    started: float | None
    finished: float | None


def verify(home: Path, load: Load) -> dict[str, Any]:
    """Check the database against what the clients were told; latency from the rows."""
    from earmark.moderation.audit import verify as verify_chain
    from earmark.store.db import open_db

    def rel(x: str | None) -> float | None:
        return (dt.datetime.fromisoformat(x) - load.t0_wall).total_seconds() if x else None

    with contextlib.closing(read_only(home)) as con:
        rows = {r[0]: ScanRow(r[1], r[2], r[3], rel(r[4]) or 0.0, rel(r[5]), rel(r[6]))
                for r in con.execute(
                    "SELECT external_id, id, status, attempts, created_at, started_at, "
                    "finished_at FROM scans WHERE external_id LIKE 'bench-%'")}
        dup_ext = con.execute("SELECT count(*) FROM (SELECT external_id FROM scans WHERE "
                              "external_id IS NOT NULL GROUP BY external_id "
                              "HAVING count(*) > 1)").fetchone()[0]
        decisions = dict(con.execute("SELECT subject, count(*) FROM audit WHERE action = "
                                     "'decision' GROUP BY subject").fetchall())
        total_scans = con.execute("SELECT count(*) FROM scans").fetchone()[0]
    db = open_db(home=home, migrate=False)
    try:
        with db.reader() as s:
            chain = verify_chain(s)
    finally:
        db.close()
    accepted = {u.external_id: u.scan_id for u in load.uploads if u.scan_id}
    mine = [rows[e] for e in accepted if e in rows]
    status = Counter(r.status for r in mine)
    per_scan = [decisions.get(f"scan:{r.id}", 0) for r in mine]
    fin = sorted(r.finished for r in mine if r.finished is not None)
    return {
        "accepted": len(accepted), "scan_rows": len(rows), "scans_in_db": total_scans,
        "extra_rows": len(set(rows) - set(accepted)),
        "missing_rows": sum(e not in rows for e in accepted),
        "wrong_id": sum(e in rows and rows[e].id != sid for e, sid in accepted.items()),
        "duplicate_external_ids": dup_ext, "status": dict(status),
        "lost": len(accepted) - status.get("done", 0),
        "decision_entries": sum(per_scan), "scans_without_decision": per_scan.count(0),
        "duplicated": sum(max(0, n - 1) for n in per_scan) + dup_ext,
        "audit_chain_ok": chain.ok, "audit_entries": chain.entries,
        "attempts": dict(Counter(str(r.attempts) for r in mine)),
        "decided_in_window": sum(0 <= f <= load.cfg.duration_s for f in fin),
        "latency_db_s": percentiles([r.finished - r.created for r in mine
                                     if r.finished is not None]),
        "queue_wait_db_s": percentiles([r.started - r.created for r in mine
                                        if r.started is not None]),
        "processing_db_s": percentiles([r.finished - r.started for r in mine
                                        if r.finished is not None and r.started is not None]),
        "_series": [(r.created, r.finished - r.created) for r in mine if r.finished is not None],
        "_finished": fin,
        "_rows": {r.id: r for r in mine},
    }


def kill_report(load: Load, checks: dict[str, Any]) -> dict[str, Any] | None:
    """How long the killed worker's jobs waited: re-claimed after the kill, then decided.

    ``started_at`` of a job taken over is the time of the new claim (the last attempt's)."""
    if load.kill is None:
        return None
    at = (dt.datetime.fromisoformat(load.kill["at_utc"]) - load.t0_wall).total_seconds()
    held = []
    for sid in load.kill["held"]:
        r = checks["_rows"].get(sid)
        held.append({"scan_id": sid, "attempts": r.attempts if r else None,
                     "reclaimed_after_s": round(r.started - at, 2)
                     if r and r.started is not None else None,
                     "decided_after_s": round(r.finished - at, 2)
                     if r and r.finished is not None else None})
    after = [f for f in checks["_finished"] if f > at]
    gap = round(min(after) - at, 2) if after else None
    return {**load.kill, "held_jobs": held, "first_decision_after_kill_s": gap}


# -- machine, plot, report -----------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, date and the commit the run measured."""
    cpu = mem = None
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                    if ln.startswith("model name")), None)
    with contextlib.suppress(OSError, ValueError):
        kb = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
        mem = round(kb / 2**20, 1)
    repo = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "-C", os.fspath(repo), "describe", "--always",
                                 "--dirty"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "memory_gib": mem,
            "os": platform.platform(), "python": platform.python_version(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit}


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy since boot (``/proc/stat``), else 0."""
    try:
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def plot(path: Path, series: list[tuple[float, float]], finished: list[float],
         kill: dict[str, Any] | None, duration_s: float,
         others: list[tuple[float, float]] | None = None) -> None:
    """Upload-to-decision time over the run (each scan, and p50/p95 per bin), decisions
    per minute below with the cores other processes on the machine used; the kill marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        return
    bin_s = max(2.0, round(duration_s / 40))
    t = np.array([a for a, _ in series])
    lat = np.array([b for _, b in series])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [2, 1]})
    ax.scatter(t, lat, s=3, alpha=0.3, color="tab:blue", label="one scan")
    edges = np.arange(0.0, max(float(t.max()), duration_s) + bin_s, bin_s)
    mids, p50, p95 = [], [], []
    for lo, hi in itertools.pairwise(edges):
        sel = lat[(t >= lo) & (t < hi)]
        if sel.size:
            mids.append((lo + hi) / 2)
            p50.append(np.percentile(sel, 50))
            p95.append(np.percentile(sel, 95))
    ax.plot(mids, p50, color="black", label=f"p50 per {bin_s:.0f} s")
    ax.plot(mids, p95, color="tab:orange", label=f"p95 per {bin_s:.0f} s")
    ax.set_ylabel("upload → decision (s, database)")
    fin = np.array(finished)
    counts, _ = np.histogram(fin, bins=edges)
    ax2.stairs(counts * 60 / bin_s, edges, color="tab:green")
    ax2.set_ylim(bottom=0)
    ax2.set_ylabel("decisions / min", color="tab:green")
    if others:
        ax3 = ax2.twinx()
        ax3.plot([a for a, _ in others], [b for _, b in others], color="tab:purple", lw=1)
        ax3.set_ylabel("cores used by other processes", color="tab:purple", fontsize=8)
        ax3.set_ylim(0, os.cpu_count() or 2)
    ax2.set_xlabel("seconds since the load started (by upload time above, decision time below)")
    for a in (ax, ax2):
        a.axvline(duration_s, color="grey", ls=":", lw=1)
        if kill is not None:
            a.axvline(kill["at_s"], color="red", ls="--", lw=1.2,
                      label="worker killed (SIGKILL)" if a is ax else None)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("earmark serve + earmark worker under closed-loop load")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def write(path: Path, r: dict[str, Any]) -> None:
    """The Markdown report of one run (``result.json`` holds every figure)."""
    cfg, m, c, k = r["config"], r["machine"], r["checks"], r["kill"]
    ldb, lcl = c["latency_db_s"], r["latency_client_s"]
    kill_cmd = f" --kill-worker-at {cfg['kill_worker_at']:g}" if cfg["kill_worker_at"] else ""
    lines = [
        "# `earmark bench service` — the moderation service under load", "",
        f"{m['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; "
        f"Python {m['python']}; earmark {r['earmark']} at `{m['commit']}`.", "",
        "```sh",
        f"earmark bench service --corpus CORPUS --out OUT --clients {cfg['clients']} "
        f"--duration {cfg['duration_s']:g}{kill_cmd} --seed {cfg['seed']} "
        f"--lease-s {cfg['lease_s']:g}",
        "```", "",
        "| figure | measured |", "|---|---|",
        f"| uploads accepted | {r['accepted']} of {r['uploads']} "
        f"({r['rejected']} refused, {r['post_retries']} POSTs retried) |",
        f"| throughput | **{r['throughput_per_min']} scans/min** decided in the "
        f"{cfg['duration_s']:g} s window |",
        f"| upload → decision, database (`finished_at − created_at`) | p50 {_s(ldb['p50'])}, "
        f"p95 {_s(ldb['p95'])}, p99 {_s(ldb['p99'])}, max {_s(ldb['max'])} |",
        f"| upload → decision, client (POST sent → `done` seen) | p50 {_s(lcl['p50'])}, "
        f"p95 {_s(lcl['p95'])}, p99 {_s(lcl['p99'])}, max {_s(lcl['max'])} |",
        f"| of which queue wait / processing (database, p50) | "
        f"{_s(c['queue_wait_db_s']['p50'])} / {_s(c['processing_db_s']['p50'])} |",
        f"| lost (accepted, not `done`) | **{c['lost']}** (status {c['status']}) |",
        f"| duplicated (extra scan rows or decision entries) | **{c['duplicated']}** |",
        f"| decision audit entries | {c['decision_entries']} for {c['scan_rows']} scans; "
        f"{c['scans_without_decision']} without one |",
        f"| audit chain | {'intact' if c['audit_chain_ok'] else '**broken**'} "
        f"({c['audit_entries']} entries) |",
        "| idempotent re-sends (same external_id: one 202, one 200, same id) | after "
        f"acceptance {r['resent_ok']['after']} of {r['resent']['after']} right; concurrent "
        f"{r['resent_ok']['concurrent']} of {r['resent']['concurrent']} right |",
        f"| HTTP errors seen by clients | {r['http_errors'] or 'none'} |",
        f"| queue drained after the window in | {r['drain_s']} s "
        f"(left queued/running: {r['left_in_queue'] or 0}) |",
    ]
    if k is not None:
        held = "; ".join(f"`{h['scan_id'][:8]}` re-claimed {_s(h['reclaimed_after_s'])} after "
                         f"the kill, decided {_s(h['decided_after_s'])} after it, attempts "
                         f"{h['attempts']}" for h in k["held_jobs"]) or "none (it was idle)"
        lines.append(f"| worker killed (SIGKILL) at | {k['at_s']:.0f} s; job(s) it held: "
                     f"{held}; first decision after the kill {_s(k['first_decision_after_kill_s'])}"
                     " |")
    lines += ["", "![latency over time](latency.png)", "", "## How it runs", "",
              f"- **Catalog**: a seeded 80/20 split of the corpus; {r['catalog']['tracks']} "
              f"tracks added with `earmark catalog add --manifest`, owners "
              f"{r['catalog']['owners']}. `label-a` saves this policy (`earmark policy set`); "
              "`label-b` keeps the built-in default:", "",
              "  ```json", "  " + _json(r["catalog"]["policy"]["label-a"]), "  ```", "",
              f"- **Clips**: {r['clips']['n']} clips of 5–30 s cut with FFmpeg, half from "
              f"catalog tracks and half from held-out ones; formats {r['clips']['formats']}.",
              "- **Processes**: `earmark serve --workers 0` and one `earmark worker "
              f"--lease-s {cfg['lease_s']:g}` on one machine over one SQLite database in WAL "
              "mode (the single-box layout). The worker runs as its own process so that it can "
              "be killed; the load generator shares the same cores.",
              f"- **Load**: {cfg['clients']} clients (asyncio + httpx, one uploader key), "
              "**closed loop**: each uploads a clip under a unique `external_id`, polls "
              f"`GET /v1/scans/{{id}}` every {cfg['poll_s']:g} s until `done`/`failed`, then "
              "uploads the next. With every client waiting on its scan, throughput is the "
              "service's capacity and upload → decision is mostly queue wait (≈ clients ÷ "
              "throughput, Little's law); an open-loop arrival rate below capacity would see "
              "the processing time instead.",
              f"- **Idempotency**: {cfg['resend'] * 100:g} % of uploads are sent twice "
              "with the same `external_id`: half again once the first is accepted, half as "
              "two POSTs at the same moment (racing on the unique `external_id`). Either way "
              "one answer must be 202 and the other 200, both with the same scan id, and the "
              "database must hold one scan. A POST that fails in transport or with a 5xx is "
              "retried the same way.",
              "- **Checks**, from the database once the queue has drained: one scan row per "
              "accepted upload with the id the client was given, every scan `done`, exactly "
              "one `decision` audit entry (`subject = scan:<id>`) per scan, and the audit "
              "hash chain recomputed (`earmark.moderation.audit.verify`).", ""]
    if k is not None:
        lines += [f"- **Kill**: at {k['at_s']:.0f} s the worker (pid {k['killed_pid']}) gets "
                  f"SIGKILL and a new one (pid {k['new_pid']}) starts. A claim sets a lease "
                  f"of {cfg['lease_s']:g} s that heartbeats renew every third of it; the "
                  "job the dead worker held is claimed again, with a fresh attempt token, "
                  "once that lease has run out: at most the lease after the kill, less the "
                  "time since its last claim or heartbeat. A scan takes well under a third "
                  "of the lease, so the wait is close to the whole lease.", ""]
    lines += ["## Decisions", "", "| clip kind | " + " | ".join(_ACTIONS) + " |",
              "|---|" + "---|" * len(_ACTIONS)]
    for kind, n in r["decisions_by_kind"].items():
        lines.append(f"| {kind} | " + " | ".join(str(n.get(a, 0)) for a in _ACTIONS) + " |")
    lines += ["", f"Attempts per scan: {c['attempts']}. CPU seconds by process, from the "
              f"service's start to its stop: {r['cpu_s']} (≈ {_per_scan(r)} per decided "
              "scan). 'other processes' is what the rest of the machine used meanwhile "
              "(from `/proc/stat`, less the service and the load generator; purple in the "
              "plot): this machine is shared. Load average before the run "
              f"{r['loadavg_before']}.", ""]
    path.write_text("\n".join(lines))


_ACTIONS = ("allow", "track", "label", "monetize", "review", "mute", "block")


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj)


def _per_scan(r: dict[str, Any]) -> str:
    n = r["checks"]["status"].get("done", 0)
    if not n or not r["cpu_s"]:
        return "—"
    w = sum(v for k, v in r["cpu_s"].items() if k.startswith("worker"))
    return f"worker {w / n * 1000:.0f} ms, serve {r['cpu_s'].get('serve', 0) / n * 1000:.0f} ms"
