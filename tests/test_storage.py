"""Several processes share one DuckDB file without lock errors: the losers wait and retry."""

from __future__ import annotations

import doctest
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest

from floorsight import storage
from floorsight.records import TIMESTAMP
from floorsight.storage import Database, TableSpec

SPEC = TableSpec(
    name="t",
    schema=(("k", "INTEGER NOT NULL"), ("v", "DOUBLE")),
    key=("k",),
    update_columns=("v",),
)

WORKER = textwrap.dedent(
    """
    import sys, polars as pl
    from floorsight.storage import Database, TableSpec
    spec = TableSpec(name="t", schema=(("k", "INTEGER NOT NULL"), ("v", "DOUBLE")), key=("k",),
                     update_columns=("v",))
    db = Database(sys.argv[1], [spec])
    role, base = sys.argv[2], int(sys.argv[3])
    for i in range(40):
        if role == "writer":
            db.upsert({"t": [pl.DataFrame({"k": [base + i], "v": [float(i)]})]})
        else:
            db.query("SELECT count(*) FROM t")
    print("done")
    """
)


def test_concurrent_writers_and_readers_never_see_a_lock_error(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    Database(path, [SPEC]).create()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), role, str(base)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role, base in [("writer", 0), ("writer", 1000), ("reader", 0), ("reader", 0)]
    ]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "done"
    assert Database(path).query("SELECT count(*) AS n FROM t")["n"][0] == 80


def test_upsert_is_idempotent_and_updates_only_declared_columns(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.duckdb", [SPEC])
    db.create()
    db.upsert({"t": [pl.DataFrame({"k": [1, 2], "v": [1.0, 2.0]})]})
    db.upsert({"t": [pl.DataFrame({"k": [2, 3], "v": [20.0, 3.0]})]})
    assert db.query("SELECT k, v FROM t ORDER BY k").rows() == [(1, 1.0), (2, 20.0), (3, 3.0)]


def test_an_insert_only_table_keeps_the_first_row_of_a_key_and_the_batch_s_last_repeat(
    tmp_path: Path,
) -> None:
    # appended without a dedupe pass: a key repeated in the batch or already in the file makes
    # the append fail, and the transaction is redone with repeats dropped (the last one kept)
    first_wins = replace(SPEC, update_columns=())
    db = Database(tmp_path / "i.duckdb", [first_wins])
    db.create()
    db.upsert({"t": [pl.DataFrame({"k": [1, 2], "v": [1.0, 2.0]})]})
    written = db.upsert(
        {
            "t": [
                pl.DataFrame({"k": [3, 2], "v": [3.0, 20.0]}),
                pl.DataFrame({"k": [3], "v": [30.0]}),
            ]
        }
    )
    assert written == 2  # keys 3 and 2 once each
    assert db.query("SELECT k, v FROM t ORDER BY k").rows() == [(1, 1.0), (2, 2.0), (3, 30.0)]
    # the same again (a replay after recovery) changes nothing
    db.upsert({"t": [pl.DataFrame({"k": [3, 2], "v": [3.0, 20.0]})]})
    assert db.query("SELECT k, v FROM t ORDER BY k").rows() == [(1, 1.0), (2, 2.0), (3, 30.0)]


TIMED = TableSpec(
    name="w",
    schema=(("m", "VARCHAR NOT NULL"), ("ts", "TIMESTAMPTZ"), ("v", "DOUBLE")),
    key=("m", "ts"),
)


def _timed(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    t0 = pl.datetime(2026, 1, 1, time_zone="UTC")
    return pl.DataFrame(rows, schema=["m", "s", "v"], orient="row").select(
        "m", ts=t0 + pl.duration(seconds=pl.col("s")), v="v"
    )


@pytest.mark.parametrize("indexed", [False, True], ids=["this-version", "older-file-with-key"])
def test_a_table_keyed_by_time_takes_late_rows_and_ignores_every_repeated_key(
    tmp_path: Path, indexed: bool
) -> None:
    # no primary-key index (TableSpec.time_key): newer rows are appended, older ones only where
    # their key is missing; a file made before (with the key as PRIMARY KEY) takes the same
    assert TIMED.time_key == "ts" and "PRIMARY KEY" not in TIMED.ddl
    assert "NOT NULL" in TIMED.ddl.split('"ts"')[1].split(",")[0]  # a key column, as in a key
    db = Database(tmp_path / "w.duckdb", [TIMED])
    if indexed:
        with db.write() as con:
            con.execute(TIMED.ddl.replace("DOUBLE\n)", 'DOUBLE,\n    PRIMARY KEY ("m", "ts")\n)'))
    db.create()
    db.upsert({"w": [_timed([("a", 10, 1.0), ("b", 10, 2.0)])]})
    db.upsert({"w": [_timed([("a", 20, 3.0), ("a", 5, 4.0), ("a", 10, 99.0), ("b", 10, 99.0)])]})
    # a replay after recovery: every key is there already, older and newer than the newest
    db.upsert({"w": [_timed([("a", 5, 98.0), ("a", 20, 97.0)]), _timed([("b", 10, 96.0)])]})
    rows = db.query(
        "SELECT m, epoch(ts - TIMESTAMPTZ '2026-01-01 00:00:00+00')::INT AS s, v FROM w "
        "ORDER BY m, s"
    ).rows()
    assert rows == [("a", 5, 4.0), ("a", 10, 1.0), ("a", 20, 3.0), ("b", 10, 2.0)]
    no_time = pl.DataFrame({"m": ["c"], "ts": [None], "v": [1.0]}, schema=TIMED.polars_schema)
    with pytest.raises(duckdb.ConstraintException, match="NOT NULL"):
        db.upsert({"w": [no_time]})


def test_a_copy_of_an_external_table_is_replaced_whole_by_its_newest_frame(tmp_path) -> None:
    db = Database(tmp_path / "c.duckdb", [SPEC])
    db.create()
    old = pl.DataFrame({"sample_id": ["S-1", "S-2"], "value": [1.0, 2.0]})
    new = pl.DataFrame({"sample_id": ["S-1", "S-3"], "value": [1.5, 3.0]})
    db.upsert({"erp_lab_results": [old], "t": [pl.DataFrame({"k": [1], "v": [1.0]})]})
    db.upsert({"erp_lab_results": [old, new]})
    copied = db.query("SELECT * FROM erp_lab_results ORDER BY sample_id")
    assert copied.to_dicts() == new.to_dicts()  # S-2 is gone: the ERP no longer has it
    assert db.query("SELECT count(*) AS n FROM t")["n"][0] == 1


def test_a_column_type_without_a_polars_dtype_is_refused_naming_table_and_column() -> None:
    with pytest.raises(ValueError, match=r"table lots, column size: DuckDB type 'DECIMAL\(10,2\)'"):
        TableSpec("lots", (("lot", "VARCHAR NOT NULL"), ("size", "DECIMAL(10,2)")), ("lot",))


def test_the_polars_schema_reads_the_type_past_constraints_in_any_case() -> None:
    spec = TableSpec(
        "t", (("at", "timestamp with time zone not null"), ("v", "DOUBLE DEFAULT 0")), ("at",)
    )
    assert list(spec.polars_schema.items()) == [("at", TIMESTAMP), ("v", pl.Float64())]


def test_a_spec_is_hashable_and_equal_by_its_declaration() -> None:
    again = TableSpec(name="t", schema=SPEC.schema, key=("k",), update_columns=("v",))
    assert again == SPEC and hash(again) == hash(SPEC)
    assert replace(SPEC, name="u").polars_schema == SPEC.polars_schema


def test_the_storage_examples_run() -> None:
    # floorsight/ itself is not among the suite's doctest paths
    assert doctest.testmod(storage).failed == 0
