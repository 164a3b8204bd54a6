# SPDX-License-Identifier: Apache-2.0
"""Property tests of the edit effects, run through the real FFmpeg (PyAV and the CLI)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark.audio import effects
from earmark.audio.effects import (
    EFFECTS,
    Engine,
    add_noise,
    chain,
    codec,
    crop,
    eq,
    gain,
    mix_over,
    phone_band,
    pitch_shift,
    reverb,
    speed,
    time_stretch,
)
from earmark.audio.generators import clicks, synth_music, synth_speech_like, tone

SR = 8000
HAS_RUBBERBAND = effects._cli_has_filter("rubberband")
ENGINES = [
    "atempo",
    pytest.param(
        "rubberband",
        marks=pytest.mark.skipif(not HAS_RUBBERBAND, reason="ffmpeg CLI without rubberband"),
    ),
]


def peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spec) * sr / y.size)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def db(ratio: float) -> float:
    return float(20 * np.log10(ratio))


def xcorr_lag_s(a: np.ndarray, b: np.ndarray, sr: int) -> float:
    """Lag of ``a`` behind ``b`` in seconds, by full cross-correlation."""
    c = scipy.signal.correlate(a, b, mode="full", method="fft")
    return (int(np.argmax(c)) - (b.size - 1)) / sr


@pytest.fixture(scope="module")
def a440() -> np.ndarray:
    return tone(440.0, sr=SR, duration=2.0)


@pytest.fixture(scope="module")
def music16k() -> np.ndarray:
    return synth_music(sr=16000, duration=3.0, rng=np.random.default_rng(1))


# ----------------------------------------------------------------------------- speed, pitch, tempo


def test_speed_nightcore_tone(a440):
    y = speed(a440, SR, 1.25)
    assert y.dtype == np.float32
    assert y.size == round(a440.size / 1.25)
    assert peak_hz(y, SR) == pytest.approx(550.0, abs=1.0)


@settings(max_examples=20, deadline=None)
@given(ratio=st.floats(0.5, 2.0))
def test_speed_scales_frequency_and_length_exactly(ratio: float):
    x = tone(300.0, sr=SR, duration=1.0)
    y = speed(x, SR, ratio)
    assert y.size == round(x.size / ratio)
    assert abs(peak_hz(y, SR) - 300.0 * ratio) <= 1.5 * SR / y.size
    # same events, compressed in time: click onsets move to t / ratio
    c = clicks([0.3], sr=SR, duration=1.0)
    onset = np.argmax(np.abs(speed(c, SR, ratio)) > 0.05) / SR
    assert onset == pytest.approx(0.3 / ratio, abs=0.002)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("semitones", [12.0, -5.0, 3.0])
def test_pitch_shift_moves_pitch_keeps_length(a440, engine: Engine, semitones: float):
    y = pitch_shift(a440, SR, semitones, engine=engine)
    assert y.dtype == np.float32 and y.size == a440.size
    assert peak_hz(y, SR) == pytest.approx(440.0 * 2 ** (semitones / 12), rel=0.02)
    # the signal lasts as long as the input: energy in the last quarter is kept
    assert rms(y[-a440.size // 4 : -400]) > 0.5 * rms(a440)


def tone_bursts(times: list[float], *, duration: float, length: float = 0.15) -> np.ndarray:
    """600 Hz tone bursts of ``length`` seconds starting at ``times`` (note-like events)."""
    t = np.arange(round(duration * SR)) / SR
    on = np.zeros(t.size, dtype=bool)
    for start in times:
        on |= (t >= start) & (t < start + length)
    return (0.5 * np.sin(2 * np.pi * 600.0 * t) * on).astype(np.float32)


def burst_starts(y: np.ndarray, sr: int, gap_s: float = 0.2) -> np.ndarray:
    """Start times (s) of loud regions in ``y``, at 5 ms resolution."""
    hop = sr // 200
    env = scipy.signal.resample_poly(np.abs(y), 1, hop)
    loud = np.flatnonzero(env > 0.3 * env.max()) * hop / sr
    return loud[np.r_[True, np.diff(loud) > gap_s]]


@pytest.mark.parametrize("engine", ENGINES)
def test_pitch_shift_keeps_timing(engine: Engine):
    y = pitch_shift(tone_bursts([0.5, 1.0, 1.5], duration=2.0), SR, 4.0, engine=engine)
    # bursts stay at the original times (a speed change would move them to t / 1.26)
    np.testing.assert_allclose(burst_starts(y, SR), [0.5, 1.0, 1.5], atol=0.04)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ratio", [1.5, 0.8, 0.3, 3.0])
def test_time_stretch_length_and_pitch(a440, engine: Engine, ratio: float):
    y = time_stretch(a440, SR, ratio, engine=engine)
    assert y.dtype == np.float32
    assert y.size == round(a440.size / ratio)
    assert peak_hz(y, SR) == pytest.approx(440.0, rel=0.01)


@pytest.mark.parametrize("engine", ENGINES)
def test_time_stretch_changes_tempo(engine: Engine):
    # (atempo can all but drop a 40 ms click at 2x: its WSOLA skips whole segments)
    y = time_stretch(tone_bursts([0.5, 1.5, 2.5, 3.5], duration=4.0), SR, 2.0, engine=engine)
    np.testing.assert_allclose(burst_starts(y, SR), [0.25, 0.75, 1.25, 1.75], atol=0.04)


# ----------------------------------------------------------------------------- level and mixing


@settings(max_examples=20, deadline=None)
@given(
    snr_db=st.floats(-10.0, 40.0), kind=st.sampled_from(["pink", "white"]), seed=st.integers(0, 9)
)
def test_add_noise_hits_requested_snr(snr_db: float, kind: Literal["pink", "white"], seed: int):
    x = tone(500.0, sr=SR, duration=1.0, amplitude=0.3)
    y = add_noise(x, SR, snr_db, rng=np.random.default_rng(seed), kind=kind)
    assert y.dtype == np.float32 and y.size == x.size
    noise = y.astype(np.float64) - x
    assert db(rms(x) / rms(noise)) == pytest.approx(snr_db, abs=0.5)


def test_add_noise_kinds_and_seed():
    x = tone(500.0, sr=16000, duration=2.0)
    pink = add_noise(x, 16000, 0.0, rng=3, kind="pink") - x
    white = add_noise(x, 16000, 0.0, rng=3, kind="white") - x
    f, pp = scipy.signal.welch(pink, fs=16000, nperseg=1024)
    _, pw = scipy.signal.welch(white, fs=16000, nperseg=1024)
    lo, hi = (f > 50) & (f < 200), (f > 4000) & (f < 7000)
    assert pp[lo].mean() / pp[hi].mean() > 10  # pink tilts down
    assert pw[lo].mean() / pw[hi].mean() == pytest.approx(1.0, rel=0.3)
    np.testing.assert_array_equal(pink, add_noise(x, 16000, 0.0, rng=3, kind="pink") - x)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0])
def test_mix_over_sign_convention(snr_db: float):
    music = synth_music(sr=SR, duration=3.0, rng=np.random.default_rng(0))
    speech = synth_speech_like(sr=SR, duration=1.3, rng=np.random.default_rng(1))
    y = mix_over(music, speech, snr_db)
    assert y.size == music.size and y.dtype == np.float32
    added = y.astype(np.float64) - music
    # snr_db = level of the music above the speech: -5 means speech 5 dB louder
    assert db(rms(music) / rms(added)) == pytest.approx(snr_db, abs=0.05)
    # the shorter speech is looped
    n = speech.size
    np.testing.assert_allclose(added[:n], added[n : 2 * n], atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(level=st.floats(-60.0, 30.0))
def test_gain_is_decibels(level: float):
    x = tone(440.0, sr=SR, duration=0.1)
    y = gain(x, level)
    assert y.dtype == np.float32
    assert db(rms(y) / rms(x)) == pytest.approx(level, abs=0.01)


# ----------------------------------------------------------------------------- filters


def test_reverb_decay_matches_rt60():
    impulse = np.zeros(2 * SR, dtype=np.float32)
    impulse[0] = 1.0
    for rt60 in (0.3, 0.8):
        h = reverb(impulse, SR, rt60=rt60, wet=1.0, rng=0)
        assert h.size == impulse.size and h.dtype == np.float32
        edc = np.cumsum((h.astype(np.float64) ** 2)[::-1])[::-1]  # Schroeder decay curve
        edc_db = 10 * np.log10(edc / edc[0] + 1e-30)
        t = np.arange(h.size) / SR
        fit = (edc_db < -5) & (edc_db > -25)
        slope = np.polyfit(t[fit], edc_db[fit], 1)[0]  # dB per second
        assert -60 / slope == pytest.approx(rt60, rel=0.2)


def test_reverb_dry_is_identity_and_wet_smears(a440):
    np.testing.assert_allclose(reverb(a440, SR, wet=0.0, rng=1), a440, atol=1e-6)
    c = clicks([0.2], sr=SR, duration=1.5)
    y = reverb(c, SR, rt60=1.0, wet=0.5, rng=1)
    tail = slice(round(0.5 * SR), None)  # after the 50 ms click has ended
    assert np.all(c[tail] == 0)
    assert rms(y[tail]) > 1e-3


def test_phone_band_passes_speech_band_only():
    sr = 16000

    def through(freq: float) -> float:
        x = tone(freq, sr=sr, duration=1.0)
        y = phone_band(x, sr)
        assert y.size == x.size and y.dtype == np.float32
        mid = slice(2000, -2000)
        return db(rms(y[mid]) / rms(x[mid]))

    assert through(1000.0) == pytest.approx(0.0, abs=1.0)
    assert through(80.0) < -20
    assert through(5000.0) < -40  # above the 8 kHz trip's Nyquist
    with pytest.raises(ValueError):
        phone_band(tone(100.0, sr=4000, duration=0.5), 4000)


def test_phone_band_is_time_aligned(music16k):
    y = phone_band(music16k, 16000)
    assert abs(xcorr_lag_s(y, music16k, 16000)) <= 0.001


def test_eq_shelves():
    sr = 16000

    def response(freq: float, **kw: float) -> float:
        x = tone(freq, sr=sr, duration=1.0)
        return db(rms(eq(x, sr, **kw)[4000:]) / rms(x[4000:]))

    assert response(50.0, low_gain_db=6.0) == pytest.approx(6.0, abs=0.5)
    assert response(6000.0, low_gain_db=6.0) == pytest.approx(0.0, abs=0.3)
    assert response(7000.0, high_gain_db=-6.0) == pytest.approx(-6.0, abs=0.5)
    assert response(100.0, high_gain_db=-6.0) == pytest.approx(0.0, abs=0.3)
    x = tone(300.0, sr=sr, duration=0.2)
    np.testing.assert_array_equal(eq(x, sr), x)


def test_crop(a440):
    y = crop(a440, SR, 0.5, 0.25)
    np.testing.assert_array_equal(y, a440[4000:6000])
    assert crop(a440, SR, 1.5, 10.0).size == 4000  # cut short at the end
    assert crop(a440, SR, 1.0).size == 8000
    with pytest.raises(ValueError):
        crop(a440, SR, 2.0, 1.0)


# ----------------------------------------------------------------------------- codecs


@pytest.mark.parametrize("name", ["mp3", "opus", "aac", "vorbis"])
def test_codec_round_trip_is_aligned(music16k, name: str):
    y = codec(music16k, 16000, name, 32)
    assert y.dtype == np.float32 and y.size == music16k.size
    assert abs(xcorr_lag_s(y, music16k, 16000)) <= 0.002
    err = y.astype(np.float64) - music16k
    snr = db(rms(music16k) / rms(err))
    assert 8.0 < snr < 60.0  # the same music, audibly coded


def test_codec_aligned_at_44k_and_lower_bitrate_is_worse():
    sr = 44100
    x = synth_music(sr=sr, duration=2.0, rng=np.random.default_rng(2))
    lo, hi = codec(x, sr, "mp3", 24), codec(x, sr, "mp3", 128)
    assert abs(xcorr_lag_s(lo, x, sr)) <= 0.002
    assert rms(hi - x) < rms(lo - x)


def test_codec_resamples_unsupported_rates():
    x = synth_music(sr=10000, duration=1.0, rng=np.random.default_rng(3))
    y = codec(x, 10000, "aac", 48)
    assert y.size == x.size and abs(xcorr_lag_s(y, x, 10000)) <= 0.002


# ----------------------------------------------------------------------------- chain and registry


def test_chain_equals_steps_by_hand():
    x = synth_music(sr=16000, duration=2.0, rng=np.random.default_rng(7))
    speech = synth_speech_like(sr=16000, duration=1.0, rng=np.random.default_rng(8))
    steps: list[tuple[str, dict[str, Any]]] = [
        ("speed", {"ratio": 1.1}),
        ("eq", {"low_gain_db": 3.0, "high_gain_db": -3.0}),
        ("mix_over", {"other": speech, "snr_db": 5.0}),
        ("add_noise", {"snr_db": 20.0, "rng": 5}),
        ("reverb", {"rt60": 0.4, "wet": 0.3, "rng": 6}),
        ("gain", {"db": -3.0}),
        ("codec", {"codec": "mp3", "bitrate_kbps": 64}),
        ("crop", {"start_s": 0.2, "duration_s": 1.0}),
    ]
    y = chain(x, 16000, steps)
    z = speed(x, 16000, 1.1)
    z = eq(z, 16000, low_gain_db=3.0, high_gain_db=-3.0)
    z = mix_over(z, speech, 5.0)
    z = add_noise(z, 16000, 20.0, rng=np.random.default_rng(5))
    z = reverb(z, 16000, rt60=0.4, wet=0.3, rng=np.random.default_rng(6))
    z = gain(z, -3.0)
    z = codec(z, 16000, "mp3", 64)
    z = crop(z, 16000, 0.2, 1.0)
    np.testing.assert_array_equal(y, z)
    assert y.size == 16000


def test_chain_rejects_unknown_and_malformed_steps(a440):
    with pytest.raises(ValueError, match="unknown effect"):
        chain(a440, SR, [("flange", {})])
    with pytest.raises(ValueError, match="pair"):
        chain(a440, SR, [("gain",)])  # type: ignore[list-item]
    assert chain(a440, SR, []).tolist() == a440.tolist()


def test_registry_names_every_effect():
    assert set(EFFECTS) == {
        "speed",
        "pitch_shift",
        "time_stretch",
        "add_noise",
        "mix_over",
        "reverb",
        "phone_band",
        "eq",
        "gain",
        "codec",
        "crop",
    }


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("speed", {"ratio": 0.0}),
        ("speed", {"ratio": 5.0}),
        ("pitch_shift", {"semitones": 30.0}),
        ("pitch_shift", {"semitones": 2.0, "engine": "sox"}),
        ("time_stretch", {"ratio": -1.0}),
        ("time_stretch", {"ratio": float("nan")}),
        ("add_noise", {"snr_db": 10.0, "rng": 0, "kind": "brown"}),
        ("add_noise", {"snr_db": 500.0, "rng": 0}),
        ("add_noise", {"snr_db": 10.0, "rng": "seed"}),
        ("mix_over", {"other": np.zeros(10, dtype=np.float32), "snr_db": 0.0}),
        ("reverb", {"rt60": 0.0, "rng": 0}),
        ("reverb", {"wet": 1.5, "rng": 0}),
        ("eq", {"low_gain_db": 40.0}),
        ("eq", {"high_gain_db": 3.0, "high_freq": 5000.0}),
        ("gain", {"db": float("inf")}),
        ("codec", {"codec": "flac", "bitrate_kbps": 32}),
        ("codec", {"codec": "mp3", "bitrate_kbps": 1000}),
        ("crop", {"start_s": -1.0, "duration_s": 1.0}),
        ("crop", {"start_s": 0.0, "duration_s": 0.0}),
    ],
)
def test_effects_reject_bad_parameters(a440, name: str, params: dict[str, Any]):
    with pytest.raises(ValueError):
        EFFECTS[name](a440, SR, **params)


@pytest.mark.parametrize("name", ["speed", "gain", "add_noise", "phone_band", "reverb"])
def test_effects_reject_bad_audio(name: str):
    params: dict[str, dict[str, Any]] = {"speed": {"ratio": 1.1}, "gain": {"db": 1.0}}
    params |= {"add_noise": {"snr_db": 0, "rng": 0}}
    params |= {"phone_band": {}, "reverb": {"rng": 0}}
    with pytest.raises(ValueError):
        EFFECTS[name](np.zeros((2, 100), dtype=np.float32), SR, **params[name])
    with pytest.raises(ValueError):
        EFFECTS[name](np.zeros(0, dtype=np.float32), SR, **params[name])
