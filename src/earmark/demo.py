# SPDX-License-Identifier: Apache-2.0
"""``earmark demo``: a catalog from real music, edited excerpts of it, a scan of each.

The excerpts are the edits uploads carry (nightcore, slowed + reverb, pitch shift, speech over
the music, low-bitrate MP3, a short clip, a medley) plus clips of music that is not in the
catalog, written as ordinary files in several formats so that the scan decodes them like
uploads. The table shows what earmark found beside the truth.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio import effects
from earmark.audio.decode import decode
from earmark.bench.grid import speech_track

SR = 22050


@dataclass
class Excerpt:
    file: str
    truth: str  #: what a person should hear: reference ids and where
    expect: list[str]  #: reference ids that should be found (empty: no match)
    ai_span: tuple[int, int] = (0, 0)  #: where an AI clip is AI, ms


def _write(path: Path, y: np.ndarray, sr: int) -> None:
    """Encode mono float32 ``y`` with the ffmpeg CLI; the codec follows the extension."""
    bitrate = {".mp3": ["-b:a", "48k"], ".opus": ["-b:a", "32k"], ".m4a": ["-b:a", "64k"]}
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "-",
         *bitrate.get(path.suffix, []), str(path)],
        input=np.clip(y, -1, 1).astype(np.float32).tobytes(), check=True,
    )


def make_excerpts(corpus: Path, cat: list[dict[str, Any]], non: list[dict[str, Any]],
                  out: Path, seed: int = 0) -> list[Excerpt]:
    """Write the demo's excerpts to ``out`` and return their truth."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)

    def track(rows: list[dict[str, Any]]) -> tuple[str, np.ndarray]:
        r = rows[int(rng.integers(0, len(rows)))]
        return r["id"], decode(corpus / r["path"], SR, allow_silent=True)

    def cut(y: np.ndarray, seconds: float) -> tuple[float, np.ndarray]:
        start = float(rng.uniform(5, max(6, y.size / SR - seconds - 5)))
        return start, y[int(start * SR): int((start + seconds) * SR)]

    def clock(s: float) -> str:
        return f"{int(s // 60)}:{s % 60:04.1f}"

    made: list[Excerpt] = []
    edits: list[tuple[str, str, float, Callable[[np.ndarray], np.ndarray]]] = [
        ("nightcore (speed 1.25)", "ogg", 8.0 * 1.25, lambda y: effects.speed(y, SR, 1.25)),
        ("slowed + reverb (speed 0.8)", "mp3", 8.0 * 0.8,
         lambda y: effects.reverb(effects.speed(y, SR, 0.8), SR, rt60=1.5, wet=0.4, rng=rng)),
        ("pitch +3 semitones", "m4a", 8.0,
         lambda y: effects.pitch_shift(y, SR, 3.0, engine="rubberband")),
        ("sped up 1.1 without pitch change", "flac", 8.0 * 1.1,
         lambda y: effects.time_stretch(y, SR, 1.1)),
        ("talked over (speech 5 dB louder)", "opus", 8.0,
         lambda y: effects.mix_over(y, np.resize(speech_track(SR), y.size), -5.0)),
        ("noisy room (pink noise, 5 dB SNR)", "mp3", 8.0,
         lambda y: effects.add_noise(y, SR, 5.0, rng=rng)),
        ("3 s clip", "wav", 3.0, lambda y: y),
    ]
    for i, (label, ext, need, fx) in enumerate(edits, 1):
        rid, y = track(cat)
        start, seg = cut(y, need)
        name = f"{i:02d} {label}.{ext}"
        _write(out / name, fx(seg), SR)
        made.append(Excerpt(name, f"{rid} from {clock(start)}", [rid]))
    # a medley: 7 s of one track, then 7 s of another sped up 1.2
    (a, ya), (b, yb) = track(cat), track(cat)
    sa, xa = cut(ya, 7.0)
    sb, xb = cut(yb, 7.0 * 1.2)
    name = f"{len(made) + 1:02d} medley.mp3"
    _write(out / name, np.concatenate([xa, effects.speed(xb, SR, 1.2)]), SR)
    made.append(Excerpt(name, f"{a} from {clock(sa)}, then {b} ×1.2 from {clock(sb)}", [a, b]))
    for label, ext in (("music not in the catalog", "mp3"), ("other music not in the catalog",
                                                             "ogg")):
        rid, y = track(non)
        start, seg = cut(y, 10.0)
        name = f"{len(made) + 1:02d} {label}.{ext}"
        _write(out / name, seg, SR)
        made.append(Excerpt(name, f"not in catalog ({rid})", []))
    return made


def make_ai_excerpts(corpus: Path, rows: list[dict[str, Any]], out: Path, seed: int = 0
                     ) -> list[Excerpt]:
    """Write the AI-detection part of the demo: real clips, clips re-synthesised through
    random-weight decoders (NumPy stand-ins of neural codecs, see
    :mod:`earmark.audio.decoders`; proxies, not commercial generators) and a partly-AI clip.
    ``expect`` holds the label a person should expect; ``truth`` says what was done."""
    from earmark.audio.decoders import random_decoder

    sr = 44100
    rng = np.random.default_rng(seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    picks = [rows[int(i)] for i in rng.choice(len(rows), 3, replace=False)]
    clips = []
    for r in picks:
        y = decode(corpus / r["path"], sr, allow_silent=True)
        s0 = int(rng.uniform(0, max(1, y.size - 31 * sr)))
        clips.append((r["id"], y[s0:s0 + 30 * sr]))
    made: list[Excerpt] = []
    (a, ya), (b, yb), (c, yc) = clips
    _write(out / "01 real music.flac", ya, sr)
    made.append(Excerpt("01 real music.flac", f"{a}, untouched", ["human"]))
    _write(out / "02 real music, MP3 48 kbps.mp3", yb, sr)
    made.append(Excerpt("02 real music, MP3 48 kbps.mp3", f"{b}, re-encoded", ["human"]))
    ai = random_decoder(yc, sr, gen_sr=44100, strides=(2, 4, 8, 8), seed=seed)
    _write(out / "03 decoder 44.1 kHz ÷ 512.flac", 0.5 * ai, sr)
    made.append(Excerpt("03 decoder 44.1 kHz ÷ 512.flac",
                        f"{c} through a random transposed-conv decoder (proxy)", ["ai"],
                        (0, 30000)))
    part = ya.copy()
    s, e = 10 * sr, 20 * sr
    fake = random_decoder(ya, sr, gen_sr=44100, strides=(2, 4, 8, 8), seed=seed + 1)[s:e]
    part[s:e] = fake * np.sqrt(np.mean(ya[s:e] ** 2) / max(float(np.mean(fake ** 2)), 1e-12))
    _write(out / "04 partly AI (10–20 s).flac", part, sr)
    made.append(Excerpt("04 partly AI (10–20 s).flac",
                        f"{a} with 0:10–0:20 re-synthesised (44.1 kHz ÷ 512 proxy)", ["ai"],
                        (10000, 20000)))
    return made


def make_stream(corpus: Path, cat: list[dict[str, Any]], non: list[dict[str, Any]], out: Path,
                seed: int = 0) -> tuple[Path, list[dict[str, Any]]]:
    """A 90 s "broadcast" for the monitor demo: a non-catalog recording with two catalog
    excerpts spliced in (at 0:20 for 15 s and at 0:55 for 20 s, the second sped up 1.1×).

    Returns the Ogg file and the truth: reference id, stream ms where it starts, length ms.
    """
    sr = 44100
    rng = np.random.default_rng(seed + 7)
    # (the walrus of a generator binds in this function's scope: distinct names, or the
    # stream buffer becomes the last reference decoded)
    base = next(b for r in (non[int(i)] for i in rng.permutation(len(non)))
                if (b := decode(corpus / r["path"], sr, allow_silent=True)).size > 95 * sr)
    y = base[: 90 * sr].copy()
    truth = []
    picks = [cat[int(i)] for i in rng.choice(len(cat), 8, replace=False)]
    long_enough = ((p, ref) for p in picks
                   if (ref := decode(corpus / p["path"], sr, allow_silent=True)).size > 60 * sr)
    for (at_s, dur_s, spd), (r, ref) in zip(((20, 15, 1.0), (55, 20, 1.1)), long_enough,
                                            strict=False):
        a = int(rng.uniform(5, ref.size / sr - dur_s * spd - 5) * sr)
        seg = ref[a: a + int(dur_s * spd * sr)]
        if spd != 1.0:
            seg = effects.speed(seg, sr, spd)
        seg = seg[: dur_s * sr]
        y[at_s * sr: at_s * sr + seg.size] = seg
        truth.append({"id": r["id"], "at_ms": at_s * 1000, "ms": dur_s * 1000,
                      "ref_ms": round(a * 1000 / sr)})
    path = out / "stream.ogg"
    _write(path, y, sr)
    return path, truth
