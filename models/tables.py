"""DuckDB schema of the score table: one row per machine window and model."""

from __future__ import annotations

from floorsight.storage import TableSpec

SCORES = TableSpec(
    name="scores",
    schema=(
        ("machine_id", "VARCHAR NOT NULL"),
        ("window_start", "TIMESTAMPTZ NOT NULL"),
        ("window_end", "TIMESTAMPTZ NOT NULL"),
        ("work_order", "VARCHAR NOT NULL"),
        ("product", "VARCHAR NOT NULL"),
        ("material_lot", "VARCHAR NOT NULL"),
        ("model", "VARCHAR NOT NULL"),
        ("score", "DOUBLE NOT NULL"),
        ("is_anomaly", "BOOLEAN NOT NULL"),
        ("evidence", "VARCHAR NOT NULL"),
    ),
    key=("machine_id", "window_start", "work_order", "model"),
)
