# SPDX-License-Identifier: Apache-2.0
"""Operator re-training: labelled folders → a model folder with a held-out evaluation.

``earmark train --real DIR --ai DIR [--base MODEL] --out MODEL``. Files are split 80/20 by
file (seeded), never by slice, so that the held-out figures are about files the model has not
heard; the held-out side is halved again: one half fits the probability calibration, the other
reports AUC, TPR at 1 % FPR and calibration error. Needs torch (the ``train`` extra); the
exported ``model.onnx`` runs without it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio.decode import decode_head
from earmark.detect.trained import (
    N_BINS,
    SLICE_FRAMES,
    SR,
    ModelCard,
    ModelError,
    auc_of,
    probability,
    residue_frames,
    slices,
)
from earmark.errors import EarmarkError
from earmark.identify.calibrate import fit as fit_logistic

AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".mp4", ".webm",
             ".mkv", ".aiff", ".aif"}
SEGMENT_SLICES = 5  #: slices per evaluation segment (5 s)


@dataclass
class TrainConfig:
    real: Sequence[Path]
    ai: Sequence[Path]
    out: Path
    base: Path | None = None
    name: str = "site"
    epochs: int = 6
    max_seconds_per_file: float = 120.0
    seed: int = 0


def audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted), by extension."""
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise EarmarkError(f"no such folder: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXT and p.is_file())


def file_slices(path: Path, max_seconds: float) -> np.ndarray:
    """Feature slices of the first ``max_seconds`` of a file, shape (n, 1, N_BINS, frames)."""
    return slices(residue_frames(decode_head(path, SR, max_seconds)))


def build_net() -> Any:
    """The CNN: three strided convolutions over (frequency, time), pooled, one logit."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, (9, 3), stride=(4, 1), padding=(4, 1)), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, (9, 3), stride=(4, 2), padding=(4, 1)), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, (5, 3), stride=(2, 2), padding=(2, 1)), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 1),
    )


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> ModelCard:
    """Train, evaluate on held-out files, export; returns the model card (also written)."""
    try:
        import torch
    except ImportError as exc:
        raise ModelError("training needs torch: pip install 'earmark[train]' "
                         "(CPU build is enough)") from exc
    torch.manual_seed(cfg.seed)
    files = [(p, 0) for d in cfg.real for p in audio_files(d)] + \
            [(p, 1) for d in cfg.ai for p in audio_files(d)]
    n_real = sum(1 for _, y in files if y == 0)
    if n_real < 5 or len(files) - n_real < 5:
        raise EarmarkError(f"need at least 5 files of each kind; got {n_real} real, "
                           f"{len(files) - n_real} AI")
    rng = np.random.default_rng(cfg.seed)
    feats: list[tuple[np.ndarray, int, str]] = []
    skipped: list[str] = []
    for p, lab in files:
        try:
            x = file_slices(p, cfg.max_seconds_per_file)
        except EarmarkError as exc:
            skipped.append(f"{p.name}: {exc.reason}")
            continue
        if x.shape[0]:
            feats.append((x, lab, str(p)))
    for s in skipped:
        log(f"skipped {s}")
    # split by file, stratified: 80 % train, 10 % calibration, 10 % test
    parts: dict[str, list[tuple[np.ndarray, int, str]]] = {"train": [], "cal": [], "test": []}
    for lab in (0, 1):
        group = [f for f in feats if f[1] == lab]
        order = rng.permutation(len(group))
        n_hold = max(2, round(0.2 * len(group)))
        for k, i in enumerate(order):
            side = "train" if k >= n_hold else ("cal" if k % 2 == 0 else "test")
            parts[side].append(group[i])
    X = np.concatenate([f[0] for f in parts["train"]])
    Y = np.concatenate([np.full(f[0].shape[0], f[1], np.float32) for f in parts["train"]])
    log(f"train: {len(parts['train'])} files ({X.shape[0]} slices of 1 s); held out: "
        f"{len(parts['cal'])} for calibration, {len(parts['test'])} for the evaluation")
    base_state = None
    if cfg.base is not None:
        base_card = ModelCard.load(cfg.base)
        base_state = torch.load(cfg.base / "model.pt")
        log(f"fine-tuning from {base_card.name} {base_card.version}")
    t0 = time.time()
    net = fit_net(X, Y, epochs=cfg.epochs, seed=cfg.seed, base_state=base_state, log=log)

    def seg_raw(group: list[tuple[np.ndarray, int, str]]) -> tuple[np.ndarray, np.ndarray]:
        raws: list[float] = []
        labs: list[int] = []
        for x, lab, _ in group:
            seg = segment_logits(net, x)
            raws += list(seg)
            labs += [lab] * seg.size
        return np.array(raws), np.array(labs)

    r_cal, y_cal = seg_raw(parts["cal"])
    c = fit_logistic(r_cal[:, None], y_cal.astype(float))
    calib = {"weight": float(c.weights[0]), "bias": float(c.bias)}
    r_test, y_test = seg_raw(parts["test"])
    neg, pos = r_test[y_test == 0], r_test[y_test == 1]
    thr = float(np.quantile(neg, 0.99)) if neg.size else float("nan")
    p_test = probability(r_test, calib)
    metrics: dict[str, Any] = {
        "held_out_files": {"real": int(sum(1 for f in parts["test"] if f[1] == 0)),
                           "ai": int(sum(1 for f in parts["test"] if f[1] == 1))},
        "segments_5s": {"real": int(neg.size), "ai": int(pos.size)},
        "auc_5s": auc_of(pos, neg),
        "tpr_at_1pct_fpr_5s": float((pos > thr).mean()) if pos.size else None,
        "accuracy_at_0.5": float(((p_test >= 0.5) == (y_test == 1)).mean()),
        "ece_5s": _ece(p_test, y_test),
        "train_seconds": round(time.time() - t0, 1),
    }
    cfg.out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), cfg.out / "model.pt")
    _export(torch, net, cfg.out / "model.onnx")
    card = ModelCard(
        name=cfg.name, version=time.strftime("%Y%m%dT%H%M%S"), created=time.strftime("%F %T"),
        base=None if cfg.base is None else str(cfg.base),
        data={"real": [os.fspath(d) for d in cfg.real], "ai": [os.fspath(d) for d in cfg.ai],
              "files": {"real": n_real, "ai": len(files) - n_real}, "skipped": skipped,
              "train_slices": int(X.shape[0])},
        metrics=metrics, calibration=calib,
    )
    card.save(cfg.out)
    return card


def fit_net(X: np.ndarray, Y: np.ndarray, *, epochs: int, seed: int = 0,
            base_state: Any = None, log: Callable[[str], None] = print) -> Any:
    """Train the CNN on slices ``X`` (n, 1, N_BINS, SLICE_FRAMES) with labels ``Y`` (n,);
    class-weighted loss; returns the network in eval mode."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_net()
    if base_state is not None:
        net.load_state_dict(base_state)
    pos_w = float((Y == 0).sum() / max((Y == 1).sum(), 1))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_w))
    opt = torch.optim.Adam(net.parameters(), 1e-3 if base_state is None else 3e-4)
    for epoch in range(epochs):
        order = rng.permutation(X.shape[0])
        total = 0.0
        net.train()
        for i in range(0, order.size, 32):
            idx = order[i:i + 32]
            loss = loss_fn(net(torch.from_numpy(X[idx])).reshape(-1),
                           torch.from_numpy(Y[idx].astype(np.float32)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.size
        log(f"epoch {epoch + 1}/{epochs}: loss {total / X.shape[0]:.4f}")
    net.eval()
    return net


def segment_logits(net: Any, x: np.ndarray, per: int = SEGMENT_SLICES) -> np.ndarray:
    """Mean logit of each run of ``per`` slices of one file's slices ``x``."""
    import torch

    with torch.no_grad():
        lg = net(torch.from_numpy(x)).reshape(-1).numpy()
    return np.array([float(lg[s:s + per].mean()) for s in range(0, lg.size, per)])


def _export(torch: Any, net: Any, path: Path) -> None:
    import warnings

    dummy = torch.zeros(1, 1, N_BINS, SLICE_FRAMES)
    with warnings.catch_warnings():  # the TorchScript exporter needs no onnxscript: keep it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (dummy,), str(path), input_names=["slices"],
                          output_names=["logit"], dynamic_axes={"slices": {0: "n"},
                                                                "logit": {0: "n"}},
                          dynamo=False)


def _ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    return float(sum((idx == b).mean() * abs(p[idx == b].mean() - y[idx == b].mean())
                     for b in range(bins) if (idx == b).any()))
