"""Retention (``floorsight run --retain-days``) and compaction (``floorsight compact``).

On real DuckDB files: the sink deletes rows older than the horizon (the newest event time minus
the days kept) from every retained table and keeps the rest exactly as a run without retention
writes them; a row replayed from before the horizon is not written again; a killed and resumed
retained run converges to the uninterrupted one; compaction keeps every row and shrinks the
file. Bad ``--retain-days`` values are refused naming the value.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from floorsight.alerts.tables import ALERTS, INCIDENTS
from floorsight.cli import app
from floorsight.pipelines.flow import TABLES
from floorsight.pipelines.sink import DuckDBSink
from floorsight.pipelines.tables import PART_COUNTS
from floorsight.records import FaultKind
from floorsight.retention import (
    NOT_RETAINABLE,
    TIME_COLUMNS,
    Retainer,
    Retention,
    RetentionError,
    compact,
    parse_retain_days,
)
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.history import write_history
from floorsight.storage import Database
from tests.conftest import T0
from tests.test_run_cluster_recovery import _run, kill_after_features

#: 0.02 days = 28.8 minutes of a two-hour history: most rows are older than the horizon
DAYS = 0.02
#: columns that say when a row was written, not what it holds
VOLATILE = {"received_at", "validated_at"}


# -- the values ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("featurez=3", "'featurez'"),
        ("features=-1", "-1"),
        ("features=0", "0"),
        ("features=abc", "'abc'"),
        ("all=nan", "nan"),
        ("features", "'features'"),
        ("work_orders=3", "'work_orders'"),
        ("erp_lab_results=3", "'erp_lab_results'"),
    ],
)
def test_a_bad_value_is_refused_naming_it(value, named, tmp_path) -> None:
    with pytest.raises(RetentionError, match="--retain-days") as err:
        parse_retain_days([value])
    assert named in str(err.value) and value in str(err.value)
    # the command refuses it before it starts, naming the option and the value
    result = CliRunner().invoke(
        app,
        [
            *("run", "--history", str(tmp_path), "--context", str(tmp_path)),
            *("--db", str(tmp_path / "x.duckdb"), "--retain-days", value),
        ],
    )
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.replace("│", " ").split())
    assert "--retain-days" in flat and named in flat
    assert not (tmp_path / "x.duckdb").exists()


def test_all_sets_every_time_series_table_and_a_table_overrides_it() -> None:
    retention = parse_retain_days(["all=30", "features=7"])
    assert retention is not None
    assert retention.days["features"] == 7 and retention.days["alerts"] == 30
    assert set(retention.days) == set(TIME_COLUMNS)
    assert parse_retain_days([]) is None


def test_every_table_the_pipeline_writes_is_either_retainable_or_not() -> None:
    # a new table must say which column is its event time, or that it has none
    names = {t.name for t in TABLES}
    assert names <= set(TIME_COLUMNS) | NOT_RETAINABLE, names - set(TIME_COLUMNS)
    for spec in TABLES:
        for column in TIME_COLUMNS.get(spec.name, ()):
            assert "TIMESTAMP" in dict(spec.schema)[column].upper(), (spec.name, column)


# -- the sink on a real file -----------------------------------------------------------------
def _counts(start: datetime, minutes: int, machine: str = "M01") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "machine_id": [machine] * minutes,
            "signal": ["good_count"] * minutes,
            "ts": [start + timedelta(minutes=i) for i in range(minutes)],
            "counter": list(range(minutes)),
            "parts": [1] * minutes,
            "reset": [False] * minutes,
        },
        schema=PART_COUNTS.polars_schema,
    )


def _sink(path: Path, days: float, batch_rows: int) -> DuckDBSink:
    # every flush a retention pass, however long the last one took
    retention = Retention(
        {"part_counts": days}, every_flushes=1, batch_rows=batch_rows, max_share=None
    )
    return DuckDBSink(path, [PART_COUNTS], flush_interval=timedelta(0), retention=retention)


def _stored(path: Path) -> pl.DataFrame:
    return Database(path).query("SELECT * FROM part_counts ORDER BY ts")


def test_the_sink_deletes_in_bounded_passes_and_keeps_what_is_newer(tmp_path) -> None:
    db = tmp_path / "plant.duckdb"
    day = timedelta(days=1)
    part = _sink(db, days=1, batch_rows=100).build_part("duckdb", str(db), None)
    part.write_batch([("part_counts", _counts(T0, 600))])  # 10 hours of day 1
    part.snapshot()  # a recovery snapshot flushes, and the flush runs a retention pass
    assert _stored(db).height == 600
    # day 3 moves the watermark: day 1's 600 rows are older than the horizon (day 2)
    part.write_batch([("part_counts", _counts(T0 + 2 * day, 60))])
    part.snapshot()
    assert part.retainer.stats.deleted == {"part_counts": 100}, "one pass: one bounded batch"
    assert _stored(db).height == 660 - 100
    part.close()  # the end of the run works the backlog off
    stored = _stored(db)
    horizon = part.retainer.horizon("part_counts")
    assert horizon == T0 + 2 * day + timedelta(minutes=59) - day
    assert stored.height == 60 and stored["ts"].min() >= horizon
    assert_frame_equal(stored, _counts(T0 + 2 * day, 60))
    assert part.retainer.stats.passes > 1 and part.retainer.backlog == set()


def test_a_replayed_row_older_than_the_horizon_stays_deleted(tmp_path) -> None:
    db = tmp_path / "plant.duckdb"
    day = timedelta(days=1)
    sink = _sink(db, days=1, batch_rows=10_000)
    part = sink.build_part("duckdb", str(db), None)
    part.write_batch([("part_counts", _counts(T0, 60)), ("part_counts", _counts(T0 + 2 * day, 60))])
    part.close()
    assert _stored(db).height == 60
    # a restarted sink (recovery replays the items since the last snapshot, old ones among
    # them): the watermark comes from the file, so day 1 is not written again
    part = sink.build_part("duckdb", str(db), None)
    part.write_batch([("part_counts", _counts(T0, 60)), ("part_counts", _counts(T0 + day, 120))])
    part.close()
    stored = _stored(db)
    # the horizon is day 2 + 59 min: day 1, and day 2's first 59 minutes are not written
    assert part.retainer.stats.dropped == 60 + 59
    assert stored["ts"].min() == T0 + day + timedelta(minutes=59)
    assert stored.height == 60 + 61


def _alerts(ids_and_days: list[tuple[str, float]]) -> pl.DataFrame:
    """Open alerts of M1, each last seen ``days`` after T0."""
    rows = []
    for alert_id, days in ids_and_days:
        seen = T0 + timedelta(days=days)
        rows.append(
            {
                **dict.fromkeys(("machine_id", "cause", "severity"), "x"),
                "alert_id": alert_id,
                "status": "open",
                **dict.fromkeys(("first_seen", "raised_at", "last_seen"), seen),
                "cleared_at": seen,
                "score": 1.0,
                "windows": 3,
                **dict.fromkeys(("reason", "evidence", "work_order", "product"), "x"),
                "material_lot": "x",
            }
        )
    return pl.DataFrame(rows, schema=ALERTS.polars_schema)


def _incident(incident_id: str, alert_ids: list[str], days: float) -> pl.DataFrame:
    seen = T0 + timedelta(days=days)
    row = {
        "incident_id": incident_id,
        "machine_id": "M1",
        "causes": "x",
        "alert_ids": ",".join(alert_ids),
        "alerts": len(alert_ids),
        "severity": "warning",
        "first_seen": seen,
        "last_seen": seen,
        "closed_at": seen,
        "score": 1.0,
        "windows": 3,
        **dict.fromkeys(("work_order", "product", "material_lot"), "x"),
    }
    return pl.DataFrame([row], schema=INCIDENTS.polars_schema)


def test_alerts_nobody_resolved_stay_and_incidents_go_with_their_last_alert(tmp_path) -> None:
    from floorsight.alerts.lifecycle import acknowledge, resolve

    db = tmp_path / "plant.duckdb"
    retention = Retention(
        {"alerts": 1, "incidents": 1}, every_flushes=1, batch_rows=100, max_share=None
    )
    sink = DuckDBSink(db, [ALERTS, INCIDENTS], flush_interval=timedelta(0), retention=retention)
    part = sink.build_part("duckdb", str(db), None)
    old = [("resolved", 0), ("acked", 0), ("open", 0), ("also-resolved", 0)]
    part.write_batch(
        [
            ("alerts", _alerts(old)),
            ("incidents", _incident("i-done", ["resolved", "also-resolved"], 0)),
            ("incidents", _incident("i-half", ["resolved", "acked"], 0)),
        ]
    )
    part.close()
    # people handle some: what they resolved may go, the rest is open work
    resolve(db, "resolved", "ana", "bearing replaced", "true_problem")
    resolve(db, "also-resolved", "ana", "noise", "false_alarm")
    acknowledge(db, "acked", "ben")
    part = sink.build_part("duckdb", str(db), None)
    # day 3 moves the watermark: every row of day 0 is older than the horizon (day 2)
    part.write_batch([("alerts", _alerts([("new", 3)]))])
    part.close()
    stored = Database(db).query("SELECT alert_id, status FROM alerts ORDER BY alert_id")
    assert stored.rows() == [("acked", "acknowledged"), ("new", "open"), ("open", "open")]
    incidents = Database(db).query("SELECT incident_id FROM incidents")["incident_id"]
    assert incidents.to_list() == ["i-half"], "an incident stays while one of its alerts does"
    assert part.retainer.stats.deleted == {"alerts": 2, "incidents": 1}


def test_without_retention_nothing_is_deleted(tmp_path) -> None:
    db = tmp_path / "plant.duckdb"
    sink = DuckDBSink(db, [PART_COUNTS], flush_interval=timedelta(0))
    part = sink.build_part("duckdb", str(db), None)
    part.write_batch(
        [("part_counts", _counts(T0, 60)), ("part_counts", _counts(T0 + timedelta(days=400), 6))]
    )
    part.close()
    assert _stored(db).height == 66


def test_delivered_notifications_older_than_the_alerts_retention_leave_the_outbox(tmp_path):
    from floorsight.alerts.outbox import Outbox

    outbox = Outbox(tmp_path / "o.sqlite")
    now = datetime.now(tz=UTC)
    for key, age in (("old", 40), ("new", 1)):
        outbox.enqueue("ops", key, {"alert": key}, now=now - timedelta(days=age))
    outbox.enqueue("ops", "stuck", {"alert": "stuck"}, now=now - timedelta(days=90))
    outbox.deliver({"ops": lambda destination, payload: None}, now=now - timedelta(days=40))
    # "old" and "stuck" were delivered 40 days ago; "new" is queued only since yesterday
    outbox.deliver({"ops": lambda destination, payload: None}, now=now)
    assert outbox.totals()["delivered"] == 3
    assert outbox.remove_delivered(timedelta(days=30), now=now) == 2
    assert not outbox.has("old") and not outbox.has("stuck") and outbox.has("new")
    outbox.close()


# -- whole runs --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("history")
    opts = PlantOptions(
        machines=3,
        start=T0,
        horizon=timedelta(hours=2),
        seed=8,
        faults_per_machine_day=24,
        fault_kinds=(FaultKind.PROCESS_UPSET, FaultKind.TOOL_WEAR, FaultKind.SENSOR_SPIKES),
    )
    write_history(make_plant(opts), out, T0, T0 + opts.horizon)
    return out


def _tables(db: Path) -> dict[str, pl.DataFrame]:
    database = Database(db, TABLES)
    out = {}
    for spec in TABLES:
        if spec.name not in TIME_COLUMNS or spec.name == "validation_results":
            continue
        out[spec.name] = database.query(f"SELECT * FROM {spec.name}").sort(spec.key)
    return out


def _stable(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop([c for c in frame.columns if c in VOLATILE])


def _time(table: str) -> pl.Expr:
    columns = TIME_COLUMNS[table]
    return pl.coalesce(columns) if len(columns) > 1 else pl.col(columns[0])


@pytest.fixture(scope="module")
def full(history, tmp_path_factory) -> tuple[dict[str, pl.DataFrame], datetime]:
    """The tables of a run without retention, and the horizon a retained run ends with."""
    db = tmp_path_factory.mktemp("full") / "full.duckdb"
    _run(history, db)
    retainer = Retainer(Retention({t: DAYS for t in TIME_COLUMNS}))
    with Database(db).write() as con:
        retainer.load(con)
    return _tables(db), retainer.horizon("features")


def _kept_whatever_their_age(table: str, full: dict[str, pl.DataFrame]) -> pl.Expr:
    """The rows of ``table`` that retention keeps however old (KEPT_WHILE): alerts nobody has
    resolved, incidents with an alert left."""
    if table == "alerts":
        return pl.col("status") != "resolved"
    if table == "incidents":
        kept = full["alerts"].filter(pl.col("status") != "resolved")["alert_id"]
        ids = pl.col("alert_ids").str.split(",")
        return ids.list.eval(pl.element().is_in(kept.implode())).list.any()
    return pl.lit(False)


def _assert_retained(got: dict[str, pl.DataFrame], full, horizon: datetime) -> None:
    for table, frame in full.items():
        kept = _kept_whatever_their_age(table, full)
        older = got[table].filter((_time(table) < horizon) & ~kept)
        assert older.height == 0, f"{table}: {older.height} rows older than {horizon}"
        expected = frame.filter(_time(table).is_null() | (_time(table) >= horizon) | kept)
        (
            assert_frame_equal(
                _stable(got[table]), _stable(expected), check_exact=False, rel_tol=1e-9
            ),
            table,
        )
    deleted = sum(f.height for f in full.values()) - sum(f.height for f in got.values())
    assert deleted > full["features"].height // 2, "most of the history is past the horizon"


@pytest.mark.e2e
def test_a_retained_run_keeps_exactly_the_rows_within_the_horizon_and_compacts(
    history, full, tmp_path
) -> None:
    tables, horizon = full
    assert tables["features"].height > 10_000 and tables["alerts"].height > 0
    db = tmp_path / "retained.duckdb"
    _run(history, db, "--retain-days", f"all={DAYS}")
    retained = _tables(db)
    _assert_retained(retained, tables, horizon)
    assert retained["alerts"].height > 0, "the last half hour keeps alerts to compare"

    report = compact(db)
    assert report.bytes_after < report.bytes_before
    assert report.rows["features"] == retained["features"].height
    compacted = _tables(db)
    for table, frame in retained.items():
        assert_frame_equal(compacted[table], frame), table
    assert not db.with_name(db.name + ".compact").exists()
    # the compacted file is the pipeline's file still: a run goes on writing into it
    _run(history, db, "--retain-days", f"all={DAYS}")
    for table, frame in _tables(db).items():
        (
            assert_frame_equal(
                _stable(frame), _stable(retained[table]), check_exact=False, rel_tol=1e-9
            ),
            table,
        )


@pytest.mark.e2e
def test_a_retained_run_killed_and_resumed_converges(history, full, tmp_path) -> None:
    tables, horizon = full
    db, rec = tmp_path / "crash.duckdb", tmp_path / "recovery"
    args = ("--recovery", str(rec), "--snapshot-s", "0.2", "--batch-rows", "2000")
    args += ("--retain-days", f"all={DAYS}")
    assert kill_after_features(_run(history, db, *args, check=False), db) > 0
    out = _run(history, db, *args)
    assert any("resuming at file" in line for line in out.splitlines()), out[-2000:]
    _assert_retained(_tables(db), tables, horizon)


def test_compact_refuses_a_missing_file_naming_it(tmp_path) -> None:
    result = CliRunner().invoke(app, ["compact", "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2
    assert "none.duckdb" in " ".join(result.output.replace("│", " ").split())


def test_backup_copies_every_row_and_leaves_the_file_as_it_is(tmp_path) -> None:
    db, copy = tmp_path / "plant.duckdb", tmp_path / "backup.duckdb"
    part = _sink(db, days=30, batch_rows=100).build_part("duckdb", str(db), None)
    part.write_batch([("part_counts", _counts(T0, 600))])
    part.close()
    before = db.read_bytes()
    result = CliRunner().invoke(app, ["backup", "--db", str(db), "--out", str(copy)])
    assert result.exit_code == 0, result.output
    assert db.read_bytes() == before
    assert_frame_equal(_stored(copy), _stored(db))
    # a backup never overwrites
    again = CliRunner().invoke(app, ["backup", "--db", str(db), "--out", str(copy)])
    assert again.exit_code == 2 and "backup.duckdb" in again.output.replace("\n", "")


@pytest.mark.e2e
def test_compaction_while_the_pipeline_writes_loses_nothing(history, full, tmp_path) -> None:
    tables, horizon = full
    db = tmp_path / "live.duckdb"
    proc = _run(history, db, "--batch-rows", "2000", "--retain-days", f"all={DAYS}", check=False)
    reports = []
    while proc.poll() is None and len(reports) < 2:
        time.sleep(0.3)
        if db.exists():  # it waits for the sink's lock, as the sink then waits for it
            reports.append(compact(db))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert len(reports) == 2, "the run ended before it was compacted twice; make it longer"
    # the sink waited while each copy held the file, then wrote into the compacted file
    _assert_retained(_tables(db), tables, horizon)


def test_a_clusters_processes_get_the_same_retention() -> None:
    from floorsight.runner import RunConfig

    cfg = RunConfig(
        history=Path("h"), context=Path("erp"), db=Path("f.duckdb"), retain_days=["all=30"]
    )
    args = cfg.args()  # what `run --processes N` starts each process with
    assert args[args.index("--retain-days") + 1] == "all=30"
    assert "--retain-days" not in RunConfig(history=Path("h"), context="erp", db=Path("f")).args()
