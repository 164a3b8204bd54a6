# SPDX-License-Identifier: Apache-2.0
"""The trainable detector: a small CNN on slices of the spectral residue, run by ONNX Runtime.

Input features are a residue like the training-free detector's (log power minus its running
mean over 15 bins of frequency, clipped to ±10 dB), on 2048-point frames at 44.1 kHz (21.5 Hz
bins, enough to resolve decoder grids from 40 Hz up), in slices of 1 s (42 frames). The CNN
scores each slice; a segment's raw score is the mean logit of its slices, and a logistic
calibration fitted on held-out data makes it a probability. Training (torch, the ``train``
extra) lives in :mod:`earmark.detect.train`; inference needs only ``onnxruntime``, and uses
CUDA when the installed build offers it.

A model is a folder: ``model.onnx``, ``model.pt`` (weights, to fine-tune from) and
``card.json`` (name, version, data, held-out metrics, calibration, limits).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import soxr

from earmark.audio.decode import SILENCE_PEAK
from earmark.detect.base import SegmentScores
from earmark.errors import EarmarkError

SR = 44100
N_FFT = 2048
HOP = 1024
SLICE_FRAMES = 42  #: frames per slice (about 1 s)
N_BINS = 1024  #: bins kept (0 to 22 kHz, the Nyquist bin dropped)
SMOOTH = 15  #: running-mean width of the residue, bins


class ModelError(EarmarkError):
    """A model folder is missing, incomplete or was made for other features."""

    code = "model_error"


def residue_frames(y: np.ndarray) -> np.ndarray:
    """Residue features of mono audio at :data:`SR`.

    Returns
    -------
    np.ndarray [shape=(frames, N_BINS), dtype=float32]
        Per frame, log power (dB) minus its running mean over :data:`SMOOTH` bins, clipped
        to ±10 dB and divided by 10.
    """
    y = np.asarray(y, np.float32)
    if y.size < N_FFT:
        return np.zeros((0, N_BINS), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP]
    spec = np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=1)[:, :N_BINS]
    lp = 10.0 * np.log10(spec.real ** 2 + spec.imag ** 2 + 1e-12)
    # a running mean (not the median of the training-free detector): 20× faster, and the CNN
    # learns around the bias that strong peaks give it
    r = lp - ndi.uniform_filter1d(lp, SMOOTH, axis=1, mode="nearest")
    return (np.clip(r, -10.0, 10.0) / 10.0).astype(np.float32)


def slices(feat: np.ndarray) -> np.ndarray:
    """Non-overlapping slices of :data:`SLICE_FRAMES` frames, shape (n, 1, N_BINS, frames)."""
    n = feat.shape[0] // SLICE_FRAMES
    if n == 0:
        return np.zeros((0, 1, N_BINS, SLICE_FRAMES), np.float32)
    x = feat[: n * SLICE_FRAMES].reshape(n, SLICE_FRAMES, N_BINS).transpose(0, 2, 1)
    return np.ascontiguousarray(x[:, None])


@dataclass
class ModelCard:
    """What a model is, what it was trained on, how it did on held-out data, its limits."""

    name: str
    version: str
    created: str
    features: str = "residue-2048-1s-v1"
    base: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=lambda: {"weight": 1.0, "bias": 0.0})
    limits: str = ("Trained on the operator's labelled samples; says nothing about generators "
                   "unlike them. Scores 1 s slices; segments average their slices.")

    @staticmethod
    def load(folder: Path) -> ModelCard:
        try:
            return ModelCard(**json.loads((folder / "card.json").read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"{folder}: no readable card.json ({exc})") from exc

    def save(self, folder: Path) -> None:
        (folder / "card.json").write_text(json.dumps(self.__dict__, indent=2) + "\n")


class TrainedDetector:
    """A :class:`~earmark.detect.base.Detector` over an exported model folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.card = ModelCard.load(self.folder)
        if self.card.features != "residue-2048-1s-v1":
            raise ModelError(f"{self.folder}: features {self.card.features!r} are not "
                             "supported by this earmark version")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("trained detectors need onnxruntime: "
                             "pip install 'earmark[models]'") from exc
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.folder / "model.onnx"), opts,
                                                 providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{self.folder}/model.onnx cannot be loaded: {exc}") from exc
        #: what the model computes on: ``cuda`` when onnxruntime took the CUDA provider
        self.device = ("cuda" if self._session.get_providers()[:1] == ["CUDAExecutionProvider"]
                       else "cpu")
        self.name = self.card.name
        self.version = self.card.version

    @property
    def sr(self) -> int:
        return SR

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw CNN outputs for slices ``x`` of shape (n, 1, N_BINS, SLICE_FRAMES)."""
        if x.shape[0] == 0:
            return np.zeros(0)
        out = self._session.run(None, {"slices": x})[0]
        return np.asarray(out, np.float64).reshape(-1)

    def score(self, audio: np.ndarray, sr: int, *, segment_ms: int = 5000) -> SegmentScores:
        y = np.asarray(audio, np.float32).reshape(-1)
        if sr != SR:
            y = soxr.resample(y, sr, SR).astype(np.float32)
        seg = max(1, round(segment_ms * SR / 1000))
        starts = list(range(0, y.size, seg)) or [0]
        if len(starts) > 1 and y.size - starts[-1] < SR:
            starts.pop()
        n = len(starts)
        raw = np.full(n, np.nan)
        s_ms = np.zeros(n, np.int64)
        e_ms = np.zeros(n, np.int64)
        w, b = self.card.calibration["weight"], self.card.calibration["bias"]
        for i, s0 in enumerate(starts):
            s1 = starts[i + 1] if i + 1 < n else y.size
            s_ms[i], e_ms[i] = s0 * 1000 // SR, s1 * 1000 // SR
            part = y[s0:s1]
            if part.size == 0 or float(np.max(np.abs(part))) < SILENCE_PEAK:
                continue
            lg = self.logits(slices(residue_frames(part)))
            if lg.size:
                raw[i] = float(lg.mean())
        z = np.clip(w * np.nan_to_num(raw) + b, -50, 50)
        prob = np.where(np.isnan(raw), np.nan, 1.0 / (1.0 + np.exp(-z)))
        return SegmentScores(s_ms, e_ms, prob, raw)


def probability(raw: np.ndarray, calibration: dict[str, float]) -> np.ndarray:
    """The calibrated probability of raw segment logits."""
    z = np.clip(calibration["weight"] * raw + calibration["bias"], -50, 50)
    return 1.0 / (1.0 + np.exp(-z))


def auc_of(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve of two score samples (ties count half)."""
    if not pos.size or not neg.size:
        return math.nan
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([neg, pos]))
    return float((r[neg.size:].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))
