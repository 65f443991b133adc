"""DuckDB schema of the dead-letter table, written by the pipeline's edge and window steps."""

from __future__ import annotations

from floorsight.storage import TableSpec

DEAD_LETTERS = TableSpec(
    name="dead_letters",
    schema=(
        ("dead_letter_id", "VARCHAR NOT NULL"),
        ("source", "VARCHAR NOT NULL"),
        ("machine_id", "VARCHAR"),
        ("sensor", "VARCHAR"),
        ("ts", "TIMESTAMPTZ"),
        ("value", "DOUBLE"),
        ("raw", "VARCHAR NOT NULL"),
        ("reason", "VARCHAR NOT NULL"),
        ("received_at", "TIMESTAMPTZ NOT NULL"),
    ),
    key=("dead_letter_id",),
)
