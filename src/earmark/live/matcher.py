# SPDX-License-Identifier: Apache-2.0
"""Incremental matching of one stream: a sliding window of settled prints, voted every hop.

Each hop (1.25 s by default) the hashes that :class:`StreamPrints` settled are looked up once
and kept with their candidates and the candidates' vote parts (:class:`VoteParts`: all of
the vote cell but the offset at the window's centre); the window holds the last
``window_s`` seconds of them, in rows that a vote reads in place (no copy of the window's
~3·10^5 candidates per vote: the oldest hop's hashes before the window's start stay in the
rows at negative window times and the vote leaves them out). The
window is aligned and calibrated by the file matcher's own code
(:meth:`Identifier.identify_prints`), so a live match means what a file match means. The
work per second is constant (one second of prints, one lookup, one vote over a bounded
window) and so is the memory.

The matches go on to :class:`~earmark.live.timeline.MatchTracker`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from earmark.identify.fingerprinter import QueryPrints, TripletFingerprinter
from earmark.identify.hashes import Hashes
from earmark.identify.identifier import MIN_QUERY_S, Identification, Identifier, RefMatch
from earmark.identify.match import VoteParts, vote_parts
from earmark.identify.spectrogram import log_spectrogram
from earmark.identify.verify import QueryView
from earmark.index.base import Candidates
from earmark.live.buffers import Rows, Tail
from earmark.live.prints import StreamPrints
from earmark.live.timeline import WindowMatch


@dataclass
class _Hop:
    """Prints with their candidates (the talk-over companions of a window)."""

    hashes: Hashes  #: stream frames
    speed: np.ndarray
    cand: Candidates  #: qidx into these hashes
    upto: float  #: stream frame up to which prints are settled
    n_peaks: int


@dataclass
class _Mark:
    """Where one hop's settled prints end in the window's rows."""

    upto: float  #: stream frame up to which prints are settled after this hop
    n_peaks: int
    h_end: int  #: absolute row after its last hash
    c_end: int  #: absolute row after its last candidate
    t_max: float  #: stream frame of its latest hash (-inf: none)


class StreamMatcher:
    """Feed samples at the fingerprinter's rate; get the window's matches every hop.

    Parameters
    ----------
    identifier : Identifier
    window_s : float
        Seconds of settled prints voted together.
    hop_s : float
        Seconds of audio between votes.
    max_refs : int
        When > 0, only the references with the most candidates in the window are aligned
        (all of a reference's candidates are kept, so its calibration sees the same null
        level). Off by default: on a 9.8 h catalog a cap of 32 lost a third of the true
        matches (raw counts favour long references) and saved no time.
    provisional : bool
        Also vote with the hashes of the newest audio that are not final yet
        (:meth:`StreamPrints.peek`): a match is seen ~1.5 s sooner, at the price of one
        more peak picking and lookup of the stream's last second or two per vote.
    provisional_speeds : (float, float)
        The rungs of the speed ladder whose provisional hashes are voted: by default the
        three around speed 1 (0.79, 1, 1.26), which serve speed changes of 0.8–1.25 — the
        common edits, detected sooner; far speeds (0.5, 2) wait for the settled hashes, about
        1.5 s later, and a vote costs ~10 % less CPU.
    talk_over : bool
        When a window holds no confident match, look for talk over the music as file
        identification does (:meth:`TripletFingerprinter.talk_over`): the speech mask on the
        newest ``TALK_PROBE_S`` seconds, once per that many seconds of audio, decides
        cheaply whether speech covers the stream (~11 ms per 2 s); only then are the window's
        talk-over companions computed, looked up and joined to its plain candidates.
        Streams that match, or carry no talk, pay the probe at most.
    recent_s : float
        While talk goes on without a match, also decide the newest ``recent_s`` seconds of
        the window alone, with talk-over companions computed for them afresh (0: off; the
        monitor uses 4, ``WatchParams.recent_s``): music that began under talk in the
        window's middle is found 0.5–5 s sooner (docs/live.md).
    far_hop_s : float
        While the last vote found no match and the talk probe hears no talk, the far rungs'
        candidates vote only once per this many seconds (they still count in their
        references' hits), and a match of the near rungs alone is decided again by every
        rung: a quiet stream's votes cost a third less, and a match only a far rung finds
        can come one hop later (0: every vote has every rung; the monitor uses 2.5,
        ``WatchParams.far_hop_s``).
    talk_rest_s : float
        Once talk has gone on this many seconds with no match, the talk-over search (the
        companions, the newest seconds alone, the verification) runs every other vote; the
        plain votes go on every hop, and a match ends the rest (0: every vote; the monitor
        uses 15, ``WatchParams.talk_rest_s``). A talk-held stream then costs about a
        quarter less; music that starts under long talk can be found a hop later. Talk
        is counted through pauses shorter than :data:`TALK_BREAK_S` (music the mask
        reads as talk flickers between probes).
    phase : float
        Where in the hop this stream's votes fall, as a share of it (0: a vote every
        ``hop_s`` from the stream's start; 0.5: the first after half a hop, then every
        ``hop_s``). A monitor spreads its streams' phases so that their votes, the
        costliest step, do not all fall on the same block (:func:`~earmark.live.monitor.watch`).
    """

    def __init__(self, identifier: Identifier, *, window_s: float = 8.0,
                 hop_s: float = 1.0, max_refs: int = 0, provisional: bool = True,
                 provisional_speeds: tuple[float, float] = (0.75, 1.34),
                 talk_over: bool = True, recent_s: float = 0.0, far_hop_s: float = 0.0,
                 talk_rest_s: float = 0.0, phase: float = 0.0) -> None:
        # one thread: a monitor process carries many streams on its core, and a live window
        # waits for no one (the threads of a file query buy latency for CPU)
        fp = identifier.fingerprinter
        if isinstance(fp, TripletFingerprinter) and fp.threads > 1:
            fp = replace(fp, threads=1)
            identifier = replace(identifier, fingerprinter=fp)
        self.ident = identifier
        self.fp = fp
        searches = talk_over and hasattr(self.fp, "talk_over") and bool(
            getattr(self.fp, "speech_mask", False))
        keep_s = window_s + TALK_PROBE_S + 2.0
        #: the stream's recent audio, held only when the talk-over search is on
        self._audio = Tail(round(keep_s * self.fp.sr)) if searches else None
        self._probed_at = -(10**12)  # stream sample of the last speech-mask probe
        self._talking = False  # what it found
        self._comp: _Hop | None = None  # the last talk-over companions (stream frames)
        self._comp_at = -(10**12)  # stream sample when they were last asked for
        self._last_look: _Look | None = None  # the last span the talk-over search read
        self.prints = StreamPrints(self.fp)  # type: ignore[arg-type]
        self.window_frames = window_s * self.fp.frame_rate
        self.hop = max(1, round(hop_s * self.fp.sr))
        self.max_refs = max_refs
        #: while talk goes on without a match, also decide the newest ``recent_s`` seconds
        #: of the window alone, with their own talk-over companions (0: off)
        self.recent_s = recent_s
        self.provisional = provisional
        self.provisional_speeds = provisional_speeds
        #: while a stream neither matches nor carries talk, the far rungs' hashes join the
        #: vote only every this many seconds (0: every vote)
        self.far_hop = round(far_hop_s * self.fp.sr)
        self._far_at = -(10**12)  # stream sample of the last vote with every rung
        self._matched = False  # whether the last vote found a match
        self.talk_rest = round(talk_rest_s * self.fp.sr)
        self._quiet_from = 0  # stream sample of the last vote with a match
        self._talk_from = 0  # stream sample of the probe that began this stretch of talk
        self._talk_seen = -(10**12)  # stream sample of the last probe that found talk
        #: this vote leaves the talk-over search out (the resting votes of long talk)
        self.resting = False
        #: set by the caller while its loop is behind the stream's clock: the talk-over
        #: search waits (the plain votes go on) until it has caught up
        self.behind = False
        self.deferred = 0  #: votes under talk whose talk-over search waited so
        self.now_ms = 0  #: stream time the last vote's window reached
        #: vote again after half a hop (set while a match waits for its confirmation)
        self.eager = False
        self.offset_ms = 0  #: stream time of this matcher's first sample (after a gap)
        self.hops: deque[_Mark] = deque()
        #: the window's hashes (stream frames) and their candidates with their vote parts:
        #: rows are appended per hop and dropped per hop, so a vote reads views of them
        self._h = Rows(key=np.uint32, t=np.float32, f=np.float32, span=np.float32,
                        speed=np.float32)
        self._c = Rows(qidx=np.int64, ref_key=np.int64, entry=np.int64, t=np.float32,
                        f=np.float32, span=np.float32, hi=np.uint16, scale=np.float64,
                        o0=np.float64)
        self._pending = round((phase % 1.0) * self.hop)  # samples since the last vote
        self.n_samples = 0

    @property
    def settled_ms(self) -> int:
        """Stream time up to which prints are final (the matcher's view lags the input)."""
        upto = self.hops[-1].upto if self.hops else 0.0
        return round(upto / self.fp.frame_rate * 1000)

    def push(self, y: np.ndarray) -> list[WindowMatch] | None:
        """Add samples; returns the window's matches when a vote happened, else ``None``."""
        self.n_samples += y.size
        self._pending += y.size
        if self._audio is not None:
            self._audio.push(y)
        s = self.prints.push(y)
        if len(s.hashes) or not self.hops:
            self._add(s.hashes, s.speed, temp=False)
            self.hops.append(_Mark(s.upto, s.n_peaks, self._h.end, self._c.end,
                                   float(s.hashes.t.max()) if len(s.hashes) else -np.inf))
        else:
            self.hops[-1].upto = s.upto
        while len(self.hops) > 1 and self.hops[0].upto < s.upto - self.window_frames:
            gone = self.hops.popleft()
            self._h.drop_to(gone.h_end)
            self._c.drop_to(gone.c_end)
        every = self.hop // 2 if self.eager else self.hop
        if self._pending < every:
            return None
        # keep the remainder: a resampler hands out a few samples more or fewer per block,
        # and starting again from 0 turned a 1 s hop into 1.5 s every other vote
        self._pending %= every
        return self.vote()

    def vote(self) -> list[WindowMatch]:
        """Align the window's prints now."""
        if not self.hops:
            return []
        fr = self.fp.frame_rate
        end = self.hops[-1].upto
        self._h.temp = self._c.temp = 0
        if self.provisional:
            prov = self.prints.peek(self.provisional_speeds)
            end = prov.upto
            if len(prov.hashes):
                self._add(prov.hashes, prov.speed, temp=True)
        start = max(0.0, end - self.window_frames)
        self.now_ms = round(end / fr * 1000)
        if not len(self._h) or (end - start) / fr < MIN_QUERY_S:
            return []
        hashes, speed, cand, view_parts = self._view(start)
        near = self._near_only()
        self.resting = (bool(self.talk_rest) and self._talking and not self._matched
                        and not self.resting and self.n_samples
                        - max(self._quiet_from, self._talk_from) >= self.talk_rest)
        if not near:
            self._far_at = self.n_samples
        parts: VoteParts | None = view_parts
        if self.max_refs and len(cand):
            counts = np.bincount(cand.ref_key)
            if np.count_nonzero(counts) > self.max_refs:
                top = np.argpartition(-counts, self.max_refs - 1)[: self.max_refs]
                keep_ref = np.zeros(counts.size, bool)
                keep_ref[top] = True
                ck = keep_ref[cand.ref_key]
                cand = cand.take(ck)
                parts = None
        qp = QueryPrints(hashes=hashes, speed=speed, duration_s=(end - start) / fr,
                         n_peaks=sum(h.n_peaks for h in self.hops))
        found = None
        if near and parts is not None:
            # the far rungs' candidates do not vote this time (they still count in their
            # references' hits, the null level the confidence model reads); a match found
            # so is decided again by every rung, whose chance alignments are its rivals in
            # every other vote: without them, chance alignments of repetitive generated
            # music reached 0.98
            lo, hi = self.provisional_speeds
            found = self._judge(qp, cand, replace(parts, votes=(speed >= lo) & (speed <= hi)),
                                start, end)
            if found.status == "match":
                self._far_at = self.n_samples
                found = None
        if found is None:
            found = self._judge(qp, cand, parts, start, end)
        t0 = start
        s0 = end - self.recent_s * fr
        if (found.status != "match" and self.recent_s and self._talking and not self.resting
                and not self.behind and s0 >= start + fr):
            # the newest seconds alone: music that began in the window's middle covers
            # little of it, which the confidence model reads as a chance alignment's mark
            # (and, under talk, its few hashes drown in those of the window's older part);
            # the vote leaves out the hashes before s0 (negative times), and the talk-over
            # companions are computed for these seconds afresh, as a file query's are: the
            # stream's pieces, on other frame grids, share only about half their hashes
            # (without the rows of the hops whose hashes all lie before s0: the votes would
            # leave them out, and the joined ones would copy them first)
            k, j = (0, 0) if parts is None else self._skip(start, s0)
            far = (speed < self.provisional_speeds[0]) | (speed > self.provisional_speeds[1])
            if far[:k].any() and not far[k:].any():
                k = j = 0  # (the joined votes decide the near rungs first only with far ones)
            hs, sp, sc, sparts = _drop_rows(hashes, speed, cand, parts, k, j)
            dt = np.float32(s0 - start)
            sub = QueryPrints(hashes=Hashes(hs.key, hs.t - dt, hs.f, hs.span), speed=sp,
                              duration_s=self.recent_s, n_peaks=qp.n_peaks)
            got = self._judge(sub, sc, None if sparts is None else replace(sparts, t0=s0),
                              s0, end, fresh=True)
            if got.status == "match":
                found, t0 = got, s0
        t0_ms = round(t0 / fr * 1000)
        self._matched = found.status == "match"
        if self._matched:
            self._quiet_from = self.n_samples
        return [_on_stream(m, t0_ms) for m in found.matches]

    def _near_only(self) -> bool:
        """Whether this vote leaves the far rungs out: they are due every ``far_hop``
        samples, and every vote has them after a match and while talk goes on (the
        speech-mask probe runs first when it is due)."""
        if not self.far_hop or self._matched:
            return False
        if self._due(self._far_at, self.far_hop):
            return False
        return not (self._audio is not None and self._probe())

    def _judge(self, qp: QueryPrints, cand: Candidates, parts: VoteParts | None,
               start: float, end: float, fresh: bool = False) -> Identification:
        """The window ``start:end`` (stream frames) decided: its prints ``qp`` (window
        coordinates) with their candidates, then, with no match and talk over the music,
        joined to its talk-over companions (``fresh``: computed for this span now, not the
        stream's pieces), then verified against the sketches. A resting vote, or one while
        the caller is ``behind``, stops after the plain decision."""
        found = self.ident.identify_prints(qp, cand, parts)
        if found.status == "match" or self._audio is None or self.resting:
            return found
        if self.behind:
            if not fresh and self._probe():
                self.deferred += 1
            return found
        if fresh:
            ex = self._talk_over_prints(start, end)
            if ex is None or not len(ex.hashes):
                return found
            return self._joined(qp, cand, ex, self.ident.lookup(ex.hashes.key), start, end)
        comp = self._companions(start, end)
        if comp is None:
            return found
        eh, es, ec = _window([comp], start)
        if not len(eh):
            return found
        extra = QueryPrints(hashes=eh, speed=es, duration_s=qp.duration_s,
                            n_peaks=comp.n_peaks)
        return self._joined(qp, cand, extra, ec, start, end)

    def _joined(self, qp: QueryPrints, cand: Candidates, extra: QueryPrints,
                more: Candidates, start: float, end: float) -> Identification:
        """The window's prints joined to its talk-over companions ``extra`` (candidates
        ``more``), then, with no match, verified against the sketches.

        As a file query's are (:meth:`Identifier.identify`), the rungs near speed 1
        (``provisional_speeds``) are decided first, alone: under talk the far rungs bring
        music at speed ~1 nothing but chance hits, which raise its rivals and its null
        level."""
        decided: list[Identification] = []
        ident = self.ident.later()  # a second look, as a file query's after its first
        # joined once (and their vote parts computed once): the near rungs' vote takes its
        # rows, in the same order
        joint = QueryPrints.concat([qp, extra])
        every = Candidates.concat([cand, replace(more, qidx=more.qidx + len(qp.hashes))])
        parts = vote_parts(joint.hashes, every, ident.params)
        lo, hi = self.provisional_speeds
        near = (joint.speed >= lo) & (joint.speed <= hi)
        if near.size and not near[: len(qp.hashes)].all():
            keep = near[every.qidx]
            found = ident.identify_prints(joint, every.take(keep), VoteParts(
                parts.hi[keep], parts.scale[keep], parts.o0[keep]))
            if found.status == "match":
                return found
            decided.append(found)
        found = ident.identify_prints(joint, every, parts)
        if found.status == "match":
            return found
        decided.append(found)
        return self._verified(joint, decided, start, end)

    def _add(self, hashes: Hashes, speed: np.ndarray, *, temp: bool) -> None:
        """Append prints (stream frames) with their candidates and vote parts; ``temp``
        rows (the provisional prints) are overwritten by the next append."""
        cand = self.ident.lookup(hashes.key) if len(hashes) else Candidates.concat([])
        parts = vote_parts(hashes, cand, self.ident.params)
        q0 = self._h.end
        self._h.append(temp, key=hashes.key, t=hashes.t, f=hashes.f, span=hashes.span,
                       speed=speed)
        self._c.append(temp, qidx=cand.qidx + q0, ref_key=cand.ref_key, entry=cand.entry,
                       t=cand.t, f=cand.f, span=cand.span, hi=parts.hi, scale=parts.scale,
                       o0=parts.o0)

    def _view(self, start: float) -> tuple[Hashes, np.ndarray, Candidates, VoteParts]:
        """The window from stream frame ``start`` on: its hashes in window coordinates
        (those of the oldest hops that fall before ``start`` are kept, at negative times,
        and left out by the vote), and views of its candidates and their vote parts."""
        # the rows of the oldest hops whose hashes all lie before the window are not read
        # (the vote would pass over them and leave them out); the hops are kept until
        # their settled bound leaves the window
        h0, c0 = self._first_rows(start)
        h, c = self._h.rows(h0), self._c.rows(c0)
        hashes = Hashes(h["key"], h["t"] - np.float32(start), h["f"], h["span"])
        cand = Candidates(c["qidx"] - h0, c["ref_key"], c["entry"], c["t"],
                          c["f"], c["span"])
        return hashes, h["speed"], cand, VoteParts(c["hi"], c["scale"], c["o0"], start)

    def _first_rows(self, start: float) -> tuple[int, int]:
        """The first rows (absolute) of the window's hashes and candidates from stream
        frame ``start`` on: those of the first hop with a hash less than a frame before
        ``start`` (the vote reads times in float32: a frame of slack, and the rows of a hop
        kept so are left out by the vote as before)."""
        h0, c0 = self._h.first, self._c.first
        for m in self.hops:
            if m.t_max >= start - 1.0:
                break
            h0, c0 = m.h_end, m.c_end
        return h0, c0

    def _skip(self, start: float, s0: float) -> tuple[int, int]:
        """How many of the rows of the window from ``start`` (:meth:`_view`) belong to
        hops whose hashes all lie before ``s0``: hashes, candidates."""
        (h0, c0), (h1, c1) = self._first_rows(start), self._first_rows(s0)
        return h1 - h0, c1 - c0

    def _companions(self, start: float, end: float) -> _Hop | None:
        """The talk-over companions of the window with their candidates, in stream frames,
        refreshed once per hop while talk goes on, in pieces: each refresh computes them for
        the audio since :data:`INCR_KEEP_S` before the last piece's end (with
        :data:`INCR_CONTEXT_S` more before it as context) and keeps the older ones. The
        caller cuts them to the window. (Recomputing the whole 8 s window every 2 s instead
        cost more and left the newest second out of the votes in between: of two sets of 25
        talk-over streams, 25 were found later, typically by 1.5 s, and 7 sooner.)"""
        assert self._audio is not None
        if not self._due(self._comp_at, self.hop):
            return self._comp  # None too: no talk found then, asked again at the cadence
        self._comp_at = self.n_samples
        fr = self.fp.frame_rate
        old = self._comp
        if old is not None and old.upto - (INCR_KEEP_S + INCR_CONTEXT_S) * fr > start:
            cut = old.upto - INCR_KEEP_S * fr
            a = cut - INCR_CONTEXT_S * fr
        else:
            old, cut, a = None, start, start
        self._comp = None
        extra = self._talk_over_prints(a, end)
        if extra is None or not len(extra.hashes):
            return None
        h = extra.hashes
        order = np.argsort(h.t, kind="stable")  # _window cuts by time
        t = h.t[order] + np.float32(a)
        fresh = t >= cut
        k = order[fresh]
        hs = Hashes(h.key[k], t[fresh], h.f[k], h.span[k])
        new = _Hop(hs, extra.speed[k], self.ident.lookup(hs.key), end, extra.n_peaks)
        if old is not None:
            keep = (old.hashes.t >= start) & (old.hashes.t < cut)
            new = _join(_subset(old, keep), new)
        self._comp = new
        return self._comp

    def _verified(self, qp: QueryPrints, decided: list[Identification], start: float,
                  end: float) -> Identification:
        """Talk-over decisions of a window's prints ``qp`` (the near rungs' first) verified
        against their references' sketches (the identifier's ``agreement``, on the window
        with its speech cells left out), when the confidence model reads it and the catalog
        has sketches: the first that then matches, else the last as it was."""
        ident, fp = self.ident, self.fp
        last = decided[-1]
        if (ident.sketches is None or not ident.calibration.verifies
                or self._audio is None or not hasattr(fp, "speech_of")):
            return last
        look = self._look(start, end)
        if look.seg.size < MIN_QUERY_S * fp.sr:
            return last
        # the speech mask over the window costs ~40 ms: first a look without it (~5 ms),
        # where chance alignments agree below ~0.15 and right ones under talk above ~0.2
        plain = QueryView.of(look.S)
        view = None
        for found in decided:
            if not found.raw:
                continue
            probe = [replace(a, agreement=None) for a in found.raw]
            ident.verify(probe, plain)
            if max((a.agreement or 0.0) for a in probe) < UNMASKED_AGREEMENT:
                continue
            if view is None:
                view = QueryView.of(look.S, self._cells(look))
            got = ident.reverify(qp, found, view)
            if got.status == "match":
                return got
        return last

    def _due(self, at: int, every: int) -> bool:
        """Whether ``every`` samples of audio have come since stream sample ``at``, give or
        take a quarter hop: votes fall a few resampled samples short of their cadence, and
        without the slack a 2 s cadence became 3 s."""
        return self.n_samples - at >= every - self.hop // 4

    def _talk_over_prints(self, start: float, end: float) -> QueryPrints | None:
        """The window's talk-over companions (window coordinates), or None without talk."""
        assert self._audio is not None
        fp = self.fp
        if not self._probe():
            return None
        look = self._look(start, end)
        if look.seg.size < MIN_QUERY_S * fp.sr:
            return None
        # the probe has gated on the newest audio; the window's older part may hold none
        # (no gate here: the fingerprinter's talk_over with gate 0)
        cells = self._cells(look)
        if cells is None:
            return None
        out: QueryPrints = fp.companions(look.seg, cells)  # type: ignore[attr-defined]
        return out

    def _probe(self) -> bool:
        """Whether talk goes on over the stream: the speech mask on its newest
        :data:`TALK_PROBE_S` seconds, once per :data:`TALK_PROBE_EVERY_S`."""
        assert self._audio is not None
        fp = self.fp
        if self._due(self._probed_at, round(TALK_PROBE_EVERY_S * fp.sr)):
            probe = self._audio.last(round(TALK_PROBE_S * fp.sr))
            if probe.size < fp.sr:
                return False
            # the file query's own gate (the speech mask covers enough of the probe), after
            # a smaller network has ruled out music alone
            talking = fp.talks(probe)  # type: ignore[attr-defined]
            if talking:
                # a stretch of talk goes on through pauses shorter than TALK_BREAK_S (and
                # through music the mask reads as talk every other probe)
                if self.n_samples - self._talk_seen > round(TALK_BREAK_S * fp.sr):
                    self._talk_from = self.n_samples
                self._talk_seen = self.n_samples
            self._talking = talking
            self._probed_at = self.n_samples
        return self._talking

    def _look(self, start: float, end: float) -> _Look:
        """The stream's audio from frame ``start`` to ``end`` with its log spectrogram; the
        last one asked for is kept until the stream moves on, since a vote's newest seconds
        are searched for companions and then verified on the same span (one pass of the
        mask network instead of two)."""
        assert self._audio is not None
        spec = self.fp.spec  # type: ignore[attr-defined]
        a, b = round(start * spec.hop), round(end * spec.hop)
        key = (a, b, self._audio.n)
        if self._last_look is None or self._last_look.key != key:
            seg = self._audio.span(a, b)
            self._last_look = _Look(key, seg, log_spectrogram(seg, spec))
        return self._last_look

    def _cells(self, look: _Look) -> np.ndarray | None:
        """The speech cells of ``look`` (None: the mask is off), computed once."""
        if not look.masked:
            look.cells = self.fp.speech_of(look.S)  # type: ignore[attr-defined]
            look.masked = True
        return look.cells


@dataclass
class _Look:
    """A span of a stream's audio as the talk-over search reads it (see ``_look``)."""

    key: tuple[int, int, int]  #: first and end sample, and the samples pushed so far
    seg: np.ndarray
    S: np.ndarray  #: log spectrogram
    cells: np.ndarray | None = None  #: speech cells, once ``masked``
    masked: bool = False


#: a talk-over window is verified with its speech cells left out only when some alignment
#: agrees this well with its reference on the whole window (speech included)
UNMASKED_AGREEMENT = 0.15

#: companions refreshed in pieces: the last piece's newest second is recomputed (its
#: triplets lacked their later partners and its peaks the picker's right-hand context) ...
INCR_KEEP_S = 1.0
#: ... with this much audio before it as context for the mask and the peak picker
INCR_CONTEXT_S = 1.5


def _subset(h: _Hop, keep: np.ndarray) -> _Hop:
    idx = np.cumsum(keep) - 1
    c = h.cand
    ck = keep[c.qidx]
    hh = h.hashes
    return _Hop(Hashes(hh.key[keep], hh.t[keep], hh.f[keep], hh.span[keep]), h.speed[keep],
                Candidates(idx[c.qidx[ck]], c.ref_key[ck], c.entry[ck], c.t[ck], c.f[ck],
                           c.span[ck]), h.upto, h.n_peaks)


def _join(a: _Hop, b: _Hop) -> _Hop:
    return _Hop(Hashes.concat([a.hashes, b.hashes]), np.concatenate([a.speed, b.speed]),
                Candidates.concat([a.cand, replace(b.cand, qidx=b.cand.qidx + len(a.hashes))]),
                b.upto, b.n_peaks)


TALK_PROBE_S = 2.0  #: seconds of the newest audio the speech-mask probe of a vote reads
TALK_PROBE_EVERY_S = 2.0  #: seconds of audio between two probes
#: a pause of talk this long (no probe finding any) ends a stretch of talk: a shorter one
#: does not start the count of ``talk_rest_s`` again
TALK_BREAK_S = 10.0


def _drop_rows(hashes: Hashes, speed: np.ndarray, cand: Candidates,
               parts: VoteParts | None, k: int, j: int
               ) -> tuple[Hashes, np.ndarray, Candidates, VoteParts | None]:
    """A window's view (:meth:`StreamMatcher._view`) without its first ``k`` hashes and
    first ``j`` candidates (those of the hops :meth:`StreamMatcher._skip` counts): views of
    the rest, the candidates' ``qidx`` renumbered."""
    if not k + j:
        return hashes, speed, cand, parts
    h = Hashes(hashes.key[k:], hashes.t[k:], hashes.f[k:], hashes.span[k:])
    c = Candidates(cand.qidx[j:] - k, cand.ref_key[j:], cand.entry[j:], cand.t[j:],
                   cand.f[j:], cand.span[j:])
    vp = None if parts is None else VoteParts(
        parts.hi[j:], parts.scale[j:], parts.o0[j:], parts.t0,
        None if parts.votes is None else parts.votes[k:])
    return h, speed[k:], c, vp


def _window(hops: list[_Hop], start: float) -> tuple[Hashes, np.ndarray, Candidates]:
    """The hops' hashes from stream frame ``start`` on (window coordinates), their rungs,
    and their candidates with ``qidx`` into the joined hashes.

    A hop's hashes are sorted in time, so only the hops that straddle ``start`` (the
    oldest) are cut, at one index, and the others are joined as they are: a vote copies
    each candidate once.
    """
    hs, sp, cs = [], [], []
    n = 0
    for h in hops:
        k0 = int(np.searchsorted(h.hashes.t, start, side="left"))
        c = h.cand
        if k0 >= len(h.hashes):
            continue
        if k0:
            c = c.take(c.qidx >= k0)
            c.qidx -= k0
        hh = h.hashes
        hs.append(Hashes(hh.key[k0:], hh.t[k0:], hh.f[k0:], hh.span[k0:]))
        sp.append(h.speed[k0:])
        cs.append(Candidates(c.qidx + n, c.ref_key, c.entry, c.t, c.f, c.span))
        n += len(hh) - k0
    hashes = Hashes.concat(hs)
    hashes.t = hashes.t - np.float32(start)
    speed = np.concatenate(sp) if sp else np.zeros(0, np.float32)
    return hashes, speed, Candidates.concat(cs)


def _on_stream(m: RefMatch, t0_ms: int) -> WindowMatch:
    s0 = min(m.segments, key=lambda s: s.query_start_ms)
    s1 = max(m.segments, key=lambda s: s.query_end_ms)
    return WindowMatch(ref_key=m.ref_key, confidence=float(m.confidence),
                       stream_start_ms=t0_ms + s0.query_start_ms,
                       stream_end_ms=t0_ms + s1.query_end_ms,
                       ref_start_ms=s0.ref_start_ms, ref_end_ms=s1.ref_end_ms,
                       speed_ratio=s0.speed_ratio, pitch_semitones=s0.pitch_semitones,
                       tempo_ratio=s0.tempo_ratio)
