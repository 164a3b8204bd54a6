# SPDX-License-Identifier: Apache-2.0
"""``earmark bench capacity``: per-core throughput of each stage of a scan, on this machine.

What one scan worker does to an upload, stage by stage, timed in CPU seconds of this process
(``time.process_time``: the threads of FFmpeg and numpy included, other work on the machine
not), so the figures are per core and hold on a shared machine:

- **decode** of every corpus file to the fingerprinter's rate (8 kHz) and, for the first
  :data:`DETECT_HEAD_S` seconds, to the detector's rate (the service decodes each upload
  once per rate);
- **reference fingerprinting** of the decoded tracks (``Fingerprinter.reference``);
- **query fingerprinting** of ``query_s`` excerpts (``query_plain``: what every query pays);
- **lookup + alignment** (``Identifier.lookup`` + ``identify_prints``) of those prints
  against an index of the catalog tracks (a seeded 80 % of the corpus), then against the same
  index grown with key-permuted copies of its hashes (the same bucket sizes as real music, no
  true match) to ×4, ×16 and ×64 its hours: the latency growth with the catalog size;
- the **whole identification** (``Identifier.identify``) of catalog excerpts and of excerpts of
  the held-out 20 %, whose no-match answers also pay the talk-over pass;
- the **AI detector's** scoring (``Detector.score``) of the decoded heads;
- **index bytes per audio hour**: the size of the index folder over the catalog's hours.

The JSON it writes is what ``earmark capacity --measured`` reads (see
:mod:`earmark.bench.sizing`).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from earmark import __version__
from earmark.audio.decode import decode, decode_head
from earmark.detect.base import get_detector
from earmark.errors import EarmarkError
from earmark.identify.fingerprinter import TripletFingerprinter
from earmark.identify.identifier import Identifier
from earmark.index.base import IndexItem
from earmark.index.segments import SegmentIndex
from earmark.runners.inputs import expand_inputs

DETECT_HEAD_S = 60.0  #: seconds of each track decoded for and scored by the detector
T = TypeVar("T")


def _cpu(fn: Callable[[], T]) -> tuple[T, float, float]:
    """``(result, CPU seconds, wall seconds)`` of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def _tracks(corpus: Path) -> list[Path]:
    man = corpus / "manifest.csv"
    if man.is_file():
        with open(man, newline="") as fh:
            return [corpus / r["path"] for r in csv.DictReader(fh)]
    return [Path(p) for p in expand_inputs([corpus])]


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != ".lock")


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 3) if xs else float("nan")


def _machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": mem,
            "python": platform.python_version(), "earmark": __version__,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def measure(*, corpus: Path, max_tracks: int | None = None, query_s: float = 10.0,
            seed: int = 0, growth: tuple[int, ...] = (4, 16, 64), per_track: int = 3,
            log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Run the measurements; returns the JSON-ready result (see the module docstring).

    Parameters
    ----------
    corpus : Path
        A folder with ``manifest.csv`` (``path`` column) or audio files.
    max_tracks : int, optional
        Use only this many tracks (seeded choice).
    query_s : float
        Length of the query excerpts, seconds.
    per_track : int
        Query excerpts taken from each track.
    growth : tuple of int
        Catalog sizes, as multiples of the real catalog's hours, at which lookup is timed again.
    """
    rng = np.random.default_rng(seed)
    tracks = _tracks(corpus)
    tracks = [tracks[i] for i in rng.permutation(len(tracks))]
    if max_tracks:
        tracks = tracks[:max_tracks]
    if len(tracks) < 5:
        raise EarmarkError(f"{corpus} has {len(tracks)} usable audio files; the capacity "
                           "benchmark needs at least 5 (scripts/fetch-corpus --small)")
    n_cat = max(1, round(0.8 * len(tracks)))
    fp = TripletFingerprinter()
    det = get_detector("residue")
    sr = fp.sr
    q_len = int(query_s * sr)
    dec_cpu = dec_s = ref_cpu = det_dec_cpu = det_dec_s = det_cpu = 0.0
    items: list[IndexItem] = []
    q_in: list[np.ndarray] = []
    q_out: list[np.ndarray] = []
    for i, path in enumerate(tracks):
        try:
            y, c, _ = _cpu(lambda p=path: decode(p, sr))  # type: ignore[misc]
        except EarmarkError as exc:
            log(f"skipped {path.name}: {exc.reason}")
            continue
        dec_cpu += c
        dec_s += y.size / sr
        for _ in range(per_track if y.size > q_len + 2 * sr else 0):
            a = int(rng.integers(0, y.size - q_len))
            (q_in if i < n_cat else q_out).append(y[a: a + q_len].copy())
        if i < n_cat:
            (hashes, n), c, _ = _cpu(lambda y=y: fp.reference([y]))  # type: ignore[misc]
            ref_cpu += c
            items.append(IndexItem(i + 1, hashes, round(n * fp.frame_rate / sr)))
        head, c, _ = _cpu(lambda p=path: decode_head(p, det.sr, DETECT_HEAD_S))  # type: ignore[misc]
        det_dec_cpu += c
        det_dec_s += head.size / det.sr
        _, c, _ = _cpu(lambda h=head: det.score(h, det.sr))  # type: ignore[misc]
        det_cpu += c
        log(f"track {i + 1}/{len(tracks)}: {path.name}")
    cat_s = sum(it.n_frames for it in items) / fp.frame_rate
    with tempfile.TemporaryDirectory(prefix="earmark-capacity-") as tmp:
        idx = SegmentIndex(Path(tmp) / "idx", fingerprint=f"{fp.name}-{fp.version}")
        try:
            _, add_cpu, _ = _cpu(lambda: idx.add(items))
            idx.compact()
            idx_bytes = _dir_bytes(Path(tmp) / "idx")
            entries = idx.entries
            ident = Identifier(shards=[idx], fingerprinter=fp)
            prints, qfp_cpu = [], []
            for q in q_in:
                qp, c, _ = _cpu(lambda q=q: fp.query_plain(q))  # type: ignore[misc]
                prints.append(qp)
                qfp_cpu.append(c)

            def lookups() -> tuple[list[float], list[float]]:
                cpu, wall = [], []
                for qp in prints:
                    _, c, w = _cpu(lambda qp=qp: ident.identify_prints(  # type: ignore[misc]
                        qp, ident.lookup(qp.hashes.key)))
                    cpu.append(c * 1000)
                    wall.append(w * 1000)
                return cpu, wall

            lk_cpu, lk_wall = lookups()
            whole: dict[str, list[float]] = {"catalog": [], "outside": []}
            matched = 0
            for kind, qs in (("catalog", q_in), ("outside", q_out)):
                for q in qs:
                    res, c, _ = _cpu(lambda q=q: ident.identify(q))  # type: ignore[misc]
                    whole[kind].append(c * 1000)
                    matched += kind == "catalog" and res.status == "match"
            grow = [{"hours": round(cat_s / 3600, 3), "multiple": 1,
                     "p50_ms": _pct(lk_wall, 50), "p95_ms": _pct(lk_wall, 95),
                     "cpu_p50_ms": _pct(lk_cpu, 50)}]
            space = int(max(int(it.hashes.key.max()) for it in items if len(it.hashes))) + 1
            copies = 1
            for mult in sorted(growth):
                batch = []
                while copies < mult:
                    perm = rng.permutation(space).astype(np.uint32)
                    for j, it in enumerate(items):
                        h = it.hashes
                        batch.append(IndexItem(1_000_000 * copies + j,
                                               type(h)(perm[h.key], h.t, h.f, h.span),
                                               it.n_frames))
                    copies += 1
                idx.add(batch)
                c_ms, w_ms = lookups()
                grow.append({"hours": round(mult * cat_s / 3600, 3), "multiple": mult,
                             "p50_ms": _pct(w_ms, 50), "p95_ms": _pct(w_ms, 95),
                             "cpu_p50_ms": _pct(c_ms, 50)})
                log(f"lookup at ×{mult}: p50 {grow[-1]['p50_ms']:.1f} ms")
        finally:
            idx.close()
    hs = [g["hours"] for g in grow]
    ts = [g["cpu_p50_ms"] for g in grow]
    # the slope between the two largest catalogs: the growth steepens with the size, and
    # the sizing guide extrapolates from the large end
    exponent = (float(np.log(ts[-1] / ts[-2]) / np.log(hs[-1] / hs[-2])) if len(grow) > 1
                else 1.0)
    cat_h = cat_s / 3600
    return {
        "kind": "earmark-capacity", "version": 1, "machine": _machine(),
        "corpus": {"tracks": len(tracks), "decoded_hours": round(dec_s / 3600, 3),
                   "catalog_tracks": len(items), "catalog_hours": round(cat_h, 3),
                   "queries_catalog": len(q_in), "queries_outside": len(q_out),
                   "query_s": query_s, "catalog_queries_matched": int(matched)},
        "stages": {
            "decode_8k": {"realtime_per_core": round(dec_s / dec_cpu, 1),
                          "audio_s": round(dec_s, 1), "cpu_s": round(dec_cpu, 2)},
            "decode_detector": {"realtime_per_core": round(det_dec_s / det_dec_cpu, 1),
                                "sr": det.sr, "audio_s": round(det_dec_s, 1),
                                "cpu_s": round(det_dec_cpu, 2)},
            "reference_fingerprint": {"realtime_per_core": round(cat_s / ref_cpu, 1),
                                      "audio_s": round(cat_s, 1), "cpu_s": round(ref_cpu, 2)},
            "index_add": {"realtime_per_core": round(cat_s / max(add_cpu, 1e-6), 1)},
            "query_fingerprint": {"cpu_ms_p50": _pct([c * 1000 for c in qfp_cpu], 50),
                                  "cpu_ms_per_audio_s": round(
                                      float(np.median(qfp_cpu)) * 1000 / query_s, 3)},
            "lookup_align": {"catalog_hours": round(cat_h, 3), "cpu_ms_p50": _pct(lk_cpu, 50),
                             "p50_ms": _pct(lk_wall, 50), "p95_ms": _pct(lk_wall, 95),
                             "cpu_ms_per_audio_s": round(float(np.median(lk_cpu)) / query_s,
                                                         3)},
            "identify_catalog": {"cpu_ms_p50": _pct(whole["catalog"], 50)},
            "identify_outside": {"cpu_ms_p50": _pct(whole["outside"], 50)},
            "detect": {"detector": f"{det.name}-{det.version}",
                       "realtime_per_core": round(det_dec_s / det_cpu, 1)},
        },
        "index": {"bytes": idx_bytes, "entries": entries,
                  "bytes_per_audio_hour": round(idx_bytes / cat_h),
                  "entries_per_audio_hour": round(entries / cat_h)},
        "growth": grow, "growth_exponent": round(exponent, 3),
    }


def write_report(result: dict[str, Any], out: Path, command: str) -> tuple[Path, Path]:
    """``capacity.json`` and ``capacity.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    result = {**result, "command": command}
    j = out / "capacity.json"
    j.write_text(json.dumps(result, indent=2) + "\n")
    st, m, c = result["stages"], result["machine"], result["corpus"]
    rows = [
        ("decode to 8 kHz", f"{st['decode_8k']['realtime_per_core']:g}× realtime"),
        (f"decode to {st['decode_detector']['sr']} Hz (detector)",
         f"{st['decode_detector']['realtime_per_core']:g}× realtime"),
        ("reference fingerprinting", f"{st['reference_fingerprint']['realtime_per_core']:g}× "
                                     "realtime"),
        ("index add", f"{st['index_add']['realtime_per_core']:g}× realtime"),
        (f"query fingerprinting ({c['query_s']:g} s)",
         f"{st['query_fingerprint']['cpu_ms_p50']:g} ms CPU"),
        (f"lookup + alignment ({c['query_s']:g} s, {c['catalog_hours']:g} h)",
         f"{st['lookup_align']['cpu_ms_p50']:g} ms CPU"),
        ("whole identification, catalog excerpt", f"{st['identify_catalog']['cpu_ms_p50']:g} ms"),
        ("whole identification, outside excerpt", f"{st['identify_outside']['cpu_ms_p50']:g} ms"),
        (f"AI detector ({st['detect']['detector']})",
         f"{st['detect']['realtime_per_core']:g}× realtime"),
        ("index size", f"{result['index']['bytes_per_audio_hour'] / 1e6:.2f} MB per audio hour "
                       f"({result['index']['entries_per_audio_hour']:,} entries)"),
    ]
    lines = [
        "# Capacity: per-core throughput of each stage", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Python "
        f"{m['python']}, earmark {m['earmark']}; {m['date']}.", "",
        f"Command: `{command}`", "",
        f"Corpus: {c['tracks']} tracks ({c['decoded_hours']} h decoded); catalog "
        f"{c['catalog_tracks']} tracks, {c['catalog_hours']} h; {c['queries_catalog']} catalog "
        f"and {c['queries_outside']} outside excerpts of {c['query_s']:g} s "
        f"({c['catalog_queries_matched']} catalog excerpts matched).", "",
        "CPU time of this process per item, medians (per core).", "",
        "| stage | per core |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows], "",
        "Lookup + alignment as the catalog grows (key-permuted copies of the catalog's hashes):",
        "", "| catalog h | ×real | wall p50 ms | wall p95 ms | CPU p50 ms |",
        "|---|---|---|---|---|",
        *[f"| {g['hours']:g} | {g['multiple']} | {g['p50_ms']:g} | {g['p95_ms']:g} | "
          f"{g['cpu_p50_ms']:g} |" for g in result["growth"]], "",
        f"Growth between the two largest catalogs: CPU per lookup ∝ "
        f"hours^{result['growth_exponent']:g}.", "",
    ]
    md = out / "capacity.md"
    md.write_text("\n".join(lines))
    return j, md
