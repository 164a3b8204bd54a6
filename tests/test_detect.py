# SPDX-License-Identifier: Apache-2.0
"""AI-music detection: the protocol, the residue detector's properties, localisation,
calibration, the ``earmark detect`` JSON contract (generated signals, real files, real FFmpeg)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import needs_ffmpeg, write_audio
from earmark.audio.decoders import conv_transpose, random_decoder
from earmark.audio.generators import synth_music
from earmark.cli.main import app
from earmark.detect.base import (
    AI_THRESHOLD,
    Detector,
    SegmentScores,
    available,
    get_detector,
    label_of,
)
from earmark.detect.residue import (
    SR,
    ResidueCalibration,
    ResidueDetector,
    grid_family,
    in_tune,
    localise,
)
from earmark.errors import UnknownDetector

DETECT_KEYS = ["input", "status", "reason", "duration_ms", "ai_probability", "label",
               "segments", "spans", "family", "detector", "shadow"]


def song(seed: int, seconds: float = 20.0) -> np.ndarray:
    return synth_music(sr=SR, duration=seconds, rng=np.random.default_rng(seed))


@pytest.fixture(scope="module")
def det() -> ResidueDetector:
    return ResidueDetector()


# -- protocol and registry --------------------------------------------------------------------

def test_residue_is_a_registered_detector() -> None:
    d = get_detector("residue")
    assert isinstance(d, Detector)
    assert d.name == "residue" and d.version
    assert "residue" in available()
    with pytest.raises(UnknownDetector, match=r"available: .*residue"):
        get_detector("no-such-detector")


def test_labels_have_a_real_uncertain_band() -> None:
    assert label_of(None) == "uncertain"
    assert label_of(AI_THRESHOLD) == "ai"
    assert label_of(0.0) == "human"
    assert label_of(0.6) == "uncertain"
    assert label_of(0.5) == "uncertain"  # not a rounding of 0.5


def test_conv_transpose_matches_direct_definition() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7)).astype(np.float32)
    w = rng.standard_normal((3, 2, 8)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    y = conv_transpose(x, w, b, 4)
    ref = np.zeros((2, (7 + 1) * 4))
    for i in range(3):
        for t in range(7):
            for k in range(8):
                ref[:, t * 4 + k] += w[i, :, k] * x[i, t]
    np.testing.assert_allclose(y, ref + b[:, None], rtol=1e-5, atol=1e-5)


# -- properties of the residue detector ----------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_generated_music_scores_low(det: ResidueDetector, seed: int) -> None:
    s = det.score(song(seed), SR)
    assert len(s) == 4
    assert np.all(s.probability < 0.3), s.raw


@pytest.mark.parametrize(("gen_sr", "strides", "grid"), [
    (44100, (2, 4, 8, 8), 44100 / 512),
    (32000, (8, 5, 4, 4), 32000 / 640),
])
def test_transposed_conv_decoder_scores_high(det: ResidueDetector, gen_sr: int,
                                             strides: tuple[int, ...], grid: float) -> None:
    x = song(3)
    y = random_decoder(x, SR, gen_sr=gen_sr, strides=strides, seed=1)
    s = det.score(y, SR)
    clean = det.score(x, SR)
    assert np.median(s.raw) > 1.5 * np.max(clean.raw), (s.raw, clean.raw)
    assert np.median(s.probability) > 0.3 and np.max(s.probability) > 0.5  # not "human"
    if gen_sr == 44100:  # the strongest grid of the two: "ai" on 10 s segments
        assert np.all(det.score(y, SR, segment_ms=10000).probability >= AI_THRESHOLD)
    # the strongest periodicity is the grid or one of its multiples
    best = int(np.argmax(s.raw))
    k = s.grid_hz[best] / grid
    assert abs(k - round(k)) < 0.01, s.grid_hz
    assert f"{grid:.1f} Hz" in grid_family(float(s.grid_hz[best]))


@settings(max_examples=6, deadline=None)
@given(ratio=st.floats(0.85, 1.2))
def test_a_grid_moved_by_resampling_is_still_found(ratio: float) -> None:
    """Playing the samples at another rate (speed change, mislabelled rate) scales the grid;
    the detector searches for the strongest periodicity, so it follows."""
    d = ResidueDetector()
    y = random_decoder(song(4, 12.0), SR, seed=2)
    base = d.score(y, SR, segment_ms=12000)
    moved = d.score(y, round(SR * ratio), segment_ms=int(12000 / ratio))
    assert moved.raw[0] > 10.0  # the grid is still there, about as strong
    assert moved.raw[0] > 0.6 * base.raw[0]
    assert moved.grid_hz[0] == pytest.approx(base.grid_hz[0] * ratio, rel=0.01)


def test_segments_follow_segment_ms(det: ResidueDetector) -> None:
    y = song(5, 11.5)
    s = det.score(y, SR, segment_ms=2000)
    assert list(s.start_ms) == [0, 2000, 4000, 6000, 8000, 10000]
    assert s.end_ms[-1] == 11500  # a tail of 1 s or more is a segment of its own
    s = det.score(y, SR, segment_ms=5000)
    assert list(s.start_ms) == [0, 5000, 10000] and s.end_ms[-1] == 11500
    s = det.score(y[: int(10.5 * SR)], SR, segment_ms=5000)
    assert list(s.end_ms) == [5000, 10500]  # a shorter tail joins the last segment


def test_silence_and_short_input_are_never_ai(det: ResidueDetector) -> None:
    s = det.score(np.zeros(5 * SR, np.float32), SR)
    assert np.all(np.isnan(s.probability))
    s = det.score(song(6, 0.4), SR)
    assert np.all(np.isnan(s.probability))


def test_in_tune_marks_equal_tempered_pitches() -> None:
    t = in_tune(np.array([440.0, 98.0, 110.0, 174.61, 44100 / 512, 50.0, 75.0, np.nan]))
    assert np.all(t[:4] > 0.9)  # A4, G2, A2, F3: where held notes put their combs
    assert np.all(t[4:7] < 0.05)  # codec layouts: 86.13 Hz, 50 Hz, 75 Hz are off-tune
    assert t[7] == 0.0


def test_shipped_calibration_is_monotone_and_round_trips(tmp_path: Path) -> None:
    cal = ResidueCalibration.load()
    assert "bench synthetic" in cal.fitted_on  # fitted, not the hand-set default
    raw = np.array([1.0, 3.0, 6.0, 12.0, 30.0, 60.0])
    off = cal.probability(raw, np.zeros(raw.size))
    tuned = cal.probability(raw, np.ones(raw.size))
    assert np.all(np.diff(off) > 0) and off[0] < 0.05 and off[-1] > 0.9
    assert np.all(tuned[2:] < off[2:])  # a tuned comb of the same strength is less AI-like
    cal.save(tmp_path / "c.json")
    assert ResidueCalibration.load(tmp_path / "c.json") == cal


def test_localises_a_spliced_ai_span(det: ResidueDetector) -> None:
    y = song(7, 30.0)
    ai = random_decoder(y, SR, seed=3)
    a, b = 9 * SR, 21 * SR
    mix = y.copy()
    mix[a:b] = ai[a:b] * np.sqrt(np.mean(y[a:b] ** 2) / np.mean(ai[a:b] ** 2))
    s = det.score(mix, SR)
    spans = localise(mix, s)
    inter = sum(max(0, min(e, 21000) - max(s0, 9000)) for s0, e in spans)
    union = 12000 + sum(e - s0 for s0, e in spans) - inter
    assert inter / union >= 0.8, spans


def test_segment_scores_concat_and_shift() -> None:
    a = SegmentScores(np.array([0]), np.array([5000]), np.array([0.1]), np.array([2.0]))
    b = a.shifted(5000)
    c = SegmentScores.concat([a, b])
    assert list(c.start_ms) == [0, 5000] and list(c.end_ms) == [5000, 10000]
    assert len(c) == 2 and np.isnan(c.grid_hz).all()


# -- the CLI contract ------------------------------------------------------------------------

def run(*args: str | Path) -> tuple[int, list[dict], str]:
    res = CliRunner().invoke(app, ["detect", *[str(a) for a in args]], catch_exceptions=False)
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    return res.exit_code, lines, res.stderr


def check_contract(line: dict) -> None:
    assert list(line) == DETECT_KEYS
    assert line["status"] in {"ok", "error"}
    assert line["detector"]["name"] == "residue" and line["detector"]["version"]
    if line["status"] == "error":
        assert line["reason"] and line["segments"] == [] and line["label"] == "uncertain"
        return
    assert isinstance(line["duration_ms"], int)
    assert line["label"] == label_of(line["ai_probability"])
    for s in line["segments"]:
        assert set(s) == {"start_ms", "end_ms", "ai_probability"}
        assert s["ai_probability"] is None or 0.0 <= s["ai_probability"] <= 1.0
    if line["family"] is not None:
        assert set(line["family"]) == {"name", "probability"}


@needs_ffmpeg
def test_detect_json_contract_batch_goes_on(tmp_path: Path) -> None:
    y = song(8, 16.0)
    human = write_audio(tmp_path / "human song.flac", y, SR)
    ai = write_audio(tmp_path / "-ai ünïcode.flac", random_decoder(y, SR, seed=4), SR)
    silent = write_audio(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    bad = tmp_path / "corrupt.mp3"
    bad.write_bytes(b"ID3" + b"\x00" * 64 + bytes(range(256)) * 8)
    code, lines, err = run("--json", human, "--", ai, silent, bad, tmp_path / "missing.ogg")
    assert code == 0, err
    assert len(lines) == 5
    for line in lines:
        check_contract(line)
    h, a, s, b, m = lines
    assert h["label"] == "human" and h["input"] == str(human)
    assert [seg["end_ms"] for seg in h["segments"]] == [5000, 10000, 15000, 16000]
    assert a["label"] == "ai" and a["family"] is not None and a["spans"]
    assert a["family"]["name"].startswith("decoder grid")
    assert s["status"] == "ok" and s["label"] == "uncertain" and s["ai_probability"] is None
    assert b["status"] == "error" and m["status"] == "error"
    assert m["reason"].startswith("file_missing")


@needs_ffmpeg
def test_detect_table_plot_segment_ms_and_exit_codes(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    y = random_decoder(song(9, 8.0), SR, seed=5)
    f = write_audio(tmp_path / "clip.wav", y, SR)
    png = tmp_path / "plot.png"
    res = CliRunner().invoke(app, ["detect", "clip.wav", "--plot", str(png)])
    assert res.exit_code == 0, res.stderr
    assert "clip.wav" in res.stdout and " ai " in res.stdout, res.stdout
    assert "1 ai, 0 uncertain, 0 human, 0 error" in res.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, lines, _ = run("--json", "--segment-ms", "2000", f)
    assert [s["end_ms"] - s["start_ms"] for s in lines[0]["segments"]] == [2000] * 4
    code, lines, _err = run("--json", tmp_path / "nothing.wav")
    assert code == 1 and lines[0]["status"] == "error"
    res = CliRunner().invoke(app, ["detect", "--detector", "nope", str(f)])
    assert res.exit_code == 2 and "unknown_detector" in res.stderr
