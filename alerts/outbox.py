"""An outbox for alert delivery: at-least-once, retried with backoff, parked, survives restarts.

Alerts to send are written to a small SQLite file (one row per destination and idempotency
key) before anything is sent; :meth:`Outbox.deliver` sends what is due, marks what a
destination accepted, and schedules a retry for what failed. A restarted process opens the
same file and carries on: nothing is lost. A receiver may see an alert twice (a crash between
sending and marking); each request carries the alert's idempotency key (HTTP header
``Idempotency-Key``) so it can drop repeats.

How a dead or slow destination is handled (what Kafka Connect's dead-letter queues and the
webhook senders of GitHub and Stripe do):

- **backoff**: a failed notification, and its destination, wait a random time between 0 and
  ``min(max_delay, base_delay * 2**failures)`` ("full jitter"), computed in float seconds with
  the exponent bounded, so no number of failures overflows;
- **one probe per round** for a failing destination: after a failure its other notifications
  are not tried in that round, and the destination itself waits its backoff before the next
  try, so a dead receiver costs one request per backoff, not one per queued alert;
- **a budget per destination and round** (``batch``), and destinations are delivered
  concurrently (a bounded thread pool), so a destination with thousands of due notifications,
  or one that is slow, never holds back the others;
- **parking**: a notification still undelivered ``max_age`` after it was queued, while it or
  its destination fails, is *parked*: kept, counted (:meth:`Outbox.counts`), listed
  (:meth:`Outbox.parked`) and re-sent on request (:meth:`Outbox.resend`,
  :meth:`Outbox.resend_all`; ``floorsight notify parked`` / ``floorsight notify resend``);
  never dropped.

The file is created readable by its owner only (mode 0600; SQLite gives its ``-wal`` and
``-shm`` files the same mode), in a folder made private when the outbox creates it: the
payloads carry the plant's alerts and ERP context.

SQLite rather than the DuckDB file: the outbox is written by the alerting step and by the
delivery loop, and must not contend with the pipeline's single DuckDB writer.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from floorsight.config import private_dir
from floorsight.metrics import METRICS
from floorsight.storage import is_partitioned, partition_files

#: A sender returns normally when the destination accepted the payload, raises otherwise.
Sender = Callable[[str, dict], None]

_SCHEMA = (
    """
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
    """,
    # per destination: consecutive failures and when it may be tried again
    """
    CREATE TABLE IF NOT EXISTS outbox_destinations (
        destination TEXT PRIMARY KEY,
        failures INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT
    )
    """,
)
#: columns added since the first outbox files (added to an older file when it is opened)
_ADDED_COLUMNS = {"queued_at": "TEXT", "parked_at": "TEXT"}
_INDEX = (
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (destination, next_attempt_at)"
    " WHERE delivered_at IS NULL AND parked_at IS NULL"
)


def outbox_beside(db: Path) -> Path:
    """The outbox file of the pipeline writing the DuckDB file ``db`` (``<db>.outbox.sqlite``),
    for readers below the runner (the dashboard) to find it."""
    db = Path(db)
    return db.with_name(db.stem + ".outbox.sqlite")


def outboxes_of(db: Path) -> dict[Path, Path]:
    """Each database file of ``db`` with the outbox beside it: the one file, or each partition
    file of a partitioned store (every process of a cluster queues and delivers its own
    machines' alerts; the files present here are this host's processes')."""
    files = partition_files(db) if is_partitioned(db) else [Path(db)]
    return {f: outbox_beside(f) for f in files}


def _ts(t: datetime) -> str:
    # one fixed format, so that SQLite compares the text in time order
    return t.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    failed: int
    pending: int
    parked: int = 0


@dataclass(frozen=True)
class ParkedNotification:
    """A notification given up on automatically: kept until someone re-sends it."""

    destination: str
    key: str
    attempts: int
    created_at: datetime
    parked_at: datetime
    last_error: str | None
    payload: dict


class Outbox:
    """The outbox file at ``path`` and the retry policy of its delivery.

    ``base_delay`` and ``max_delay`` shape the backoff (full jitter, capped), ``max_age`` is
    how long a failing notification is retried before it is parked, ``batch`` how many
    notifications of one destination one round sends at most, ``workers`` how many
    destinations are delivered at once; ``seed`` makes the jitter repeatable.
    """

    def __init__(
        self,
        path: Path,
        base_delay: timedelta = timedelta(seconds=1),
        max_delay: timedelta = timedelta(minutes=15),
        max_age: timedelta = timedelta(hours=24),
        batch: int = 100,
        workers: int = 4,
        seed: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.base_delay, self.max_delay, self.max_age = base_delay, max_delay, max_age
        self.batch, self.workers = batch, workers
        self._rng = random.Random(seed)
        self._local = threading.local()
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: dict[str, Future] = {}
        if not self.path.parent.exists():
            private_dir(self.path.parent)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        for name in (self.path.name, self.path.name + "-wal", self.path.name + "-shm"):
            if (self.path.parent / name).exists():  # an older file may have been readable
                (self.path.parent / name).chmod(0o600)
        con = self._connect()
        with con:
            for ddl in _SCHEMA:
                con.execute(ddl)
            have = {row[1] for row in con.execute("PRAGMA table_info(outbox)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    try:
                        con.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as e:  # another worker added it first
                        if "duplicate column" not in str(e):
                            raise
            con.execute("UPDATE outbox SET queued_at = created_at WHERE queued_at IS NULL")
            con.execute(_INDEX)

    def _connect(self) -> sqlite3.Connection:
        # one connection per thread (sqlite3 connections stay in the thread that made them)
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30)
            con.execute("PRAGMA journal_mode=WAL")
            self._local.con = con
        return con

    def backoff(self, failures: int) -> timedelta:
        """A random wait after ``failures`` consecutive failures: full jitter, capped."""
        cap = self.max_delay.total_seconds()
        ceiling = min(cap, self.base_delay.total_seconds() * 2.0 ** min(failures, 64))
        return timedelta(seconds=self._rng.uniform(0.0, ceiling))

    def enqueue(
        self, destination: str, key: str, payload: dict, now: datetime | None = None
    ) -> bool:
        """Queue ``payload`` for ``destination`` once per ``key``; False if it was queued before."""
        at = _ts(now or datetime.now(tz=UTC))
        con = self._connect()
        with con:
            cur = con.execute(
                "INSERT OR IGNORE INTO outbox (destination, key, payload, created_at,"
                " next_attempt_at, queued_at) VALUES (?, ?, ?, ?, ?, ?)",
                (destination, key, json.dumps(payload, default=str), at, at, at),
            )
            return cur.rowcount == 1

    def deliver(
        self, senders: dict[str, Sender], now: datetime | None = None, wait: bool = True
    ) -> DeliveryReport:
        """One round: park what is too old, then send what is due, destinations concurrently.

        A destination whose previous round is still running (a slow receiver, up to its
        deadline) is left to it; ``wait=False`` returns without waiting for this round's
        destinations (the delivery loop), and the report then counts the rounds that have
        finished since the last call. Never raises for a destination's failure: it is
        recorded, backed off and retried.
        """
        now = now or datetime.now(tz=UTC)
        self.park_expired(now)
        delivered, failed = self._finished()
        started = []
        for destination in self.due_destinations(now):
            running = self._inflight.get(destination)
            if running is not None and not running.done():
                continue
            started.append(
                self._pool().submit(self.deliver_to, destination, senders.get(destination), now)
            )
            self._inflight[destination] = started[-1]
        if wait:
            futures.wait(started)
        ok, bad = self._finished()
        counts = self.totals()
        return DeliveryReport(delivered + ok, failed + bad, counts["pending"], counts["parked"])

    def _finished(self) -> tuple[int, int]:
        """(delivered, failed) of the destination rounds that have finished, collected once."""
        delivered = failed = 0
        for destination, future in list(self._inflight.items()):
            if future.done():
                del self._inflight[destination]
                ok, bad = future.result()
                delivered, failed = delivered + ok, failed + bad
        return delivered, failed

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="alert-delivery"
            )
        return self._executor

    def close(self) -> None:
        """Wait for the deliveries in flight and stop the delivery threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def due_destinations(self, now: datetime) -> list[str]:
        """Destinations with due notifications that are not waiting out a backoff."""
        at = _ts(now)
        rows = self._connect().execute(
            "SELECT DISTINCT o.destination FROM outbox o LEFT JOIN outbox_destinations d"
            " ON d.destination = o.destination WHERE o.delivered_at IS NULL"
            " AND o.parked_at IS NULL AND o.next_attempt_at <= ?"
            " AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?) ORDER BY 1",
            (at, at),
        )
        return [r[0] for r in rows]

    def deliver_to(self, destination: str, send: Sender | None, now: datetime) -> tuple[int, int]:
        """Send up to ``batch`` due notifications of one destination, oldest first, stopping
        at its first failure; returns (delivered, failed)."""
        at = _ts(now)
        con = self._connect()
        due = con.execute(
            "SELECT key, payload, attempts, queued_at FROM outbox WHERE destination = ?"
            " AND delivered_at IS NULL AND parked_at IS NULL AND next_attempt_at <= ?"
            " ORDER BY created_at, key LIMIT ?",
            (destination, at, self.batch),
        ).fetchall()
        delivered = 0
        for key, payload, attempts, queued_at in due:
            try:
                if send is None:
                    raise LookupError(f"no sender for destination {destination!r}")
                send(key, json.loads(payload))
            except Exception as e:  # any failure means: retry later, or park
                self._failed(destination, key, attempts, queued_at, now, f"{type(e).__name__}: {e}")
                METRICS.notified(destination, delivered, 1)
                return delivered, 1
            with con:
                con.execute(
                    "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1"
                    " WHERE destination = ? AND key = ?",
                    (at, destination, key),
                )
                con.execute("DELETE FROM outbox_destinations WHERE destination = ?", (destination,))
            delivered += 1
        METRICS.notified(destination, delivered, 0)
        return delivered, 0

    def _failed(
        self,
        destination: str,
        key: str,
        attempts: int,
        queued_at: str,
        now: datetime,
        error: str,
    ) -> None:
        con = self._connect()
        with con:
            row = con.execute(
                "SELECT failures FROM outbox_destinations WHERE destination = ?", (destination,)
            ).fetchone()
            failures = (row[0] if row else 0) + 1
            con.execute(
                "INSERT INTO outbox_destinations (destination, failures, next_attempt_at,"
                " last_error) VALUES (?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE SET"
                " failures = excluded.failures, next_attempt_at = excluded.next_attempt_at,"
                " last_error = excluded.last_error",
                (destination, failures, _ts(now + self.backoff(failures - 1)), error),
            )
            parked = _ts(now) if queued_at <= _ts(now - self.max_age) else None
            con.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?,"
                " last_error = ?, parked_at = ? WHERE destination = ? AND key = ?",
                (_ts(now + self.backoff(attempts)), error, parked, destination, key),
            )

    def park_expired(self, now: datetime) -> int:
        """Park what has been undeliverable for ``max_age``: notifications queued that long
        ago whose own last attempt failed, or whose destination is failing."""
        at, cutoff = _ts(now), _ts(now - self.max_age)
        con = self._connect()
        with con:
            return con.execute(
                "UPDATE outbox SET parked_at = ? WHERE delivered_at IS NULL AND parked_at IS NULL"
                " AND queued_at <= ? AND (attempts > 0 OR destination IN"
                " (SELECT destination FROM outbox_destinations WHERE failures > 0))",
                (at, cutoff),
            ).rowcount

    def remove_delivered(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Delete the notifications delivered more than ``older_than`` ago (retention: the
        alerts' ``--retain-days``); pending and parked ones are kept whatever their age.
        Returns how many were deleted. A replay after recovery re-queues only alerts of the
        last seconds, delivered far later than this cut-off, so none is sent twice."""
        cutoff = _ts((now or datetime.now(tz=UTC)) - older_than)
        con = self._connect()
        with con:
            return con.execute(
                "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (cutoff,),
            ).rowcount

    def parked(self, destination: str | None = None) -> list[ParkedNotification]:
        """Parked notifications (of one destination, or all), oldest first."""
        rows = (
            self._connect()
            .execute(
                "SELECT destination, key, attempts, created_at, parked_at, last_error, payload"
                " FROM outbox WHERE parked_at IS NOT NULL AND delivered_at IS NULL"
                " AND (? IS NULL OR destination = ?) ORDER BY created_at, destination, key",
                (destination, destination),
            )
            .fetchall()
        )
        return [
            ParkedNotification(
                d,
                k,
                n,
                datetime.fromisoformat(c),
                datetime.fromisoformat(p),
                e,
                json.loads(body),
            )
            for d, k, n, c, p, e, body in rows
        ]

    def resend(self, key: str, destination: str | None = None, now: datetime | None = None) -> int:
        """Queue a parked notification again (for one destination, or every destination that
        has it parked): due at once, its age counted from now. Returns how many."""
        return self._unpark(
            "key = ? AND (? IS NULL OR destination = ?)", (key, destination, destination), now
        )

    def resend_all(self, destination: str | None = None, now: datetime | None = None) -> int:
        """Queue every parked notification (of one destination, or all) again."""
        return self._unpark("(? IS NULL OR destination = ?)", (destination, destination), now)

    def _unpark(self, where: str, params: tuple, now: datetime | None) -> int:
        at = _ts(now or datetime.now(tz=UTC))
        con = self._connect()
        with con:
            chosen = f"parked_at IS NOT NULL AND delivered_at IS NULL AND {where}"
            destinations = [
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT destination FROM outbox WHERE {chosen}", params
                )
            ]
            n = con.execute(
                "UPDATE outbox SET parked_at = NULL, attempts = 0, next_attempt_at = ?,"
                f" queued_at = ? WHERE {chosen}",
                (at, at, *params),
            ).rowcount
            # a person asked for it: try the destination now, not after its backoff
            con.executemany(
                "UPDATE outbox_destinations SET next_attempt_at = ? WHERE destination = ?",
                [(at, d) for d in destinations],
            )
        return n

    def pending(self) -> int:
        """Notifications still to deliver (not delivered, not parked)."""
        return self.totals()["pending"]

    def totals(self) -> dict[str, int]:
        row = (
            self._connect()
            .execute(
                "SELECT count(delivered_at), count(*) FILTER (WHERE delivered_at IS NULL"
                " AND parked_at IS NULL), count(*) FILTER (WHERE delivered_at IS NULL"
                " AND parked_at IS NOT NULL) FROM outbox"
            )
            .fetchone()
        )
        return {"delivered": row[0], "pending": row[1], "parked": row[2]}

    def has(self, key: str) -> bool:
        """True when some destination has ``key`` queued (delivered or not)."""
        return (
            self._connect().execute("SELECT 1 FROM outbox WHERE key = ? LIMIT 1", (key,)).fetchone()
            is not None
        )

    def queued_before(self, suffix: str, before: datetime) -> list[dict]:
        """Payloads (one per key) whose key ends with ``suffix``, queued before ``before``."""
        rows = (
            self._connect()
            .execute(
                "SELECT key, min(payload) FROM outbox WHERE key LIKE ? AND created_at < ?"
                " GROUP BY key ORDER BY key",
                ("%" + suffix, _ts(before)),
            )
            .fetchall()
        )
        return [json.loads(payload) for _, payload in rows]

    def failing(self) -> dict[str, dict]:
        """Destinations whose last attempt failed: consecutive failures, the last error and
        when they are tried next."""
        rows = self._connect().execute(
            "SELECT destination, failures, last_error, next_attempt_at FROM outbox_destinations"
            " WHERE failures > 0 ORDER BY 1"
        )
        return {
            d: {"failures": n, "last_error": e, "next_attempt_at": datetime.fromisoformat(t)}
            for d, n, e, t in rows
        }

    def counts(self) -> dict[str, dict[str, int]]:
        """Per destination: notifications delivered, pending and parked."""
        rows = (
            self._connect()
            .execute(
                "SELECT destination, count(delivered_at), count(*) FILTER (WHERE delivered_at"
                " IS NULL AND parked_at IS NULL), count(*) FILTER (WHERE delivered_at IS NULL"
                " AND parked_at IS NOT NULL) FROM outbox GROUP BY destination ORDER BY 1"
            )
            .fetchall()
        )
        return {d: {"delivered": ok, "pending": w, "parked": p} for d, ok, w, p in rows}
