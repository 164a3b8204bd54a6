"""Tuning set of the constellation check (not the benchmark's draws): catalog excerpts of
seed 11, non-catalog excerpts of seed 13, 5 s, under each edit; records every check's
answer and fits ``constellation.CONFIDENCE`` (logistic on ln ratio).

    python constellation.py "speech +5 dB,speech +0 dB,speech (flite) +5 dB,babble 0 dB" 30 OUT.json

Catalog: ``mkcat.py /work/cat3`` (the benchmark's split, seed 0).
"""
import json, pickle, sys
from pathlib import Path
import numpy as np
import earmark.identify.identifier as I
from earmark.bench.grid import EDITS
from earmark.bench.identify import _to_8k, make_queries, split_manifest
from earmark.service.catalog import open_catalog
corpus = Path("/work/corpus")
cat_tracks, non = split_manifest(corpus, 0, None)
cat = open_catalog(home=Path("/work/cat3/home"))
ident = cat.identifier
k2i = {r.key: r.id for r in cat.references_by_key(ident.shards[0].ref_keys()).values()}
rec = []
orig = I.check
def spy(*a, **k):
    f = orig(*a, **k)
    rec.append(f)
    return f
I.check = spy
edits = sys.argv[1].split(",")
rows = []
for side, tracks, seed in (("cat", cat_tracks, 11), ("non", non, 13)):
    rng = np.random.default_rng(seed)
    for e in edits:
        for q in make_queries(corpus, tracks, [EDITS[e]], [5.0], int(sys.argv[2]), rng, side == "cat"):
            rec.clear()
            res = ident.identify(_to_8k(q, 8000))
            f = rec[0] if rec else None
            rows.append(dict(side=side, edit=e, ref=q.ref_id,
                             got=k2i[res.matches[0].ref_key] if res.matches else None,
                             ran=f is not None,
                             f_ref=k2i.get(f.ref_key) if f else None,
                             w=f.weight if f else None, rival=f.rival if f else None,
                             landed=f.landed if f else None))
            print(rows[-1], flush=True)
json.dump(rows, open(sys.argv[3], "w"))

from scipy.optimize import minimize

ran = [r for r in rows if r["ran"]]
x = np.array([np.log(r["w"] / max(r["rival"], 8.0)) for r in ran])
y = np.array([r["side"] == "cat" and r["f_ref"] == r["ref"] for r in ran], float)


def nll(p):
    z = p[0] * x + p[1]
    return np.sum(np.logaddexp(0, z) - y * z) + 0.01 * p[0] ** 2


a, b = minimize(nll, [5.0, -2.0]).x
print(f"{len(ran)} checks; a={a:.2f} b={b:.2f}; 0.5 at ratio {np.exp(-b / a):.3f}; "
      f"non-catalog max ratio {np.exp(x[y == 0].max()):.3f}")
