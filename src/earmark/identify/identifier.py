# SPDX-License-Identifier: Apache-2.0
"""Query → matches: fingerprint the query, fan out to the index shards, align, calibrate.

Pure with respect to storage metadata: it knows references by their integer key only; the
service layer names them and adds their durations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from earmark.identify.calibrate import Calibration
from earmark.identify.constellation import ConstellationParams, check, hypotheses
from earmark.identify.fingerprinter import (
    Fingerprinter,
    QueryPrints,
    TripletFingerprinter,
    in_threads,
)
from earmark.identify.hashes import Hashes
from earmark.identify.match import (
    Alignment,
    MatchParams,
    VoteParts,
    align,
    segments_of,
    vote_parts,
)
from earmark.identify.verify import QueryView, agreement
from earmark.index.base import Candidates, IndexBackend

MIN_QUERY_S = 1.0  #: shorter queries get ``no_match`` / ``too_short``
MIN_PEAKS_PER_S = 1.0  #: fewer peaks per second than this is ``too_little_signal``
PURE_SPEED_TOL = 0.3  #: semitones: pitch within this of 12·log2(tempo) is a plain speed change


@dataclass
class SegmentMatch:
    query_start_ms: int
    query_end_ms: int
    ref_start_ms: int
    ref_end_ms: int
    speed_ratio: float
    pitch_semitones: float
    tempo_ratio: float


@dataclass
class RefMatch:
    ref_key: int
    confidence: float
    score: int
    runner_up: int
    query_match_ms: int
    ref_match_ms: int
    segments: list[SegmentMatch] = field(default_factory=list)


@dataclass
class Identification:
    status: str  #: "match" or "no_match"
    reason: str | None
    duration_ms: int
    matches: list[RefMatch] = field(default_factory=list)
    #: best alignments before the threshold, for calibration and audit
    raw: list[Alignment] = field(default_factory=list)
    #: candidate hits per reference key (the null level of its alignments' scores)
    ref_hits: dict[int, int] = field(default_factory=dict)


@dataclass
class Identifier:
    """Identify queries against one or more index shards."""

    shards: Sequence[IndexBackend]
    fingerprinter: Fingerprinter = field(default_factory=TripletFingerprinter)
    params: MatchParams = field(default_factory=MatchParams)
    calibration: Calibration = field(default_factory=Calibration.load)
    #: reference sketches by key (:mod:`earmark.identify.verify`), for the ``agreement``
    #: feature; without them (or for prints alone) ``plain_calibration`` decides
    sketches: Callable[[Sequence[int]], dict[int, np.ndarray]] | None = None
    plain_calibration: Calibration = field(default_factory=Calibration.load_plain)
    #: alignments verified per query, best scores first (the rest are judged by
    #: ``plain_calibration``)
    verify_top: int = 24
    #: reference constellations by key (:mod:`earmark.identify.constellation`): a query
    #: under talk that nothing matched is checked peak by peak against its vote cells'
    #: references (None: no check)
    constellations: Callable[[Sequence[int]], dict[int, tuple[np.ndarray, np.ndarray]]
                             ] | None = None
    constellation: ConstellationParams = field(default_factory=ConstellationParams)

    #: a query's first pass uses the ladder's rungs within these speeds; the far rungs are
    #: added only when it did not settle the query (:meth:`settled`). None: every rung at once
    first_speeds: tuple[float, float] | None = (0.75, 1.34)
    early_accept: float = 0.9  #: confidence that settles a query on its first pass ...
    early_cover: float = 0.6  #: ... with its matches covering this share of the query
    first_verify_top: int = 4  #: ``verify_top`` of the first pass
    #: under talk, the plain and talk-over prints near speed 1 settle a query at this
    #: confidence (0: any match over ``early_cover`` of it; the far rungs' chance hits
    #: would only lower it)
    talk_accept: float = 0.0
    #: a query that nothing matched, without talk, whose level moves less than this in a
    #: band (:meth:`TripletFingerprinter.dynamics_db`: stationary noise under the music)
    #: is decided again on the near rungs with ``dense_peaks_per_second`` peaks added (0: off)
    dense_below_db: float = 11.0
    dense_peaks_per_second: float = 26.0
    #: decisions after a query's first (the far rungs, talk, the dense pass: queries the
    #: first look did not settle) vote with ``MatchParams.smooth``: a few hits spread over
    #: neighbouring vote cells still reach the detail fit
    smooth_later: bool = True

    #: a key holding more than this many entries per million in a shard is a stop word
    stop_per_million: float = 75.0
    min_stop: int = 40

    def later(self) -> Identifier:
        """The identifier of the decisions after a query's first (:attr:`smooth_later`)."""
        if not self.smooth_later or self.params.smooth:
            return self
        return replace(self, params=replace(self.params, smooth=True))

    def lookup(self, keys: np.ndarray) -> Candidates:
        """Fan the keys out to every shard and concatenate what they return."""
        return Candidates.concat([s.lookup(keys, max_bucket=self._cap(s)) for s in self.shards])

    def lookup_parts(self, hashes: Hashes) -> tuple[Candidates, VoteParts]:
        """:meth:`lookup` of the hashes' keys and the candidates' :func:`vote_parts`, on
        the fingerprinter's threads: the hashes in consecutive parts, each looked up and
        parted on its own (keys are looked up one by one and a candidate's parts are its
        own, so the rows are the ones of one pass; their order too where a shard is one
        segment, as catalogs are once ``catalog add`` has merged them)."""
        done = self._lookup_parts(hashes)
        if len(done) == 1:
            return done[0]
        return (Candidates.concat([c for c, _ in done]),
                VoteParts.concat([p for _, p in done]))

    def _lookup_parts(self, hashes: Hashes) -> list[tuple[Candidates, VoteParts]]:
        """:meth:`lookup_parts` before the threads' parts are concatenated."""
        n = len(hashes)
        threads = min(getattr(self.fingerprinter, "threads", 1), n // 2048 + 1)
        cuts = np.linspace(0, n, threads + 1).astype(np.int64)

        def part(i: int) -> tuple[Candidates, VoteParts]:
            a, b = int(cuts[i]), int(cuts[i + 1])
            c = self.lookup(hashes.key[a:b])
            c = replace(c, qidx=c.qidx + a)
            return c, vote_parts(hashes, c, self.params)

        return in_threads(part, range(threads), threads)

    def _cap(self, shard: IndexBackend) -> int:
        """The stop-word cap of a backend: entries per million, at least ``min_stop``."""
        entries = shard.entries if hasattr(shard, "entries") else shard.stats().entries
        return max(self.min_stop, int(self.stop_per_million * entries / 1e6))

    def _voter(self) -> Any:
        """The backend whose shards vote on their own references (a sharded index of
        several shards: only alignments travel back, see ``ShardedIndex.align``), or None."""
        if len(self.shards) == 1 and len(getattr(self.shards[0], "members", ())) > 1:
            return self.shards[0]
        return None

    def _shards_vote(self, voter: Any, qp: QueryPrints, view: QueryView | None = None
                     ) -> Identification:
        al = voter.align(qp, max_bucket=self._cap(voter), params=self.params,
                         frame_rate=self.fingerprinter.frame_rate)
        return self._decide(qp, al, view)

    def identify(self, y: np.ndarray) -> Identification:
        """Identify a mono float32 query at ``fingerprinter.sr``.

        Parameters
        ----------
        y : np.ndarray [shape=(n,), dtype=float32]

        Returns
        -------
        Identification
            ``status == "match"`` with matches best first, or ``"no_match"`` with a reason:
            ``too_short``, ``too_little_signal`` or ``no_candidate``.
        """
        fp = self.fingerprinter
        dur_s = y.size / fp.sr
        dur_ms = round(dur_s * 1000)
        if dur_s < MIN_QUERY_S:
            return Identification("no_match", "too_short", dur_ms)
        if y.size == 0 or float(np.max(np.abs(y))) < 1e-4:
            return Identification("no_match", "too_little_signal", dur_ms)
        staged = hasattr(fp, "query_plain") and hasattr(fp, "talk_over")
        first, rest = self.first_rungs() if staged else ((), ())
        if staged:
            qp = fp.query_plain(y, first or None)  # type: ignore[attr-defined]
        else:
            qp = fp.query(y)
        n_rungs = len(first) or len(getattr(fp, "ladder", (1,)))
        if qp.n_peaks < MIN_PEAKS_PER_S * dur_s * n_rungs:
            return Identification("no_match", "too_little_signal", dur_ms)
        verifying = self.sketches is not None and self.calibration.verifies
        view = fp.view(y) if verifying and hasattr(fp, "view") else None
        passes = _Passes(self, qp)
        res = passes.decide(view, self.first_verify_top if rest else None)
        if not rest:
            return res if not staged or res.status == "match" else self._talk(
                y, passes, res, view, verifying)
        # the rungs near speed 1 first: most queries match there, confidently and over their
        # whole length; the others go on (each pass joined to the earlier ones: the same
        # alignments as one pass over all of them)
        if self.settled(res):
            return res
        passes.ident = self.later()
        cells, tview = self._talk_cells(y, view, verifying)
        if cells is not None:  # talk over the music: its companions near speed 1 first
            passes.add(fp.companions(y, cells, first))  # type: ignore[attr-defined]
            near = passes.n
            res = passes.decide(tview)
            if self.settled(res, self.talk_accept):
                return res
            passes.add(fp.query_plain(y, rest))  # type: ignore[attr-defined]
            passes.add(fp.companions(y, cells, rest))  # type: ignore[attr-defined]
            return self._constellation(y, cells, passes, passes.decide(tview), near)
        mark = passes.mark()
        passes.add(fp.query_plain(y, rest))  # type: ignore[attr-defined]
        res = passes.decide(view)
        if res.status == "match" or tview is None or tview is view:
            return res
        full = passes.qp
        if self.dense_below_db and fp.dynamics_db(y) < self.dense_below_db:  # type: ignore[attr-defined]
            # stationary noise fills the music's gaps: its peaks take the quota, and a
            # denser set of the near rungs' peaks keeps more of the music's (decided with
            # the near rungs' plain prints, without the far rungs' chance hits)
            passes.rewind(mark)
            passes.add(fp.query_plain(y, first,  # type: ignore[attr-defined]
                                      per_second=self.dense_peaks_per_second))
            got = passes.decide(tview)
            if got.status == "match":
                return got
        # no talk: verified without the mask's cells
        return passes.ident.reverify(full, res, tview)

    def _talk_cells(self, y: np.ndarray, view: QueryView | None, verifying: bool
                    ) -> tuple[np.ndarray | None, QueryView | None]:
        """The query's speech cells past the gate (None: no talk over the music) and the
        view to verify on (the speech cells left out)."""
        fp = self.fingerprinter
        if verifying and hasattr(fp, "talk_cells"):
            return fp.talk_cells(y)
        return fp.speech_cells(y), view  # type: ignore[attr-defined]

    def _talk(self, y: np.ndarray, passes: _Passes, res: Identification,
              view: QueryView | None, verifying: bool) -> Identification:
        """Every rung's plain prints gave no confident match: talk over the music? The
        companions are joined to the plain hashes (the same result as one pass over both,
        without paying for the mask on music that matched already)."""
        cells, tview = self._talk_cells(y, view, verifying)
        if cells is None:  # no talk: the plain alignments, verified on the masked view
            return res if tview is None or tview is view else self.reverify(passes.qp, res,
                                                                            tview)
        passes.ident = self.later()
        passes.add(self.fingerprinter.companions(y, cells))  # type: ignore[attr-defined]
        return self._constellation(y, cells, passes, passes.decide(tview))

    def _constellation(self, y: np.ndarray, cells: np.ndarray, passes: _Passes,
                       res: Identification, upto: int | None = None) -> Identification:
        """A query under talk that nothing matched, checked peak by peak
        (:mod:`earmark.identify.constellation`): the vote cells of its candidates (the
        first ``upto``: the near rungs'), as hypotheses, its peaks among the music's cells
        against their references' own. A reference whose best cell outweighs every other
        reference's ``min_ratio`` times is the match, with the check's confidence."""
        cp = self.constellation
        if res.status == "match" or self.constellations is None or passes.voter is not None \
                or not hasattr(self.fingerprinter, "masked_query_peaks") or not passes.n:
            return res
        fp = self.fingerprinter
        r = passes.upto(upto)
        h = passes.qp.hashes
        hyp = hypotheses(r["ref_key"], r["hi"], r["t"], h.t[r["qidx"]], r["scale"],
                         h.f[r["qidx"]] - r["f"], 0.5 * passes.qp.duration_s * fp.frame_rate,
                         self.params, cp)
        if not len(hyp):
            return res
        maps = self.constellations(np.unique(hyp.ref_key).tolist())
        pk = fp.masked_query_peaks(y, cells)
        found = check(pk.t, pk.f, hyp, maps, cp)
        if found is None or found.ratio < cp.min_ratio:
            return res
        a = Alignment(ref_key=found.ref_key, score=found.landed, offset=found.offset,
                      scale=found.scale, shift=found.shift,
                      segments=segments_of(found.q_times, self.params.gap_s * fp.frame_rate),
                      q_times=found.q_times, ref_hits=res.ref_hits.get(found.ref_key, 0))
        m = self._to_match(a, found.confidence, 0, res.duration_ms)
        return Identification("match", None, res.duration_ms, [m], raw=[*res.raw, a],
                              ref_hits=res.ref_hits)

    def first_rungs(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The fingerprinter's ladder split into the rungs tried first (within
        ``first_speeds``) and the rest; ``((), ())`` when there is nothing to split."""
        ladder = tuple(getattr(self.fingerprinter, "ladder", ()))
        if self.first_speeds is None:
            return (), ()
        lo, hi = self.first_speeds
        first = tuple(v for v in ladder if lo <= v <= hi)
        rest = tuple(v for v in ladder if not lo <= v <= hi)
        return (first, rest) if first and rest else ((), ())

    def settled(self, res: Identification, accept: float | None = None) -> bool:
        """Whether a first pass's answer stands without the far rungs: its best match is
        at least ``accept`` (default ``early_accept``) confident and the matches cover at
        least ``early_cover`` of the query (a medley's other part may be sped up more)."""
        accept = self.early_accept if accept is None else accept
        if res.status != "match" or res.matches[0].confidence < accept:
            return False
        spans = sorted((s.query_start_ms, s.query_end_ms)
                       for m in res.matches for s in m.segments)
        covered, end = 0, 0
        for a, b in spans:
            covered += max(0, b - max(a, end))
            end = max(end, b)
        return covered >= self.early_cover * res.duration_ms

    def identify_prints(self, qp: QueryPrints, cand: Candidates,
                        parts: VoteParts | None = None, *, view: QueryView | None = None
                        ) -> Identification:
        """Align, calibrate and threshold a query's prints and their index candidates.

        The second half of :meth:`identify`, for callers that fingerprint and look up
        themselves (the live monitor keeps both incrementally, with the candidates' vote
        ``parts``). Times are in ``qp``'s own coordinates; ``qp.duration_s`` is the query
        length; hashes at negative times are not part of the query (see :func:`align`).
        With a ``view``, the alignments are verified against their references' sketches.
        """
        return self._decide(qp, align(qp, cand, self.params, self.fingerprinter.frame_rate,
                                      parts), view)

    def reverify(self, qp: QueryPrints, res: Identification, view: QueryView) -> Identification:
        """``res`` (of the prints ``qp``) decided again with its alignments verified on
        ``view`` (the live matcher's talk-over windows; a file query without talk)."""
        return self._decide(qp, [replace(a, agreement=None) for a in res.raw], view)

    def verify(self, al: list[Alignment], view: QueryView) -> None:
        """Set the ``agreement`` of the best ``verify_top`` alignments (by score, those of
        the smoothed vote's extra cells after the others) with their reference's sketch.
        The others, and references without a sketch (added before sketches existed), keep
        None and are judged by ``plain_calibration``."""
        head = sorted((a for a in al if a.agreement is None), key=lambda a: (a.extra, -a.score))
        head = head[: self.verify_top]
        if not head or self.sketches is None:
            return
        sk = self.sketches(sorted({a.ref_key for a in head}))
        for a in head:
            s = sk.get(a.ref_key)
            if s is not None:
                a.agreement = agreement(view, s, a.offset, a.scale, a.shift)

    def _decide(self, qp: QueryPrints, al: list[Alignment], view: QueryView | None = None
                ) -> Identification:
        """Verify (given a view), calibrate and threshold a query's alignments.

        A verified alignment is judged by ``calibration``, an unverified one by
        ``plain_calibration`` when ``calibration`` needs the agreement, each at its own
        threshold."""
        fp = self.fingerprinter
        dur_ms = round(qp.duration_s * 1000)
        ref_hits = {a.ref_key: a.ref_hits for a in al}
        if view is not None and self.calibration.verifies:
            self.verify(al, view)
        matches = []
        for a in al:
            ru = runner_up(a, al)
            cal = self.calibration
            if cal.verifies and a.agreement is None:
                cal = self.plain_calibration
            conf = cal.probability(
                a.score, a.ref_hits, ru, cover(a, qp.duration_s * fp.frame_rate),
                tempo=a.scale, pitch=a.shift * 12.0 / fp.bins_per_octave,
                agreement=a.agreement or 0.0)
            if conf >= cal.threshold:
                matches.append(self._to_match(a, conf, ru, dur_ms))
        if not matches:
            return Identification("no_match", "no_candidate", dur_ms, raw=al, ref_hits=ref_hits)
        matches.sort(key=lambda m: -m.confidence)
        return Identification("match", None, dur_ms, matches, raw=al, ref_hits=ref_hits)

    def _to_match(self, a: Alignment, conf: float, ru: int, dur_ms: int) -> RefMatch:
        fr = self.fingerprinter.frame_rate
        pitch = a.shift * 12.0 / self.fingerprinter.bins_per_octave
        tempo = a.scale
        pure = abs(pitch - 12.0 * np.log2(tempo)) <= PURE_SPEED_TOL
        speed = tempo if pure else 1.0
        tail = 0.5 * fr  # anchors start a triplet; its last peak lies up to ~0.6 s later
        segs = []
        for q0, q1 in a.segments:
            q1 = min(q1 + tail, dur_ms * fr / 1000.0)
            segs.append(SegmentMatch(
                query_start_ms=round(q0 / fr * 1000),
                query_end_ms=round(q1 / fr * 1000),
                ref_start_ms=max(0, round((a.offset + a.scale * q0) / fr * 1000)),
                ref_end_ms=max(0, round((a.offset + a.scale * q1) / fr * 1000)),
                speed_ratio=round(float(speed), 4),
                pitch_semitones=round(float(pitch), 2),
                tempo_ratio=round(float(tempo), 4),
            ))
        q_ms = sum(s.query_end_ms - s.query_start_ms for s in segs)
        r_ms = sum(s.ref_end_ms - s.ref_start_ms for s in segs)
        return RefMatch(ref_key=a.ref_key, confidence=round(conf, 4), score=a.score,
                        runner_up=ru, query_match_ms=q_ms, ref_match_ms=r_ms, segments=segs)


def cover(a: Alignment, duration_frames: float) -> float:
    """Share of the query between the alignment's first and last inlier."""
    if not a.q_times.size or duration_frames <= 0:
        return 0.0
    return float((a.q_times.max() - a.q_times.min()) / duration_frames)


#: alignments of one reference closer than this in frequency shift (bins) and log2 tempo are
#: the same transform: a repeat of the music (a chorus again), not a rival explanation
SAME_SHIFT_BINS = 2.0
SAME_LOG2_SCALE = 0.04


def runner_up(a: Alignment, others: Sequence[Alignment]) -> int:
    """Best score of a rival alignment that overlaps ``a`` in query time.

    Rivals are alignments of other references and alignments of the same reference under
    another transform (an alias: the same music matched a fifth or an octave away, which
    harmonic music invites); the same reference under the same transform at another offset
    is a repeat and no rival. Alignments of the smoothed vote's extra cells
    (``Alignment.extra``) are no rivals either: the looser search of a second look finds
    chance alignments that the confidence model, fitted on the plain vote's rivals, would
    read as contradicting a right one (two right matches at 0.85 and 0.99 fell under the
    threshold that way).
    """
    lo, hi = float(a.q_times.min()), float(a.q_times.max())
    best = 0
    for o in others:
        if o is a or o.extra or (o.ref_key == a.ref_key and same_transform(o, a)):
            continue
        if o.q_times.max() >= lo and o.q_times.min() <= hi:
            best = max(best, o.score)
    return best


def same_transform(a: Alignment, b: Alignment) -> bool:
    """Whether two alignments agree on the frequency shift and the tempo ratio."""
    return (abs(a.shift - b.shift) <= SAME_SHIFT_BINS
            and abs(float(np.log2(a.scale / b.scale))) <= SAME_LOG2_SCALE)


class _Passes:
    """A query's prints and their candidates, pass by pass (the rungs near speed 1, the
    far rungs, the talk-over companions): each pass is looked up alone and joined to the
    earlier ones, which gives the same alignments as one pass over all of them. The
    candidates and their vote parts are kept in arrays that grow in place (a 5 s query
    draws ~10^5–10^6 candidates: copying them all at every pass would cost more than the
    first pass saves)."""

    _CAND = ("qidx", "ref_key", "entry", "t", "f", "span")  #: fields of Candidates ...
    _PARTS = ("hi", "scale", "o0")  #: ... and of VoteParts

    def __init__(self, ident: Identifier, qp: QueryPrints) -> None:
        self.ident = ident
        self.voter = ident._voter()
        self.qp = qp
        self.n = 0
        self.rows: dict[str, np.ndarray] = {}
        if self.voter is None:
            self._append(ident._lookup_parts(qp.hashes), 0, grow=3.0)

    def _append(self, done: list[tuple[Candidates, VoteParts]], q0: int, grow: float = 1.5
                ) -> None:
        new = sum(len(c) for c, _ in done)
        if not self.rows or self.n + new > self.rows["qidx"].size:
            cap = max(int(grow * (self.n + new)), 1024)
            c0, p0 = done[0]
            dtypes = {**{k: getattr(c0, k).dtype for k in self._CAND},
                      **{k: getattr(p0, k).dtype for k in self._PARTS}}
            rows = {k: np.empty(cap, d) for k, d in dtypes.items()}
            for k, v in self.rows.items():
                rows[k][: self.n] = v[: self.n]
            self.rows = rows
        for c, p in done:
            sl = slice(self.n, self.n + len(c))
            for src, names in ((c, self._CAND), (p, self._PARTS)):
                for k in names:
                    self.rows[k][sl] = getattr(src, k)
            self.rows["qidx"][sl] += q0
            self.n += len(c)

    def mark(self) -> tuple[QueryPrints, int]:
        """Where the passes so far end (for :meth:`rewind`)."""
        return self.qp, self.n

    def rewind(self, mark: tuple[QueryPrints, int]) -> None:
        """Forget the passes added after ``mark`` (their rows are overwritten next)."""
        self.qp, self.n = mark

    def upto(self, n: int | None = None) -> dict[str, np.ndarray]:
        """The rows of the candidates and their vote parts of the passes so far (or of the
        first ``n`` candidates), by field."""
        n = self.n if n is None else n
        return {k: v[:n] for k, v in self.rows.items()}

    def add(self, extra: QueryPrints) -> None:
        if self.voter is None:
            self._append(self.ident._lookup_parts(extra.hashes), len(self.qp.hashes))
        self.qp = QueryPrints.concat([self.qp, extra])

    def decide(self, view: QueryView | None, verify_top: int | None = None
               ) -> Identification:
        ident = self.ident if verify_top is None else replace(self.ident,
                                                               verify_top=verify_top)
        if self.voter is not None:  # the vote spread over the shards
            return ident._shards_vote(self.voter, self.qp, view)
        r = self.upto()
        cand = Candidates(r["qidx"], r["ref_key"], r["entry"], r["t"], r["f"], r["span"])
        return ident.identify_prints(self.qp, cand, VoteParts(r["hi"], r["scale"], r["o0"]),
                                     view=view)
