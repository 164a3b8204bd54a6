# SPDX-License-Identifier: Apache-2.0
"""Peak triplets → hashes invariant to pitch shift and time scaling.

For an anchor peak ``i`` and two later peaks ``j``, ``k`` (``t_i ≤ t_j ≤ t_k``) in its target
zone, the hash quantises

- ``f_j − f_i`` and ``f_k − f_i`` (log-frequency bins): a pitch shift or speed change moves all
  three peaks by the same number of bins, so these differences do not change;
- ``(t_j − t_i) / (t_k − t_i)``: a time scaling multiplies both spans by the same factor;
- ``log2(t_k − t_i)`` coarsely: this one does change with time scaling, so queries are first
  brought near the reference speed (:mod:`earmark.identify.fingerprinter` tries a ladder of
  speeds) and probe the neighbouring bucket when a value lies close to a quantisation edge.

Each hash comes with the anchor time and frequency and the span ``t_k − t_i``: a matching pair
of triplets then tells the time offset, the frequency shift and the time scale between query
and reference, which the matcher (:mod:`earmark.identify.match`) votes on.
The idea of scale-invariant triplets follows Panako (Six & Leman, ISMIR 2014) and quads
(Sonnleitner & Widmer, 2016); this implementation and its quantisation are our own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from earmark.identify.peaks import Peaks


@dataclass(frozen=True)
class HashParams:
    """Target zone and quantisation (frames and log-frequency bins)."""

    dt_min: float = 4.0  #: shortest span t_k − t_i, frames
    dt_max: float = 40.0  #: longest t_k − t_i, frames (0.64 s at 62.5 frames/s)
    df_max: float = 24.0  #: largest |f − f_i|, bins (2/3 octave at 36 bins/octave)
    fan: int = 4  #: the strongest `fan` peaks of the zone form C(fan, 2) triplets per anchor
    df_step: float = 1.0  #: quantisation of frequency differences, bins
    ratio_levels: int = 20  #: quantisation levels of the time ratio over [0, 1]
    span_step: float = 0.5  #: quantisation of log2(span), octaves
    min_df: float = 1.5  #: skip triplets whose three peaks lie within this many bins (one note)

    @property
    def df_levels(self) -> int:
        return 2 * int(np.ceil(self.df_max / self.df_step)) + 1

    @property
    def span_levels(self) -> int:
        return int(np.ceil(np.log2(self.dt_max / self.dt_min) / self.span_step)) + 2

    @property
    def n_keys(self) -> int:
        return self.df_levels**2 * self.ratio_levels * self.span_levels


@dataclass
class Hashes:
    """Hashes of one input, with where they come from.

    Attributes
    ----------
    key : np.ndarray [shape=(n,), dtype=uint32]
    t : np.ndarray [shape=(n,), dtype=float32]   anchor time, frames
    f : np.ndarray [shape=(n,), dtype=float32]   anchor frequency, bins
    span : np.ndarray [shape=(n,), dtype=float32]   t_k − t_i, frames
    """

    key: np.ndarray
    t: np.ndarray
    f: np.ndarray
    span: np.ndarray

    def __len__(self) -> int:
        return int(self.key.size)

    @staticmethod
    def concat(parts: list[Hashes]) -> Hashes:
        if not parts:
            z = np.zeros(0, np.float32)
            return Hashes(np.zeros(0, np.uint32), z, z.copy(), z.copy())
        return Hashes(*(np.concatenate([getattr(p, a) for p in parts])
                        for a in ("key", "t", "f", "span")))


@numba.njit(cache=True, nogil=True)
def _quant(x: float, step: float, lo: int, hi: int, margin: float) -> tuple[int, int]:
    """Bin of x (bins centred on multiples of step) and, when x lies within margin (in steps)
    of an edge, the neighbour (else -1)."""
    v = x / step + 0.5
    b = int(np.floor(v))
    fr = v - b
    other = -1
    if fr < margin:
        other = b - 1
    elif fr > 1.0 - margin:
        other = b + 1
    b = min(max(b, lo), hi)
    if other < lo or other > hi:
        other = -1
    return b, other


@numba.njit(cache=True, nogil=True)
def _triplets(t, f, s, dt_min, dt_max, df_max, fan, df_step, ratio_levels, span_step,
              log_dt_min, span_levels, margin, min_df):  # pragma: no cover - compiled
    n = t.size
    off = int(np.ceil(df_max / df_step))
    df_levels = 2 * off + 1
    max_out = n * (fan * (fan - 1) // 2) * 16 + 1
    keys = np.empty(max_out, np.uint32)
    anchor = np.empty(max_out, np.int64)
    span_out = np.empty(max_out, np.float32)
    zone = np.empty(fan, np.int64)
    zs = np.empty(fan, np.float32)
    m = 0
    opts = np.empty((4, 2), np.int64)
    idx = np.empty(4, np.int64)  # (allocated once, not in the loops: ~3× faster)
    sel = np.empty(fan, np.int64)
    for i in range(n):
        nz = 0
        j = i + 1
        while j < n and t[j] - t[i] <= dt_max:
            if abs(f[j] - f[i]) <= df_max and t[j] > t[i]:
                # keep the `fan` strongest so far (insertion into a small sorted buffer)
                if nz < fan:
                    zone[nz] = j
                    zs[nz] = s[j]
                    nz += 1
                else:
                    w = 0
                    for q in range(1, fan):
                        if zs[q] < zs[w]:
                            w = q
                    if s[j] > zs[w]:
                        zone[w] = j
                        zs[w] = s[j]
            j += 1
        if nz < 2:
            continue
        for a in range(nz):  # the zone in time order (an insertion sort: no allocation)
            v = zone[a]
            b = a
            while b > 0 and sel[b - 1] > v:
                sel[b] = sel[b - 1]
                b -= 1
            sel[b] = v
        for a in range(nz):
            ja = sel[a]
            for b in range(a + 1, nz):
                kb = sel[b]
                span = t[kb] - t[i]
                if span < dt_min:
                    continue
                r = (t[ja] - t[i]) / span
                d2 = f[ja] - f[i]
                d3 = f[kb] - f[i]
                if abs(d2) < min_df and abs(d3) < min_df:
                    continue  # a repeated note: common to every piece, tells nothing
                ls = np.log2(span) - log_dt_min
                opts[0, 0], opts[0, 1] = _quant(d2 + off * df_step, df_step, 0, df_levels - 1,
                                                margin)
                opts[1, 0], opts[1, 1] = _quant(d3 + off * df_step, df_step, 0, df_levels - 1,
                                                margin)
                opts[2, 0], opts[2, 1] = _quant(r, 1.0 / ratio_levels, 0, ratio_levels - 1,
                                                margin)
                opts[3, 0], opts[3, 1] = _quant(ls, span_step, 0, span_levels - 1, margin)
                for c in range(16):
                    ok = True
                    for d in range(4):
                        bit = (c >> d) & 1
                        if bit == 1 and opts[d, 1] < 0:
                            ok = False
                            break
                        idx[d] = opts[d, bit]
                    if not ok:
                        continue
                    key = ((idx[0] * df_levels + idx[1]) * ratio_levels + idx[2]) * span_levels \
                        + idx[3]
                    keys[m] = key
                    anchor[m] = i
                    span_out[m] = span
                    m += 1
    return keys[:m], anchor[:m], span_out[:m]


def triplet_hashes(
    peaks: Peaks, params: HashParams = HashParams(), *, fan: int | None = None,
    widen: float = 0.0, margin: float = 0.0
) -> Hashes:
    """Hash the peak triplets of ``peaks``.

    Parameters
    ----------
    peaks : Peaks
        Sorted by time.
    params : HashParams
    fan : int, optional
        Overrides ``params.fan``; queries use a larger fan so that they contain every
        triplet the reference may have chosen among extra (noise, speech) peaks.
    widen : float
        Relative widening of the time zone (queries: tolerance for a residual time scale).
    margin : float
        Multi-probe: also emit the neighbouring bucket of any value within ``margin``
        (fraction of a quantisation step) of an edge. 0 for references.

    Returns
    -------
    Hashes
    """
    if len(peaks) < 3:
        return Hashes.concat([])
    fan = params.fan if fan is None else fan
    dt_min = params.dt_min / (1.0 + widen)
    dt_max = params.dt_max * (1.0 + widen)
    keys, anchor, span = _triplets(
        peaks.t.astype(np.float64), peaks.f.astype(np.float64), peaks.s.astype(np.float32),
        dt_min, dt_max, params.df_max, fan, params.df_step, params.ratio_levels,
        params.span_step, np.log2(params.dt_min), params.span_levels, margin, params.min_df,
    )
    return Hashes(keys, peaks.t[anchor], peaks.f[anchor], span.astype(np.float32))
