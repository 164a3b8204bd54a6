# SPDX-License-Identifier: Apache-2.0
"""Proxy AI generators, built locally, by architecture family (needs torch: the ``train`` extra).

These are *proxies*: small autoencoders with the decoder architectures of public neural
codecs and vocoders, run with random weights or briefly trained on the corpus so that they
reconstruct music. They reproduce the artefacts of each architecture family (the spectral grid
of transposed convolutions at sr ÷ ∏ strides, the images of nearest/linear upsampling, the
frame-rate seams of an inverse-STFT head, the phase smearing of Griffin-Lim), not the sound
or the quality of a commercial generator. Every figure measured on them says so.

A trained proxy is cached under ``cache_dir`` by family, steps and seed, so that a benchmark
re-run reuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

SR = 44100  #: rate of the audio handed to and returned by a proxy


@dataclass(frozen=True)
class Family:
    """An architecture family: decoder kind, sample rate and upsampling strides."""

    name: str
    kind: str  #: "tconv", "nearest", "linear", "istft" or "griffinlim"
    sr: int
    strides: tuple[int, ...]
    note: str = ""

    @property
    def hop(self) -> int:
        """Samples per latent frame (∏ strides)."""
        return int(np.prod(self.strides))

    @property
    def grid_hz(self) -> float:
        """Spacing of the expected spectral grid, Hz."""
        return self.sr / self.hop


FAMILIES: tuple[Family, ...] = (
    Family("tconv-44k", "tconv", 44100, (2, 4, 8, 8), "transposed convs, 44.1 kHz ÷ 512"),
    Family("tconv-32k", "tconv", 32000, (8, 5, 4, 4), "transposed convs, 32 kHz ÷ 640"),
    Family("tconv-24k", "tconv", 24000, (8, 5, 4, 2), "transposed convs, 24 kHz ÷ 320"),
    Family("nearest-32k", "nearest", 32000, (8, 5, 4, 4), "nearest upsampling + convs"),
    Family("linear-44k", "linear", 44100, (2, 4, 8, 8), "linear upsampling + convs"),
    Family("istft-24k", "istft", 24000, (256,), "inverse-STFT head, hop 256"),
    Family("griffinlim-22k", "griffinlim", 22050, (256,), "Griffin-Lim from an 80-band mel"),
)
FAMILY_BY_NAME = {f.name: f for f in FAMILIES}


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise RuntimeError("proxy generators need torch: pip install 'earmark[train]'") from exc
    return torch


def _build(fam: Family) -> Any:
    torch = _torch()
    nn = torch.nn
    ch = (8, 16, 32, 64)
    latent = 32

    class Proxy(nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            strides = fam.strides if fam.kind != "istft" else (4, 4, 4, 4)
            enc: list = []
            c = 1
            for st, co in zip(strides[::-1], ch, strict=False):
                enc += [nn.Conv1d(c, co, 2 * st, stride=st, padding=(st + 1) // 2), nn.ELU()]
                c = co
            enc += [nn.Conv1d(c, latent, 3, padding=1)]
            self.enc = nn.Sequential(*enc)
            if fam.kind == "istft":
                self.n_fft = 1024
                self.head = nn.Sequential(nn.Conv1d(latent, 128, 3, padding=1), nn.ELU(),
                                          nn.Conv1d(128, self.n_fft + 2, 3, padding=1))
                return
            dec: list = [nn.Conv1d(latent, ch[-1], 3, padding=1), nn.ELU()]
            c = ch[-1]
            for i, st in enumerate(fam.strides):
                co = ch[::-1][i + 1] if i + 1 < len(ch) else 8
                if fam.kind == "tconv":
                    dec += [nn.ConvTranspose1d(c, co, 2 * st, stride=st, padding=st // 2)]
                else:
                    dec += [nn.Upsample(scale_factor=st, mode=fam.kind),
                            nn.Conv1d(c, co, 2 * st + 1, padding=st)]
                dec += [nn.ELU()]
                c = co
            dec += [nn.Conv1d(c, 1, 7, padding=3)]
            self.dec = nn.Sequential(*dec)

        def forward(self, x: Any) -> Any:
            z = self.enc(x)
            if fam.kind == "istft":
                h = self.head(z)
                nb = self.n_fft // 2 + 1
                mag = torch.exp(torch.clamp(h[:, :nb], max=6.0))
                spec = torch.polar(mag, h[:, nb:] * np.pi)
                y = torch.istft(spec, self.n_fft, hop_length=fam.hop,
                                window=torch.hann_window(self.n_fft), center=True)[:, None]
            else:
                y = self.dec(z)
            n = x.shape[-1]
            if y.shape[-1] < n:
                y = torch.nn.functional.pad(y, (0, n - y.shape[-1]))
            return y[..., :n]

    return Proxy()


def _stft_loss(torch: Any, y: Any, x: Any) -> Any:
    loss = (y - x).abs().mean()
    for n in (256, 1024, 2048):
        w = torch.hann_window(n)
        ys = torch.stft(y.squeeze(1), n, n // 4, window=w, return_complex=True).abs()
        xs = torch.stft(x.squeeze(1), n, n // 4, window=w, return_complex=True).abs()
        loss = loss + (torch.log(ys + 1e-5) - torch.log(xs + 1e-5)).abs().mean()
        loss = loss + (ys - xs).abs().mean()
    return loss


@dataclass
class Proxy:
    """A ready proxy generator: ``generate(audio)`` at :data:`SR` → its re-synthesis."""

    family: Family
    trained_steps: int
    _run: Callable[[np.ndarray], np.ndarray]

    @property
    def name(self) -> str:
        return f"{self.family.name}/{'trained' if self.trained_steps else 'random'}"

    def generate(self, y: np.ndarray) -> np.ndarray:
        """Re-synthesise mono ``y`` (at 44.1 kHz) through the proxy; same length, peak 0.9."""
        out = self._run(np.asarray(y, np.float32))
        out = out[: y.size] if out.size >= y.size else np.pad(out, (0, y.size - out.size))
        out = out - out.mean()  # random decoders can put out a large DC offset
        peak = float(np.max(np.abs(out))) or 1.0
        return (0.9 * out / peak).astype(np.float32)


def _griffinlim(fam: Family) -> Callable[[np.ndarray], np.ndarray]:
    torch = _torch()
    n_fft, hop, n_mels = 1024, fam.hop, 80

    def run(y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(soxr.resample(y, SR, fam.sr).astype(np.float32))
        w = torch.hann_window(n_fft)
        mag = torch.stft(x, n_fft, hop, window=w, return_complex=True).abs()
        fb = _mel_filterbank(fam.sr, n_fft, n_mels)
        mel = fb @ mag.numpy()
        mag2 = torch.from_numpy(np.linalg.pinv(fb) @ mel).clamp(min=0).float()
        rng = np.random.default_rng(0)
        phase = torch.from_numpy(np.exp(2j * np.pi * rng.random(mag2.shape)).astype(np.complex64))
        for _ in range(32):
            sig = torch.istft(mag2 * phase, n_fft, hop, window=w, length=x.numel())
            spec = torch.stft(sig, n_fft, hop, window=w, return_complex=True)
            phase = spec / spec.abs().clamp(min=1e-8)
        sig = torch.istft(mag2 * phase, n_fft, hop, window=w, length=x.numel())
        return soxr.resample(sig.numpy(), fam.sr, SR).astype(np.float32)

    return run


def _mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular mel filters, shape (n_mels, n_fft // 2 + 1)."""
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = hz(np.linspace(mel(np.array(0.0)), mel(np.array(sr / 2)), n_mels + 2))
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return fb


def load_proxy(fam: Family, *, train_on: Sequence[np.ndarray] = (), steps: int = 0,
               seed: int = 0, cache_dir: Path | None = None,
               log: Callable[[str], None] = lambda s: None) -> Proxy:
    """A proxy of ``fam``: random weights (``steps=0``) or trained ``steps`` Adam steps on
    1 s crops of ``train_on`` (mono arrays at 44.1 kHz), cached in ``cache_dir``."""
    if fam.kind == "griffinlim":
        return Proxy(fam, 0, _griffinlim(fam))
    torch = _torch()
    torch.manual_seed(seed)
    net = _build(fam)
    path = cache_dir / f"{fam.name}-s{steps}-seed{seed}.pt" if cache_dir and steps else None
    if path is not None and path.exists():
        net.load_state_dict(torch.load(path))
    elif steps:
        audio = [soxr.resample(a, SR, fam.sr).astype(np.float32) for a in train_on]
        audio = [a for a in audio if a.size > fam.sr * 2]
        if not audio:
            raise ValueError("no training audio longer than 2 s")
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        n = fam.sr // fam.hop * fam.hop
        rng = np.random.default_rng(seed)
        for step in range(steps):
            batch = []
            for _ in range(8):
                a = audio[int(rng.integers(len(audio)))]
                s0 = int(rng.integers(0, a.size - n))
                batch.append(a[s0:s0 + n])
            x = torch.from_numpy(np.stack(batch))[:, None]
            loss = _stft_loss(torch, net(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 200 == 0:
                log(f"  {fam.name}: step {step}/{steps} loss {float(loss.detach()):.2f}")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), path)
    net.eval()

    def run(y: np.ndarray) -> np.ndarray:
        x = soxr.resample(y, SR, fam.sr).astype(np.float32)
        n = -(-x.size // fam.hop) * fam.hop
        x = np.pad(x, (0, n - x.size))
        with torch.no_grad():
            out = net(torch.from_numpy(x)[None, None])[0, 0].numpy()
        return soxr.resample(out, fam.sr, SR).astype(np.float32)

    return Proxy(fam, steps, run)
