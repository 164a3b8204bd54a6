# SPDX-License-Identifier: Apache-2.0
"""Query latency and throughput of the index with 1, 2 and 4 shards on Ray, beside one box.

    PYTHONPATH=src python benchmarks/shards.py --corpus ~/.cache/earmark-corpus \
        --distractor-hours 200 --queries 40

The catalog is every track of the corpus manifest (fingerprinted once); distractors are
copies of the catalog's stored hashes under a fixed random permutation of the hash-key space
per copy: the same bucket-size distribution as real music (stop words stay stop words, at
other keys) and no true match, at the cost of writing them rather than fingerprinting
audio. Queries are 7 s excerpts of catalog tracks (clean, ×1.25, ×0.8, +5 dB noise),
fingerprinted once; each configuration times ``lookup`` + alignment per query
(:meth:`Identifier.identify_prints`), so the figures are the index's and the matcher's,
not the fingerprinter's. Every configuration's answers are compared with the single box's.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio import effects
from earmark.audio.decode import decode
from earmark.identify.identifier import Identification, Identifier
from earmark.index.base import IndexBackend, IndexItem
from earmark.index.ray_shards import open_ray
from earmark.index.segments import SegmentIndex
from earmark.index.sharded import ShardLayout, open_local
from earmark.service.catalog import add_references, open_catalog

SR = 8000


def _summary(res: Identification) -> tuple:
    return (res.status, [(m.ref_key, m.confidence, m.score, m.runner_up,
                          [(s.query_start_ms, s.ref_start_ms) for s in m.segments])
                         for m in res.matches])


def _queries(corpus: Path, rows: list[dict], n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = rows[int(rng.integers(len(rows)))]
        y = decode(corpus / r["path"], SR)
        tempo = (1.0, 1.25, 0.8, 1.0)[i % 4]
        start = float(rng.uniform(0, max(1.0, y.size / SR - 12)))
        seg = y[int(start * SR): int((start + 8 * tempo) * SR)]
        seg = effects.speed(seg, SR, tempo) if tempo != 1.0 else seg
        seg = effects.add_noise(seg, SR, 5.0, rng=rng) if i % 4 == 3 else seg
        out.append(np.asarray(seg[: 7 * SR], np.float32))
    return out


def _distractors(items: list[IndexItem], hours: float, cat_hours: float, key0: int,
                 seed: int) -> list[list[IndexItem]]:
    """Batches of key-permuted copies of ``items`` adding up to ``hours``."""
    rng = np.random.default_rng(seed)
    space = int(max(int(it.hashes.key.max()) for it in items if len(it.hashes))) + 1
    copies = int(np.ceil(hours / cat_hours))
    out = []
    for c in range(copies):
        perm = rng.permutation(space).astype(np.uint32)
        batch = []
        for j, it in enumerate(items):
            h = it.hashes
            batch.append(IndexItem(key0 + c * 100_000 + j,
                                   type(h)(perm[h.key], h.t, h.f, h.span), it.n_frames))
        out.append(batch)
    return out


def _time(ident: Identifier, prints: Sequence[Any]) -> tuple[list[float], list[tuple]]:
    lat, ans = [], []
    for qp in prints:
        t0 = time.perf_counter()
        res = ident.identify_prints(qp, ident.lookup(qp.hashes.key))
        lat.append((time.perf_counter() - t0) * 1000)
        ans.append(_summary(res))
    return lat, ans


def _throughput(ident: Identifier, prints: Sequence[Any], threads: int, rounds: int) -> float:
    work = list(prints) * rounds
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda qp: ident.identify_prints(qp, ident.lookup(qp.hashes.key)), work))
    return len(work) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path.home() / ".cache/earmark-corpus")
    ap.add_argument("--distractor-hours", type=float, default=200.0)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--threads", type=int, default=4, help="clients for the throughput runs")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="earmark-shards-"))
    rows = list(csv.DictReader(open(args.corpus / "manifest.csv")))
    home = work / "catalog"
    with open_catalog(home=home, write=True) as cat:
        add_references(catalog=cat, paths=[args.corpus / r["path"] for r in rows], jobs=2)
        fp = cat.fingerprinter
        assert isinstance(cat.index, SegmentIndex)
        items = cat.index.export()
        cat_hours = cat.store.totals()[1] / 3.6e6
    name = f"{fp.name}-{fp.version}"
    t0 = time.perf_counter()
    batches = [items, *_distractors(items, args.distractor_hours, cat_hours, 10**8, 3)]
    hours = cat_hours * len(batches)
    layouts = {n: ShardLayout.even([it.ref_key for b in batches for it in b], n,
                                   prefix=f"n{n}") for n in args.shards if n > 1}
    one = SegmentIndex(work / "one", fingerprint=name)
    for b in batches:
        one.add(b)
    for lay in layouts.values():
        with open_local(work / "sharded", fingerprint=name, layout=lay) as idx:
            for b in batches:
                idx.add(b)
    entries = one.entries
    print(f"index: {hours:.1f} h ({cat_hours:.2f} h of real tracks, {entries:,} entries, "
          f"{one.stats().index_bytes / 1e6:.0f} MB) built in {time.perf_counter() - t0:.0f} s")
    prints = [fp.query(y) for y in _queries(args.corpus, rows, args.queries, 5)]

    configs: dict[str, IndexBackend | list[IndexBackend]] = {"single box": one}
    for n, lay in layouts.items():
        loc = open_local(work / "sharded", fingerprint=name, layout=lay)
        configs[f"naive {n} (per-shard cap)"] = [m.index for m in loc.members]  # type: ignore[attr-defined]
        configs[f"local {n}"] = loc
    for n in args.shards:
        lay = layouts.get(n) or ShardLayout(("one",), (0,))
        folder = work if n == 1 else work / "sharded"
        configs[f"ray {n}x{args.replicas}"] = open_ray(folder, fingerprint=name, layout=lay,
                                                       replicas=args.replicas)
    idents = {k: Identifier(shards=v if isinstance(v, list) else [v], fingerprinter=fp)
              for k, v in configs.items()}
    for ident in idents.values():  # warm up: page cache, numba, Ray workers
        _time(ident, prints[:4])
    base_lat, base = _time(idents["single box"], prints)
    print(f"\n{platform.node()}: {len(prints)} queries, {sum(a[0] == 'match' for a in base)} "
          f"matched by the single box\n")
    print("| configuration | p50 ms | p95 ms | p50 / single | answers = single box | "
          f"queries/s ({args.threads} threads) |")
    print("|---|---|---|---|---|---|")
    rows_out = []
    for k, ident in idents.items():
        lat, ans = (base_lat, base) if k == "single box" else _time(ident, prints)
        same = sum(a == b for a, b in zip(ans, base, strict=True))
        qps = _throughput(ident, prints, args.threads, 2)
        p50 = float(np.median(lat))
        rows_out.append((k, p50))
        print(f"| {k} | {p50:.1f} | {np.percentile(lat, 95):.1f} | "
              f"{p50 / float(np.median(base_lat)):.2f} | {same}/{len(base)} | {qps:.1f} |")
    for v in configs.values():
        if not isinstance(v, list):
            v.close()


if __name__ == "__main__":
    main()
