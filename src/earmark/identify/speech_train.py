# SPDX-License-Identifier: Apache-2.0
"""Training of the speech mask (:mod:`earmark.identify.speech`); needs the ``train`` extra.

Examples are 3 s mixtures made on the fly: a corpus music excerpt at a random level, and most
of the time speech over it at a random music-to-speech ratio of −10…+12 dB (espeak-ng voices in
five languages, or the formant babble of :func:`earmark.audio.generators.synth_speech_like`),
sometimes pink noise. The target of each spectrogram cell is the ideal binary mask: 1 where
the speech alone is louder than the music alone. The loss counts audible cells only.

Held apart from training, so that the figures mean something:

- the music of the catalog side of ``earmark bench identify``'s split (the same seed), which
  its queries are cut from: the mask trains on the non-catalog side only;
- the benchmark's own espeak-ng text and default voice: training uses other texts and voice
  variants;
- the speech of other synthesisers (flite's voices and festival's ``kal`` diphones, when
  installed): the evaluation reports them apart as speech the model never heard.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio import effects
from earmark.audio.decode import decode
from earmark.audio.generators import synth_speech_like
from earmark.errors import EarmarkError
from earmark.identify.spectrogram import SpectrogramParams, log_spectrogram
from earmark.identify.speech import features

SR = 8000
AUDIBLE_DB = -75.0

TEXTS = {
    "en": [
        "The committee met on Tuesday to discuss the budget for next year, and several "
        "members raised concerns about the cost of the new building.",
        "Right, so what you want to do is take the flour and the butter and mix them together "
        "until it looks a bit like breadcrumbs.",
        "I have been playing this game for about three weeks now and I still cannot get past "
        "the second boss, which is honestly embarrassing.",
        "Weather today will be mostly cloudy with a chance of showers in the afternoon, "
        "clearing later in the evening with light winds from the west.",
        "Did you see that? That was incredible. No way, play it again, I need to see that one "
        "more time because that cannot be real.",
        "Our guest this morning is a researcher who studies the migration of birds across the "
        "northern sea during the autumn months.",
    ],
    "de": ["Guten Morgen, heute sprechen wir über das neue Album und warum es so viele Leute "
           "begeistert hat.",
           "Ich weiß nicht genau, wie das passiert ist, aber plötzlich war der ganze "
           "Bildschirm schwarz."],
    "fr": ["Bonjour à tous, aujourd'hui on va regarder ensemble la nouvelle vidéo et donner "
           "notre avis.",
           "Je pense que c'est vraiment une bonne idée, mais il faut encore travailler sur les "
           "détails."],
    "es": ["Hola a todos, hoy vamos a ver el nuevo video y les voy a contar lo que pienso de "
           "verdad.",
           "No me lo puedo creer, esto es increíble, mira lo que acaba de pasar en la "
           "pantalla."],
    "it": ["Ciao a tutti, oggi parliamo della nuova canzone e di come è stata registrata in "
           "studio."],
}
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "Alex",
            "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mike", "Storm", "antonio",
            "belinda", "caleb", "david", "ed")
HELD_OUT_TEXT = ("Hello and welcome back. So today I want to show you something I found last "
                 "week, and I think you are going to love it. Let me know in the comments what "
                 "you think about this part right here.")


@dataclass
class MaskTrainConfig:
    corpus: Path  #: a corpus folder with manifest.csv (fetch-dev-corpus)
    out: Path  #: the ONNX model to write (a JSON card is written beside it)
    seed: int = 0  #: the split seed of ``earmark bench identify`` and of the examples
    examples: int = 3000
    epochs: int = 10
    channels: int = 10
    excerpt_s: float = 3.0
    speech_clips: int = 60
    extra: dict[str, Any] = field(default_factory=dict)


def espeak_pool(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` utterances of espeak-ng in random languages, voice variants, rates and pitches."""
    exe = shutil.which("espeak-ng")
    if not exe:
        raise EarmarkError("espeak-ng is needed to train the speech mask (apt install "
                           "espeak-ng)")
    out = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            lang = str(rng.choice(["en"] * 4 + ["de", "fr", "es", "it"]))
            text = str(rng.choice(TEXTS[lang]))
            f = Path(d) / f"{i}.wav"
            subprocess.run([exe, "-v", f"{lang}+{rng.choice(VARIANTS)}",
                            "-s", str(int(rng.integers(130, 200))),
                            "-p", str(int(rng.integers(20, 80))), "-w", str(f), text],
                           check=True, capture_output=True)
            out.append(decode(f, SR))
    return out


def held_out_voices() -> dict[str, np.ndarray]:
    """Speech of synthesisers the model never hears in training (those installed)."""
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as d:
        if shutil.which("flite"):
            for v in ("slt", "rms", "awb", "kal16"):
                f = Path(d) / f"{v}.wav"
                r = subprocess.run(["flite", "-voice", v, "-t", HELD_OUT_TEXT, "-o", str(f)],
                                   capture_output=True)
                if r.returncode == 0 and f.exists():
                    out[f"flite {v}"] = decode(f, SR)
        if shutil.which("text2wave"):
            f = Path(d) / "festival.wav"
            r = subprocess.run(["text2wave", "-o", str(f)], input=HELD_OUT_TEXT.encode(),
                               capture_output=True)
            if r.returncode == 0 and f.exists():
                out["festival kal"] = decode(f, SR)
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def mixture(music: np.ndarray, speech: np.ndarray | None, snr_db: float, rng: np.random.Generator,
            noise_db: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features and ideal binary mask of ``music`` with ``speech`` at ``snr_db`` below it.

    Returns
    -------
    x : np.ndarray [shape=(2, n_frames, n_bins), dtype=float32]
    target : np.ndarray [shape=(2, n_frames, n_bins), dtype=float32]
        Channel 0: 1 where speech is louder than music; channel 1: 1 where audible (the loss
        weight).
    X : np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        The mixture's log-frequency spectrogram.
    """
    sp = SpectrogramParams()
    s = np.zeros_like(music)
    if speech is not None and _rms(speech) > 1e-4:
        s = (speech * (_rms(music) / (_rms(speech) * 10 ** (snr_db / 20)))).astype(np.float32)
    y = music + s
    if noise_db is not None:
        y = effects.add_noise(y, SR, snr_db=noise_db, kind="pink", rng=rng)
    M = log_spectrogram(music, sp)
    X = log_spectrogram(y, sp)
    Sx = log_spectrogram(s, sp) if s.any() else np.full_like(M, -100.0)
    target = np.stack([(Sx > M) & (X > AUDIBLE_DB), X > AUDIBLE_DB]).astype(np.float32)
    return features(X), target, X


def _excerpt(tracks: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    for _ in range(50):
        m = tracks[int(rng.integers(len(tracks)))]
        s0 = int(rng.integers(0, m.size - n))
        x = m[s0:s0 + n]
        if _rms(x) > 0.005:
            return (x * 10 ** (rng.uniform(-20, 0) / 20)).astype(np.float32)
    raise EarmarkError("the corpus's music is silent where excerpts were drawn")


def _example(music: list[np.ndarray], speech: list[np.ndarray], n: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = _excerpt(music, n, rng)
    u = rng.random()
    sp: np.ndarray | None = None
    if u >= 0.15:  # 15 % music alone: the mask must learn to stay empty
        if u < 0.25:
            sp = synth_speech_like(sr=SR, duration=n / SR + 0.1, rng=rng,
                                   talkers=int(rng.integers(1, 6)))[:n]
        else:
            e = speech[int(rng.integers(len(speech)))]
            e = np.resize(e, max(e.size, n + 1))
            st = int(rng.integers(0, e.size - n))
            sp = e[st:st + n]
    noise = float(rng.uniform(5, 25)) if rng.random() < 0.2 else None
    feats, target, _ = mixture(x, sp, float(rng.uniform(-10, 12)), rng, noise)
    return feats, target


def _net(channels: int) -> Any:
    import torch.nn as nn

    c = channels
    return nn.Sequential(
        nn.Conv2d(2, c, 5, padding=2), nn.ReLU(),
        nn.Conv2d(c, c, 5, padding=4, dilation=2), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=4, dilation=4), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=(8, 4), dilation=(8, 4)), nn.ReLU(),
        nn.Conv2d(c, 1, 1),
    )


def train(cfg: MaskTrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, export ONNX to ``cfg.out`` and a card (``.json`` beside it); return the card."""
    try:
        import torch
    except ImportError as e:
        raise EarmarkError("training needs the train extra: pip install 'earmark[train]'") from e
    from earmark.bench.identify import split_manifest

    t0 = time.time()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    _, non_catalog = split_manifest(cfg.corpus, cfg.seed, None)
    music = [decode(cfg.corpus / r["path"], SR, allow_silent=True) for r in non_catalog]
    n = int(cfg.excerpt_s * SR)
    music = [m for m in music if m.size > 2 * n]
    if not music:
        raise EarmarkError(f"no usable tracks on the non-catalog side of {cfg.corpus}")
    speech = espeak_pool(cfg.speech_clips, rng)
    log(f"{len(music)} music tracks, {sum(s.size for s in speech) / SR:.0f} s of espeak-ng "
        f"speech; making {cfg.examples} examples")
    data = [_example(music, speech, n, rng) for _ in range(cfg.examples)]
    X = torch.tensor(np.stack([d[0] for d in data]))
    T = torch.tensor(np.stack([d[1] for d in data]))
    n_val = max(1, cfg.examples // 10)
    net = _net(cfg.channels)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    lossf = torch.nn.BCEWithLogitsLoss(reduction="none")
    idx = np.arange(n_val, cfg.examples)
    for ep in range(cfg.epochs):
        net.train()
        rng.shuffle(idx)
        total = 0.0
        for i in range(0, idx.size, 16):
            b = torch.as_tensor(idx[i:i + 16])
            out = net(X[b])
            w = T[b, 1:2]
            loss = (lossf(out, T[b, 0:1]) * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        acc = _accuracy(net, X[:n_val], T[:n_val])
        log(f"epoch {ep + 1}/{cfg.epochs}: loss {total / idx.size:.4f}, held-out cell accuracy "
            f"{acc:.3f} ({time.time() - t0:.0f} s)")
    net.eval()
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 2, 100, SpectrogramParams().n_bins)
    torch.onnx.export(net, (dummy,), str(cfg.out), input_names=["features"],
                      output_names=["logits"], dynamic_axes={"features": {2: "frames"},
                                                             "logits": {2: "frames"}},
                      opset_version=17, dynamo=False)
    card = {
        "model": "speech mask", "config": {**asdict(cfg), "corpus": str(cfg.corpus),
                                           "out": str(cfg.out)},
        "weights": int(sum(p.numel() for p in net.parameters())),
        "held_out_cell_accuracy": round(_accuracy(net, X[:n_val], T[:n_val]), 4),
        "train_seconds": round(time.time() - t0, 1),
    }
    log("evaluating on catalog-side music (never trained on) and held-out speech ...")
    card["evaluation"] = evaluate(cfg.out, cfg.corpus, seed=cfg.seed)
    cfg.out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def evaluate(model: Path, corpus: Path, *, seed: int = 0, n: int = 40,
             louder_db: float = 5.0) -> dict[str, dict[str, float]]:
    """Cell precision and recall of speech-dominated cells, and the share of music-only cells
    wrongly masked, per speech source, on music of the catalog side of the split.

    Speech sources: the espeak-ng training voices (other utterances), and each held-out
    synthesiser of :func:`held_out_voices` that is installed.
    """
    from earmark.bench.identify import split_manifest
    from earmark.identify.speech import SpeechMask, coverage

    mask = SpeechMask(model)
    rng = np.random.default_rng(seed + 1)
    catalog, _ = split_manifest(corpus, seed, None)
    picks = rng.choice(len(catalog), min(n, len(catalog)), replace=False)
    length = 5 * SR
    music = [m for m in (decode(corpus / catalog[int(i)]["path"], SR, allow_silent=True)
                         for i in picks) if m.size > 2 * length]
    sources = {"espeak-ng (training voices, other utterances)": espeak_pool(12, rng),
               **{k: [v] for k, v in held_out_voices().items()}}
    out: dict[str, dict[str, float]] = {}
    for name, clips in sources.items():
        tp = fp = fn = 0
        for i, m in enumerate(music):
            x = _excerpt([m], length, rng)
            c = np.resize(clips[i % len(clips)], length + 1)[:length]
            _, target, S = mixture(x, c.astype(np.float32), -louder_db, rng)
            audible = target[1] > 0
            truth = target[0] > 0
            est = mask.speech_cells(S) & audible
            tp += int(np.count_nonzero(est & truth))
            fp += int(np.count_nonzero(est & ~truth))
            fn += int(np.count_nonzero(~est & truth & audible))
        out[name] = {"precision": round(tp / max(1, tp + fp), 3),
                     "recall": round(tp / max(1, tp + fn), 3)}
    clean_cov = []
    for m in music:
        S = log_spectrogram(_excerpt([m], length, rng), SpectrogramParams())
        clean_cov.append(coverage(mask.speech_cells(S), S))
    from earmark.identify.fingerprinter import TripletFingerprinter

    gate = TripletFingerprinter().speech_gate
    out["music alone"] = {"mean_coverage": round(float(np.mean(clean_cov)), 3),
                          f"share_over_gate_{gate:g}": round(float(np.mean(
                              np.array(clean_cov) >= gate)), 3)}
    return out


def _accuracy(net: Any, X: Any, T: Any) -> float:
    import torch

    with torch.no_grad():
        p = net(X) > 0
        w = T[:, 1:2]
        return float(((p == (T[:, 0:1] > 0.5)).float() * w).sum() / w.sum())
