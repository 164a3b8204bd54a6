# SPDX-License-Identifier: Apache-2.0
"""The fingerprinter: audio → hashes, for references (streamed) and for queries (speed ladder).

One protocol, :class:`Fingerprinter`; the built-in :class:`TripletFingerprinter` is registered
through the ``earmark.fingerprinters`` entry point like a third-party one would be.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import soxr

from earmark.identify import speech
from earmark.identify.hashes import Hashes, HashParams, triplet_hashes
from earmark.identify.peaks import PeakParams, Peaks, find_peaks
from earmark.identify.spectrogram import (
    SpectrogramParams,
    log_spectrogram,
    padded_log_spectrogram,
    refine_frequency,
)
from earmark.identify.verify import QueryView, SketchBuilder


@dataclass
class QueryPrints:
    """Hashes of a query, expressed in the query's own time and frequency coordinates.

    ``speed`` holds, per hash, the rung of the speed ladder that produced it.
    """

    hashes: Hashes
    speed: np.ndarray
    duration_s: float
    n_peaks: int

    @staticmethod
    def concat(parts: Sequence[QueryPrints]) -> QueryPrints:
        """Hashes of one query from several passes, in order (same duration)."""
        return QueryPrints(
            hashes=Hashes.concat([p.hashes for p in parts]),
            speed=np.concatenate([p.speed for p in parts]),
            duration_s=parts[0].duration_s,
            n_peaks=sum(p.n_peaks for p in parts),
        )


@runtime_checkable
class Fingerprinter(Protocol):
    """What the index and the matcher need from a fingerprinting method."""

    name: str
    version: str

    @property
    def sr(self) -> int:
        """Sample rate the fingerprinter expects, Hz."""
        ...

    @property
    def frame_rate(self) -> float:
        """Frames per second of its time axis."""
        ...

    @property
    def bins_per_octave(self) -> int:
        """Resolution of its log-frequency axis."""
        ...

    def reference(self, blocks: Iterable[np.ndarray]) -> tuple[Hashes, int]:
        """Hashes of a reference from a stream of mono blocks; also returns its sample count."""
        ...

    def query(self, y: np.ndarray) -> QueryPrints:
        """Hashes of a (short) query over the speed ladder."""
        ...


def speed_ladder(lo: float = 0.5, hi: float = 2.0, per_octave: int = 3) -> tuple[float, ...]:
    """Speeds tried on queries: ``2 ** (k / per_octave)`` from ``lo`` to ``hi``."""
    kmin = int(np.floor(np.log2(lo) * per_octave + 1e-9))
    kmax = int(np.ceil(np.log2(hi) * per_octave - 1e-9))
    return tuple(float(2.0 ** (k / per_octave)) for k in range(kmin, kmax + 1))


@dataclass
class TripletFingerprinter:
    """Scale- and shift-invariant peak triplets on a log-frequency spectrogram.

    References are fingerprinted once, at their own speed, sparsely. A query is slowed down or
    sped up along a ladder of speeds (0.5–2 by default, three rungs an octave) and each version
    is fingerprinted densely, so that one rung always lies within ±12 % of the true speed; the
    triplet hashes absorb the remaining scale and any pitch shift.
    """

    spec: SpectrogramParams = field(default_factory=SpectrogramParams)
    peaks: PeakParams = field(default_factory=PeakParams)
    hashes: HashParams = field(default_factory=HashParams)
    query_peaks_per_second: float = 18.0
    query_fan: int = 8
    query_widen: float = 0.15
    query_margin: float = 0.2
    ladder: tuple[float, ...] = field(default_factory=speed_ladder)
    chunk_blocks: int = 60  #: reference chunk length, in one-second peak blocks
    #: talk-over: where the speech mask (:mod:`earmark.identify.speech`) covers at least
    #: ``speech_gate`` of a query's audible cells, each rung also gets hashes of peaks picked
    #: among the cells the music dominates (added to, not instead of, the plain ones)
    speech_mask: bool = True
    speech_gate: float = 0.25
    speech_peaks_per_second: float = 26.0  #: denser: the mask has removed the speech peaks
    #: rungs of a query fingerprinted at once, in threads (the FFT, the filters, soxr and the
    #: triplet kernel release the GIL): a 5 s query's prints in ~31 ms instead of ~43 on two
    #: cores, for ~16 % more CPU; the hashes are the same. 1: in turn (what processes that
    #: already fill their core should ask for: the live matcher does)
    threads: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))

    name: str = "triplet"
    version: str = "1"

    @property
    def sr(self) -> int:
        return self.spec.sr

    @property
    def frame_rate(self) -> float:
        return self.spec.frame_rate

    @property
    def bins_per_octave(self) -> int:
        return self.spec.bins_per_octave

    # -- references -------------------------------------------------------------------------
    def reference_peaks(self, blocks: Iterable[np.ndarray]) -> tuple[Peaks, int]:
        """Peaks of a stream, computed chunk by chunk with the same result as in one piece."""
        return _stream_peaks(blocks, self.spec, self.peaks, self.chunk_blocks)

    def reference(self, blocks: Iterable[np.ndarray]) -> tuple[Hashes, int]:
        pk, n = self.reference_peaks(blocks)
        return triplet_hashes(pk, self.hashes), n

    def reference_sketched(self, blocks: Iterable[np.ndarray]
                           ) -> tuple[Hashes, int, np.ndarray]:
        """:meth:`reference` and the reference's sketch (:mod:`earmark.identify.verify`),
        from the same spectrogram in one pass."""
        return self.reference_verified(blocks)[:3]

    def reference_verified(self, blocks: Iterable[np.ndarray]
                           ) -> tuple[Hashes, int, np.ndarray, Peaks]:
        """:meth:`reference_sketched` and the peaks the hashes were made of (the
        reference's constellation, :mod:`earmark.identify.constellation`)."""
        ps = PeakStream(self.spec, self.peaks, self.chunk_blocks)
        ps.sketch = SketchBuilder(self.spec.n_bins)
        out = [ps.push(b) for b in _nonempty(blocks)]
        out.append(ps.finish())
        pk = Peaks.concat(out)
        return triplet_hashes(pk, self.hashes), ps.n_samples, ps.sketch.finish(), pk

    def view(self, y: np.ndarray, speech_cells: np.ndarray | None = None) -> QueryView:
        """What verification reads of a query (:class:`~earmark.identify.verify.QueryView`)."""
        return QueryView.of(log_spectrogram(np.asarray(y, np.float32), self.spec), speech_cells)

    # -- queries ----------------------------------------------------------------------------
    def query_peaks(self, y: np.ndarray) -> Peaks:
        """Dense peaks of a query at its own speed."""
        p = PeakParams(**{**self.peaks.__dict__, "per_second": self.query_peaks_per_second})
        pk, _ = _stream_peaks([y], self.spec, p, chunk_blocks=10**9)
        return pk

    def speech_cells(self, y: np.ndarray, gate: float | None = None) -> np.ndarray | None:
        """Cells of the query's spectrogram that speech dominates, or None when the speech
        mask is off or covers less than ``gate`` (default ``speech_gate``) of the audible
        cells."""
        return self._gated(*self._speech(y), gate)

    def talks(self, y: np.ndarray) -> bool:
        """Whether the speech mask is on and covers at least ``speech_gate`` of ``y``'s
        audible cells, as :meth:`speech_cells` says, after a smaller network has not ruled
        out music alone (:func:`speech.music_alone`). The live matcher's talk probe."""
        if not self.speech_mask:
            return False
        S = log_spectrogram(np.asarray(y, np.float32), self.spec)
        return not speech.music_alone(S) and self._gated(S, self.speech_of(S)) is not None

    def _gated(self, S: np.ndarray, cells: np.ndarray | None,
               gate: float | None = None) -> np.ndarray | None:
        """``cells`` when they cover at least ``gate`` (default ``speech_gate``) of the
        audible cells of ``S``, else None."""
        gate = self.speech_gate if gate is None else gate
        return cells if cells is not None and speech.coverage(cells, S) >= gate else None

    def _speech(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The query's log spectrogram and its speech cells (None: the mask is off)."""
        S = log_spectrogram(np.asarray(y, np.float32), self.spec)
        return S, self.speech_of(S)

    def speech_of(self, S: np.ndarray) -> np.ndarray | None:
        """The speech cells of ``S``, a log spectrogram of this fingerprinter's
        (:func:`~earmark.identify.spectrogram.log_spectrogram` with ``spec``), or None when
        the speech mask is off."""
        return speech.default_mask().speech_cells(S) if self.speech_mask else None

    def masked_query_peaks(self, y: np.ndarray, cells: np.ndarray) -> Peaks:
        """Dense peaks of ``y`` among the cells that ``cells`` (speech) leaves to the music."""
        S, lin = log_spectrogram(y, self.spec, linear=True)
        p = PeakParams(**{**self.peaks.__dict__, "per_second": self.speech_peaks_per_second})
        return find_peaks(S, p, frame_rate=self.spec.frame_rate, mask=~cells,
                          refine=partial(_refine, lin, self.spec))

    def query(self, y: np.ndarray) -> QueryPrints:
        """Hashes of a query over the speed ladder: the plain ones and, where the speech mask
        covers enough of the query, the talk-over companions (:meth:`talk_over`)."""
        plain = self.query_plain(y)
        extra = self.talk_over(y)
        return plain if extra is None else QueryPrints.concat([plain, extra])

    def query_plain(self, y: np.ndarray, rungs: Sequence[float] | None = None, *,
                    per_second: float | None = None) -> QueryPrints:
        """Hashes of dense peaks on every rung of the speed ladder (or on ``rungs``, some of
        its rungs), no speech mask; ``per_second`` peaks (default
        ``query_peaks_per_second``)."""
        y = np.asarray(y, np.float32)
        fp = self if per_second is None else replace(self, query_peaks_per_second=per_second)
        return self._ladder(y, lambda yv, v: fp.query_peaks(yv), rungs)

    def dynamics_db(self, y: np.ndarray) -> float:
        """How far the query's level moves in a frequency band: the median over log bins
        of the 90th minus the 20th percentile over time of its log spectrogram, dB. Music
        alone gives ~12–16 (8 at the least), music under stationary noise less: pink noise
        5 dB under it 8–11, 10 dB under it 8–14 (the corpus's 5 s excerpts)."""
        S = log_spectrogram(np.asarray(y, np.float32), self.spec)
        if S.shape[0] < 2:
            return 0.0
        lo, hi = np.percentile(S, [20.0, 90.0], axis=0)
        return float(np.median(hi - lo))

    def talk_over(self, y: np.ndarray, gate: float | None = None) -> QueryPrints | None:
        """The talk-over companions alone: on every rung, hashes of peaks picked among the
        cells the music dominates. None when the speech mask is off or covers less than
        ``gate`` (default ``speech_gate``) of the query (about 27 ms for 5 s to decide, on
        one thread).

        :class:`~earmark.identify.identifier.Identifier` asks for them only when the plain
        hashes found no confident match, so that music without talk pays nothing for them.
        The live matcher gates on its newest seconds and passes ``gate=0``: talk that began
        a few seconds ago covers too little of its whole window to pass the gate there.
        """
        y = np.asarray(y, np.float32)
        cells = self.speech_cells(y, gate)
        return None if cells is None else self.companions(y, cells)

    def talk_cells(self, y: np.ndarray) -> tuple[np.ndarray | None, QueryView]:
        """:meth:`speech_cells` (with the usual gate) and the query's
        :class:`~earmark.identify.verify.QueryView` with the speech cells taken out, from one
        spectrogram and one pass of the speech mask."""
        S, cells = self._speech(np.asarray(y, np.float32))
        view = QueryView.of(S, cells)
        if cells is None or speech.coverage(cells, S) < self.speech_gate:
            return None, view
        return cells, view

    def companions(self, y: np.ndarray, cells: np.ndarray,
                   rungs: Sequence[float] | None = None) -> QueryPrints:
        """The talk-over companions of ``y`` whose speech ``cells`` are known, on every rung
        (or on ``rungs``)."""
        hop, bpo = self.spec.hop, self.spec.bins_per_octave
        return self._ladder(np.asarray(y, np.float32), lambda yv, v: self.masked_query_peaks(
            yv, speech.warp(cells, v, 1 + yv.size // hop, bpo)), rungs)

    def _ladder(self, y: np.ndarray, peaks_of: Callable[[np.ndarray, float], Peaks],
                rungs: Sequence[float] | None = None) -> QueryPrints:
        sr, bpo = self.spec.sr, self.spec.bins_per_octave
        ladder = tuple(self.ladder if rungs is None else rungs)

        def rung(v: float) -> tuple[int, Hashes]:
            # slow the query down by v: if it had been sped up by v, this undoes it exactly
            yv = y if v == 1.0 else soxr.resample(y, sr, sr * v, quality="LQ").astype(np.float32)
            pk = peaks_of(yv, v)
            h = triplet_hashes(pk, self.hashes, fan=self.query_fan, widen=self.query_widen,
                               margin=self.query_margin)
            # back to the query's own coordinates
            h.t = h.t / np.float32(v)
            h.span = h.span / np.float32(v)
            h.f = h.f + np.float32(np.log2(v) * bpo)
            return len(pk), h

        # the slowest rungs, the longest audio, start first
        order = sorted(ladder)
        got = dict(zip(order, in_threads(rung, order, self.threads), strict=True))
        done = [got[v] for v in ladder]
        parts = [h for _, h in done]
        return QueryPrints(
            hashes=Hashes.concat(parts),
            speed=np.concatenate([np.full(len(h), v, np.float32)
                                  for v, h in zip(ladder, parts, strict=True)])
            if parts else np.zeros(0, np.float32),
            duration_s=y.size / sr,
            n_peaks=sum(n for n, _ in done),
        )


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  #: (pid, workers, pool)
_POOL_LOCK = threading.Lock()
_T = TypeVar("_T")
_R = TypeVar("_R")


def in_threads(fn: Callable[[_T], _R], items: Sequence[_T], threads: int) -> list[_R]:
    """``[fn(x) for x in items]``, on up to ``threads`` threads of a pool shared by the
    process (made again in a forked child, where the parent's threads do not run). Items
    start in the order given. Not re-entrant: ``fn`` must not call it again."""
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < threads:
            _POOL = (os.getpid(), threads, ThreadPoolExecutor(threads, "earmark-query"))
        pool = _POOL[2]
    futs = [pool.submit(fn, x) for x in items]
    return [f.result() for f in futs]


class PeakStream:
    """Peaks of a sample stream pushed block by block, the same as computed in one piece.

    Frames are processed in chunks of ``chunk_blocks`` one-second thinning blocks with
    enough context on either side (half the background window plus the peak radius), so a
    chunk's peaks never depend on where the stream was cut. :meth:`push` returns the peaks
    that became final, :meth:`finish` the rest; memory is bounded by one chunk plus margins.

    Parameters
    ----------
    spec : SpectrogramParams
    params : PeakParams
    chunk_blocks : int
        Thinning blocks per processed chunk (1 for the lowest latency).
    masked : float, optional
        Pick peaks among the cells the speech mask leaves to the music, and only in chunks
        where it covers at least this share of the audible cells (elsewhere: no peaks). The
        talk-over companion of a plain stream (:meth:`TripletFingerprinter.query`).
    """

    def __init__(self, spec: SpectrogramParams, params: PeakParams, chunk_blocks: int,
                 masked: float | None = None) -> None:
        self.spec, self.params = spec, params
        #: the gate of the speech-masked variant (None: plain peaks)
        self.masked = masked
        block = max(1, round(spec.frame_rate))
        self.chunk = block * chunk_blocks  # frames owned by one chunk
        self.margin = params.bg_frames // 2 + params.time_radius + 2  # context either side
        self.pad = spec.n_fft // 2
        self.buf = np.zeros(self.pad, np.float32)  # padded stream from padded sample buf0
        self.buf0 = 0
        self.f0 = 0  # first frame not yet emitted
        self.n_samples = 0
        #: pools the log spectrum of every settled frame into a reference sketch
        #: (:mod:`earmark.identify.verify`), when set
        self.sketch: SketchBuilder | None = None
        #: spectra of frames computed already: (log, linear, first frame)
        self._cache: tuple[np.ndarray, np.ndarray, int] = (
            np.zeros((0, spec.n_bins), np.float32),
            np.zeros((0, spec.n_fft // 2 + 1), np.float32), 0)

    @property
    def settled_frames(self) -> int:
        """Frames whose peaks have all been returned."""
        return self.f0

    def _run(self, upto: int, final: bool) -> list[Peaks]:
        spec, hop = self.spec, self.spec.hop
        out: list[Peaks] = []
        while True:
            n_avail = 1 + (self.buf0 + self.buf.size - spec.n_fft) // hop  # computable frames
            f1 = self.f0 + self.chunk
            if not final and f1 + self.margin > n_avail:
                return out
            f1 = min(f1, upto) if final else f1
            if f1 <= self.f0:
                return out
            g0 = max(0, self.f0 - self.margin)
            g1 = min(n_avail, f1 + self.margin)
            out.append(self._peaks(g0, g1, (self.f0, f1)))
            if self.sketch is not None:
                self.sketch.push(self._spectra(g0, g1)[0][self.f0 - g0: f1 - g0])
            self.f0 = f1
            drop = max(0, (self.f0 - self.margin) * hop - self.buf0)
            self.buf, self.buf0 = self.buf[drop:], self.buf0 + drop
            if final and self.f0 >= upto:
                return out

    def push(self, block: np.ndarray) -> Peaks:
        """Add samples; returns the peaks that are now final (absolute frames)."""
        if not block.size:
            return Peaks.empty()
        self.n_samples += block.size
        self.buf = np.concatenate([self.buf, block.astype(np.float32, copy=False)])
        return Peaks.concat(self._run(0, final=False))

    def peek(self) -> Peaks:
        """Provisional peaks of the frames after the settled ones, from the samples so far.

        Not final: their one-second thinning block is incomplete and the right-hand context
        short (only the peak radius is waited for), so a later :meth:`push` may return a
        slightly different set. Nothing is consumed. For low-latency live matching.
        """
        spec, hop = self.spec, self.spec.hop
        n_avail = 1 + (self.buf0 + self.buf.size - spec.n_fft) // hop
        f1 = n_avail - (self.params.time_radius + 1)
        if f1 <= self.f0:
            return Peaks.empty()
        g0 = max(0, self.f0 - self.margin)
        return self._peaks(g0, n_avail, (self.f0, f1))

    def _spectra(self, g0: int, g1: int) -> tuple[np.ndarray, np.ndarray]:
        """Log and linear spectra of frames ``g0:g1``. Consecutive chunks overlap by their
        margins and a :meth:`peek` reads the frames the next chunk reads again, so frames
        are computed once and kept while a later call may need them (from ``g0`` on: the
        first frame asked for never goes back)."""
        spec, hop = self.spec, self.spec.hop
        S, lin, c0 = self._cache
        c1 = c0 + len(S)
        if not c0 <= g0 <= c1:  # nothing to reuse
            S, lin, c0 = S[:0], lin[:0], g0
            c1 = g0
        if g1 > c1:
            seg = self.buf[c1 * hop - self.buf0: (g1 - 1) * hop + spec.n_fft - self.buf0]
            S2, lin2 = padded_log_spectrogram(seg, spec, linear=True)
            S, lin = np.concatenate([S[g0 - c0:], S2]), np.concatenate([lin[g0 - c0:], lin2])
        else:
            S, lin = S[g0 - c0:], lin[g0 - c0:]
        self._cache = (S, lin, g0)
        return S[: g1 - g0], lin[: g1 - g0]

    def _peaks(self, g0: int, g1: int, keep: tuple[int, int]) -> Peaks:
        spec = self.spec
        S, lin = self._spectra(g0, g1)
        mask = None
        if self.masked is not None:
            cells = speech.default_mask().speech_cells(S)
            inside = slice(keep[0] - g0, keep[1] - g0)
            if speech.coverage(cells[inside], S[inside]) < self.masked:
                return Peaks.empty()
            mask = ~cells
        return find_peaks(S, self.params, frame_rate=spec.frame_rate, frame0=g0, keep=keep,
                          refine=partial(_refine, lin, spec), mask=mask)

    def finish(self) -> Peaks:
        """The end of the stream: the remaining peaks."""
        self.buf = np.concatenate([self.buf, np.zeros(self.pad + self.spec.hop, np.float32)])
        n_frames = 1 + self.n_samples // self.spec.hop
        return Peaks.concat(self._run(n_frames, final=True))


def _stream_peaks(
    blocks: Iterable[np.ndarray], spec: SpectrogramParams, params: PeakParams, chunk_blocks: int
) -> tuple[Peaks, int]:
    """Peaks of a sample stream, in chunks of ``chunk_blocks`` thinning blocks plus margins."""
    ps = PeakStream(spec, params, chunk_blocks)
    out = [ps.push(b) for b in _nonempty(blocks)]
    out.append(ps.finish())
    return Peaks.concat(out), ps.n_samples


def _refine(lin: np.ndarray, spec: SpectrogramParams, ti: np.ndarray, fi: np.ndarray
            ) -> np.ndarray:
    return refine_frequency(lin, ti, fi, spec)


def _nonempty(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for b in blocks:
        if b.size:
            yield b
