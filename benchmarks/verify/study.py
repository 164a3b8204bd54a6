import pickle, numpy as np, sys
from scipy.ndimage import uniform_filter
from verify import refS as _unused, paths, corpus, P, decode, log_spectrogram
from functools import cache
D=pickle.load(open("dump.pkl","rb"))
TF,BF,Q=int(sys.argv[1]),int(sys.argv[2]),sys.argv[3]
@cache
def rawS(rid):
    y=decode(str(corpus/paths[rid]),8000,allow_silent=True); return np.maximum(log_spectrogram(y,P),-80)
def pool(S):
    n=S.shape[0]//TF; nb=S.shape[1]//BF
    return S[:n*TF,:nb*BF].reshape(n,TF,nb,BF).mean((1,3))
@cache
def sketch(rid):
    C=pool(rawS(rid)); W=C-uniform_filter(C,size=(max(1,32//TF*1), max(1,24//BF)),mode="nearest")
    if Q=="sign": return np.sign(W)
    if Q=="4bit":
        s=np.clip(np.round(W/2.0),-8,7); return s*2.0
    return W
def corr(e,a):
    S=np.maximum(e["S"],-80); Sq=S-uniform_filter(S,size=(31,25),mode="nearest")
    sk=sketch(a["ref"]); n,nb=Sq.shape
    i=np.arange(n)[:,None]; b=np.arange(nb)[None,:]
    ti=(a["offset"]+a["scale"]*i)/TF + 0*b; bi=(b-a["shift"])/BF + 0*i
    ci=np.floor(ti).astype(int); cb=np.floor(bi).astype(int)
    ok=(ci>=0)&(ci<sk.shape[0])&(cb>=0)&(cb<sk.shape[1])&~e["cells"]
    if ok.sum()<100: return 0.0
    lin=ci[ok]*sk.shape[1]+cb[ok]
    cnt=np.bincount(lin,minlength=sk.size); s=np.bincount(lin,Sq[ok],minlength=sk.size)
    g=cnt>=max(2,TF*BF//4)
    if g.sum()<20: return 0.0
    qv=s[g]/cnt[g]; rv=sk.ravel()[g]
    if qv.std()==0 or rv.std()==0: return 0.0
    return float(np.corrcoef(qv,rv)[0,1])
R=[];W=[];N=[]
for e in D:
    for a in e["al"]:
        c=corr(e,a)
        (R if a["right"] else (W if e["cat"] else N)).append((c,a["score"],e["edit"]))
R=np.array([r[0] for r in R]); Wc=np.array([w[0] for w in W]); Nc=np.array([n[0] for n in N])
print(f"TF{TF} BF{BF} {Q}: right n={R.size} p5={np.percentile(R,5):.2f} p10={np.percentile(R,10):.2f} med={np.median(R):.2f} | wrong(cat) n={Wc.size} p99={np.percentile(Wc,99):.2f} max={Wc.max():.2f} | non-cat n={Nc.size} p99={np.percentile(Nc,99):.2f} max={Nc.max():.2f}")
