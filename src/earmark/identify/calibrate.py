# SPDX-License-Identifier: Apache-2.0
"""Confidence calibration: raw alignment features → probability that the match is right.

A logistic model on features of an alignment (its score; its score against the number of
candidate hits its reference drew, a z-like statistic — chance alignments of a reference
that collides with everything grow only like the square root of its hits; the margin over
the runner-up; how far its inliers spread over the query; and how far its tempo and pitch lie
from the edits people make), fitted by ``earmark bench identify`` on every alignment of
held-out queries — those that name the query's track under its edit as positives, all others
(aliases, other references, every alignment of a non-catalog query) as negatives — and
shipped in ``calibration.json``. Raw scores stay in the evidence.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

FEATURES = ("log_score", "log_z", "log_margin", "cover", "edit_distance", "agreement")

#: semitones: :func:`edit_distance` saturates here (far from every single edit is far enough)
EDIT_DISTANCE_CAP = 2.0


def edit_distance(tempo: float, pitch: float) -> float:
    """Semitones between an alignment's transform and the nearest single edit.

    An upload is played faster or slower (pitch = 12·log₂ tempo), pitch-shifted (tempo 1) or
    time-stretched (pitch 0), rarely two of them at once; a chance alignment's tempo and
    pitch fall anywhere. In a check on 740 right alignments of real queries (chains
    included) the median distance was 0.03 semitone and the 99th percentile 0.43; wrong
    alignments with a score of 12 or more had a median (before the cap) of 2.0–4.1
    (docs/benchmarks.md, run 10). The cost: two edits at once that lie far from all three
    lines (pitch −3 with tempo 1.2) need much more evidence.

    Parameters
    ----------
    tempo : float
        Tempo ratio of the alignment (reference time per query time).
    pitch : float
        Pitch shift, semitones.

    Returns
    -------
    float
        ``min(|12·log₂ tempo|, |pitch|, |pitch − 12·log₂ tempo|)``, capped at
        :data:`EDIT_DISTANCE_CAP`.
    """
    lt = 12.0 * math.log2(max(tempo, 1e-6))
    return min(abs(lt), abs(pitch), abs(pitch - lt), EDIT_DISTANCE_CAP)


def features(score: int, ref_hits: int, runner_up: int, cover: float = 0.0,
             tempo: float = 1.0, pitch: float = 0.0, agreement: float = 0.0) -> np.ndarray:
    """The model's inputs for one alignment, shape (6,) (a model with fewer weights uses the
    first ones: older models have three to five).

    Parameters
    ----------
    score : int
        Distinct reference entries on the alignment's line.
    ref_hits : int
        Candidate hits of the alignment's reference in this query.
    runner_up : int
        Score of the best overlapping alignment of another reference.
    cover : float
        Share of the query's duration between its first and last inlier: a true match
        spreads over the query, a chance alignment clusters (true: median 0.83, chance:
        median 0.06 in a check on 381 best alignments).
    tempo, pitch : float
        The alignment's tempo ratio and pitch shift (semitones), for :func:`edit_distance`.
    agreement : float
        Correlation of the query's spectrum with the reference's sketch under the alignment
        (:func:`earmark.identify.verify.agreement`): right alignments ~0.75 at the median
        even under speech 5 dB louder than the music, chance ones ~0.1.
    """
    return np.array([
        math.log(max(score, 1)),
        math.log(max(score, 1) / math.sqrt(max(ref_hits, 1))),
        math.log(max(score, 1) / max(runner_up, 1)),
        min(max(cover, 0.0), 1.0),
        edit_distance(tempo, pitch),
        agreement,
    ])


@dataclass
class Calibration:
    """Logistic weights over :data:`FEATURES`, and the threshold of the operating point."""

    weights: list[float]
    bias: float
    threshold: float = 0.5
    fitted_on: str = "default"

    def probability(self, score: int, ref_hits: int, runner_up: int, cover: float = 0.0,
                    tempo: float = 1.0, pitch: float = 0.0, agreement: float = 0.0) -> float:
        return self.probability_of(features(score, ref_hits, runner_up, cover, tempo, pitch,
                                            agreement))

    @property
    def verifies(self) -> bool:
        """Whether the model reads the ``agreement`` feature (needs reference sketches)."""
        return len(self.weights) >= FEATURES.index("agreement") + 1

    def probability_of(self, x: np.ndarray) -> float:
        """Probability for a row of :func:`features` (models fitted before the ``cover`` or
        the ``edit_distance`` feature have three or four weights and use the first ones)."""
        z = float(np.dot(self.weights, x[: len(self.weights)]) + self.bias)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @staticmethod
    def load(path: str | Path | None = None) -> Calibration:
        """A saved model; by default the package's (``calibration.json``)."""
        if path is None:
            return Calibration._packaged("calibration.json")
        return Calibration(**json.loads(Path(path).read_text()))

    @staticmethod
    def load_plain() -> Calibration:
        """The package's model without the ``agreement`` feature, for catalogs and callers
        that have no reference sketches (catalogs built before sketches, the live matcher)."""
        return Calibration._packaged("calibration-plain.json")

    @staticmethod
    def _packaged(name: str) -> Calibration:
        text = resources.files("earmark.identify").joinpath(name).read_text()
        return Calibration(**json.loads(text))


def fit(X: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, iters: int = 200) -> Calibration:
    """Fit logistic weights by Newton's method (small problem: a few thousand rows).

    Parameters
    ----------
    X : np.ndarray [shape=(n, d)]
        :func:`features` of each alignment (or their first ``d`` columns).
    y : np.ndarray [shape=(n,)]
        1 where the alignment was a correct identification, else 0.
    """
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    w = np.zeros(d + 1)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ w, -50, 50)))
        g = A.T @ (p - y) + l2 * np.r_[w[:-1], 0.0]
        H = (A * (p * (1 - p))[:, None]).T @ A + l2 * np.eye(d + 1)
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Calibration(weights=[float(v) for v in w[:-1]], bias=float(w[-1]))
