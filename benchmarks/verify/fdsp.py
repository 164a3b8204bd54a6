"""First detection of speech +5 dB live streams (bench live's first_detection, one edit)."""
import sys, json, numpy as np
from pathlib import Path
from dataclasses import replace, asdict
import earmark.bench.live as L
from earmark.bench.identify import split_manifest
from earmark.service.catalog import open_catalog
from earmark.identify.calibrate import Calibration
if __name__ == "__main__":
    home, calp, seed, n, edit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    L.EDITS = [e for e in L.EDITS if e.name == edit]
    cfg = L.LiveBenchConfig(corpus=Path("/work/corpus"), out=Path("/tmp/x"), seed=seed, per_edit=n)
    cat_rows, non_rows = split_manifest(cfg.corpus, 0, None)
    skip = {"forest__call_of_the_winding_path.ogg", "music__AmbientBattle.ogg", "music__Hv2.ogg", "music__battle_theme.ogg"}
    non_paths = [p for p in L._tracks(cfg.corpus, non_rows) if p.name not in skip]
    with open_catalog(home=Path(home)) as cat:
        if calp != "-":
            cat.identifier.calibration = Calibration.load(calp)
        print("calibration verifies:", cat.identifier.calibration.verifies)
        det = L.first_detection(cfg, cat, cat_rows, non_paths, print)
    lat = [d.latency_ms for d in det]
    print(json.dumps(lat)); print("wrong", sum(d.wrong_starts for d in det))
    json.dump([asdict(d) for d in det], open(f"fdsp-{seed}-{Path(calp).parent.name if calp!='-' else 'plain'}.json", "w"))
