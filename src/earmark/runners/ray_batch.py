# SPDX-License-Identifier: Apache-2.0
"""Batch scanning on Ray Data (``earmark scan --runner ray``).

The inputs become a Ray dataset of ``(position, path)`` rows, in chunks of at most
:data:`CHUNK` inputs (the driver never holds more than one chunk's references); each block
of ``batch_size`` rows goes to a :class:`ScanWorker` — a Ray actor that opened the catalog
once, with its index shards in the actor's process (the segment files are memory-mapped, so
the actors of one node share one copy through the page cache) — which runs the service's
:func:`~earmark.service.scan.scan_paths` and returns the JSON of each result. The driver
yields the results as blocks finish, in any order.

**Failures.** A bad input is an ``error`` result, as in the local scan. A worker process that
dies (out of memory, a crash in a decoder, a lost node) is restarted by Ray and its batch
sent again, up to ``max_retries`` times (Ray's ``max_task_retries`` of the actor pool); a
batch that still fails gives each of its inputs an ``error`` result with the reason
``worker_lost`` and the run goes on (a re-run with ``--results`` tries those again). The
driver keeps one answer per position, so an input is answered exactly once even if a retried
batch were delivered twice.

**Recording (``--record``).** With a ``detector`` the runner's :meth:`RayBatchRunner.observe`
adds what the service database needs, in two stages of actors:

1. identification (:class:`ScanWorker` with ``observe``), on CPU actors next to the
   catalog: the scan, the input's SHA-256 and size (one streaming read), the matched
   references' owners (:func:`earmark.service.batch.observe`);
2. detection (:class:`DetectWorker`), a stage of its own whose actors ask for one GPU each
   (``num_gpus=1``) when the cluster has GPUs (``cluster_resources()["GPU"] >= 1``: one
   actor per GPU) and are CPU actors otherwise (a quarter of the CPU actors, as the residue
   detector costs about a fifth of a scan on a 30 s clip).

Each stage decodes its input itself. Passing the decoded audio from one stage to the other
through the object store would save a decode but cost more: an hour of audio is 635 MB of
float32 at 44.1 kHz (the detectors' rate), copied into shared memory, perhaps shipped to
another node, held until the detector is done; compressed, the same hour is 30–100 MB read
from disk again, and decoding it is a small part of a scan. The detector picks its device
itself: a trained model runs on CUDA when onnxruntime offers it in the actor, else on the
CPU; a GPU actor without a usable CUDA (a cluster that declares GPUs Ray-side only, as the
tests do) is scheduled on the GPU and computes on the CPU. Each observation says which
(``device``: ``gpu:0/cuda``, ``gpu:0/cpu``, ``cpu/cpu``). The driver judges and records
(:class:`earmark.runners.record.Recorder`).

Every node needs earmark installed and the catalog folder (and the inputs) at the same path.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earmark.detect.base import available, get_detector
from earmark.errors import CatalogError, ClusterError, RayMissing, UnknownDetector
from earmark.index.ray_shards import connect
from earmark.service.batch import Observed, add_detection, observe
from earmark.service.catalog import open_catalog
from earmark.service.scan import ScanResult, scan_paths

CHUNK = 10_000  #: inputs per Ray dataset (the driver's memory bound)
#: share of the CPU actors that detect, on a cluster without GPUs
DETECT_SHARE = 0.25


@dataclass(frozen=True)
class Pools:
    """Actors of each stage: ``identify`` and ``detect`` (0: no detector stage), whether the
    detector actors ask for a GPU each, and the CPUs each actor asks for (under 1 only where
    the actors would not fit the cluster otherwise)."""

    identify: int
    detect: int
    detect_gpus: bool
    num_cpus: float


def plan_pools(*, cpus: float, gpus: float, workers: int | None, blocks: int,
               detect: bool) -> Pools:
    """The actor pools of a run on a cluster of ``cpus`` and ``gpus``.

    ``workers`` bounds the CPU actors (identification, and detection when there is no GPU);
    no pool is larger than the run's ``blocks``. With GPUs the detector gets one actor per
    GPU (each also asks for a CPU, to decode) and identification the CPUs left.
    """
    n_cpus = max(1, int(cpus))
    blocks = max(1, blocks)
    total = max(1, min(workers or n_cpus, n_cpus))
    if not detect:
        return Pools(min(total, blocks), 0, False, 1.0)
    if gpus >= 1:
        n_det = min(int(gpus), blocks)
        n_id = max(1, min(workers or n_cpus - n_det, n_cpus - n_det, blocks))
    else:
        n_det = max(1, min(round(total * DETECT_SHARE), blocks))
        n_id = max(1, min(total - n_det, blocks))
    return Pools(n_id, n_det, gpus >= 1, min(1.0, n_cpus / (n_id + n_det)))


class ScanWorker:
    """The body of one Ray Data actor: a read-only catalog, opened once.

    Parameters
    ----------
    home : str
        The catalog folder, at the same path on every node.
    max_seconds : float or None
        Longer inputs are an error (``input_too_long``).
    observe : bool
        Also observe each input for the database (hash, owners); the runner passes it only
        when recording, so subclasses written for the plain scan keep working.
    """

    def __init__(self, home: str, max_seconds: float | None, observe: bool = False) -> None:
        self.catalog = open_catalog(home=home, write=False)
        self.max_seconds = max_seconds
        self.observe = observe

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Scan a batch ``{"pos", "path"}``; returns ``{"pos", "result"}`` (JSON text), and
        with ``observe`` also ``"path"`` and ``"observed"`` (JSON text)."""
        paths = [str(p) for p in batch["path"]]
        results = list(scan_paths(catalog=self.catalog, paths=paths,
                                  max_seconds=self.max_seconds))
        out = {"pos": np.asarray(batch["pos"]),
               "result": np.asarray([json.dumps(r, ensure_ascii=False) for r in results],
                                    dtype=object)}
        if self.observe:
            out["path"] = np.asarray(paths, dtype=object)
            out["observed"] = np.asarray(
                [observe(self.catalog, p, r).model_dump_json() for p, r in
                 zip(paths, results, strict=True)], dtype=object)
        return out


class DetectWorker:
    """The body of one detector actor: the detector, loaded once, on the device Ray gave.

    Parameters
    ----------
    detector : str
        A name of :func:`earmark.detect.base.get_detector` (``residue``, ``model``, ...).
    max_seconds : float or None
    """

    def __init__(self, detector: str, max_seconds: float | None) -> None:
        import ray

        self.detector = get_detector(detector)
        self.max_seconds = max_seconds
        ids = [str(i) for i in ray.get_gpu_ids()]
        self.device = "gpu:" + ",".join(ids) if ids else "cpu"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the detector's verdict to ``{"pos", "path", "result", "observed"}``; returns
        ``{"pos", "result", "observed"}``."""
        obs = []
        for p, text, o in zip(batch["path"], batch["result"], batch["observed"], strict=True):
            got = add_detection(Observed.model_validate_json(o), str(p), json.loads(text),
                                self.detector, max_seconds=self.max_seconds,
                                device=self.device)
            obs.append(got.model_dump_json())
        return {"pos": np.asarray(batch["pos"]), "result": np.asarray(batch["result"]),
                "observed": np.asarray(obs, dtype=object)}


class RayBatchRunner:
    """Scan inputs with Ray Data workers; see the module docstring.

    Parameters
    ----------
    home : path-like
        Catalog folder (checked here, opened by each worker).
    max_seconds : float or None
    address : str, optional
        Ray cluster (``host:port``, ``auto``, ``local``); default ``$EARMARK_RAY_ADDRESS``,
        else a private local one. An already connected process keeps its connection.
    workers : int, optional
        CPU actors at once (one CPU each): the scanning actors, and with ``detector`` on a
        cluster without GPUs the detecting ones too (:func:`plan_pools`). Default: the
        cluster's CPUs.
    batch_size : int
        Inputs per task: larger batches cost less scheduling, smaller ones lose less work
        when a worker dies and show results sooner.
    max_retries : int
        Times a batch is sent again after its worker died.
    worker_cls : type
        The actor class (:class:`ScanWorker`; tests give a subclass that fails on purpose).
    detector : str, optional
        Ready :meth:`observe` (``--record``) with this detector (checked here, loaded by
        each detector actor).
    gpus : float, optional
        GPUs the detector stage may ask for (0: CPU actors). Default: the cluster's.
    """

    name = "ray"

    def __init__(self, *, home: str | os.PathLike[str], max_seconds: float | None,
                 address: str | None = None, workers: int | None = None, batch_size: int = 4,
                 max_retries: int = 3, worker_cls: type[ScanWorker] = ScanWorker,
                 detector: str | None = None, gpus: float | None = None) -> None:
        self.home = str(Path(home).absolute())
        with open_catalog(home=self.home, write=False):  # no catalog: say so here, not N times
            pass
        if detector is not None and detector not in available():
            raise UnknownDetector(f"unknown detector {detector!r}; available: "
                                  f"{', '.join(available())} (EARMARK_DETECTOR)")
        try:
            self.ray = connect(address)
        except (ConnectionError, RuntimeError) as exc:
            raise ClusterError(f"cannot reach a Ray cluster at {address}: {exc}; start one "
                               "with earmark cluster start, or check --address") from None
        try:
            self.data = importlib.import_module("ray.data")
        except ImportError as exc:
            raise RayMissing("Ray Data is not installed: pip install 'earmark[ray]' (it "
                             f"needs ray[data]: {exc})") from None
        res = self.ray.cluster_resources()
        self.cpus = float(res.get("CPU", 1))
        self.gpus = float(res.get("GPU", 0)) if gpus is None else gpus
        self.workers = workers
        if batch_size < 1 or max_retries < 0:
            raise CatalogError("batch_size must be ≥ 1 and max_retries ≥ 0")
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.max_seconds = max_seconds
        self.worker_cls = worker_cls
        self.detector = detector
        self._quiet()

    def _quiet(self) -> None:
        """Ray Data's own progress bars and plan logs off: the CLI draws one bar on stderr."""
        ctx = self.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.enable_operator_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        ctx.max_errored_blocks = -1  # a batch that failed for good: its inputs are errors
        logging.getLogger("ray.data").setLevel(logging.ERROR)

    def scan(self, inputs: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        for lo in range(0, len(inputs), CHUNK):
            for pos, res, _ in self._chunk(inputs, lo, min(len(inputs), lo + CHUNK), False):
                yield pos, res

    def observe(self, inputs: Sequence[str]
                ) -> Iterator[tuple[int, dict[str, Any], Observed | None]]:
        """As :meth:`scan`, with each result's observation (see the module docstring)."""
        if self.detector is None:
            raise ValueError("open the runner with a detector to observe")
        for lo in range(0, len(inputs), CHUNK):
            yield from self._chunk(inputs, lo, min(len(inputs), lo + CHUNK), True)

    def pools(self, n_blocks: int, observing: bool) -> Pools:
        """The actor pools of a chunk of ``n_blocks`` batches on this cluster."""
        return plan_pools(cpus=self.cpus, gpus=self.gpus, workers=self.workers,
                          blocks=n_blocks, detect=observing)

    def _dataset(self, rows: list[dict[str, Any]], observing: bool) -> Any:
        n_blocks = -(-len(rows) // self.batch_size)
        pools = self.pools(n_blocks, observing)
        kw = {"home": self.home, "max_seconds": self.max_seconds}
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing actor options to map_batches and names no other
            # way to bound the retries of a batch yet
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = self.data.from_items(rows, override_num_blocks=n_blocks).map_batches(
                self.worker_cls, fn_constructor_kwargs=kw | ({"observe": True} if observing
                                                             else {}),
                batch_size=self.batch_size, batch_format="numpy", num_cpus=pools.num_cpus,
                # one batch in flight per actor: a worker that dies takes only its own
                # batch with it (not the innocent ones queued behind it) into the retries
                compute=self.data.ActorPoolStrategy(size=pools.identify,
                                                    max_tasks_in_flight_per_actor=1),
                max_restarts=-1, max_task_retries=self.max_retries)
            if observing:
                ds = ds.map_batches(
                    DetectWorker, fn_constructor_kwargs={"detector": self.detector,
                                                         "max_seconds": self.max_seconds},
                    batch_size=self.batch_size, batch_format="numpy",
                    num_cpus=pools.num_cpus, num_gpus=1 if pools.detect_gpus else None,
                    compute=self.data.ActorPoolStrategy(size=pools.detect,
                                                        max_tasks_in_flight_per_actor=1),
                    max_restarts=-1, max_task_retries=self.max_retries)
        return ds

    def _chunk(self, inputs: Sequence[str], lo: int, hi: int, observing: bool
               ) -> Iterator[tuple[int, dict[str, Any], Observed | None]]:
        ds = self._dataset([{"pos": i, "path": inputs[i]} for i in range(lo, hi)], observing)
        seen: set[int] = set()
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy",
                                         prefetch_batches=0):
                obs = batch["observed"] if observing else [None] * len(batch["pos"])
                for pos, text, o in zip(batch["pos"], batch["result"], obs, strict=True):
                    pos = int(pos)
                    if pos not in seen:
                        seen.add(pos)
                        yield (pos, json.loads(text),
                               None if o is None else Observed.model_validate_json(o))
        except self.ray.exceptions.RayError as exc:  # e.g. no worker could open the catalog
            first = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
            raise ClusterError(
                f"the Ray Data run stopped ({type(exc).__name__}: {first}); every node needs "
                f"earmark installed and the catalog at {self.home}. Results so far are kept; "
                "with --results a re-run goes on from there") from None
        for pos in range(lo, hi):
            if pos not in seen:
                yield pos, ScanResult(
                    input=inputs[pos], status="error", duration_ms=None,
                    reason=f"worker_lost: the batch of this input failed "
                           f"{self.max_retries + 1} times (its worker died); scan it alone "
                           "to see why (a re-run with --results or --record tries it again)"
                ).model_dump(mode="json"), None

    def close(self) -> None:
        """Nothing to release: the actors end with each chunk's dataset."""
