# SPDX-License-Identifier: Apache-2.0
"""Split a catalog's index into shards by ranges of reference keys (``earmark catalog reshard``).

The stored hashes are copied (:meth:`SegmentIndex.export`), not recomputed, into new shard
directories; then ``index/layout.json`` is replaced in one rename, which is the switch: a
crash before it leaves the old layout in force (the half-written new shards are deleted by
the next reshard), a crash after it leaves only old directories to delete. Scans give the
same answers before and after (:class:`~earmark.index.sharded.ShardedIndex` applies one
stop-word rule to the whole catalog).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from earmark.errors import CatalogError
from earmark.index.segments import SegmentIndex
from earmark.index.sharded import LocalShard, ShardedIndex, ShardLayout, open_local
from earmark.service.catalog import Catalog

COPY_BATCH = 64  #: references copied per add (one segment each)


@dataclass
class ReshardReport:
    shards: int
    references: int
    entries: int
    layout: ShardLayout


def _generation(name: str) -> int:
    m = re.fullmatch(r"shard-g(\d+)-\d+", name)
    return int(m.group(1)) if m else 1


def reshard_catalog(*, catalog: Catalog, shards: int) -> ReshardReport:
    """Split ``catalog``'s references into ``shards`` ranges of about equal size.

    Parameters
    ----------
    catalog : Catalog
        Opened with ``write=True``, its index in this process (not on Ray).
    shards : int
        Number of shards of the new layout (1 joins them again).

    Returns
    -------
    ReshardReport
    """
    if not catalog.writable:
        raise CatalogError("the catalog was opened read-only; open it with write=True")
    old = catalog.index
    if isinstance(old, SegmentIndex):
        sources = [old]
    elif all(isinstance(m, LocalShard) for m in old.members):
        sources = [m.index for m in old.members if isinstance(m, LocalShard)]
    else:
        raise CatalogError("reshard a catalog opened in this process, not on Ray")
    folder = catalog.home / "index"
    keys = sorted(old.ref_keys())
    gen = 1 + max(_generation(n) for n in catalog.layout.names)
    layout = ShardLayout.even(keys, shards, prefix=f"shard-g{gen}")
    for p in folder.glob("shard-g*"):  # left by an interrupted reshard
        if p.name not in catalog.layout.names:
            shutil.rmtree(p)
    fp = catalog.fingerprinter
    new: ShardedIndex = open_local(folder, fingerprint=f"{fp.name}-{fp.version}", layout=layout)
    try:
        for src in sources:
            src_keys = sorted(src.ref_keys())
            for i in range(0, len(src_keys), COPY_BATCH):
                new.add(src.export(src_keys[i: i + COPY_BATCH]))
        entries = new.entries
    finally:
        new.close()
    layout.save(folder)
    stale = catalog.layout.names
    old.close()
    for name in stale:
        shutil.rmtree(folder / name, ignore_errors=True)
    catalog.layout = layout
    catalog.index = catalog._open_index(None, 1)
    catalog._identifier = None
    return ReshardReport(shards=len(layout), references=len(keys), entries=entries,
                         layout=layout)
