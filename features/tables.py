"""DuckDB schema of the feature table.

``features`` holds one row per machine, sensor, window and context segment (a window spanning a
changeover is split by work order). ``work_order``, ``product``, ``material_lot`` and ``batch``
are empty strings when no ERP context was valid for the readings (the key cannot hold NULLs);
``batch`` is also empty when the context has no ``batches`` table.
"""

from __future__ import annotations

from floorsight.storage import TableSpec

FEATURES = TableSpec(
    name="features",
    schema=(
        ("machine_id", "VARCHAR NOT NULL"),
        ("sensor", "VARCHAR NOT NULL"),
        ("window_start", "TIMESTAMPTZ NOT NULL"),
        ("window_end", "TIMESTAMPTZ NOT NULL"),
        ("work_order", "VARCHAR NOT NULL"),
        ("product", "VARCHAR NOT NULL"),
        ("material_lot", "VARCHAR NOT NULL"),
        ("batch", "VARCHAR NOT NULL"),
        ("n", "INTEGER NOT NULL"),
        ("mean", "DOUBLE"),
        ("std", "DOUBLE"),
        ("min", "DOUBLE"),
        ("max", "DOUBLE"),
        ("last", "DOUBLE"),
        ("slope", "DOUBLE"),
        ("rms", "DOUBLE"),
    ),
    key=("machine_id", "sensor", "window_start", "work_order"),
)
