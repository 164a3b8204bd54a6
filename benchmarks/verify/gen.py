import numpy as np, shutil, subprocess
class sf:
    @staticmethod
    def write(p, y, sr):
        subprocess.run(['ffmpeg','-loglevel','error','-y','-f','f32le','-ar',str(sr),'-ac','1','-i','-',str(p)], input=np.asarray(y,np.float32).tobytes(), check=True)
from pathlib import Path
from earmark.audio.generators import synth_music
from earmark.service.catalog import open_catalog, add_references
from earmark.identify.calibrate import Calibration
from dataclasses import replace
if __name__=="__main__":
    d=Path("/tmp/genrefs"); shutil.rmtree(d, ignore_errors=True); d.mkdir()
    for i in range(30):
        sf.write(d/f"g{i}.wav", synth_music(sr=8000, duration=40.0, rng=np.random.default_rng(100+i)), 8000)
    home=Path("/tmp/gencat"); shutil.rmtree(home, ignore_errors=True)
    with open_catalog(home=home, write=True) as cat:
        add_references(catalog=cat, paths=[d], jobs=1)
    with open_catalog(home=home) as cat:
        six=cat.identifier; plain=replace(six, calibration=Calibration.load_plain())
        for name, idn in (("six", six), ("plain", plain)):
            hits=0; rows=[]
            for j in range(40):
                y=synth_music(sr=8000, duration=8.0, rng=np.random.default_rng(5000+j))
                r=idn.identify(y)
                if r.matches:
                    hits+=1; rows.append((j, r.matches[0].confidence, [a.agreement for a in r.raw[:2]]))
            print(name, "outside pieces matched", hits, "/ 40", rows)
        # and inside: excerpts of the references
        ok=0
        for j in range(20):
            y=synth_music(sr=8000, duration=40.0, rng=np.random.default_rng(100+j))[8000*10:8000*18]
            r=six.identify(y); ok+= bool(r.matches)
        print("inside excerpts matched (six)", ok, "/ 20")
