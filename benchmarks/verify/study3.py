import pickle, numpy as np, sys
sys.argv=[sys.argv[0],"8","6","4bit"]
src=open("study.py").read().split("R=[];W=[]")[0]
src=src.replace("return float(np.corrcoef(qv,rv)[0,1])","return float(np.corrcoef(qv,rv)[0,1]), int(g.sum())").replace("return 0.0","return 0.0, 0")
exec(src)
R=[];W=[];N=[]
for e in D:
    for a in e["al"]:
        c,n=corr(e,a)
        z=np.arctanh(min(c,0.999))*np.sqrt(max(n-3,1))
        (R if a["right"] else (W if e["cat"] else N)).append((c,n,z,a["score"],e["edit"],a["ref"]))
for name,L in (("right",R),("wrong",W),("non",N)):
    z=np.array([l[2] for l in L]); n=np.array([l[1] for l in L])
    print(name, len(L), "z pcts 1/5/50/95/99", np.round(np.percentile(z,[1,5,50,95,99]),1), "cells med", np.median(n))
print(sorted([(round(l[2],1),l[0],l[1],l[3],l[5]) for l in W+N])[-12:])
print(sorted([(round(l[2],1),l[0],l[1],l[3],l[4]) for l in R])[:8])
