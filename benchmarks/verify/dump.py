import sys, pickle, numpy as np
from pathlib import Path
from verify import *
from earmark.bench.identify import _to_8k
if __name__=="__main__":
    cat_tracks, non = split_manifest(corpus, 0, None)
    cat=open_catalog(home=Path("/work/cat/home"))
    ident=cat.identifier
    k2i={r.key:r.id for r in cat.references_by_key(ident.shards[0].ref_keys()).values()}
    mask=speech.default_mask()
    out=[]
    for edit, n, side in [("speech +5 dB",40,True),("speed 1.25 + pitch -2",15,True),("pitch +4",10,True),("tempo 1.15",10,True),("pink noise 5 dB",15,True),("speed 0.8",10,True),
                          ("clean",25,False),("speech +5 dB",25,False),("pitch -3",15,False)]:
        qs=make_queries(corpus, cat_tracks if side else non, [EDITS[edit]], (5.0,), n, np.random.default_rng(11), side)
        for q in qs:
            y=_to_8k(q, 8000); res=ident.identify(y); S=log_spectrogram(y,P)
            out.append(dict(edit=edit, cat=side, ref=q.ref_id, ok=bool(res.matches) and k2i[res.matches[0].ref_key]==q.ref_id,
              conf=res.matches[0].confidence if res.matches else 0, S=S, cells=mask.speech_cells(S),
              al=[dict(ref=k2i[a.ref_key], score=a.score, offset=a.offset, scale=a.scale, shift=a.shift, right=k2i[a.ref_key]==q.ref_id, hits=a.ref_hits) for a in res.raw[:12]]))
        print(edit, side, len(qs), flush=True)
    pickle.dump(out, open("dump.pkl","wb"))
