import sys, json, numpy as np, csv
from pathlib import Path
from scipy.ndimage import uniform_filter, map_coordinates
from earmark.bench.identify import split_manifest, make_queries, _to_8k
from earmark.bench.grid import EDITS
from earmark.service.catalog import open_catalog
from earmark.identify.spectrogram import log_spectrogram, SpectrogramParams
from earmark.identify import speech
from earmark.audio.decode import decode
from functools import cache
corpus=Path("/work/corpus")
P=SpectrogramParams()
paths={r["id"]:r["path"] for r in csv.DictReader(open(corpus/"manifest.csv"))}
@cache
def refS(rid):
    y=decode(str(corpus/paths[rid]), 8000, allow_silent=True)
    return white(log_spectrogram(y, P))
def white(S):
    S=np.maximum(S, -80)
    return S - uniform_filter(S, size=(31, 25), mode="nearest")
def corr(Sq, cells, a, Sr):
    n, nb = Sq.shape
    i=np.arange(n)[:,None].repeat(nb,1).astype(float); b=np.arange(nb)[None,:].repeat(n,0).astype(float)
    ti=a.offset + a.scale*i; bi=b - a.shift
    ok=(ti>=0)&(ti<=Sr.shape[0]-1)&(bi>=0)&(bi<=nb-1)&~cells
    if ok.sum()<200: return np.nan
    v=map_coordinates(Sr, [ti[ok], bi[ok]], order=1)
    q=Sq[ok]
    return float(np.corrcoef(q, v)[0,1])
if __name__=="__main__":
    edit=sys.argv[1]; n=int(sys.argv[2]); seed=int(sys.argv[3]); cat_side = sys.argv[4]=="cat" if len(sys.argv)>4 else True
    cat_tracks, non = split_manifest(corpus, 0, None)
    cat=open_catalog(home=Path("/work/cat/home"))
    ident=cat.identifier
    k2i={r.key:r.id for r in cat.references_by_key(ident.shards[0].ref_keys()).values()}
    qs=make_queries(corpus, cat_tracks if cat_side else non, [EDITS[edit]], (5.0,), n, np.random.default_rng(seed), cat_side)
    mask=speech.default_mask()
    out=[]
    for q in qs:
        y=_to_8k(q, 8000)
        res=ident.identify(y)
        S=log_spectrogram(y,P)
        cells=mask.speech_cells(S)
        Sq=white(S)
        rows=[]
        for a in res.raw[:12]:
            rid=k2i[a.ref_key]
            c=corr(Sq, cells, a, refS(rid))
            c0=corr(Sq, np.zeros_like(cells), a, refS(rid))
            rows.append(dict(ref=rid, right=rid==q.ref_id, score=a.score, corr=c, corr0=c0, scale=a.scale, shift=a.shift))
        out.append(dict(ref=q.ref_id, ok=bool(res.matches) and k2i[res.matches[0].ref_key]==q.ref_id, al=rows))
        print(q.ref_id, out[-1]["ok"], [(r["right"], r["score"], round(r["corr"],2), round(r["corr0"],2)) for r in rows[:6]], flush=True)
    json.dump(out, open(f"ver-{edit.replace(' ','_')}-{seed}-{int(cat_side)}.json","w"))
