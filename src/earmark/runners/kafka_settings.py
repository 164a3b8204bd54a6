# SPDX-License-Identifier: Apache-2.0
"""The Kafka client's own settings (TLS, SASL, timeouts) from a client properties file:
``earmark scan --kafka-topic ... --kafka-config FILE`` (see :mod:`earmark.runners.kafka`)."""

from __future__ import annotations

from pathlib import Path

from earmark.errors import KafkaInputError
from earmark.runners.kafka import OWNED


def load_client_config(path: str | Path) -> dict[str, str]:
    """The librdkafka settings of a client properties file (``key=value`` per line).

    Blank lines and lines starting with ``#`` or ``!`` are skipped; blanks around keys and
    values are removed (a value may itself hold ``=``).

    Raises
    ------
    KafkaInputError
        The file cannot be read, a line is not ``key=value``, a key comes twice, or a key
        is one the read sets itself (:data:`earmark.runners.kafka.OWNED`).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KafkaInputError(f"cannot read the Kafka client settings {str(path)!r} "
                              f"({exc.__class__.__name__}: {exc}); check --kafka-config"
                              ) from None
    out: dict[str, str] = {}
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        where = f"{str(path)!r} line {no}"
        if not eq or not key:
            raise KafkaInputError(f"{where} is not key=value; a client properties file holds "
                                  "lines such as security.protocol=SASL_SSL")
        if key in out:
            raise KafkaInputError(f"{where} sets {key} a second time")
        if key in OWNED:
            raise KafkaInputError(f"{where} sets {key}, which the read sets itself: use "
                                  "--kafka-bootstrap and --kafka-group instead")
        out[key] = value
    return out
