# SPDX-License-Identifier: Apache-2.0
"""CPU per second of stream, one stream at a time, by what the stream holds.

    PYTHONPATH=src python benchmarks/live_cost.py --streams bench-out/live20/streams \
        --catalog CATALOG_HOME --seconds 40 --out bench-out/live-cost.csv

Each stream (the files ``earmark bench live`` pre-renders for its concurrency run, or any
audio) is decoded at the detector's rate and fed to one :class:`StreamWatcher` (catalog
search with the talk-over search on, the AI detector) in 0.5 s blocks, as ``earmark
monitor`` feeds it, with nothing else running in the process. The CPU time of the feeding
alone (decoding excluded) per second of stream is a stream's price in a sizing: the
concurrency run gives the whole machine's answer, this says which streams cost what.
It also counts the blocks after which the speech-mask probe held the stream for talk: those
streams run the talk-over search on every vote (its masks, companions and second looks).

The first stream also pays for loading the compiled kernels: it is fed twice and timed the
second time.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

from earmark.audio.decode import decode
from earmark.detect.base import get_detector
from earmark.live.monitor import StreamWatcher, WatchParams
from earmark.live.sources import Block
from earmark.service.catalog import open_catalog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=Path, required=True, help="folder of audio files")
    ap.add_argument("--catalog", type=Path, required=True, help="catalog home")
    ap.add_argument("--seconds", type=float, default=40.0, help="of each stream")
    ap.add_argument("--limit", type=int, default=0, help="only this many streams (0: all)")
    ap.add_argument("--detector", default="residue", help="'' for none")
    ap.add_argument("--out", type=Path, help="CSV of the streams' figures")
    a = ap.parse_args()
    files = sorted(p for p in a.streams.iterdir() if p.is_file())
    files = files[: a.limit] if a.limit else files
    det = get_detector(a.detector) if a.detector else None
    rows = []
    with open_catalog(home=a.catalog) as cat:
        sr = det.sr if det is not None else cat.identifier.fingerprinter.sr
        n, block = round(a.seconds * sr), sr // 2
        for k, f in enumerate(files):
            y = decode(f, sr)[:n]
            for _rep in range(2 if k == 0 else 1):
                w = StreamWatcher("s", catalog=cat, detector=det, sink=lambda e: None, sr=sr,
                                  params=WatchParams())
                talk = 0
                t0 = time.process_time()
                for i in range(0, y.size, block):
                    w.feed(Block(i, y[i:i + block]))
                    talk += bool(w.matcher is not None and w.matcher._talking)
                cpu = time.process_time() - t0
            row = {"stream": f.name, "seconds": round(y.size / sr, 1),
                   "cpu_per_s": round(cpu * sr / max(1, y.size), 4),
                   "talk_blocks": talk, "blocks": -(-y.size // block)}
            rows.append(row)
            print(row, flush=True)
    costs = [r["cpu_per_s"] for r in rows]
    talk = [r["cpu_per_s"] for r in rows if r["talk_blocks"]]
    plain = [r["cpu_per_s"] for r in rows if not r["talk_blocks"]]
    print(f"{len(rows)} streams: CPU-s per stream-s median {statistics.median(costs):.4f}, "
          f"mean {statistics.fmean(costs):.4f} (streams per core at the mean: "
          f"{1 / statistics.fmean(costs):.1f}); never held for talk: {len(plain)}, median "
          f"{statistics.median(plain) if plain else float('nan'):.4f}; held for talk at "
          f"some point: {len(talk)}, {sorted(talk)}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with a.out.open("w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)


if __name__ == "__main__":
    main()
