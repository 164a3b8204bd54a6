# SPDX-License-Identifier: Apache-2.0
"""The error hierarchy: every failure users see is an :class:`EarmarkError` with a ``code``.

The CLI prints ``error.reason`` and the JSON carries ``status: "error"`` with the same reason;
a later HTTP layer maps ``code`` to a problem response in one place.
"""

from __future__ import annotations


class EarmarkError(Exception):
    """Base class of earmark's errors. ``code`` is a stable, machine-readable name."""

    code = "error"

    @property
    def reason(self) -> str:
        return f"{self.code}: {self}"


class InputError(EarmarkError):
    """The input audio cannot be used. Subclasses say why."""

    code = "bad_input"


class FileMissing(InputError):
    code = "file_missing"


class UnsupportedFormat(InputError):
    code = "unsupported_format"


class CorruptInput(InputError):
    code = "corrupt_input"


class EmptyInput(InputError):
    code = "empty_input"


class BadMessage(InputError):
    """A Kafka message that names no input (not UTF-8, empty, JSON without ``path``)."""

    code = "bad_message"


class SilentInput(InputError):
    code = "silent_input"


class InputTooLong(InputError):
    code = "input_too_long"


class CatalogError(EarmarkError):
    """The catalog (database + index) refused an operation."""

    code = "catalog_error"


class UnknownReference(CatalogError):
    code = "unknown_reference"


class ManifestError(CatalogError):
    code = "bad_manifest"


class IndexCorrupt(CatalogError):
    code = "index_corrupt"


class UnknownDetector(EarmarkError):
    """No detector or model of that name."""

    code = "unknown_detector"


class ClusterError(EarmarkError):
    """Running on a Ray cluster failed (see :mod:`earmark.index.ray_shards`)."""

    code = "cluster_error"


class RayMissing(ClusterError):
    """A Ray feature was asked for and Ray is not installed (``pip install 'earmark[ray]'``)."""

    code = "ray_missing"


class ShardUnavailable(ClusterError):
    """No replica of an index shard answered within the retry time."""

    code = "shard_unavailable"


class KafkaInputError(EarmarkError):
    """Reading a Kafka topic as scan inputs failed (see :mod:`earmark.runners.kafka`)."""

    code = "kafka_error"


class KafkaMissing(KafkaInputError):
    """A Kafka input was asked for and confluent-kafka is not installed
    (``pip install 'earmark[kafka]'``)."""

    code = "kafka_missing"
