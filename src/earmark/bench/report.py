# SPDX-License-Identifier: Apache-2.0
"""Tables, statistics and plots of ``earmark bench identify``."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, c - h), min(1.0, c + h))


def reliability(rows: list[dict[str, Any]], bins: int = 5) -> tuple[float, list[dict]]:
    """Expected calibration error of the confidences earmark reported, and its table.

    Every reported top match counts: right when a catalog query named its source, wrong
    otherwise (wrong reference, or any match on a non-catalog query).
    """
    pts = [(r["extra"]["confidence"], bool(r["correct"])) for r in rows
           if r["matcher"] == "earmark" and r["status"] == "match"
           and r.get("extra", {}).get("confidence") is not None]
    if not pts:
        return float("nan"), []
    p = np.array([c for c, _ in pts])
    y = np.array([ok for _, ok in pts], dtype=float)
    edges = np.linspace(0.5, 1.0, bins + 1)
    table, err = [], 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (p >= lo) & ((p < hi) | (hi == 1.0))
        if m.any():
            err += m.sum() / p.size * abs(p[m].mean() - y[m].mean())
            table.append({"bin": f"{lo:.1f}–{hi:.1f}", "n": int(m.sum()),
                          "mean_confidence": float(p[m].mean()), "precision": float(y[m].mean())})
    return float(err), table


def _cells(rows: list[dict[str, Any]], matcher: str) -> dict[tuple[str, float], list[dict]]:
    cells: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for r in rows:
        if r["matcher"] == matcher and r["catalog"]:
            cells[(r["edit"], r["length_s"])].append(r)
    return cells


def summary(result: dict[str, Any], matcher: str = "earmark") -> dict[str, Any]:
    rows = result["rows"]
    cells = _cells(rows, matcher)
    core = result["core_edits"]
    pooled = [r for (e, length), rs in cells.items() if e in core and length == 5.0 for r in rs]
    k = sum(r["correct"] for r in pooled)
    non = [r for r in rows if r["matcher"] == matcher and not r["catalog"]]
    fp = sum(r["status"] == "match" for r in non)
    lat = [r["latency_ms"] for r in rows if r["matcher"] == matcher and r["length_s"] == 5.0]
    return {
        "pooled_core_5s": k / max(1, len(pooled)), "pooled_core_5s_n": len(pooled),
        "pooled_core_5s_ci": wilson(k, len(pooled)),
        "fp_rate": fp / max(1, len(non)), "fp_n": len(non), "fp_ci": wilson(fp, len(non)),
        "latency_p50_ms": float(np.median(lat)) if lat else None,
        "latency_p95_ms": float(np.percentile(lat, 95)) if lat else None,
    }


#: the matcher name of the rows that use the confidence model the package ships
SHIPPED = "earmark, shipped model"


def _shipped_line(result: dict[str, Any]) -> list[str]:
    """The summary of the same queries under the confidence model the package ships."""
    if not any(r["matcher"] == SHIPPED for r in result["rows"]):
        return []
    s = summary(result, SHIPPED)
    th = result.get("shipped_calibration", {}).get("threshold")
    return [f"- With the confidence model the package ships (threshold {th}): pooled core "
            f"top-1 **{s['pooled_core_5s']:.3f}** (95 % CI {s['pooled_core_5s_ci'][0]:.3f}–"
            f"{s['pooled_core_5s_ci'][1]:.3f}), false positives **{s['fp_rate']:.3f}**, "
            f"p50 {s['latency_p50_ms']:.1f} ms"]


def _fmt_ci(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / max(1, n):.2f} [{lo:.2f}–{hi:.2f}]"


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    cat = result["catalog"]
    matchers = sorted({r["matcher"] for r in rows}, key=lambda m: (m != "earmark", m))
    s = summary(result)
    lines = [
        f"# earmark bench identify — {result['date']}",
        "",
        f"earmark {result['earmark_version']} on {result['machine']}.",
        f"Catalog: {cat['tracks']} tracks, {cat['hours']:.2f} h; "
        f"indexed in {cat['build_s']:.1f} s "
        f"with {cat['jobs']} jobs = **{cat['hours'] * 3600 / cat['build_s'] / cat['jobs']:.0f}× "
        f"realtime per core** ({cat['hours'] * 3600 / cat['build_s']:.0f}× on the machine), "
        "decoding included.",
        f"Index: {cat['index_bytes'] / 1e6:.1f} MB = "
        f"**{cat['index_bytes'] / 1e6 / cat['hours']:.2f} MB per audio hour**.",
        "",
        f"- Pooled core edits at 5 s: **top-1 {s['pooled_core_5s']:.3f}** "
        f"(95 % CI {s['pooled_core_5s_ci'][0]:.3f}–{s['pooled_core_5s_ci'][1]:.3f}, "
        f"n = {s['pooled_core_5s_n']})",
        f"- False positives on non-catalog queries: **{s['fp_rate']:.3f}** "
        f"(95 % CI {s['fp_ci'][0]:.3f}–{s['fp_ci'][1]:.3f}, n = {s['fp_n']}) at threshold "
        f"{result['calibration']['threshold']:.2f}",
        f"- Query latency, 5 s, in-process: p50 **{s['latency_p50_ms']:.1f} ms**, "
        f"p95 {s['latency_p95_ms']:.1f} ms",
        *_shipped_line(result),
        "- Held-out tracks left out of the non-catalog side as catalog recordings under "
        f"another name: {result.get('duplicates_left_out') or 'none'}",
        "",
        "## Top-1 by edit and query length (earmark), 95 % Wilson intervals",
        "",
    ]
    cells = _cells(rows, "earmark")
    lengths = sorted({length for (_, length) in cells})
    edits = list(dict.fromkeys(e for (e, _) in cells))
    lines.append("| edit | core | " + " | ".join(f"{x:g} s" for x in lengths) + " |")
    lines.append("|---|---|" + "---|" * len(lengths))
    for e in edits:
        cols = []
        for length in lengths:
            rs = cells.get((e, length), [])
            cols.append(_fmt_ci(sum(r["correct"] for r in rs), len(rs)) if rs else "–")
        lines.append(f"| {e} | {'✓' if e in result['core_edits'] else ''} | " + " | ".join(cols)
                     + " |")
    lines += ["", "## At 5 s: reported top-1, and the best alignment before the threshold", "",
              "The fingerprint's part and the confidence model's part apart: *best alignment "
              "right* counts the queries whose highest-scoring alignment names the source, "
              "whatever its confidence.", "",
              "| edit | reported top-1 | best alignment right |", "|---|---|---|"]
    for e in edits:
        rs = cells.get((e, 5.0), [])
        if rs and all("best_alignment" in r["extra"] for r in rs):
            best = sum(r["extra"]["best_alignment"] == r["extra"]["source"] for r in rs)
            lines.append(f"| {e} | {_fmt_ci(sum(r['correct'] for r in rs), len(rs))} | "
                         f"{_fmt_ci(best, len(rs))} |")
    lines += ["", "## Side by side at 5 s (same queries, same run)", ""]
    lines.append("| edit | " + " | ".join(matchers) + " |")
    lines.append("|---|" + "---|" * len(matchers))
    by_m = {m: _cells(rows, m) for m in matchers}
    base_edits = [e for e in edits if all(by_m[m].get((e, 5.0)) for m in matchers)]
    for e in base_edits:
        cols = []
        for m in matchers:
            rs = by_m[m][(e, 5.0)]
            cols.append(_fmt_ci(sum(r["correct"] for r in rs), len(rs)))
        lines.append(f"| {e} | " + " | ".join(cols) + " |")
    pooled_cols, fp_cols, lat_cols = [], [], []
    for m in matchers:
        rs = [r for e in base_edits if e in result["core_edits"] for r in by_m[m][(e, 5.0)]]
        pooled_cols.append(_fmt_ci(sum(r["correct"] for r in rs), len(rs)))
        non = [r for r in rows if r["matcher"] == m and not r["catalog"]]
        fp_cols.append(_fmt_ci(sum(r["status"] == "match" for r in non), len(non)))
        lat = [r["latency_ms"] for r in rows if r["matcher"] == m and r["length_s"] == 5.0]
        lat_cols.append(f"{np.median(lat):.0f} ms" if lat else "–")
    lines.append("| **pooled core** | " + " | ".join(pooled_cols) + " |")
    lines.append("| false positives | " + " | ".join(fp_cols) + " |")
    lines.append("| query p50 | " + " | ".join(lat_cols) + " |")
    lines += ["", "## Estimation errors (correct matches, earmark)", "",
              "| edit | offset error p50 / p95 (ms) | tempo error p50 | speed error p50 | "
              "pitch error p50 (semitones) |", "|---|---|---|---|---|"]
    for e in edits:
        rs = [r for length in lengths for r in cells.get((e, length), []) if r["correct"]]
        if not rs:
            continue
        off = [r["offset_err_ms"] for r in rs if r["offset_err_ms"] is not None]
        te = [r["tempo_err"] for r in rs if r["tempo_err"] is not None]
        se = [r["speed_err"] for r in rs if r["speed_err"] is not None]
        pe = [r["pitch_err"] for r in rs if r["pitch_err"] is not None]
        lines.append(
            f"| {e} | {np.median(off):.0f} / {np.percentile(off, 95):.0f} | "
            f"{np.median(te) * 100:.2f} % | "
            + (f"{np.median(se) * 100:.2f} %" if se else "–") + f" | {np.median(pe):.2f} |"
        )
    err, table = reliability(rows)
    lines += ["", f"## Calibration of reported confidences: ECE {err:.3f}", "",
              "| confidence | matches | mean confidence | share right |", "|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['bin']} | {t['n']} | {t['mean_confidence']:.3f} | "
                     f"{t['precision']:.3f} |")
    lines += ["", "## Latency as the catalog grows (5 s queries; distractors are reversed, "
              "re-pitched corpus tracks)", "", "| catalog hours | p50 ms | p95 ms | top-1 |",
              "|---|---|---|---|"]
    for g in result["growth"]:
        lines.append(f"| {g['hours']:.1f} | {g['p50_ms']:.1f} | {g['p95_ms']:.1f} | "
                     f"{g['top1']:.2f} |")
    fps = [r for r in rows if r["matcher"] == "earmark" and not r["catalog"]
           and r["status"] == "match"]
    if fps:
        lines += ["", "## False positives by name (judge them: loops and remixes of one theme "
                  "are common in game music)", "", "| query source (not in catalog) | edit | "
                  "length | matched reference | confidence |", "|---|---|---|---|---|"]
        for r in fps:
            x = r.get("extra", {})
            lines.append(f"| {x.get('source')} | {r['edit']} | {r['length_s']:g} s | "
                         f"{x.get('top')} | {x.get('confidence')} |")
    lines += ["", f"Calibration: {result['calibration']['fitted_on']}.", ""]
    return "\n".join(lines)


def plots(result: dict[str, Any], out: Path) -> None:
    """``top1.png`` (top-1 by edit at 5 s, every matcher) and ``growth.png``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot extra is not installed: tables only
        return
    rows = result["rows"]
    matchers = sorted({r["matcher"] for r in rows}, key=lambda m: (m != "earmark", m))
    cells = _cells(rows, "earmark")
    edits = list(dict.fromkeys(e for (e, length) in cells if length == 5.0))
    fig, ax = plt.subplots(figsize=(12, 0.28 * len(edits) + 1.5))
    h = 0.8 / len(matchers)
    for i, m in enumerate(matchers):
        cm = _cells(rows, m)
        vals: list[float] = []
        errs: list[list[float]] = [[], []]
        ys: list[float] = []
        for j, e in enumerate(edits):
            rs = cm.get((e, 5.0))
            if not rs:
                continue
            k = sum(r["correct"] for r in rs)
            p = k / len(rs)
            lo, hi = wilson(k, len(rs))
            vals.append(p)
            errs[0].append(p - lo)
            errs[1].append(hi - p)
            ys.append(j + i * h)
        ax.barh(ys, vals, height=h, xerr=errs, label=m, capsize=2)
    ax.set_yticks(np.arange(len(edits)) + 0.4 - h / 2)
    ax.set_yticklabels(edits, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("top-1 at 5 s (95 % CI)")
    ax.axvline(0.97, color="grey", lw=0.8, ls="--")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "top1.png", dpi=110)
    plt.close(fig)
    g = result["growth"]
    if len(g) > 1:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([x["hours"] for x in g], [x["p50_ms"] for x in g], "o-", label="p50")
        ax.plot([x["hours"] for x in g], [x["p95_ms"] for x in g], "s--", label="p95")
        ax.set_xscale("log")
        ax.set_xlabel("catalog hours")
        ax.set_ylabel("5 s query latency, ms")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "growth.png", dpi=110)
        plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Re-render ``report.md`` and the plots from a ``report.json``."""
    import json
    import sys

    path = Path((argv or sys.argv[1:])[0])
    result = json.loads(path.read_text())
    (path.parent / "report.md").write_text(markdown(result))
    plots(result, path.parent)


if __name__ == "__main__":
    main()
