"""DuckDB schemas of the pipeline's own tables: dead letters, the ERP context it joined, machine
states and part counts from the floor."""

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

#: Machine states from the floor (``pipelines/signals.py``): one row per state change, from
#: ``since`` until the machine's next row. ``code`` is the numeric state the source sent (NULL
#: for a word), ``text`` the word (NULL for a code), ``state`` its name (``Execute``, or the
#: word), ``category`` what it means for OEE (running, idle, setup, down, planned_stop,
#: offline, unknown). A replayed change lands on its own key.
MACHINE_STATES = TableSpec(
    name="machine_states",
    schema=(
        ("machine_id", "VARCHAR NOT NULL"),
        ("since", "TIMESTAMPTZ NOT NULL"),
        ("code", "DOUBLE"),
        ("text", "VARCHAR"),
        ("state", "VARCHAR NOT NULL"),
        ("category", "VARCHAR NOT NULL"),
    ),
    key=("machine_id", "since"),
    update_columns=("code", "text", "state", "category"),
)

#: Part counters from the floor: one row per counter sample that added parts (and the first
#: sample of each counter, its base, with 0 parts). ``signal`` is ``good_count`` or
#: ``scrap_count``, ``counter`` the value the machine sent, ``parts`` the parts made since the
#: previous sample (after a reset, the counter went down, its new value: never negative).
PART_COUNTS = TableSpec(
    name="part_counts",
    schema=(
        ("machine_id", "VARCHAR NOT NULL"),
        ("signal", "VARCHAR NOT NULL"),
        ("ts", "TIMESTAMPTZ NOT NULL"),
        ("counter", "BIGINT NOT NULL"),
        ("parts", "BIGINT NOT NULL"),
        ("reset", "BOOLEAN NOT NULL"),
    ),
    key=("machine_id", "signal", "ts"),
)
