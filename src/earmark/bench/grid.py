# SPDX-License-Identifier: Apache-2.0
"""The edit grid of ``earmark bench identify`` and the queries cut from a corpus.

An edit is a named chain of :mod:`earmark.audio.effects` steps plus the speed and tempo it
implies, so that the harness knows where the excerpt lies in the reference and can score the
speed estimate. ``CORE`` is the pooled set of the issue's target (top-1 ≥ 0.97 at 5 s);
``HARD`` are the cells reported as they are.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio import effects
from earmark.audio.decode import decode
from earmark.audio.generators import synth_speech_like

Step = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Edit:
    """A named edit: ``steps`` applied in order; ``tempo`` is how much faster the result plays
    (reference seconds per query second), ``pitch`` its pitch change in semitones."""

    name: str
    steps: tuple[Step, ...] = ()
    tempo: float = 1.0
    pitch: float = 0.0
    family: str = "clean"

    @property
    def speed(self) -> float | None:
        """The speed ratio when the edit is a plain speed change, else None."""
        return self.tempo if self.family == "speed" else None


def _speed(v: float) -> Edit:
    return Edit(f"speed {v:g}", (("speed", {"ratio": v}),), tempo=v,
                pitch=12 * float(np.log2(v)), family="speed")


def _pitch(p: float) -> Edit:
    return Edit(f"pitch {p:+g}", (("pitch_shift", {"semitones": p, "engine": "rubberband"}),),
                pitch=p, family="pitch")


def _tempo(t: float) -> Edit:
    return Edit(f"tempo {t:g}", (("time_stretch", {"ratio": t}),), tempo=t, family="tempo")


def _noise(db: float) -> Edit:
    return Edit(f"pink noise {db:g} dB", (("add_noise", {"snr_db": db, "kind": "pink"}),),
                family="noise")


def _speech(louder_db: float) -> Edit:
    return Edit(f"speech +{louder_db:g} dB", (("speech", {"snr_db": -louder_db}),),
                family="speech")


def _codec(c: str, kbps: int) -> Edit:
    return Edit(f"{c} {kbps} kbps", (("codec", {"codec": c, "bitrate_kbps": kbps}),),
                family="codec")


CLEAN = Edit("clean")
CORE: tuple[Edit, ...] = (
    CLEAN, _speed(0.8), _speed(0.9), _speed(1.1), _speed(1.25),
    _pitch(-3), _pitch(-1), _pitch(2), _pitch(4),
    _tempo(0.9), _tempo(1.15),
    _noise(10), _noise(5), _speech(5), _codec("mp3", 48), _codec("opus", 24),
)
HARD: tuple[Edit, ...] = (
    _speed(0.5), _speed(0.7), _speed(1.5), _speed(2.0),
    _pitch(-12), _pitch(-7), _pitch(-6), _pitch(6), _pitch(7), _pitch(12),
    _tempo(0.5), _tempo(0.75), _tempo(1.3), _tempo(2.0),
    _noise(0), _speech(0),
    # speech of another synthesiser than the one the speech mask was trained on (flite's slt
    # voice; espeak-ng where flite is not installed)
    Edit("speech (flite) +5 dB", (("speech", {"snr_db": -5.0, "engine": "flite"}),),
         family="speech"),
    Edit("babble 0 dB", (("babble", {"snr_db": 0.0}),), family="speech"),
    Edit("reverb 1.2 s", (("reverb", {"rt60": 1.2, "wet": 0.5}),), family="reverb"),
    Edit("phone band", (("phone_band", {}),), family="phone"),
    _codec("aac", 32),
    Edit("nightcore: speed 1.25 + speech +5 dB + mp3 64", (
        ("speed", {"ratio": 1.25}), ("speech", {"snr_db": -5.0}),
        ("codec", {"codec": "mp3", "bitrate_kbps": 64})), tempo=1.25,
        pitch=12 * float(np.log2(1.25)), family="chain"),
    Edit("slowed + reverb: speed 0.8 + reverb + opus 32", (
        ("speed", {"ratio": 0.8}), ("reverb", {"rt60": 1.5, "wet": 0.4}),
        ("codec", {"codec": "opus", "bitrate_kbps": 32})), tempo=0.8,
        pitch=12 * float(np.log2(0.8)), family="chain"),
    Edit("pitch +2 + tempo 1.1 + noise 10 dB", (
        ("pitch_shift", {"semitones": 2.0, "engine": "rubberband"}),
        ("time_stretch", {"ratio": 1.1}), ("add_noise", {"snr_db": 10.0})), tempo=1.1,
        pitch=2.0, family="chain"),
    # pitch and tempo changed apart, far (~2 semitones) from a speed change, a pitch shift
    # and a time stretch alike: what an uploader does to evade a matcher, and the case the
    # confidence model's edit distance weighs against (docs/fingerprint.md, point 7)
    Edit("speed 1.25 + pitch -2", (
        ("speed", {"ratio": 1.25}),
        ("pitch_shift", {"semitones": -2.0, "engine": "rubberband"})), tempo=1.25,
        pitch=12 * float(np.log2(1.25)) - 2.0, family="chain"),
    Edit("pitch -3 + tempo 1.2", (
        ("pitch_shift", {"semitones": -3.0, "engine": "rubberband"}),
        ("time_stretch", {"ratio": 1.2})), tempo=1.2, pitch=-3.0, family="chain"),
)
EDITS: dict[str, Edit] = {e.name: e for e in CORE + HARD}


SPEECH_TEXT = (
    "Hello everyone and welcome back to the channel. Today we are reacting to the "
    "new video, and honestly I did not expect this at all. Let me know what you think "
    "in the comments below, and do not forget to subscribe. Okay, so here is the part "
    "I wanted to show you, listen to this, it is really something else. "
)


@lru_cache(maxsize=4)
def speech_track(sr: int, seconds: float = 60.0, seed: int = 11,
                 engine: str = "espeak") -> np.ndarray:
    """Speech to talk over the music: espeak-ng (or, with ``engine="flite"``, flite's slt
    voice) when installed, else a speech-like babble."""
    flite = shutil.which("flite") if engine == "flite" else None
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if flite or exe:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "speech.wav"
            if flite:
                subprocess.run([flite, "-voice", "slt", "-t", SPEECH_TEXT * 3, "-o", str(out)],
                               check=True, capture_output=True)
            else:
                assert exe
                subprocess.run([exe, "-w", str(out), "-s", "165", SPEECH_TEXT * 3], check=True,
                               capture_output=True)
            y = decode(out, sr)
        if y.size >= sr * 5:
            return y[: int(seconds * sr)]
    return synth_speech_like(sr=sr, duration=seconds, rng=np.random.default_rng(seed))


def apply(edit: Edit, y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Apply ``edit`` to ``y``; steps get a seeded ``rng`` and the speech track as needed."""
    out = y
    for name, kw in edit.steps:
        kw = dict(kw)
        if name in ("speech", "babble"):
            sp = speech_track(sr, engine=kw.get("engine", "espeak"))
            if name == "babble":
                sp = synth_speech_like(sr=sr, duration=len(out) / sr + 1, rng=rng, talkers=6)
            start = int(rng.integers(0, max(1, sp.size - out.size)))
            other = np.resize(sp[start:], out.size).astype(np.float32)
            out = effects.mix_over(out, other, kw["snr_db"])
            continue
        fn: Callable[..., np.ndarray] = effects.EFFECTS[name]
        if name in ("add_noise", "reverb"):
            kw["rng"] = rng
        out = fn(out, sr, **kw)
    return np.asarray(out, np.float32)


@dataclass
class Query:
    """One benchmark query with its truth (``ref_id`` None for a non-catalog query)."""

    audio: np.ndarray
    sr: int
    edit: str
    length_s: float
    ref_id: str | None
    ref_start_ms: int
    tempo: float
    pitch: float
    speed: float | None
    extra: dict[str, Any] = field(default_factory=dict)


def cut_query(
    y: np.ndarray, sr: int, edit: Edit, length_s: float, rng: np.random.Generator,
    ref_id: str | None,
) -> Query | None:
    """Cut an excerpt from ``y`` that lasts ``length_s`` once ``edit`` is applied."""
    need = length_s * edit.tempo + 1.0  # reference seconds needed, with a margin
    if y.size < need * sr:
        return None
    start = int(rng.integers(0, int(y.size - need * sr) + 1))
    seg = y[start: start + int(need * sr)]
    if float(np.sqrt(np.mean(seg**2))) < 1e-3:
        return None  # a silent stretch (an intro, a gap): nothing to identify
    out = apply(edit, seg, sr, rng)[: round(length_s * sr)]
    if out.size < int(length_s * sr) * 0.98:
        return None
    return Query(out, sr, edit.name, length_s, ref_id, round(start * 1000 / sr),
                 edit.tempo, edit.pitch, edit.speed)
