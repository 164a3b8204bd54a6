# SPDX-License-Identifier: Apache-2.0
"""Times in UTC: stored without a zone, written as RFC 3339 with ``Z``.

The service tables store naive UTC datetimes (:func:`earmark.store.models.utcnow`); every
model that leaves the service (API responses, CLI JSON, the decision stored with a scan)
types its times as :data:`UtcDatetime`, so JSON always says which zone a time is in.

>>> import datetime as dt
>>> rfc3339(dt.datetime(2026, 11, 25, 10, 0))
'2026-11-25T10:00:00Z'
>>> rfc3339(dt.datetime(2026, 11, 25, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))))
'2026-11-25T10:00:00Z'
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer, WithJsonSchema

__all__ = ["UtcDatetime", "naive_utc", "rfc3339"]


def naive_utc(t: dt.datetime) -> dt.datetime:
    """``t`` in UTC without tzinfo (a naive ``t`` is taken to be UTC already)."""
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def rfc3339(t: dt.datetime, timespec: str = "auto") -> str:
    """``t`` as RFC 3339 in UTC with ``Z`` (a naive ``t`` is taken to be UTC).

    Parameters
    ----------
    t : datetime
        The time; naive means UTC (the form the service tables store).
    timespec : str
        As :meth:`datetime.datetime.isoformat` (``auto``: microseconds only when nonzero).

    Returns
    -------
    str
        e.g. ``2026-11-25T10:00:00Z``.
    """
    return naive_utc(t).isoformat(timespec=timespec) + "Z"


#: A UTC datetime: validated to naive UTC (an aware value is converted), serialised to JSON
#: as RFC 3339 with ``Z``; Python-mode dumps keep the datetime.
UtcDatetime = Annotated[
    dt.datetime,
    AfterValidator(naive_utc),
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time",
                    "description": "RFC 3339, UTC (`Z`)"}),
]
