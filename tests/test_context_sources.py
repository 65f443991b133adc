"""Context from every kind of source: what a plant's exports look like, what stops the start.

A folder of Parquet files loads like one of CSV files; an empty required table, a wrong path
and a missing required table stop ``floorsight run`` with a message naming them (exit 2); every
record table (lab results, maintenance log, ...) is re-read when it changes, from a folder and
from PostgreSQL; a record table the models read is checked cell by cell.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from floorsight.pipelines.context import ContextLoadError, ContextStore, load_context
from floorsight.simulators import build_plant
from tests.conftest import T0

HEADER = "work_order,machine_id,product,material_lot,start,end\n"
ORDERS = "WO-1,M1,P-100,L1,2026-01-05T06:00:00Z,2026-01-05T08:00:00Z\n"
SPECS = "product,characteristic,lsl,target,usl\nP-100,bore,24.98,25.0,25.02\n"
LABS = "sample_id,machine_id,work_order,characteristic,part_made_at,available_at,value\n"


def _folder(path: Path, labs: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "work_orders.csv").write_text(HEADER + ORDERS)
    (path / "spec_limits.csv").write_text(SPECS)
    if labs:
        (path / "lab_results.csv").write_text(LABS + labs)
    return path


def _touch(path: Path) -> None:
    later = time.time() + 5  # the store sees the change even on coarse mtime clocks
    os.utime(path, (later, later))


def _lab(sample: str, minute: int, value: float) -> str:
    made = T0 + timedelta(minutes=minute)
    ready = made + timedelta(minutes=30)
    return f"{sample},M1,WO-1,bore,{made.isoformat()},{ready.isoformat()},{value}\n"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "floorsight.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # the message on one line (Typer's error box wraps it at the terminal's width)
        env={**os.environ, "_TYPER_STANDARD_TRACEBACK": "1", "COLUMNS": "1000"},
    )


def _history(tmp_path: Path) -> Path:
    history = tmp_path / "readings.csv"
    history.write_text("machine_id,sensor,ts,value\nM1,t,2026-01-05T06:00:00Z,1.0\n")
    return history


def test_a_folder_of_parquet_files_loads_like_one_of_csv_files(tmp_path) -> None:
    plant = build_plant(2, start=T0, horizon=timedelta(hours=4), seed=3, faults=())
    plant.write_context(tmp_path / "csv")
    plant.write_context(tmp_path / "parquet", "parquet")
    assert not list((tmp_path / "parquet").glob("*.csv"))
    from_csv, _ = load_context(tmp_path / "csv")
    from_parquet, dead = load_context(tmp_path / "parquet")
    assert dead is None
    assert from_parquet.work_orders.height == len(plant.work_orders) > 0
    assert from_parquet.work_orders.equals(from_csv.work_orders)
    assert from_parquet.spec_limits.equals(from_csv.spec_limits)
    assert set(from_parquet.records) == set(from_csv.records)
    labs = from_parquet.records["lab_results"]
    assert labs.height == from_csv.records["lab_results"].height > 0
    assert labs.schema["available_at"] == pl.Datetime("us", "UTC")
    # and the store watches them: an order added to the Parquet file is taken
    store = ContextStore(tmp_path / "parquet", settle=timedelta(0))
    first = store.current().work_orders.height
    orders = pl.read_parquet(tmp_path / "parquet" / "work_orders.parquet")
    last = orders.sort("end").row(-1, named=True)
    more = pl.DataFrame(
        [{**last, "work_order": "WO-NEW", "start": last["end"], "end": last["end"] + timedelta(1)}],
        schema=orders.schema,
    )
    pl.concat([orders, more]).write_parquet(tmp_path / "parquet" / "work_orders.parquet")
    _touch(tmp_path / "parquet" / "work_orders.parquet")
    assert store.current().work_orders.height == first + 1
    assert "WO-NEW" in store.current().work_orders["work_order"].to_list()


@pytest.mark.parametrize("table", ["work_orders", "spec_limits"])
def test_an_empty_required_table_stops_the_run_naming_it(tmp_path, table) -> None:
    erp = _folder(tmp_path / "erp")
    (erp / f"{table}.csv").write_text((HEADER if table == "work_orders" else SPECS).split("\n")[0])
    run = _run("--context", str(erp), "--history", str(_history(tmp_path)), "--db", "f.duckdb")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert f"{table}.csv: holds no {table.replace('_', ' ')}" in run.stderr


def test_an_empty_required_table_in_a_reload_is_rejected_and_the_last_good_stays(
    tmp_path,
) -> None:
    erp = _folder(tmp_path / "erp")
    store = ContextStore(erp, settle=timedelta(0))
    assert store.current().work_orders.height == 1
    (erp / "work_orders.csv").write_text(HEADER)
    _touch(erp / "work_orders.csv")
    assert store.current().work_orders["work_order"].to_list() == ["WO-1"]
    assert store.rejected_loads == 1
    dead = store.take_dead()
    assert "work_orders.csv: holds no work orders" in dead["raw"][0]


@pytest.mark.parametrize("kind", ["wrong path", "no spec limits"])
def test_a_wrong_context_path_or_a_missing_table_stops_the_run(tmp_path, kind) -> None:
    erp = _folder(tmp_path / "erp")
    if kind == "no spec limits":
        (erp / "spec_limits.csv").unlink()
    context = str(tmp_path / "ERP") if kind == "wrong path" else str(erp)
    run = _run("--context", context, "--history", str(_history(tmp_path)), "--db", "f.duckdb")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    expected = "does not exist" if kind == "wrong path" else "has no spec_limits.csv"
    assert f"{context} {expected}" in run.stderr.replace("context folder ", "")


def test_lab_results_appended_to_the_csv_file_are_seen(tmp_path) -> None:
    erp = _folder(tmp_path / "erp", labs=_lab("S-1", 1, 25.0))
    store = ContextStore(erp, settle=timedelta(0))
    assert store.current().records["lab_results"]["sample_id"].to_list() == ["S-1"]
    with (erp / "lab_results.csv").open("a") as f:
        f.write(_lab("S-2", 2, 25.01))
    _touch(erp / "lab_results.csv")
    labs = store.current().records["lab_results"]
    assert labs["sample_id"].to_list() == ["S-1", "S-2"]
    assert labs["value"].to_list() == [25.0, 25.01]
    assert store.rejected_loads == 0


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        ("S-2,M1,WO-1,bore,yesterday,2026-01-05T07:00:00Z,25", "part_made_at yesterday is not"),
        ("S-2,M1,WO-1,bore,2026-01-05T06:00:00Z,2026-01-05T07:00:00Z,x", "value x is not a"),
        ("S-2,M1,WO-1,bore,2026-01-05T06:00:00Z,,25", "available_at missing"),
    ],
)
def test_a_lab_result_the_models_cannot_read_rejects_the_load(tmp_path, row, rule) -> None:
    erp = _folder(tmp_path / "erp", labs=_lab("S-1", 1, 25.0) + row + "\n")
    with pytest.raises(ContextLoadError) as caught:
        load_context(erp)
    assert f"lab_results.csv line 3: {rule}" in str(caught.value)


def test_lab_results_inserted_in_postgresql_are_seen(postgres) -> None:
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(
            "CREATE TABLE work_orders (work_order text, machine_id text, product text, "
            'material_lot text, start timestamptz, "end" timestamptz)'
        )
        con.execute(
            "CREATE TABLE spec_limits (product text, characteristic text, lsl double precision,"
            " target double precision, usl double precision)"
        )
        con.execute(
            "CREATE TABLE lab_results (sample_id text, machine_id text, work_order text, "
            "characteristic text, part_made_at timestamptz, available_at timestamptz, "
            "value double precision)"
        )
        con.execute(
            "INSERT INTO work_orders VALUES "
            "('WO-1', 'M1', 'P-100', 'L1', '2026-01-05 06:00+00', '2026-01-05 08:00+00')"
        )
        con.execute("INSERT INTO spec_limits VALUES ('P-100', 'bore', 24.98, 25.0, 25.02)")
    store = ContextStore(postgres, refresh=timedelta(0))
    assert store.current().records["lab_results"].height == 0
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(
            "INSERT INTO lab_results VALUES ('S-1', 'M1', 'WO-1', 'bore', "
            "'2026-01-05 06:10+00', '2026-01-05 06:40+00', 25.004)"
        )
    labs = store.current().records["lab_results"]
    assert labs["sample_id"].to_list() == ["S-1"]
    assert labs["available_at"].to_list() == [T0 + timedelta(minutes=40)]
    assert store.rejected_loads == 0


def test_sensor_units_come_from_the_recipes_of_every_kind_of_context(tmp_path) -> None:
    from floorsight.pipelines.context import sensor_units

    plant = build_plant(2, start=T0, horizon=timedelta(hours=2), seed=3, faults=())
    plant.write_context(tmp_path / "csv")
    plant.write_context(tmp_path / "parquet", "parquet")
    units = sensor_units(tmp_path / "csv")
    assert units and all(isinstance(u, str) and u for u in units.values())
    assert sensor_units(tmp_path / "parquet") == units
    (tmp_path / "parquet" / "map.toml").write_text(
        '[tables.work_orders]\nfile = "work_orders.parquet"\n'
        '[tables.spec_limits]\nfile = "spec_limits.parquet"\n'
        '[tables.recipes]\nfile = "recipes.parquet"\n'
    )
    assert sensor_units(tmp_path / "parquet" / "map.toml") == units
