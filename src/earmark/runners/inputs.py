# SPDX-License-Identifier: Apache-2.0
"""Inputs of a batch scan and its results file (``earmark scan --manifest / --results``).

**Inputs.** Files named on the command line are scanned as given (echoed as given in
``input``); a folder gives its audio files, recursively, in sorted order; a manifest gives one
path per line, or a CSV file whose header has a ``path`` column (other columns are ignored).
Relative paths of a manifest are relative to the manifest's folder.

**Results file.** One JSON object per line: the scan result exactly as ``earmark scan
--json`` prints it, plus a ``resume`` object ``{"path", "size", "mtime_ns"}`` (the absolute
path and what ``stat`` said when the input was queued). A re-run skips every input whose
absolute path, size and modification time are in the file, and appends the rest. We key on
``stat`` rather than on a content hash because the skip must cost less than the scan: hashing
a million uploads reads every byte again (on object storage, downloads them again) just to
learn that nothing changed; a stat is one metadata call. The price: a file rewritten in place
with the same size and the same modification time (to the nanosecond) is not scanned again,
and a file moved to another path is. Results whose reason is an internal error or a lost
worker (``internal_error``, ``worker_lost``) do not count as answered: a re-run tries them
again. Each line is flushed as it is written, so a crash loses at most the inputs in flight;
a line cut short by a crash is dropped when the file is read again.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from earmark.errors import ManifestError
from earmark.service.ingest import AUDIO_EXTENSIONS

#: reasons (prefixes) of results that a re-run tries again
RETRY_REASONS = ("internal_error", "worker_lost")


def expand_inputs(paths: Iterable[str | os.PathLike[str]],
                  manifest: str | os.PathLike[str] | None = None) -> list[str]:
    """Files to scan: ``paths`` (folders expanded recursively) then the manifest's paths.

    A path that is neither a folder nor a file is kept: its scan reports ``file_missing``.
    """
    out: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*"))
                       if f.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS and f.is_file())
        else:
            out.append(os.fspath(raw))
    if manifest is not None:
        out.extend(read_path_manifest(manifest))
    return out


def read_path_manifest(path: str | os.PathLike[str]) -> list[str]:
    """Paths of a manifest: one per line (``#`` comments and blank lines skipped), or CSV
    with a ``path`` column when the first line names one."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {os.fspath(p)!r}: {exc.strerror}; give a "
                            "file with one path per line, or a CSV with a 'path' column"
                            ) from None
    header = [c.strip().lower() for c in next(csv.reader([text.split("\n", 1)[0]]), [])]
    if "path" in header:  # CSV: the path column
        rows = csv.DictReader(io.StringIO(text), fieldnames=header)
        next(rows, None)
        lines = [(r.get("path") or "").strip() for r in rows]
    else:
        lines = [ln.strip() for ln in text.splitlines()]
    out = []
    for ln in lines:
        if not ln or ln.startswith("#"):
            continue
        if "://" in ln:  # an URL FFmpeg reads (http, https)
            out.append(ln)
            continue
        f = Path(ln).expanduser()
        out.append(os.fspath(f if f.is_absolute() else p.parent / f))
    return out


@dataclass(frozen=True)
class InputKey:
    """What identifies an input across runs: its absolute path, size and mtime (``None``
    when it cannot be read)."""

    path: str
    size: int | None
    mtime_ns: int | None

    @classmethod
    def of(cls, path: str) -> InputKey:
        if "://" in path:
            return cls(path, None, None)
        try:
            st = os.stat(path)
        except OSError:
            return cls(os.path.abspath(path), None, None)
        return cls(os.path.abspath(path), st.st_size, st.st_mtime_ns)

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}


class ResultsFile:
    """A JSON-lines file of answered inputs, read once and then appended to.

    Parameters
    ----------
    path : path-like
        Created if missing. A last line cut short by a crash is removed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.answered: set[InputKey] = set()
        good_end = 0
        if self.path.exists():
            with open(self.path, "rb") as fh:
                data = fh.read()
            pos = 0
            for raw in data.splitlines(keepends=True):
                pos += len(raw)
                if not raw.endswith(b"\n"):
                    break  # cut short by a crash
                good_end = pos
                try:
                    row = json.loads(raw)
                    key = InputKey(**row["resume"])
                except (ValueError, TypeError, KeyError) as exc:
                    raise ManifestError(
                        f"{self.path.name}: line is not a result of earmark scan --results "
                        f"({exc}); give another --results file") from None
                if not str(row.get("reason") or "").startswith(RETRY_REASONS):
                    self.answered.add(key)
            if good_end < len(data):
                with open(self.path, "r+b") as fh:
                    fh.truncate(good_end)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = None

    def pending(self, inputs: Sequence[str]) -> tuple[list[tuple[str, InputKey]], int]:
        """``(inputs still to scan with their keys, how many were skipped)``; an input named
        twice is scanned once."""
        todo, seen, skipped = [], set(), 0
        for p in inputs:
            k = InputKey.of(p)
            if k in self.answered or k in seen:
                skipped += 1
                continue
            seen.add(k)
            todo.append((p, k))
        return todo, skipped

    def append(self, result: dict[str, Any], key: InputKey) -> None:
        """Write one result (flushed at once)."""
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps({**result, "resume": key.as_json()}, ensure_ascii=False)
                       + "\n")
        self._fh.flush()

    def sync(self) -> None:
        """Put the lines written so far on disk (``fsync``)."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
