# SPDX-License-Identifier: Apache-2.0
"""Deterministic test signals: tones, chirps, noise, clicks, music-like and speech-like audio.

Every generator returns a mono ``float32`` array at the requested sample rate. The random ones
take a :class:`numpy.random.Generator`, so the same seed always gives the same signal.

Examples
--------
>>> import numpy as np
>>> from earmark.audio.generators import synth_music, tone
>>> y = tone(440.0, sr=8000, duration=1.0)
>>> y.shape, y.dtype
((8000,), dtype('float32'))
>>> music = synth_music(sr=8000, duration=5.0, rng=np.random.default_rng(7))
>>> music.shape
(40000,)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.signal

__all__ = [
    "chirp",
    "clicks",
    "pink_noise",
    "synth_music",
    "synth_speech_like",
    "tone",
    "white_noise",
]

#: Peak level that :func:`synth_music` and :func:`synth_speech_like` normalise to.
SYNTH_PEAK = 0.8

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
#: (F1, F2, F3) formant frequencies in Hz of a few vowels (adult average).
_VOWELS = np.array(
    [
        [730.0, 1090.0, 2440.0],  # a
        [270.0, 2290.0, 3010.0],  # i
        [300.0, 870.0, 2240.0],  # u
        [530.0, 1840.0, 2480.0],  # e
        [570.0, 840.0, 2410.0],  # o
        [660.0, 1720.0, 2410.0],  # ae
    ]
)


def _n_samples(sr: int, duration: float) -> int:
    if not isinstance(sr, int | np.integer) or sr <= 0:
        raise ValueError(f"sr must be a positive integer (Hz), got {sr!r}")
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    return round(duration * sr)


def _check_freq(name: str, freq: float, sr: int) -> None:
    if not np.isfinite(freq) or not 0 < freq < sr / 2:
        raise ValueError(f"{name} must lie in (0, {sr / 2:g}) Hz at sr={sr}, got {freq!r}")


def _normalise_peak(y: np.ndarray, peak: float = SYNTH_PEAK) -> np.ndarray:
    m = float(np.max(np.abs(y))) if y.size else 0.0
    out = y * (peak / m) if m > 0 else y
    return out.astype(np.float32)


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=float) - 69.0) / 12.0)


def tone(
    freq: float, *, sr: int, duration: float, amplitude: float = 0.5, phase: float = 0.0
) -> np.ndarray:
    """A pure sine tone.

    Parameters
    ----------
    freq : float
        Frequency in Hz, in (0, sr/2).
    sr : int
        Sample rate in Hz.
    duration : float
        Length in seconds.
    amplitude : float
        Peak amplitude (linear).
    phase : float
        Initial phase in radians.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    n = _n_samples(sr, duration)
    _check_freq("freq", freq, sr)
    t = np.arange(n) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def chirp(
    fmin: float,
    fmax: float,
    *,
    sr: int,
    duration: float,
    amplitude: float = 0.5,
    log: bool = True,
) -> np.ndarray:
    """A sine sweep from ``fmin`` to ``fmax`` (downwards when ``fmin > fmax``).

    Parameters
    ----------
    fmin, fmax : float
        Start and end frequencies in Hz, both in (0, sr/2).
    sr : int
        Sample rate in Hz.
    duration : float
        Length in seconds.
    amplitude : float
        Peak amplitude (linear).
    log : bool
        Exponential (constant octaves per second) sweep if True, linear otherwise.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    n = _n_samples(sr, duration)
    _check_freq("fmin", fmin, sr)
    _check_freq("fmax", fmax, sr)
    t = np.arange(n) / sr
    method = "logarithmic" if log and fmin != fmax else "linear"
    y = scipy.signal.chirp(t, f0=fmin, t1=duration, f1=fmax, method=method, phi=-90.0)
    return (amplitude * y).astype(np.float32)


def white_noise(*, sr: int, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise normalised to unit RMS.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    n = _n_samples(sr, duration)
    y = rng.standard_normal(n)
    return (y / np.sqrt(np.mean(y**2))).astype(np.float32)


def pink_noise(*, sr: int, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) noise normalised to unit RMS, shaped in the frequency domain.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    n = _n_samples(sr, duration)
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    k = np.arange(n // 2 + 1, dtype=float)
    k[0] = np.inf  # no DC
    y = np.fft.irfft(spec / np.sqrt(k), n=n)
    rms = np.sqrt(np.mean(y**2))
    return (y / rms if rms > 0 else y).astype(np.float32)


def clicks(
    times_s: Sequence[float] | np.ndarray,
    *,
    sr: int,
    duration: float,
    click_freq: float = 1000.0,
    click_duration: float = 0.05,
    amplitude: float = 0.5,
) -> np.ndarray:
    """Exponentially decaying sine clicks at the given times (overlapping clicks add up).

    Parameters
    ----------
    times_s : sequence of float
        Click onsets in seconds; those at or after ``duration`` are dropped.
    sr : int
        Sample rate in Hz.
    duration : float
        Length of the output in seconds.
    click_freq : float
        Frequency of each click's sine in Hz.
    click_duration : float
        Length of each click in seconds (it decays by 60 dB over it).
    amplitude : float
        Peak amplitude of each click.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
    """
    n = _n_samples(sr, duration)
    _check_freq("click_freq", click_freq, sr)
    if not click_duration > 0:
        raise ValueError(f"click_duration must be positive, got {click_duration!r}")
    times = np.asarray(times_s, dtype=float).reshape(-1)
    if np.any(times < 0) or not np.all(np.isfinite(times)):
        raise ValueError("click times must be finite and non-negative")
    m = max(1, round(click_duration * sr))
    t = np.arange(m) / sr
    click = amplitude * np.sin(2 * np.pi * click_freq * t) * 10.0 ** (-3.0 * t / click_duration)
    y = np.zeros(n + m)
    for s in np.round(times[times < duration] * sr).astype(int):
        y[s : s + m] += click
    return y[:n].astype(np.float32)


def _harmonic_note(
    f0: float, n: int, sr: int, partial_amps: np.ndarray, decay_s: float
) -> np.ndarray:
    """One note: harmonic partials (partial k decays k times faster), 5 ms attack, exp decay.

    The partials come from the Chebyshev recurrence sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x),
    which costs one multiply-add per partial and sample instead of a sine.
    """
    x = 2 * np.pi * f0 * np.arange(n) / sr
    two_cos, s_prev, s_k = 2 * np.cos(x), np.zeros(n), np.sin(x)
    env1 = np.exp(-np.arange(n) / (sr * decay_s))
    env_k, y = env1.copy(), np.zeros(n)
    for k, amp in enumerate(partial_amps, start=1):
        if f0 * k >= 0.45 * sr:
            break
        y += amp * s_k * env_k
        s_prev, s_k = s_k, two_cos * s_k - s_prev
        env_k *= env1
    attack = min(n, max(1, round(0.005 * sr)))
    y[:attack] *= np.linspace(0.0, 1.0, attack)
    release = min(n, max(1, round(0.01 * sr)))
    y[n - release :] *= np.linspace(1.0, 0.0, release)
    return y


def _overlap_add(out: np.ndarray, start: int, seg: np.ndarray) -> None:
    if start >= out.size:
        return
    m = min(seg.size, out.size - start)
    out[start : start + m] += seg[:m]


def _drum_templates(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Kick, snare and hi-hat as filtered noise bursts (fixed per piece, like samples)."""
    nyq = sr / 2

    def burst(dur: float, cutoffs: list[float], btype: str, tau: float) -> np.ndarray:
        m = round(dur * sr)
        wn = [min(c / nyq, 0.95) for c in cutoffs]
        sos = scipy.signal.butter(4, wn if len(wn) > 1 else wn[0], btype, output="sos")
        noise = scipy.signal.sosfilt(sos, rng.standard_normal(m))
        t = np.arange(m) / sr
        y = noise * np.exp(-t / tau)
        return y / np.max(np.abs(y))

    # every piece has its own kit (drum machines differ), so pieces do not share drum peaks
    t = np.arange(round(0.25 * sr)) / sr
    k0, k1 = rng.uniform(40.0, 70.0), rng.uniform(60.0, 140.0)
    body = np.sin(2 * np.pi * np.cumsum(k0 + k1 * np.exp(-t / 0.03)) / sr) * np.exp(-t / 0.08)
    kick = body + 0.3 * burst(0.25, [rng.uniform(100.0, 250.0)], "lowpass", 0.02)
    lo = rng.uniform(600.0, 1800.0)
    return {
        "kick": kick / np.max(np.abs(kick)),
        "snare": burst(0.2, [lo, min(lo * rng.uniform(2.5, 5.0), 0.8 * nyq)], "bandpass", 0.05),
        "hat": burst(0.06, [min(rng.uniform(3000.0, 7000.0), 0.7 * nyq)], "highpass", 0.015),
    }


def synth_music(
    *, sr: int, duration: float, rng: np.random.Generator, tempo_bpm: float | None = None
) -> np.ndarray:
    """A seeded, music-like piece: melody, bass, chords and drums on a beat grid.

    The piece has a random key (major or minor), a 4-bar chord progression, a bass line on the
    chord roots, a random-walk melody on an 8th-note grid, and kick/snare/hi-hat hits made of
    filtered noise bursts. Notes are harmonic (4–6 partials with decaying envelopes) between
    about 110 Hz and 2 kHz. Different seeds give clearly different pieces (tempo, key, chords,
    melody, timbre); the same seed always gives the same samples.

    Parameters
    ----------
    sr : int
        Sample rate in Hz (≥ 4000).
    duration : float
        Length in seconds.
    rng : np.random.Generator
        Source of randomness.
    tempo_bpm : float, optional
        Tempo in beats per minute; drawn uniformly from 80–160 when omitted.

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
        Peak-normalised to :data:`SYNTH_PEAK`.
    """
    n = _n_samples(sr, duration)
    if sr < 4000:
        raise ValueError(f"synth_music needs sr >= 4000 Hz, got {sr}")
    if tempo_bpm is None:
        tempo_bpm = float(rng.uniform(80.0, 160.0))
    elif not 20.0 <= tempo_bpm <= 400.0:
        raise ValueError(f"tempo_bpm must lie in [20, 400], got {tempo_bpm!r}")
    beat = 60.0 / tempo_bpm
    n_beats = int(np.ceil(duration / beat)) + 1
    n_bars = n_beats // 4 + 1
    scale = _MAJOR if rng.random() < 0.5 else _MINOR
    root = int(rng.integers(45, 57))  # A2..G#3: 110–208 Hz

    def degree_to_midi(deg: np.ndarray | int, base: int) -> np.ndarray:
        deg = np.asarray(deg)
        return base + 12 * (deg // 7) + scale[deg % 7]

    progression = np.concatenate([[0], rng.choice([1, 2, 3, 4, 5], size=3)])
    bar_degrees = progression[np.arange(n_bars) % 4]
    out = np.zeros(n)
    timbres = [rng.uniform(0.2, 1.0, size=6) / np.arange(1, 7) for _ in range(3)]
    bar = 4 * beat
    cache: dict[tuple[int, int, int], np.ndarray] = {}

    def note(midi: int, length_s: float, voice: int, n_partials: int, decay_s: float) -> np.ndarray:
        """Synthesise a note once per piece; repeats (same pitch, length, voice) are reused."""
        key = (midi, round(length_s * sr), voice)
        if key not in cache:
            f0 = float(_midi_hz(midi))
            cache[key] = _harmonic_note(f0, key[1], sr, timbres[voice][:n_partials], decay_s)
        return cache[key]

    # chords: three voices per bar, around 220–500 Hz, held for the bar
    for b, deg in enumerate(bar_degrees):
        start = round(b * bar * sr)
        for d in (deg, deg + 2, deg + 4):
            seg = note(int(degree_to_midi(d, root + 12)), bar, 0, 4, 0.8 * bar)
            _overlap_add(out, start, 0.12 * seg)

    # bass: a per-piece rhythm on the 8th-note grid (always the downbeat), walking over the
    # chord tones, with random octave jumps — so that pieces differ in rhythm, not only in key
    pattern = rng.random(8) < rng.uniform(0.3, 0.7)
    pattern[0] = True
    tones = rng.choice([0, 2, 4, 7], size=8)
    for i in range(2 * n_beats):
        if not pattern[i % 8] or rng.random() < 0.1:
            continue
        deg = bar_degrees[i // 8] + int(tones[i % 8]) + (7 if rng.random() < 0.15 else 0)
        seg = note(int(degree_to_midi(deg, root)), 0.45 * beat, 1, 5, 0.3 * beat)
        _overlap_add(out, round(i * beat / 2 * sr), 0.35 * seg)

    # melody: random walk on the scale, 8th-note grid, notes of 1–3 steps, some rests
    step = beat / 2
    n_steps = 2 * n_beats
    pos, deg = 0, int(rng.integers(5, 12))
    while pos < n_steps:
        length = int(rng.choice([1, 2, 2, 3, 4]))
        if rng.random() > 0.15:
            deg = int(np.clip(deg + rng.choice([-3, -2, -1, -1, 1, 1, 2, 3, 4]), 2, 16))
            midi = int(degree_to_midi(deg, root + 12))  # about 250–2000 Hz
            seg = note(midi, length * step, 2, 6, 0.5 * step * length)
            _overlap_add(out, round(pos * step * sr), 0.3 * seg)
        pos += length

    # drums: kick on 1 and 3, snare on 2 and 4, hats on 8ths, seeded pattern variations
    drums = _drum_templates(sr, rng)
    hat_prob = rng.uniform(0.4, 1.0)
    for i in range(n_steps):
        t0 = round(i * step * sr)
        on_beat, beat_in_bar = i % 2 == 0, (i // 2) % 4
        if on_beat and (beat_in_bar in (0, 2) or rng.random() < 0.1):
            _overlap_add(out, t0, 0.5 * drums["kick"])
        if on_beat and beat_in_bar in (1, 3):
            _overlap_add(out, t0, 0.18 * drums["snare"])
        if rng.random() < hat_prob:
            _overlap_add(out, t0, rng.uniform(0.05, 0.12) * drums["hat"])
    return _normalise_peak(out)


def _resonator_sos(freqs: np.ndarray, bandwidths: np.ndarray, sr: int) -> np.ndarray:
    """Cascade of two-pole resonators (one per formant), unit gain at DC each."""
    r = np.exp(-np.pi * bandwidths / sr)
    theta = 2 * np.pi * freqs / sr
    a1, a2 = -2 * r * np.cos(theta), r**2
    sos = np.zeros((freqs.size, 6))
    sos[:, 0] = 1 + a1 + a2
    sos[:, 3], sos[:, 4], sos[:, 5] = 1.0, a1, a2
    return sos


def synth_speech_like(
    *, sr: int, duration: float, rng: np.random.Generator, talkers: int = 1
) -> np.ndarray:
    """Babble-like speech: formant-filtered pulse trains in syllables at about 4 Hz.

    Each talker has a base pitch in 90–220 Hz with a smooth intonation contour (kept within
    90–250 Hz); each syllable (100–260 ms, short gaps between, pauses now and then) is a vowel
    made by three formant resonators on a glottal pulse train, with a fricative noise onset
    half of the time. Several ``talkers`` summed give crowd babble.

    Parameters
    ----------
    sr : int
        Sample rate in Hz (≥ 8000).
    duration : float
        Length in seconds.
    rng : np.random.Generator
        Source of randomness.
    talkers : int
        Number of independent talkers mixed together (1 gives one voice).

    Returns
    -------
    y : np.ndarray [shape=(round(duration * sr),), dtype=float32]
        Peak-normalised to :data:`SYNTH_PEAK`.
    """
    n = _n_samples(sr, duration)
    if sr < 8000:
        raise ValueError(f"synth_speech_like needs sr >= 8000 Hz, got {sr}")
    if not 1 <= talkers <= 64:
        raise ValueError(f"talkers must lie in [1, 64], got {talkers!r}")
    out = np.zeros(n)
    fric_sos = scipy.signal.butter(
        2, [min(2500.0, 0.6 * sr / 2) / (sr / 2), 0.9], "bandpass", output="sos"
    )
    for _ in range(talkers):
        # pitch contour: smooth random walk around the talker's base pitch
        base = rng.uniform(90.0, 220.0)
        knots = np.arange(0.0, duration + 0.5, 0.25)
        contour = base * 2.0 ** (np.cumsum(rng.normal(0.0, 0.08, knots.size)).clip(-0.5, 0.5))
        f0 = np.clip(np.interp(np.arange(n) / sr, knots, contour), 90.0, 250.0)
        phase = np.cumsum(f0 / sr)
        source = np.zeros(n)
        source[1:][np.diff(np.floor(phase)) > 0] = 1.0  # one pulse per glottal cycle
        source = scipy.signal.lfilter([1.0], [1.0, -0.9], source)  # glottal roll-off

        t = float(rng.uniform(0.0, 0.3))
        while t < duration:
            syl = rng.uniform(0.1, 0.26)
            a, b = round(t * sr), min(n, round((t + syl) * sr))
            if b - a > 8:
                formants = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.9, 1.15)
                formants = np.minimum(formants, 0.45 * sr)
                sos = _resonator_sos(formants, np.array([80.0, 110.0, 160.0]), sr)
                seg = scipy.signal.sosfilt(sos, source[a:b])
                seg = seg / (np.max(np.abs(seg)) + 1e-12)
                seg *= np.sin(np.pi * np.linspace(0.0, 1.0, b - a)) ** 0.7
                if rng.random() < 0.5:
                    m = min(b - a, round(rng.uniform(0.03, 0.07) * sr))
                    hiss = scipy.signal.sosfilt(fric_sos, rng.standard_normal(m))
                    seg[:m] += 0.3 * hiss / (np.max(np.abs(hiss)) + 1e-12)
                out[a:b] += seg * rng.uniform(0.6, 1.0)
            t += (
                syl + rng.uniform(0.02, 0.08) + (rng.uniform(0.2, 0.6) if rng.random() < 0.1 else 0)
            )
    return _normalise_peak(out)
