# SPDX-License-Identifier: Apache-2.0
"""Reference inputs: folders and manifests → files to add; the pure fingerprinting worker.

:func:`fingerprint_file` is what a worker process (local pool today, a cluster runner later)
runs for one reference; it touches no database and no index.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, NamedTuple, cast

import numpy as np
from pydantic import BaseModel

from earmark.audio.decode import SILENCE_PEAK, iter_blocks
from earmark.errors import FileMissing, InputError, ManifestError, SilentInput
from earmark.identify import constellation
from earmark.identify.fingerprinter import Fingerprinter, TripletFingerprinter
from earmark.identify.hashes import Hashes
from earmark.identify.verify import pack

#: extensions picked up when a folder is added (a file named explicitly is always tried)
AUDIO_EXTENSIONS = frozenset(
    "wav flac mp3 ogg oga opus m4a aac mp4 webm mkv mka wma aiff aif".split()
)
MANIFEST_COLUMNS = ("id", "path", "title", "artist", "owner", "isrc")


class AddOutcome(BaseModel):
    """What happened to one input of :func:`earmark.service.catalog.add_references`."""

    input: str
    id: str | None
    status: Literal["added", "skipped", "failed"]
    reason: str | None = None


# -- the worker -----------------------------------------------------------------------------
class FingerprintResult(NamedTuple):
    sha256: str
    hashes: Hashes
    n_samples: int
    duration_ms: int
    #: the reference's packed sketch and constellation
    #: (:func:`earmark.identify.verify.pack`), when the fingerprinter makes them
    sketch: bytes | None = None


@functools.cache
def _default_fingerprinter() -> Fingerprinter:
    """One :class:`TripletFingerprinter` per worker process."""
    return cast(Fingerprinter, TripletFingerprinter())


def hash_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_file(
    path: str | os.PathLike[str], *, sr: int, max_seconds: float | None,
    fingerprinter: Fingerprinter | None = None, sha256: str | None = None,
) -> FingerprintResult:
    """Hash, decode (streamed) and fingerprint one reference file. Pure: runs on any worker.

    ``sha256`` is the file's hash when the caller has it already (it is not read twice).

    Returns
    -------
    FingerprintResult
        ``(sha256, hashes, n_samples, duration_ms)``; ``n_samples`` at ``sr`` Hz.

    Raises
    ------
    InputError
        Missing, empty, corrupt, unsupported, too long or silent input, or too little signal
        to form a single hash.
    """
    fp = fingerprinter if fingerprinter is not None else _default_fingerprinter()
    if fp.sr != sr:
        raise ValueError(f"fingerprinter runs at {fp.sr} Hz, not {sr}")
    name = Path(path).name
    try:
        sha = sha256 or hash_file(path)
    except FileNotFoundError:
        raise FileMissing(f"no such file: {os.fspath(path)!r}") from None
    except OSError as exc:
        raise InputError(f"cannot read {name!r}: {exc.strerror}") from None
    peak = 0.0

    def blocks() -> Iterator[np.ndarray]:
        nonlocal peak
        for b in iter_blocks(path, sr, max_seconds=max_seconds):
            if b.size:
                peak = max(peak, float(np.max(np.abs(b))))
            yield b

    sketch = None
    if hasattr(fp, "reference_verified"):
        hashes, n, sk, pk = fp.reference_verified(blocks())
        sketch = pack(sk, constellation.pack(pk.t, pk.f))
    else:
        hashes, n = fp.reference(blocks())
    if peak < SILENCE_PEAK:
        raise SilentInput(f"{name!r} is silent (peak under -80 dBFS)")
    if len(hashes) == 0:
        raise InputError(f"{name!r} has too little signal to fingerprint (no hashes formed)")
    return FingerprintResult(sha, hashes, n, round(n * 1000 / sr), sketch)


# -- inputs and manifests -------------------------------------------------------------------
@dataclass
class InputFile:
    """One file to add, with its reference id and metadata."""

    path: Path
    id: str
    meta: dict[str, str | None] = field(default_factory=dict)


def read_manifest(path: str | os.PathLike[str]) -> list[InputFile]:
    """Read a CSV manifest with columns ``id,path,title,artist,owner,isrc`` (header required).

    ``path`` is relative to the manifest's folder or absolute; an empty ``id`` means the file
    name without its extension.
    """
    p = Path(path)
    try:
        fh: IO[str] = open(p, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {os.fspath(p)!r}: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        if "path" not in cols:
            raise ManifestError(f"manifest {p.name!r} needs a header row with a 'path' column "
                                f"(columns: {','.join(MANIFEST_COLUMNS)})")
        unknown = [c for c in cols if c not in MANIFEST_COLUMNS]
        if unknown:
            raise ManifestError(f"manifest {p.name!r} has unknown column(s) {unknown}; use "
                                f"{','.join(MANIFEST_COLUMNS)}")
        out = []
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k}
            if not row.get("path"):
                raise ManifestError(f"{p.name}:{line}: empty path")
            f = Path(row["path"]).expanduser()
            f = f if f.is_absolute() else p.parent / f
            meta = {k: row.get(k) or None for k in ("title", "artist", "owner", "isrc")}
            out.append(InputFile(f, row.get("id") or f.stem, meta))
    return out


def collect_inputs(
    paths: Iterable[str | os.PathLike[str]], manifest: str | os.PathLike[str] | None = None
) -> tuple[list[InputFile], list[AddOutcome]]:
    """Expand files and folders (recursively) into inputs; also the paths that gave nothing.

    The manifest's files are added too; its ids and metadata apply to the same files named
    on the command line.
    """
    listed = read_manifest(manifest) if manifest is not None else []
    by_path = {_key(m.path): m for m in listed}
    found: dict[str, InputFile] = {}
    bad: list[AddOutcome] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*")
                           if f.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS and f.is_file())
            if not files:
                bad.append(AddOutcome(input=str(raw), id=None, status="failed",
                                      reason=f"no_audio_files: no audio files under {str(raw)!r}"))
        elif p.exists():
            files = [p]
        else:
            bad.append(AddOutcome(input=str(raw), id=None, status="failed",
                                  reason=FileMissing(f"no such file: {str(raw)!r}").reason))
            continue
        for f in files:
            k = _key(f)
            found.setdefault(k, by_path.get(k) or InputFile(f, f.stem))
            found[k].path = f
    for m in listed:
        found.setdefault(_key(m.path), m)
    return list(found.values()), bad


def _key(p: Path) -> str:
    return os.path.normcase(os.path.abspath(p))
