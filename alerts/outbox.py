"""An outbox for alert delivery: at-least-once, retried with backoff, survives restarts.

Alerts to send are written to a small SQLite file (one row per destination and idempotency
key) before anything is sent; :meth:`Outbox.deliver` sends what is due, marks what a
destination accepted, and schedules a retry with exponential backoff for what failed. A
restarted process opens the same file and carries on: nothing is lost. A receiver may see an
alert twice (a crash between sending and marking); each request carries the alert's
idempotency key (HTTP header ``Idempotency-Key``) so it can drop repeats.

SQLite rather than the DuckDB file: the outbox is written by the alerting step and by the
delivery loop, and must not contend with the pipeline's single DuckDB writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

#: A sender returns normally when the destination accepted the payload, raises otherwise.
Sender = Callable[[str, dict], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    delivered_at TEXT,
    PRIMARY KEY (destination, key)
)
"""


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    failed: int
    pending: int


class Outbox:
    def __init__(
        self,
        path: Path,
        base_delay: timedelta = timedelta(seconds=1),
        max_delay: timedelta = timedelta(minutes=5),
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.base_delay, self.max_delay = base_delay, max_delay
        with self._connect() as con:
            con.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def enqueue(
        self, destination: str, key: str, payload: dict, now: datetime | None = None
    ) -> bool:
        """Queue ``payload`` for ``destination`` once per ``key``; False if it was queued before."""
        now = now or datetime.now(tz=UTC)
        with self._connect() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO outbox (destination, key, payload, created_at,"
                " next_attempt_at) VALUES (?, ?, ?, ?, ?)",
                (
                    destination,
                    key,
                    json.dumps(payload, default=str),
                    now.isoformat(),
                    now.isoformat(),
                ),
            )
            return cur.rowcount == 1

    def deliver(self, senders: dict[str, Sender], now: datetime | None = None) -> DeliveryReport:
        """Send every due item to its destination's sender; returns what happened."""
        now = now or datetime.now(tz=UTC)
        with self._connect() as con:
            due = con.execute(
                "SELECT destination, key, payload, attempts FROM outbox WHERE delivered_at IS NULL"
                " AND next_attempt_at <= ? ORDER BY created_at, key",
                (now.isoformat(),),
            ).fetchall()
        delivered = failed = 0
        for destination, key, payload, attempts in due:
            send = senders.get(destination)
            try:
                if send is None:
                    raise LookupError(f"no sender for destination {destination!r}")
                send(key, json.loads(payload))
            except Exception as e:  # any failure means: retry later
                delay = min(self.base_delay * 2**attempts, self.max_delay)
                with self._connect() as con:
                    con.execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?,"
                        " last_error = ? WHERE destination = ? AND key = ?",
                        ((now + delay).isoformat(), f"{type(e).__name__}: {e}", destination, key),
                    )
                failed += 1
                continue
            with self._connect() as con:
                con.execute(
                    "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1"
                    " WHERE destination = ? AND key = ?",
                    (now.isoformat(), destination, key),
                )
            delivered += 1
        return DeliveryReport(delivered, failed, self.pending())

    def pending(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[
                0
            ]

    def has(self, key: str) -> bool:
        """True when some destination has ``key`` queued (delivered or not)."""
        with self._connect() as con:
            return (
                con.execute("SELECT 1 FROM outbox WHERE key = ? LIMIT 1", (key,)).fetchone()
                is not None
            )

    def queued_before(self, suffix: str, before: datetime) -> list[dict]:
        """Payloads (one per key) whose key ends with ``suffix``, queued before ``before``."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT key, min(payload) FROM outbox WHERE key LIKE ? AND created_at < ?"
                " GROUP BY key ORDER BY key",
                ("%" + suffix, before.isoformat()),
            ).fetchall()
        return [json.loads(payload) for _, payload in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per destination: notifications delivered and pending."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT destination, count(delivered_at), count(*) - count(delivered_at)"
                " FROM outbox GROUP BY destination ORDER BY destination"
            ).fetchall()
        return {d: {"delivered": ok, "pending": waiting} for d, ok, waiting in rows}
