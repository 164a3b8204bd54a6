# SPDX-License-Identifier: Apache-2.0
"""The benchmark's own logic: the split, the interval, the reliability table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from earmark.bench.identify import split_manifest
from earmark.bench.report import reliability, wilson


def _manifest(tmp_path: Path, ids: list[str]) -> Path:
    with open(tmp_path / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "package", "duration_s", "sha256", "license"])
        for i in ids:
            w.writerow([i, f"tracks/{i}.ogg", i.split("__")[0], "60", "0", "x"])
    return tmp_path


def test_split_is_seeded_80_20_and_keeps_stems_together(tmp_path: Path) -> None:
    ids = [f"pkg__music__t{i:02d}" for i in range(40)]
    ids += [f"fof__Song{i}__{s}" for i in range(5) for s in ("song", "guitar", "rhythm")]
    corpus = _manifest(tmp_path, ids)
    for seed in range(6):
        cat, non = split_manifest(corpus, seed, None)
        assert len(cat) + len(non) == len(ids)
        assert {r["id"] for r in cat}.isdisjoint({r["id"] for r in non})
        assert 0.75 <= len(cat) / len(ids) <= 0.85
        for song in range(5):
            sides = {any(r["id"].startswith(f"fof__Song{song}__") for r in part)
                     for part in (cat, non)}
            assert sides == {True, False}  # all stems of a song on exactly one side
    a = split_manifest(corpus, 3, None)
    b = split_manifest(corpus, 3, None)
    assert [r["id"] for r in a[0]] == [r["id"] for r in b[0]]


def test_wilson_interval_contains_the_proportion() -> None:
    for k, n in [(0, 10), (5, 10), (10, 10), (97, 100)]:
        lo, hi = wilson(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert wilson(97, 100)[0] > wilson(9, 10)[0] - 0.2  # narrower with more queries


def test_reliability_of_a_perfectly_calibrated_set_is_near_zero() -> None:
    rows = []
    for conf, right, n in [(0.95, 19, 20), (0.55, 11, 20)]:
        for i in range(n):
            rows.append({"matcher": "earmark", "status": "match", "correct": i < right,
                         "extra": {"confidence": conf}})
    err, table = reliability(rows)
    assert err < 0.01
    assert [t["n"] for t in table] == [20, 20]


def test_shared_material_needs_one_transform_over_several_segments() -> None:
    """A held-out track that matches a reference in several separate segments under one
    transform (a re-arranged version) is left out of the non-catalog side; scattered
    transforms, too few segments or too little time are not."""
    from earmark.bench.identify import _shares_material

    def seg(q0: float, q1: float, tempo: float, pitch: float = 0.0) -> dict[str, float]:
        return {"query_start_ms": q0 * 1000, "query_end_ms": q1 * 1000,
                "tempo_ratio": tempo, "pitch_semitones": pitch}

    version = [seg(0, 11, 0.8848), seg(21, 41, 0.8847), seg(31, 36, 0.8848),
               seg(52, 57, 0.8847)]
    assert _shares_material(version)
    assert not _shares_material(version[:2])  # two segments
    assert not _shares_material([seg(0, 4, 0.8848), seg(10, 14, 0.8848),
                                 seg(20, 24, 0.8848)])  # 12 s
    assert not _shares_material([seg(0, 11, 0.88), seg(21, 41, 0.95), seg(52, 60, 1.1)])
    # overlapping spans count once: 2-21 s, 5-15 s and 20-20.5 s cover 19 s, not 29.5
    assert not _shares_material([seg(2, 21, 1.0), seg(5, 15, 1.0), seg(20, 20.5, 1.0)])
    assert _shares_material([seg(2, 21, 1.0), seg(5, 15, 1.0), seg(20, 23, 1.0)])


def test_demo_stream_is_the_non_catalog_recording_with_two_splices(tmp_path: Path) -> None:
    """The monitor demo's stream: 90 s of the non-catalog recording, one catalog excerpt at
    0:20 and one (sped up) at 0:55 — not a catalog reference with splices (a walrus in a
    generator once rebound the stream buffer to the last reference decoded)."""
    import numpy as np

    from conftest import write_audio
    from earmark.audio.decode import decode
    from earmark.demo import make_stream

    sr = 44100

    def tone(freq: float, seconds: float) -> np.ndarray:
        t = np.arange(int(seconds * sr)) / sr
        return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    non = [{"id": "outside", "path": "outside.flac"}]
    write_audio(tmp_path / "outside.flac", tone(220.0, 100.0), sr)
    cat = []
    for i, f in enumerate((440.0, 660.0, 880.0, 990.0, 1100.0, 1320.0, 1540.0, 1760.0)):
        cat.append({"id": f"ref{i}", "path": f"ref{i}.flac"})
        write_audio(tmp_path / f"ref{i}.flac", tone(f, 70.0), sr)
    (tmp_path / "out").mkdir()
    path, truth = make_stream(tmp_path, cat, non, tmp_path / "out", 0)
    y = decode(path, sr)
    assert abs(y.size / sr - 90.0) < 0.1
    assert [t["at_ms"] for t in truth] == [20000, 55000]

    def peak_hz(seg: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
        return float(np.argmax(spec) * sr / seg.size)

    assert abs(peak_hz(y[5 * sr: 15 * sr]) - 220.0) < 2  # the non-catalog recording
    assert abs(peak_hz(y[40 * sr: 50 * sr]) - 220.0) < 2
    assert abs(peak_hz(y[80 * sr: 88 * sr]) - 220.0) < 2
    assert abs(peak_hz(y[22 * sr: 32 * sr]) - 220.0) > 50  # the first splice


def test_demo_counts_a_catalog_duplicate_of_the_same_passage_as_right() -> None:
    from earmark.cli.demo import _same_passage

    def m(ref: str, q0: int, q1: int, tempo: float, pitch: float) -> dict:
        return {"reference_id": ref, "segments": [{"query_start_ms": q0, "query_end_ms": q1,
                                                   "tempo_ratio": tempo,
                                                   "pitch_semitones": pitch}]}

    truth = m("track1", 357, 7762, 0.7984, -3.85)
    assert _same_passage([truth, m("track30", 842, 7237, 0.799, -3.84)], ["track1"]) == {
        "track30"}
    assert not _same_passage([truth, m("other", 842, 7237, 1.0, 0.0)], ["track1"])
    assert not _same_passage([truth, m("later", 8000, 9000, 0.7984, -3.85)], ["track1"])


def test_a_live_report_names_the_commit_of_the_code_that_ran(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit comes from the tree the ``earmark`` package was imported from, whatever
    the current directory (a side-by-side run imports another tree via PYTHONPATH)."""
    import subprocess

    import earmark
    from earmark.bench.live import _commit

    src = Path(earmark.__file__).parent
    try:
        want = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    monkeypatch.chdir(tmp_path)
    assert _commit() == want
