# SPDX-License-Identifier: Apache-2.0
"""Train speech-mask variants on a GPU machine from a material file; how the shipped
``earmark/identify/speech_mask.onnx`` was made (its card, ``speech_mask.json``, records the run).

Needs numpy, scipy, torch and onnx only (no FFmpeg, espeak-ng or corpus there). First, where
the corpus and the synthesisers are::

    earmark models train-speech-mask --corpus /work/corpus --material-out material.npz \\
        --speech-clips 150 --flite-clips 100 --seconds-per-track 40

then, on the GPU machine, from the repository root::

    PYTHONPATH=src python3 scripts/train_speech_mask_gpu.py material.npz OUT 24000 40 \\
        harmonic:16 105

Arguments: material file, output folder, examples, most epochs, variants
(``arch:channels``, comma-separated), seconds of training per variant: each variant's epochs
are fitted to that budget by timing 40 steps first (the shipped model: 19 epochs on an
H200). Examples are made once, on every CPU core, and shared by the variants. Each variant
writes ``OUT/<arch><channels>.onnx`` and a card beside it; the evaluation against held-out
voices (``earmark.identify.speech_train.evaluate``) runs where the corpus is.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from earmark.identify.speech_nets import build
from earmark.identify.speech_train import (
    SR,
    MaskTrainConfig,
    export_onnx,
    fit,
    load_material,
    make_examples,
)

EXAMPLES_SEED = 7


def main(material: str, out_dir: str, examples: int, epochs: int, variants: str,
         budget_s: float) -> None:
    out = Path(out_dir)
    t0 = time.time()
    base = MaskTrainConfig(corpus=None, out=out / "x.onnx", material=Path(material),
                           examples=examples, epochs=epochs, workers=os.cpu_count() or 8,
                           batch=32, lr=3e-3)
    music, speech = load_material(base, np.random.default_rng(0))
    n = int(base.excerpt_s * SR)
    music = [m for m in music if m.size > 2 * n]
    Xn, Tn = make_examples(music, speech, n, examples, EXAMPLES_SEED, base.workers)
    print(f"{len(music)} tracks, {len(speech)} clips, examples {Xn.shape} in "
          f"{time.time() - t0:.0f} s", flush=True)
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    X = torch.as_tensor(Xn).to(dev, torch.float32)
    T = torch.as_tensor(Tn).to(dev, torch.float32)
    del Xn, Tn
    for v in variants.split(","):
        arch, ch = v.split(":")
        t1 = time.time()
        ep = _epochs_in(budget_s, build(arch, int(ch)).to(dev), X, T, epochs)
        print(v, f"-> {ep} epochs", flush=True)
        torch.manual_seed(0)
        cfg = MaskTrainConfig(**{**base.__dict__, "arch": arch, "channels": int(ch),
                                 "epochs": ep})
        net = build(arch, int(ch))
        def log(s: str, v: str = v) -> None:
            print(v, s, flush=True)

        acc = fit(net, X, T, cfg, np.random.default_rng(1), log, t1)
        name = f"{arch}{ch}"
        export_onnx(net.cpu(), out / f"{name}.onnx")
        card = {"model": "speech mask", "arch": arch,
                "config": {k: str(x) for k, x in cfg.__dict__.items()},
                "examples_seed": EXAMPLES_SEED,
                "weights": int(sum(p.numel() for p in net.parameters())),
                "held_out_cell_accuracy": round(acc, 4),
                "train_seconds": round(time.time() - t1, 1),
                "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"}
        (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
        print("done", v, round(acc, 4), f"{time.time() - t1:.0f} s", flush=True)


def _epochs_in(budget_s: float, net: torch.nn.Module, X: torch.Tensor, T: torch.Tensor,
               most: int) -> int:
    """Epochs of batch 32 that fit ``budget_s``, from the time of 40 steps (after 5)."""
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    sync = torch.cuda.synchronize if X.device.type == "cuda" else (lambda: None)
    ts = time.time()
    for i in range(45):
        if i == 5:
            sync()
            ts = time.time()
        b = torch.randint(0, len(X), (32,), device=X.device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(X[b]), T[b, :1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync()
    per_epoch = (time.time() - ts) / 40 * (0.9 * len(X) / 32) * 1.15
    return max(1, min(most, int(budget_s / per_epoch)))


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) != 6:
        sys.exit(__doc__)
    main(a[0], a[1], int(a[2]), int(a[3]), a[4], float(a[5]))
