# SPDX-License-Identifier: Apache-2.0
"""``earmark bench trainable``: the trainable CNN detector, leave one proxy family out.

Same split and proxies as ``earmark bench synthetic`` (same seed; trained proxies are reused
from its ``proxies/`` cache when ``--out`` points there). For each family that leaves a grid,
a CNN is trained on real calibration-side excerpts and on the *other* families' outputs, then
tested on the held-out family and on real test-side excerpts, in 10 s segments (ten 1 s
slices, mean logit); the threshold at 1 % false positives comes from real training-side
excerpts scored by that CNN. Figures are on PROXY generators, not commercial ones.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from earmark.audio.decode import decode
from earmark.bench.synthetic import SynthConfig, _excerpt, _split, auc
from earmark.detect.train import fit_net, segment_logits
from earmark.detect.trained import SR, residue_frames, slices

SLICES_PER_CLASS = 2000  #: training slices drawn per class (balanced, seeded)


def run(cfg: SynthConfig, log: Callable[[str], None] = print, epochs: int = 3
        ) -> dict[str, Any]:
    from earmark.bench.proxies import FAMILIES, load_proxy

    with open(cfg.corpus / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if cfg.max_tracks:
        rows = rows[: cfg.max_tracks]
    train, cal, test = _split(rows, cfg.seed, cfg.train_tracks)
    rng = np.random.default_rng(cfg.seed + 7)
    log("decoding real excerpts …")
    real_tr = [_excerpt(decode(cfg.corpus / r["path"], SR), rng) for r in cal]
    real_te = [_excerpt(decode(cfg.corpus / r["path"], SR), rng) for r in test]
    train_audio = [decode(cfg.corpus / r["path"], SR)[: 60 * SR] for r in train]
    fams = [f for f in FAMILIES if f.kind != "griffinlim"]
    gen: dict[str, dict[str, Any]] = {}
    for fam in fams:
        for steps in (0, cfg.train_steps):
            p = load_proxy(fam, train_on=train_audio, steps=steps, seed=cfg.seed,
                           cache_dir=cfg.out / "proxies", log=log)
            src_tr = [real_tr[i] for i in rng.choice(len(real_tr), cfg.cal_per_family)]
            src_te = [real_te[i] for i in rng.choice(len(real_te), cfg.per_family)]
            gen[p.name] = {"family": fam.name,
                           "train": [slices(residue_frames(p.generate(x))) for x in src_tr],
                           "test": [slices(residue_frames(p.generate(x))) for x in src_te]}
            log(f"generated {p.name}")
    real_tr_sl = [slices(residue_frames(x)) for x in real_tr]
    real_te_sl = [slices(residue_frames(x)) for x in real_te]

    def draw(parts: list[np.ndarray], n: int) -> np.ndarray:
        allx = np.concatenate(parts)
        return allx[rng.choice(allx.shape[0], min(n, allx.shape[0]), replace=False)]

    rows_out: list[dict[str, Any]] = []
    t_fit = 0.0
    for fam in fams:
        pos = [x for rec in gen.values() if rec["family"] != fam.name for x in rec["train"]]
        Xp, Xn = draw(pos, SLICES_PER_CLASS), draw(real_tr_sl, SLICES_PER_CLASS)
        X = np.concatenate([Xn, Xp])
        Y = np.concatenate([np.zeros(Xn.shape[0]), np.ones(Xp.shape[0])]).astype(np.float32)
        t0 = time.time()
        net = fit_net(X, Y, epochs=epochs, seed=cfg.seed, log=lambda m: None)
        t_fit += time.time() - t0
        thr = float(np.quantile(np.concatenate([segment_logits(net, x, 10) for x in real_tr_sl]),
                                0.99))
        neg = np.concatenate([segment_logits(net, x, 10) for x in real_te_sl])
        for name, rec in gen.items():
            if rec["family"] != fam.name:
                continue
            pv = np.concatenate([segment_logits(net, x, 10) for x in rec["test"]])
            rows_out.append({"proxy": name, "auc_10s": auc(pv, neg),
                             "tpr_at_1pct_10s": float((pv > thr).mean()),
                             "real_over_threshold_10s": float((neg > thr).mean())})
            log(f"{name}: AUC {rows_out[-1]['auc_10s']:.3f}, TPR@1% "
                f"{rows_out[-1]['tpr_at_1pct_10s']:.2f}")
    result = {"date": time.strftime("%Y-%m-%d"), "epochs": epochs,
              "slices_per_class": SLICES_PER_CLASS, "lofo": rows_out,
              "fit_seconds_per_family": t_fit / len(fams),
              "label": "measured on locally built PROXY generators, not on commercial ones"}
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "trainable.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# earmark bench trainable (PROXY generators, not commercial ones)", "",
             "| held-out proxy | AUC 10 s | TPR@1 % FPR 10 s | real over threshold |",
             "|---|---|---|---|"]
    lines += [f"| {r['proxy']} | {r['auc_10s']:.3f} | {r['tpr_at_1pct_10s']:.2f} | "
              f"{r['real_over_threshold_10s']:.3f} |" for r in rows_out]
    (cfg.out / "trainable.md").write_text("\n".join(lines) + "\n")
    return result
