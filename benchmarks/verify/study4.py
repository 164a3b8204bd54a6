import pickle, numpy as np
from earmark.identify.verify import QueryView, agreement, sketch_of
from verify import corpus, paths, P, decode, log_spectrogram
from functools import cache
D=pickle.load(open("dump.pkl","rb"))
@cache
def sk(rid): return sketch_of(log_spectrogram(decode(str(corpus/paths[rid]),8000,allow_silent=True),P))
R=[];W=[]
for e in D:
    if "speech" not in e["edit"]: continue
    v0=QueryView.of(e["S"]); v1=QueryView.of(e["S"], e["cells"])
    for a in e["al"]:
        x=(agreement(v0, sk(a["ref"]), a["offset"], a["scale"], a["shift"]), agreement(v1, sk(a["ref"]), a["offset"], a["scale"], a["shift"]))
        (R if a["right"] else W).append(x)
R=np.array(R); W=np.array(W)
print("right unmasked pcts 5/10/50", np.percentile(R[:,0],[5,10,50]).round(2), "masked", np.percentile(R[:,1],[5,10,50]).round(2), len(R))
print("wrong unmasked pcts 50/90/99", np.percentile(W[:,0],[50,90,99]).round(2), "frac>=0.15", (W[:,0]>=0.15).mean().round(3), len(W))
print("right unmasked <0.15:", (R[:,0]<0.15).sum())
