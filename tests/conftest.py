# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: generated music written to real files with the ``ffmpeg`` CLI, and
catalogs built from them through the service layer (real SQLite, real index, no mocks)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earmark.audio.generators import synth_music
from earmark.service.catalog import Catalog, add_references, open_catalog

SR = 8000
REF_S = 20.0  #: length of the shared references, seconds
LONG_S = 90.0  #: length of the one long reference (windowed scans)

#: encoder arguments per extension
_CODECS: dict[str, list[str]] = {
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    "opus": ["-c:a", "libopus", "-b:a", "48k"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
}

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")

#: a throw-away PostgreSQL database (``scripts/pg-throwaway start`` makes one; CI does)
PG_URL = os.environ.get("EARMARK_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not PG_URL, reason="set EARMARK_TEST_POSTGRES_URL to a "
                                                       "throw-away PostgreSQL database "
                                                       "(scripts/pg-throwaway start)")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A private Ray cluster on this machine (2 CPUs and one logical GPU: Ray schedules
    ``num_gpus=1`` actors on it, though no CUDA device is behind it) for the whole session;
    yields ``ray``. Skips when Ray is not installed (``pip install 'earmark[ray]'``)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'earmark[ray]'")
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def music(seed: int, duration: float = REF_S) -> np.ndarray:
    """A seeded, music-like piece at :data:`SR`."""
    return synth_music(sr=SR, duration=duration, rng=np.random.default_rng(seed))


def write_audio(path: Path, y: np.ndarray, sr: int = SR) -> Path:
    """Encode mono float samples to ``path`` with the ffmpeg CLI (format from the extension)."""
    ext = path.suffix.lower().lstrip(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(sr),
         "-ac", "1", "-i", "-", *_CODECS[ext], "-f", _muxer(ext), "file:" + str(path)],
        input=np.asarray(y, np.float32).tobytes(), check=True,
    )
    return path


def _muxer(ext: str) -> str:
    return {"m4a": "ipod", "opus": "opus", "ogg": "ogg"}.get(ext, ext)


@dataclass
class Library:
    """Reference files on disk and the samples they were made from."""

    folder: Path
    files: dict[str, Path]  #: reference id → file
    signals: dict[str, np.ndarray]  #: reference id → samples at SR


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """Six 20 s references, one per format, and one 90 s reference (FLAC)."""
    folder = tmp_path_factory.mktemp("library")
    files, signals = {}, {}
    for seed, ext in enumerate(("wav", "flac", "mp3", "ogg", "opus", "m4a")):
        rid = f"ref{seed}"
        signals[rid] = music(seed)
        files[rid] = write_audio(folder / f"{rid}.{ext}", signals[rid])
    signals["long"] = music(60, LONG_S)
    files["long"] = write_audio(folder / "sub" / "long.flac", signals["long"])
    return Library(folder, files, signals)


@pytest.fixture(scope="session")
def catalog_home(library: Library, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog of the whole :func:`library`, built once (do not modify it in tests)."""
    home = tmp_path_factory.mktemp("catalog")
    with open_catalog(home=home, write=True) as cat:
        report = add_references(catalog=cat, paths=[library.folder], jobs=1)
    assert report.added == len(library.files), report
    return home


@pytest.fixture
def catalog(catalog_home: Path) -> Iterator[Catalog]:
    """The shared catalog, opened read-only."""
    with open_catalog(home=catalog_home) as cat:
        yield cat


@pytest.fixture
def writable(tmp_path: Path) -> Iterator[Catalog]:
    """A fresh, empty catalog open for writing."""
    with open_catalog(home=tmp_path / "cat", write=True) as cat:
        yield cat


@contextlib.contextmanager
def running(app: Any, *, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread; yields its URL once
    ``/healthz`` answers, and stops the server afterwards."""
    import httpx
    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not srv.started:
            assert t.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not answer /healthz"
            time.sleep(0.05)
        yield url
    finally:
        srv.should_exit = True
        t.join(10)


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema in the :data:`PG_URL` database, dropped afterwards; yields a URL whose
    connections use it (``search_path``), so each test starts from an empty database."""
    from sqlalchemy import text

    from earmark.store.db import open_db

    assert PG_URL
    schema = f"t{uuid.uuid4().hex[:10]}"
    admin = open_db(home=".", url=PG_URL, migrate=False)
    try:
        with admin.engine.begin() as c:
            c.execute(text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.engine.begin() as c:
            c.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.close()


def excerpt(y: np.ndarray, start_s: float, dur_s: float) -> np.ndarray:
    a = round(start_s * SR)
    return y[a: a + round(dur_s * SR)]


def ref_offset_ms(segment: dict) -> float:
    """Reference time (ms) at query time 0, from a segment of the JSON result."""
    return segment["ref_start_ms"] - segment["tempo_ratio"] * segment["query_start_ms"]
