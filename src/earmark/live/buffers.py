# SPDX-License-Identifier: Apache-2.0
"""Bounded buffers of one stream's matcher: its recent audio and its window's rows."""

from __future__ import annotations

import numpy as np


class Tail:
    """The last ``size`` samples of a stream, addressed by stream sample index."""

    def __init__(self, size: int) -> None:
        self.buf = np.zeros(2 * size, np.float32)
        self.size = size
        self.n = 0  #: samples pushed so far
        self.fill = 0  #: valid samples at the start of ``buf``

    def push(self, y: np.ndarray) -> None:
        y = np.asarray(y, np.float32)
        self.n += y.size
        y = y[-self.size:]
        if self.fill + y.size > self.buf.size:  # keep the last `size`, then append
            keep = min(self.fill, self.size - y.size)
            self.buf[:keep] = self.buf[self.fill - keep: self.fill]
            self.fill = keep
        self.buf[self.fill: self.fill + y.size] = y
        self.fill += y.size

    def last(self, k: int) -> np.ndarray:
        return self.buf[max(0, self.fill - k): self.fill]

    def span(self, a: int, b: int) -> np.ndarray:
        """Samples ``a:b`` of the stream, as far as they are still held."""
        first = self.n - self.fill
        return self.buf[max(0, a - first): max(0, min(b - first, self.fill))]


class Rows:
    """Columns of rows appended at the end and dropped from the front, without copying the
    rows kept (amortised: the live rows move to the front when the arrays are full).

    Rows are numbered from the first ever appended (``end`` is the next row's number).
    """

    def __init__(self, **dtypes: type) -> None:
        self.cols: dict[str, np.ndarray] = {k: np.empty(1024, d) for k, d in dtypes.items()}
        self.lo = self.hi = 0  # the live rows are cols[lo:hi]
        self.base = 0  # number of the row at index 0
        self.temp = 0  #: rows after ``hi`` that the next append overwrites

    def __len__(self) -> int:
        return self.hi - self.lo + self.temp

    @property
    def end(self) -> int:
        return self.base + self.hi

    @property
    def first(self) -> int:
        return self.base + self.lo

    def append(self, temp: bool, **vals: np.ndarray) -> None:
        n = len(next(iter(vals.values())))
        cap = len(next(iter(self.cols.values())))
        if self.hi + n > cap:
            live = self.hi - self.lo
            size = max(cap, 2 * (live + n))
            for k, a in self.cols.items():
                b = a if size == cap else np.empty(size, a.dtype)
                b[:live] = a[self.lo: self.hi]
                self.cols[k] = b
            self.base += self.lo
            self.lo, self.hi = 0, live
        for k, v in vals.items():
            self.cols[k][self.hi: self.hi + n] = v
        if temp:
            self.temp = n
        else:
            self.hi += n
            self.temp = 0

    def drop_to(self, row: int) -> None:
        """Drop the rows numbered below ``row``."""
        self.lo = max(self.lo, min(self.hi, row - self.base))

    def rows(self, first: int | None = None) -> dict[str, np.ndarray]:
        """Views of the live rows and the temporary ones (from row number ``first`` on)."""
        lo = self.lo if first is None else max(self.lo, min(self.hi, first - self.base))
        return {k: a[lo: self.hi + self.temp] for k, a in self.cols.items()}
