# SPDX-License-Identifier: Apache-2.0
"""Property tests of the test-signal generators."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark.audio.generators import (
    SYNTH_PEAK,
    chirp,
    clicks,
    pink_noise,
    synth_music,
    synth_speech_like,
    tone,
    white_noise,
)

SR = 8000


def peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spec) * sr / y.size)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


# ----------------------------------------------------------------------------- tone / chirp


@settings(max_examples=25, deadline=None)
@given(
    sr=st.sampled_from([8000, 16000, 22050]),
    frac=st.floats(0.01, 0.45),
    duration=st.floats(0.25, 2.0),
    amplitude=st.floats(0.01, 1.0),
)
def test_tone_frequency_length_amplitude(sr: int, frac: float, duration: float, amplitude: float):
    freq = frac * sr
    y = tone(freq, sr=sr, duration=duration, amplitude=amplitude)
    assert y.dtype == np.float32
    assert y.shape == (round(duration * sr),)
    assert abs(peak_hz(y, sr) - freq) <= 1.5 * sr / y.size
    assert np.max(np.abs(y)) <= amplitude * (1 + 1e-6)
    assert rms(y) == pytest.approx(amplitude / np.sqrt(2), rel=0.05)


def test_tone_phase():
    y = tone(100.0, sr=SR, duration=0.1, phase=np.pi / 2, amplitude=1.0)
    assert y[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"freq": 0.0, "sr": SR, "duration": 1.0},
        {"freq": 4000.0, "sr": SR, "duration": 1.0},
        {"freq": 440.0, "sr": SR, "duration": 0.0},
        {"freq": 440.0, "sr": SR, "duration": float("nan")},
        {"freq": 440.0, "sr": 8000.5, "duration": 1.0},
        {"freq": 440.0, "sr": -8000, "duration": 1.0},
    ],
)
def test_tone_rejects_bad_parameters(kwargs):
    freq = kwargs.pop("freq")
    with pytest.raises(ValueError):
        tone(freq, **kwargs)


@pytest.mark.parametrize("log", [True, False])
def test_chirp_sweeps_between_bounds(log: bool):
    fmin, fmax, dur = 200.0, 3200.0, 2.0
    y = chirp(fmin, fmax, sr=SR, duration=dur, log=log)
    assert y.dtype == np.float32 and y.size == round(dur * SR)
    w = 400  # 50 ms windows
    assert peak_hz(y[:w], SR) == pytest.approx(fmin, abs=60)
    assert peak_hz(y[-w:], SR) == pytest.approx(fmax, abs=120)
    mid = y.size // 2
    expected_mid = np.sqrt(fmin * fmax) if log else (fmin + fmax) / 2
    assert peak_hz(y[mid - w // 2 : mid + w // 2], SR) == pytest.approx(expected_mid, rel=0.08)


def test_chirp_downwards_and_validation():
    y = chirp(3000.0, 300.0, sr=SR, duration=1.0)
    assert peak_hz(y[:400], SR) > peak_hz(y[-400:], SR)
    with pytest.raises(ValueError, match="fmax"):
        chirp(100.0, 5000.0, sr=SR, duration=1.0)


# ----------------------------------------------------------------------------- noise


def test_white_noise_unit_rms_flat_and_seeded():
    y = white_noise(sr=SR, duration=4.0, rng=np.random.default_rng(1))
    assert y.dtype == np.float32 and y.size == 4 * SR
    assert rms(y) == pytest.approx(1.0, rel=1e-4)
    f, p = scipy.signal.welch(y, fs=SR, nperseg=512)
    assert np.mean(p[(f > 100) & (f < 1000)]) == pytest.approx(
        np.mean(p[(f > 2500) & (f < 3500)]), rel=0.2
    )
    again = white_noise(sr=SR, duration=4.0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(y, again)


def test_pink_noise_has_one_over_f_spectrum():
    y = pink_noise(sr=16000, duration=8.0, rng=np.random.default_rng(2))
    assert y.dtype == np.float32 and y.size == 8 * 16000
    assert rms(y) == pytest.approx(1.0, rel=1e-4)
    f, p = scipy.signal.welch(y, fs=16000, nperseg=4096)
    band = (f > 50) & (f < 6000)
    slope = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
    assert -1.15 < slope < -0.85


# ----------------------------------------------------------------------------- clicks


def test_clicks_placed_at_times():
    times = [0.25, 1.0, 1.5, 9.0]  # the last is past the end and dropped
    y = clicks(times, sr=SR, duration=2.0, click_freq=1000.0, click_duration=0.05)
    assert y.dtype == np.float32 and y.size == 2 * SR
    active = np.flatnonzero(np.abs(y) > 1e-6)
    onsets = active[np.r_[True, np.diff(active) > 200]]
    assert np.allclose(onsets / SR, times[:3], atol=0.002)
    assert peak_hz(y[round(0.25 * SR) : round(0.30 * SR)], SR) == pytest.approx(1000, abs=100)
    assert np.all(y[round(0.3 * SR) : round(0.99 * SR)] == 0)


def test_clicks_validation():
    with pytest.raises(ValueError):
        clicks([-1.0], sr=SR, duration=1.0)
    with pytest.raises(ValueError):
        clicks([0.1], sr=SR, duration=1.0, click_duration=0.0)


# ----------------------------------------------------------------------------- synth_music


def test_synth_music_deterministic_per_seed():
    a = synth_music(sr=SR, duration=5.0, rng=np.random.default_rng(11))
    b = synth_music(sr=SR, duration=5.0, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (5 * SR,)
    assert np.all(np.isfinite(a))
    assert np.max(np.abs(a)) == pytest.approx(SYNTH_PEAK, rel=1e-5)


def _peak_map(y: np.ndarray) -> np.ndarray:
    """Local maxima of the magnitude spectrogram: what a landmark fingerprint locks onto."""
    _, _, s = scipy.signal.stft(y, fs=SR, nperseg=512)
    m = np.abs(s)
    return (m == scipy.ndimage.maximum_filter(m, size=(15, 9))) & (m > 1e-3 * m.max())


def test_synth_music_differs_across_seeds():
    pieces = [synth_music(sr=SR, duration=6.0, rng=np.random.default_rng(s)) for s in range(4)]
    maps = [_peak_map(p) for p in pieces]
    shifted = _peak_map(np.r_[0.0, pieces[0][:-1]])
    assert (maps[0] & shifted).sum() / maps[0].sum() > 0.9  # the measure sees sameness
    for i in range(4):
        assert maps[i].sum() > 50
        for j in range(i + 1, 4):
            assert abs(np.corrcoef(pieces[i], pieces[j])[0, 1]) < 0.2
            assert (maps[i] & maps[j]).sum() / (maps[i] | maps[j]).sum() < 0.1


@pytest.mark.parametrize("bpm", [90.0, 140.0])
def test_synth_music_follows_beat_grid(bpm: float):
    y = synth_music(sr=SR, duration=10.0, rng=np.random.default_rng(3), tempo_bpm=bpm)
    hop = 80
    _, _, s = scipy.signal.stft(y, fs=SR, nperseg=256, noverlap=256 - hop)
    flux = np.maximum(0.0, np.diff(np.log1p(100 * np.abs(s)), axis=1)).sum(axis=0)
    flux -= flux.mean()
    ac = np.correlate(flux, flux, "full")[flux.size - 1 :] / np.dot(flux, flux)
    beat = round(60.0 / bpm * SR / hop)
    assert ac[beat] > 0.5
    assert ac[beat + round(0.4 * beat)] < 0.2  # off the grid


def test_synth_music_spectrum_in_musical_range():
    y = synth_music(sr=16000, duration=6.0, rng=np.random.default_rng(5))
    power = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(y.size, 1 / 16000)
    assert power[(f > 100) & (f < 2500)].sum() / power.sum() > 0.6
    assert power[f < 80].sum() / power.sum() < 0.2


def test_synth_music_is_fast():
    synth_music(sr=SR, duration=10.0, rng=np.random.default_rng(0))  # warm-up
    times = []
    for seed in range(3):
        t0 = time.perf_counter()
        synth_music(sr=SR, duration=10.0, rng=np.random.default_rng(seed))
        times.append(time.perf_counter() - t0)
    assert min(times) < 0.05  # 10 s at 8 kHz


def test_synth_music_short_and_validation():
    y = synth_music(sr=SR, duration=0.1, rng=np.random.default_rng(0))
    assert y.shape == (800,) and np.all(np.isfinite(y))
    with pytest.raises(ValueError, match="tempo"):
        synth_music(sr=SR, duration=1.0, rng=np.random.default_rng(0), tempo_bpm=1000)
    with pytest.raises(ValueError):
        synth_music(sr=2000, duration=1.0, rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------- speech-like


def test_speech_like_syllable_rate_and_pitch():
    y = synth_speech_like(sr=SR, duration=10.0, rng=np.random.default_rng(4))
    assert y.dtype == np.float32 and y.shape == (10 * SR,)
    np.testing.assert_array_equal(
        y, synth_speech_like(sr=SR, duration=10.0, rng=np.random.default_rng(4))
    )
    # syllable-rate amplitude modulation: envelope spectrum peaks at 2.5–6 Hz
    env = scipy.signal.resample_poly(np.abs(scipy.signal.hilbert(y)), 1, 80)
    env -= env.mean()
    spec = np.abs(np.fft.rfft(env * np.hanning(env.size)))
    f = np.fft.rfftfreq(env.size, 80 / SR)
    band = (f > 0.5) & (f < 20)
    assert 2.5 <= f[band][np.argmax(spec[band])] <= 6.0
    # voiced frames have a pitch within 85–260 Hz
    f0s = []
    for i in range(0, y.size - 400, 400):
        frame = y[i : i + 400]
        if rms(frame) < 0.1:
            continue
        ac = np.correlate(frame, frame, "full")[399:]
        lo, hi = SR // 260, SR // 85
        f0s.append(SR / (lo + np.argmax(ac[lo:hi])))
    assert len(f0s) > 20
    assert 85 <= np.median(f0s) <= 260


def test_speech_like_babble_and_validation():
    one = synth_speech_like(sr=SR, duration=3.0, rng=np.random.default_rng(0))
    crowd = synth_speech_like(sr=SR, duration=3.0, rng=np.random.default_rng(0), talkers=6)

    # babble fills the pauses: far fewer near-silent 50 ms frames than a single talker
    def quiet(y: np.ndarray) -> float:
        frames = y[: y.size // 400 * 400].reshape(-1, 400)
        return float(np.mean(np.sqrt(np.mean(frames**2, axis=1)) < 0.02))

    assert quiet(crowd) < quiet(one)
    with pytest.raises(ValueError):
        synth_speech_like(sr=SR, duration=1.0, rng=np.random.default_rng(0), talkers=0)
    with pytest.raises(ValueError):
        synth_speech_like(sr=4000, duration=1.0, rng=np.random.default_rng(0))
