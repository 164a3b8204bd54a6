# SPDX-License-Identifier: Apache-2.0
"""The speech mask: masked peak picking, the warp onto speed-ladder rungs, the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark.audio import effects
from earmark.audio.generators import synth_music, synth_speech_like, tone
from earmark.identify import speech
from earmark.identify.fingerprinter import TripletFingerprinter, speed_ladder
from earmark.identify.peaks import PeakParams, find_peaks
from earmark.identify.spectrogram import SpectrogramParams, log_spectrogram

SR = 8000
SPEC = SpectrogramParams()
FR = SPEC.frame_rate


def test_nothing_masked_picks_the_same_peaks() -> None:
    S = log_spectrogram(synth_music(sr=SR, duration=6.0, rng=np.random.default_rng(1)))
    a = find_peaks(S, frame_rate=FR)
    b = find_peaks(S, frame_rate=FR, mask=np.ones(S.shape, bool))
    assert len(a) > 20
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.f, b.f)


def test_a_masked_cell_neither_peaks_nor_suppresses_its_neighbour() -> None:
    rng = np.random.default_rng(0)
    S = (-60.0 + rng.normal(0, 0.5, (200, SPEC.n_bins))).astype(np.float32)
    S[100, 90] = -10.0  # strong (speech)
    S[102, 93] = -25.0  # weaker, inside the strong one's peak neighbourhood (music)
    p = PeakParams(per_second=100.0)
    plain = find_peaks(S, p, frame_rate=FR)
    near = (np.abs(plain.t - 102) < 1) & (np.abs(plain.f - 93) < 1)
    assert not near.any()  # suppressed by the strong neighbour
    mask = np.ones(S.shape, bool)
    mask[98:103, 89:92] = False
    masked = find_peaks(S, p, frame_rate=FR, mask=mask)
    assert ((np.abs(masked.t - 102) < 1) & (np.abs(masked.f - 93) < 1)).any()
    assert not ((np.abs(masked.t - 100) < 1.5) & (np.abs(masked.f - 90) < 1.5)).any()


@settings(max_examples=8, deadline=None)
@given(v=st.sampled_from(speed_ladder()), f0=st.floats(200.0, 1500.0))
def test_warp_follows_resampling(v: float, f0: float) -> None:
    """A tone burst's loud cells, warped onto a rung, land where the resampled tone's are
    (same centre in time and frequency, same length)."""
    y = np.zeros(4 * SR, np.float32)
    burst = tone(f0, sr=SR, duration=1.0)
    y[SR:2 * SR] = burst[:SR]
    yv = soxr.resample(y, SR, SR * v).astype(np.float32)
    S0 = log_spectrogram(y, SPEC)
    Sv = log_spectrogram(yv, SPEC)
    cells0 = S0 > S0.max() - 6.0
    cellsv = Sv > Sv.max() - 6.0
    warped = speech.warp(cells0, v, Sv.shape[0], SPEC.bins_per_octave)
    if cellsv.sum() == 0 or f0 / v > SPEC.fmax * 0.95 or f0 / v < SPEC.fmin * 1.05:
        return  # the tone left the analysed band on this rung
    tw, fw = np.nonzero(warped)
    tv, fv = np.nonzero(cellsv)
    assert abs(tw.mean() - tv.mean()) < 3.0  # frames
    assert abs(np.median(fw) - np.median(fv)) <= 1.5  # log bins
    assert abs((tw.max() - tw.min()) - (tv.max() - tv.min())) < 0.1 * (tv.max() - tv.min()) + 3


def _speech_over(music: np.ndarray, louder_db: float, seed: int) -> np.ndarray:
    talk = synth_speech_like(sr=SR, duration=music.size / SR + 0.5,
                             rng=np.random.default_rng(seed))
    return effects.mix_over(music, talk, -louder_db)


@pytest.mark.parametrize("seed", [2, 3])
def test_the_shipped_mask_finds_talk_over(seed: int) -> None:
    """Speech 5 dB louder than (generated) music takes well over the gate's share of cells.
    (Generated music itself looks partly speech-like to a model trained on real music, so
    only the difference is asserted here; tests/test_corpus.py checks real music.)"""
    music = synth_music(sr=SR, duration=5.0, rng=np.random.default_rng(seed))
    m = speech.default_mask()
    S_music = log_spectrogram(music, SPEC)
    S_talk = log_spectrogram(_speech_over(music, 5.0, seed), SPEC)
    c_music = speech.coverage(m.speech_cells(S_music), S_music)
    c_talk = speech.coverage(m.speech_cells(S_talk), S_talk)
    assert c_talk >= TripletFingerprinter().speech_gate
    assert c_talk > c_music + 0.15, (c_music, c_talk)


def test_masked_hashes_are_added_only_past_the_gate() -> None:
    music = synth_music(sr=SR, duration=5.0, rng=np.random.default_rng(4))
    talk = _speech_over(music, 5.0, 4)
    off = TripletFingerprinter(speech_mask=False)
    never = TripletFingerprinter(speech_gate=1.01)
    always = TripletFingerprinter(speech_gate=0.0)
    assert never.speech_cells(talk) is None
    np.testing.assert_array_equal(never.query(talk).hashes.key, off.query(talk).hashes.key)
    cells = always.speech_cells(talk)
    assert cells is not None and cells.any()
    plain = off.query(talk).hashes
    both = always.query(talk).hashes
    assert len(both) > len(plain)
    assert np.isin(plain.key, both.key).all()  # added to, not instead of


def test_training_targets_are_the_ideal_binary_mask() -> None:
    from earmark.identify.speech_train import mixture

    rng = np.random.default_rng(5)
    music = synth_music(sr=SR, duration=3.0, rng=np.random.default_rng(6))
    talk = synth_speech_like(sr=SR, duration=3.0, rng=rng)[: music.size]
    x, target, S = mixture(music, None, 0.0, rng)
    assert x.shape == (2, *S.shape) and target.shape == (2, *S.shape)
    assert target[0].sum() == 0 and target[1].mean() > 0.5  # no speech: nothing to mask
    _, loud, _ = mixture(music, talk, -15.0, rng)  # speech 15 dB louder
    _, soft, _ = mixture(music, talk, 15.0, rng)  # speech 15 dB softer
    share = [t[0].sum() / t[1].sum() for t in (loud, soft)]
    assert share[0] > 0.5 and share[0] > 1.5 * share[1], share


@pytest.mark.parametrize("frames", [3, 100, 313])
def test_shipped_model_gives_one_probability_per_cell(frames: int) -> None:
    """Odd and short frame counts too: the model pools by 2 and upsamples back."""
    rng = np.random.default_rng(frames)
    S = (rng.standard_normal((frames, SPEC.n_bins)) * 10 - 40).astype(np.float32)
    p = speech.default_mask().probability(S)
    assert p.shape == S.shape and np.isfinite(p).all() and 0 <= p.min() <= p.max() <= 1


@given(st.integers(-80, 80))
@settings(max_examples=25, deadline=None)
def test_harmonic_stack_shift_moves_bins(s: int) -> None:
    torch = pytest.importorskip("torch")
    from earmark.identify.speech_nets import _shift

    x = torch.arange(2 * 5 * SPEC.n_bins, dtype=torch.float32).reshape(1, 2, 5, SPEC.n_bins)
    out = _shift(x, s)
    assert out.shape == x.shape
    for b in (0, 17, 90, SPEC.n_bins - 1):
        want = x[..., b + s] if 0 <= b + s < SPEC.n_bins else torch.zeros_like(x[..., 0])
        assert torch.equal(out[..., b], want)


@pytest.mark.filterwarnings("ignore:Constant folding")
def test_trained_from_a_material_file_exports_what_onnx_runtime_runs(tmp_path: Path) -> None:
    """Material written, read back; a tiny harmonic model trained from it alone (no corpus)
    and exported: ONNX Runtime gives torch's logits on a frame count the export never saw."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from earmark.identify.speech_nets import build
    from earmark.identify.speech_train import (
        MaskTrainConfig,
        export_onnx,
        load_material,
        mixture,
        train,
    )

    rng = np.random.default_rng(2)
    music = [synth_music(sr=SR, duration=8.0, rng=rng) for _ in range(3)]
    talk = [synth_speech_like(sr=SR, duration=4.0, rng=rng) for _ in range(2)]
    path = tmp_path / "material.npz"
    np.savez_compressed(path, **{f"m{i}": np.round(m * 32767).astype(np.int16)
                                 for i, m in enumerate(music)},
                        **{f"s{i}": np.round(t * 32767).astype(np.int16)
                           for i, t in enumerate(talk)})
    cfg = MaskTrainConfig(corpus=None, out=tmp_path / "m.onnx", material=path, examples=12,
                          epochs=1, arch="harmonic", channels=4, workers=2, device="cpu")
    got_music, got_talk = load_material(cfg, rng)
    assert len(got_music) == 3 and len(got_talk) == 2
    assert np.abs(got_music[0] - music[0]).max() < 1e-4
    card = train(cfg, log=lambda s: None)
    assert card["weights"] > 0 and "evaluation" not in card and cfg.out.exists()
    mask = speech.SpeechMask(cfg.out)
    torch.manual_seed(0)
    net = build("harmonic", 4).eval()
    export_onnx(net, tmp_path / "n.onnx")
    n = 5 * SR + 572
    x, _, S = mixture(music[0][:n], np.resize(talk[0], n), 0.0, rng)
    assert S.shape[0] % 2 == 1 and S.shape[0] != 100  # odd, and not the export's dummy
    with torch.no_grad():
        want = torch.sigmoid(net(torch.as_tensor(x)[None]))[0, 0].numpy()
    got = speech.SpeechMask(tmp_path / "n.onnx").probability(S)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert mask.probability(S).shape == S.shape


def test_evaluation_labels_trained_flite_voices_apart_from_unheard_ones() -> None:
    from earmark.identify.speech_train import FLITE_TRAIN_VOICES, _label

    assert _label("flite rms", FLITE_TRAIN_VOICES).endswith("(training voice, other utterances)")
    assert _label("flite slt", FLITE_TRAIN_VOICES).endswith("(never heard in training)")
    assert _label("festival kal", FLITE_TRAIN_VOICES).endswith("(never heard in training)")
    assert _label("flite rms", ()).endswith("(never heard in training)")


@pytest.mark.parametrize("seed", [2, 3])
def test_the_talk_probe_passes_talk_and_agrees_with_the_shipped_mask(seed: int) -> None:
    """The live talk probe (the small network first, then the shipped mask) finds speech
    5 dB louder than the music; whatever it says, it never says "talk" where the shipped
    mask's cover is under the gate, and where it says "no talk" either the small network's
    cover is under the pre-gate or the shipped mask's is under the gate."""
    music = synth_music(sr=SR, duration=2.0, rng=np.random.default_rng(seed))
    fp = TripletFingerprinter()
    talk = _speech_over(music, 5.0, seed)
    assert fp.talks(talk)
    assert not TripletFingerprinter(speech_mask=False).talks(talk)
    for y in (music, talk, _speech_over(music, -5.0, seed)):
        S = log_spectrogram(y, SPEC)
        big = speech.coverage(speech.default_mask().speech_cells(S), S)
        small = speech.coverage(speech.default_probe().speech_cells(S), S)
        assert fp.talks(y) == (small >= speech.PROBE_PREGATE and big >= fp.speech_gate)
