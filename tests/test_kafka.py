# SPDX-License-Identifier: Apache-2.0
"""A bounded read of a Kafka topic as the inputs of ``earmark scan --kafka-topic``.

The broker is librdkafka's mock cluster (``test.mock.num.brokers``): a Kafka-protocol server
on a loopback port, started inside a client of this process; the scan's own consumer and the
test's producers reach it over TCP like any broker. It is not Apache Kafka (no retention,
no transactions are exercised here). Skipped when confluent-kafka is not installed
(``pip install 'earmark[kafka]'``; ``scripts/setup`` installs it).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SR, Library, excerpt, needs_ffmpeg, write_audio
from earmark.audio.generators import pink_noise
from earmark.cli.main import app
from earmark.errors import BadMessage, KafkaInputError, KafkaMissing
from earmark.runners import LocalRunner
from earmark.runners.kafka import (
    TopicRead,
    client,
    coordinates,
    parse_value,
    read_topic,
)
from earmark.runners.kafka_settings import load_client_config

_log = logging.getLogger("test_kafka.librdkafka")


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """The bootstrap address (``127.0.0.1:PORT``) of a one-broker mock cluster."""
    ck = pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed: "
                                                       "pip install 'earmark[kafka]'")
    owner = ck.Producer({"test.mock.num.brokers": 1, "logger": _log})
    brokers = owner.list_topics(timeout=10).brokers
    b = next(iter(brokers.values()))
    yield f"{b.host}:{b.port}"
    owner.flush(5)


def produce(bootstrap: str, topic: str, values: list[tuple[int, bytes]]) -> list[str]:
    """Produce ``(partition, value)`` pairs in order; returns the coordinates of each."""
    ck = client()
    p = ck.Producer({"bootstrap.servers": bootstrap, "logger": _log})
    where: list[str] = []
    errors: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        (errors.append(err) if err is not None
         else where.append(coordinates(msg.topic(), msg.partition(), msg.offset())))

    for part, value in values:
        p.produce(topic, value, partition=part, on_delivery=delivered)
        p.flush(10)  # one at a time: the coordinates come back in order
    assert not errors and len(where) == len(values), errors
    return where


def committed(bootstrap: str, topic: str, group: str, n: int) -> list[int]:
    ck = client()
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": _log})
    try:
        return [tp.offset for tp in c.committed(
            [ck.TopicPartition(topic, p) for p in range(n)], timeout=10)]
    finally:
        c.close()


def ends(bootstrap: str, topic: str, n: int) -> list[int]:
    ck = client()
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "logger": _log})
    try:
        return [c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)[1]
                for p in range(n)]
    finally:
        c.close()


@pytest.fixture(scope="module")
def uploads(library: Library, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three excerpts of references and a noise file."""
    d = tmp_path_factory.mktemp("kafka-uploads")
    out = {}
    for name, rid, start in [("q0", "ref0", 2.0), ("q1", "ref2", 5.0), ("q2", "ref4", 1.0)]:
        out[name] = write_audio(d / f"{name}.mp3", excerpt(library.signals[rid], start, 6.0))
    out["noise"] = write_audio(
        d / "noise.wav", 0.3 * pink_noise(sr=SR, duration=5.0, rng=np.random.default_rng(3)))
    return out


#: what each message of :func:`messages` should give: status and first reference, or reason
WANT = [("match", "ref0"), ("match", "ref2"), ("match", "ref4"), ("no_match", None),
        ("error", "bad_message"), ("error", "bad_message"), ("error", "bad_message"),
        ("error", "bad_message"), ("error", "file_missing")]


def messages(uploads: dict[str, Path]) -> list[tuple[int, bytes]]:
    """Messages over three partitions: a plain path, a JSON object with more fields, a path
    with blanks around it, noise; four bad messages; a path to no file."""
    return [
        (0, str(uploads["q0"]).encode()),
        (1, json.dumps({"path": str(uploads["q1"]), "upload": 7}).encode()),
        (2, f"  {uploads['q2']}\n".encode()),
        (0, str(uploads["noise"]).encode()),
        (1, b"\xff\xfe not utf-8"),
        (2, b""),
        (0, b'{"owner": "x"}'),
        (1, b"/a.mp3\n/b.mp3"),
        (2, str(uploads["q0"].parent / "gone.mp3").encode()),
    ]


def new_topic(bootstrap: str, uploads: dict[str, Path]) -> tuple[str, list[str]]:
    topic = f"uploads-{uuid.uuid4().hex[:8]}"
    return topic, produce(bootstrap, topic, messages(uploads))


def check(lines: list[dict[str, Any]], where: list[str], uploads: dict[str, Path],
          want: list[tuple[str, str | None]] = WANT) -> None:
    """Each message answered exactly once, with the right status and reference."""
    assert len(lines) == len(want)
    inputs = [m.decode(errors="replace") for _, m in messages(uploads)]
    by_input = {r["input"]: r for r in lines}
    assert len(by_input) == len(lines)  # once each
    for i, (status, what) in enumerate(want):
        if what == "bad_message":
            r = by_input[where[i]]  # a bad message is answered under its coordinates
        elif i == 1:
            r = by_input[str(uploads["q1"])]
        else:
            r = by_input[inputs[i].strip()]
        assert r["status"] == status, r
        if status == "match":
            assert r["matches"][0]["reference_id"] == what
        elif what is not None:
            assert r["reason"].startswith(what), r


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines()]


def test_parse_value() -> None:
    assert parse_value(b"/m/a.mp3") == "/m/a.mp3"
    assert parse_value(b"\xef\xbb\xbf https://x/a.mp3 \n") == "https://x/a.mp3"
    assert parse_value(b'{"path": " /m/b.wav ", "id": 3}') == "/m/b.wav"
    for bad, why in [(None, "empty"), (b"", "empty"), (b" \n", "blank"),
                     (b"\xff", "not UTF-8"), (b"{nope", "not JSON"),
                     (b'{"path": 3}', '"path" string'), (b'{"path": ""}', '"path" string'),
                     (b"/a\n/b", "several lines")]:
        with pytest.raises(BadMessage, match=why) as exc:
            parse_value(bad)
        assert exc.value.reason.startswith("bad_message: ")
        assert '"path"' in str(exc.value)  # says what to produce


def test_a_missing_client_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(KafkaMissing, match=r"pip install 'earmark\[kafka\]'"):
        client()
    code, out, err = run("scan", "--db", tmp_path, "--kafka-topic", "t",
                         "--kafka-bootstrap", "127.0.0.1:9")
    assert code == 2 and out == ""
    assert "kafka_missing" in err and "pip install 'earmark[kafka]'" in err


def test_option_errors(tmp_path: Path) -> None:
    code, _, err = run("scan", "--db", tmp_path, "--kafka-topic", "t",
                       env={"EARMARK_KAFKA_BOOTSTRAP": ""})
    assert code == 2 and "--kafka-bootstrap" in err
    code, _, err = run("scan", "--db", tmp_path, "--kafka-group", "g", "x.wav")
    assert code == 2 and "--kafka-group needs --kafka-topic" in err
    code, _, err = run("scan", "--db", tmp_path, "--kafka-topic", "t", "--kafka-bootstrap",
                       "127.0.0.1:9", "--kafka-group", "g")
    assert code == 2 and "add --json or --results" in err


def test_client_properties_file(tmp_path: Path) -> None:
    f = tmp_path / "client.properties"
    f.write_text("# a cluster with SASL over TLS\n\n security.protocol = SASL_SSL\n"
                 "! another comment\nsasl.mechanisms=PLAIN\nsasl.username=svc\n"
                 "sasl.password=a=b c\n", encoding="utf-8")
    assert load_client_config(f) == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                                     "sasl.username": "svc", "sasl.password": "a=b c"}
    for text, why in [("ssl.ca.location\n", "line 1 is not key=value"),
                      ("=x\n", "line 1 is not key=value"),
                      ("client.id=a\nclient.id=b\n", "line 2 sets client.id a second time"),
                      ("group.id=g\n", "line 1 sets group.id, which the read sets itself"),
                      ("bootstrap.servers=h:9092\n", "--kafka-bootstrap")]:
        f.write_text(text, encoding="utf-8")
        with pytest.raises(KafkaInputError, match=why):
            load_client_config(f)
    with pytest.raises(KafkaInputError, match=r"cannot read .*--kafka-config"):
        load_client_config(tmp_path / "missing.properties")


def test_client_settings_reach_the_client(broker: str, tmp_path: Path) -> None:
    """A setting librdkafka does not know is named; a SASL handshake the broker refuses
    (the mock cluster speaks no SASL) is reported with the client's own words."""
    f = tmp_path / "client.properties"
    f.write_text("no.such.setting=1\n", encoding="utf-8")
    code, out, err = run("scan", "--db", tmp_path, "--kafka-topic", "t", "--kafka-bootstrap",
                         broker, "--kafka-config", f)
    assert code == 2 and out == ""
    assert "kafka_error" in err and "no.such.setting" in err and "--kafka-config" in err
    with pytest.raises(KafkaInputError, match=r"the client said: .*SASL.*--kafka-config"):
        TopicRead(bootstrap=broker, topic="t", timeout_s=2, config={
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
            "sasl.username": "svc", "sasl.password": "secret"})


def test_unreachable_cluster_and_unknown_topic(broker: str) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(KafkaInputError, match=r"cannot reach Kafka at .*--kafka-bootstrap"):
        TopicRead(bootstrap=f"127.0.0.1:{port}", topic="t", timeout_s=1)
    with pytest.raises(KafkaInputError, match=r"no topic 'nope-.*--kafka-topic"):
        read_topic(bootstrap=broker, topic=f"nope-{uuid.uuid4().hex[:8]}")


def test_the_read_stops_at_the_end_offsets_seen_at_its_start(broker: str) -> None:
    topic = f"bounded-{uuid.uuid4().hex[:8]}"
    first = produce(broker, topic, [(p % 3, f"/m/{p}.mp3".encode()) for p in range(6)])
    with TopicRead(bootstrap=broker, topic=topic) as read:
        assert read.pending == 6
        later = produce(broker, topic, [(p % 3, f"/m/late{p}.mp3".encode())
                                        for p in range(4)])  # after the read started
        got = read.read(stall_s=10)
        assert sorted(read.inputs) == [f"/m/{p}.mp3" for p in range(6)]
        assert sorted(coordinates(topic, m.partition, m.offset) for m in got) == sorted(first)
        assert read.notes == []
    with TopicRead(bootstrap=broker, topic=topic) as again:  # the next run sees them
        again.read(stall_s=10)
        assert len(again.messages) == 10 and set(later) <= {
            coordinates(topic, m.partition, m.offset) for m in again.messages}


@needs_ffmpeg
def test_scan_answers_each_message_once(broker: str, catalog_home: Path,
                                        uploads: dict[str, Path], tmp_path: Path) -> None:
    topic, where = new_topic(broker, uploads)
    code, out, err = run("scan", "--db", catalog_home, "--json", "--kafka-topic", topic,
                         "--kafka-bootstrap", broker)
    assert code == 0, err
    check(_lines(out), where, uploads)
    assert "9 input(s): 3 match, 1 no match, 5 error" in err
    bad = {r["input"]: r["reason"] for r in _lines(out) if r["input"].startswith("kafka://")}
    assert "not UTF-8" in bad[where[4]] and "empty" in bad[where[5]]
    # the table shows the same, and the bootstrap and client settings may come from the
    # environment
    settings = tmp_path / "client.properties"
    settings.write_text("client.id=earmark-test\nsocket.keepalive.enable=true\n")
    code, out, err = run("scan", "--db", catalog_home, "--kafka-topic", topic,
                         env={"EARMARK_KAFKA_BOOTSTRAP": broker,
                              "EARMARK_KAFKA_CONFIG": str(settings)})
    assert code == 0, err
    assert "ref0" in out and "bad_message" in out and where[6] in out


@needs_ffmpeg
def test_a_group_goes_on_where_it_stopped(broker: str, catalog_home: Path,
                                          uploads: dict[str, Path]) -> None:
    topic, where = new_topic(broker, uploads)
    group = f"moderation-{uuid.uuid4().hex[:8]}"
    args = ("scan", "--db", catalog_home, "--json", "--kafka-topic", topic,
            "--kafka-bootstrap", broker, "--kafka-group", group)
    code, out, err = run(*args)
    assert code == 0, err
    check(_lines(out), where, uploads)
    assert committed(broker, topic, group, 3) == ends(broker, topic, 3) == [3, 3, 3]
    # two new messages: the next run with the group answers those alone
    more = produce(broker, topic, [(1, str(uploads["q2"]).encode()), (2, b"{}")])
    code, out, err = run(*args)
    assert code == 0, err
    lines = _lines(out)
    assert [r["input"] for r in lines] == [more[1], str(uploads["q2"])]  # bad ones first
    assert lines[1]["matches"][0]["reference_id"] == "ref4"
    assert committed(broker, topic, group, 3) == [3, 4, 4]
    code, out, err = run(*args)
    assert code == 0 and out == "" and "nothing new on Kafka topic" in err


@needs_ffmpeg
def test_results_file_skips_what_is_answered(broker: str, catalog_home: Path,
                                             uploads: dict[str, Path],
                                             tmp_path: Path) -> None:
    topic, where = new_topic(broker, uploads)
    results = tmp_path / "results.jsonl"
    args = ("scan", "--db", catalog_home, "--json", "--kafka-topic", topic,
            "--kafka-bootstrap", broker, "--results", results)
    code, out, err = run(*args)
    assert code == 0, err
    check(_lines(out), where, uploads)
    rows = _lines(results.read_text())
    assert {r["resume"]["path"] for r in rows if r["status"] == "error"} >= set(where[4:8])
    more = produce(broker, topic, [(0, b"\x00\xff"), (0, str(uploads["q1"]).encode())])
    code, out, err = run(*args)  # no group: the topic is read again from its beginning
    assert code == 1, err  # what it scanned is one error: nothing succeeded
    assert "10 input(s) already answered" in err  # the 9, and q1 named again
    assert [r["input"] for r in _lines(out)] == [more[0]]


@needs_ffmpeg
def test_offsets_are_committed_only_below_unwritten_results(
        broker: str, catalog_home: Path, uploads: dict[str, Path]) -> None:
    """What a crash leaves: results not written keep their offsets (at-least-once)."""
    topic, _ = new_topic(broker, uploads)
    group = f"g-{uuid.uuid4().hex[:8]}"
    read = read_topic(bootstrap=broker, topic=topic, group=group)
    runner = read.runner(LocalRunner(home=catalog_home, max_seconds=None))
    inputs = read.inputs
    lost = inputs.index(str(uploads["q1"]))  # partition 1, offset 0: never written
    try:
        for pos, res in runner.scan(inputs):
            assert res["input"] == inputs[pos]
            if pos != lost:
                read.answered(pos)
        read.commit()
    finally:
        runner.close()
    assert committed(broker, topic, group, 3) == [3, -1001, 3]  # p1: none (OFFSET_INVALID)
    # the next run reads partition 1 again from the unwritten one (and what followed it)
    again = read_topic(bootstrap=broker, topic=topic, group=group)
    try:
        assert [(m.partition, m.offset) for m in again.messages] == [(1, 0), (1, 1), (1, 2)]
        assert again.messages[0].input == str(uploads["q1"])
    finally:
        again.close()


@needs_ffmpeg
def test_ray_runner_gives_the_local_lines(ray_cluster: Any, broker: str, catalog_home: Path,
                                          uploads: dict[str, Path]) -> None:
    pytest.importorskip("ray.data", reason="Ray Data is not installed: "
                                           "pip install 'earmark[ray]'")
    topic, where = new_topic(broker, uploads)
    group = f"ray-{uuid.uuid4().hex[:8]}"
    code, out, err = run("scan", "--runner", "ray", "--batch-size", "2", "--db",
                         catalog_home, "--json", "--kafka-topic", topic,
                         "--kafka-bootstrap", broker, "--kafka-group", group)
    assert code == 0, err
    on_ray = _lines(out)
    check(on_ray, where, uploads)
    code, out, err = run("scan", "--db", catalog_home, "--json", "--kafka-topic", topic,
                         "--kafka-bootstrap", broker)
    assert code == 0, err
    key = lambda r: r["input"]  # noqa: E731
    assert sorted(on_ray, key=key) == sorted(_lines(out), key=key)
    assert committed(broker, topic, group, 3) == [3, 3, 3]


@needs_ffmpeg
def test_record_takes_the_uploads_and_leaves_the_bad_messages(
        broker: str, catalog_home: Path, uploads: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--record with a topic: each message that names a file becomes a scan in the service
    database (a path to no file: a failed scan); a bad message names no upload and is
    answered on stdout only. A re-run records nothing twice."""
    from earmark.service.scans import list_scans
    from earmark.store.db import open_db

    url = f"sqlite:///{tmp_path / 'service.sqlite'}"
    monkeypatch.setenv("EARMARK_DATABASE_URL", url)
    topic, where = new_topic(broker, uploads)
    args = ("scan", "--db", catalog_home, "--json", "--record", "--kafka-topic", topic,
            "--kafka-bootstrap", broker)
    code, out, err = run(*args)
    assert code == 0, err
    check(_lines(out), where, uploads)
    db = open_db(home=tmp_path, url=url)
    try:
        rows = list_scans(db, limit=50)
        assert sorted(r.status for r in rows) == ["done"] * 4 + ["failed"]
        assert not any(r.filename.startswith("kafka") for r in rows)
        code, out, err = run(*args)  # no group: the topic is read again
        assert code == 1, err  # only the bad messages are left, answered again: all errors
        assert "5 input(s) already recorded" in err and "not recorded" not in err
        assert len(_lines(out)) == 4 and len(list_scans(db, limit=50)) == 5
    finally:
        db.close()
