# SPDX-License-Identifier: Apache-2.0
"""The open baselines of ``earmark bench identify`` find an excerpt among a few references.

Each test runs only where its tool or package is installed (``fpcalc`` from Debian
``libchromaprint-tools``; ``audfprint2`` and ``audiolocate`` from the ``bench`` extra).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earmark.bench.baselines import (
    AudfprintBaseline,
    AudiolocateBaseline,
    Baseline,
    ChromaprintBaseline,
    available_baselines,
    popcount32,
)

SR = 11025

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def _tones(seed: int, duration: float) -> np.ndarray:
    """A seeded random sequence of harmonic notes with decaying envelopes."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(duration * SR), dtype=np.float64)
    t0 = 0.0
    while t0 < duration:
        length = float(rng.uniform(0.15, 0.6))
        n = int(length * SR)
        t = np.arange(n) / SR
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        note = sum(
            np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h
            for h in range(1, 6)
            if f0 * h < SR / 2
        )
        env = np.exp(-t / (0.4 * length)) * np.minimum(1.0, t / 0.005)
        a = int(t0 * SR)
        seg = (note * env)[: len(out) - a]
        out[a : a + len(seg)] += seg
        t0 += length * float(rng.uniform(0.6, 1.0))
    return (0.7 * out / np.max(np.abs(out))).astype(np.float32)


def _write_wav(path: Path, y: np.ndarray) -> str:
    subprocess.run(
        [
            *f"ffmpeg -hide_banner -loglevel error -y -f f32le -ar {SR} -ac 1 -i -".split(),
            *["-c:a", "pcm_s16le", str(path)],
        ],
        input=np.ascontiguousarray(y, dtype="<f4").tobytes(),
        check=True,
    )
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("baselines")
    refs = {f"ref{i}": _tones(100 + i, 30.0) for i in range(3)}
    ref_paths = {rid: _write_wav(d / f"{rid}.wav", y) for rid, y in refs.items()}
    start = int(11.37 * SR)  # not on any analysis-frame boundary
    excerpt = refs["ref1"][start : start + 8 * SR]
    return {
        "refs": ref_paths,
        "query": _write_wav(d / "q_ref1.wav", excerpt),
        "unknown": _write_wav(d / "q_unknown.wav", _tones(999, 8.0)),
        "workdir": d,
    }


def _make(cls: Any) -> Baseline:
    if not cls.is_available():
        pytest.skip(f"{cls.name} is not installed")
    b: Baseline = cls()
    return b


@pytest.mark.parametrize("cls", [ChromaprintBaseline, AudfprintBaseline, AudiolocateBaseline])
def test_baseline_finds_excerpt(cls: Any, corpus: dict[str, object]) -> None:
    b = _make(cls)
    assert isinstance(b, Baseline)
    b.build(corpus["refs"], corpus["workdir"])  # type: ignore[arg-type]
    rid, score = b.query(corpus["query"])  # type: ignore[arg-type]
    assert rid == "ref1", (b.name, rid, score)
    assert score > 0
    # the excerpt starts 11.37 s into ref1: the reported alignment says so too
    assert b.last_alignment[0] == "ref1"  # type: ignore[attr-defined]
    assert b.last_alignment[1] == pytest.approx(11.37, abs=0.3)  # type: ignore[attr-defined]
    none_id, _ = b.query(corpus["unknown"])  # type: ignore[arg-type]
    assert none_id is None, b.name


def test_popcount32() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**32, size=(7, 5), dtype=np.uint64).astype(np.uint32)
    want = np.vectorize(lambda v: bin(int(v)).count("1"))(x)
    assert np.array_equal(popcount32(x).astype(int), want)


def test_available_baselines_only_lists_installed() -> None:
    names = {b.name for b in available_baselines()}
    assert ("chromaprint" in names) == ChromaprintBaseline.is_available()
    assert ("audfprint2" in names) == AudfprintBaseline.is_available()
    assert ("audiolocate" in names) == AudiolocateBaseline.is_available()
