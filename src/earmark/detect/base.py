# SPDX-License-Identifier: Apache-2.0
"""The :class:`Detector` protocol, its result record and the detector registry.

A detector turns mono audio into one score per segment (5 s by default). Scores are
probabilities that the segment came out of a neural generator, calibrated on held-out data,
and always travel with the detector's name and version. Labels come from two thresholds, so
that ``uncertain`` is a band of its own rather than a rounding of 0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from earmark.errors import UnknownDetector

Label = Literal["ai", "human", "uncertain"]

#: probabilities at or above this are labelled ``ai`` (the operating point of the benchmark)
AI_THRESHOLD = 0.9
#: probabilities at or below this are labelled ``human``; in between is ``uncertain``
HUMAN_THRESHOLD = 0.3
#: AI spans are localised in inputs with a segment at or above this (``uncertain`` ones too:
#: a reviewer sees where the suspected part is)
SPAN_THRESHOLD = 0.5


def label_of(p: float | None, *, ai: float = AI_THRESHOLD, human: float = HUMAN_THRESHOLD
             ) -> Label:
    """``ai`` / ``human`` / ``uncertain`` of a probability (``None``, no evidence: uncertain)."""
    if p is None:
        return "uncertain"
    if p >= ai:
        return "ai"
    if p <= human:
        return "human"
    return "uncertain"


@dataclass
class SegmentScores:
    """What a detector says about one input, segment by segment.

    Attributes
    ----------
    start_ms, end_ms : np.ndarray [shape=(n,), dtype=int64]
        Segment bounds in the input's time, ms.
    probability : np.ndarray [shape=(n,), dtype=float64]
        Calibrated probability that each segment is AI-generated; NaN where the segment holds
        too little signal to judge (silence, too short, too narrow a band).
    raw : np.ndarray [shape=(n,), dtype=float64]
        The detector's uncalibrated score (kept for audit), NaN where not scored.
    grid_hz : np.ndarray [shape=(n,), dtype=float64]
        Spacing of the strongest spectral grid found in each segment, Hz (NaN if none);
        detectors without such a notion leave it NaN.
    tuned : np.ndarray [shape=(n,), dtype=float64]
        How much the strongest periodicities look like a held, tuned note (0–1; NaN where
        the detector has no such notion).
    """

    start_ms: np.ndarray
    end_ms: np.ndarray
    probability: np.ndarray
    raw: np.ndarray
    grid_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tuned: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if self.grid_hz.size != self.probability.size:
            self.grid_hz = np.full(self.probability.size, np.nan)
        if self.tuned.size != self.probability.size:
            self.tuned = np.full(self.probability.size, np.nan)

    def __len__(self) -> int:
        return int(self.probability.size)

    @staticmethod
    def concat(parts: list[SegmentScores]) -> SegmentScores:
        """One record from consecutive parts (already on the input's timeline)."""
        if not parts:
            z = np.zeros(0)
            return SegmentScores(z.astype(np.int64), z.astype(np.int64), z, z, z, z)
        return SegmentScores(
            np.concatenate([p.start_ms for p in parts]),
            np.concatenate([p.end_ms for p in parts]),
            np.concatenate([p.probability for p in parts]),
            np.concatenate([p.raw for p in parts]),
            np.concatenate([p.grid_hz for p in parts]),
            np.concatenate([p.tuned for p in parts]),
        )

    def shifted(self, ms: int) -> SegmentScores:
        """The same scores moved ``ms`` later on the timeline."""
        return SegmentScores(self.start_ms + ms, self.end_ms + ms, self.probability,
                             self.raw, self.grid_hz, self.tuned)


@runtime_checkable
class Detector(Protocol):
    """What the detect service needs from an AI-music detector."""

    name: str
    version: str

    @property
    def sr(self) -> int:
        """Sample rate the detector wants its input at, Hz."""
        ...

    def score(self, audio: np.ndarray, sr: int, *, segment_ms: int = 5000) -> SegmentScores:
        """Score mono ``audio`` (shape (n,), float32, at ``sr`` Hz) in segments of
        ``segment_ms``; the last, shorter segment is scored when it lasts 1 s or more."""
        ...


#: built-in detectors by name; more come from the ``earmark.detectors`` entry point group
_BUILTIN: dict[str, Callable[[], Detector]] = {}


def register(name: str, factory: Callable[[], Detector]) -> None:
    """Make a detector available to :func:`get_detector` under ``name``."""
    _BUILTIN[name] = factory


def _builtins() -> None:
    import earmark.detect.residue  # noqa: F401 - registers "residue"


def available() -> list[str]:
    """Names of the detectors that can be asked for."""
    _builtins()
    names = set(_BUILTIN)
    names.update(ep.name for ep in entry_points(group="earmark.detectors"))
    return sorted(names)


def get_detector(name: str = "residue") -> Detector:
    """A detector by name (``residue``, the default; ``model`` for the active trained model)."""
    _builtins()
    if name not in _BUILTIN:
        for ep in entry_points(group="earmark.detectors"):
            if ep.name == name:
                det: Detector = ep.load()()
                return det
        raise UnknownDetector(f"unknown detector {name!r}; available: {', '.join(available())}")
    return _BUILTIN[name]()
