# SPDX-License-Identifier: Apache-2.0
"""The detail stage of alignment (``identify/fit.py``) on generated candidate sets."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark.identify.fit import detail, fit_line


@settings(max_examples=40, deadline=None)
@given(a=st.floats(-5000, 5000), s=st.floats(0.5, 2.0), seed=st.integers(0, 2**16))
def test_fit_line_finds_the_line_among_outliers(a: float, s: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tq = np.sort(rng.uniform(0, 500, 60))  # query frames (8 s at 62.5 frames/s)
    tr = a + s * tq + rng.normal(0, 0.5, tq.size)
    out = rng.random(tq.size) < 0.3  # a third of chance candidates off the line
    tr[out] += rng.uniform(20, 400, out.sum()) * rng.choice([-1, 1], out.sum())
    fa, fs, inl = fit_line(tq, tr, s * 1.01, 3.0)  # the vote's slope is ~1 % off
    assert abs(fs - s) < 0.005 * s and abs(fa - a) < 3.0
    assert inl[~out].mean() > 0.95 and not inl[out].any()


def _cell(sb: int, lb: int, ob: int) -> int:
    return ((sb & 0xFF) << 24) | ((lb & 0xFF) << 16) | (ob & 0xFFFF)


def test_a_candidate_serves_the_first_cell_that_keeps_it() -> None:
    # one reference (one slice), 12 candidates on a line at shift bin -3, log-scale bin 2;
    # the same cell twice: the second finds its inliers taken and makes no alignment
    n = 12
    tq = np.linspace(0, 400, n)
    tr = 1000 + 1.2 * tq
    sb, lb, ob = np.full(n, -3), np.full(n, 2), np.full(n, 1100)
    ls = np.full(n, np.log2(1.2))
    shift = np.full(n, -6.0)
    entry = np.arange(n) // 2  # pairs of candidates share an entry (two rungs): 6 distinct
    cells = np.array([_cell(-3, 2, 1100)] * 2, np.int64)
    kept, a, s, sh, score, good, cut = detail(
        cells, np.array([0, 0]), np.array([n, n]), sb, lb, ob, tq, tr, ls, shift, entry,
        3.0, 5)
    assert kept.tolist() == [0] and score.tolist() == [6]
    assert abs(a[0] - 1000) < 1e-6 and abs(s[0] - 1.2) < 1e-9 and sh[0] == -6.0
    assert sorted(good[cut[0]:cut[1]].tolist()) == list(range(n))
    # a cell two shift bins away sees none of them
    kept2, *_ = detail(np.array([_cell(-1, 2, 1100)], np.int64), np.array([0]),
                       np.array([n]), sb, lb, ob, tq, tr, ls, shift, entry, 3.0, 5)
    assert kept2.size == 0
