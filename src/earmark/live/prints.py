# SPDX-License-Identifier: Apache-2.0
"""Query prints of an endless stream, computed once per sample.

A file query is fingerprinted over the whole speed ladder in one piece
(:meth:`TripletFingerprinter.query`). A stream cannot be: :class:`StreamPrints` keeps, for
each rung of the ladder, a streaming resampler (soxr), a :class:`PeakStream` and the few
peaks still needed as triplet partners, and returns each hash once, as soon as the peaks it
is made of (and the strongest-peak choice of its target zone) can no longer change. The
hashes are the ones the one-piece computation would give for the same stream, so the live
matcher inherits the file matcher's speed and pitch robustness; the work per second of
audio is constant and the state is bounded (no growth over a 24 h stream).

With ``speech=True`` (off by default; see below), each rung has a talk-over companion that
picks peaks among the cells the speech mask (:mod:`earmark.identify.speech`) leaves to the
music, in the one-second chunks where speech covers at least the fingerprinter's
``speech_gate`` of the audible cells; its hashes are added to the plain ones, as in file
queries. It runs the mask network on every rung's every chunk, which made the prints stage
~4.5× slower here (60 s of music: 116× → 26× real time), and its gain on live detection is
not measured yet, so live monitoring leaves it off until the mask is computed once per
second and warped onto the rungs, as file queries do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from earmark.identify.fingerprinter import PeakStream, TripletFingerprinter
from earmark.identify.hashes import Hashes, triplet_hashes
from earmark.identify.peaks import PeakParams, Peaks


@dataclass
class Settled:
    """Hashes that became final, in the stream's own coordinates (frames of the
    fingerprinter's frame rate; ``speed`` is the ladder rung of each hash)."""

    hashes: Hashes
    speed: np.ndarray
    n_peaks: int
    #: stream frame up to which every rung has settled (anchors before it are all out)
    upto: float


class _Rung:
    """The peaks and hashes of one rung of the ladder (samples already resampled by ``v``);
    with ``masked``, of its talk-over companion (peaks among the cells the speech mask
    leaves to the music, in chunks where speech covers at least that share)."""

    def __init__(self, fp: TripletFingerprinter, v: float, chunk_blocks: int,
                 masked: float | None = None) -> None:
        self.fp, self.v = fp, v
        params = PeakParams(**{**fp.peaks.__dict__, "per_second": fp.query_peaks_per_second})
        self.peaks = PeakStream(fp.spec, params, chunk_blocks, masked=masked)
        self.buf = Peaks.empty()
        self.done = 0.0  # rung frame: anchors before it have been hashed
        self.zone = fp.hashes.dt_max * (1.0 + fp.query_widen)  # longest triplet, rung frames

    def push(self, y: np.ndarray, last: bool = False) -> tuple[Hashes, int, float]:
        before = self.peaks.settled_frames
        new = self.peaks.finish() if last else self.peaks.push(y)
        fp = self.fp
        if self.peaks.settled_frames == before and not last:  # nothing settled: no new hash
            return Hashes.concat([]), 0, self.done / self.v
        if len(new):
            self.buf = Peaks.concat([self.buf, new])
        # an anchor is final once every peak of its target zone is
        limit = np.inf if last else self.peaks.settled_frames - self.zone - 1.0
        h = triplet_hashes(self.buf, fp.hashes, fan=fp.query_fan, widen=fp.query_widen,
                           margin=fp.query_margin)
        keep = (h.t >= self.done) & (h.t < limit)
        h = Hashes(h.key[keep], h.t[keep], h.f[keep], h.span[keep])
        if np.isfinite(limit):
            self.done = max(self.done, limit)
            self.buf = Peaks(*(a[self.buf.t >= self.done]
                               for a in (self.buf.t, self.buf.f, self.buf.s)))
        return self._to_stream(h), len(new), self.done / self.v

    def peek(self) -> Hashes:
        """Provisional hashes of the anchors not yet final (see :meth:`PeakStream.peek`)."""
        extra = self.peaks.peek()
        pk = Peaks.concat([self.buf, extra]) if len(extra) else self.buf
        fp = self.fp
        h = triplet_hashes(pk, fp.hashes, fan=fp.query_fan, widen=fp.query_widen,
                           margin=fp.query_margin)
        keep = h.t >= self.done
        return self._to_stream(Hashes(h.key[keep], h.t[keep], h.f[keep], h.span[keep]))

    def _to_stream(self, h: Hashes) -> Hashes:
        """Rung coordinates → the stream's own (as :meth:`TripletFingerprinter.query`)."""
        v = np.float32(self.v)
        return Hashes(h.key, h.t / v, h.f + np.float32(np.log2(self.v)
                                                        * self.fp.spec.bins_per_octave),
                      h.span / v)


class StreamPrints:
    """Incremental query hashes of one stream over the speed ladder.

    Parameters
    ----------
    fp : TripletFingerprinter
    chunk_blocks : int
        One-second peak blocks processed at a time per rung (1: lowest latency).
    speech : bool
        Add the talk-over companions (see the module's notes).

    Notes
    -----
    Hashes come out late by about one second plus the peak picker's margin and the triplet
    zone (~0.7 s) at speed 1, scaled by ``1/v`` for rung ``v``.
    """

    def __init__(self, fp: TripletFingerprinter, *, chunk_blocks: int = 1,
                 speech: bool = False) -> None:
        self.fp = fp
        sr = fp.spec.sr
        self.resamplers = {v: soxr.ResampleStream(sr, sr * v, 1, dtype="float32", quality="LQ")
                           for v in fp.ladder if v != 1.0}
        self.rungs = [_Rung(fp, v, chunk_blocks) for v in fp.ladder]
        if speech and fp.speech_mask:
            self.rungs += [_Rung(fp, v, chunk_blocks, masked=fp.speech_gate)
                           for v in fp.ladder]
        self.n_samples = 0

    def push(self, y: np.ndarray, *, last: bool = False) -> Settled:
        """Add mono float32 samples at ``fp.sr``; returns the hashes that became final."""
        y = np.asarray(y, np.float32)
        self.n_samples += y.size
        parts, speeds, n_peaks, upto = [], [], 0, np.inf
        at = {v: (y if v == 1.0 else self.resamplers[v].resample_chunk(y, last=last))
              for v in self.fp.ladder}
        for r in self.rungs:
            h, n, u = r.push(at[r.v], last=last)
            parts.append(h)
            speeds.append(np.full(len(h), r.v, np.float32))
            n_peaks += n
            upto = min(upto, u)
        return self._sorted(parts, speeds, n_peaks,
                            float(upto) if np.isfinite(upto)
                            else self.n_samples / self.fp.spec.hop)

    def peek(self, speeds: tuple[float, float] = (0.0, np.inf)) -> Settled:
        """Hashes of the stream's newest second or two that are not final yet (they will
        come out of :meth:`push` later, possibly slightly different), from the rungs whose
        speed lies in ``speeds`` (inclusive). Nothing is consumed."""
        rungs = [r for r in self.rungs if speeds[0] <= r.v <= speeds[1]]
        parts = [r.peek() for r in rungs]
        speeds_of = [np.full(len(h), r.v, np.float32) for r, h in zip(rungs, parts,
                                                                     strict=True)]
        return self._sorted(parts, speeds_of, 0, self.n_samples / self.fp.spec.hop)

    @staticmethod
    def _sorted(parts: list[Hashes], speeds: list[np.ndarray], n_peaks: int,
                upto: float) -> Settled:
        hashes = Hashes.concat(parts)
        order = np.argsort(hashes.t, kind="stable")
        return Settled(Hashes(*(a[order] for a in (hashes.key, hashes.t, hashes.f,
                                                   hashes.span))),
                       np.concatenate(speeds)[order], n_peaks, upto)
