"""Per-vote diagnosis of live first detection under speech: when does the right reference
appear among the alignments, when is it confident, when does the match start?
usage: fdiag.py HOME SEED N EDIT [PROBE_S EVERY_S [RECENT_S]] > out.json
(PROBE_S, EVERY_S: the talk probe's length and cadence, 2 2 shipped; RECENT_S: the
newest seconds decided alone under talk, 4 shipped, 0 off). Per stream: when talk was
found, when the right reference first appeared among the alignments, was best, was
matched by a window, and the first detection (match_started), in ms after the music."""
import sys, json, numpy as np
from pathlib import Path
import earmark.bench.live as L
import earmark.live.matcher as LM
from earmark.identify.identifier import Identifier
from earmark.bench.identify import split_manifest
from earmark.service.catalog import open_catalog
if __name__ == "__main__":
    home, seed, n, edit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if len(sys.argv) > 5:
        LM.TALK_PROBE_S, LM.TALK_PROBE_EVERY_S = float(sys.argv[5]), float(sys.argv[6])
    if len(sys.argv) > 7:
        import functools
        L.WatchParams = functools.partial(L.WatchParams, recent_s=float(sys.argv[7]))
    print("kwdefaults", LM.StreamMatcher.__init__.__kwdefaults__, LM.TALK_PROBE_S, LM.TALK_PROBE_EVERY_S, file=sys.stderr)
    L.EDITS = [e for e in L.EDITS if e.name == edit]
    cfg = L.LiveBenchConfig(corpus=Path("/work/corpus"), out=Path("/tmp/x"), seed=seed, per_edit=n)
    cat_rows, non_rows = split_manifest(cfg.corpus, 0, None)
    skip = {"forest__call_of_the_winding_path.ogg", "music__AmbientBattle.ogg", "music__Hv2.ogg", "music__battle_theme.ogg"}
    non_paths = [p for p in L._tracks(cfg.corpus, non_rows) if p.name not in skip]
    logs = []; last = {}
    od = Identifier._decide
    def dec(self, qp, al, view=None):
        r = od(self, qp, al, view); last["r"] = r; return r
    Identifier._decide = dec
    ov = LM.StreamMatcher.vote
    def vote(self):
        last.clear()
        out = ov(self)
        r = last.get("r")
        if not logs or logs[-1]["m"] is not self:
            logs.append({"m": self, "votes": []})
        logs[-1]["votes"].append({"ms": self.now_ms, "talk": self._talking,
            "raw": [(a.ref_key, a.score, None if a.agreement is None else round(a.agreement, 3)) for a in (r.raw if r else [])][:12],
            "matches": [(m.ref_key, m.confidence) for m in (r.matches if r else [])]})
        return out
    LM.StreamMatcher.vote = vote
    with open_catalog(home=Path(home)) as cat:
        det = L.first_detection(cfg, cat, cat_rows, non_paths, lambda s: print(s, file=sys.stderr))
        ids = {r.id: k for k, r in cat.references_by_key(cat.identifier.shards[0].ref_keys()).items()}
    out = []
    print("cpu", sum(d.cpu_s for d in det), "wrong", sum(d.wrong_starts for d in det), file=sys.stderr)
    for d in det:
        for w in d.wrong:
            print("wrong start:", d.reference_id, w, file=sys.stderr)
    for d, lg in zip(det, logs):
        key = ids[d.reference_id]
        vs = [v for v in lg["votes"] if v["ms"] >= 20000]
        first = lambda f: next((v["ms"] - 20000 for v in vs if f(v)), None)
        out.append({"ref": d.reference_id, "latency": d.latency_ms,
                    "talk": first(lambda v: v["talk"]),
                    "in_raw": first(lambda v: any(k == key for k, *_ in v["raw"])),
                    "top_raw": first(lambda v: v["raw"] and v["raw"][0][0] == key),
                    "matched": first(lambda v: any(k == key for k, _ in v["matches"])),
                    "votes": [[v["ms"] - 20000, v["talk"], [x for x in v["raw"] if x[0] == key], [c for k, c in v["matches"] if k == key]] for v in vs if v["ms"] < 32000]})
    print(json.dumps(out))
