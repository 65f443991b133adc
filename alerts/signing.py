"""Webhook signatures: HMAC-SHA256 over a timestamp and the body, as GitHub and Stripe sign.

Every webhook request floorsight sends to a destination with a secret carries:

- ``X-Floorsight-Timestamp``: the sending time, in whole Unix seconds;
- ``X-Floorsight-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed with the shared
  secret, of ``"<timestamp>.<body>"`` (the body's exact bytes);
- ``X-Floorsight-Delivery``: an id of the notification at that receiver, the same on every
  retry, for the receiver to drop repeats (with ``Idempotency-Key``, the alert's own key).

A receiver recomputes the HMAC over the bytes it received, compares in constant time, and
refuses a timestamp outside its replay window (:func:`verify_signature`; ``docs/alerts.md``
shows a receiver). The module needs only the standard library, so a receiver can copy it.

>>> body = b'{"alert_id": "M01:anomaly:1"}'
>>> header = signature("s3cret", 1767225600, body)
>>> header[:7]
'sha256='
>>> verify_signature("s3cret", "1767225600", body, header, now=1767225630)
True
>>> verify_signature("s3cret", "1767225600", body + b" ", header, now=1767225630)
False
>>> verify_signature("s3cret", "1767225600", body, header, now=1767225600 + 301)
False
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime

TIMESTAMP_HEADER = "X-Floorsight-Timestamp"
SIGNATURE_HEADER = "X-Floorsight-Signature"
DELIVERY_HEADER = "X-Floorsight-Delivery"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: datetime) -> dict[str, str]:
    """The timestamp and signature headers of one request sent at ``now``."""
    timestamp = int(now.timestamp())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def delivery_id(url: str, key: str) -> str:
    """The same id for every attempt to deliver notification ``key`` to ``url``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{url}#{key}"))


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    header: str | None,
    now: datetime | float,
    tolerance: float = 300,
) -> bool:
    """True when ``header`` signs ``body`` at ``timestamp`` with ``secret``, and ``timestamp``
    is within ``tolerance`` seconds of ``now`` (the replay window).

    ``timestamp`` and ``header`` are the request's ``X-Floorsight-Timestamp`` and
    ``X-Floorsight-Signature``; ``body`` the bytes as received (before any JSON parsing).
    """
    if not header:
        return False
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(current - sent) > tolerance:
        return False
    # as bytes: compare_digest refuses str with non-ASCII characters (a forged header may have)
    given = header.strip().encode("utf-8", "replace")
    return hmac.compare_digest(signature(secret, sent, body).encode(), given)
