# SPDX-License-Identifier: Apache-2.0
"""Webhook delivery from the outbox (:class:`earmark.store.models.Delivery`).

Each delivery is a POST of ``{"event", "delivery_id", "data"}`` with the header
``X-Earmark-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>``.
A 2xx answer marks it delivered; anything else retries with exponential back-off (2 s,
4 s, … capped at an hour) up to :data:`MAX_ATTEMPTS`, then it is ``failed``. Delivery is
at-least-once: receivers de-duplicate on ``delivery_id``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading

import httpx
from sqlalchemy import select

from earmark.live.sources import safe_url
from earmark.store.db import Database
from earmark.store.models import Delivery, Webhook, utcnow

MAX_ATTEMPTS = 10
log = logging.getLogger("earmark.webhooks")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_due(db: Database, *, client: httpx.Client, limit: int = 50) -> int:
    """Try every delivery that is due; returns how many were attempted."""
    now = utcnow()
    with db.reader() as s:
        due = s.execute(select(Delivery, Webhook).join(Webhook, Webhook.id == Delivery.webhook_id)
                        .where(Delivery.status == "pending", Delivery.next_at <= now)
                        .order_by(Delivery.id).limit(limit)).all()
        work = [(d.id, d.event, d.payload, w.url, w.secret, d.attempts) for d, w in due]
    for did, event, payload, url, secret, attempts in work:
        body = json.dumps({"event": event, "delivery_id": did, "data": payload}).encode()
        error = None
        try:
            r = client.post(url, content=body, headers={
                "Content-Type": "application/json", "X-Earmark-Event": event,
                "X-Earmark-Signature": sign(secret, body)})
            if not 200 <= r.status_code < 300:
                error = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}".replace(url, safe_url(url))
        with db.session() as s:
            d = s.get(Delivery, did)
            if d is None or d.status != "pending":
                continue
            d.attempts = attempts + 1
            if error is None:
                d.status, d.last_error = "sent", None
            else:
                d.last_error = error
                if d.attempts >= MAX_ATTEMPTS:
                    d.status = "failed"
                else:
                    d.next_at = utcnow() + dt.timedelta(seconds=min(3600, 2 ** d.attempts))
        if error:
            log.warning("webhook delivery %s to %s failed: %s", did, safe_url(url), error)
    return len(work)


def run_deliverer(db: Database, stop: threading.Event, *, every_s: float = 1.0) -> None:
    """Deliver until ``stop`` is set."""
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        while not stop.is_set():
            try:
                busy = deliver_due(db, client=client)
            except Exception:
                log.exception("webhook deliverer")
                busy = 0
            if not busy:
                stop.wait(every_s)
