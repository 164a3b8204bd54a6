# SPDX-License-Identifier: Apache-2.0
"""``earmark bench identify``: accuracy, false positives, speed and size on a real corpus.

1. A seeded 80/20 split of the corpus manifest into catalog and non-catalog tracks.
2. The catalog is built with the same service call as ``earmark catalog add`` (indexing speed,
   decoding included, and index size are measured there).
3. A calibration pass (its own seed) fits the confidence model on queries apart from the
   evaluation ones, and on half of the non-catalog tracks; false positives are measured on
   the other half.
4. The evaluation pass cuts queries of each length under each edit of the grid from catalog
   tracks (top-1, offset and speed errors, latency) and from non-catalog tracks (false
   positives at the operating threshold).
5. Baselines (:mod:`earmark.bench.baselines`) answer the same queries, in the same run.
6. Latency growth: reversed and re-pitched copies of catalog tracks (never a true match) are
   added as distractor shards and 5 s queries are timed as the catalog grows.
"""

from __future__ import annotations

import csv
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from earmark import __version__
from earmark.audio.decode import decode
from earmark.bench import report
from earmark.bench.grid import CORE, EDITS, HARD, Edit, Query, cut_query
from earmark.bench.report import SHIPPED
from earmark.identify import calibrate
from earmark.identify.identifier import Identifier, cover, runner_up
from earmark.index.base import IndexItem
from earmark.index.segments import SegmentIndex
from earmark.index.sharded import LocalShard, ShardedIndex, ShardLayout, ShardMember
from earmark.service.catalog import Catalog, add_references, open_catalog, stats

QUERY_SR = 16000  #: queries are cut and edited at this rate, then resampled like a decode


@dataclass
class BenchConfig:
    corpus: Path
    out: Path
    seed: int = 0
    lengths: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 10.0)
    edits: tuple[str, ...] = tuple(e.name for e in CORE + HARD)
    per_cell: int = 30
    non_catalog: int = 150
    calibration_queries: int = 800
    jobs: int = 2
    baselines: bool = True
    baseline_edits: tuple[str, ...] = tuple(e.name for e in CORE)
    growth_hours: tuple[float, ...] = (30.0, 100.0)
    max_tracks: int | None = None


@dataclass
class Row:
    edit: str
    length_s: float
    catalog: bool
    matcher: str
    correct: bool
    status: str
    latency_ms: float = 0.0
    offset_err_ms: float | None = None
    tempo_err: float | None = None
    speed_err: float | None = None
    pitch_err: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def split_manifest(
    corpus: Path, seed: int, max_tracks: int | None
) -> tuple[list[dict], list[dict]]:
    """Seeded 80/20 split of the manifest into catalog and non-catalog tracks.

    Stems of one song (``<package>__<song>__guitar``, ``…__song``) stay on one side: a song's
    guitar track in the catalog is a true match for the song, not a false positive.
    """
    with open(corpus / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_group_of(r), []).append(r)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    order = [r for i in rng.permutation(len(keys)) for r in groups[keys[i]]]
    if max_tracks:
        order = order[:max_tracks]
    n = round(0.8 * len(order))
    while 0 < n < len(order) and _group_of(order[n]) == _group_of(order[n - 1]):
        n += 1  # split at a group boundary
    return order[:n], order[n:]


STEM_NAMES = {"song", "guitar", "rhythm", "drums", "bass", "vocals", "keys"}


def _group_of(r: dict) -> str:
    """The song a track belongs to: its folder when it is a stem, else itself."""
    parts = r["id"].split("__")
    stem = len(parts) >= 3 and parts[-1].lower() in STEM_NAMES
    return "__".join(parts[:-1]) if stem else r["id"]


@cache  # every track is decoded once (the full corpus: ~3 GB at 16 kHz)
def _load(path: str) -> np.ndarray:
    return decode(path, QUERY_SR, allow_silent=True)


def make_queries(
    corpus: Path, tracks: Sequence[dict], edits: Sequence[Edit], lengths: Sequence[float],
    n: int, rng: np.random.Generator, catalog: bool,
) -> list[Query]:
    out: list[Query] = []
    for e in edits:
        for length in lengths:
            tries = 0
            got = 0
            while got < n and tries < 5 * n:
                tries += 1
                t = tracks[int(rng.integers(0, len(tracks)))]
                try:
                    q = cut_query(_load(str(corpus / t["path"])), QUERY_SR, e, length, rng,
                                  t["id"] if catalog else None)
                except ValueError:  # an edit refused this excerpt (e.g. silence): draw again
                    continue
                if q is not None and float(np.sqrt(np.mean(q.audio**2))) > 1e-3:
                    q.extra["source"] = t["id"]
                    out.append(q)
                    got += 1
    return out


def _to_8k(q: Query, sr: int) -> np.ndarray:
    return soxr.resample(q.audio, q.sr, sr, quality="HQ").astype(np.float32)


def run_earmark(ident: Identifier, queries: Sequence[Query], key_to_id: dict[int, str],
                progress: Callable[[int], None] | None = None, matcher: str = "earmark"
                ) -> list[Row]:
    rows = []
    sr = ident.fingerprinter.sr
    for q in queries:
        y = _to_8k(q, sr)
        t0 = time.perf_counter()
        res = ident.identify(y)
        dt = (time.perf_counter() - t0) * 1000
        top = res.matches[0] if res.matches else None
        top_id = key_to_id.get(top.ref_key) if top else None
        ok = q.ref_id is not None and top_id == q.ref_id
        best = key_to_id.get(res.raw[0].ref_key) if res.raw else None
        row = Row(q.edit, q.length_s, q.ref_id is not None, matcher, ok, res.status, dt,
                  extra={"source": q.extra.get("source"), "top": top_id,
                         "confidence": top.confidence if top else None,
                         "best_alignment": best})
        if ok and top is not None and top.segments:
            s = top.segments[0]
            row.offset_err_ms = abs(s.ref_start_ms - (q.ref_start_ms + s.query_start_ms * q.tempo))
            row.tempo_err = abs(s.tempo_ratio - q.tempo) / q.tempo
            row.pitch_err = abs(s.pitch_semitones - q.pitch)
            if q.speed is not None:
                row.speed_err = abs(s.speed_ratio - q.speed) / q.speed
        rows.append(row)
        if progress:
            progress(1)
    return rows


def duplicates(cat: Catalog, paths: Sequence[Path], log: Callable[[str], None]
               ) -> dict[str, str]:
    """Held-out tracks that hold catalog music under another name, found by a file scan of
    the whole track with the shipped calibration:

    - the same recording (the game-music corpus has a few: one game's theme shipped by
      another): one reference over half of the track or more, unmodified (tempo within 1 %,
      pitch within 0.2 semitone, confidence ≥ 0.9);
    - shared material (a re-arranged version, a passage reused): one reference in
      :data:`SHARED_SEGMENTS` or more separate segments under one transform (tempo within
      0.2 %, pitch within 0.1 semitone of their median), :data:`SHARED_S` seconds of the
      track or more. Chance alignments do not come back at the same transform to 0.2 %;
      Colobot's ``Hv2`` is ``Humanitarian`` at tempo 0.8848 in seven segments.

    Their excerpts are true matches, not false positives: the benchmarks leave them out of
    the non-catalog side and list them.

    Returns ``{path: reference id}``.
    """
    from earmark.service.scan import scan_file

    out: dict[str, str] = {}
    for p in paths:
        r = scan_file(catalog=cat, path=p)
        for m in r.get("matches") or []:
            s = m["segments"][0]
            same_recording = (m["query_match_pct"] >= 50 and m["confidence"] >= 0.9
                              and abs(s["tempo_ratio"] - 1) < 0.01
                              and abs(s["pitch_semitones"]) < 0.2)
            if same_recording or _shares_material(m["segments"]):
                out[str(p)] = m["reference_id"]
                break
    log(f"duplicates: {len(out)} held-out tracks hold catalog music under another name: "
        f"{ {Path(k).name: v for k, v in out.items()} }")
    return out


SHARED_SEGMENTS = 3  #: separate segments under one transform that make shared material
SHARED_S = 20.0  #: and the seconds of the held-out track they cover together


def _shares_material(segments: Sequence[dict[str, Any]]) -> bool:
    """Whether a whole-track match holds :data:`SHARED_SEGMENTS` segments or more under one
    transform (tempo within 0.2 %, pitch within 0.1 semitone of their median) covering
    :data:`SHARED_S` seconds or more."""
    if len(segments) < SHARED_SEGMENTS:
        return False
    tempo = float(np.median([s["tempo_ratio"] for s in segments]))
    pitch = float(np.median([s["pitch_semitones"] for s in segments]))
    same = [s for s in segments if abs(s["tempo_ratio"] / tempo - 1) <= 0.002
            and abs(s["pitch_semitones"] - pitch) <= 0.1]
    covered, reach = 0, -1  # the union of their query spans, ms
    for a, b in sorted((s["query_start_ms"], s["query_end_ms"]) for s in same):
        covered += max(0, b - max(a, reach))
        reach = max(reach, b)
    return len(same) >= SHARED_SEGMENTS and covered / 1000 >= SHARED_S


def calibration_set(ident: Identifier, queries: Sequence[Query], key_to_id: dict[int, str]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features of every alignment of each query (the model scores them all, not only the
    best: a query may hold several references), and their labels.

    An alignment is right when it names the query's track under the query's edit (tempo
    within 4 %, pitch within 0.7 semitone); the same track under another transform (an alias
    a fifth or an octave away) is wrong, like every alignment of a non-catalog query.

    Returns
    -------
    X : np.ndarray [shape=(n, 6)] or [shape=(n, 5)]
        :func:`calibrate.features` per alignment; with reference sketches, only the
        alignments the identifier verifies (the others are judged by the model without
        the ``agreement`` feature, as in :meth:`Identifier._decide`), else without the
        ``agreement`` column.
    y : np.ndarray [shape=(n,)]
        1.0 where right.
    group : np.ndarray [shape=(n,), dtype=int]
        Index of the query in ``queries``.
    outside : np.ndarray [shape=(n,), dtype=bool]
        Whether the query came from outside the catalog.
    """
    X, y, group, outside = [], [], [], []
    fp = ident.fingerprinter
    # the plain model with a zero weight on the agreement: the same decisions (so the same
    # talk-over stage), and the identifier verifies the alignments
    plain = ident.plain_calibration if ident.calibration.verifies else ident.calibration
    w = [*plain.weights, *[0.0] * (len(calibrate.FEATURES) - len(plain.weights))]
    probe = replace(ident, calibration=replace(plain, weights=w))
    verified = ident.sketches is not None
    for i, q in enumerate(queries):
        res = probe.identify(_to_8k(q, fp.sr))
        dur_frames = q.audio.size / q.sr * fp.frame_rate
        for a in res.raw:
            if verified and a.agreement is None:
                continue
            pitch = a.shift * 12.0 / fp.bins_per_octave
            X.append(calibrate.features(a.score, res.ref_hits[a.ref_key], runner_up(a, res.raw),
                                        cover(a, dur_frames), a.scale, pitch,
                                        a.agreement or 0.0))
            right = (q.ref_id is not None and key_to_id.get(a.ref_key) == q.ref_id
                     and abs(a.scale / q.tempo - 1.0) <= 0.04 and abs(pitch - q.pitch) <= 0.7)
            y.append(1.0 if right else 0.0)
            group.append(i)
            outside.append(q.ref_id is None)
    d = len(calibrate.FEATURES) - (0 if verified else 1)
    return (np.array(X).reshape(-1, len(calibrate.FEATURES))[:, :d], np.array(y),
            np.array(group, dtype=np.int64), np.array(outside, dtype=bool))


def operating_threshold(cal: calibrate.Calibration, X: np.ndarray, group: np.ndarray,
                        outside: np.ndarray, quantile: float = 0.99) -> tuple[float, int]:
    """The threshold above which at most ``1 − quantile`` of the non-catalog queries would
    report anything: the ``quantile`` of each such query's highest probability over all its
    alignments, clipped to [0.5, 0.99]. Returns it and the number of those queries."""
    top: dict[int, float] = {}
    for x, g in zip(X[outside], group[outside], strict=True):
        top[int(g)] = max(top.get(int(g), 0.0), cal.probability_of(x))
    if not top:
        return cal.threshold, 0
    return float(max(0.5, min(0.99, np.quantile(list(top.values()), quantile)))), len(top)


def _distractor_shard(path: Path, corpus: Path, tracks: Sequence[dict], hours: float,
                      ident: Identifier, rng: np.random.Generator, key0: int) -> float:
    """Reversed, re-pitched copies of ``tracks`` in a new shard, up to ``hours``."""
    fp = ident.fingerprinter
    shard = SegmentIndex(path, fingerprint=f"{fp.name}-{fp.version}")
    total = 0.0
    items = []
    i = 0
    while total < hours * 3600:
        t = tracks[i % len(tracks)]
        i += 1
        y = _load(str(corpus / t["path"]))[::-1]
        v = float(rng.uniform(0.8, 1.25)) * QUERY_SR / fp.sr  # to fp.sr and re-pitched at once
        y = soxr.resample(y, fp.sr * v, fp.sr, quality="LQ").astype(np.float32)
        h, n = fp.reference([y])
        items.append(IndexItem(key0 + i, h, 1 + n // int(fp.sr / fp.frame_rate)))
        total += n / fp.sr
        if len(items) >= 32:
            shard.add(items)
            items = []
    if items:
        shard.add(items)
    shard.compact()  # as `catalog add` leaves a shard
    shard.close()
    return total


def run(cfg: BenchConfig, log: Callable[[str], None] = print,
        progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict[str, Any]:
    """Run the whole benchmark; writes ``report.md``, ``report.json`` and plots to ``cfg.out``."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    cat_tracks, non_tracks = split_manifest(cfg.corpus, cfg.seed, cfg.max_tracks)
    work = Path(tempfile.mkdtemp(prefix="earmark-bench-"))
    try:
        return _run(cfg, cat_tracks, non_tracks, work, log, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(cfg: BenchConfig, cat_tracks: list[dict], non_tracks: list[dict], work: Path,
         log: Callable[[str], None],
         progress: Callable[[str, int], Callable[[int], None]] | None) -> dict[str, Any]:
    manifest = work / "catalog.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "title", "artist", "owner", "isrc"])
        for t in cat_tracks:
            w.writerow([t["id"], str((cfg.corpus / t["path"]).resolve()), t["id"], "", "", ""])
    home = work / "home"
    log(f"catalog: {len(cat_tracks)} tracks, non-catalog: {len(non_tracks)} tracks "
        "(half for calibration, half for false positives)")
    cat = open_catalog(home=home, write=True)
    t0 = time.perf_counter()
    rep = add_references(catalog=cat, manifest=manifest, jobs=cfg.jobs)
    build_s = time.perf_counter() - t0
    st = stats(catalog=cat)
    hours = st["audio_seconds"] / 3600
    log(f"indexed {hours:.2f} h in {build_s:.1f} s with {cfg.jobs} jobs; failed: {rep.failed}")
    ident = cat.identifier
    key_to_id = {r.key: r.id for r in cat.references_by_key(ident.shards[0].ref_keys()).values()}
    edits = [EDITS[name] for name in cfg.edits]
    rng = np.random.default_rng(cfg.seed + 1)

    # calibration on its own queries (seed + 1), evaluation on others (seed + 2)
    cal_q = make_queries(cfg.corpus, cat_tracks, edits, (3.0, 5.0),
                         max(1, cfg.calibration_queries // (2 * len(edits))), rng, True)
    # non-catalog tracks: the first half calibrates, the second half measures false positives,
    # so the reported rate comes from music the confidence model has not seen
    dups = duplicates(cat, [cfg.corpus / t["path"] for t in non_tracks], log)
    dup_ids = {t["id"]: dups[str(cfg.corpus / t["path"])] for t in non_tracks
               if str(cfg.corpus / t["path"]) in dups}
    non_tracks = [t for t in non_tracks if t["id"] not in dup_ids]
    half = len(non_tracks) // 2
    cal_non, eval_non = non_tracks[:half], non_tracks[half:]
    cal_q += make_queries(cfg.corpus, cal_non, [EDITS["clean"]], (3.0, 5.0, 10.0),
                          max(1, cfg.calibration_queries // 6), rng, False)
    log(f"calibration: {len(cal_q)} queries")
    X, y, group, outside = calibration_set(ident, cal_q, key_to_id)
    cal = calibrate.fit(X, y)
    # the operating threshold: above (almost) every non-catalog query of the calibration pass
    cal.threshold, n_out = operating_threshold(cal, X, group, outside)
    cal.fitted_on = (f"earmark bench identify, seed {cfg.seed}, {len(y)} alignments of "
                     f"{np.unique(group).size} queries, {cfg.corpus}; threshold at the 99th "
                     f"percentile of {n_out} non-catalog queries' highest probability")
    cal.save(cfg.out / "calibration.json")
    ident.calibration = cal

    rng = np.random.default_rng(cfg.seed + 2)
    queries = make_queries(cfg.corpus, cat_tracks, edits, cfg.lengths, cfg.per_cell, rng, True)
    non_edits = [EDITS[n] for n in ("clean", "speed 1.25", "pitch -3", "speech +5 dB")]
    per_non = max(1, cfg.non_catalog // (len(non_edits) * 2))
    nonq = make_queries(cfg.corpus, eval_non, non_edits, (5.0, 10.0), per_non, rng, False)
    log(f"evaluation: {len(queries)} catalog queries, {len(nonq)} non-catalog queries")
    tick = progress("earmark", len(queries) + len(nonq)) if progress else None
    rows = run_earmark(ident, queries + nonq, key_to_id, tick)
    # what users get: the same queries with the confidence model the package ships (the
    # identifier's second, talk-over pass depends on it too), when it is another one
    shipped = calibrate.Calibration.load()
    if shipped != cal:
        log(f"the same queries with the shipped confidence model ({shipped.fitted_on})")
        tick = progress(SHIPPED, len(queries) + len(nonq)) if progress else None
        rows += run_earmark(replace(ident, calibration=shipped), queries + nonq, key_to_id,
                            tick, matcher=SHIPPED)
    # keep what is measured even if a later stage fails
    (cfg.out / "rows-earmark.json").write_text(json.dumps([asdict(r) for r in rows]))

    base_rows: list[Row] = []
    if cfg.baselines:
        base_rows = _run_baselines(cfg, cat_tracks, queries + nonq, work, log, progress)

    growth = _growth(cfg, cat_tracks, ident, key_to_id, hours, work, log)
    result = {
        "earmark_version": __version__,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {platform.machine()}, {_cpu()}",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "catalog": {"tracks": len(cat_tracks), "hours": hours, "build_s": build_s,
                    "jobs": cfg.jobs, "failed": rep.failed, **st},
        "calibration": asdict(cal),
        "shipped_calibration": asdict(shipped),
        "rows": [asdict(r) for r in rows + base_rows],
        "growth": growth,
        "duplicates_left_out": dup_ids,
        "core_edits": [e.name for e in CORE],
    }
    (cfg.out / "report.json").write_text(json.dumps(result, indent=1))
    (cfg.out / "report.md").write_text(report.markdown(result))
    report.plots(result, cfg.out)
    cat.close()
    return result


def _run_baselines(cfg: BenchConfig, cat_tracks: list[dict], queries: Sequence[Query],
                   work: Path, log: Callable[[str], None],
                   progress: Callable[[str, int], Callable[[int], None]] | None) -> list[Row]:
    from scipy.io import wavfile

    from earmark.bench.baselines import available_baselines

    chosen = [q for q in queries
              if q.length_s == 5.0 and (q.ref_id is None or q.edit in cfg.baseline_edits)]
    qdir = work / "queries"
    qdir.mkdir(exist_ok=True)
    paths = []
    for i, q in enumerate(chosen):
        wav = qdir / f"q{i:05d}.wav"
        wavfile.write(wav, q.sr, np.clip(q.audio * 32767, -32768, 32767).astype(np.int16))
        paths.append(str(wav))
    refs = {t["id"]: str(cfg.corpus / t["path"]) for t in cat_tracks}
    rows: list[Row] = []
    for b in available_baselines():
        log(f"baseline {b.name}: indexing {len(refs)} references")
        t0 = time.perf_counter()
        try:
            b.build(refs, work / f"baseline-{b.name}")
        except Exception as exc:  # a baseline that cannot build is left out, not our run
            log(f"baseline {b.name} failed to build and is left out: {exc}")
            continue
        build_s = time.perf_counter() - t0
        unread = getattr(b, "failed", {})
        if unread:
            log(f"baseline {b.name} could not read {len(unread)} references")
        tick = progress(b.name, len(chosen)) if progress else None
        for q, p in zip(chosen, paths, strict=True):
            t1 = time.perf_counter()
            try:
                got, _score = b.query(p)
            except Exception as exc:  # a baseline failing on one query is its row, not ours
                got, _score = None, 0.0
                log(f"{b.name} failed on {p}: {exc}")
            dt = (time.perf_counter() - t1) * 1000
            rows.append(Row(q.edit, q.length_s, q.ref_id is not None, b.name,
                            q.ref_id is not None and got == q.ref_id,
                            "match" if got is not None else "no_match", dt,
                            extra={"build_s": build_s}))
            if tick:
                tick(1)
    return rows


def _growth(cfg: BenchConfig, cat_tracks: list[dict], ident: Identifier,
            key_to_id: dict[int, str], hours: float, work: Path,
            log: Callable[[str], None]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(cfg.seed + 3)
    probe = make_queries(cfg.corpus, cat_tracks, [EDITS["clean"], EDITS["speed 1.25"]], (5.0,),
                         20, rng, True)

    def measure(total_h: float) -> dict[str, Any]:
        rows = run_earmark(ident, probe, key_to_id)
        lat = np.array([r.latency_ms for r in rows])
        return {"hours": total_h, "p50_ms": float(np.median(lat)),
                "p95_ms": float(np.percentile(lat, 95)),
                "top1": float(np.mean([r.correct for r in rows]))}

    out = [measure(hours)]
    log(f"latency at {hours:.1f} h: p50 {out[-1]['p50_ms']:.1f} ms")
    (catalog_shard,) = ident.shards
    members: list[ShardMember] = [LocalShard(catalog_shard)]  # type: ignore[arg-type]
    starts = [0]
    total = hours
    for target in cfg.growth_hours:
        if target <= total:
            continue
        key0 = 10**9 + len(members) * 10**6
        added = _distractor_shard(work / f"distractors-{int(target)}", cfg.corpus, cat_tracks,
                                  target - total, ident, rng, key0)
        members.append(LocalShard(SegmentIndex(work / f"distractors-{int(target)}")))
        starts.append(key0)
        # one index over the shards, with the catalog-wide stop-word rule (as a sharded
        # catalog answers; a plain list of shards would cap each shard on its own)
        layout = ShardLayout(tuple(f"shard-{i:04d}" for i in range(len(members))),
                             tuple(starts))
        ident.shards = [ShardedIndex(layout, list(members))]
        total += added / 3600
        out.append(measure(total))
        log(f"latency at {total:.1f} h: p50 {out[-1]['p50_ms']:.1f} ms")
    return out


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
