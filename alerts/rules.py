"""Alert rules: turn a machine's stream of window scores into deduplicated alerts.

One open alert per machine and cause. An alert opens after ``open_after`` consecutive anomalous
windows (so one stray window raises nothing), is updated while the anomaly lasts, and clears
after ``clear_after`` consecutive normal windows (hysteresis). Its id is derived from machine,
cause and the first anomalous window, so replaying the same scores after a restart rewrites the
same alert instead of adding one.

**Flap suppression**: a fault that goes quiet for a few windows and comes back (a spiking or
dropping sensor, an intermittent upset) would clear and raise a new alert each time. Within
``hold`` (event time) of a clear, the cause flagging again (``open_after`` windows) reopens the
*same* alert instead: same ``alert_id``, ``cleared_at`` back to None, its ``windows`` go on
counting and ``last_seen`` moves. ``hold = 0`` raises a new alert at every reopen.

**Severity**: a score row may carry ``severity`` (``info``, ``warning``, ``critical``: a
model's own verdict, e.g. an SPC rule configured to page at critical); the alert takes the
highest severity of its flagged windows (``warning`` for a row without one) and becomes
critical once it lasts ``critical_after`` windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from floorsight.alerts.tables import ALERTS
from floorsight.records import AlertStatus, Severity

ALERT_SCHEMA = ALERTS.polars_schema

#: Severity -> rank, for "the highest severity seen"
SEVERITY_RANK: dict[str, int] = {
    str(Severity.INFO): 0,
    str(Severity.WARNING): 1,
    str(Severity.CRITICAL): 2,
}

#: Default flap hold. A clear needs 3 normal 10-s windows (30 s), while an intermittent fault
#: goes quiet for longer (spikes, dropouts); faults on one machine are an hour apart or more in
#: the simulated plant (``simulators.faults.fault_scenario``) and a person takes minutes to
#: react (escalation after 15 min): 10 minutes joins the flaps of one fault and never two
#: faults, and stays below the default incident gap (``alerts.incidents``).
DEFAULT_HOLD = timedelta(minutes=10)


@dataclass
class AlertTracker:
    """Alert state of one machine for one cause.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 4, 6, 6, tzinfo=UTC)
    >>> def rows(flags, sev=None):
    ...     return [{"machine_id": "M1", "window_start": t0 + timedelta(seconds=10 * i),
    ...              "window_end": t0 + timedelta(seconds=10 * (i + 1)), "work_order": "WO-1",
    ...              "product": "P", "material_lot": "L", "score": 0.99 if c == "x" else 0.1,
    ...              "is_anomaly": c == "x", "evidence": "", "severity": sev}
    ...             for i, c in enumerate(flags)]
    >>> flapping = rows("xxxxx...xxxxx...")
    >>> [len({a["alert_id"] for a in AlertTracker(hold=h).update_rows(flapping)})
    ...  for h in (timedelta(0), DEFAULT_HOLD)]
    [2, 1]
    >>> AlertTracker().update_rows(rows("xx", "critical"))[0]["severity"]
    'critical'
    """

    cause: str = "anomaly"
    #: how the reason names what was seen
    label: str = "process anomaly"
    open_after: int = 2
    clear_after: int = 3
    critical_after: int = 10
    #: the severity of a flagged window that names none; an alert that starts at ``info`` is
    #: shown, not paged, and does not escalate with its length
    severity: str = str(Severity.WARNING)
    #: a reopen within this long after a clear continues the cleared alert (0: a new alert)
    hold: timedelta = DEFAULT_HOLD
    _streak: list[dict] = field(default_factory=list)
    _normal: int = 0
    _open: dict | None = None
    #: the last cleared alert while ``hold`` may still reopen it, until when
    _cleared: dict | None = None
    _reopen_until: datetime | None = None
    #: times the open alert was cleared and reopened (its reason says so)
    _reopened: int = 0

    def update(self, scores: pl.DataFrame) -> pl.DataFrame | None:
        """Feed score rows (one machine, any number of windows); returns alert rows to upsert."""
        changed = self.update_rows(scores.sort("window_start", maintain_order=True).to_dicts())
        return pl.DataFrame(changed, schema=ALERT_SCHEMA) if changed else None

    def update_rows(self, rows: list[dict], opened: list | None = None) -> list[dict]:
        """Like :meth:`update` for score rows as dicts already in time order. ``opened``, when
        given, gets ``(window_start, is an alert open after this row)`` per row (a backtest's
        per-window alert state).

        One row per changed alert, its state after the last row, and before it the state of
        every clear that a later flag of the same rows overwrote (an alert that flags again
        within its flap hold goes on as the same alert): each clear is news, however the
        windows were batched (one batch or many, one process or a cluster, a resumed run)."""
        changed: dict[str, dict] = {}
        overwritten: list[dict] = []  # clears a reopen in the same rows replaced
        for row in rows:
            alert = self._step(row)
            if alert is not None:
                before = changed.get(alert["alert_id"])
                if (
                    before is not None
                    and before.get("cleared_at") is not None
                    and alert.get("cleared_at") != before["cleared_at"]
                ):
                    overwritten.append(before)
                changed[alert["alert_id"]] = dict(alert)
            if opened is not None:
                opened.append((row["window_start"], self._open is not None))
        return overwritten + list(changed.values())

    def _step(self, row: dict) -> dict | None:
        if row["is_anomaly"]:
            self._normal = 0
            if self._open is not None:
                a = self._open
                a["last_seen"] = row["window_end"]
                a["windows"] += 1
                a["score"] = max(a["score"], row["score"])
                severity = row.get("severity")
                if (
                    severity is not None
                    or a["windows"] >= self.critical_after
                    or (a["severity"] == Severity.INFO)
                ):
                    self._escalate(a, severity)
                return a
            self._streak.append(row)
            if len(self._streak) < self.open_after:
                return None
            streak, self._streak = self._streak, []
            cleared, self._cleared = self._cleared, None
            if cleared is not None and streak[0]["window_start"] <= self._reopen_until:
                return self._reopen(cleared, streak)
            return self._raise(streak)
        self._streak = []
        if self._open is None:
            if self._cleared is not None and row["window_end"] > self._reopen_until:
                self._cleared = None
            return None
        self._normal += 1
        if self._normal < self.clear_after:
            return None
        a = self._open
        a["cleared_at"] = row["window_end"]
        self._open = None
        self._normal = 0
        if self.hold > timedelta(0):
            self._cleared = a
            self._reopen_until = a["cleared_at"] + self.hold
        return a

    def _raise(self, streak: list[dict]) -> dict:
        first, row = streak[0], streak[-1]
        self._reopened = 0
        self._open = {
            "alert_id": alert_id(row["machine_id"], self.cause, first["window_start"]),
            "machine_id": row["machine_id"],
            "cause": self.cause,
            # the highest of its rows' own (a model may flag at info)
            "severity": str(Severity.INFO),
            "status": str(AlertStatus.OPEN),
            "first_seen": first["window_start"],
            "raised_at": row["window_end"],
            "last_seen": row["window_end"],
            "cleared_at": None,
            "score": max(r["score"] for r in streak),
            "windows": len(streak),
            "reason": self._reason(row, len(streak)),
            "evidence": row["evidence"],
            "work_order": row["work_order"],
            "product": row["product"],
            "material_lot": row["material_lot"],
        }
        for r in streak:
            self._escalate(self._open, r.get("severity"))
        return self._open

    def _reopen(self, a: dict, streak: list[dict]) -> dict:
        """The cleared alert ``a`` flags again within the hold: it goes on as the same alert."""
        row = streak[-1]
        self._reopened += 1
        a["cleared_at"] = None
        a["last_seen"] = row["window_end"]
        a["windows"] += len(streak)
        a["score"] = max(a["score"], *(r["score"] for r in streak))
        a["reason"] = self._reason(row, len(streak))
        a["evidence"] = row["evidence"]
        for r in streak:
            self._escalate(a, r.get("severity"))
        self._open = a
        return a

    def _reason(self, row: dict, consecutive: int) -> str:
        again = ""
        if self._reopened:
            times = "once" if self._reopened == 1 else f"{self._reopened} times"
            again = f" (cleared and flagged again within {_minutes(self.hold)}: {times})"
        return (
            f"{row['machine_id']}: {self.label} in {consecutive} consecutive "
            f"windows while running {row['work_order'] or 'no work order'}"
            f" ({row['product'] or 'unknown product'}){again}; strongest signals: "
            f"{row['evidence']}"
        )

    def _escalate(self, a: dict, severity: str | None) -> None:
        """Raise ``a``'s severity to a flagged row's own (the tracker's ``severity`` when it
        names none), and to critical once the alert lasted ``critical_after`` windows (unless
        the tracker's alerts start at info)."""
        if a["windows"] >= self.critical_after and self.severity != Severity.INFO:
            severity = str(Severity.CRITICAL)
        elif severity is None:
            severity = self.severity
        if SEVERITY_RANK[severity] > SEVERITY_RANK[a["severity"]]:
            a["severity"] = severity


def _minutes(hold: timedelta) -> str:
    minutes = hold.total_seconds() / 60
    return f"{minutes:g} min"


def alert_id(machine_id: str, cause: str, first_seen: datetime) -> str:
    return f"{machine_id}:{cause}:{first_seen:%Y%m%dT%H%M%SZ}"
