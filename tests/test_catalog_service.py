# SPDX-License-Identifier: Apache-2.0
"""The catalog and scan services on real files, real SQLite and the real index."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soxr

from conftest import SR, Library, excerpt, music, needs_ffmpeg, ref_offset_ms, write_audio
from earmark.audio.generators import pink_noise
from earmark.errors import CatalogError, ManifestError, UnknownReference
from earmark.identify.identifier import RefMatch, SegmentMatch
from earmark.index.base import IndexItem
from earmark.service.catalog import (
    Catalog,
    add_references,
    list_references,
    open_catalog,
    remove_reference,
    stats,
)
from earmark.service.ingest import fingerprint_file
from earmark.service.scan import iter_windows, merge_matches, scan_file
from earmark.store.catalog import Reference

pytestmark = needs_ffmpeg


def best(res: dict) -> dict:
    assert res["status"] == "match", res
    return res["matches"][0]


# -- identification through the service -----------------------------------------------------
@pytest.mark.parametrize("rid", ["ref0", "ref1", "ref3"])  # WAV, FLAC and Ogg references
def test_scan_finds_the_reference_at_its_offset(
    catalog: Catalog, library: Library, tmp_path: Path, rid: str
) -> None:
    cut_s = 6.3
    q = write_audio(tmp_path / "q.wav", excerpt(library.signals[rid], cut_s, 6.0))
    m = best(scan_file(catalog=catalog, path=q))
    assert m["reference_id"] == rid
    assert abs(ref_offset_ms(m["segments"][0]) - cut_s * 1000) <= 100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shifting_the_cut_shifts_the_reported_offset(
    catalog: Catalog, library: Library, tmp_path: Path, seed: int
) -> None:
    """Property: two cuts Δ apart are reported Δ apart (± 50 ms) on the reference side."""
    rng = np.random.default_rng(seed)
    rid = ("ref0", "ref1")[seed % 2]
    t0 = float(rng.uniform(0.5, 6.0))
    delta = float(rng.uniform(0.3, 7.0))
    offsets = []
    for i, start in enumerate((t0, t0 + delta)):
        q = write_audio(tmp_path / f"q{i}.flac", excerpt(library.signals[rid], start, 5.0))
        m = best(scan_file(catalog=catalog, path=q))
        assert m["reference_id"] == rid
        offsets.append(ref_offset_ms(m["segments"][0]))
    assert abs((offsets[1] - offsets[0]) - delta * 1000) <= 50


def test_speed_change_is_reported(catalog: Catalog, library: Library, tmp_path: Path) -> None:
    y = excerpt(library.signals["ref1"], 4.0, 10.0)
    fast = soxr.resample(y, SR * 1.25, SR).astype(np.float32)  # plays 1.25× faster
    q = write_audio(tmp_path / "nightcore.wav", fast)
    res = scan_file(catalog=catalog, path=q)
    m = best(res)
    seg = m["segments"][0]
    assert m["reference_id"] == "ref1"
    assert abs(seg["speed_ratio"] - 1.25) <= 0.02
    assert abs(seg["tempo_ratio"] - 1.25) <= 0.02
    assert abs(seg["pitch_semitones"] - 12 * np.log2(1.25)) <= 0.5
    assert abs(ref_offset_ms(seg) - 4000) <= 100
    assert abs(res["duration_ms"] - 8000) <= 5


def test_lossy_reference_and_query_formats(catalog: Catalog, library: Library,
                                           tmp_path: Path) -> None:
    for rid, ext in (("ref2", "m4a"), ("ref4", "mp3"), ("ref5", "opus")):
        q = write_audio(tmp_path / f"q.{ext}", excerpt(library.signals[rid], 8.0, 6.0))
        assert best(scan_file(catalog=catalog, path=q))["reference_id"] == rid


def test_long_query_is_scanned_in_windows_and_merged(
    catalog: Catalog, library: Library, tmp_path: Path
) -> None:
    cut_s = 10.0
    q = write_audio(tmp_path / "long-q.flac", excerpt(library.signals["long"], cut_s, 75.0))
    res = scan_file(catalog=catalog, path=q)
    assert res["duration_ms"] == 75000
    longs = [m for m in res["matches"] if m["reference_id"] == "long"]
    assert res["matches"][0] is longs[0]
    m = longs[0]
    # windows [0, 60) and [15, 75) s found the same alignment: one match on one timeline
    assert len([x for x in longs if abs(ref_offset_ms(x["segments"][0]) - cut_s * 1000) < 500]) == 1
    segs = m["segments"]
    assert segs[0]["query_start_ms"] < 3000 and segs[-1]["query_end_ms"] > 72000
    for s in segs:
        assert abs(ref_offset_ms(s) - cut_s * 1000) <= 100
        assert s["query_end_ms"] > s["query_start_ms"]
    assert m["query_match_pct"] >= 90.0
    assert abs(m["ref_match_pct"] - 100 * m["ref_match_ms"] / 90000) <= 0.1


def test_non_catalog_noise_is_no_match(catalog: Catalog, tmp_path: Path) -> None:
    y = pink_noise(sr=SR, duration=8.0, rng=np.random.default_rng(5))
    res = scan_file(catalog=catalog, path=write_audio(tmp_path / "noise.wav", 0.3 * y))
    assert res["status"] == "no_match" and res["matches"] == []
    assert res["reason"] in {"no_candidate", "too_little_signal"}


@pytest.mark.parametrize("seed", [101, 102, 103])
def test_non_catalog_music_is_no_match(catalog: Catalog, tmp_path: Path, seed: int) -> None:
    q = write_audio(tmp_path / f"other{seed}.wav", music(seed, 8.0))
    res = scan_file(catalog=catalog, path=q)
    assert (res["status"], res["reason"], res["matches"]) == ("no_match", "no_candidate", [])
    assert res["duration_ms"] == 8000


def test_silent_and_short_queries(catalog: Catalog, tmp_path: Path) -> None:
    res = scan_file(catalog=catalog, path=write_audio(tmp_path / "s.wav", np.zeros(5 * SR)))
    assert (res["status"], res["duration_ms"]) == ("error", None)
    assert res["reason"].startswith("silent_input: ")
    res = scan_file(catalog=catalog, path=write_audio(tmp_path / "t.wav", music(1, 0.5)))
    assert (res["status"], res["reason"]) == ("no_match", "too_short")


def test_bad_inputs_are_errors(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("not audio at all\n")
    res = scan_file(catalog=catalog, path=tmp_path / "missing.flac")
    assert res == {"input": str(tmp_path / "missing.flac"), "status": "error",
                   "reason": res["reason"], "duration_ms": None, "matches": []}
    assert res["reason"].startswith("file_missing: ")
    assert scan_file(catalog=catalog, path=tmp_path / "empty.wav")["reason"].startswith(
        "empty_input: ")
    assert scan_file(catalog=catalog, path=tmp_path / "text.mp3")["reason"].startswith(
        "unsupported_format: ")


# -- windows and merging (pure) -------------------------------------------------------------
@pytest.mark.parametrize("total", [1, 59, 60, 61, 110, 111, 250])
def test_windows_cover_the_stream_at_full_length(total: int) -> None:
    x = np.arange(total, dtype=np.float32)
    blocks = [x[i: i + 7] for i in range(0, total, 7)]
    wins = list(iter_windows(blocks, win=60, hop=50))
    covered = np.zeros(total, bool)
    for start, y in wins:
        assert np.array_equal(y, x[start: start + 60])
        assert y.size == min(60, total)
        covered[start: start + y.size] = True
    assert covered.all()
    assert [s for s, _ in wins] == sorted({s for s, _ in wins})


def _seg(q0: int, q1: int, offset: int, tempo: float = 1.0) -> SegmentMatch:
    return SegmentMatch(query_start_ms=q0, query_end_ms=q1, ref_start_ms=round(offset + tempo * q0),
                        ref_end_ms=round(offset + tempo * q1), speed_ratio=tempo,
                        pitch_semitones=0.0, tempo_ratio=tempo)


def _match(ref_key: int, confidence: float, seg: SegmentMatch) -> RefMatch:
    return RefMatch(ref_key=ref_key, confidence=confidence, score=20, runner_up=0,
                    query_match_ms=seg.query_end_ms - seg.query_start_ms,
                    ref_match_ms=seg.ref_end_ms - seg.ref_start_ms, segments=[seg])


def test_merge_follows_the_line_despite_a_small_tempo_error() -> None:
    # one 1.25× excerpt deep in a long input, seen by two windows with tempos 0.1 % apart:
    # their offsets extrapolated to input time 0 differ by ~850 ms, yet it is one match
    a = _match(1, 0.9, _seg(600000, 650000, 1000, 1.25))
    b = _match(1, 0.9, _seg(0, 20000, round(1000 + 1.25 * 650000), 1.2513))
    out = merge_matches([(0, a), (650000, b)])
    assert len(out) == 1
    assert [(s.query_start_ms, s.query_end_ms) for s in out[0].segments] == [(600000, 670000)]


def test_merge_joins_consistent_window_matches_only() -> None:
    w1 = _match(1, 0.9, _seg(1000, 59500, 5000))
    w2 = _match(1, 0.95, _seg(500, 24000, 55000))  # found in the window at 50 s
    other_place = _match(1, 0.8, _seg(30000, 40000, 90000))
    other_tempo = _match(1, 0.7, _seg(2000, 9000, 5000, 1.05))
    other_ref = _match(2, 0.6, _seg(1000, 9000, 5000))
    out = merge_matches([(0, w1), (50000, w2), (0, other_place), (0, other_tempo),
                         (0, other_ref)])
    assert [(c.ref_key, round(c.confidence, 2)) for c in out] == [
        (1, 0.95), (1, 0.8), (1, 0.7), (2, 0.6)]
    (s,) = out[0].segments
    assert (s.query_start_ms, s.query_end_ms) == (1000, 74000)
    assert (s.ref_start_ms, s.ref_end_ms) == (6000, 79000)


# -- catalog operations ---------------------------------------------------------------------
def test_catalog_contents(catalog: Catalog, library: Library) -> None:
    refs = list_references(catalog=catalog)
    assert [r.id for r in refs] == sorted(library.files)
    assert all(r.status == "ready" and r.duration_ms > 0 for r in refs)
    assert {r.id: r.duration_ms for r in refs}["long"] == 90000
    s = stats(catalog=catalog)
    assert s["references"] == len(library.files)
    assert abs(s["audio_seconds"] - (6 * 20 + 90)) < 1.0
    assert s["index_bytes"] > 0 and s["entries"] > 0 and s["db_bytes"] > 0
    assert s["fingerprinter"] == catalog.fingerprinter.name
    assert s["index_mb_per_hour"] > 0


def test_add_is_idempotent(writable: Catalog, library: Library, tmp_path: Path) -> None:
    f = library.files["ref0"]
    r1 = add_references(catalog=writable, paths=[f])
    assert (r1.added, r1.skipped, r1.failed) == (1, 0, 0)
    before = stats(catalog=writable)
    copy = shutil.copy(f, tmp_path / "another name.wav")
    r2 = add_references(catalog=writable, paths=[f, copy, f])
    assert (r2.added, r2.skipped, r2.failed) == (0, 2, 0)  # the same path counts once
    assert all("ref0" in (o.reason or "") for o in r2.items)
    after = stats(catalog=writable)
    assert after["references"] == 1
    assert (after["entries"], after["segments"]) == (before["entries"], before["segments"])


def test_same_audio_twice_in_one_run(writable: Catalog, library: Library, tmp_path: Path) -> None:
    a = shutil.copy(library.files["ref1"], tmp_path / "a.flac")
    b = shutil.copy(library.files["ref1"], tmp_path / "b.flac")
    r = add_references(catalog=writable, paths=[a, b])
    assert [(o.id, o.status) for o in r.items] == [("a", "added"), ("b", "skipped")]


def test_manifest_ids_and_duplicate_ids(writable: Catalog, library: Library,
                                        tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(library.files["ref0"], d / "x.wav")
    shutil.copy(library.files["ref1"], d / "y.flac")
    (d / "cat.csv").write_text(
        "id,path,title,artist,owner,isrc\n"
        "ISRC-0,x.wav,Zéro,Ann,Label A,USX0000001\n"
        f"ISRC-0,{library.files['ref3']},Other,Bob,,\n"  # absolute path, same id, other audio
        ",y.flac,,,,\n", encoding="utf-8")
    r = add_references(catalog=writable, paths=[d / "y.flac"], manifest=d / "cat.csv")
    by_input = {Path(o.input).name: o for o in r.items}
    assert by_input["y.flac"].status == "added" and by_input["y.flac"].id == "y"
    assert by_input["x.wav"].status == "added" and by_input["x.wav"].id == "ISRC-0"
    bad = by_input[library.files["ref3"].name]
    assert bad.status == "failed" and bad.reason is not None
    assert bad.reason.startswith("duplicate_id: ")
    assert "ISRC-0" in bad.reason
    (ref,) = [x for x in list_references(catalog=writable) if x.id == "ISRC-0"]
    assert (ref.title, ref.artist, ref.owner, ref.isrc) == ("Zéro", "Ann", "Label A",
                                                            "USX0000001")
    # the title travels into scan results
    q = write_audio(tmp_path / "q.wav", excerpt(library.signals["ref0"], 3.0, 5.0))
    assert best(scan_file(catalog=writable, path=q))["title"] == "Zéro"


def test_bad_manifest(writable: Catalog, tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("identifier,file\nx,y.wav\n")
    with pytest.raises(ManifestError, match="path"):
        add_references(catalog=writable, manifest=tmp_path / "bad.csv")
    with pytest.raises(ManifestError, match="cannot read"):
        add_references(catalog=writable, manifest=tmp_path / "nope.csv")


def test_a_batch_goes_on_past_bad_items(writable: Catalog, library: Library,
                                        tmp_path: Path) -> None:
    good = shutil.copy(library.files["ref2"], tmp_path / "good.mp3")
    (tmp_path / "empty.flac").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("hello\n")
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(library.files["ref1"].read_bytes()[:200])
    silent = write_audio(tmp_path / "silent.wav", np.zeros(3 * SR))
    (tmp_path / "emptydir").mkdir()
    r = add_references(catalog=writable, paths=[
        tmp_path / "missing.wav", corrupt, tmp_path / "empty.flac", tmp_path / "text.mp3",
        silent, good, tmp_path / "emptydir"], batch_size=2)
    codes = {Path(o.input).name: (o.status, (o.reason or "").split(":")[0]) for o in r.items}
    assert codes == {
        "missing.wav": ("failed", "file_missing"),
        "corrupt.flac": ("failed", "corrupt_input"),
        "empty.flac": ("failed", "empty_input"),
        "text.mp3": ("failed", "unsupported_format"),
        "silent.wav": ("failed", "silent_input"),
        "good.mp3": ("added", ""),
        "emptydir": ("failed", "no_audio_files"),
    }
    assert [x.id for x in list_references(catalog=writable)] == ["good"]


def test_remove(writable: Catalog, library: Library, tmp_path: Path) -> None:
    add_references(catalog=writable, paths=[library.files["ref0"], library.files["ref1"]])
    key = writable.store.get("ref0").key  # type: ignore[union-attr]
    out = remove_reference(catalog=writable, reference_id="ref0")
    assert out.id == "ref0"
    assert [r.id for r in list_references(catalog=writable)] == ["ref1"]
    assert key not in writable.index.ref_keys()
    assert stats(catalog=writable)["references"] == 1
    q = write_audio(tmp_path / "q.wav", excerpt(library.signals["ref0"], 5.0, 6.0))
    res = scan_file(catalog=writable, path=q)
    assert all(m["reference_id"] != "ref0" for m in res["matches"])
    with pytest.raises(UnknownReference):
        remove_reference(catalog=writable, reference_id="ref0")
    # and it can come back, under a new key
    r = add_references(catalog=writable, paths=[library.files["ref0"]])
    assert r.added == 1 and writable.store.get("ref0").key > key  # type: ignore[union-attr]


def test_parallel_add_matches_in_process(library: Library, tmp_path: Path) -> None:
    files = [library.files[r] for r in ("ref0", "ref1", "ref2", "ref3")]
    entries = {}
    for jobs in (1, 2):
        with open_catalog(home=tmp_path / f"j{jobs}", write=True) as cat:
            r = add_references(catalog=cat, paths=files, jobs=jobs)
            assert r.added == 4
            entries[jobs] = (sorted(x.id for x in list_references(catalog=cat)),
                             stats(catalog=cat)["entries"])
    assert entries[1] == entries[2]


def test_fingerprint_file_is_pure(library: Library) -> None:
    a = fingerprint_file(library.files["ref1"], sr=SR, max_seconds=None)
    b = fingerprint_file(library.files["ref1"], sr=SR, max_seconds=None)
    assert a.sha256 == b.sha256 and np.array_equal(a.hashes.key, b.hashes.key)
    assert a.n_samples == 20 * SR and a.duration_ms == 20000


# -- writers, readers and crash repair ------------------------------------------------------
def test_one_writer_at_a_time(tmp_path: Path) -> None:
    with open_catalog(home=tmp_path, write=True):
        with pytest.raises(CatalogError, match="another earmark process"):
            open_catalog(home=tmp_path, write=True, wait_s=0.2)
        with open_catalog(home=tmp_path) as reader:  # readers are never blocked
            assert stats(catalog=reader)["references"] == 0
    with pytest.raises(CatalogError, match="no catalog"):
        open_catalog(home=tmp_path / "elsewhere")


def test_repair_resolves_every_crash_state(library: Library, tmp_path: Path) -> None:
    home = tmp_path / "cat"
    with open_catalog(home=home, write=True) as cat:
        add_references(catalog=cat, paths=[library.files["ref0"]])
        fpr = fingerprint_file(library.files["ref1"], sr=SR, max_seconds=None)

        def row(rid: str, sha: str) -> Reference:
            return Reference(id=rid, source="/x", sha256=sha, duration_ms=20000,
                             shard="shard-0000")

        # killed after the index add, before "ready"
        k1, k2 = cat.store.insert_pending([row("in-index", fpr.sha256), row("not", "f" * 64)])
        cat.index.add([IndexItem(k1, fpr.hashes, 1 + fpr.n_samples // 128)])
        # killed between the row delete and the index remove of `catalog remove`
        k0 = cat.store.get("ref0").key  # type: ignore[union-attr]
        cat.store.delete_keys([k0])
    with open_catalog(home=home, write=True) as cat:
        r = cat.repaired
        assert (r.completed, r.dropped, r.lost, r.orphans) == (1, 1, 0, 1)
        assert cat.store.keys(status="pending") == set()
        assert cat.store.keys(status="ready") == cat.index.ref_keys() == {k1}
        assert k2 not in cat.store.keys()
    with open_catalog(home=home, write=True) as cat:
        assert not cat.repaired


def test_a_run_in_batches_leaves_one_segment_and_the_same_answers(
        writable: Catalog, library: Library, tmp_path: Path) -> None:
    """Each batch of a run is written as a segment; the run ends by merging them into one
    (every lookup searches every segment), and scans answer as before the merge."""
    files = [library.files[f"ref{i}"] for i in range(6)]
    r = add_references(catalog=writable, paths=files, batch_size=2)
    assert r.added == 6
    assert writable.index.stats().segments == 1
    q = write_audio(tmp_path / "q.wav", library.signals["ref4"][3 * SR: 9 * SR])
    res = scan_file(catalog=writable, path=q)
    assert res["status"] == "match" and res["matches"][0]["reference_id"] == "ref4"
    assert abs(ref_offset_ms(res["matches"][0]["segments"][0]) - 3000) <= 100
