import sys, json
from pathlib import Path
import earmark.bench.live as L
from earmark.bench.identify import split_manifest
from earmark.service.catalog import open_catalog
from earmark.identify.calibrate import Calibration
if __name__ == "__main__":
    home, calp, hours = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cfg = L.LiveBenchConfig(corpus=Path("/work/corpus"), out=Path("/tmp/x"), fp_hours=hours)
    cat_rows, non_rows = split_manifest(cfg.corpus, 0, None)
    skip = {"forest__call_of_the_winding_path.ogg", "music__AmbientBattle.ogg", "music__Hv2.ogg", "music__battle_theme.ogg"}
    allp = L._tracks(cfg.corpus, non_rows)
    dups = {str(p): "twin" for p in allp if p.name in skip}
    non_paths = [p for p in allp if p.name not in skip]
    with open_catalog(home=Path(home)) as cat:
        if calp != "-":
            cat.identifier.calibration = Calibration.load(calp)
        print("verifies", cat.identifier.calibration.verifies, len(non_paths))
        r = L.false_starts(cfg, cat, non_paths, dups, print)
    print(json.dumps({k: v for k, v in r.items() if k != "duplicates_left_out"}, indent=1)[:3000])
