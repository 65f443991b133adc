"""The alert lifecycle: acknowledge, comment, resolve with a label, reopen; with an audit trail.

People handle alerts; the pipeline only raises and updates them. Every action writes one row to
``alert_events`` (who, when, what, comment, label) **and** sets ``alerts.status`` in the same
short transaction, so the status and its history never disagree. The pipeline never overwrites
``status`` (it is not one of ``ALERTS.update_columns``), so an acknowledged alert stays
acknowledged while the anomaly goes on.

Transitions (anything else raises :class:`ValueError` and writes nothing)::

    open ──acknowledge──▶ acknowledged ──resolve(label)──▶ resolved ──reopen──▶ open
      └───────────────resolve(label)─────────────────────────▲
    comment: any status, status unchanged

A resolution carries a label, ``true_problem`` or ``false_alarm``: the feedback models and
escalation learn from.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from pathlib import Path

import duckdb
import polars as pl

from floorsight.records import AlertStatus, utc_now
from floorsight.storage import Database, TableSpec, partition_holding


class AlertAction(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    COMMENTED = "commented"
    REOPENED = "reopened"
    ESCALATED = "escalated"  # by the delivery loop: nobody acknowledged it in time


class AlertLabel(StrEnum):
    """What the person who resolved an alert found: the alert's ground truth."""

    TRUE_PROBLEM = "true_problem"
    FALSE_ALARM = "false_alarm"


ALERT_EVENTS = TableSpec(
    name="alert_events",
    schema=(
        ("event_id", "VARCHAR NOT NULL"),
        ("alert_id", "VARCHAR NOT NULL"),
        ("at", "TIMESTAMPTZ NOT NULL"),
        ("actor", "VARCHAR NOT NULL"),
        ("action", "VARCHAR NOT NULL"),
        ("comment", "VARCHAR NOT NULL"),
        ("label", "VARCHAR"),
    ),
    key=("event_id",),
)

EVENT_SCHEMA = ALERT_EVENTS.polars_schema

#: status an action moves an alert to, and the statuses it may start from
_TRANSITIONS: dict[AlertAction, tuple[AlertStatus | None, tuple[AlertStatus, ...]]] = {
    AlertAction.ACKNOWLEDGED: (AlertStatus.ACKNOWLEDGED, (AlertStatus.OPEN,)),
    AlertAction.RESOLVED: (AlertStatus.RESOLVED, (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)),
    AlertAction.REOPENED: (AlertStatus.OPEN, (AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED)),
    AlertAction.COMMENTED: (None, tuple(AlertStatus)),
    AlertAction.ESCALATED: (None, (AlertStatus.OPEN,)),
}


def acknowledge(db_path: Path | str, alert_id: str, actor: str, comment: str = "") -> str:
    """Someone has seen the alert and is on it. Returns the audit row's ``event_id``."""
    return _record(db_path, alert_id, actor, AlertAction.ACKNOWLEDGED, comment)


def resolve(
    db_path: Path | str, alert_id: str, actor: str, comment: str, label: AlertLabel | str | None
) -> str:
    """Close the alert with what was found: ``true_problem`` or ``false_alarm``."""
    if label is None or label == "":
        raise ValueError(f"resolving {alert_id!r} needs a label: one of {', '.join(AlertLabel)}")
    try:
        label = AlertLabel(label)
    except ValueError:
        raise ValueError(
            f"unknown label {label!r} for {alert_id!r}: use one of {', '.join(AlertLabel)}"
        ) from None
    return _record(db_path, alert_id, actor, AlertAction.RESOLVED, comment, label)


def comment(db_path: Path | str, alert_id: str, actor: str, comment: str) -> str:
    """Add a note to the alert's history; its status does not change."""
    if not comment.strip():
        raise ValueError(f"a comment on {alert_id!r} needs some text")
    return _record(db_path, alert_id, actor, AlertAction.COMMENTED, comment)


def reopen(db_path: Path | str, alert_id: str, actor: str, comment: str = "") -> str:
    """Back to ``open`` (an acknowledged or resolved alert that needs attention again)."""
    return _record(db_path, alert_id, actor, AlertAction.REOPENED, comment)


def escalated(db_path: Path | str, alert_id: str, roles: list[str], after_s: float) -> str:
    """Record that the alert went to the escalation roles (the status stays ``open``)."""
    note = f"not acknowledged within {after_s:g} s: sent to {', '.join(roles)}"
    return _record(db_path, alert_id, "floorsight", AlertAction.ESCALATED, note)


def history(db_path: Path | str, alert_id: str | None = None) -> pl.DataFrame:
    """The audit trail of one alert (or of all alerts), oldest first."""
    db = Database(db_path)
    if not db.exists():
        return pl.DataFrame(schema=EVENT_SCHEMA)
    with db.read() as con:
        return read_events(con, alert_id)


def read_events(con: duckdb.DuckDBPyConnection, alert_id: str | None = None) -> pl.DataFrame:
    """:func:`history` on an open connection (for a reader that runs several queries)."""
    cols = ", ".join(f'"{c}"' for c in ALERT_EVENTS.columns)
    try:
        frame = con.sql(
            f"""SELECT {cols} FROM alert_events
                WHERE ?::VARCHAR IS NULL OR alert_id = ?::VARCHAR
                ORDER BY "at", event_id""",
            params=[alert_id, alert_id],
        ).pl()
    except duckdb.CatalogException:  # nobody has acted on an alert yet
        return pl.DataFrame(schema=EVENT_SCHEMA)
    return frame.cast(EVENT_SCHEMA)


def _record(
    db_path: Path | str,
    alert_id: str,
    actor: str,
    action: AlertAction,
    comment: str,
    label: AlertLabel | None = None,
) -> str:
    if not actor.strip():
        raise ValueError(f"{action} {alert_id!r}: say who you are (actor is empty)")
    db = Database(db_path)
    if not db.exists():
        raise ValueError(f"unknown alert {alert_id!r}: there is no database at {db.path}")
    # in a partitioned store, the file of the process that raised the alert: that process
    # reads people's labels and acknowledgements (feedback, escalation) from its own file
    owner = partition_holding(db_path, "alerts", "alert_id", alert_id)
    if owner is None:
        raise ValueError(f"unknown alert {alert_id!r}: no partition of {db.path} holds it")
    db = Database(owner)
    target, allowed = _TRANSITIONS[action]
    event_id = uuid.uuid4().hex
    with db.write() as con:
        found = con.execute("SELECT status FROM alerts WHERE alert_id = ?", [alert_id]).fetchall()
        if not found:
            raise ValueError(f"unknown alert {alert_id!r}")
        status = AlertStatus(found[0][0])
        if status not in allowed:
            raise ValueError(
                f"cannot mark alert {alert_id!r} {action}: it is {status}"
                f" (allowed from: {', '.join(allowed)})"
            )
        con.execute(ALERT_EVENTS.ddl)
        con.execute(
            "INSERT INTO alert_events VALUES (?, ?, ?, ?, ?, ?, ?)",
            [event_id, alert_id, utc_now(), actor.strip(), str(action), comment, label],
        )
        if target is not None:
            con.execute("UPDATE alerts SET status = ? WHERE alert_id = ?", [str(target), alert_id])
    return event_id


__all__ = [
    "ALERT_EVENTS",
    "EVENT_SCHEMA",
    "AlertAction",
    "AlertLabel",
    "acknowledge",
    "comment",
    "escalated",
    "history",
    "read_events",
    "reopen",
    "resolve",
]
