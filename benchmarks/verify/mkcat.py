import csv, sys, time
from pathlib import Path
from earmark.bench.identify import split_manifest
from earmark.service.catalog import open_catalog, add_references, stats
corpus = Path("/work/corpus"); home = Path(sys.argv[1])
if __name__=="__main__":
    cat_tracks, non = split_manifest(corpus, 0, None)
    home.mkdir(parents=True, exist_ok=True)
    m = home / "catalog.csv"
    with open(m, "w", newline="") as fh:
        w = csv.writer(fh); w.writerow(["id","path","title","artist","owner","isrc"])
        for t in cat_tracks: w.writerow([t["id"], str((corpus/t["path"]).resolve()), t["id"], "", "", ""])
    cat = open_catalog(home=home/"home", write=True)
    t0=time.time(); rep = add_references(catalog=cat, manifest=m, jobs=2)
    print(time.time()-t0, rep.failed, stats(catalog=cat))
    