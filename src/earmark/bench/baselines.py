# SPDX-License-Identifier: Apache-2.0
"""Open matchers that ``earmark bench identify`` runs beside earmark, on the same queries.

Each baseline drives an installed third-party tool or package through its documented
interface; none of their code lives here. All share one small protocol:

* :meth:`Baseline.build` indexes ``{reference id: audio path}`` (``workdir`` is scratch space),
* :meth:`Baseline.query` returns ``(best reference id or None, score)``.

Scores are each matcher's own and are not comparable across matchers; ``None`` means the
matcher's own "no match" rule fired (the score is then the best one it saw, or 0).

Baselines
---------
``chromaprint``
    Chromaprint's ``fpcalc`` (Debian ``libchromaprint-tools``). Whole files are fingerprinted
    with ``fpcalc -raw -json -length 0``; a query is slid along every reference's 32-bit
    sub-fingerprints and scored by bit agreement (1 − popcount(q XOR r) / 32n), the usual way
    to locate an excerpt with Chromaprint. Score: best bit agreement in [0, 1]; no match when
    the bit-error rate at the best alignment is above ``max_ber``.
``audfprint2``
    Landmark (Wang/Shazam-style) fingerprinting, the PyPI package ``audfprint2`` (a packaged
    fork of D. Ellis's audfprint), driven through its ``Analyzer``/``HashTable``/``Matcher``
    API with the CLI's defaults. Score: number of time-consistent matching landmarks; no match
    below the matcher's ``min_count``. Needs the ``ffmpeg`` binary on ``PATH``.
``audiolocate``
    Landmark matcher of the PyPI package ``audiolocate`` (one reference at a time, with an
    adaptive significance threshold); references are fingerprinted once, a query is matched
    against each. Score: time-consistent hash count. Linear in the number of references.

:func:`available_baselines` returns the ones whose tool or package is present, checked when it
is called, so importing this module never imports the third-party packages.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "AudfprintBaseline",
    "AudiolocateBaseline",
    "Baseline",
    "BaselineUnavailable",
    "ChromaprintBaseline",
    "available_baselines",
    "popcount32",
]


class BaselineUnavailable(RuntimeError):
    """The tool or package a baseline drives is not installed."""


@runtime_checkable
class Baseline(Protocol):
    """An open matcher run on the same references and queries as earmark."""

    name: str

    def build(self, ref_paths: dict[str, str], workdir: Path) -> None:
        """Index the references, ``{reference id: audio path}``; ``workdir`` is scratch."""
        ...

    def query(self, path: str) -> tuple[str | None, float]:
        """Best reference id (``None`` for no match) and the matcher's own score."""
        ...


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _map_parallel(fn: Callable[[str], Any], items: Iterable[str], workers: int) -> list[Any]:
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


# --------------------------------------------------------------------------------------------
# Chromaprint (fpcalc)
# --------------------------------------------------------------------------------------------

_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount32(x: np.ndarray) -> np.ndarray:
    """Set bits of each ``uint32`` element, as ``uint8``, same shape."""
    x = np.ascontiguousarray(x, dtype=np.uint32)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    b = _POP8[x.view(np.uint8)].reshape(*x.shape, 4)
    return b.sum(axis=-1, dtype=np.uint8)


class ChromaprintBaseline:
    """Chromaprint via ``fpcalc``, excerpt located by sliding bit-error rate.

    Parameters
    ----------
    fpcalc:
        The ``fpcalc`` executable (name on ``PATH`` or a path).
    max_ber:
        Largest bit-error rate at the best alignment still called a match. Unrelated audio
        sits near 0.5 at a random alignment, but its best alignment over a catalogue reaches
        about 0.32 (synthetic harmonic music, 1 h of references); the same audio, re-aligned
        or with mild noise, stays under 0.1.
    min_overlap:
        Alignments must overlap at least this many sub-fingerprints (about 0.124 s each), or the
        whole query / reference when shorter, so that queries that start before a reference or
        outlast it still match.
    workers:
        ``fpcalc`` processes run at once while building.
    """

    name = "chromaprint"
    #: seconds per Chromaprint sub-fingerprint (hop of 4096/3 samples at 11025 Hz)
    ITEM_S = 4096 / 3 / 11025

    def __init__(
        self,
        fpcalc: str = "fpcalc",
        *,
        max_ber: float = 0.25,
        min_overlap: int = 40,
        workers: int | None = None,
        block_elems: int = 1 << 22,
    ) -> None:
        self.fpcalc = fpcalc
        self.max_ber = max_ber
        self.min_overlap = min_overlap
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.block_elems = block_elems
        self._ids: list[str] = []
        self._fps: list[np.ndarray] = []
        #: reference id and alignment (in seconds, reference time minus query time) of the
        #: last query's best alignment, for reports
        self.last_alignment: tuple[str | None, float] = (None, 0.0)

    @staticmethod
    def is_available(fpcalc: str = "fpcalc") -> bool:
        return shutil.which(fpcalc) is not None

    @property
    def version(self) -> str:
        exe = shutil.which(self.fpcalc)
        if exe is None:
            return "missing"
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=False)
        return out.stdout.strip() or out.stderr.strip()

    def fingerprint(self, path: str) -> np.ndarray:
        """Raw Chromaprint sub-fingerprints of a whole file, ``uint32``."""
        exe = shutil.which(self.fpcalc)
        if exe is None:
            raise BaselineUnavailable(f"{self.fpcalc} not found (Debian: libchromaprint-tools)")
        proc = subprocess.run(
            [exe, "-raw", "-json", "-length", "0", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        # fpcalc 1.5.1 built on FFmpeg 5 (Debian bookworm) exits 3 with "Error decoding audio
        # frame (End of file)" after printing a complete fingerprint: 3 is its non-fatal code.
        if proc.returncode not in (0, 3) or not proc.stdout.strip():
            raise RuntimeError(
                f"fpcalc failed on {path} (exit {proc.returncode}): {proc.stderr.strip()}"
            )
        items = json.loads(proc.stdout).get("fingerprint") or []
        return (np.asarray(items, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32)

    def build(self, ref_paths: dict[str, str], workdir: Path) -> None:
        ids = list(ref_paths)
        fps = _map_parallel(self.fingerprint, [ref_paths[i] for i in ids], self.workers)
        self._ids = [i for i, f in zip(ids, fps, strict=True) if len(f)]
        self._fps = [f for f in fps if len(f)]

    def scores(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best bit agreement, its alignment (items) and overlap for every reference.

        The references are laid end to end, each preceded by ``len(q) - 1`` zero pads that are
        masked out, so one sliding window never touches two references and partial overlaps at
        either end are scored too.
        """
        k = len(self._fps)
        best = np.zeros(k)
        best_off = np.zeros(k, dtype=np.int64)
        best_n = np.zeros(k, dtype=np.int64)
        m = len(q)
        if m == 0 or k == 0:
            return best, best_off, best_n
        pad = m - 1
        lens = np.array([len(f) for f in self._fps], dtype=np.int64)
        starts = pad + np.concatenate(([0], np.cumsum(lens + pad)[:-1]))  # first item of each
        total = int(lens.sum() + pad * (k + 1))
        seq = np.zeros(total, dtype=np.uint32)
        valid = np.zeros(total, dtype=np.uint8)
        owner = np.empty(total, dtype=np.int64)
        prev_end = 0
        for j, (s, f) in enumerate(zip(starts, self._fps, strict=True)):
            seq[s : s + len(f)] = f
            valid[s : s + len(f)] = 1
            owner[prev_end : s + len(f)] = j  # the pad before a reference belongs to it
            prev_end = s + len(f)
        owner[prev_end:] = k - 1
        csum = np.concatenate(([0], np.cumsum(valid, dtype=np.int64)))
        n_win = total - m + 1
        overlap = csum[m : m + n_win] - csum[:n_win]
        w_owner = owner[:n_win]
        need = np.minimum(np.minimum(lens, m), self.min_overlap)[w_owner]
        ok = overlap >= need
        err = np.zeros(n_win, dtype=np.int64)
        seq_w = np.lib.stride_tricks.sliding_window_view(seq, m)
        val_w = np.lib.stride_tricks.sliding_window_view(valid, m)
        step = max(1, self.block_elems // m)
        for a in range(0, n_win, step):
            b = min(n_win, a + step)
            bits = popcount32(seq_w[a:b] ^ q)
            bits *= val_w[a:b]
            err[a:b] = bits.sum(axis=1, dtype=np.int64)
        agree = np.where(ok, 1.0 - err / (32.0 * np.maximum(overlap, 1)), -1.0)
        # per-reference maximum: windows of reference j are contiguous in window order
        bounds = np.concatenate(([0], np.cumsum(lens + pad)))
        bounds = np.minimum(bounds, n_win)
        for j in range(k):
            a, b = int(bounds[j]), int(bounds[j + 1])
            if b <= a:
                best[j] = -1.0
                continue
            i = a + int(np.argmax(agree[a:b]))
            best[j], best_off[j], best_n[j] = agree[i], i - starts[j], overlap[i]
        return best, best_off, best_n

    def query(self, path: str) -> tuple[str | None, float]:
        if not self._fps:
            raise RuntimeError("build() first")
        q = self.fingerprint(path)
        best, off, _ = self.scores(q)
        j = int(np.argmax(best))
        score = max(0.0, float(best[j]))
        if score <= 0.0 or 1.0 - score > self.max_ber:
            self.last_alignment = (None, 0.0)
            return None, score
        self.last_alignment = (self._ids[j], float(off[j]) * self.ITEM_S)
        return self._ids[j], score


# --------------------------------------------------------------------------------------------
# audfprint2 (landmarks, Ellis's audfprint)
# --------------------------------------------------------------------------------------------


class AudfprintBaseline:
    """Landmark fingerprinting with the PyPI package ``audfprint2``, its CLI defaults.

    ``density`` (hashes per second), ``fanout``, ``pks_per_frame``, ``match_win`` and
    ``min_count`` are the CLI's ``-n``, ``-F``, ``-P``, ``-w`` and ``-N``; the index is built with
    one analysis shift and queries are analysed with four, as ``audfprint new``/``match`` do.
    The hash table holds 2**hashbits × bucketsize ``uint32`` (400 MiB at the defaults).
    """

    name = "audfprint2"

    def __init__(
        self,
        *,
        density: float = 20.0,
        fanout: int = 3,
        pks_per_frame: int = 5,
        match_win: int = 2,
        min_count: int = 5,
        search_depth: int = 100,
        hashbits: int = 20,
        bucketsize: int = 100,
        query_shifts: int = 4,
    ) -> None:
        self.density = density
        self.fanout = fanout
        self.pks_per_frame = pks_per_frame
        self.match_win = match_win
        self.min_count = min_count
        self.search_depth = search_depth
        self.hashbits = hashbits
        self.bucketsize = bucketsize
        self.query_shifts = query_shifts
        self._ht: Any = None
        self._qanalyzer: Any = None
        self._matcher: Any = None
        self.last_alignment: tuple[str | None, float] = (None, 0.0)

    @staticmethod
    def is_available() -> bool:
        return importlib.util.find_spec("audfprint2") is not None and bool(shutil.which("ffmpeg"))

    @property
    def version(self) -> str:
        return _dist_version("audfprint2")

    def _mod(self) -> Any:
        if not self.is_available():
            raise BaselineUnavailable("pip install audfprint2 (and ffmpeg on PATH)")
        return importlib.import_module("audfprint2")

    def _analyzer(self, shifts: int) -> Any:
        an = self._mod().Analyzer(density=self.density)
        an.maxpksperframe = self.pks_per_frame
        an.maxpairsperpeak = self.fanout
        an.target_sr = 11025
        an.n_fft = 512
        an.n_hop = 256
        an.shifts = shifts
        an.fail_on_error = True
        return an

    def build(self, ref_paths: dict[str, str], workdir: Path) -> None:
        mod = self._mod()
        an = self._analyzer(1)
        hashes = {rid: an.wavfile2hashes(str(p)) for rid, p in ref_paths.items()}
        last = max((int(h[:, 0].max()) for h in hashes.values() if len(h)), default=0)
        timebits = max(14, math.ceil(math.log2(last + 2)))
        if timebits + math.ceil(math.log2(len(ref_paths) + 2)) > 32:
            raise ValueError("audfprint2: too many or too long references for 32-bit entries")
        ht = mod.HashTable(hashbits=self.hashbits, depth=self.bucketsize, maxtime=1 << timebits)
        ht.params["samplerate"] = an.target_sr
        for rid, h in hashes.items():
            ht.store(rid, [(int(t), int(v)) for t, v in h.tolist()])
        self._ht = ht
        self._qanalyzer = self._analyzer(self.query_shifts)
        m = mod.Matcher()
        m.window = self.match_win
        m.threshcount = self.min_count
        m.max_returns = 1
        m.search_depth = self.search_depth
        self._matcher = m

    def query(self, path: str) -> tuple[str | None, float]:
        if self._ht is None:
            raise RuntimeError("build() first")
        rows, _dur, _n = self._matcher.match_file(self._qanalyzer, self._ht, str(path))
        if len(rows) == 0:
            self.last_alignment = (None, 0.0)
            return None, 0.0
        tid, count, offset = int(rows[0][0]), int(rows[0][1]), int(rows[0][2])
        name = self._ht.names[tid]
        self.last_alignment = (name, offset * 256 / 11025)
        return name, float(count)


# --------------------------------------------------------------------------------------------
# audiolocate (landmarks, one reference at a time)
# --------------------------------------------------------------------------------------------


class AudiolocateBaseline:
    """Landmark matcher of the PyPI package ``audiolocate``, against each reference in turn."""

    name = "audiolocate"

    def __init__(self, **params: Any) -> None:
        self.params = params
        self._fp: Any = None
        self._refs: dict[str, Any] = {}
        self.last_alignment: tuple[str | None, float] = (None, 0.0)

    @staticmethod
    def is_available() -> bool:
        return importlib.util.find_spec("audiolocate") is not None

    @property
    def version(self) -> str:
        return _dist_version("audiolocate")

    def build(self, ref_paths: dict[str, str], workdir: Path) -> None:
        if not self.is_available():
            raise BaselineUnavailable("pip install audiolocate")
        self._fp = importlib.import_module("audiolocate").AudioFingerprint(**self.params)
        self._refs = {}
        self.failed: dict[str, str] = {}
        for rid, p in ref_paths.items():
            try:  # its decoder refuses some files that FFmpeg itself reads: skip, and say so
                self._refs[rid] = self._fp.fingerprint_audio(self._fp.load_audio(str(p)))[0]
            except Exception as exc:
                self.failed[rid] = f"{type(exc).__name__}: {exc}"

    def query(self, path: str) -> tuple[str | None, float]:
        if self._fp is None:
            raise RuntimeError("build() first")
        sample = self._fp.fingerprint_audio(self._fp.load_audio(str(path)))[0]
        best: tuple[str | None, float, int] = (None, 0.0, 0)
        top = 0.0
        for rid, ref in self._refs.items():
            r = self._fp.match(ref, sample)
            top = max(top, float(r.match_count))
            if r.is_match and r.match_count > best[1]:
                best = (rid, float(r.match_count), int(r.offset_frames))
        best_id, score, off = best
        self.last_alignment = (best_id, off * self._fp.hop_length / self._fp.sr)
        return (best_id, score) if best_id is not None else (None, top)


def available_baselines() -> list[Baseline]:
    """The baselines whose tool or package is installed now, in report order."""
    out: list[Baseline] = []
    if ChromaprintBaseline.is_available():
        out.append(ChromaprintBaseline())
    if AudfprintBaseline.is_available():
        out.append(AudfprintBaseline())
    if AudiolocateBaseline.is_available():
        out.append(AudiolocateBaseline())
    return out
