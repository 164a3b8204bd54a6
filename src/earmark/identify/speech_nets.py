# SPDX-License-Identifier: Apache-2.0
"""The speech-mask networks (training only: the package runs the exported ONNX).

Both read the two feature channels of :func:`earmark.identify.speech.features`, shape
``(batch, 2, frames, bins)``, and give one logit per cell, shape ``(batch, 1, frames, bins)``.
Frames are 16 ms, bins a third of a semitone (36 per octave).

- ``dilated`` (the first shipped model, 4,851 weights): five convolutions at full
  resolution, dilated up to ±0.26 s and ±12 bins.
- ``harmonic``: what a cell is depends on its harmonics: a voiced speech cell at bin ``b``
  has partners at ``b + 36·log2(k)``. The input is stacked with copies of itself shifted by
  the 2nd, 3rd and 4th harmonic and the sub-octave (a harmonic stack, as pitch trackers do),
  so that the first convolution sees the comb; a half-resolution branch with dilations up
  to 8 (±0.5 s, ±10 bins at full resolution) sees the syllables and the formant movement,
  and is joined back at full resolution. About twice the multiply-adds of ``dilated`` per
  cell.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: bin offsets of the harmonic stack at 36 bins per octave: ×1, ×2, ×3, ×4 and ×1/2
HARMONIC_SHIFTS = (0, 36, 57, 72, -36)


def dilated(channels: int = 10) -> nn.Module:
    c = channels
    return nn.Sequential(
        nn.Conv2d(2, c, 5, padding=2), nn.ReLU(),
        nn.Conv2d(c, c, 5, padding=4, dilation=2), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=4, dilation=4), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=(8, 4), dilation=(8, 4)), nn.ReLU(),
        nn.Conv2d(c, 1, 1),
    )


def _shift(x: torch.Tensor, s: int) -> torch.Tensor:
    """``out[..., b] = x[..., b + s]``, zero where ``b + s`` is outside the bins."""
    nb = x.shape[-1]
    if s == 0:
        return x
    if s > 0:
        return F.pad(x, (0, s))[..., s:s + nb]
    return F.pad(x, (-s, 0))[..., :nb]


class Harmonic(nn.Module):
    """Harmonic stack, a full-resolution path and a dilated half-resolution branch."""

    def __init__(self, channels: int = 12) -> None:
        super().__init__()
        c = channels
        self.inp = nn.Sequential(
            nn.Conv2d(2 * len(HARMONIC_SHIFTS), c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=2, dilation=2), nn.ReLU(),
        )
        self.mid = nn.Sequential(
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=4, dilation=4), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=(8, 1), dilation=(8, 1)), nn.ReLU(),
        )
        self.out = nn.Sequential(nn.Conv2d(3 * c, c, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([_shift(x, s) for s in HARMONIC_SHIFTS], dim=1))
        m = self.mid(F.avg_pool2d(h, 2, ceil_mode=True))
        u = F.interpolate(m, scale_factor=2.0, mode="nearest")[..., : h.shape[-2], : h.shape[-1]]
        out: torch.Tensor = self.out(torch.cat([h, u], dim=1))
        return out


def build(arch: str, channels: int) -> Any:
    """The network named ``arch`` (``dilated`` or ``harmonic``)."""
    if arch == "dilated":
        return dilated(channels)
    if arch == "harmonic":
        return Harmonic(channels)
    raise ValueError(f"unknown speech-mask architecture {arch!r}: dilated or harmonic")
