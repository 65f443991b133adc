"""DuckDB schemas of the alerts and incidents tables.

The pipeline inserts an alert and updates its evidence while it lasts; ``status`` and the
acknowledgement columns belong to the people handling it (the dashboard), so a pipeline rewrite
never reopens an alert someone acknowledged.

An incident (``alerts.incidents``) groups the alerts of one machine and fault across causes:
the pipeline writes it whole each time one of its alerts changes.
"""

from __future__ import annotations

from floorsight.storage import TableSpec

ALERTS = TableSpec(
    name="alerts",
    schema=(
        ("alert_id", "VARCHAR NOT NULL"),
        ("machine_id", "VARCHAR NOT NULL"),
        ("cause", "VARCHAR NOT NULL"),
        ("severity", "VARCHAR NOT NULL"),
        ("status", "VARCHAR NOT NULL"),
        ("first_seen", "TIMESTAMPTZ NOT NULL"),
        ("raised_at", "TIMESTAMPTZ NOT NULL"),
        ("last_seen", "TIMESTAMPTZ NOT NULL"),
        ("cleared_at", "TIMESTAMPTZ"),
        ("score", "DOUBLE NOT NULL"),
        ("windows", "INTEGER NOT NULL"),
        ("reason", "VARCHAR NOT NULL"),
        ("evidence", "VARCHAR NOT NULL"),
        ("work_order", "VARCHAR NOT NULL"),
        ("product", "VARCHAR NOT NULL"),
        ("material_lot", "VARCHAR NOT NULL"),
    ),
    key=("alert_id",),
    update_columns=(
        "severity",
        "last_seen",
        "cleared_at",
        "score",
        "windows",
        "reason",
        "evidence",
    ),
)

INCIDENTS = TableSpec(
    name="incidents",
    schema=(
        ("incident_id", "VARCHAR NOT NULL"),
        ("machine_id", "VARCHAR NOT NULL"),
        ("causes", "VARCHAR NOT NULL"),
        ("alert_ids", "VARCHAR NOT NULL"),
        ("alerts", "INTEGER NOT NULL"),
        ("severity", "VARCHAR NOT NULL"),
        ("first_seen", "TIMESTAMPTZ NOT NULL"),
        ("last_seen", "TIMESTAMPTZ NOT NULL"),
        ("closed_at", "TIMESTAMPTZ"),
        ("score", "DOUBLE NOT NULL"),
        ("windows", "INTEGER NOT NULL"),
        ("work_order", "VARCHAR NOT NULL"),
        ("product", "VARCHAR NOT NULL"),
        ("material_lot", "VARCHAR NOT NULL"),
    ),
    key=("incident_id",),
    update_columns=(
        "causes",
        "alert_ids",
        "alerts",
        "severity",
        "first_seen",
        "last_seen",
        "closed_at",
        "score",
        "windows",
    ),
)
