# SPDX-License-Identifier: Apache-2.0
"""Integration on real music: the small dev corpus (``scripts/fetch-corpus --small``).

Skipped when ``$EARMARK_CORPUS`` holds no corpus. Builds a catalog of real tracks through the
CLI, cuts edited excerpts with real FFmpeg encoders, scans them, and checks the JSON contract,
the reference, the offsets and the speed.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from earmark.audio import effects
from earmark.audio.decode import decode
from earmark.bench.grid import speech_track

CORPUS = Path(os.environ.get("EARMARK_CORPUS", Path.home() / ".cache/earmark-corpus"))
SMALL = ("drascula-music", "fretsonfire-songs-sectoid", "pushover-data")
SR = 22050

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CORPUS / "manifest.csv").is_file(),
                       reason="no corpus: scripts/fetch-corpus --small --dest $EARMARK_CORPUS"),
]


def _earmark(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "earmark.cli.main", *args],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rows = [r for r in csv.DictReader(open(CORPUS / "manifest.csv"))
            if r["package"] in SMALL and float(r["duration_s"]) > 60]
    rng = np.random.default_rng(42)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    catalog, others = rows[:14], rows[14:18]
    tmp = tmp_path_factory.mktemp("corpus")
    manifest = tmp / "catalog.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "title", "artist", "owner", "isrc"])
        for r in catalog:
            w.writerow([r["id"], str(CORPUS / r["path"]), r["id"].split("__")[-1], "", r["package"],
                        ""])
    db = tmp / "db"
    res = _earmark("catalog", "add", "--db", str(db), "--manifest", str(manifest), "--jobs", "2")
    assert res.returncode == 0, res.stderr
    return {"db": db, "catalog": catalog, "others": others, "tmp": tmp, "rng": rng}


def _write(path: Path, y: np.ndarray) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(SR), "-ac", "1",
                    "-i", "-", "-b:a", "64k", str(path)],
                   input=np.asarray(y, np.float32).tobytes(), check=True)
    return path


def test_catalog_stats(setup: dict) -> None:
    res = _earmark("catalog", "stats", "--db", str(setup["db"]), "--json")
    st = json.loads(res.stdout)
    assert st["references"] == 14
    assert st["audio_seconds"] > 14 * 60
    assert 0 < st["index_bytes"] / 1e6 / (st["audio_seconds"] / 3600) < 2.0  # MB per hour


def test_edited_excerpts_of_real_music_are_found(setup: dict) -> None:
    rng = setup["rng"]
    tmp: Path = setup["tmp"]
    truth = {}
    edits = {
        "nightcore.mp3": (1.25, lambda y: effects.speed(y, SR, 1.25)),
        "slowed.ogg": (0.8, lambda y: effects.speed(y, SR, 0.8)),
        "pitch.m4a": (1.0, lambda y: effects.pitch_shift(y, SR, 3.0, engine="rubberband")),
        "clean.opus": (1.0, lambda y: y),
        "noisy.mp3": (1.0, lambda y: effects.add_noise(y, SR, 10.0, rng=rng)),
    }
    files = []
    for i, (name, (tempo, fx)) in enumerate(edits.items()):
        r = setup["catalog"][i % len(setup["catalog"])]
        y = decode(CORPUS / r["path"], SR)
        start = float(rng.uniform(10, y.size / SR - 20))
        seg = y[int(start * SR): int((start + 7 * tempo + 1) * SR)]
        out = fx(seg)[: 7 * SR]
        files.append(str(_write(tmp / name, out)))
        truth[name] = (r["id"], start, tempo)
    res = _earmark("scan", "--db", str(setup["db"]), "--json", *files)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == len(files)
    for out in lines:
        rid, start, tempo = truth[Path(out["input"]).name]
        assert out["status"] == "match", out
        m = out["matches"][0]
        assert m["reference_id"] == rid
        s = m["segments"][0]
        ref_at_q0 = s["ref_start_ms"] - s["query_start_ms"] * s["tempo_ratio"]
        assert abs(ref_at_q0 - start * 1000) < 150, out
        assert abs(s["tempo_ratio"] - tempo) / tempo < 0.02
        assert 0 < m["confidence"] <= 1


def test_talk_over_real_music_is_found_through_the_speech_mask(setup: dict) -> None:
    """A presenter (espeak-ng) talking over a catalog track as loud as it: the speech mask
    gates, and its hashes lift the right reference's alignment above the plain fingerprint's
    and above every other reference's. (The confidence model decides whether it is reported;
    docs/benchmarks.md measures that.)"""
    from earmark.identify.fingerprinter import TripletFingerprinter
    from earmark.service.catalog import open_catalog

    r = setup["catalog"][5]
    y = decode(CORPUS / r["path"], 8000)
    talk = speech_track(8000)[5 * 8000:]
    seg = y[60 * 8000: 67 * 8000]
    q = effects.mix_over(seg, talk[: seg.size], 0.0)
    with open_catalog(home=setup["db"]) as cat:
        key = next(k for k, ref in cat.store.by_keys(cat.index.ref_keys()).items()
                   if ref.id == r["id"])
        best = {}
        for mask in (False, True):
            ident = cat.identifier
            ident.fingerprinter = TripletFingerprinter(speech_mask=mask)
            if mask:
                assert ident.fingerprinter.speech_cells(q) is not None
            raw = ident.identify(q).raw
            mine = [a.score for a in raw if a.ref_key == key]
            others = [a.score for a in raw if a.ref_key != key]
            best[mask] = (max(mine, default=0), max(others, default=0))
    assert best[True][0] > best[False][0]
    assert best[True][0] > 2 * best[True][1], best


def test_music_outside_the_catalog_is_not_matched(setup: dict) -> None:
    files = []
    for i, r in enumerate(setup["others"]):
        y = decode(CORPUS / r["path"], SR)
        files.append(str(_write(setup["tmp"] / f"other{i}.mp3", y[20 * SR: 30 * SR])))
    res = _earmark("scan", "--db", str(setup["db"]), "--json", *files)
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["status"] for o in outs] == ["no_match"] * len(files)
    assert all(o["reason"] == "no_candidate" and o["matches"] == [] for o in outs)


def test_detect_real_music_is_rarely_ai_and_a_proxy_resynthesis_is(tmp_path: Path) -> None:
    """AI detection on real music: 12 real tracks (whole), then one re-synthesised through a
    random-weight transposed-conv decoder (a proxy, not a commercial generator)."""
    from earmark.audio.decoders import random_decoder
    from earmark.detect.residue import SR as DSR
    from earmark.detect.residue import ResidueDetector

    rows = [r for r in csv.DictReader(open(CORPUS / "manifest.csv")) if r["package"] in SMALL]
    rows = [rows[i] for i in np.random.default_rng(7).permutation(len(rows))[:12]]
    det = ResidueDetector()
    probs = []
    for r in rows:
        s = det.score(decode(CORPUS / r["path"], DSR), DSR)
        probs += list(np.nan_to_num(s.probability))
    probs_a = np.array(probs)
    assert probs_a.size > 100
    assert (probs_a >= 0.9).mean() <= 0.02, np.sort(probs_a)[-5:]
    y = decode(CORPUS / rows[0]["path"], DSR)[: 30 * DSR]
    fake = random_decoder(y, DSR, gen_sr=44100, strides=(2, 4, 8, 8), seed=0)
    f = tmp_path / "fake.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(DSR), "-ac", "1", "-i",
                    "-", "-b:a", "192k", str(f)], input=(0.5 * fake).tobytes(), check=True)
    res = _earmark("detect", "--json", str(f))
    line = json.loads(res.stdout)
    assert line["label"] == "ai", line
    assert line["family"]["name"].startswith("decoder grid")
