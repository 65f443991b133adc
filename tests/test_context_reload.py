"""A context load is taken whole or rejected whole.

A reload that fails a check (a missing column, a file that does not parse, a row that breaks a
row rule, a failing suite) is rejected with a report naming the file, the row and the rule, and
the last good context stays; a file still being written is read again later, never half-read;
a bad first load stops the start with that report; a context path without its files is refused.
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

from floorsight.pipelines import context as context_module
from floorsight.pipelines.context import ContextLoadError, ContextStore, load_context
from floorsight.storage import Database
from tests.conftest import T0, readings

HEADER = "work_order,machine_id,product,material_lot,start,end\n"
ORDERS = [
    "WO-1,M1,P-100,L1,2026-01-05T06:00:00Z,2026-01-05T08:00:00Z\n",
    "WO-2,M1,P-200,L2,2026-01-05T08:00:00Z,2026-01-05T10:00:00Z\n",
    "WO-3,M2,P-100,L3,2026-01-05T06:00:00Z,2026-01-05T10:00:00Z\n",
]
SPECS = "product,characteristic,lsl,target,usl\nP-100,bore,24.98,25.0,25.02\nP-200,bore,9,10,11\n"


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    later = time.time() + 5  # the store sees the change even on coarse mtime clocks
    os.utime(path, (later, later))


@pytest.fixture
def store(tmp_path) -> ContextStore:
    """A store whose first (good) load is in use and whose reports were taken."""
    (tmp_path / "work_orders.csv").write_text(HEADER + "".join(ORDERS))
    (tmp_path / "spec_limits.csv").write_text(SPECS)
    store = ContextStore(tmp_path)
    assert store.current().work_orders["work_order"].to_list() == ["WO-1", "WO-2", "WO-3"]
    assert all(r.success for r in store.take_reports(wait=True))
    assert store.take_dead() is None
    return store


def _rejection(store: ContextStore) -> str:
    """The one rejection recorded since the last look: its report in ``validation_results``
    and its dead letter."""
    failed = [r for r in store.take_reports(wait=True) if not r.success]
    load = [r for r in failed if r.suite == "erp.load"]
    assert len(load) == 1, [r.report for r in failed]
    dead = store.take_dead()
    assert dead["source"].to_list() == ["context:load"]
    assert "rejected" in dead["reason"][0]
    return load[0].report


def test_a_reload_without_a_required_column_is_rejected_whole(store) -> None:
    _write(
        store.directory / "work_orders.csv", "work_order,machine_id,product,material_lot,start\n"
    )
    ctx = store.current()  # the run goes on ...
    assert ctx.work_orders["work_order"].to_list() == ["WO-1", "WO-2", "WO-3"]  # ... as before
    assert store.rejected_loads == 1
    report = _rejection(store)
    assert "work_orders.csv" in report and "lacks columns ['end']" in report
    # a fixed file is taken again
    _write(store.directory / "work_orders.csv", HEADER + "".join(ORDERS[:2]))
    assert store.current().work_orders["work_order"].to_list() == ["WO-1", "WO-2"]
    assert store.rejected_loads == 1


def test_an_empty_required_cell_rejects_the_reload(store) -> None:
    _write(store.directory / "spec_limits.csv", SPECS.replace("24.98", ""))
    assert store.current().spec_limits["lsl"].to_list() == [24.98, 9.0]
    report = _rejection(store)
    assert "spec_limits.csv line 2: lsl missing" in report


def test_a_truncated_file_is_rejected_not_half_taken(store) -> None:
    """A writer that died half-way leaves a row without its end: the load is rejected (it
    raised TypeError in the overlap check)."""
    _write(store.directory / "work_orders.csv", HEADER + ORDERS[0] + ORDERS[1][:30])
    assert store.current().work_orders.height == 3
    report = _rejection(store)
    assert "work_orders.csv line 3: end missing" in report


def test_a_file_being_written_is_read_again_not_half_read(store, monkeypatch) -> None:
    """The store reads a changed file, waits, and takes it only if it did not change meanwhile;
    here the writer adds the rest of the file during that wait."""
    path = store.directory / "work_orders.csv"
    complete = HEADER + "".join(ORDERS[:2]) + ORDERS[2].replace("WO-3", "WO-4")
    _write(path, complete[:70])  # header and the start of the first row
    waits = []

    def writer_goes_on(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            with path.open("a") as f:
                f.write(complete[70:])

    monkeypatch.setattr(context_module, "_settle", writer_goes_on)
    assert store.current().work_orders["work_order"].to_list() == ["WO-1", "WO-2", "WO-3"]
    assert store.rejected_loads == 0 and len(waits) == 1
    # the next look finds the file unchanged over its wait: taken whole
    assert store.current().work_orders["work_order"].to_list() == ["WO-1", "WO-2", "WO-4"]
    assert store.rejected_loads == 0 and len(waits) == 2
    assert not [r for r in store.take_reports(wait=True) if not r.success]


def test_a_bad_first_load_stops_the_start_naming_file_row_and_rule(tmp_path) -> None:
    (tmp_path / "work_orders.csv").write_text(HEADER + ORDERS[0] + ORDERS[0] + ORDERS[1])
    (tmp_path / "spec_limits.csv").write_text(SPECS)
    with pytest.raises(ContextLoadError) as caught:
        ContextStore(tmp_path).current()
    assert "work_orders.csv line 3: duplicate work order WO-1" in str(caught.value)
    assert caught.value.problems[0].row == 2  # the second data row (line 3 of the file)


def test_a_first_load_failing_its_suites_stops_the_run_before_a_reading_is_joined(
    tmp_path,
) -> None:
    """A rule only the suites check (a foreign key). The suites run while the pipeline starts
    (its sources already read); the next look at the context, the first batch's join, waits
    for their verdict and raises. The report names the file, the rule and the offending row
    by its key."""
    (tmp_path / "work_orders.csv").write_text(HEADER + "".join(ORDERS))
    (tmp_path / "spec_limits.csv").write_text(SPECS)
    (tmp_path / "products.csv").write_text("product,cycle_time_s\nP-100,30\n")
    store = ContextStore(tmp_path)
    store.current()  # files and rows pass: the start goes on while the suites run
    with pytest.raises(ContextLoadError) as caught:
        store.join(readings([("M1", "t", 60.0, 1.0)]))
    with pytest.raises(ContextLoadError):  # and so does every later look
        store.current()
    text = str(caught.value)
    assert "(first load) rejected" in text
    assert "work_orders.csv: product refers to an existing products.product" in text
    assert "P-200" in text


@pytest.mark.parametrize("kind", ["no folder", "empty folder", "one file"])
def test_a_context_path_without_its_files_is_refused(tmp_path, kind) -> None:
    path = tmp_path / "erp"
    if kind != "no folder":
        path.mkdir()
    if kind == "one file":
        (path / "work_orders.csv").write_text(HEADER)
    with pytest.raises(FileNotFoundError) as caught:
        ContextStore(path).current()
    text = str(caught.value)
    assert str(path) in text
    assert ("does not exist" in text) if kind == "no folder" else ("spec_limits.csv" in text)
    with pytest.raises(FileNotFoundError):
        load_context(path)


def test_the_cli_names_a_misspelled_context_path(tmp_path) -> None:
    history = tmp_path / "readings.csv"
    history.write_text("machine_id,sensor,ts,value\nM1,t,2026-01-05T06:00:00Z,1.0\n")
    run = subprocess.run(
        [
            *(sys.executable, "-m", "floorsight.cli", "run"),
            *("--context", str(tmp_path / "ERP"), "--history", str(history)),
            *("--db", str(tmp_path / "f.duckdb")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # the message on one line (Typer's error box wraps it at the terminal's width)
        env={**os.environ, "_TYPER_STANDARD_TRACEBACK": "1", "COLUMNS": "1000"},
    )
    assert run.returncode == 2  # a usage error with its message, not a traceback
    assert "Traceback" not in run.stderr
    assert f"context folder {tmp_path / 'ERP'} does not exist" in run.stderr


def test_load_context_reports_what_it_cannot_read(tmp_path) -> None:
    (tmp_path / "work_orders.csv").write_bytes(HEADER.encode() + b"WO-1,M\xff\xfe1,P,L,x,y\n")
    (tmp_path / "spec_limits.csv").write_text(SPECS)
    with pytest.raises(ContextLoadError, match=r"work_orders\.csv: not a readable CSV file"):
        load_context(tmp_path)
    (tmp_path / "work_orders.csv").write_text("")
    with pytest.raises(ContextLoadError, match=r"work_orders\.csv: .*empty"):
        load_context(tmp_path)
    # rows that break a rule are returned as dead letters with their reason and row
    (tmp_path / "work_orders.csv").write_text(HEADER + ORDERS[0] + ",M2,P,L,,\n")
    ctx, dead = load_context(tmp_path)
    assert ctx.work_orders["work_order"].to_list() == ["WO-1"]
    assert dead["reason"].to_list() == ["work_order missing"]
    assert [(p.source, p.row, p.rule) for p in ctx.problems] == [
        ("work_orders.csv", 2, "work_order missing")
    ]
    assert pl.DataFrame(ctx.work_orders).height == 1


def test_a_flow_on_a_first_load_failing_its_suites_joins_no_reading(tmp_path) -> None:
    from bytewax.testing import TestingSource, run_main

    from floorsight.pipelines.flow import build_flow
    from floorsight.storage import Database

    erp = tmp_path / "erp"
    erp.mkdir()
    (erp / "work_orders.csv").write_text(HEADER + "".join(ORDERS))
    (erp / "spec_limits.csv").write_text(SPECS)
    (erp / "products.csv").write_text("product,cycle_time_s\nP-100,30\n")  # P-200 unknown
    batch = readings([("M1", "t", float(s), 1.0) for s in range(120)])
    db = tmp_path / "f.duckdb"
    flow = build_flow(TestingSource([batch]), ContextStore(erp), db)
    with pytest.raises(Exception) as caught:  # Bytewax's error, caused by the context's
        run_main(flow)
    chain, err = [], caught.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    refused = [e for e in chain if isinstance(e, ContextLoadError)]
    assert refused, chain
    assert "(first load) rejected" in str(refused[0]) and "products.product" in str(refused[0])
    assert Database(db).query("SELECT count(*) AS n FROM features")["n"][0] == 0


@pytest.mark.parametrize(
    ("cell", "rule"),
    [
        ("M\x001", "line 3: machine_id is not a machine id"),
        ("M 1", "line 3: machine_id is not a machine id"),
        ("M" * 200, "line 3: machine_id is not a machine id"),
    ],
)
def test_an_id_a_reading_could_not_carry_rejects_the_load(store, cell, rule) -> None:
    """A work order's machine must be an id that a reading can carry (the readings' id rule);
    other ids may hold any text but no control character, and at most 128 characters."""
    _write(store.directory / "work_orders.csv", HEADER + ORDERS[0] + ORDERS[1].replace("M1", cell))
    assert store.current().work_orders.height == 3
    assert rule in _rejection(store)


def test_control_characters_in_other_ids_reject_the_load(store) -> None:
    _write(store.directory / "spec_limits.csv", SPECS.replace("bore", "bo\x00re", 1))
    store.current()
    assert "spec_limits.csv line 2: characteristic holds a control character" in _rejection(store)
    _write(store.directory / "work_orders.csv", HEADER + ORDERS[0].replace("L1", "L" * 129))
    store.current()
    assert "work_orders.csv line 2: material_lot is longer than 128 characters" in _rejection(store)


def test_the_cli_stops_with_the_suites_verdict_when_only_the_suites_find_the_first_load_bad(
    tmp_path,
) -> None:
    # a work_orders.csv without its last order passes the row checks; the suites find the
    # batches and lab results of that order pointing at no work order, and the first batch's
    # wait for their verdict stops the run: a usage error that names the rule, not a traceback
    # from inside the dataflow

    from floorsight.simulators import build_plant
    from tests.conftest import T0

    plant = build_plant(2, start=T0, horizon=timedelta(minutes=10), seed=3, faults=())
    plant.write_context(tmp_path / "erp")
    orders = tmp_path / "erp" / "work_orders.csv"
    orders.write_text("\n".join(orders.read_text().splitlines()[:-1]) + "\n")
    plant.readings(T0, T0 + timedelta(minutes=1)).write_parquet(tmp_path / "readings.parquet")
    run = subprocess.run(
        [
            *(sys.executable, "-m", "floorsight.cli", "run"),
            *("--context", str(tmp_path / "erp"), "--history", str(tmp_path / "readings.parquet")),
            *("--db", str(tmp_path / "f.duckdb")),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "_TYPER_STANDARD_TRACEBACK": "1", "COLUMNS": "1000"},
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "refers to an existing work_orders.work_order" in run.stderr


def _lab_rows(windows: range) -> str:
    """Lab results of parts made in the given 10 s windows of machine M1 (bore = t / 100)."""
    rows = []
    for w in windows:
        made = T0 + timedelta(seconds=10 * w + 5)
        ready = made + timedelta(seconds=1)
        rows.append(f"S-{w},M1,WO-1,bore,{made.isoformat()},{ready.isoformat()},{w / 100}\n")
    return "".join(rows)


LAB_HEADER = "sample_id,machine_id,work_order,characteristic,part_made_at,available_at,value\n"


def _predictions_once_labels_arrive(store: ContextStore, add_labs, db: Path) -> None:
    """Run the flow on 80 windows of machine M1; ``add_labs`` books the lab results of the
    first 40 while it runs (after the first batch). The deviation model predicts nothing
    before it has learned 30 lab results, so predictions show that the labels reached it."""
    from bytewax.testing import TestingSource, run_main

    from floorsight.pipelines.flow import build_flow
    from floorsight.storage import Database

    def batch(windows: range) -> pl.DataFrame:
        # per second: the process value t and the bore it makes (bore = t / 100 per window)
        rows = []
        for w in windows:
            for s in range(10):
                rows += [("M1", "t", 10.0 * w + s, float(w)), ("M1", "bore", 10.0 * w + s, w / 100)]
        return readings(rows)

    in_use_before = []

    def arrivals():
        yield batch(range(40))
        in_use_before.append(store.current().records["lab_results"].height)
        add_labs()  # the lab's results of the first 40 windows come in
        yield batch(range(40, 80))

    run_main(build_flow(TestingSource(arrivals()), store, db))
    assert in_use_before == [0]  # the flow ran on no lab result until they were booked
    assert store.current().records["lab_results"].height == 40
    scores = Database(db).query(
        "SELECT window_start, evidence FROM scores WHERE model = 'deviation' ORDER BY 1"
    )
    predicted = scores.filter(pl.col("evidence").str.contains('"predicted"'))
    assert predicted.height > 0, scores
    # the database's copy follows the reload, for the dashboard and notebooks
    copied = Database(db).query("SELECT sample_id FROM erp_lab_results ORDER BY 1")
    assert sorted(copied["sample_id"]) == sorted(f"S-{w}" for w in range(40))


def test_lab_results_written_to_the_csv_file_while_the_flow_runs_reach_the_model(
    tmp_path,
) -> None:
    erp = tmp_path / "erp"
    erp.mkdir()
    (erp / "work_orders.csv").write_text(
        HEADER + "WO-1,M1,P-100,L1,2026-01-05T06:00:00Z,2026-01-05T08:00:00Z\n"
    )
    (erp / "spec_limits.csv").write_text(
        "product,characteristic,lsl,target,usl\nP-100,bore,0,0.5,1\n"
    )
    labs = erp / "lab_results.csv"
    labs.write_text(LAB_HEADER)

    def add_labs() -> None:
        _write(labs, LAB_HEADER + _lab_rows(range(40)))
        # and the ERP books the next order of another machine
        _write(
            erp / "work_orders.csv",
            HEADER
            + "WO-1,M1,P-100,L1,2026-01-05T06:00:00Z,2026-01-05T08:00:00Z\n"
            + "WO-2,M2,P-100,L2,2026-01-05T07:00:00Z,2026-01-05T09:00:00Z\n",
        )

    db = tmp_path / "f.duckdb"
    _predictions_once_labels_arrive(ContextStore(erp), add_labs, db)
    orders = Database(db).query("SELECT work_order FROM work_orders ORDER BY 1")
    assert orders["work_order"].to_list() == ["WO-1", "WO-2"]


def test_lab_results_inserted_in_postgresql_while_the_flow_runs_reach_the_model(
    postgres, tmp_path
) -> None:
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
        con.execute("INSERT INTO spec_limits VALUES ('P-100', 'bore', 0, 0.5, 1)")

    def add_labs() -> None:
        rows = [line.split(",") for line in _lab_rows(range(40)).splitlines()]
        with psycopg.connect(postgres, autocommit=True) as con:
            con.cursor().executemany(
                "INSERT INTO lab_results VALUES (%s, %s, %s, %s, %s, %s, %s)", rows
            )

    store = ContextStore(postgres, refresh=timedelta(0))
    _predictions_once_labels_arrive(store, add_labs, tmp_path / "f.duckdb")


def test_a_lab_result_that_arrives_after_later_ones_is_learned_once() -> None:
    """A reload can bring a lab result whose ``available_at`` is before results the model
    already learned (the lab booked it late): it is learned, and no result twice."""
    from floorsight.models.base import Context, LabResult
    from floorsight.models.deviation_monitor import DeviationModel
    from floorsight.models.machine import Segment

    def window(w: int) -> Segment:
        start = T0 + timedelta(seconds=10 * w)
        key = ("M1", start, start + timedelta(seconds=10), "WO-1", "P-100", "L1")
        return Segment(key, {"t": {"mean": float(w)}, "bore": {"mean": w / 100}})

    def lab(w: int, ready_s: float) -> LabResult:
        made = T0 + timedelta(seconds=10 * w + 5)
        return LabResult(f"S-{w}", "bore", made, T0 + timedelta(seconds=ready_s), w / 100)

    specs = {("P-100", "bore"): (0.0, 0.5, 1.0)}
    model = DeviationModel(min_labels=1)
    model.score_segments([window(w) for w in range(10)], Context("M1", specs, []))
    first = [lab(1, 60), lab(3, 62)]
    model.score_segments([window(10)], Context("M1", specs, first))
    predictor = model._predictors[("P-100", "bore")]
    assert predictor.labels == 2
    learned, learn = [], predictor.learn
    predictor.learn = lambda x, y: (learned.append(y), learn(x, y))
    # the next version of lab_results: S-2 was ready at 61 s, between the two learned ones
    later = sorted([*first, lab(2, 61), lab(4, 105)], key=lambda r: r.available_at)
    model.score_segments([window(11)], Context("M1", specs, later))
    assert learned == [0.02, 0.04]  # S-2 and S-4, not S-3 again
    model.score_segments([window(12)], Context("M1", specs, later))
    assert learned == [0.02, 0.04] and predictor.labels == 4
