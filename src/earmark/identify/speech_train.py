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

from earmark.audio.generators import pink_noise, synth_speech_like
from earmark.errors import EarmarkError
from earmark.identify.spectrogram import SpectrogramParams, log_spectrogram
from earmark.identify.speech import features

SR = 8000
AUDIBLE_DB = -75.0


def decode(path: str | Path, sr: int, **kw: Any) -> np.ndarray:
    """FFmpeg decoding, imported on use: training from a material file (:func:`save_material`)
    needs neither FFmpeg nor the corpus, so that it runs on a GPU machine with numpy, scipy and
    torch alone."""
    from earmark.audio.decode import decode as _decode

    return _decode(path, sr, **kw)

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
    corpus: Path | None  #: a corpus folder with manifest.csv (fetch-dev-corpus)
    out: Path  #: the ONNX model to write (a JSON card is written beside it)
    seed: int = 0  #: the split seed of ``earmark bench identify`` and of the examples
    examples: int = 3000
    epochs: int = 10
    channels: int = 10
    excerpt_s: float = 3.0
    speech_clips: int = 60
    #: utterances of flite's training voices (:data:`FLITE_TRAIN_VOICES`) added, when installed
    flite_clips: int = 0
    arch: str = "dilated"  #: :func:`earmark.identify.speech_nets.build`
    #: a material file (:func:`save_material`) instead of the corpus and espeak-ng
    material: Path | None = None
    device: str = "auto"  #: torch device; ``auto``: CUDA when there is one
    workers: int = 1  #: processes making the examples
    batch: int = 16
    lr: float = 3e-3
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


#: flite voices that training may use; ``slt`` (the benchmark's "speech (flite)" cell) and the
#: ``kal`` diphones (festival's too) stay held out for the evaluation
FLITE_TRAIN_VOICES = ("awb", "rms", "kal16")


def flite_pool(n: int, rng: np.random.Generator,
               voices: tuple[str, ...] = FLITE_TRAIN_VOICES) -> list[np.ndarray]:
    """``n`` English utterances of flite's ``voices`` at random speaking rates and pitches."""
    exe = shutil.which("flite")
    if not exe or not voices:
        return []
    out = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            f = Path(d) / f"{i}.wav"
            subprocess.run([exe, "-voice", str(rng.choice(voices)),
                            "--setf", f"duration_stretch={rng.uniform(0.8, 1.3):.2f}",
                            "--setf", f"int_f0_target_mean={rng.uniform(80, 220):.0f}",
                            "-t", str(rng.choice(TEXTS["en"])), "-o", str(f)],
                           check=True, capture_output=True)
            out.append(decode(f, SR))
    return out


def held_out_voices() -> dict[str, np.ndarray]:
    """Speech of other synthesisers than espeak-ng (those installed): flite's voices, of which
    training may use :data:`FLITE_TRAIN_VOICES` (other utterances), and festival's ``kal``."""
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
    if noise_db is not None:  # effects.add_noise's SNR, without importing FFmpeg's bindings
        noise = pink_noise(sr=SR, duration=y.size / SR, rng=rng)[: y.size].astype(np.float64)
        y = (y + noise * (_rms(y) / (_rms(noise) * 10.0 ** (noise_db / 20.0)))).astype(np.float32)
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


def load_material(cfg: MaskTrainConfig, rng: np.random.Generator
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training music (the non-catalog side of the split, at :data:`SR`) and speech
    (espeak-ng and flite utterances): from ``cfg.material`` when given, else decoded and
    synthesised."""
    if cfg.material is not None:
        with np.load(cfg.material) as z:
            music = [z[k].astype(np.float32) / 32767 for k in sorted(z.files) if k[0] == "m"]
            speech = [z[k].astype(np.float32) / 32767 for k in sorted(z.files) if k[0] == "s"]
        return music, speech
    if cfg.corpus is None:
        raise EarmarkError("give a corpus folder or a material file")
    from earmark.bench.identify import split_manifest

    _, non_catalog = split_manifest(cfg.corpus, cfg.seed, None)
    music = [decode(cfg.corpus / r["path"], SR, allow_silent=True) for r in non_catalog]
    return music, espeak_pool(cfg.speech_clips, rng) + flite_pool(cfg.flite_clips, rng)


def save_material(cfg: MaskTrainConfig, path: Path, seconds_per_track: float = 60.0) -> int:
    """Write the training material of ``cfg`` (from its corpus and synthesisers) to one ``.npz``
    of 16-bit samples, so that training can run where neither is (a GPU machine with numpy,
    scipy and torch alone). At most ``seconds_per_track`` of each track, from its middle.
    Returns the bytes written."""
    music, speech = load_material(cfg, np.random.default_rng(cfg.seed))
    n = int(seconds_per_track * SR)
    cut = [m[max(0, (m.size - n) // 2):][:n] for m in music]
    arrays = {f"m{i:04d}": _pcm16(m) for i, m in enumerate(cut)}
    arrays.update({f"s{i:04d}": _pcm16(s) for i, s in enumerate(speech)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return path.stat().st_size


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


_POOL: tuple[list[np.ndarray], list[np.ndarray], int] | None = None


def _examples(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, k = args
    assert _POOL is not None
    music, speech, n = _POOL
    rng = np.random.default_rng(seed)
    data = [_example(music, speech, n, rng) for _ in range(k)]
    return (np.stack([d[0] for d in data]).astype(np.float16),
            np.stack([d[1] for d in data]).astype(np.bool_))


def make_examples(music: list[np.ndarray], speech: list[np.ndarray], n: int, count: int,
                  seed: int, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``count`` examples of ``n`` samples: features (float16) and targets (bool), shapes
    ``(count, 2, frames, bins)``. With ``workers`` > 1 they are made in forked processes,
    each from its own seed (the set depends on ``seed`` and the worker count)."""
    global _POOL
    _POOL = (music, speech, n)
    if workers <= 1:
        x, t = _examples((seed, count))
        return x, t
    import multiprocessing as mp

    per = -(-count // (4 * workers))
    jobs = [(seed * 100_003 + i, min(per, count - i * per)) for i in range(-(-count // per))]
    with mp.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_examples, jobs)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def train(cfg: MaskTrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, export ONNX to ``cfg.out`` and a card (``.json`` beside it); return the card.

    The card's evaluation needs the corpus; trained from a material file alone, it is left
    for :func:`evaluate` where the corpus is."""
    try:
        import torch

        from earmark.identify.speech_nets import build
    except ImportError as e:
        raise EarmarkError("training needs the train extra: pip install 'earmark[train]'") from e

    t0 = time.time()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    music, speech = load_material(cfg, rng)
    n = int(cfg.excerpt_s * SR)
    music = [m for m in music if m.size > 2 * n]
    if not music:
        raise EarmarkError("no usable tracks on the non-catalog side of the corpus")
    log(f"{len(music)} music tracks, {sum(s.size for s in speech) / SR:.0f} s of speech; "
        f"making {cfg.examples} examples")
    if cfg.workers <= 1 and cfg.material is None:  # the first shipped model's sequence
        data = [_example(music, speech, n, rng) for _ in range(cfg.examples)]
        Xn = np.stack([d[0] for d in data])
        Tn = np.stack([d[1] for d in data])
    else:
        Xn, Tn = make_examples(music, speech, n, cfg.examples, cfg.seed, cfg.workers)
    dev = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                       "cpu" if cfg.device == "auto" else cfg.device)
    X = torch.as_tensor(Xn).to(dev, torch.float32)
    T = torch.as_tensor(Tn).to(dev, torch.float32)
    del Xn, Tn
    log(f"examples made ({time.time() - t0:.0f} s); training on {dev}")
    net = build(cfg.arch, cfg.channels)
    final_acc = fit(net, X, T, cfg, rng, log, t0)
    net = net.cpu()
    export_onnx(net, cfg.out)
    card = {
        "model": "speech mask", "config": {**asdict(cfg), "corpus": str(cfg.corpus),
                                           "out": str(cfg.out), "material": str(cfg.material)},
        "weights": int(sum(p.numel() for p in net.parameters())),
        "held_out_cell_accuracy": round(final_acc, 4),
        "train_seconds": round(time.time() - t0, 1),
        "device": str(dev),
    }
    if cfg.corpus is not None and cfg.corpus.exists():
        log("evaluating on catalog-side music (never trained on) and held-out speech ...")
        card["evaluation"] = evaluate(
            cfg.out, cfg.corpus, seed=cfg.seed,
            trained_flite=FLITE_TRAIN_VOICES if cfg.flite_clips else ())
    cfg.out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def fit(net: Any, X: Any, T: Any, cfg: MaskTrainConfig, rng: np.random.Generator,
        log: Callable[[str], None] = print, t0: float | None = None) -> float:
    """Train ``net`` on the examples ``X`` (features) and ``T`` (targets), tensors on one
    device, the first tenth held out; return the held-out cell accuracy. ``net`` is left in
    eval mode on that device."""
    import torch

    t0 = time.time() if t0 is None else t0
    dev = X.device
    n_val = max(1, len(X) // 10)
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    lossf = torch.nn.BCEWithLogitsLoss(reduction="none")
    idx = np.arange(n_val, len(X))
    for ep in range(cfg.epochs):
        net.train()
        rng.shuffle(idx)
        total = 0.0
        for i in range(0, idx.size, cfg.batch):
            b = torch.as_tensor(idx[i:i + cfg.batch], device=dev)
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
    return _accuracy(net, X[:n_val], T[:n_val])


def export_onnx(net: Any, out: Path) -> None:
    """Write ``net`` (on the CPU) as ONNX with a dynamic number of frames."""
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 2, 100, SpectrogramParams().n_bins)
    torch.onnx.export(net, (dummy,), str(out), input_names=["features"],
                      output_names=["logits"], dynamic_axes={"features": {2: "frames"},
                                                             "logits": {2: "frames"}},
                      opset_version=17, dynamo=False)


def evaluate(model: Path, corpus: Path, *, seed: int = 0, n: int = 40,
             louder_db: float = 5.0, trained_flite: tuple[str, ...] = ()
             ) -> dict[str, dict[str, float]]:
    """Cell precision and recall of speech-dominated cells, and the share of music-only cells
    wrongly masked, per speech source, on music of the catalog side of the split.

    Speech sources: the espeak-ng training voices (other utterances), and each synthesiser
    of :func:`held_out_voices` that is installed, labelled as a training voice when it is in
    ``trained_flite`` (the flite voices the model was trained on), else as never heard.
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
               **{_label(k, trained_flite): [v] for k, v in held_out_voices().items()}}
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


def _label(voice: str, trained_flite: tuple[str, ...]) -> str:
    engine, _, name = voice.partition(" ")
    trained = engine == "flite" and name in trained_flite
    return voice + (" (training voice, other utterances)" if trained
                    else " (never heard in training)")


def _accuracy(net: Any, X: Any, T: Any) -> float:
    import torch

    right = total = 0.0
    with torch.no_grad():
        for i in range(0, len(X), 64):
            p = net(X[i:i + 64]) > 0
            w = T[i:i + 64, 1:2]
            right += float(((p == (T[i:i + 64, 0:1] > 0.5)).float() * w).sum())
            total += float(w.sum())
    return right / max(total, 1.0)
