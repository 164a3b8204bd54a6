# SPDX-License-Identifier: Apache-2.0
"""``earmark monitor SOURCE... [--db DIR] [--json]``: watch live streams."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from earmark.cli import DbOption, die, load_settings, resolve_home, stderr, user_errors


def monitor(
    sources: Annotated[list[str], typer.Argument(
        metavar="SOURCE", help="Files, '-' for standard input, or stream URLs FFmpeg reads "
        "(http(s), HLS .m3u8, rtmp, rtsp, icecast). ID=SOURCE names a stream.",
        show_default=False)],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Events as JSON lines on stdout (default when stdout is not a "
        "terminal).")] = False,
    realtime: Annotated[bool, typer.Option(
        "--realtime", help="Play files at real-time pace (a stand-in for a live stream).")
    ] = False,
    raw: Annotated[str | None, typer.Option(
        "--raw", metavar="FMT:RATE:CHANNELS",
        help="Standard input is raw PCM, e.g. s16le:44100:2 or f32le:48000:1.")] = None,
    detector: Annotated[str | None, typer.Option(
        help="AI detector per 5 s window ('none' to skip). Default: $EARMARK_DETECTOR.")
    ] = None,
    territory: Annotated[str | None, typer.Option(
        help="ISO 3166 alpha-2 code where the streams are watched (territorial rules).")
    ] = None,
    no_reconnect: Annotated[bool, typer.Option(
        "--no-reconnect", help="Do not reconnect dropped network streams.")] = False,
    hop_s: Annotated[float, typer.Option("--hop-s", min=0.25, max=5.0,
                                         help="Seconds between votes.")] = 1.25,
    no_talk_over: Annotated[bool, typer.Option(
        "--no-talk-over", help="Skip the search for talk over the music (the speech-mask "
        "probe, ~7 ms per 2 s of audio, and the window's talk-over prints where it finds "
        "speech): more streams per core, speech over catalog music missed.")] = False,
    far_hop_s: Annotated[float, typer.Option(
        "--far-hop-s", min=0.0, max=30.0, help="While a stream neither matches nor carries "
        "talk, vote the far speed rungs (0.5, 0.63, 1.59, 2) only this often: ~7 % less CPU "
        "per quiet stream; some first detections 0.5-1 s later (0: every vote).")] = 2.5,
    talk_rest_s: Annotated[float, typer.Option(
        "--talk-rest-s", min=0.0, max=3600.0, help="After this long of talk without a match, "
        "run the talk-over search every other vote: ~25 % less CPU on talk-held streams; "
        "music that starts under long talk can be found a hop later (0: every vote).")
    ] = 15.0,
    behind_s: Annotated[float, typer.Option(
        "--behind-s", min=0.0, max=60.0, help="When a live stream's block (a network "
        "stream, --realtime) has waited this many seconds for its process, its vote skips "
        "the talk-over search until the process has caught up, so that one stream's burst "
        "does not hold the others back (0: never skip).")] = 0.5,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, help="Processes the streams are spread over (default: one per "
        "core, at most one per stream; standard input keeps everything in one).")] = None,
) -> None:
    """Watch live streams for catalog music and AI music; print events as they happen.

    Events (JSON lines): match_started, match_updated, match_ended, ai_suspected,
    escalation (warn → mute → interrupt, by the owners' policies), stream_error,
    stream_reconnected, stream_ended — each with the stream id, the stream time in ms and
    the wall-clock time. With a service database in --db, events also go to
    `earmark serve` (server-sent events at /v1/live/events) and to webhooks.
    """
    from earmark.detect.base import get_detector
    from earmark.live.events import Fanout, JsonLines, ServiceSink
    from earmark.live.monitor import WatchParams, watch
    from earmark.live.pool import SourceSpec, watch_parallel
    from earmark.live.sources import RawFormat, source_id
    from earmark.service.catalog import open_catalog

    settings = load_settings()
    home = resolve_home(db)
    err = stderr()
    cat = None
    if (home / "catalog.sqlite").exists():
        with user_errors():
            cat = open_catalog(home=home)
    det_name = detector or settings.detector
    det = None
    if det_name != "none":
        with user_errors():
            det = get_detector(det_name)
    if cat is None and det is None:
        die(f"nothing to watch for: no catalog in {home} and no detector")
    fmt = None
    if raw:
        try:
            f, rate, ch = raw.split(":")
            fmt = RawFormat(fmt=f, rate=int(rate), channels=int(ch))  # type: ignore[arg-type]
        except ValueError:
            die(f"--raw wants FMT:RATE:CHANNELS (e.g. s16le:44100:2), got {raw!r}")
    sr = det.sr if det is not None else cat.identifier.fingerprinter.sr  # type: ignore[union-attr]
    seen: set[str] = set()
    specs: list[SourceSpec] = []
    for spec in sources:
        named = re.match(r"^([\w.-]+)=(.+)$", spec)
        sid, s = (named.group(1), named.group(2)) if named and not Path(spec).exists() \
            else ("", spec)
        sid = sid or source_id(s)
        if sid in seen:
            die(f"two streams are called {sid!r}: name them, e.g. a={s}")
        seen.add(sid)
        specs.append(SourceSpec(s, sid, sr, realtime, False if no_reconnect else None,
                                fmt if s == "-" else None))
    sinks = [JsonLines(sys.stdout)]
    service_db = None
    if settings.database_url or (home / "service.sqlite").exists():
        from earmark.service.decisions import current_policies
        from earmark.store.db import open_db

        service_db = open_db(home=home, url=settings.database_url)
        sinks.append(ServiceSink(service_db))  # type: ignore[arg-type]
        with service_db.reader() as s:
            policies = current_policies(s)
    else:
        policies = {}
    if not as_json and sys.stdout.isatty():
        err.print("events are JSON lines; pipe them to jq or a file (--json)")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    n_jobs = jobs or max(1, min(len(specs), len(os.sched_getaffinity(0))))
    if any(s.spec == "-" for s in specs):
        n_jobs = 1
    err.print(f"watching {len(specs)} stream(s)"
              + (f" against {cat.store.totals()[0]} references" if cat else "")
              + (f", AI detector {det.name}" if det else "")
              + (f", in {n_jobs} processes" if n_jobs > 1 else ""))
    sink = Fanout(*sinks, errors=lambda m: err.print(f"warning: {m}"))
    params = WatchParams(hop_s=hop_s, territory=territory.upper() if territory else None,
                         talk_over=not no_talk_over, far_hop_s=far_hop_s,
                         talk_rest_s=talk_rest_s, behind_s=behind_s)
    if n_jobs > 1:
        watch_parallel(specs, home=home if cat is not None else None,
                       detector=det_name if det is not None else None, sink=sink,
                       jobs=n_jobs, params=params, policies=policies, stop=stop)
    else:
        watch([s.open() for s in specs], catalog=cat, detector=det, sink=sink, params=params,
              policies=policies, stop=stop)
    if cat is not None:
        cat.close()
    if service_db is not None:
        service_db.close()

