# SPDX-License-Identifier: Apache-2.0
"""``earmark capacity``: nodes, cores, memory and GPUs for a catalog and an upload rate.

A model, not a measurement: it multiplies the per-core figures that ``earmark bench capacity``
measured (:mod:`earmark.bench.capacity`; the package ships one run in ``capacity.json``) by
the work an upload brings, and writes every assumption next to the answer. The work of one
upload of ``S`` seconds, in CPU seconds:

- decode to 8 kHz (identification) and to the detector's rate: ``S / rate`` each;
- identification in windows of 60 s overlapping by 10 s (:mod:`earmark.service.scan`): query
  fingerprinting and lookup + alignment per second of window audio, the lookup scaled from
  the measured catalog to the target one as ``(hours / measured hours) ^ exponent``; uploads
  without a match also pay the talk-over pass;
- AI detection: ``S / rate``.

Cores = uploads per second × CPU per upload × burst factor / target utilisation. The index is
split into shards so that (a) one shard fits its share of a node's memory and (b) a decision's
p95 latency — the stages one after another, the lookup divided among the shards that answer
it in parallel, plus the fan-out overhead and a queueing allowance — stays within the target.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from earmark.errors import EarmarkError

WINDOW_S, OVERLAP_S = 60.0, 10.0  # earmark.service.scan (kept in step by a test)


class MeasuredFileError(EarmarkError):
    code = "bad_measured_file"


@dataclass
class Assumptions:
    """What the model takes as given; each is printed with the answer."""

    upload_s: float = 180.0  #: mean upload length, s
    p95_s: float = 10.0  #: target p95 of upload → decision, s
    burst: float = 3.0  #: peak-hour rate / mean rate
    utilisation: float = 0.6  #: target CPU utilisation at the peak (headroom for retries, p95)
    match_share: float = 0.2  #: share of uploads that match the catalog (others pay talk-over)
    replicas: int = 2  #: actors per shard, on different nodes (one may fail)
    node_cores: int = 64
    node_mem_gib: float = 512.0
    index_mem_share: float = 0.6  #: of a node's memory given to index shards
    worker_mem_gib: float = 0.5  #: memory per scanning core (decoded audio, prints)
    fanout_ms: float = 60.0  #: per window, to gather the shards' candidates (docs/benchmarks.md)
    queue_s: float = 1.0  #: allowance for waiting in the queue at the target utilisation
    growth_exponent: float | None = None  #: None: the measured one
    gpu_cores_equivalent: float = 40.0  #: CPU cores one GPU replaces for a CNN detector


@dataclass
class Sizing:
    catalog_hours: float
    uploads_per_day: float
    cpu_s_per_upload: dict[str, float]
    cores: int
    shards: int
    shards_for_memory: int
    shards_for_latency: int | None
    index_gib: float
    memory_gib: float
    nodes: int
    gpus: int
    p95_s_estimate: float
    lookup_cpu_ms_per_window: float
    notes: list[str] = field(default_factory=list)


def load_measured(path: str | Path | None = None) -> dict[str, Any]:
    """The JSON of ``earmark bench capacity``; default: the run shipped with the package."""
    try:
        if path is None:
            text = resources.files("earmark.bench").joinpath("capacity.json").read_text()
        else:
            text = Path(path).read_text()
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise MeasuredFileError(f"cannot read the measured figures {path}: {exc}; make them "
                                "with earmark bench capacity --corpus DIR --out DIR") from None
    if data.get("kind") != "earmark-capacity":
        raise MeasuredFileError(f"{path} is not the capacity.json of earmark bench capacity")
    return dict(data)


def _windows(s: float) -> tuple[int, float]:
    """Windows of a scan of ``s`` seconds and the audio they hold, s."""
    if s <= WINDOW_S:
        return 1, s
    n = 1 + math.ceil((s - WINDOW_S) / (WINDOW_S - OVERLAP_S))
    return n, n * WINDOW_S


def size(measured: dict[str, Any], *, catalog_hours: float, uploads_per_day: float,
         a: Assumptions | None = None) -> Sizing:
    """Size a cluster; see the module docstring.

    Parameters
    ----------
    measured : dict
        :func:`load_measured`.
    catalog_hours : float
        Audio hours in the catalog.
    uploads_per_day : float
    a : Assumptions, optional
    """
    a = a or Assumptions()
    st, ix = measured["stages"], measured["index"]
    q_s = float(measured["corpus"]["query_s"])
    h0 = float(st["lookup_align"]["catalog_hours"])
    grow = measured.get("growth") or []
    if grow:  # time the lookup from the largest measured catalog
        top = max(grow, key=lambda g: g["hours"])
        h0, lk0 = float(top["hours"]), float(top["cpu_p50_ms"])
        p95_ratio = float(top["p95_ms"]) / max(float(top["p50_ms"]), 1e-9)
    else:
        lk0 = float(st["lookup_align"]["cpu_ms_p50"])
        p95_ratio = float(st["lookup_align"]["p95_ms"]) / float(st["lookup_align"]["p50_ms"])
    b = _exponent(a, measured)
    scale = (max(catalog_hours, 1e-9) / h0) ** b
    n_win, win_audio = _windows(a.upload_s)
    lk_per_s = lk0 / q_s / 1000 * scale  # CPU s of lookup per second of window audio
    talk = max(0.0, float(st["identify_outside"]["cpu_ms_p50"])
               - float(st["identify_catalog"]["cpu_ms_p50"])) / q_s / 1000
    cpu = {
        "decode": a.upload_s / st["decode_8k"]["realtime_per_core"]
        + a.upload_s / st["decode_detector"]["realtime_per_core"],
        "query_fingerprint": st["query_fingerprint"]["cpu_ms_per_audio_s"] / 1000 * win_audio,
        "talk_over": (1 - a.match_share) * talk * win_audio,
        "lookup_align": lk_per_s * win_audio,
        "detect": a.upload_s / st["detect"]["realtime_per_core"],
    }
    per_upload = sum(cpu.values())
    cores = math.ceil(uploads_per_day / 86400 * per_upload * a.burst / a.utilisation)
    index_b = float(ix["bytes_per_audio_hour"]) * catalog_hours
    shard_max = a.node_mem_gib * 2**30 * a.index_mem_share  # one shard's replica per node
    s_mem = max(1, math.ceil(index_b / shard_max))
    # latency: everything but the lookup runs in one worker; the lookup of each window is
    # split among the shards, then gathered
    fixed = per_upload - cpu["lookup_align"]
    budget = a.p95_s - a.queue_s - fixed - n_win * a.fanout_ms / 1000
    lookup_p95 = cpu["lookup_align"] * p95_ratio
    s_lat: int | None = max(1, math.ceil(lookup_p95 / budget)) if budget > 0 else None
    shards = max(s_mem, s_lat or s_mem)
    p95 = fixed + lookup_p95 / shards + n_win * a.fanout_ms / 1000 + a.queue_s
    mem = index_b * a.replicas / 2**30 + cores * a.worker_mem_gib
    nodes = max(math.ceil(cores / a.node_cores),
                math.ceil(index_b * a.replicas / 2**30 / (a.node_mem_gib * a.index_mem_share)),
                a.replicas)
    det_cores = uploads_per_day / 86400 * cpu["detect"] * a.burst / a.utilisation
    notes = []
    if s_lat is None:
        notes.append(f"the p95 target of {a.p95_s:g} s cannot be met: the stages outside the "
                     f"lookup alone take {fixed + a.queue_s:.1f} s per upload")
    notes.append(
        f"GPUs: none needed. The detector ({st['detect']['detector']}, "
        f"{st['detect']['realtime_per_core']:g}× realtime per core) needs {det_cores:.1f} "
        f"cores at the peak, {100 * cpu['detect'] / per_upload:.1f} % of the CPU; a GPU "
        f"pays off for a detector that would need more than ~{a.gpu_cores_equivalent:g} "
        "cores (a trained CNN at ~50× realtime per core: "
        f"{uploads_per_day / 86400 * a.upload_s / 50 * a.burst / a.utilisation:.0f} cores "
        "at this rate)")
    return Sizing(
        catalog_hours=catalog_hours, uploads_per_day=uploads_per_day,
        cpu_s_per_upload={k: round(v, 4) for k, v in cpu.items()}, cores=cores,
        shards=shards, shards_for_memory=s_mem, shards_for_latency=s_lat,
        index_gib=round(index_b / 2**30, 2), memory_gib=round(mem, 1), nodes=nodes, gpus=0,
        p95_s_estimate=round(p95, 2), lookup_cpu_ms_per_window=round(
            cpu["lookup_align"] / n_win * 1000, 1), notes=notes)



#: lookup growth measured from 103 to 1,002 h (benchmarks/shards.py, docs/benchmarks.md):
#: the default never assumes a flatter growth than this beyond the measured catalog
LARGE_EXPONENT = 0.79


def _exponent(a: Any, measured: dict[str, Any]) -> float:
    """The growth exponent: the one asked for, else the measured one but at least
    :data:`LARGE_EXPONENT` (small catalogs grow flatter than large ones)."""
    if a.growth_exponent is not None:
        return float(a.growth_exponent)
    return max(float(measured.get("growth_exponent", 1.0)), LARGE_EXPONENT)


def assumption_lines(measured: dict[str, Any], a: Assumptions, catalog_hours: float
                     ) -> list[str]:
    """Every assumption of :func:`size`, one line each, for the reader."""
    m, st = measured["machine"], measured["stages"]
    top = max(measured.get("growth") or [{"hours": st["lookup_align"]["catalog_hours"]}],
              key=lambda g: g["hours"])
    b = _exponent(a, measured)
    return [
        f"measured on {m['cpu']} ({m['cores']} cores), {m['date']}: "
        f"{measured.get('command', 'earmark bench capacity')}",
        f"uploads last {a.upload_s:g} s on average; scanned in {WINDOW_S:g} s windows "
        f"overlapping by {OVERLAP_S:g} s ({_windows(a.upload_s)[0]} windows)",
        f"peak-to-mean burst factor {a.burst:g}; target CPU utilisation at the peak "
        f"{a.utilisation:g} (headroom for retries and the p95)",
        f"{100 * a.match_share:g} % of uploads match the catalog; the others also pay the "
        "talk-over pass",
        f"lookup CPU grows as (catalog hours)^{b:.2f} from the largest measured catalog "
        f"({top['hours']:g} h) to {catalog_hours:,.0f} h — an extrapolation over "
        f"{catalog_hours / float(top['hours']):,.0f}×; the identify benchmark measured p50 "
        "63 → 103 → 200 ms at 9.8 → 30 → 100 h (exponent 0.50 from 9.8 to 100 h, 0.55 from "
        "30 to 100 h, fingerprinting included) and benchmarks/shards.py 110 → 667 ms of "
        f"lookup at 103 → 1,002 h (exponent {LARGE_EXPONENT}), which is the default floor: "
        "measure at your size before you buy",
        f"index held in RAM (memory-mapped) with {a.replicas} replicas per shard on different "
        f"nodes; {100 * a.index_mem_share:g} % of a node's {a.node_mem_gib:g} GiB for shards, "
        f"{a.worker_mem_gib:g} GiB per scanning core",
        f"nodes of {a.node_cores} cores; fan-out {a.fanout_ms:g} ms per window; queueing "
        f"allowance {a.queue_s:g} s; lookup p95 = measured p95/p50 × median",
        "decision latency = the stages of one upload one after another in one worker, the "
        "lookup split evenly among the shards; the database and the policy are not counted",
    ]


def as_dict(s: Sizing) -> dict[str, Any]:
    return asdict(s)
