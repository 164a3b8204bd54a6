# SPDX-License-Identifier: Apache-2.0
"""NumPy stand-ins of neural audio decoders with random weights (no torch needed).

Used by the tests and the demo to make audio that carries a decoder's upsampling grid: a
stack of transposed 1-D convolutions (stride ``s``, kernel ``2 s``) turns a latent sequence at
``sr / ∏ strides`` Hz back into audio, the way the decoders of neural codecs do. With random
weights the output does not sound like the input, but it carries the spectral peaks every
``sr / ∏ strides`` Hz that such decoders leave (Pons et al., ICASSP 2021). The benchmark's
trained proxies live in :mod:`earmark.bench.proxies` (torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import soxr


def conv_transpose(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int
                   ) -> np.ndarray:
    """1-D transposed convolution with kernel ``2 · stride`` (no padding).

    Parameters
    ----------
    x : np.ndarray [shape=(c_in, t)]
    weight : np.ndarray [shape=(c_in, c_out, 2 * stride)]
    bias : np.ndarray [shape=(c_out,)]

    Returns
    -------
    np.ndarray [shape=(c_out, (t + 1) * stride)]
    """
    _c_in, t = x.shape
    c_out, k = weight.shape[1], weight.shape[2]
    if k != 2 * stride:
        raise ValueError(f"kernel must be 2 × stride ({2 * stride}), got {k}")
    z = np.einsum("ick,it->ckt", weight, x)  # each input step spreads over 2·stride outputs
    y = np.zeros((c_out, t + 1, stride), dtype=np.float32)
    y[:, :t, :] += z[:, :stride, :].transpose(0, 2, 1)
    y[:, 1:, :] += z[:, stride:, :].transpose(0, 2, 1)
    return y.reshape(c_out, -1) + bias[:, None]


def random_decoder(y: np.ndarray, sr: int, *, gen_sr: int = 44100,
                   strides: Sequence[int] = (2, 4, 8, 8), channels: int = 8, seed: int = 0
                   ) -> np.ndarray:
    """Re-synthesise ``y`` through a random-weight encoder / transposed-conv decoder.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``sr`` Hz.
    gen_sr : int
        The decoder's own sample rate; its grid is ``gen_sr / prod(strides)`` Hz.
    strides : sequence of int
        Upsampling strides, first layer first.
    channels : int
        Latent channels (halved at each layer).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        At ``sr`` Hz, peak 0.9, no DC.
    """
    rng = np.random.default_rng(seed)
    x = soxr.resample(np.asarray(y, np.float32), sr, gen_sr).astype(np.float32)
    hop = int(np.prod(strides))
    frames = x[: x.size // hop * hop].reshape(-1, hop)
    if frames.shape[0] == 0:
        raise ValueError(f"input shorter than one latent frame ({hop} samples at {gen_sr} Hz)")
    enc = rng.standard_normal((hop, channels)).astype(np.float32) / np.sqrt(hop)
    h = np.tanh(3.0 * frames @ enc).T  # latent (channels, frames)
    c = channels
    for i, s in enumerate(strides):
        last = i == len(strides) - 1
        c_out = 1 if last else max(1, c // 2)
        w = (rng.standard_normal((c, c_out, 2 * s)) / np.sqrt(2 * c)).astype(np.float32)
        b = (0.1 * rng.standard_normal(c_out)).astype(np.float32)
        h = conv_transpose(h, w, b, s)
        if not last:
            h = np.where(h > 0, h, 0.2 * h)  # leaky ReLU
        c = c_out
    out = soxr.resample(h[0], gen_sr, sr).astype(np.float32)
    out = out[: y.size] if out.size >= y.size else np.pad(out, (0, y.size - out.size))
    out -= out.mean()
    return (0.9 * out / max(float(np.abs(out).max()), 1e-9)).astype(np.float32)
