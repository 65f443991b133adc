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

#: ERP context mirrored into the database when the pipeline loads it, so readers (dashboards,
#: notebooks) see the work orders and spec limits the pipeline joined with.
WORK_ORDERS = TableSpec(
    name="work_orders",
    schema=(
        ("work_order", "VARCHAR NOT NULL"),
        ("machine_id", "VARCHAR NOT NULL"),
        ("product", "VARCHAR NOT NULL"),
        ("material_lot", "VARCHAR NOT NULL"),
        ("start", "TIMESTAMPTZ NOT NULL"),
        ("end", "TIMESTAMPTZ NOT NULL"),
    ),
    key=("work_order",),
    update_columns=("machine_id", "product", "material_lot", "start", "end"),
)

SPEC_LIMITS = TableSpec(
    name="spec_limits",
    schema=(
        ("product", "VARCHAR NOT NULL"),
        ("characteristic", "VARCHAR NOT NULL"),
        ("lsl", "DOUBLE NOT NULL"),
        ("target", "DOUBLE NOT NULL"),
        ("usl", "DOUBLE NOT NULL"),
    ),
    key=("product", "characteristic"),
    update_columns=("lsl", "target", "usl"),
)
