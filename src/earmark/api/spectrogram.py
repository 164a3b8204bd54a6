# SPDX-License-Identifier: Apache-2.0
"""Spectrogram pictures of uploads for the review pages.

A mel spectrogram (dB) of the first :data:`MAX_SECONDS` of an upload, drawn with
matplotlib's Agg backend (no display, no ``pyplot`` state, so renders are safe in the
server's worker threads) and cached as PNG under ``$EARMARK_HOME/cache/spectrograms/``,
keyed by the upload's SHA-256: the same bytes are drawn once.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.signal import stft

from earmark.audio.decode import decode_head

SR = 16_000  #: analysis rate, Hz (8 kHz top band: enough to see music structure)
MAX_SECONDS = 60.0
N_FFT = 1024
HOP = 256
N_MELS = 96
FMIN, FMAX = 40.0, 8000.0

_lock = threading.Lock()


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sr: int, n_fft: int, n_mels: int = N_MELS, fmin: float = FMIN,
                   fmax: float = FMAX) -> tuple[np.ndarray, np.ndarray]:
    """Triangular mel filters (HTK mel scale).

    Parameters
    ----------
    sr : int
        Sample rate, Hz.
    n_fft : int
        FFT length; the filters apply to its ``n_fft // 2 + 1`` bins.
    n_mels : int
        Number of bands.
    fmin, fmax : float
        Lowest and highest frequency covered, Hz.

    Returns
    -------
    weights : np.ndarray [shape=(n_mels, n_fft // 2 + 1)]
    centres : np.ndarray [shape=(n_mels,)]
        Centre frequency of each band, Hz.

    Examples
    --------
    >>> w, c = mel_filterbank(16000, 1024, 8)
    >>> w.shape, bool(np.all(np.diff(c) > 0))
    ((8, 513), True)
    """
    bins = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)),
                                   n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None, :] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - bins[None, :]) / np.maximum(hi - mid, 1e-9)
    return np.clip(np.minimum(up, down), 0.0, None), edges[1:-1]


def mel_spectrogram_db(y: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Mel power spectrogram in dB relative to its peak, floored at −80 dB.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono samples at ``sr``.

    Returns
    -------
    S_db : np.ndarray [shape=(N_MELS, frames)]
    centres : np.ndarray [shape=(N_MELS,)]
        Band centres, Hz.
    """
    if y.size < N_FFT:
        y = np.pad(y, (0, N_FFT - y.size))
    _f, _t, z = stft(y, fs=sr, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None)
    weights, centres = mel_filterbank(sr, N_FFT)
    power = weights @ (np.abs(z) ** 2)
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    return np.maximum(db - db.max(), -80.0), centres


def render_png(y: np.ndarray, out: Path, *, sr: int = SR, title: str = "") -> Path:
    """Draw the mel spectrogram of ``y`` to ``out`` (PNG, about 1000×260 pixels)."""
    s_db, centres = mel_spectrogram_db(y, sr)
    dur = max(y.size / sr, 1e-3)
    fig = Figure(figsize=(10, 2.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.06, 0.18, 0.92, 0.72))
    ax.imshow(s_db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
              extent=(0.0, dur, 0.0, float(len(centres))), interpolation="nearest")
    ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000) if f <= FMAX]
    ax.set_yticks([float(np.searchsorted(centres, f)) for f in ticks],
                  [f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks])
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("Hz (mel)", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=8, loc="left")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def cached_spectrogram(home: str | os.PathLike[str], *, blob: str | os.PathLike[str],
                       sha256: str) -> Path:
    """The spectrogram PNG of an upload, drawn on first use.

    Parameters
    ----------
    home : path-like
        ``$EARMARK_HOME``; pictures go to ``cache/spectrograms/<sha256>.png`` in it.
    blob : path-like
        The stored upload.
    sha256 : str
        Its SHA-256 (hex), computed by earmark at upload time: the cache key.

    Raises
    ------
    ValueError
        ``sha256`` is not 64 hex digits (it becomes part of a path).
    FileMissing, CorruptInput, ...
        The decoder's errors, e.g. when retention has removed the upload.
    """
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    out = Path(home) / "cache" / "spectrograms" / f"{sha256}.png"
    if out.is_file():
        return out
    with _lock:  # one render at a time: a page reload must not start a second one
        if not out.is_file():
            y = decode_head(blob, SR, MAX_SECONDS)
            render_png(y, out, title=f"first {min(y.size / SR, MAX_SECONDS):.0f} s, mel")
    return out
