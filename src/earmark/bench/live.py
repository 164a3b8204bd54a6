# SPDX-License-Identifier: Apache-2.0
"""``earmark bench live``: first detection, false starts and concurrent streams.

1. **First detection.** Streams of real music: ``lead_s`` of non-catalog music, then
   ``music_s`` of a catalog track under one of the core edits (clean, sped up 1.25, speech
   5 dB louder than the music, MP3 64 kbps), then more non-catalog music. The time from the
   splice to the first ``match_started`` of the right reference, per edit (median, p90,
   detection rate), and the start-time error.
2. **False starts.** ``fp_hours`` of non-catalog music with stretches of speech between and
   over it, in one stream: every ``match_started`` is false.
3. **Concurrency.** N streams played at real-time pace from files, all at once, through
   :func:`earmark.live.monitor.watch`'s per-stream threads: each block's lag (wall clock
   minus stream time when it has been processed) per stream; the most streams per core
   that keep up (p95 lag under a second, no growth).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from earmark.audio import effects
from earmark.audio.decode import decode
from earmark.bench.grid import CLEAN, Edit, apply, speech_track
from earmark.bench.identify import duplicates, split_manifest
from earmark.detect.base import get_detector
from earmark.live.events import LiveEvent
from earmark.live.monitor import StreamWatcher, WatchParams
from earmark.live.pool import SourceSpec, watch_parallel
from earmark.live.sources import BLOCK_S, Block
from earmark.service.catalog import Catalog, add_references, open_catalog

WARMUP_S = 10.0  #: seconds of a concurrent run whose lags the steady-state p95 leaves out
SR = 16000  #: streams are built at this rate (the watcher resamples to the fingerprinter's)
EDITS: tuple[Edit, ...] = (
    CLEAN,
    Edit("sped up 1.25", (("speed", {"ratio": 1.25}),), tempo=1.25,
         pitch=12 * float(np.log2(1.25)), family="speed"),
    Edit("speech +5 dB", (("speech", {"snr_db": -5.0}),), family="speech"),
    Edit("mp3 64 kbps", (("codec", {"codec": "mp3", "bitrate_kbps": 64}),), family="codec"),
)


@dataclass
class LiveBenchConfig:
    corpus: Path
    out: Path
    seed: int = 0
    per_edit: int = 25
    lead_s: float = 20.0
    music_s: float = 20.0
    tail_s: float = 10.0
    fp_hours: float = 1.0
    streams: tuple[int, ...] = (20, 40, 60)
    concurrency_s: float = 60.0
    catalog: Path | None = None
    jobs: int = 2
    hop_s: float = 1.25
    talk_over: bool = True  #: the monitor's search for talk over the music (its default)
    #: the AI detector of the concurrent streams (``earmark monitor``'s default; None: the
    #: catalog alone). The streams are decoded at its rate, as the monitor decodes them
    detector: str | None = "residue"
    #: processes the concurrent streams are spread over (None: one per core, the monitor's
    #: default; ``earmark monitor --jobs``)
    stream_jobs: int | None = None


@dataclass
class Detection:
    edit: str
    reference_id: str
    latency_ms: int | None  #: None: not detected while the music played (+ tail)
    start_error_ms: int | None
    wrong_starts: int
    audio_s: float
    cpu_s: float
    #: each wrong reference's first ``match_started``: reference, stream ms, confidence,
    #: transform, where it fell (``lead``, ``music``, ``tail``) and that part's file
    wrong: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Result:
    config: dict[str, Any]
    machine: dict[str, Any]
    detections: list[Detection] = field(default_factory=list)
    fp: dict[str, Any] = field(default_factory=dict)
    concurrency: list[dict[str, Any]] = field(default_factory=list)


def _tracks(corpus: Path, rows: list[dict[str, Any]]) -> list[Path]:
    return [(corpus / r["path"]).resolve() for r in rows]


def build_catalog(cfg: LiveBenchConfig, rows: list[dict[str, Any]],
                  log: Callable[[str], None]) -> Path:
    home = cfg.catalog or cfg.out / "catalog"
    if (home / "catalog.sqlite").exists():
        log(f"catalog: reusing {home}")
        return home
    man = cfg.out / "catalog.csv"
    man.parent.mkdir(parents=True, exist_ok=True)
    with open(man, "w") as f:
        f.write("id,path,title,artist,owner,isrc\n")
        for r in rows:
            f.write(f"{r['id']},{(cfg.corpus / r['path']).resolve()},,,{r['package']},\n")
    t0 = time.monotonic()
    with open_catalog(home=home, write=True) as cat:
        rep = add_references(catalog=cat, manifest=man, jobs=cfg.jobs)
    log(f"catalog: {rep.added} references in {time.monotonic() - t0:.0f} s")
    return home


def _feed(w: StreamWatcher, y: np.ndarray, block: int) -> float:
    t0 = time.process_time()
    for i in range(0, y.size, block):
        w.feed(Block(i, y[i:i + block]))
    w.end()
    return time.process_time() - t0


def _segment(path: Path, seconds: float, rng: np.random.Generator) -> np.ndarray | None:
    y = decode(path, SR, allow_silent=True)
    n = int(seconds * SR)
    if y.size < n + SR:
        return None
    for _ in range(5):
        a = int(rng.integers(0, y.size - n))
        seg = y[a:a + n]
        if float(np.sqrt(np.mean(seg**2))) > 1e-2:
            return seg
    return None


def first_detection(cfg: LiveBenchConfig, cat: Catalog, cat_rows: list[dict[str, Any]],
                    non_paths: list[Path], log: Callable[[str], None]) -> list[Detection]:
    """Streams of ``lead_s`` non-catalog music, ``music_s`` of an edited catalog excerpt and
    ``tail_s`` more non-catalog music (``non_paths``: held-out tracks without catalog music,
    see :func:`~earmark.bench.identify.duplicates`). A start of another reference over the
    excerpt is checked for a catalog twin: the clean passage scanned as a file finds that
    reference too, under the transform the start implies (:func:`_twin`)."""
    rng = np.random.default_rng(cfg.seed)
    out: list[Detection] = []
    for edit in EDITS:
        done = 0
        while done < cfg.per_edit:
            row = cat_rows[int(rng.integers(len(cat_rows)))]
            ref = decode((cfg.corpus / row["path"]).resolve(), SR, allow_silent=True)
            need = int((cfg.music_s * edit.tempo + 1) * SR)
            if ref.size < need + SR:
                continue
            a = int(rng.integers(0, ref.size - need))
            if float(np.sqrt(np.mean(ref[a:a + need] ** 2))) < 1e-2:
                continue
            music = apply(edit, ref[a:a + need], SR, rng)[: int(cfg.music_s * SR)]
            lead_p = non_paths[int(rng.integers(len(non_paths)))]
            lead = _segment(lead_p, cfg.lead_s, rng)
            tail_p = non_paths[int(rng.integers(len(non_paths)))]
            tail = _segment(tail_p, cfg.tail_s, rng)
            if lead is None or tail is None:
                continue
            y = np.concatenate([lead, music, tail]).astype(np.float32)
            events: list[LiveEvent] = []
            w = StreamWatcher("bench", catalog=cat, detector=None, sink=events.append, sr=SR,
                              params=WatchParams(hop_s=cfg.hop_s, talk_over=cfg.talk_over))
            cpu = _feed(w, y, SR // 2)
            splice = round(cfg.lead_s * 1000)
            starts = [e.to_json() for e in events if e.event == "match_started"]
            right = [e for e in starts if e["reference_id"] == row["id"]]
            truth_q0 = splice - round(a * 1000 / SR / edit.tempo)  # stream ms of ref time 0
            out.append(Detection(
                edit=edit.name, reference_id=row["id"],
                latency_ms=right[0]["stream_ms"] - splice if right else None,
                start_error_ms=(round(right[0]["query_start_ms"] - right[0]["ref_start_ms"]
                                      / edit.tempo - truth_q0) if right else None),
                wrong_starts=len(starts) - len(right), audio_s=y.size / SR, cpu_s=cpu,
                wrong=[_wrong(e, splice, splice + round(cfg.music_s * 1000), lead_p, tail_p)
                       for e in starts if e["reference_id"] != row["id"]]))
            for wr in out[-1].wrong:
                if wr["where"] == "music":
                    wr["twin"] = _twin(cat, ref[a:a + need], wr, edit)
            done += 1
        lat = [d.latency_ms for d in out if d.edit == edit.name and d.latency_ms is not None]
        log(f"first detection, {edit.name}: {len(lat)}/{cfg.per_edit} detected, median "
            f"{np.median(lat) / 1000 if lat else float('nan'):.2f} s")
    return out


def _wrong(e: dict[str, Any], music_ms: int, tail_ms: int, lead: Path,
           tail: Path) -> dict[str, Any]:
    """A start of another reference, placed by the middle of its first stretch."""
    q = (e["query_start_ms"] + e["query_end_ms"]) // 2
    where = "lead" if q < music_ms else "music" if q < tail_ms else "tail"
    return {"reference_id": e["reference_id"], "stream_ms": e["stream_ms"],
            "confidence": e["confidence"], "tempo_ratio": e["tempo_ratio"],
            "pitch_semitones": e["pitch_semitones"], "where": where,
            "file": str(lead if where == "lead" else tail if where == "tail" else "")}


def _twin(cat: Catalog, passage: np.ndarray, wrong: dict[str, Any], edit: Edit) -> bool:
    """Whether a file scan of the clean catalog ``passage`` (mono, :data:`SR`) finds the
    ``wrong`` start's reference under the transform that start implies (its tempo and pitch
    less the ``edit``'s, within 1 % and 0.2 semitone): the same music is in two catalog
    references (Drascula's ``track30`` repeats ``track1``), so a start of either is right."""
    ident = cat.identifier
    y = np.asarray(soxr.resample(passage, SR, ident.fingerprinter.sr), np.float32)
    tempo = wrong["tempo_ratio"] / edit.tempo
    pitch = wrong["pitch_semitones"] - edit.pitch
    found = {r.ref_key for r in ident.identify(y).matches for s in r.segments
             if abs(s.tempo_ratio / tempo - 1) < 0.01 and abs(s.pitch_semitones - pitch) < 0.2}
    return any(r.id == wrong["reference_id"]
               for r in cat.references_by_key(found).values())


def false_starts(cfg: LiveBenchConfig, cat: Catalog, non_paths: list[Path],
                 dups: dict[str, str], log: Callable[[str], None]) -> dict[str, Any]:
    """One long stream of non-catalog music and speech (``non_paths``, without the
    held-out tracks that hold catalog music, ``dups``): every match_started is false."""
    rng = np.random.default_rng(cfg.seed + 1)
    speech = speech_track(SR)
    events: list[LiveEvent] = []
    w = StreamWatcher("fp", catalog=cat, detector=None, sink=events.append, sr=SR,
                      params=WatchParams(hop_s=cfg.hop_s, talk_over=cfg.talk_over))
    total, cpu, pos, k = cfg.fp_hours * 3600 * SR, 0.0, 0, 0
    order = [non_paths[i] for i in rng.permutation(len(non_paths))]
    while pos < total:
        y = decode(order[k % len(order)], SR, allow_silent=True)
        k += 1
        if k % 4 == 0:  # speech over the music for a while
            y = y.copy()
            n = min(y.size, 30 * SR)
            y[:n] = effects.mix_over(y[:n], np.resize(speech, n), 0.0)
        if k % 5 == 0:  # a stretch of speech alone
            y = np.concatenate([np.resize(speech, 20 * SR), y])
        t0 = time.process_time()
        for i in range(0, y.size, SR // 2):
            w.feed(Block(pos + i, y[i:i + SR // 2]))
        cpu += time.process_time() - t0
        pos += y.size
    w.end()
    starts = [e.to_json() for e in events if e.event == "match_started"]
    log(f"false starts: {len(starts)} in {pos / SR / 3600:.2f} h ({k} tracks)")
    return {"hours": round(pos / SR / 3600, 3), "tracks": k, "match_started": len(starts),
            "duplicates_left_out": dups,
            "starts": starts[:50], "cpu_s": round(cpu, 1),
            "x_realtime": round(pos / SR / max(cpu, 1e-9), 1)}


def concurrency(cfg: LiveBenchConfig, cat: Catalog, non_paths: list[Path], n: int,
                log: Callable[[str], None]) -> dict[str, Any]:
    """``n`` streams played in real time at once, spread over one process per core as
    ``earmark monitor`` does; lag per block per stream."""
    work = cfg.out / "streams"
    work.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):  # pre-rendered streams so that decoding is the source's own work
        f = work / f"s{i:03d}.ogg"
        if not f.exists():
            src = non_paths[i % len(non_paths)]
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "-1",
                            "-i", str(src), "-t", str(cfg.concurrency_s + 5), "-ac", "2",
                            "-c:a", "libvorbis", "-q:a", "3", str(f)], check=True)
        files.append(f)
    lags: dict[str, list[float]] = {f"s{i}": [] for i in range(n)}
    at: dict[str, list[float]] = {f"s{i}": [] for i in range(n)}  # wall s of each lag

    cpu_of: dict[str, float] = {f"s{i}": 0.0 for i in range(n)}  # the loop's, per stream

    deferred: dict[str, int] = {f"s{i}": 0 for i in range(n)}  # talk-over searches waited

    def on_lag(sid: str, s: float, c: float, waited: bool) -> None:
        lags[sid].append(s)
        at[sid].append(time.monotonic() - wall0)
        cpu_of[sid] += c
        deferred[sid] += waited

    jobs = cfg.stream_jobs or len(os.sched_getaffinity(0))
    # the rate `earmark monitor` decodes at: its detector's, else the fingerprinter's
    sr = (get_detector(cfg.detector).sr if cfg.detector
          else cat.identifier.fingerprinter.sr)
    specs = [SourceSpec(str(f), f"s{i}", sr, realtime=True) for i, f in enumerate(files)]
    params = WatchParams(hop_s=cfg.hop_s, talk_over=cfg.talk_over)
    cpu0 = _children_cpu()
    wall0 = time.monotonic()
    watch_parallel(specs, home=Path(cat.home), detector=cfg.detector, sink=lambda e: None,
                   jobs=jobs, params=params, on_lag=on_lag)
    wall = time.monotonic() - wall0
    cpu = _children_cpu() - cpu0
    per = [np.asarray(x) for x in lags.values() if x]
    p95 = [float(np.percentile(x, 95)) for x in per]
    last = [float(np.mean(x[-10:])) for x in per]
    # the same after the first WARMUP_S of the run (processes starting, the catalog mapped,
    # every stream's first window at once): what a monitor running for hours sees
    steady = [np.asarray(lags[k])[np.asarray(at[k]) >= WARMUP_S] for k in lags if lags[k]]
    p95_steady = [float(np.percentile(x, 95)) for x in steady if x.size]
    res: dict[str, Any] = {
        "streams": n, "cores": os.cpu_count(), "processes": jobs, "wall_s": round(wall, 1),
        "detector": cfg.detector, "talk_over": cfg.talk_over, "sr": sr,
        "cpu_s": round(cpu, 1), "lag_p50_s": round(float(np.median(np.concatenate(per))), 3),
        "lag_p95_s_worst_stream": round(max(p95), 3),
        "lag_end_s_worst_stream": round(max(last), 3),
        "lag_p95_after_warmup_s_worst_stream": round(max(p95_steady), 3)
            if p95_steady else None,
        "kept_up": bool(max(p95) < 1.0 and max(last) < 1.0),
        # votes under talk whose talk-over search waited because the loop was behind
        # (WatchParams.behind_s): how much sensitivity the run traded for its lag
        "talk_searches_deferred": sum(deferred.values()),
        "behind_s": params.behind_s,
        "streams_deferred": sorted(files[int(k[1:])].name for k in deferred if deferred[k])}
    # what each stream cost the loop per second of it (its blocks are the sources' default):
    # streams differ several-fold (talk over the music runs the talk-over search)
    per_s = {k: cpu_of[k] / (len(lags[k]) * BLOCK_S) for k in lags if lags[k]}
    if per_s:
        v = np.asarray(list(per_s.values()))
        top = sorted(per_s, key=lambda k: -per_s[k])[:3]
        res |= {"stream_cpu_per_s": {"median": round(float(np.median(v)), 4),
                                     "p90": round(float(np.percentile(v, 90)), 4),
                                     "max": round(float(v.max()), 4)},
                "costliest": [{"stream": files[int(k[1:])].name,
                               "cpu_per_s": round(per_s[k], 4)} for k in top],
                "loop_cpu_share": round(sum(cpu_of.values()) / cpu, 3) if cpu > 0 else None}
    log(f"concurrency {n} streams: p95 lag (worst stream) {res['lag_p95_s_worst_stream']} s, "
        f"after {WARMUP_S:.0f} s {res['lag_p95_after_warmup_s_worst_stream']} s, "
        f"kept up: {res['kept_up']}")
    return res


def run(cfg: LiveBenchConfig, log: Callable[[str], None] = print) -> Result:
    cfg.out.mkdir(parents=True, exist_ok=True)
    cat_rows, non_rows = split_manifest(cfg.corpus, cfg.seed, None)
    home = build_catalog(cfg, cat_rows, log)
    non_paths = _tracks(cfg.corpus, non_rows)
    res = Result(config={k: (str(v) if isinstance(v, Path) else v)
                         for k, v in asdict(cfg).items()},
                 machine={"cpu": _cpu(), "cores": os.cpu_count(),
                          "python": platform.python_version(),
                          "date": time.strftime("%Y-%m-%d"), "commit": _commit()})
    with open_catalog(home=home) as cat:
        n, ms = cat.store.totals()
        res.machine["catalog"] = {"references": n, "hours": round(ms / 3.6e6, 2)}
        dups = duplicates(cat, non_paths, log)
        non_paths = [p for p in non_paths if str(p) not in dups]
        res.detections = first_detection(cfg, cat, cat_rows, non_paths, log)
        res.fp = false_starts(cfg, cat, non_paths, dups, log)
        for k in cfg.streams:
            res.concurrency.append(concurrency(cfg, cat, non_paths, k, log))
    (cfg.out / "result.json").write_text(json.dumps(asdict(res), indent=1))
    (cfg.out / "report.md").write_text(report(res))
    return res


def report(res: Result) -> str:
    lines = [f"# earmark bench live — {res.machine['date']}, commit {res.machine['commit']}",
             "", f"Machine: {res.machine['cpu']}, {res.machine['cores']} cores; catalog "
             f"{res.machine['catalog']['references']} references "
             f"({res.machine['catalog']['hours']} h).", "",
             "## First detection after catalog music starts", "",
             "| edit | detected | median | p90 | start error (median abs) | other references "
             "started: catalog twins / else |",
             "|---|---|---|---|---|---|"]
    for e in EDITS:
        ds = [d for d in res.detections if d.edit == e.name]
        lat = [d.latency_ms / 1000 for d in ds if d.latency_ms is not None]
        err = [abs(d.start_error_ms) for d in ds if d.start_error_ms is not None]
        twins = sum(bool(w.get("twin")) for d in ds for w in d.wrong)
        other = sum(d.wrong_starts for d in ds) - twins
        lines.append(f"| {e.name} | {len(lat)}/{len(ds)} | "
                     f"{np.median(lat):.2f} s | {np.percentile(lat, 90):.2f} s | "
                     f"{np.median(err):.0f} ms | {twins} / {other} |"
                     if lat else f"| {e.name} | 0/{len(ds)} | – | – | – | – |")
    lines += ["", "A catalog twin: another reference holds the same passage (a file scan of "
              "the clean passage finds it under the transform the start implies), so its "
              "start is right too. Else:"]
    lines += [f"- {d.edit}, `{d.reference_id}`: `{w['reference_id']}` at {w['stream_ms']} ms "
              f"({w['where']}{' ' + Path(w['file']).name if w['file'] else ''}), confidence "
              f"{w['confidence']}, tempo {w['tempo_ratio']}, pitch {w['pitch_semitones']}"
              for d in res.detections for w in d.wrong if not w.get("twin")] or ["- none"]
    audio = sum(d.audio_s for d in res.detections)
    cpu = sum(d.cpu_s for d in res.detections)
    lines += ["", f"One stream runs at {audio / max(cpu, 1e-9):.0f}× real time on one core "
              "(identification only, CPU time of the first-detection runs).", "",
              "## False starts on non-catalog music and speech", "",
              f"{res.fp['match_started']} `match_started` in {res.fp['hours']} h "
              f"({res.fp['tracks']} tracks, speech over a quarter of them and between a fifth). "
              f"Left out as the same recordings as catalog references under other names: "
              f"{res.fp.get('duplicates_left_out') or 'none'}.",
              "", "## Concurrent streams in real time", "",
              "As `earmark monitor` runs them: catalog and AI detector "
              "(`detector`; `none`: the catalog alone), decoded at the detector's rate.", "",
              "| streams | processes | detector | p50 lag | p95 lag (worst stream) | p95 after "
              f"{WARMUP_S:.0f} s (worst) | lag at the end (worst) | CPU s / wall s | kept up |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in res.concurrency:
        lines.append(f"| {c['streams']} | {c['processes']} | {c.get('detector') or 'none'} | "
                     f"{c['lag_p50_s']} s | "
                     f"{c['lag_p95_s_worst_stream']} s | "
                     f"{c.get('lag_p95_after_warmup_s_worst_stream')} s | "
                     f"{c['lag_end_s_worst_stream']} s | "
                     f"{c['cpu_s']} / {c['wall_s']} | {'yes' if c['kept_up'] else 'no'} |")
    for c in res.concurrency:
        if "stream_cpu_per_s" in c:
            q = c["stream_cpu_per_s"]
            costly = ", ".join(f"`{x['stream']}` {x['cpu_per_s']}" for x in c["costliest"])
            lines.append(f"\n{c['streams']} streams: CPU seconds per stream-second in the "
                         f"matching loop median {q['median']}, p90 {q['p90']}, max {q['max']} "
                         f"(costliest: {costly}); the loop is {c['loop_cpu_share']:.0%} of "
                         "the CPU (the rest: reading and decoding, the processes' glue).")
        if "talk_searches_deferred" in c:
            lines.append(f"Talk-over searches deferred while a process was more than "
                         f"{c.get('behind_s')} s behind: "
                         f"{c['talk_searches_deferred']} (streams: "
                         f"{', '.join(c['streams_deferred']) or 'none'}).")
    return "\n".join(lines) + "\n"


def _children_cpu() -> float:
    """CPU seconds of finished child processes (the monitor's workers)."""
    t = os.times()
    return t.children_user + t.children_system


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    """The commit of the tree the running ``earmark`` package comes from (not the current
    directory's: a side-by-side run imports another tree through ``PYTHONPATH``)."""
    import earmark

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True,
                              cwd=Path(earmark.__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
