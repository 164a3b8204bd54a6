# SPDX-License-Identifier: Apache-2.0
"""A bounded read of a Kafka topic as the inputs of a batch scan (``earmark scan
--kafka-topic``).

**What is read.** Every partition of the topic, from its beginning (with a consumer group:
from the group's committed offset) up to the partition's end offset — its high watermark —
as observed when the read starts. Then the read stops: messages produced after that are for
the next run. The whole read happens before the first scan, and the driver holds each
message's input (a few hundred bytes a message: ten million messages are a few GB).

**Message values.** Each value is one input:

- UTF-8 text: a path or an ``http(s)://`` URL, as on the command line (blanks at both ends
  are removed). A relative path is relative to the scanning process's folder: produce
  absolute ones.
- A JSON object (the text starts with ``{``): its ``"path"`` field, a string. Other fields are
  ignored, so producers may add their own (an upload id, an owner); they are not echoed.

Keys and headers are not read. Any other value — not UTF-8, empty (a tombstone), several
lines, JSON that does not parse or has no ``"path"`` string — is a *bad message*: it is
answered at once, never scanned, with an ``error`` result whose ``input`` is the message's
coordinates ``kafka://TOPIC/PARTITION/OFFSET`` and whose reason is ``bad_message: ...``; the
run goes on. With ``--results`` that line is keyed by those coordinates, so a re-run without
a group does not answer it again.

**Offsets.** The partitions are assigned by hand: the group only stores offsets (no group
membership, no rebalance), and two runs with the same group at the same time are not
coordinated (both read the same messages). Without a group nothing is committed and each run
reads the topic from its beginning: pair it with ``--results`` to skip what is answered. With
a group, a partition's offset is committed only when the results of all its messages below
that offset are written (``--json`` lines flushed to stdout, ``--results`` lines flushed and
synced to disk): at most once a second while results come, and once at the end. Messages
that name the same input are answered together.

**Client settings.** A cluster that wants TLS or SASL gets them from a client properties file
(``--kafka-config FILE``, the ``key=value`` lines Kafka's own tools read; ``#`` or ``!`` starts
a comment): librdkafka's names (``security.protocol``, ``sasl.mechanisms``,
``sasl.username``, ``ssl.ca.location``, ...). A file keeps secrets off the command line,
where other users of the machine see them in the process list. The settings the read relies
on (the brokers, the group, offsets and commits) come from the options and cannot be set
there (:mod:`earmark.runners.kafka_settings`).

**A crash** (killed process, lost node, power loss) loses no message — at-least-once: the
next run with the group starts at the last committed offset and scans again the messages
answered since that commit (about a second of results) and those that were in flight; with
``--results`` those already in the file are skipped as usual.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from earmark.errors import BadMessage, KafkaInputError, KafkaMissing
from earmark.runners import Runner
from earmark.service.scan import ScanResult

COMMIT_EVERY_S = 1.0  #: least time between two commits of a group's offsets while results come
STALL_S = 30.0  #: a partition that gives nothing this long before its end offset stops there
TIMEOUT_S = 10.0  #: wait for the cluster's metadata, watermarks and committed offsets
NO_GROUP = "earmark-scan"  #: the client's group id without --kafka-group (nothing committed)
#: the client settings the read relies on (offsets and commits by hand, the end of each
#: partition seen); with the brokers, the group and the logger, not the caller's to set
FIXED_SETTINGS = {"enable.auto.commit": False, "enable.auto.offset.store": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest",
                  "log.connection.close": False}
#: every setting the read sets itself (``metadata.broker.list``: the brokers' other name)
OWNED = ("bootstrap.servers", "metadata.broker.list", "group.id", "logger", *FIXED_SETTINGS)
VALUE_HELP = ('produce one path or URL per message, or a JSON object with a "path" string')

log = logging.getLogger(__name__)
#: librdkafka's own log lines go here (silent unless the application configures logging)
_client_log = logging.getLogger(__name__ + ".librdkafka")
_client_log.addHandler(logging.NullHandler())


class _LastError(logging.Handler):
    """Keeps the text of the last error the Kafka client logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text = record.getMessage()


def coordinates(topic: str, partition: int, offset: int) -> str:
    """The ``input`` of a bad message's result: ``kafka://TOPIC/PARTITION/OFFSET``."""
    return f"kafka://{topic}/{partition}/{offset}"


def parse_value(value: bytes | None) -> str:
    """The input that a message value names (see the module docstring).

    Raises
    ------
    BadMessage
        The value names no input; the message says why.
    """
    if not value:
        raise BadMessage(f"the message is empty; {VALUE_HELP}")
    try:
        text = value.decode("utf-8-sig").strip()  # a leading BOM is not part of it
    except UnicodeDecodeError:
        raise BadMessage(f"the value is not UTF-8 text; {VALUE_HELP}") from None
    if not text:
        raise BadMessage(f"the value is blank; {VALUE_HELP}")
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise BadMessage(f"the value starts with '{{' but is not JSON ({exc}); "
                             f"{VALUE_HELP}") from None
        path = obj.get("path") if isinstance(obj, dict) else None
        if not isinstance(path, str) or not path.strip():
            raise BadMessage(f'the JSON object has no "path" string; {VALUE_HELP}')
        text = path.strip()
    if "\n" in text or "\r" in text:
        raise BadMessage(f"the value holds several lines; {VALUE_HELP}")
    return text


def client() -> ModuleType:
    """The ``confluent_kafka`` module, or :class:`KafkaMissing` saying how to install it."""
    try:
        return importlib.import_module("confluent_kafka")
    except ImportError as exc:
        raise KafkaMissing("the Kafka input needs confluent-kafka: pip install "
                           f"'earmark[kafka]' ({exc})") from None


@dataclass(frozen=True)
class Message:
    """One message of the read: where it is, and the input it names or why it names none.

    ``input`` is the path or URL, or the coordinates (:func:`coordinates`) of a bad message,
    whose ``error`` is then the reason of its result.
    """

    partition: int
    offset: int
    input: str
    error: str | None = None


@dataclass
class _Partition:
    start: int  # first offset to read
    end: int  # end offset observed when the read started (exclusive)
    reached: int  # where the read stopped: end, unless it stalled
    messages: list[int] = field(default_factory=list)  # indices in TopicRead.messages
    next: int = 0  # first of messages not yet answered
    committed: int = -1  # last offset committed by this run


class TopicRead:
    """A bounded read of one topic; see the module docstring.

    Opening it observes the bounds (each partition's start and end offsets); :meth:`read`
    then reads the messages between them. Use :func:`read_topic` for both at once.

    Parameters
    ----------
    bootstrap : str
        ``HOST:PORT[,HOST:PORT...]`` of some brokers of the cluster.
    topic : str
    group : str, optional
        Consumer group whose committed offsets the read starts at, and where
        :meth:`commit` stores them. Without it the read starts at the beginning and
        nothing is committed.
    config : mapping, optional
        More librdkafka settings (``security.protocol``, ``sasl.*``, ``ssl.*``, ...). The
        settings this class relies on (offsets, commits) cannot be overridden.
    timeout_s : float
        Wait this long for the cluster's metadata, watermarks and committed offsets.

    Raises
    ------
    KafkaMissing
        confluent-kafka is not installed.
    KafkaInputError
        The cluster cannot be reached, or the topic does not exist.
    """

    def __init__(self, *, bootstrap: str, topic: str, group: str | None = None,
                 config: Mapping[str, Any] | None = None,
                 timeout_s: float = TIMEOUT_S) -> None:
        ck = client()
        self.ck = ck
        self.topic = topic
        self.group = group
        self.notes: list[str] = []  # what the user should know about the read (stderr)
        self.messages: list[Message] = []
        self.bad: dict[str, dict[str, Any]] = {}  # coordinates -> the error result
        self._by_input: dict[str, list[int]] = {}
        self._answered = bytearray()  # per message: 1 once its result is written
        self._given: Sequence[str] = ()
        self._sync: Callable[[], None] | None = None
        self._last_commit = 0.0
        self._open = True
        # the client's own log lines reach the module's logger, and the last error among
        # them is kept: a failed TLS or SASL handshake shows only there (a Logger made
        # directly, not by getLogger, is not kept for the process's lifetime)
        self._log = logging.Logger(_client_log.name)
        self._log.parent = _client_log
        self._last_error = _LastError()
        self._log.addHandler(self._last_error)
        try:
            self.consumer = ck.Consumer({
                **(config or {}),
                "bootstrap.servers": bootstrap,
                "group.id": group or NO_GROUP,
                **FIXED_SETTINGS,
                "logger": self._log,
            })
        except ck.KafkaException as exc:
            raise KafkaInputError(f"bad Kafka client settings ({_why(exc)}); check "
                                  "--kafka-bootstrap and --kafka-config") from None
        try:
            self.parts = self._bounds(bootstrap, timeout_s)
        except BaseException:
            self.consumer.close()
            raise

    def _bounds(self, bootstrap: str, timeout_s: float) -> dict[int, _Partition]:
        ck, topic = self.ck, self.topic
        try:
            md = self.consumer.list_topics(topic, timeout=timeout_s)
        except ck.KafkaException as exc:
            try:  # the client hands its queued log lines over when polled
                self.consumer.poll(0)
            except ck.KafkaException:
                pass
            said = self._last_error.text
            raise KafkaInputError(
                f"cannot reach Kafka at {bootstrap} ({_why(exc)}"
                + (f"; the client said: {said}" if said else "")
                + "); check --kafka-bootstrap, that the brokers are up and, for TLS or SASL, "
                "--kafka-config") from None
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            why = t.error.str() if t is not None and t.error is not None else "no partitions"
            raise KafkaInputError(f"no topic {topic!r} at {bootstrap} ({why}); check "
                                  "--kafka-topic") from None
        tps = [ck.TopicPartition(topic, p) for p in sorted(t.partitions)]
        try:
            marks = {tp.partition: self.consumer.get_watermark_offsets(
                tp, timeout=timeout_s, cached=False) for tp in tps}
            done = (self.consumer.committed(tps, timeout=timeout_s) if self.group else [])
        except ck.KafkaException as exc:
            raise KafkaInputError(f"cannot read the offsets of topic {topic!r} at "
                                  f"{bootstrap} ({_why(exc)}); check the brokers and the "
                                  "client's rights") from None
        committed = {tp.partition: tp.offset for tp in done if tp.offset >= 0}
        parts = {}
        for p, (low, high) in marks.items():
            start = committed.get(p, low)
            if start < low:
                self.notes.append(f"partition {p}: offsets {start} to {low - 1} were deleted "
                                  "(retention) before they were scanned; reading from "
                                  f"{low}")
                start = low
            elif start > high:
                self.notes.append(f"partition {p}: the group's offset {start} is past the "
                                  f"end ({high}); was the topic recreated? Reset the group's "
                                  "offsets to read it again")
                start = high
            parts[p] = _Partition(start=start, end=high, reached=start, committed=start)
        return parts

    @property
    def pending(self) -> int:
        """Offsets between the bounds: the most messages :meth:`read` can give."""
        return sum(p.end - p.start for p in self.parts.values())

    def read(self, *, stall_s: float = STALL_S) -> list[Message]:
        """Read the messages between the bounds, in offset order within each partition.

        A partition that gives nothing for ``stall_s`` seconds before its end offset (an
        open transaction holds it back) stops where it is, with a line in :attr:`notes`:
        the rest is for the next run.
        """
        ck, topic = self.ck, self.topic
        todo = {p for p, part in self.parts.items() if part.start < part.end}
        self.consumer.assign([ck.TopicPartition(topic, p, self.parts[p].start) for p in todo])
        last = time.monotonic()
        while todo:
            batch = self.consumer.consume(num_messages=1000, timeout=0.5)
            for m in batch:
                p, off, err = m.partition(), m.offset(), m.error()
                if err is not None and err.code() != ck.KafkaError._PARTITION_EOF:
                    # a lost connection recovers by itself (the stall timer bounds the wait);
                    # an error of the topic's own (no rights, partition gone) does not
                    if err.fatal() or (p in self.parts and not err.retriable()):
                        raise KafkaInputError(f"reading topic {topic!r} partition {p} failed "
                                              f"({err.str()}); check the topic and the "
                                              "client's rights")
                    log.warning("kafka: %s", err.str())
                    continue
                if p not in todo:
                    continue
                part = self.parts[p]
                if err is not None:  # the end of the partition, as it is now
                    part.reached = max(part.reached, off)
                elif off < part.end:
                    self._add(p, off, m.value())
                    part.reached = off + 1
                else:
                    part.reached = part.end
                last = time.monotonic()
                if part.reached >= part.end:
                    part.reached = part.end
                    todo.discard(p)
                    self.consumer.pause([ck.TopicPartition(topic, p)])
            if todo and time.monotonic() - last > stall_s:
                for p in sorted(todo):
                    part = self.parts[p]
                    self.notes.append(
                        f"partition {p}: nothing came for {stall_s:.0f} s at offset "
                        f"{part.reached}, before the end offset {part.end} (an open "
                        "transaction?); the rest is for the next run")
                break
        self.consumer.unassign()
        return self.messages

    def _add(self, partition: int, offset: int, value: bytes | None) -> None:
        i = len(self.messages)
        try:
            msg = Message(partition, offset, parse_value(value))
        except BadMessage as exc:
            msg = Message(partition, offset, coordinates(self.topic, partition, offset),
                          exc.reason)
            self.bad[msg.input] = ScanResult(input=msg.input, status="error",
                                             reason=msg.error, duration_ms=None
                                             ).model_dump(mode="json")
        self.messages.append(msg)
        self._answered.append(0)
        self.parts[partition].messages.append(i)
        self._by_input.setdefault(msg.input, []).append(i)

    @property
    def inputs(self) -> list[str]:
        """Each message's input, in the order read (bad messages: their coordinates)."""
        return [m.input for m in self.messages]

    def runner(self, inner: Runner, *, sync: Callable[[], None] | None = None) -> Runner:
        """A runner that answers this read's bad messages itself and gives the rest to
        ``inner``; tell :meth:`answered` each position once its result is written.

        ``sync`` is called before each commit (a results file's ``sync``), so that no offset
        is committed before the results below it are on disk.
        """
        self._sync = sync
        return _Answering(inner, self)

    def given(self, inputs: Sequence[str]) -> None:
        """The inputs a run scans (the position :meth:`answered` is told is in this list);
        messages whose input is not among them (answered before) count as answered."""
        self._given = inputs
        names = set(inputs)
        for s, idx in self._by_input.items():
            if s not in names:
                self._answer(idx)

    def answered(self, pos: int) -> None:
        """The result of ``inputs[pos]`` (of :meth:`given`) is written; commits the group's
        offsets when :data:`COMMIT_EVERY_S` passed since the last commit."""
        self._answer(self._by_input.get(self._given[pos], ()))
        if self.group and time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
            self.commit(quiet=True)

    def _answer(self, idx: Sequence[int]) -> None:
        for i in idx:
            self._answered[i] = 1

    def offsets(self) -> dict[int, int]:
        """Per partition, the offset a commit stores now: the first message not answered,
        else where the read stopped."""
        out = {}
        for p, part in self.parts.items():
            while (part.next < len(part.messages)
                   and self._answered[part.messages[part.next]]):
                part.next += 1
            out[p] = (self.messages[part.messages[part.next]].offset
                      if part.next < len(part.messages) else part.reached)
        return out

    def commit(self, *, quiet: bool = False) -> None:
        """Store :meth:`offsets` in the group (no-op without one, or with nothing new).

        Raises
        ------
        KafkaInputError
            The commit failed (with ``quiet``: logged, and tried again at the next one).
        """
        self._last_commit = time.monotonic()
        if not self.group:
            return
        new = {p: o for p, o in self.offsets().items() if o > self.parts[p].committed}
        if not new:
            return
        if self._sync is not None:
            self._sync()
        try:
            self.consumer.commit(offsets=[self.ck.TopicPartition(self.topic, p, o)
                                          for p, o in sorted(new.items())],
                                 asynchronous=False)
        except self.ck.KafkaException as exc:
            msg = (f"the offsets of group {self.group!r} on topic {self.topic!r} were not "
                   f"committed ({_why(exc)}); the results are written, and the next run "
                   "with the group scans these messages again")
            if quiet:
                log.warning("%s", msg)
                return
            raise KafkaInputError(msg) from None
        for p, o in new.items():
            self.parts[p].committed = o

    def close(self) -> None:
        """Close the client (nothing is committed here)."""
        if self._open:
            self._open = False
            self.consumer.close()

    def __enter__(self) -> TopicRead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Answering:
    """The runner of :meth:`TopicRead.runner`."""

    def __init__(self, inner: Runner, read: TopicRead) -> None:
        self.inner = inner
        self.read = read
        self.name = inner.name

    def scan(self, inputs: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        def inner(good: Sequence[str]) -> Iterator[tuple[int, dict[str, Any], Any]]:
            return ((j, r, None) for j, r in self.inner.scan(good))

        for i, res, _ in self._each(inputs, inner):
            yield i, res

    def observe(self, inputs: Sequence[str]) -> Iterator[tuple[int, dict[str, Any], Any]]:
        """As :meth:`scan`, with the inner runner's observations (``--record``); a bad
        message has none, so it is answered but not recorded: it names no upload."""
        yield from self._each(inputs, self.inner.observe)

    def _each(self, inputs: Sequence[str],
              run: Callable[[Sequence[str]], Iterator[tuple[int, dict[str, Any], Any]]]
              ) -> Iterator[tuple[int, dict[str, Any], Any]]:
        self.read.given(inputs)
        good: list[str] = []
        where: list[int] = []
        for i, s in enumerate(inputs):
            bad = self.read.bad.get(s)
            if bad is not None:
                yield i, bad, None
            else:
                good.append(s)
                where.append(i)
        if good:
            for j, res, obs in run(good):
                yield where[j], res, obs

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.read.close()


def read_topic(*, bootstrap: str, topic: str, group: str | None = None,
               config: Mapping[str, Any] | None = None, timeout_s: float = TIMEOUT_S,
               stall_s: float = STALL_S) -> TopicRead:
    """Open a :class:`TopicRead` and read it (see there and the module docstring)."""
    read = TopicRead(bootstrap=bootstrap, topic=topic, group=group, config=config,
                     timeout_s=timeout_s)
    try:
        read.read(stall_s=stall_s)
    except BaseException:
        read.close()
        raise
    return read


def _why(exc: Exception) -> str:
    """The text of a ``KafkaException`` (its ``args[0]`` is a ``KafkaError``)."""
    err: Any = exc.args[0] if exc.args else None
    return str(err.str()) if hasattr(err, "str") else str(exc)
