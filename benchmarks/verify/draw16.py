"""Run 15/16's evaluation draw (seed 0 → rng 2, every edit, lengths 1-10 s, 25 per cell):
the 5 s core queries identified with the dense pass on and off, side by side."""
import sys, time, json, numpy as np
from pathlib import Path
from dataclasses import replace
from earmark.bench.identify import split_manifest, make_queries, _to_8k
from earmark.bench.grid import EDITS, CORE
from earmark.service.catalog import open_catalog
if __name__=="__main__":
    corpus=Path("/work/corpus")
    cat_tracks, non = split_manifest(corpus, 0, None)
    cat=open_catalog(home=Path("/work/cat3/home"))
    on=cat.identifier; off=replace(on, dense_below_db=0)
    k2i={r.key:r.id for r in cat.references_by_key(on.shards[0].ref_keys()).values()}
    rng=np.random.default_rng(2); core={e.name for e in CORE}; qs=[]
    t0=time.time()
    for name, e in EDITS.items():
        got=make_queries(corpus, cat_tracks, [e], (1.0,2.0,3.0,5.0,10.0), 25, rng, True)
        if name in core: qs += [q for q in got if q.length_s==5.0]
    print("generated", len(qs), "in %.0f s"%(time.time()-t0), flush=True)
    rows=[]
    for i,q in enumerate(qs):
        y=_to_8k(q,8000); r={"edit":q.edit,"ref":q.ref_id}
        for name, idn in ((("on",on),("off",off)) if i%2 else (("off",off),("on",on))):
            t=time.perf_counter(); res=idn.identify(y); r[name+"_ms"]=(time.perf_counter()-t)*1000
            r[name]=k2i[res.matches[0].ref_key] if res.matches else None
        rows.append(r)
    json.dump(rows, open("/work/exp/draw16.json","w"))
    for name in ("off","on"):
        print(name, "pooled %.3f"%np.mean([r[name]==r["ref"] for r in rows]), "p50 %.1f"%np.median([r[name+"_ms"] for r in rows]))
        for e in ("pink noise 5 dB","pink noise 10 dB","speech +5 dB"):
            print("  ", e, np.mean([r[name]==r["ref"] for r in rows if r["edit"]==e]))
