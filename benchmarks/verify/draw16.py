"""Replay a benchmark's evaluation draw (seed 0 → rng 2, every edit, 25 per cell) and identify
its 5 s core queries with one Identifier setting on and off, side by side, alternating.

    python draw16.py FIELD OFF_VALUE OUT.json [LENGTHS]

FIELD is an ``Identifier`` field (``dense_below_db`` with 0, ``smooth_later`` with false);
LENGTHS the run's ``--lengths`` (default ``1,2,3,5,10``: run 15/16's draw; ``5``: run 14/17's).
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from earmark.bench.grid import CORE, EDITS
from earmark.bench.identify import _to_8k, make_queries, split_manifest
from earmark.service.catalog import open_catalog

if __name__ == "__main__":
    field, off_value, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    lengths = tuple(float(x) for x in (sys.argv[4] if len(sys.argv) > 4 else "1,2,3,5,10").split(","))
    corpus = Path("/work/corpus")
    cat_tracks, non = split_manifest(corpus, 0, None)
    cat = open_catalog(home=Path("/work/cat3/home"))
    on = cat.identifier
    off = replace(on, **{field: off_value})
    k2i = {r.key: r.id for r in cat.references_by_key(on.shards[0].ref_keys()).values()}
    rng = np.random.default_rng(2)
    core = {e.name for e in CORE}
    qs = []
    t0 = time.time()
    for name, e in EDITS.items():
        got = make_queries(corpus, cat_tracks, [e], lengths, 25, rng, True)
        if name in core:
            qs += [q for q in got if q.length_s == 5.0]
    print("generated", len(qs), "in %.0f s" % (time.time() - t0), flush=True)
    rows = []
    for i, q in enumerate(qs):
        y = _to_8k(q, 8000)
        r = {"edit": q.edit, "ref": q.ref_id}
        for name, idn in ((("on", on), ("off", off)) if i % 2 else (("off", off), ("on", on))):
            t = time.perf_counter()
            res = idn.identify(y)
            r[name + "_ms"] = (time.perf_counter() - t) * 1000
            r[name] = k2i[res.matches[0].ref_key] if res.matches else None
        rows.append(r)
    json.dump(rows, open(out, "w"))
    for name in ("off", "on"):
        print(name, "pooled %.3f" % np.mean([r[name] == r["ref"] for r in rows]),
              "p50 %.1f" % np.median([r[name + "_ms"] for r in rows]))
        for e in sorted({r["edit"] for r in rows}):
            print("  ", e, np.mean([r[name] == r["ref"] for r in rows if r["edit"] == e]))
