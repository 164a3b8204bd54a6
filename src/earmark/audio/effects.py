# SPDX-License-Identifier: Apache-2.0
"""The edits people make to uploads, as pure functions on mono float32 audio.

Each effect takes ``y : np.ndarray [shape=(n,), dtype=float32]`` and ``sr : int`` (Hz) and
returns a new float32 array at the same ``sr`` (shape ``(n,)`` unless stated); parameters out
of range raise :class:`ValueError`. :data:`EFFECTS` names them all with a uniform
``(y, sr, **params)`` signature and :func:`chain` applies named steps, so an evaluation harness
can describe an edit grid as data.

Mechanisms: :func:`speed` resamples with soxr (exact); :func:`time_stretch` runs FFmpeg's
``atempo`` through PyAV's filter graph (or ``rubberband`` through the ``ffmpeg`` CLI);
:func:`pitch_shift` uses ``rubberband`` when the ``ffmpeg`` CLI has it, else the equivalent
resample + ``atempo`` chain; :func:`codec` encodes and decodes in memory with PyAV (mp3, aac,
opus) or through ``ffmpeg`` pipes (vorbis: PyAV's bundled FFmpeg has no libvorbis).

>>> from earmark.audio import effects, generators
>>> y = generators.tone(440.0, sr=8000, duration=1.0)
>>> effects.speed(y, 8000, 1.25).shape
(6400,)
>>> z = effects.chain(y, 8000, [("gain", {"db": -6.0}), ("add_noise", {"snr_db": 20, "rng": 0})])
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any, Literal, cast

import av
import numpy as np
import scipy.signal
import soxr

from earmark.audio.generators import pink_noise, white_noise

RngLike = np.random.Generator | int
Engine = Literal["auto", "rubberband", "atempo"]

_BLOCK = 8192  # samples per frame pushed into FFmpeg


def _audio(y: np.ndarray, sr: int | None = None) -> np.ndarray:
    """Validate mono audio (and ``sr`` when given); return it as contiguous float32."""
    if sr is not None and (not isinstance(sr, int | np.integer) or sr <= 0):
        raise ValueError(f"sr must be a positive integer (Hz), got {sr!r}")
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"y must be mono audio of shape (n,), got shape {a.shape}")
    if a.size == 0:
        raise ValueError("y is empty")
    return np.ascontiguousarray(a, dtype=np.float32)


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (isinstance(value, int | float | np.number) and lo <= value <= hi):
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {value!r}")


def _rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy Generator or an integer seed, got {type(rng).__name__}")


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``y`` to exactly ``n`` samples, as float32."""
    out = np.zeros(n, dtype=np.float32)
    m = min(n, y.size)
    out[:m] = y[:m]
    return out


def _resample(y: np.ndarray, sr_in: float, sr_out: float) -> np.ndarray:
    if sr_in == sr_out:
        return y
    return np.asarray(soxr.resample(y, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def _frames(y: np.ndarray, sr: int) -> list[av.AudioFrame]:
    frames = []
    for i in range(0, y.size, _BLOCK):
        f = av.AudioFrame.from_ndarray(y[None, i : i + _BLOCK], format="flt", layout="mono")
        f.sample_rate, f.pts, f.time_base = sr, i, Fraction(1, sr)
        frames.append(f)
    return frames


def _mono(frame: av.AudioFrame) -> np.ndarray:
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        a = a.reshape(-1, channels).T
    return a.mean(axis=0, dtype=np.float32) if channels > 1 else a.reshape(-1)


def _filter_graph(y: np.ndarray, sr: int, filters: Sequence[tuple[str, str]]) -> np.ndarray:
    """Run ``y`` through a chain of FFmpeg audio filters with PyAV's filter graph."""
    graph = av.filter.Graph()
    nodes = [graph.add_abuffer(sample_rate=sr, format="flt", layout="mono")]
    nodes += [graph.add(name, args) for name, args in filters]
    nodes += [graph.add("aformat", f"sample_fmts=flt:channel_layouts=mono:sample_rates={sr}")]
    nodes += [graph.add("abuffersink")]
    graph.link_nodes(*nodes).configure()
    out: list[np.ndarray] = []

    def drain() -> None:
        while True:
            try:
                out.append(_mono(graph.pull()))  # type: ignore[arg-type]  # audio-only graph
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    for frame in _frames(y, sr):
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


@functools.cache
def _cli_has_filter(name: str) -> bool:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return False
    res = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True)
    return any(line.split()[1:2] == [name] for line in res.stdout.splitlines())


def _cli(args: Sequence[str], data: bytes) -> bytes:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("the ffmpeg command-line tool is needed for this effect but not found")
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", *args]
    res = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if res.returncode != 0:
        msg = res.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"ffmpeg failed ({' '.join(args)}): {msg}")
    return res.stdout


def _cli_filter(y: np.ndarray, sr: int, af: str) -> np.ndarray:
    """Run ``y`` through an FFmpeg filter chain with the ``ffmpeg`` CLI, raw float32 piped."""
    raw = ["-f", "f32le", "-ar", str(sr), "-ac", "1"]
    out = _cli([*raw, "-i", "pipe:0", "-af", af, *raw, "pipe:1"], y.astype("<f4").tobytes())
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def speed(y: np.ndarray, sr: int, ratio: float) -> np.ndarray:
    """Change playback speed: tempo and pitch together (``ratio > 1`` is "nightcore").

    Implemented as an exact resampling (soxr): output sample ``k`` is the input at time
    ``k * ratio / sr``, so every frequency is multiplied by ``ratio``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    ratio : float
        Speed factor in [0.25, 4].

    Returns
    -------
    y_out : np.ndarray [shape=(round(n / ratio),), dtype=float32]
    """
    y = _audio(y, sr)
    _check_range("ratio", ratio, 0.25, 4.0)
    return _fit(_resample(y, sr * ratio, sr), round(y.size / ratio))


def _atempo_chain(ratio: float) -> list[tuple[str, str]]:
    # atempo blends within [0.5, 2] (above 2 it skips samples): chain instances for the rest
    steps = []
    while ratio > 2.0:
        steps.append(2.0)
        ratio /= 2.0
    while ratio < 0.5:
        steps.append(0.5)
        ratio /= 0.5
    steps.append(ratio)
    return [("atempo", f"tempo={r:.10g}") for r in steps]


def _engine(engine: str) -> Engine:
    if engine not in ("auto", "rubberband", "atempo"):
        raise ValueError(f"engine must be 'auto', 'rubberband' or 'atempo', got {engine!r}")
    if engine == "auto":
        return "rubberband" if _cli_has_filter("rubberband") else "atempo"
    if engine == "rubberband" and not _cli_has_filter("rubberband"):
        raise RuntimeError("engine='rubberband' needs an ffmpeg CLI built with librubberband")
    return "rubberband" if engine == "rubberband" else "atempo"


def time_stretch(y: np.ndarray, sr: int, ratio: float, *, engine: Engine = "atempo") -> np.ndarray:
    """Change tempo, keep pitch. ``ratio > 1`` is faster (shorter output).

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    ratio : float
        Tempo factor in [0.1, 10].
    engine : {"atempo", "rubberband", "auto"}
        ``"atempo"``: FFmpeg's WSOLA ``atempo`` filter through PyAV (always available),
        chained in steps within [0.5, 2]. ``"rubberband"``: FFmpeg's ``rubberband`` filter
        through the ``ffmpeg`` CLI. ``"auto"``: rubberband when available.

    Returns
    -------
    y_out : np.ndarray [shape=(round(n / ratio),), dtype=float32]
        Cropped or zero-padded to exactly that length.
    """
    y = _audio(y, sr)
    _check_range("ratio", ratio, 0.1, 10.0)
    n_out, engine = round(y.size / ratio), _engine(engine)
    if ratio == 1.0:
        return y.copy()
    if engine == "rubberband":
        return _fit(_cli_filter(y, sr, f"rubberband=tempo={ratio:.10g}"), n_out)
    return _fit(_filter_graph(y, sr, _atempo_chain(ratio)), n_out)


def pitch_shift(y: np.ndarray, sr: int, semitones: float, *, engine: Engine = "auto") -> np.ndarray:
    """Shift pitch by ``semitones``, keep tempo and length.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    semitones : float
        Shift in [-24, 24] semitones (frequencies × 2**(semitones / 12)).
    engine : {"auto", "rubberband", "atempo"}
        ``"rubberband"``: FFmpeg's ``rubberband`` filter (phase vocoder, high quality) through
        the ``ffmpeg`` CLI. ``"atempo"``: the ``asetrate`` + ``atempo`` + resample chain,
        i.e. :func:`speed` by the pitch factor then ``atempo`` back to the original tempo.
        ``"auto"`` (default): rubberband when the CLI has it, else atempo.
    """
    y = _audio(y, sr)
    _check_range("semitones", semitones, -24.0, 24.0)
    factor, engine = 2.0 ** (semitones / 12.0), _engine(engine)
    if semitones == 0:
        return y.copy()
    if engine == "rubberband":
        return _fit(_cli_filter(y, sr, f"rubberband=pitch={factor:.10g}:pitchq=quality"), y.size)
    fast = _resample(y, sr * factor, sr)  # pitch and tempo × factor
    return _fit(_filter_graph(fast, sr, _atempo_chain(1.0 / factor)), y.size)


def gain(y: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels (no clipping: values may leave [-1, 1]).

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    db : float
        Gain in dB, in [-120, 60].
    """
    y = _audio(y)
    _check_range("db", db, -120.0, 60.0)
    return (y * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def add_noise(
    y: np.ndarray,
    sr: int,
    snr_db: float,
    *,
    rng: RngLike,
    kind: Literal["pink", "white"] = "pink",
) -> np.ndarray:
    """Add noise at ``snr_db`` = 10·log10(signal power / noise power), over the whole signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
        Must not be silent.
    snr_db : float
        Signal-to-noise ratio in dB, in [-40, 120].
    rng : np.random.Generator or int
        Generator or integer seed.
    kind : {"pink", "white"}
    """
    y = _audio(y, sr)
    _check_range("snr_db", snr_db, -40.0, 120.0)
    gen = {"pink": pink_noise, "white": white_noise}.get(kind)
    if gen is None:
        raise ValueError(f"kind must be 'pink' or 'white', got {kind!r}")
    level = _rms(y)
    if level == 0:
        raise ValueError("cannot set an SNR against a silent signal")
    noise = gen(sr=sr, duration=y.size / sr, rng=_rng(rng))[: y.size].astype(np.float64)
    noise *= level / (_rms(noise) * 10.0 ** (snr_db / 20.0))
    return (y + noise).astype(np.float32)


def mix_over(y: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``other`` (speech, babble, another song) under or over ``y``.

    ``other`` is looped or cropped to ``len(y)`` and scaled so that
    ``snr_db = 20·log10(rms(y) / rms(other))``: positive values keep ``y`` louder, e.g.
    ``snr_db=-5`` makes the speech 5 dB *louder* than the music. Both signals must share
    the same sample rate.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
        The main signal (the music).
    other : np.ndarray [shape=(m,), dtype=float32]
        The signal mixed in.
    snr_db : float
        Level of ``y`` above ``other`` in dB, in [-40, 60].
    """
    y, other = _audio(y), _audio(other)
    _check_range("snr_db", snr_db, -40.0, 60.0)
    other = np.resize(other, y.size).astype(np.float64)
    level_y, level_o = _rms(y), _rms(other)
    if level_y == 0 or level_o == 0:
        raise ValueError("mix_over needs non-silent y and other (after looping/cropping)")
    return (y + other * (level_y / (level_o * 10.0 ** (snr_db / 20.0)))).astype(np.float32)


def reverb(
    y: np.ndarray, sr: int, *, rt60: float = 1.0, wet: float = 0.5, rng: RngLike
) -> np.ndarray:
    """Room reverb: convolution with exponentially decaying noise (a synthetic impulse response).

    The impulse response lasts ``rt60`` seconds, decays by 60 dB over it and has unit energy;
    the output is ``(1 - wet)·y + wet·(h ∗ y)``, cropped to the input length.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    rt60 : float
        Reverberation time in seconds, in [0.05, 10].
    wet : float
        Fraction of reverberated signal, in [0, 1].
    rng : np.random.Generator or int
        Generator or integer seed for the impulse response.
    """
    y = _audio(y, sr)
    _check_range("rt60", rt60, 0.05, 10.0)
    _check_range("wet", wet, 0.0, 1.0)
    t = np.arange(max(1, round(rt60 * sr))) / sr
    h = _rng(rng).standard_normal(t.size) * 10.0 ** (-3.0 * t / rt60)
    h /= np.sqrt(np.sum(h**2))
    wet_sig = scipy.signal.fftconvolve(y.astype(np.float64), h)[: y.size]
    return ((1.0 - wet) * y + wet * wet_sig).astype(np.float32)


def phone_band(y: np.ndarray, sr: int) -> np.ndarray:
    """Telephone channel: 300–3400 Hz band-pass then a trip through 8 kHz and back.

    The band-pass is a zero-phase 4th-order Butterworth (``sosfiltfilt``), so the output stays
    time-aligned with the input.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
        Audio at ``sr`` ≥ 8000 Hz.
    """
    y = _audio(y, sr)
    if sr < 8000:
        raise ValueError(f"phone_band needs sr >= 8000 Hz, got {sr}")
    sos = scipy.signal.butter(4, [300.0, 3400.0], "bandpass", fs=sr, output="sos")
    if y.size <= 3 * (2 * len(sos) + 1):
        raise ValueError(f"phone_band needs more than {3 * (2 * len(sos) + 1)} samples")
    band = scipy.signal.sosfiltfilt(sos, y).astype(np.float32)
    return _fit(_resample(_resample(band, sr, 8000), 8000, sr), y.size)


def _shelf_sos(kind: str, freq: float, gain_db: float, sr: int) -> np.ndarray:
    """RBJ audio-EQ-cookbook shelving biquad (slope S = 1) as one SOS row."""
    a = 10.0 ** (gain_db / 40.0)
    w = 2 * np.pi * freq / sr
    cw, alpha = np.cos(w), np.sin(w) / 2 * np.sqrt(2.0)
    s = 2 * np.sqrt(a) * alpha
    sign = 1.0 if kind == "low" else -1.0
    b0 = a * ((a + 1) - sign * (a - 1) * cw + s)
    b1 = sign * 2 * a * ((a - 1) - sign * (a + 1) * cw)
    b2 = a * ((a + 1) - sign * (a - 1) * cw - s)
    a0 = (a + 1) + sign * (a - 1) * cw + s
    a1 = -sign * 2 * ((a - 1) + sign * (a + 1) * cw)
    a2 = (a + 1) + sign * (a - 1) * cw - s
    return np.array([[b0, b1, b2, a0, a1, a2]]) / a0


def eq(
    y: np.ndarray,
    sr: int,
    *,
    low_gain_db: float = 0.0,
    high_gain_db: float = 0.0,
    low_freq: float = 250.0,
    high_freq: float = 4000.0,
) -> np.ndarray:
    """Two-band shelving EQ (bass and treble knobs): RBJ low- and high-shelf biquads.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    low_gain_db, high_gain_db : float
        Shelf gains in dB, in [-24, 24].
    low_freq, high_freq : float
        Shelf corner frequencies in Hz, in [10, 0.45·sr].
    """
    y = _audio(y, sr)
    _check_range("low_gain_db", low_gain_db, -24.0, 24.0)
    _check_range("high_gain_db", high_gain_db, -24.0, 24.0)
    _check_range("low_freq", low_freq, 10.0, 0.45 * sr)
    _check_range("high_freq", high_freq, 10.0, 0.45 * sr)
    rows = [_shelf_sos("low", low_freq, low_gain_db, sr)] if low_gain_db else []
    rows += [_shelf_sos("high", high_freq, high_gain_db, sr)] if high_gain_db else []
    if not rows:
        return y.copy()
    return scipy.signal.sosfilt(np.vstack(rows), y).astype(np.float32)


def crop(y: np.ndarray, sr: int, start_s: float, duration_s: float | None = None) -> np.ndarray:
    """Cut ``[start_s, start_s + duration_s)`` out of ``y`` (to the end if ``duration_s`` is None).

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    start_s : float
        Start in seconds, ≥ 0 and before the end of ``y``.
    duration_s : float, optional
        Length in seconds, > 0; a window running past the end is cut short.

    Returns
    -------
    y_out : np.ndarray [shape=(min(round(duration_s * sr), n - round(start_s * sr)),)]
    """
    y = _audio(y, sr)
    start = round(start_s * sr) if np.isfinite(start_s) else -1
    if not 0 <= start < y.size:
        raise ValueError(f"start_s must lie in [0, {y.size / sr:g}) s, got {start_s!r}")
    if duration_s is None:
        return y[start:].copy()
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    return y[start : start + max(1, round(duration_s * sr))].copy()


#: codec name -> (encoder, container, encoder sample rates or None for any)
CODECS: dict[str, tuple[str, str, tuple[int, ...] | None]] = {
    "mp3": ("libmp3lame", "mp3", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "aac": ("aac", "ipod", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "opus": ("libopus", "ogg", (48000,)),
    "vorbis": ("libvorbis", "ogg", None),
}


def _encode_pyav(y: np.ndarray, rate: int, encoder: str, fmt: str, bit_rate: int) -> bytes:
    buf = io.BytesIO()  # seekable: the mp3 muxer writes its LAME/Xing delay header at the end
    with av.open(buf, "w", format=fmt) as out:
        stream = cast("av.AudioStream", out.add_stream(encoder, rate=rate, layout="mono"))
        stream.bit_rate = bit_rate
        for frame in [*_frames(y, rate), None]:
            out.mux(stream.encode(frame))
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), "r") as inp:
        parts = [_mono(f) for f in inp.decode(audio=0)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


@functools.cache
def _pyav_has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def codec(y: np.ndarray, sr: int, codec: str, bitrate_kbps: float) -> np.ndarray:
    """Encode with a lossy codec and decode back: time-aligned, same length, same rate.

    The decoders honour the encoders' priming (LAME header for mp3, the MP4 edit list for
    AAC, Ogg pre-skip for Opus and Vorbis), so no delay is left to strip; the decoded signal
    is cropped or zero-padded to ``n`` samples. Rates the codec does not take are resampled
    (soxr) to the next rate it does (Opus always runs at 48 kHz) and back.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    codec : {"mp3", "aac", "opus", "vorbis"}
        mp3 is LAME, aac FFmpeg's native AAC encoder in an MP4 container, opus libopus, vorbis
        libvorbis (through the ``ffmpeg`` CLI when PyAV's FFmpeg lacks it).
    bitrate_kbps : float
        Target bit rate in kbit/s, in [8, 320]; encoders clamp it to what their sample rate
        allows (e.g. LAME at 8 kHz tops out at 64 kbit/s).
    """
    y = _audio(y, sr)
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    _check_range("bitrate_kbps", bitrate_kbps, 8.0, 320.0)
    encoder, fmt, rates = CODECS[codec]
    rates = rates or (sr,)  # None: any rate
    rate = sr if sr in rates else min((r for r in rates if r >= sr), default=max(rates))
    x = _resample(y, sr, rate)
    bit_rate = round(bitrate_kbps * 1000)
    if _pyav_has_encoder(encoder):
        data = _encode_pyav(x, rate, encoder, fmt, bit_rate)
    else:
        raw = ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0"]
        enc = ["-c:a", encoder, "-b:a", str(bit_rate), "-f", fmt, "pipe:1"]
        data = _cli([*raw, *enc], x.astype("<f4").tobytes())
    decoded = _resample(_decode(data), rate, sr)
    return _fit(decoded, y.size)


def _gain_step(y: np.ndarray, sr: int, *, db: float) -> np.ndarray:
    return gain(y, db)


def _mix_step(y: np.ndarray, sr: int, *, other: np.ndarray, snr_db: float) -> np.ndarray:
    return mix_over(y, other, snr_db)


#: Every effect by name, each called as ``fn(y, sr, **params)``.
EFFECTS: dict[str, Callable[..., np.ndarray]] = {
    "speed": speed,
    "pitch_shift": pitch_shift,
    "time_stretch": time_stretch,
    "add_noise": add_noise,
    "mix_over": _mix_step,
    "reverb": reverb,
    "phone_band": phone_band,
    "eq": eq,
    "gain": _gain_step,
    "codec": codec,
    "crop": crop,
}


def chain(y: np.ndarray, sr: int, steps: Sequence[tuple[str, Mapping[str, Any]]]) -> np.ndarray:
    """Apply named effects in order: ``steps = [(name, params), ...]`` from :data:`EFFECTS`.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
    steps : sequence of (str, mapping)
        E.g. ``[("speed", {"ratio": 1.1}), ("codec", {"codec": "mp3", "bitrate_kbps": 64})]``.
        Random effects take ``rng`` as a Generator or an integer seed.

    Returns
    -------
    y_out : np.ndarray [shape=(m,), dtype=float32]
    """
    out = _audio(y)
    for i, step in enumerate(steps):
        if not (isinstance(step, tuple | list) and len(step) == 2):
            raise ValueError(f"step {i} must be a (name, params) pair, got {step!r}")
        name, params = step
        if name not in EFFECTS:
            raise ValueError(f"step {i}: unknown effect {name!r}; known: {sorted(EFFECTS)}")
        out = EFFECTS[name](out, sr, **dict(params))
    return out
