# SPDX-License-Identifier: Apache-2.0
"""The sharded index on a real local Ray cluster (one per session): routing of adds,
identical scans with 1, 2 and 4 shards on real music, and shard actors killed mid-batch.

Skipped when Ray is not installed (``pip install 'earmark[ray]'``; ``scripts/setup`` installs
it); the real-music tests also need the small corpus (``$EARMARK_CORPUS``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from earmark.audio import effects
from earmark.audio.decode import decode
from earmark.identify.hashes import Hashes
from earmark.identify.identifier import Identifier
from earmark.identify.verify import SketchCache
from earmark.index.base import IndexItem
from earmark.index.segments import SegmentIndex
from earmark.index.sharded import ShardedIndex, ShardLayout
from earmark.service.catalog import add_references, open_catalog
from earmark.service.scan import scan_paths
from earmark.service.shards import reshard_catalog
from earmark.store.catalog import CatalogStore

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'earmark[ray]'")

from earmark.index.ray_shards import RayShard, open_ray  # noqa: E402

CORPUS = Path(os.environ.get("EARMARK_CORPUS", Path.home() / ".cache/earmark-corpus"))
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "manifest.csv").is_file(),
    reason="no corpus: scripts/fetch-corpus --small --dest $EARMARK_CORPUS")
SR = 8000


@pytest.fixture(scope="session")
def cluster(ray_cluster: object) -> None:
    """The session's private Ray cluster (``conftest.ray_cluster``)."""


def _items(keys: list[int], seed: int = 0, n: int = 400) -> list[IndexItem]:
    rng = np.random.default_rng(seed)
    return [IndexItem(k, Hashes(rng.integers(0, 2000, n).astype(np.uint32),
                                rng.uniform(0, 900, n).astype(np.float32),
                                rng.uniform(0, 200, n).astype(np.float32),
                                rng.uniform(4, 40, n).astype(np.float32)), 1000)
            for k in keys]


def test_adds_are_routed_to_the_shard_of_their_key_range(cluster: None, tmp_path: Path
                                                         ) -> None:
    layout = ShardLayout(("a", "b", "c"), (0, 100, 200))
    keys = [1, 99, 100, 150, 199, 200, 5000]
    with open_ray(tmp_path, layout=layout, replicas=2) as idx:
        idx.add(_items(keys))
        idx.add(_items([150, 7000], seed=1))  # 150 again: a no-op; 7000 to the open range
        assert [m.ref_keys() for m in idx.members] == [{1, 99}, {100, 150, 199},
                                                       {200, 5000, 7000}]
        # every replica of a shard sees the owner's writes
        q = _items([150])[0].hashes.key
        for shard in idx.members:
            assert isinstance(shard, RayShard)
            got = [ray.get(a.lookup_counts.remote(q, None))[1] for a in shard.actors]
            assert all(np.array_equal(got[0], g) for g in got)
        assert idx.remove([99, 150, 4]) == 2
        assert idx.ref_keys() == {1, 100, 199, 200, 5000, 7000}
    for name, want in zip(("a", "b", "c"), ({1}, {100, 199}, {200, 5000, 7000}), strict=True):
        with SegmentIndex(tmp_path / name) as disk:  # what is on disk, with Ray gone
            assert disk.ref_keys() == want


# -- real music --------------------------------------------------------------------------------
def _write(path: Path, y: np.ndarray) -> str:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(SR), "-ac", "1",
                    "-i", "-", "-b:a", "64k", str(path)],
                   input=np.asarray(y, np.float32).tobytes(), check=True)
    return str(path)


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A catalog of 12 real tracks (one shard), and edited excerpts plus outside music."""
    if not (CORPUS / "manifest.csv").is_file():
        pytest.skip("no corpus: scripts/fetch-corpus --small --dest $EARMARK_CORPUS")
    rows = list(csv.DictReader(open(CORPUS / "manifest.csv")))
    rng = np.random.default_rng(11)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    inside, outside = rows[:12], rows[12:15]
    tmp = tmp_path_factory.mktemp("ray-music")
    home = tmp / "one"
    with open_catalog(home=home, write=True) as cat:
        rep = add_references(catalog=cat, paths=[CORPUS / r["path"] for r in inside], jobs=2)
    assert rep.added == len(inside), rep
    edits = [(1.0, None), (1.25, None), (0.8, None), (1.0, 5.0)]
    queries, arrays = [], []
    for i, r in enumerate(inside[:8]):
        tempo, snr = edits[i % len(edits)]
        y = decode(CORPUS / r["path"], SR)
        start = float(rng.uniform(0, max(1.0, y.size / SR - 12 * tempo)))
        seg = y[int(start * SR): int((start + 8 * tempo) * SR)]
        seg = effects.speed(seg, SR, tempo) if tempo != 1.0 else seg
        seg = effects.add_noise(seg, SR, snr, rng=rng) if snr is not None else seg
        arrays.append(seg[: 7 * SR])
        queries.append(_write(tmp / f"q{i}.mp3", arrays[-1]))
    for i, r in enumerate(outside):
        y = decode(CORPUS / r["path"], SR)
        arrays.append(y[10 * SR: 17 * SR])
        queries.append(_write(tmp / f"out{i}.mp3", arrays[-1]))
    # a long query: scanned in overlapping windows
    queries.append(_write(tmp / "long.mp3", decode(CORPUS / inside[0]["path"], SR)[: 65 * SR]))
    return {"home": home, "queries": queries, "arrays": arrays, "tmp": tmp,
            "n_inside": 8}


def _scan(home: Path, queries: list[str], **kw: object) -> list[dict]:
    with open_catalog(home=home, **kw) as cat:  # type: ignore[arg-type]
        return list(scan_paths(catalog=cat, paths=queries))


def _resharded(music: dict, n: int) -> Path:
    home = music["tmp"] / f"s{n}"
    if not home.exists():
        shutil.copytree(music["home"], home)
        with open_catalog(home=home, write=True) as cat:
            rep = reshard_catalog(catalog=cat, shards=n)
        assert rep.shards == n and rep.references == 12
    return home


@needs_corpus
def test_scans_are_identical_with_1_2_and_4_shards(cluster: None, music: dict) -> None:
    """The scan JSON of one in-process shard is the JSON of 1, 2 and 4 shards, on Ray and in
    this process: same references, offsets, decisions and confidences."""
    base = _scan(music["home"], music["queries"])
    statuses = [r["status"] for r in base]
    assert statuses[: music["n_inside"]].count("match") >= music["n_inside"] - 1, base
    assert statuses[music["n_inside"]: -1] == ["no_match"] * 3
    assert statuses[-1] == "match"
    want = json.dumps(base, sort_keys=True)
    for n in (1, 2, 4):
        home = _resharded(music, n)
        assert json.dumps(_scan(home, music["queries"], ray_address="auto", replicas=1),
                          sort_keys=True) == want, f"{n} shard(s) on Ray"
        if n == 4:
            assert json.dumps(_scan(home, music["queries"]), sort_keys=True) == want, (
                "4 shards in this process")


def _answers(ident: Identifier, arrays: list[np.ndarray]) -> list[tuple]:
    return [_summary(ident.identify(y)) for y in arrays]


def _summary(res: object) -> tuple:
    return (res.status, [(m.ref_key, m.confidence, m.score, m.runner_up,  # type: ignore[attr-defined]
                          [(s.query_start_ms, s.ref_start_ms) for s in m.segments])
                         for m in res.matches])  # type: ignore[attr-defined]


@needs_corpus
@pytest.mark.parametrize("replicas", [2, 1])
def test_a_shard_actor_killed_mid_batch_loses_and_spoils_no_answer(
        cluster: None, music: dict, replicas: int) -> None:
    """Kill a shard's actor while a batch of queries runs: each query is answered once, as
    the single box answers it (with 2 replicas the lookup goes to the other one; with 1 it
    waits for Ray to restart the actor from its directory)."""
    with open_catalog(home=music["home"]) as one:
        fp = one.fingerprinter
        want = _answers(one.identifier, music["arrays"])
    home = _resharded(music, 2)
    idx = open_ray(home / "index", fingerprint=f"{fp.name}-{fp.version}", replicas=replicas)
    try:
        # the references' sketches come from the catalog database, as Catalog.identifier's
        store = CatalogStore(home / "catalog.sqlite")
        ident = Identifier(shards=[idx], fingerprinter=fp, sketches=SketchCache(store.sketches).get)
        batch = music["arrays"] * 3
        got: list[tuple] = []
        started = threading.Event()

        def run() -> None:
            for y in batch:
                got.append(_summary(ident.identify(y)))
                started.set()

        t = threading.Thread(target=run)
        t.start()
        started.wait(60)
        shard = idx.members[1]
        assert isinstance(shard, RayShard)
        victim = shard.actors[-1]
        pid = ray.get(victim.pid.remote())
        ray.kill(victim, no_restart=False)
        t.join(120)
        assert not t.is_alive()
        assert got == want * 3
        assert ray.get(victim.pid.remote()) != pid  # restarted, from the directory
    finally:
        idx.close()


def test_the_global_stop_rule_is_what_one_shard_does(tmp_path: Path) -> None:
    """A key over the cap in the sum of the shards, though under it in each, is dropped,
    as one shard holding every entry drops it."""
    items = _items(list(range(1, 9)), n=300)
    for it in items:  # key 7 : 12 entries in each reference, 96 in all
        it.hashes.key[:12] = 7
    one = SegmentIndex(tmp_path / "one")
    one.add(items)
    layout = ShardLayout.even(range(1, 9), 4)
    from earmark.index.sharded import open_local

    with one, open_local(tmp_path / "four", layout=layout) as four:
        four.add(items)
        q = np.array([7, 3, 1500], np.uint32)
        c1, n1 = one.lookup_counts(q, max_bucket=40)
        c4, n4 = four.lookup_counts(q, max_bucket=40)
        assert np.array_equal(n1, n4) and n1[0] == 96
        assert not (c1.qidx == 0).any() and not (c4.qidx == 0).any()
        assert sorted(zip(c1.ref_key, c1.t, c1.qidx, strict=True)) == sorted(
            zip(c4.ref_key, c4.t, c4.qidx, strict=True))
        assert np.array_equal(sum(m.index.key_counts(q) for m in four.members), n4)  # type: ignore[attr-defined]
        # asked shard by shard, each keeps the key (24 entries < 40)
        naive = [m.index.lookup(q, max_bucket=40) for m in four.members]  # type: ignore[attr-defined]
        assert sum(int((c.qidx == 0).sum()) for c in naive) == 96
        assert isinstance(four, ShardedIndex)
