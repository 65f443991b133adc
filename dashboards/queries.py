"""Parameterised read queries behind the dashboard pages (no SQL is built from user input)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from floorsight.storage import Database


def table_counts(db: Database) -> dict[str, int]:
    row = db.query(
        """SELECT (SELECT count(*) FROM features) AS feature_rows,
                  (SELECT count(*) FROM alerts) AS alerts,
                  (SELECT count(*) FROM alerts
                   WHERE cleared_at IS NULL AND status <> 'resolved') AS active_alerts,
                  (SELECT count(*) FROM dead_letters) AS dead_letters,
                  (SELECT max(window_end) FROM features) AS latest_window"""
    ).row(0, named=True)
    return row


def alerts(db: Database, limit: int = 200) -> pl.DataFrame:
    return db.query(
        """SELECT alert_id, machine_id, severity, status, cause, raised_at, last_seen,
                  cleared_at, windows, round(score, 4) AS score, work_order, product,
                  material_lot, reason
           FROM alerts ORDER BY raised_at DESC LIMIT ?""",
        [limit],
    )


def machines(db: Database) -> list[str]:
    return db.query("SELECT DISTINCT machine_id FROM features ORDER BY 1")["machine_id"].to_list()


def sensors(db: Database) -> list[str]:
    return db.query("SELECT DISTINCT sensor FROM features ORDER BY 1")["sensor"].to_list()


def feature_with_specs(
    db: Database, machine_id: str, sensor: str, since: datetime | None = None
) -> pl.DataFrame:
    """Window means of one sensor of one machine, with the spec limits of the product then."""
    return db.query(
        """SELECT f.window_end, f.mean, f.work_order, f.product, s.lsl, s.target, s.usl
           FROM features f
           LEFT JOIN spec_limits s ON s.product = f.product AND s.characteristic = f.sensor
           WHERE f.machine_id = ? AND f.sensor = ?
             AND f.window_end >= coalesce(?::TIMESTAMPTZ, '-infinity'::TIMESTAMPTZ)
           ORDER BY f.window_end""",
        [machine_id, sensor, since],
    )
