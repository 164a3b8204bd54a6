# SPDX-License-Identifier: Apache-2.0
"""Where speech covers the music: a time–frequency mask for query peak picking.

Talk over music (reaction videos, vlogs, a presenter over a song) defeats plain peak picking:
voiced speech puts its harmonics and formants in the strongest cells of the spectrogram, and
every music peak within a peak neighbourhood of them is suppressed. Yet most of the music's
peaks still lie in cells that the *music* dominates (measured on the benchmark's speech
queries: 86 % of a reference's peaks at speech 5 dB louder than the music). Picking peaks
among those cells only, so that speech cells neither become peaks nor suppress their
neighbours (:func:`earmark.identify.peaks.find_peaks` with ``mask``), brings back most of them.

The mask comes from a small convolutional network (43,105 weights, a harmonic stack and a
half-resolution dilated branch, :mod:`earmark.identify.speech_nets`; ONNX, run by ONNX
Runtime on one CPU thread) that reads the query's log-frequency spectrogram and gives, per
cell, the probability that speech is louder there than the music. It is trained by
``earmark models train-speech-mask`` (:mod:`earmark.identify.speech_train`) on mixtures of
corpus music and synthetic speech, with the ideal binary mask as the target.

The mask is computed once per query, at its own speed, and warped onto each rung of the
speed ladder. Queries where it covers little (music alone) are fingerprinted as before.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from earmark.errors import EarmarkError

MODEL_FILE = "speech_mask.onnx"
#: the first, smaller mask network (4,851 weights, ~4 ms per 2 s against ~9): the live
#: matcher's talk probe asks it first (:func:`music_alone`)
PROBE_FILE = "speech_probe.onnx"
#: a probe whose cells :data:`PROBE_FILE` covers less than this is music alone, without the
#: shipped mask: of 1,173 two-second probes the shipped mask passed (speech 5 dB louder to
#: 5 dB softer than the music, espeak-ng and flite), 1 was under it (the shipped mask at
#: 0.250 there), and 26 % of the probes of 40 non-catalog streams were over it
PROBE_PREGATE = 0.12


def features(S: np.ndarray) -> np.ndarray:
    """Network input from a log-frequency spectrogram.

    Parameters
    ----------
    S : np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        Log magnitude in dB (:func:`earmark.identify.spectrogram.log_spectrogram`).

    Returns
    -------
    x : np.ndarray [shape=(2, n_frames, n_bins), dtype=float32]
        The level below the input's 99th percentile (/20 dB) and the height above the local
        mean of 31 frames × 25 bins (/10 dB): level-independent, like the peak picker's view.
    """
    S = np.asarray(S, np.float32)
    bg = ndimage.uniform_filter(S, size=(31, 25), mode="nearest")
    top = np.float32(np.percentile(S, 99)) if S.size else np.float32(0.0)
    return np.stack([(S - top) / 20.0, (S - bg) / 10.0]).astype(np.float32)


class SpeechMask:
    """The trained mask network.

    Parameters
    ----------
    path : path-like, optional
        An ONNX model; by default the one shipped in the package as ``packaged``.
    threshold : float
        Cells with a speech probability at or above this are masked.
    """

    def __init__(self, path: str | Path | None = None, threshold: float = 0.5,
                 packaged: str = MODEL_FILE) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - a core dependency
            raise EarmarkError("onnxruntime is needed for the speech mask: pip install "
                               "onnxruntime") from e
        if path is None:
            data = resources.files("earmark.identify").joinpath(packaged).read_bytes()
        else:
            data = Path(path).read_bytes()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # ~27 ms for a 5 s query here (one query per thread)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.threshold = threshold

    def probability(self, S: np.ndarray) -> np.ndarray:
        """Per-cell probability that speech dominates, shape ``S.shape``."""
        if S.shape[0] < 3:
            return np.zeros(S.shape, np.float32)
        logits = self.session.run(None, {self.input: features(S)[None]})[0]
        out: np.ndarray = (1.0 / (1.0 + np.exp(-logits[0, 0]))).astype(np.float32)
        return out

    def speech_cells(self, S: np.ndarray) -> np.ndarray:
        """Boolean mask of the cells speech dominates, shape ``S.shape``."""
        return self.probability(S) >= self.threshold


@lru_cache(maxsize=1)
def default_mask() -> SpeechMask:
    """The shipped model, loaded once per process."""
    return SpeechMask()


@lru_cache(maxsize=1)
def default_probe() -> SpeechMask:
    """The smaller first network (:data:`PROBE_FILE`), loaded once per process."""
    return SpeechMask(packaged=PROBE_FILE)


def music_alone(S: np.ndarray) -> bool:
    """Whether the smaller network (:data:`PROBE_FILE`) covers less than
    :data:`PROBE_PREGATE` of the audible cells of ``S``: music alone, without asking the
    shipped mask (the live talk probe's first stage,
    :meth:`~earmark.identify.fingerprinter.TripletFingerprinter.talks`).

    Parameters
    ----------
    S : np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        Log spectrogram in dB (:func:`earmark.identify.spectrogram.log_spectrogram`).
    """
    return coverage(default_probe().speech_cells(S), S) < PROBE_PREGATE


def coverage(speech: np.ndarray, S: np.ndarray, floor_db: float = -60.0) -> float:
    """Fraction of the audible cells (above ``floor_db``) that speech dominates."""
    audible = S > floor_db
    n = int(np.count_nonzero(audible))
    return float(np.count_nonzero(speech & audible)) / n if n else 0.0


def warp(speech: np.ndarray, v: float, n_frames: int, bins_per_octave: int) -> np.ndarray:
    """The mask of a query moved onto its version resampled by ``v`` (a speed-ladder rung).

    Resampling to ``sr · v`` and playing at ``sr`` stretches time by ``v`` and divides every
    frequency by ``v``: frame ``i`` of the rung is frame ``i / v`` of the original and bin
    ``b`` is bin ``b + log2(v) · bins_per_octave``. Cells that fall outside the original's
    band are not masked.

    Parameters
    ----------
    speech : np.ndarray [shape=(n0, n_bins), dtype=bool]
    v : float
    n_frames : int
        Frames of the rung's spectrogram.
    bins_per_octave : int

    Returns
    -------
    np.ndarray [shape=(n_frames, n_bins), dtype=bool]
    """
    n0, nb = speech.shape
    out = np.zeros((n_frames, nb), bool)
    if n0 == 0:
        return out
    i = np.clip(np.rint(np.arange(n_frames) / v).astype(np.int64), 0, n0 - 1)
    b = np.rint(np.arange(nb) + np.log2(v) * bins_per_octave).astype(np.int64)
    inside = (b >= 0) & (b < nb)
    out[:, inside] = speech[i][:, b[inside]]
    return out
