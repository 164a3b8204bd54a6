# SPDX-License-Identifier: Apache-2.0
"""Runners: map the scan of many inputs over this process or a Ray cluster.

The runner is an option, not a code path: every runner calls the same service function
(:func:`earmark.service.scan.scan_paths`) on a catalog it opened, and yields the same JSON
objects. ``local`` scans in this process (its index shards in the process, or on Ray actors
with ``--address``); ``ray`` spreads the inputs over Ray Data workers
(:mod:`earmark.runners.ray_batch`).

For ``earmark scan --record`` a runner is opened with a ``detector`` and :meth:`Runner.observe`
gives, with each result, what the service database needs to record it
(:class:`earmark.service.batch.Observed`: hash, owners, the detector's verdict).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol

from earmark.detect.base import Detector, get_detector
from earmark.service.batch import Observed, add_detection, observe
from earmark.service.catalog import Catalog, open_catalog
from earmark.service.scan import scan_paths

RunnerName = Literal["local", "ray"]


class Runner(Protocol):
    """Scans inputs against one catalog. Opening it (the constructor) raises the user's
    errors (no catalog, no cluster) before anything is scanned."""

    name: str

    def scan(self, inputs: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(position in inputs, result)`` as results come: each position exactly
        once, in any order; a bad input gives its ``error`` result and the run goes on."""
        ...

    def observe(self, inputs: Sequence[str]
                ) -> Iterator[tuple[int, dict[str, Any], Observed | None]]:
        """As :meth:`scan`, each result with its observation for the database (``None``
        where the worker was lost); needs a runner opened with a ``detector``."""
        ...

    def close(self) -> None:
        ...


class LocalRunner:
    """Scans in this process, in input order (what ``earmark scan`` always did)."""

    name = "local"

    def __init__(self, *, home: str | os.PathLike[str], max_seconds: float | None,
                 ray_address: str | None = None, replicas: int = 1,
                 detector: str | None = None) -> None:
        self.catalog: Catalog = open_catalog(home=home, write=False, ray_address=ray_address,
                                             replicas=replicas)
        self.max_seconds = max_seconds
        self.detector: Detector | None = None
        try:
            self.detector = get_detector(detector) if detector is not None else None
        except BaseException:
            self.catalog.close()
            raise

    def scan(self, inputs: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        yield from enumerate(scan_paths(catalog=self.catalog, paths=inputs,
                                        max_seconds=self.max_seconds))

    def observe(self, inputs: Sequence[str]
                ) -> Iterator[tuple[int, dict[str, Any], Observed | None]]:
        if self.detector is None:
            raise ValueError("open the runner with a detector to observe")
        for i, res in self.scan(inputs):
            obs = observe(self.catalog, inputs[i], res)
            yield i, res, add_detection(obs, inputs[i], res, self.detector,
                                        max_seconds=self.max_seconds)

    def close(self) -> None:
        self.catalog.close()


def open_runner(name: RunnerName, *, home: str | os.PathLike[str], max_seconds: float | None,
                ray_address: str | None = None, replicas: int = 1, workers: int | None = None,
                batch_size: int = 4, max_retries: int = 3,
                detector: str | None = None) -> Runner:
    """The runner called ``name``; see :class:`LocalRunner` and
    :class:`earmark.runners.ray_batch.RayBatchRunner` for the arguments each one uses.
    ``detector`` (a name of :func:`earmark.detect.base.get_detector`) readies
    :meth:`Runner.observe` for ``--record``."""
    if name == "local":
        return LocalRunner(home=home, max_seconds=max_seconds, ray_address=ray_address,
                           replicas=replicas, detector=detector)
    from earmark.runners.ray_batch import RayBatchRunner

    return RayBatchRunner(home=home, max_seconds=max_seconds, address=ray_address,
                          workers=workers, batch_size=batch_size, max_retries=max_retries,
                          detector=detector)
