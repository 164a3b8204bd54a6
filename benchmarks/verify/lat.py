import sys, time, numpy as np
from pathlib import Path
from dataclasses import replace
from earmark.bench.identify import split_manifest, make_queries, _to_8k
from earmark.bench.grid import EDITS, CORE
from earmark.service.catalog import open_catalog
from earmark.identify.calibrate import Calibration
if __name__=="__main__":
    corpus=Path("/work/corpus")
    cat_tracks, non = split_manifest(corpus, 0, None)
    cat=open_catalog(home=Path("/work/cat3/home"))
    base=cat.identifier
    six=replace(base, calibration=Calibration.load())
    plain=replace(base, calibration=Calibration.load_plain())
    qs=make_queries(corpus, cat_tracks, list(CORE), (5.0,), int(sys.argv[1]), np.random.default_rng(5), True)
    ys=[_to_8k(q, 8000) for q in qs]
    k2i={r.key:r.id for r in cat.references_by_key(base.shards[0].ref_keys()).values()}
    for y in ys[:5]: six.identify(y); plain.identify(y)
    res={"six":[], "plain":[]}; ok={"six":0,"plain":0}
    for q,y in zip(qs,ys):
        for name, idn in (("six",six),("plain",plain)):
            t=time.perf_counter(); r=idn.identify(y); res[name].append((time.perf_counter()-t)*1000)
            ok[name]+= bool(r.matches) and k2i[r.matches[0].ref_key]==q.ref_id
    for k,v in res.items(): print(k, "n", len(v), "p50 %.1f p95 %.1f"%(np.median(v), np.percentile(v,95)), "top1", ok[k]/len(qs))
