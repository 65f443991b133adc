"""The delivery loop beside the pipeline: outbox -> destinations, and escalation.

The pipeline's notify sink only *queues* notifications in the outbox (a SQLite file), so a
slow or dead destination never stalls the dataflow. :class:`Dispatcher` runs in a thread of
the pipeline's process (or on its own: ``floorsight notify``) and, every ``interval``:

1. **escalates**: an alert whose ``opened`` notification was queued more than
   ``routing.escalation.after_s`` ago and that is still open (nobody acknowledged or resolved
   it, and its condition has not cleared) is sent again as event ``escalated`` to the
   escalation roles (once; key ``<alert_id>/escalated``) and recorded in the alert's audit
   trail (``alert_events``, action ``escalated``);
2. **delivers** what is due, with the outbox's retry, backoff and parking
   (``floorsight.alerts.outbox``): each destination in a worker of a small thread pool, and
   a destination whose previous round is still running (a slow receiver, up to its
   ``deadline_s``) is left to finish while the others go on; a destination's failure never
   ends the loop.

Alert status comes from the DuckDB ``alerts`` table, which the dashboard updates when people
acknowledge or resolve.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.alerts.destinations import senders
from floorsight.alerts.lifecycle import escalated
from floorsight.alerts.notify import Notification, notifications
from floorsight.alerts.outbox import DeliveryReport, Outbox, Sender
from floorsight.alerts.routing import Routing
from floorsight.records import AlertStatus
from floorsight.storage import Database

log = logging.getLogger("floorsight.alerts")


def enqueue(outbox: Outbox, items: list[Notification]) -> int:
    """Queue notifications; returns how many were new (repeats are dropped by key)."""
    return sum(outbox.enqueue(n.destination, n.key, n.payload) for n in items)


@dataclass
class Dispatcher:
    outbox: Outbox
    routing: Routing
    db_path: Path | None = None
    senders: dict[str, Sender] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = {
            name: d for name, d in self.routing.destinations.items() if name not in self.senders
        }
        if missing:
            self.senders |= senders(self.routing.model_copy(update={"destinations": missing}))
        if "delivery" in self.routing.model_fields_set:  # the routing file's [delivery] wins
            d = self.routing.delivery
            self.outbox.max_delay = timedelta(seconds=d.max_delay_s)
            self.outbox.max_age = timedelta(seconds=d.max_age_s)
            self.outbox.batch, self.outbox.workers = d.batch, d.workers

    def queue(self, alerts: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> int:
        return enqueue(self.outbox, notifications(alerts, self.routing, tables))

    def escalate(self, now: datetime | None = None) -> int:
        """Queue ``escalated`` notifications for alerts left open too long; returns how many."""
        esc = self.routing.escalation
        if not esc.roles or self.db_path is None:
            return 0
        now = now or datetime.now(tz=UTC)
        due = [
            p
            for p in self.outbox.queued_before("/opened", now - timedelta(seconds=esc.after_s))
            if not self.outbox.has(f"{p['alert_id']}/escalated")
        ]
        if not due:
            return 0
        open_ids = self._still_open([p["alert_id"] for p in due])
        destinations = self.routing.destinations_for(esc.roles)
        queued = 0
        for p in due:
            if p["alert_id"] not in open_ids:
                continue
            key = f"{p['alert_id']}/escalated"
            payload = {
                **p,
                "idempotency_key": key,
                "event": "escalated",
                "roles": esc.roles,
                "escalated_after_s": esc.after_s,
            }
            new = sum(self.outbox.enqueue(d, key, payload, now) for d in destinations)
            if new:
                try:
                    escalated(self.db_path, p["alert_id"], esc.roles, esc.after_s)
                except ValueError:
                    log.warning("escalated %s, but could not record it", p["alert_id"])
            queued += new
        return queued

    def _still_open(self, alert_ids: list[str]) -> set[str]:
        db = Database(self.db_path)
        if not db.exists():
            return set()
        # a read-write connection: the pipeline writes the same file from this process, and
        # DuckDB refuses a read-only connection beside a read-write one in one process
        with db.write() as con:
            rows = con.execute(
                "SELECT alert_id FROM alerts WHERE alert_id IN (SELECT unnest(?))"
                " AND status = ? AND cleared_at IS NULL",
                [alert_ids, str(AlertStatus.OPEN)],
            ).fetchall()
        return {r[0] for r in rows}

    def step(self, now: datetime | None = None, wait: bool = True) -> DeliveryReport:
        """Escalate, then one delivery round (``wait=False``: without waiting for slow
        destinations, which the next rounds leave running until they finish)."""
        self.escalate(now)
        return self.outbox.deliver(self.senders, now, wait=wait)

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Deliver until ``stop`` is set, then make one last attempt."""
        parked = 0
        while not stop.wait(interval_s):
            try:
                report = self.step(wait=False)
            except Exception:  # a broken destination must not end delivery to the others
                log.exception("alert delivery step failed; retrying")
                continue
            if report.parked > parked:
                log.warning(
                    "%d alert notifications parked as undeliverable (see `floorsight notify"
                    " parked`, re-send with `floorsight notify resend`)",
                    report.parked,
                )
            parked = report.parked
        try:
            self.step()
        finally:
            self.outbox.close()

    def start(self, interval_s: float = 1.0) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(
            target=self.run, args=(stop, interval_s), name="alert-dispatcher", daemon=True
        )
        thread.start()
        return thread, stop
