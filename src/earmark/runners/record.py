# SPDX-License-Identifier: Apache-2.0
"""The driver's side of ``earmark scan --record``: which inputs still need a scan, and the
recorder that writes the answered ones into the service database in transactions of
:data:`FLUSH_EVERY` (see :mod:`earmark.service.batch` for what a recorded scan is).

**What is skipped.** An input is skipped when every place the run writes to has it already:
the ``--results`` file (answered there) and, with ``--record``, the database (a scan with its
``external_id``). So a batch first run without ``--record`` and then with it gets recorded;
an input recorded but missing from a new ``--results`` file is scanned again for that file
and not recorded twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from earmark.runners.inputs import InputKey, ResultsFile
from earmark.service.batch import (
    BatchItem,
    Observed,
    RecordReport,
    batch_actor,
    external_id_of,
    record_batch,
    recorded,
)
from earmark.store.db import Database

FLUSH_EVERY = 64  #: answered inputs recorded per transaction (a crash loses at most these)


def record_id(key: InputKey) -> str:
    """The ``external_id`` a batch scan of the input with ``key`` is recorded under."""
    return external_id_of(key.path, key.size, key.mtime_ns)


def pending(inputs: Sequence[str], *, journal: ResultsFile | None,
            db: Database | None) -> tuple[list[tuple[str, InputKey | None]], int]:
    """``(inputs still to scan with their keys, how many were skipped)`` when the run writes
    to ``journal`` and / or ``db`` (keys are ``None`` when it writes to neither); an input
    named twice is scanned once."""
    if journal is None and db is None:
        return [(p, None) for p in inputs], 0
    keyed: list[tuple[str, InputKey]] = []
    seen: set[InputKey] = set()
    for p in inputs:
        k = InputKey.of(p)
        if k not in seen:
            seen.add(k)
            keyed.append((p, k))
    in_db = recorded(db, (record_id(k) for _, k in keyed)) if db is not None else set()
    todo: list[tuple[str, InputKey | None]] = [
        (p, k) for p, k in keyed
        if not ((journal is None or k in journal.answered)
                and (db is None or record_id(k) in in_db))]
    return todo, len(inputs) - len(todo)


class Recorder:
    """Buffers answered inputs and records them, :data:`FLUSH_EVERY` per transaction.

    Parameters
    ----------
    db : Database
        The service database (``EARMARK_DATABASE_URL``, else SQLite in the catalog folder).
    """

    def __init__(self, db: Database, *, flush_every: int = FLUSH_EVERY) -> None:
        self.db = db
        self.flush_every = flush_every
        self.actor = batch_actor()
        self.report = RecordReport()
        self.devices: dict[str, int] = {}  #: where the detector ran → inputs
        self._buf: list[BatchItem] = []

    def add(self, key: InputKey, result: dict[str, Any], observed: Observed | None) -> None:
        """One answered input (``observed`` ``None``: its worker was lost; not recorded)."""
        if observed is None:
            self.report.skipped += 1
            return
        if observed.device:
            self.devices[observed.device] = self.devices.get(observed.device, 0) + 1
        self._buf.append(BatchItem(external_id=record_id(key), path=key.path, result=result,
                                   observed=observed))
        if len(self._buf) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            items, self._buf = self._buf, []
            self.report.add(record_batch(self.db, items, actor=self.actor))

    def close(self) -> RecordReport:
        """Record what is buffered; the report of the whole run."""
        self.flush()
        return self.report

    def summary(self) -> str:
        """One line for stderr: what was recorded, and where the detector ran."""
        r = self.report
        if r.recorded:
            parts = [f"{n} {a}" for a, n in sorted(r.actions.items())]
            parts += [f"{r.failed} failed"] * bool(r.failed)
            line = (f"recorded {len(r.recorded)} scan(s) in the service database "
                    f"({', '.join(parts)})")
        else:
            line = "recorded nothing new in the service database"
        if r.existing:
            line += f"; {r.existing} already recorded"
        if r.skipped:
            line += (f"; {r.skipped} not recorded (a failure a re-run with --record tries "
                     "again)")
        if self.devices:
            line += "; detector ran on " + ", ".join(
                f"{d} ×{n}" for d, n in sorted(self.devices.items()))
        return line
