# SPDX-License-Identifier: Apache-2.0
"""Verification: does the query's spectrum agree with the reference's under an alignment?

The triplet hashes find *where* a reference might lie in a query; under talk-over or noise
only a few of them survive, and an alignment of 5–12 hashes is then no stronger than the
chance alignments of other references. What tells them apart is the rest of the spectrum:
under the right transform, the music the query still shows (the cells the speech mask leaves
it) follows the reference's passage cell for cell; under a chance alignment it does not.

Every reference therefore keeps a **sketch**: its log-frequency spectrogram pooled to
``frames`` × ``bins`` cells (128 ms × 2 semitones by default), whitened by its local mean and
quantised to 4 bits (~117 bytes per second, 0.42 MB per audio hour). At query time each
alignment maps the query's whitened cells onto the reference's sketch (frame ``i`` → reference
frame ``offset + scale · i``, bin ``b`` → ``b − shift``), averages them per sketch cell, and
the Pearson correlation of the two is the alignment's **agreement**: about 0.7–0.9 for right
alignments under speech 5 dB louder than the music, below ~0.35 for chance ones
(``docs/fingerprint.md``). The confidence model reads it as a feature.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy.ndimage import uniform_filter

FLOOR_DB = -80.0  #: log spectra are floored here before whitening
QUERY_WHITEN = (31, 25)  #: frames × bins of the query's local mean (≈0.5 s × 2/3 octave)


@dataclass(frozen=True)
class SketchParams:
    """Cell size of a sketch, in spectrogram frames and log-frequency bins."""

    frames: int = 8
    bins: int = 6
    step_db: float = 2.0  #: quantisation step of the whitened level

    @property
    def whiten(self) -> tuple[int, int]:
        """Size of the sketch's local mean, in sketch cells (same span as the query's)."""
        return (max(1, round(QUERY_WHITEN[0] / self.frames)),
                max(1, round(QUERY_WHITEN[1] / self.bins)))


class SketchBuilder:
    """Pool a log spectrogram's frames as they stream in; :meth:`finish` gives the sketch.

    Memory is one partial cell row plus the pooled rows (``n_bins / bins`` floats per
    ``frames`` frames).
    """

    def __init__(self, n_bins: int, params: SketchParams = SketchParams()) -> None:
        self.params = params
        self.nb = n_bins // params.bins
        self._rest = np.zeros((0, self.nb), np.float32)
        self._rows: list[np.ndarray] = []

    def push(self, S: np.ndarray) -> None:
        """Add frames, shape ``(n, n_bins)``, in order."""
        p = self.params
        B = np.maximum(S[:, : self.nb * p.bins], FLOOR_DB).reshape(len(S), self.nb, p.bins)
        x = np.concatenate([self._rest, B.mean(axis=2, dtype=np.float32)])
        n = len(x) // p.frames
        if n:
            self._rows.append(x[: n * p.frames].reshape(n, p.frames, self.nb).mean(axis=1))
        self._rest = x[n * p.frames:]

    def finish(self) -> np.ndarray:
        """The sketch, shape ``(cells, n_bins // bins)``, int8 levels in −8…7."""
        rows = self._rows + ([self._rest.mean(axis=0, keepdims=True)] if len(self._rest) else [])
        if not rows:
            return np.zeros((0, self.nb), np.int8)
        C = np.concatenate(rows)
        W = C - uniform_filter(C, size=self.params.whiten, mode="nearest")
        return np.clip(np.rint(W / self.params.step_db), -8, 7).astype(np.int8)


def sketch_of(S: np.ndarray, params: SketchParams = SketchParams()) -> np.ndarray:
    """The sketch of a whole log spectrogram (see :class:`SketchBuilder`)."""
    b = SketchBuilder(S.shape[1], params)
    b.push(S)
    return b.finish()


def pack(sketch: np.ndarray, constellation: bytes | None = None) -> bytes:
    """4-bit packing: two cells per byte, then the row width (uint16) at the front. With a
    ``constellation`` (:func:`earmark.identify.constellation.pack`), the blob starts with
    ``CONSTELLATION``, its length (uint32) and it, then the sketch as before."""
    flat = (sketch.astype(np.int16).ravel() + 8).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(8))
    head = b"" if constellation is None else (
        CONSTELLATION + np.uint32(len(constellation)).tobytes() + constellation)
    return (head + np.uint16(sketch.shape[1]).tobytes()
            + (flat[0::2] << 4 | flat[1::2]).astype(np.uint8).tobytes())


#: the first bytes of a blob that carries the reference's constellation before its sketch
#: (a sketch alone starts with its width, 30 for the default parameters)
CONSTELLATION = b"C1"


def split(blob: bytes) -> tuple[bytes, bytes | None]:
    """A stored blob as ``(sketch, constellation)``; None: a blob written before
    constellations."""
    if blob[:2] != CONSTELLATION:
        return blob, None
    n = int(np.frombuffer(blob[2:6], np.uint32)[0])
    return blob[6 + n:], blob[6: 6 + n]


def unpack(blob: bytes) -> np.ndarray:
    """Inverse of :func:`pack` (the sketch): int8 levels, shape ``(cells, width)``."""
    blob = split(blob)[0]
    width = int(np.frombuffer(blob[:2], np.uint16)[0])
    b = np.frombuffer(blob[2:], np.uint8)
    flat = np.empty(b.size * 2, np.int8)
    flat[0::2] = (b >> 4).astype(np.int8) - 8
    flat[1::2] = (b & 0xF).astype(np.int8) - 8
    n = flat.size // width if width else 0
    return flat[: n * width].reshape(n, width)


@dataclass
class QueryView:
    """A query's whitened log spectrum and the cells verification may read.

    Attributes
    ----------
    white : np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        dB above the local mean.
    usable : np.ndarray [shape=(n_frames, n_bins), dtype=bool]
        Cells the music holds: not masked as speech, above the floor.
    """

    white: np.ndarray
    usable: np.ndarray

    @staticmethod
    def of(S: np.ndarray, speech: np.ndarray | None = None) -> QueryView:
        """From a query's log spectrogram ``S`` and its speech cells (None: no talk)."""
        S = np.maximum(S, FLOOR_DB)
        white = (S - uniform_filter(S, size=QUERY_WHITEN, mode="nearest")).astype(np.float32)
        usable = S > FLOOR_DB + 1.0
        if speech is not None:
            usable &= ~speech
        return QueryView(white, usable)


MIN_CELLS = 20  #: sketch cells an agreement needs; with fewer it is 0


def agreement(view: QueryView, sketch: np.ndarray, offset: float, scale: float, shift: float,
              params: SketchParams = SketchParams()) -> float:
    """Correlation of the query with a reference's sketch under one alignment.

    Parameters
    ----------
    view : QueryView
    sketch : np.ndarray [shape=(cells, width), dtype=int8]
    offset : float
        Reference frame at query frame 0.
    scale : float
        Tempo ratio: reference frames per query frame.
    shift : float
        Query bin minus reference bin.

    Returns
    -------
    float
        Pearson correlation over the sketch cells that at least a quarter of their query
        cells reach, in −1…1; 0 when fewer than :data:`MIN_CELLS` such cells.
    """
    n, nb = view.white.shape
    if n == 0 or sketch.size == 0:
        return 0.0
    ci = np.floor((offset + scale * np.arange(n)) / params.frames).astype(np.int64)
    cb = np.floor((np.arange(nb) - shift) / params.bins).astype(np.int64)
    cnt, tot = _pool(view.white, view.usable, ci, cb, sketch.shape[0], sketch.shape[1])
    full = max(2.0, params.frames / max(scale, 1e-3) * params.bins / 4)
    g = cnt >= full
    if int(g.sum()) < MIN_CELLS:
        return 0.0
    q = tot[g] / cnt[g]
    r = sketch.ravel()[g].astype(np.float64)
    q = q - q.mean()
    r = r - r.mean()
    den = float(np.sqrt((q * q).sum() * (r * r).sum()))
    return float((q * r).sum() / den) if den > 0 else 0.0


@numba.njit(cache=True, nogil=True)
def _pool(white, usable, ci, cb, rows, cols):  # pragma: no cover - compiled
    """Count and sum (float64, in row-major order: what ``np.bincount`` gives) the usable
    query cells that fall in each sketch cell (``ci`` per frame, ``cb`` per bin)."""
    cnt = np.zeros(rows * cols, np.int64)
    tot = np.zeros(rows * cols, np.float64)
    for i in range(white.shape[0]):
        r = ci[i]
        if r < 0 or r >= rows:
            continue
        for j in range(white.shape[1]):
            c = cb[j]
            if usable[i, j] and 0 <= c < cols:
                cnt[r * cols + c] += 1
                tot[r * cols + c] += np.float64(white[i, j])
    return cnt, tot


class SketchCache:
    """Unpacked sketches by reference key, loaded on demand from ``load`` (a store's
    ``sketches``), the most recently used kept in memory up to ``max_bytes`` (a 4-minute
    reference takes ~56 kB unpacked). Keys are never reused, so an entry of a removed
    reference is only dead weight. With another ``unpack`` (None for a blob without what
    it reads) it caches that instead: :func:`earmark.identify.constellation.of_blob`."""

    def __init__(self, load: Callable[[Iterable[int]], dict[int, bytes]],
                 max_bytes: int = 64 << 20,
                 unpack: Callable[[bytes], Any] = unpack) -> None:
        self.load = load
        self.max_bytes = max_bytes
        self.unpack = unpack
        self._bytes = 0
        self._items: OrderedDict[int, Any] = OrderedDict()
        self._missing: set[int] = set()

    def get(self, keys: Sequence[int]) -> dict[int, Any]:
        """The sketches of those ``keys`` that have one."""
        want = [k for k in keys if k not in self._items and k not in self._missing]
        if want:
            got = self.load(want)
            for k in want:
                item = self.unpack(got[k]) if k in got else None
                if item is not None:
                    self._items[k] = item
                    self._bytes += _nbytes(item)
                else:
                    self._missing.add(k)
        out = {}
        for k in keys:
            if k in self._items:
                self._items.move_to_end(k)
                out[k] = self._items[k]
        while self._bytes > self.max_bytes and len(self._items) > len(out):
            self._bytes -= _nbytes(self._items.popitem(last=False)[1])
        return out


def _nbytes(item: Any) -> int:
    """Memory of a cached array or tuple of arrays."""
    if isinstance(item, tuple):
        return sum(int(a.nbytes) for a in item)
    return int(item.nbytes)
