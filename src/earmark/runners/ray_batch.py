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

Every node needs earmark installed and the catalog folder (and the inputs) at the same path.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import CatalogError, ClusterError, RayMissing
from earmark.index.ray_shards import connect
from earmark.service.catalog import open_catalog
from earmark.service.scan import ScanResult, scan_paths

CHUNK = 10_000  #: inputs per Ray dataset (the driver's memory bound)


class ScanWorker:
    """The body of one Ray Data actor: a read-only catalog, opened once.

    Parameters
    ----------
    home : str
        The catalog folder, at the same path on every node.
    max_seconds : float or None
        Longer inputs are an error (``input_too_long``).
    """

    def __init__(self, home: str, max_seconds: float | None) -> None:
        self.catalog = open_catalog(home=home, write=False)
        self.max_seconds = max_seconds

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Scan a batch ``{"pos", "path"}``; returns ``{"pos", "result"}`` (JSON text)."""
        paths = [str(p) for p in batch["path"]]
        out = [json.dumps(r, ensure_ascii=False)
               for r in scan_paths(catalog=self.catalog, paths=paths,
                                   max_seconds=self.max_seconds)]
        return {"pos": np.asarray(batch["pos"]), "result": np.asarray(out, dtype=object)}


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
        Actors scanning at once (one CPU each). Default: the cluster's CPUs.
    batch_size : int
        Inputs per task: larger batches cost less scheduling, smaller ones lose less work
        when a worker dies and show results sooner.
    max_retries : int
        Times a batch is sent again after its worker died.
    worker_cls : type
        The actor class (:class:`ScanWorker`; tests give a subclass that fails on purpose).
    """

    name = "ray"

    def __init__(self, *, home: str | os.PathLike[str], max_seconds: float | None,
                 address: str | None = None, workers: int | None = None, batch_size: int = 4,
                 max_retries: int = 3, worker_cls: type[ScanWorker] = ScanWorker) -> None:
        self.home = str(Path(home).absolute())
        with open_catalog(home=self.home, write=False):  # no catalog: say so here, not N times
            pass
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
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, min(workers or cpus, cpus))
        if batch_size < 1 or max_retries < 0:
            raise CatalogError("batch_size must be ≥ 1 and max_retries ≥ 0")
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.max_seconds = max_seconds
        self.worker_cls = worker_cls
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
            yield from self._chunk(inputs, lo, min(len(inputs), lo + CHUNK))

    def _chunk(self, inputs: Sequence[str], lo: int, hi: int
               ) -> Iterator[tuple[int, dict[str, Any]]]:
        rows = [{"pos": i, "path": inputs[i]} for i in range(lo, hi)]
        n_blocks = -(-len(rows) // self.batch_size)
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing actor options to map_batches and names no other
            # way to bound the retries of a batch yet
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = self.data.from_items(rows, override_num_blocks=n_blocks).map_batches(
                self.worker_cls,
                fn_constructor_kwargs={"home": self.home, "max_seconds": self.max_seconds},
                batch_size=self.batch_size, batch_format="numpy", num_cpus=1,
                # one batch in flight per actor: a worker that dies takes only its own
                # batch with it (not the innocent ones queued behind it) into the retries
                compute=self.data.ActorPoolStrategy(size=min(self.workers, n_blocks),
                                                    max_tasks_in_flight_per_actor=1),
                max_restarts=-1, max_task_retries=self.max_retries)
        seen: set[int] = set()
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy",
                                         prefetch_batches=0):
                for pos, text in zip(batch["pos"], batch["result"], strict=True):
                    pos = int(pos)
                    if pos not in seen:
                        seen.add(pos)
                        yield pos, json.loads(text)
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
                           "to see why (a re-run with --results tries it again)"
                ).model_dump(mode="json")

    def close(self) -> None:
        """Nothing to release: the actors end with each chunk's dataset."""
