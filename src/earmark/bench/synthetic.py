# SPDX-License-Identifier: Apache-2.0
"""``earmark bench synthetic``: the AI-detection benchmark, on *proxy* generators.

Every AI figure here is measured on proxies built locally (:mod:`earmark.bench.proxies`),
never on a commercial generator. The harness:

1. splits the corpus by song (seeded): a few tracks train the proxies and are used for nothing
   else; the rest is halved into a *calibration* side and a *test* side;
2. scores every real test track whole, in 5 s and 10 s segments (false positives by package);
3. re-synthesises 30 s excerpts through each proxy family, random and briefly trained;
4. leave-one-family-out: the threshold at 1 % false positives comes from the real calibration
   side only, and the calibration is fitted without the family it is then tested on;
5. robustness edits (codecs, resampling, pitch, stretch, reverb, EQ, noise, gain) on both
   proxy and real excerpts, segment lengths 1–30 s and whole tracks, localisation of spliced
   AI spans (IoU), proxies mixed under real music at −20…0 dB, calibration error, speed.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earmark import __version__
from earmark.audio import effects
from earmark.audio.decode import decode
from earmark.bench.identify import _cpu, _group_of
from earmark.detect.base import AI_THRESHOLD, SPAN_THRESHOLD
from earmark.detect.residue import (
    SR,
    ResidueCalibration,
    ResidueDetector,
    calibration_features,
    localise,
)
from earmark.identify.calibrate import fit as fit_logistic

Progress = Callable[[str, int], Callable[[int], None]]

#: robustness edits: name → effect chain at 44.1 kHz
EDITS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "mp3 64k": [("codec", {"codec": "mp3", "bitrate_kbps": 64})],
    "mp3 128k": [("codec", {"codec": "mp3", "bitrate_kbps": 128})],
    "mp3 320k": [("codec", {"codec": "mp3", "bitrate_kbps": 320})],
    "aac 128k": [("codec", {"codec": "aac", "bitrate_kbps": 128})],
    "opus 64k": [("codec", {"codec": "opus", "bitrate_kbps": 64})],
    "resample 16k": [("resample", {"rate": 16000})],
    "resample 32k": [("resample", {"rate": 32000})],
    "resample 48k": [("resample", {"rate": 48000})],
    "pitch -2": [("pitch_shift", {"semitones": -2.0, "engine": "rubberband"})],
    "pitch -1": [("pitch_shift", {"semitones": -1.0, "engine": "rubberband"})],
    "pitch +1": [("pitch_shift", {"semitones": 1.0, "engine": "rubberband"})],
    "pitch +2": [("pitch_shift", {"semitones": 2.0, "engine": "rubberband"})],
    # a fractional shift moves a grid onto a tuned pitch: the evasion the tuning feature invites
    "pitch +0.3": [("pitch_shift", {"semitones": 0.3, "engine": "rubberband"})],
    "stretch 0.8": [("time_stretch", {"ratio": 0.8})],
    "stretch 1.2": [("time_stretch", {"ratio": 1.2})],
    "reverb": [("reverb", {"rt60": 0.6, "wet": 0.3, "rng": 0})],
    "eq": [("eq", {"low_gain_db": 6.0, "high_gain_db": -6.0})],
    "compression": [("compress", {})],
    "noise 20 dB": [("add_noise", {"snr_db": 20.0, "rng": 0})],
    "gain -6 dB": [("gain", {"db": -6.0})],
}


@dataclass
class SynthConfig:
    corpus: Path
    out: Path
    seed: int = 0
    train_tracks: int = 8  #: tracks the proxies train on (excluded from every figure)
    train_steps: int = 400  #: Adam steps of the "trained" proxies
    per_family: int = 16  #: 30 s test excerpts per proxy (family × random/trained)
    cal_per_family: int = 6  #: calibration excerpts per proxy
    robust_per_family: int = 3  #: excerpts per trained proxy that get every edit
    robust_real: int = 40  #: real excerpts that get every edit
    partly: int = 30  #: spliced partly-AI excerpts (localisation)
    max_tracks: int | None = None  #: use only this many corpus tracks (quick runs)


def _resample_step(y: np.ndarray, sr: int, *, rate: int) -> np.ndarray:
    import soxr

    down = soxr.resample(y, sr, rate)
    return soxr.resample(down, rate, sr).astype(np.float32)


def _compress(y: np.ndarray, sr: int) -> np.ndarray:
    """A broadcast-style compressor (FFmpeg ``acompressor``: −26 dB threshold, 6:1, +6 dB)."""
    return effects._filter_graph(
        y, sr, [("acompressor", "threshold=0.05:ratio=6:attack=5:release=100:makeup=2")])


def _apply(y: np.ndarray, steps: list[tuple[str, dict[str, Any]]]) -> np.ndarray:
    out = y
    for name, kw in steps:
        if name == "resample":
            out = _resample_step(out, SR, **kw)
        elif name == "compress":
            out = _compress(out, SR)
        else:
            out = effects.EFFECTS[name](out, SR, **kw)
    n = y.size
    return out[:n] if out.size >= n else np.pad(out, (0, n - out.size))


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN scores are dropped."""
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not pos.size or not neg.size:
        return float("nan")
    allv = np.concatenate([neg, pos])
    ranks = _rankdata(allv)
    r_pos = ranks[neg.size:].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def _rankdata(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(v), dtype=np.float64)


def _finite(v: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a[np.isfinite(a)]


def _split(rows: list[dict], seed: int, n_train: int) -> tuple[list[dict], list[dict], list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_group_of(r), []).append(r)
    keys = sorted(groups)
    order = [groups[keys[i]] for i in np.random.default_rng(seed).permutation(len(keys))]
    train: list[dict] = []
    cal: list[dict] = []
    test: list[dict] = []
    for g in order:
        if len(train) < n_train:
            train += g
        elif len(cal) <= len(test):
            cal += g
        else:
            test += g
    return train, cal, test


def _excerpt(y: np.ndarray, rng: np.random.Generator, seconds: float = 30.0) -> np.ndarray:
    n = int(seconds * SR)
    if y.size <= n:
        return y.copy()
    s0 = int(rng.integers(0, y.size - n))
    return y[s0:s0 + n].copy()  # a copy: a view would keep the whole track in memory


def run(cfg: SynthConfig, log: Callable[[str], None] = print,
        progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``result.json``, ``report.md`` and plots under ``cfg.out``."""
    import csv

    from earmark.bench.proxies import FAMILIES, load_proxy

    def bar(name: str, total: int) -> Callable[[int], None]:
        return progress(name, total) if progress else (lambda n: None)

    cfg.out.mkdir(parents=True, exist_ok=True)
    with open(cfg.corpus / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if cfg.max_tracks:
        rows = rows[: cfg.max_tracks]
    train, cal, test = _split(rows, cfg.seed, cfg.train_tracks)
    log(f"split: {len(train)} proxy-training, {len(cal)} calibration, {len(test)} test tracks")
    rng = np.random.default_rng(cfg.seed)
    audio: dict[str, np.ndarray] = {}

    def load(r: dict) -> np.ndarray:
        if r["id"] not in audio:
            audio[r["id"]] = decode(cfg.corpus / r["path"], SR)
        return audio[r["id"]]

    det = ResidueDetector(calibration=ResidueCalibration())
    result: dict[str, Any] = {
        "version": __version__, "detector": {"name": det.name, "version": det.version},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "machine": {"cpu": _cpu(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "label": "measured on locally built PROXY generators, not on commercial generators",
    }

    # -- real music: calibration side (excerpts) and test side (whole tracks) ---------------
    # every score is kept as (raw, tuned) pairs: the calibration uses both
    tick = bar("real music", len(cal) + len(test))
    real_cal5: list[np.ndarray] = []
    real_test: dict[str, list[np.ndarray]] = {"5": [], "10": []}
    by_pkg: dict[str, list[np.ndarray]] = {}
    per_track: list[np.ndarray] = []
    real_ex_cal: list[np.ndarray] = []
    real_ex_test: list[np.ndarray] = []
    t_score = 0.0
    n_scored = 0.0
    for r in cal:
        y = load(r)
        real_cal5.append(_rg(det.score(y, SR)))
        real_ex_cal.append(_excerpt(y, rng))
        audio.pop(r["id"], None)
        tick(1)
    for r in test:
        y = load(r)
        t0 = time.perf_counter()
        s5 = det.score(y, SR)
        t_score += time.perf_counter() - t0
        n_scored += y.size / SR
        real_test["5"].append(_rg(s5))
        real_test["10"].append(_rg(det.score(y, SR, segment_ms=10000)))
        by_pkg.setdefault(r["package"], []).append(_rg(s5))
        per_track.append(_rg(s5))
        real_ex_test.append(_excerpt(y, rng))
        audio.pop(r["id"], None)
        tick(1)
    rc5 = _cat(real_cal5)
    neg5, neg10 = _cat(real_test["5"]), _cat(real_test["10"])
    log(f"real: {neg5.shape[0]} test segments of 5 s, {rc5.shape[0]} calibration segments")

    # -- proxies -------------------------------------------------------------------------
    train_audio = [load(r)[: 60 * SR] for r in train]
    proxies = []
    for fam in FAMILIES:
        for steps in ((0,) if fam.kind == "griffinlim" else (0, cfg.train_steps)):
            log(f"proxy {fam.name} ({f'trained {steps} steps' if steps else 'random'})")
            proxies.append(load_proxy(fam, train_on=train_audio, steps=steps, seed=cfg.seed,
                                      cache_dir=cfg.out / "proxies", log=log))
    n_ex = cfg.per_family + cfg.cal_per_family
    tick = bar("proxy excerpts", len(proxies) * n_ex)
    lengths = (1000, 2000, 5000, 10000, 30000)
    ai: dict[str, dict[str, Any]] = {}
    for p in proxies:
        src_test = [real_ex_test[i] for i in rng.choice(len(real_ex_test), cfg.per_family)]
        src_cal = [real_ex_cal[i] for i in rng.choice(len(real_ex_cal), cfg.cal_per_family)]
        rec: dict[str, Any] = {"family": p.family.name, "grid_hz": p.family.grid_hz,
                               "trained": bool(p.trained_steps), "cal": [],
                               "test": {str(L): [] for L in lengths}, "excerpts": []}
        for x in src_cal:
            rec["cal"].append(_rg(det.score(p.generate(x), SR)))
            tick(1)
        for x in src_test:
            g = p.generate(x)
            for L in lengths:
                rec["test"][str(L)].append(_rg(det.score(g, SR, segment_ms=L)))
            rec["excerpts"].append(g)
            tick(1)
        rec["cal"] = _cat(rec["cal"])
        rec["test"] = {k: _cat(v) for k, v in rec["test"].items()}
        ai[p.name] = rec

    # real excerpts at every length (the negatives of the length table)
    real_len = {str(L): _cat([_rg(det.score(x, SR, segment_ms=L)) for x in real_ex_test])
                for L in lengths}

    def fit_cal(exclude: str | None = None, note: str = "") -> ResidueCalibration:
        pos = [rec["cal"] for rec in ai.values() if rec["family"] != exclude]
        X = np.concatenate([_feat(rc5)] + [_feat(v) for v in pos])
        y = np.concatenate([np.zeros(rc5.shape[0])] + [np.ones(v.shape[0]) for v in pos])
        c = fit_logistic(X, y)
        return ResidueCalibration(weights=list(c.weights), bias=c.bias, fitted_on=note)

    # -- leave-one-family-out: calibration without the family, threshold from real only ----
    fams = sorted({rec["family"] for rec in ai.values()})
    lofo: list[dict[str, Any]] = []
    for fam in fams:
        cal_f = fit_cal(exclude=fam)
        thr = float(np.quantile(_z(cal_f, rc5), 0.99))
        for name, rec in ai.items():
            if rec["family"] != fam:
                continue
            pos10, pos5 = rec["test"]["10000"], rec["test"]["5000"]
            lofo.append({
                "proxy": name, "family": fam, "trained": rec["trained"],
                "auc_10s": auc(_z(cal_f, pos10), _z(cal_f, neg10)),
                "tpr_at_1pct_10s": float((_z(cal_f, pos10) > thr).mean()),
                "auc_5s": auc(_z(cal_f, pos5), _z(cal_f, neg5)),
                "tpr_at_1pct_5s": float((_z(cal_f, pos5) > thr).mean()),
                "ai_label_rate_5s": float((_p(cal_f, pos5) >= AI_THRESHOLD).mean()),
                "n_segments_10s": int(pos10.shape[0]),
            })
    result["lofo"] = lofo

    # -- the shipped calibration: every family + real calibration side ---------------------
    final = fit_cal(note=f"earmark bench synthetic, seed {cfg.seed}, {time.strftime('%Y-%m-%d')}")
    final.save(cfg.out / "residue.json")
    result["calibration"] = asdict(final)
    thr_final = float(np.quantile(_z(final, rc5), 0.99))
    result["threshold_logit_1pct"] = thr_final

    def fp_rate(pairs: np.ndarray) -> float:
        return float((_p(final, pairs) >= AI_THRESHOLD).mean()) if pairs.size else float("nan")

    track_p = np.array([_p(final, t).max() if t.shape[0] else 0.0 for t in per_track])
    result["real"] = {
        "segments_5s": int(neg5.shape[0]), "tracks": len(test),
        "ai_label_rate_5s": fp_rate(neg5), "ai_label_rate_10s": fp_rate(neg10),
        "track_level_ai_rate": float((track_p >= AI_THRESHOLD).mean()),
        "track_with_span_rate": float((track_p >= SPAN_THRESHOLD).mean()),
        "by_package": {k: {"segments": int(_cat(v).shape[0]), "ai_label_rate": fp_rate(_cat(v))}
                       for k, v in sorted(by_pkg.items())},
    }

    # -- segment lengths ------------------------------------------------------------------
    result["lengths"] = []
    for L in lengths:
        neg = real_len[str(L)]
        pos_tr = _cat([rec["test"][str(L)] for rec in ai.values() if rec["trained"]])
        pos_all = _cat([rec["test"][str(L)] for rec in ai.values()])
        thr_L = float(np.quantile(_z(final, neg), 0.99)) if neg.size else float("nan")
        result["lengths"].append({
            "segment_s": L / 1000,
            "auc_trained": auc(_z(final, pos_tr), _z(final, neg)),
            "auc_all": auc(_z(final, pos_all), _z(final, neg)),
            "tpr_at_1pct_trained": float((_z(final, pos_tr) > thr_L).mean()),
            "ai_label_rate_trained": fp_rate(pos_tr),
            "real_ai_label_rate": fp_rate(neg), "n_real": int(neg.shape[0]),
        })

    # -- robustness -----------------------------------------------------------------------
    trained = [rec for rec in ai.values() if rec["trained"]]
    rob_ai = [g for rec in trained for g in rec["excerpts"][: cfg.robust_per_family]]
    rob_real = real_ex_test[: cfg.robust_real]
    tick = bar("robustness edits", (len(EDITS) + 1) * (len(rob_ai) + len(rob_real)))
    result["robustness"] = []
    for name, chain in {"none": [], **EDITS}.items():
        pos_l, neg_l = [], []
        for g in rob_ai:
            pos_l.append(_rg(det.score(_apply(g, chain), SR, segment_ms=10000)))
            tick(1)
        for x in rob_real:
            neg_l.append(_rg(det.score(_apply(x, chain), SR, segment_ms=10000)))
            tick(1)
        pv, nv = _cat(pos_l), _cat(neg_l)
        result["robustness"].append({
            "edit": name, "auc_10s": auc(_z(final, pv), _z(final, nv)),
            "tpr_at_1pct_10s": float((_z(final, pv) > thr_final).mean()),
            "ai_label_rate_10s": fp_rate(pv),
            "real_over_threshold_10s": float((_z(final, nv) > thr_final).mean()),
            "real_ai_label_rate_10s": fp_rate(nv),
        })

    # -- partly AI: spliced spans (localisation) and proxies mixed under real music --------
    det_final = ResidueDetector(calibration=final)
    ious: list[float] = []
    for i in range(cfg.partly):
        rec = trained[i % len(trained)]
        g = rec["excerpts"][i % len(rec["excerpts"])]
        x = real_ex_test[int(rng.integers(len(real_ex_test)))]
        n = min(x.size, g.size)
        if n < 20 * SR:
            continue
        span = int(rng.uniform(6, 15) * SR)
        a = int(rng.integers(SR, n - span - SR))
        mix = x[:n].copy()
        part = g[a:a + span]
        mix[a:a + span] = part * np.sqrt(np.mean(x[a:a + span] ** 2) /
                                         max(float(np.mean(part ** 2)), 1e-12))
        s = det_final.score(mix, SR)
        spans = localise(mix, s, threshold=SPAN_THRESHOLD)
        truth = (a * 1000 // SR, (a + span) * 1000 // SR)
        inter = sum(max(0, min(e, truth[1]) - max(b, truth[0])) for b, e in spans)
        union = (truth[1] - truth[0]) + sum(e - b for b, e in spans) - inter
        ious.append(inter / union if union else 0.0)
    iv = np.array(ious)
    result["localisation"] = {"n": int(iv.size), "iou_median": float(np.median(iv)),
                              "iou_mean": float(iv.mean()),
                              "share_iou_ge_0.8": float((iv >= 0.8).mean())}
    mixed: list[dict[str, Any]] = []
    for level in (-20.0, -10.0, -6.0, 0.0):
        hits: list[float] = []
        for rec in trained:
            for g in rec["excerpts"][:3]:
                x = real_ex_test[int(rng.integers(len(real_ex_test)))]
                n = min(x.size, g.size)
                gg = g[:n] * np.sqrt(np.mean(x[:n] ** 2) / max(float(np.mean(g[:n] ** 2)), 1e-12))
                s = det_final.score(x[:n] + gg * 10 ** (level / 20), SR, segment_ms=10000)
                hits += list(np.nan_to_num(s.probability) >= AI_THRESHOLD)
        mixed.append({"level_db": level, "ai_label_rate_10s": float(np.mean(hits))})
    result["mixed_under_real"] = mixed
    result["stem"] = _stem_mixes(cfg, rows, train, trained_proxies={
        p.family.name: p for p in proxies if p.trained_steps}, det=det_final)

    # -- calibration error (test side, 5 s) and speed --------------------------------------
    pos5_all = _cat([rec["test"]["5000"] for rec in ai.values()])
    p_pos, p_neg = _p(final, pos5_all), _p(final, neg5)
    result["ece_5s"] = _ece(np.concatenate([p_pos, p_neg]),
                            np.concatenate([np.ones(p_pos.size), np.zeros(p_neg.size)]))
    result["speed"] = {"score_x_realtime_per_core": n_scored / max(t_score, 1e-9),
                       "audio_s": n_scored}
    for rec in ai.values():
        rec.pop("excerpts")
    (cfg.out / "result.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    write_report(result, ai, neg5, cfg.out)
    return result


def _stem_mixes(cfg: SynthConfig, rows: list[dict], train: list[dict],
                trained_proxies: dict[str, Any], det: ResidueDetector) -> list[dict[str, Any]]:
    """Songs whose stems the corpus holds (``…__song`` backing + ``…__guitar``): the guitar
    stem re-synthesised by each trained proxy and mixed with the real backing at −20…0 dB
    (the stem's level against the backing's). Share of 10 s segments labelled ai / flagged."""
    used = {r["id"] for r in train}
    songs: dict[str, dict[str, dict]] = {}
    for r in rows:
        parts = r["id"].split("__")
        if len(parts) == 3 and parts[2] in ("song", "guitar") and r["id"] not in used:
            songs.setdefault("__".join(parts[:2]), {})[parts[2]] = r
    pairs = [(v["song"], v["guitar"]) for v in songs.values() if {"song", "guitar"} <= set(v)]
    out: list[dict[str, Any]] = []
    if not pairs:
        return out
    stems = [(decode(cfg.corpus / a["path"], SR)[: 60 * SR],
              decode(cfg.corpus / b["path"], SR)[: 60 * SR]) for a, b in pairs]
    for level in (-20.0, -10.0, -6.0, 0.0):
        ai_l: list[float] = []
        flag: list[float] = []
        for p in trained_proxies.values():
            for back, gtr in stems:
                n = min(back.size, gtr.size)
                fake = p.generate(gtr[:n])
                g = np.sqrt(np.mean(back[:n] ** 2) / max(float(np.mean(fake ** 2)), 1e-12))
                prob = np.nan_to_num(det.score(back[:n] + fake * g * 10 ** (level / 20), SR,
                                               segment_ms=10000).probability)
                ai_l += list(prob >= AI_THRESHOLD)
                flag += list(prob >= SPAN_THRESHOLD)
        out.append({"level_db": level, "songs": len(pairs),
                    "ai_label_rate_10s": float(np.mean(ai_l)),
                    "flagged_rate_10s": float(np.mean(flag))})
    # the same songs with the real guitar: how often the untouched mix is labelled / flagged
    real = [np.nan_to_num(det.score(b[: min(b.size, g.size)] + g[: min(b.size, g.size)], SR,
                                    segment_ms=10000).probability) for b, g in stems]
    allp = np.concatenate(real)
    out.append({"level_db": None, "songs": len(pairs),
                "ai_label_rate_10s": float((allp >= AI_THRESHOLD).mean()),
                "flagged_rate_10s": float((allp >= SPAN_THRESHOLD).mean())})
    return out


def _rg(s: Any) -> np.ndarray:
    """(raw, tuned) pairs of a SegmentScores, shape (n, 2); unscored segments dropped."""
    a = np.stack([np.asarray(s.raw, np.float64), np.asarray(s.tuned, np.float64)], axis=1)
    return a[np.isfinite(a[:, 0])]


def _cat(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if len(parts) else np.zeros((0, 2))


def _feat(pairs: np.ndarray) -> np.ndarray:
    return calibration_features(pairs[:, 0], pairs[:, 1])


def _z(cal: ResidueCalibration, pairs: np.ndarray) -> np.ndarray:
    """The calibration's logit: the score every ranking of the report uses."""
    return _feat(pairs) @ np.asarray(cal.weights) + cal.bias


def _p(cal: ResidueCalibration, pairs: np.ndarray) -> np.ndarray:
    return cal.probability(pairs[:, 0], pairs[:, 1])


def _ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.mean() * abs(float(p[m].mean()) - float(y[m].mean()))
    return float(err)


def write_report(result: dict[str, Any], ai: dict[str, dict[str, Any]],
                 real5: np.ndarray, out: Path) -> None:
    """``report.md`` and ``scores.png`` (score distributions, real against each proxy)."""
    L: list[str] = [
        "# earmark bench synthetic", "",
        f"**All AI figures are measured on locally built proxy generators, not on commercial "
        f"generators.** Detector `{result['detector']['name']}` v{result['detector']['version']}, "
        f"earmark {result['version']}, {result['date']}, {result['machine']['cpu']}.", "",
        "## Leave-one-family-out (10 s and 5 s segments)", "",
        "Scores are the calibration's logit (log raw score and tuning, `docs/detect.md`); the "
        "calibration is fitted without the family it is tested on, and the threshold at 1 % "
        "false positives comes from the real calibration side only.", "",
        "| proxy | AUC 10 s | TPR@1 % FPR 10 s | AUC 5 s | TPR@1 % 5 s | labelled ai 5 s |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["lofo"]:
        L.append(f"| {r['proxy']} | {r['auc_10s']:.3f} | {r['tpr_at_1pct_10s']:.2f} | "
                 f"{r['auc_5s']:.3f} | {r['tpr_at_1pct_5s']:.2f} | {r['ai_label_rate_5s']:.2f} |")
    real = result["real"]
    L += ["", "## Real music labelled `ai`", "",
          f"{real['segments_5s']} segments of 5 s from {real['tracks']} test tracks: "
          f"{real['ai_label_rate_5s']:.4f} of 5 s segments, {real['ai_label_rate_10s']:.4f} of "
          f"10 s segments, {real['track_level_ai_rate']:.4f} of whole tracks (any segment); "
          f"{real['track_with_span_rate']:.4f} of whole tracks would show a suspected span "
          f"(a segment at p ≥ {SPAN_THRESHOLD}).", "",
          "| package | 5 s segments | labelled ai |", "|---|---|---|"]
    for k, v in real["by_package"].items():
        L.append(f"| {k} | {v['segments']} | {v['ai_label_rate']:.4f} |")
    L += ["", "## Segment length", "",
          "| segment | AUC trained proxies | AUC all proxies | TPR@1 % (trained) "
          "| trained labelled ai | real labelled ai |",
          "|---|---|---|---|---|---|"]
    for r in result["lengths"]:
        L.append(f"| {r['segment_s']:g} s | {r['auc_trained']:.3f} | {r['auc_all']:.3f} | "
                 f"{r['tpr_at_1pct_trained']:.2f} | {r['ai_label_rate_trained']:.2f} | "
                 f"{r['real_ai_label_rate']:.4f} |")
    L += ["", "## Robustness (trained proxies vs real excerpts, 10 s segments)", "",
          "| edit | AUC | TPR@1 % | AI labelled ai | real over the 1 % threshold "
          "| real labelled ai |",
          "|---|---|---|---|---|---|"]
    for r in result["robustness"]:
        L.append(f"| {r['edit']} | {r['auc_10s']:.3f} | {r['tpr_at_1pct_10s']:.2f} | "
                 f"{r['ai_label_rate_10s']:.2f} | {r['real_over_threshold_10s']:.3f} | "
                 f"{r['real_ai_label_rate_10s']:.3f} |")
    loc = result["localisation"]
    L += ["", "## Partly AI", "",
          f"Spliced spans of 6–15 s (trained proxies) in 30 s real excerpts, n = {loc['n']}: "
          f"IoU median {loc['iou_median']:.2f}, mean {loc['iou_mean']:.2f}, "
          f"share with IoU ≥ 0.8: {loc['share_iou_ge_0.8']:.2f}.", "",
          "A proxy re-synthesis mixed under the real track (stand-in for one re-synthesised "
          "stem), share of 10 s segments labelled ai:", "",
          "| level | labelled ai |", "|---|---|"]
    for r in result["mixed_under_real"]:
        L.append(f"| {r['level_db']:+.0f} dB | {r['ai_label_rate_10s']:.2f} |")
    if result.get("stem"):
        L += ["", "One stem re-synthesised: the guitar stem of the corpus songs that have stems, "
              "through each trained proxy, mixed with the real backing track (60 s, 10 s "
              "segments):", "",
              "| guitar stem level vs backing | labelled ai | flagged (p ≥ 0.5) |",
              "|---|---|---|"]
        for r in result["stem"]:
            lvl = "real guitar (no AI)" if r["level_db"] is None else f"{r['level_db']:+.0f} dB"
            L.append(f"| {lvl} | {r['ai_label_rate_10s']:.2f} | {r['flagged_rate_10s']:.2f} |")
    L += ["", "## Calibration and speed", "",
          f"ECE (5 s, test side, 10 bins): {result['ece_5s']:.3f}. Scoring speed: "
          f"{result['speed']['score_x_realtime_per_core']:.0f}× realtime on one core "
          f"(decoded audio; {result['speed']['audio_s'] / 3600:.1f} h scored).", ""]
    (out / "report.md").write_text("\n".join(L))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plot extra
        return
    fig, ax = plt.subplots(figsize=(9, 5))
    cal = ResidueCalibration(**result["calibration"])
    bins = list(np.linspace(-15, 25, 80))
    ax.hist(_z(cal, real5), bins=bins, density=True, alpha=0.5,
            label="real music (test side)", color="k")
    for name, rec in ai.items():
        if rec["trained"]:
            ax.hist(_z(cal, rec["test"]["5000"]), bins=bins, density=True, histtype="step",
                    label=f"proxy {name}")
    ax.axvline(result["threshold_logit_1pct"], color="r", ls="--", label="1 % FP threshold")
    ax.axvline(np.log(AI_THRESHOLD / (1 - AI_THRESHOLD)), color="m", ls=":",
               label="label ai (p ≥ 0.9)")
    ax.set_xlabel("calibrated logit, 5 s segments")
    ax.set_ylabel("density")
    ax.set_title("Residue detector on real music vs PROXY generators (not commercial ones)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=110)
    plt.close(fig)
