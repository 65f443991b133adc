"""Every table is declared once, by its TableSpec: a table created from the spec's DDL in a real
DuckDB file reads back with exactly the spec's polars schema, a frame of that schema writes and
reads back unchanged, and the modules' schema names are the spec's own schema."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, date, datetime, time
from pathlib import Path

import polars as pl
import pytest

from floorsight.alerts.lifecycle import ALERT_EVENTS
from floorsight.alerts.tables import ALERTS
from floorsight.features.tables import FEATURES
from floorsight.models.tables import SCORES
from floorsight.pipelines.flow import TABLES
from floorsight.pipelines.tables import MACHINE_STATES, PART_COUNTS, SPEC_LIMITS, WORK_ORDERS
from floorsight.records import TIMESTAMP
from floorsight.storage import POLARS_TYPES, Database, TableSpec

#: what the pipeline writes, and what the dashboard writes beside it (the alert lifecycle)
WRITTEN = [*TABLES, ALERT_EVENTS]

#: one non-null value of each dtype a column can have
SAMPLE = {
    pl.String: "x",
    pl.Float64: 1.5,
    pl.Float32: 1.5,
    pl.Int8: -7,
    pl.Int16: -7,
    pl.Int32: -7,
    pl.Int64: -7,
    pl.UInt8: 7,
    pl.UInt16: 7,
    pl.UInt32: 7,
    pl.UInt64: 7,
    pl.Boolean: True,
    pl.Date: date(2026, 4, 6),
    pl.Time: time(6, 30, 15),
    pl.Datetime: datetime(2026, 4, 6, 6, 30, 15, 123456, tzinfo=UTC),
    pl.Binary: b"\x00\xff",
}


def _row_of(spec: TableSpec) -> pl.DataFrame:
    row = {}
    for column, dtype in spec.polars_schema.items():
        value = SAMPLE[dtype.base_type()]
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            value = value.replace(tzinfo=None)
        row[column] = [value]
    return pl.DataFrame(row, schema=spec.polars_schema)


def _assert_round_trip(spec: TableSpec, path: Path) -> None:
    db = Database(path, [spec])
    db.create()
    empty = db.query(f"SELECT * FROM {spec.name}")
    assert list(empty.schema.items()) == list(spec.polars_schema.items())
    row = _row_of(spec)
    assert db.upsert({spec.name: [row]}) == 1
    back = db.query(f"SELECT * FROM {spec.name}")
    assert list(back.schema.items()) == list(spec.polars_schema.items())
    assert back.rows() == row.rows()


def _declared_tables() -> list[TableSpec]:
    """Every TableSpec a module of the pipeline's packages declares (a model's own table too)."""
    found: dict[str, TableSpec] = {}
    for package in ("features", "models", "alerts", "pipelines"):
        root = importlib.import_module(f"floorsight.{package}")
        for info in pkgutil.iter_modules(root.__path__, f"{root.__name__}."):
            for value in vars(importlib.import_module(info.name)).values():
                if isinstance(value, TableSpec):
                    found.setdefault(value.name, value)
    return sorted(found.values(), key=lambda spec: spec.name)


@pytest.mark.parametrize("spec", WRITTEN, ids=lambda spec: spec.name)
def test_a_written_table_reads_back_with_its_specs_polars_schema(spec, tmp_path) -> None:
    _assert_round_trip(spec, tmp_path / "t.duckdb")


def test_every_table_a_module_declares_reads_back_with_its_polars_schema(tmp_path) -> None:
    declared = _declared_tables()
    assert {spec.name for spec in WRITTEN} <= {spec.name for spec in declared}
    for spec in declared:
        _assert_round_trip(spec, tmp_path / f"{spec.name}.duckdb")


def test_every_duckdb_type_reads_back_as_its_polars_dtype(tmp_path) -> None:
    spec = TableSpec(
        name="every_type",
        schema=(
            ("k", "INTEGER NOT NULL"),
            *((f"c{i}", sql_type) for i, sql_type in enumerate(POLARS_TYPES)),
        ),
        key=("k",),
    )
    _assert_round_trip(spec, tmp_path / "types.duckdb")
    assert spec.polars_schema["c" + str(list(POLARS_TYPES).index("TIMESTAMPTZ"))] == TIMESTAMP


@pytest.mark.parametrize(
    ("module", "name", "spec"),
    [
        ("floorsight.models.machine", "SCORE_SCHEMA", SCORES),
        ("floorsight.models", "SCORE_SCHEMA", SCORES),
        ("floorsight.alerts.rules", "ALERT_SCHEMA", ALERTS),
        ("floorsight.alerts.lifecycle", "EVENT_SCHEMA", ALERT_EVENTS),
        ("floorsight.features.windows", "FEATURE_SCHEMA", FEATURES),
        ("floorsight.pipelines.signals", "STATE_ROW_SCHEMA", MACHINE_STATES),
        ("floorsight.pipelines.signals", "COUNT_ROW_SCHEMA", PART_COUNTS),
        ("floorsight.pipelines.context", "WORK_ORDER_SCHEMA", WORK_ORDERS),
        ("floorsight.pipelines.context", "SPEC_SCHEMA", SPEC_LIMITS),
    ],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_a_modules_schema_is_its_tables_spec(module, name, spec) -> None:
    assert getattr(importlib.import_module(module), name) is spec.polars_schema
