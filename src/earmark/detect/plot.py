# SPDX-License-Identifier: Apache-2.0
"""A picture of a detection: the spectrogram with the AI probability over time on top."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio.decode import decode_head

PLOT_MAX_S = 600.0  #: only the first ten minutes are drawn


def plot_detection(path: str | os.PathLike[str], result: dict[str, Any], out: Path, *,
                   sr: int = 44100) -> None:
    """Draw ``result`` (a ``detect --json`` record) over the spectrogram of ``path`` into
    ``out`` (PNG). Needs matplotlib (the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise RuntimeError("--plot needs matplotlib: pip install 'earmark[plot]'") from exc
    from scipy.signal import spectrogram

    y = decode_head(path, sr, PLOT_MAX_S)
    f, t, S = spectrogram(y, sr, nperseg=2048, noverlap=1024)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.pcolormesh(t, f / 1000, 10 * np.log10(S + 1e-12), shading="auto", cmap="magma",
                  vmin=-120, vmax=-20)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    ax2 = ax.twinx()
    for s in result["segments"]:
        p = s["ai_probability"]
        if p is None:
            continue
        ax2.plot([s["start_ms"] / 1000, s["end_ms"] / 1000], [p, p], color="cyan", lw=2.5)
    for sp in result.get("spans", []):
        a, b = sp["start_ms"] / 1000, sp["end_ms"] / 1000
        ax2.axvspan(a, b, facecolor="none", edgecolor="white", hatch="//", lw=0.8)
        ax2.plot([a, b], [1.0, 1.0], color="white", lw=6, solid_capstyle="butt")
    ax2.axhline(0.9, color="red", ls="--", lw=0.8)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("AI probability (cyan: segments; hatched: AI spans)")
    det = result["detector"]
    ax.set_title(f"{Path(str(result['input'])).name}: {result['label']} "
                 f"(p = {result['ai_probability']}) — {det['name']} v{det['version']}, "
                 "calibrated on proxy generators")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
