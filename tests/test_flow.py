"""The whole dataflow on a simulated plant: features, scores, alerts and dead letters in DuckDB."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from bytewax.testing import TestingSource, run_main

from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.validate import ReadingRules
from floorsight.records import READING_SCHEMA, SIGNAL_SCHEMA, FaultKind, Signals
from floorsight.simulators import PRODUCTS, Fault, build_plant
from floorsight.storage import Database
from tests.conftest import T0

FAULT = Fault(
    "F-1", "M02", FaultKind.PROCESS_UPSET, T0 + timedelta(minutes=20), timedelta(minutes=5)
)


@pytest.fixture(scope="module")
def plant():
    return build_plant(3, start=T0, horizon=timedelta(minutes=30), seed=2, faults=(FAULT,))


def _batches(plant) -> list[pl.DataFrame]:
    out, t = [], T0
    while t < T0 + timedelta(minutes=30):
        out.append(plant.readings(t, t + timedelta(seconds=10)))
        t += timedelta(seconds=10)
    bad = pl.DataFrame(
        {
            "machine_id": ["M01", "M01"],
            "sensor": ["vibration_mm_s", "spindle_temp_c"],
            "ts": [T0 + timedelta(minutes=1)] * 2,
            "value": [float("nan"), 1e9],
        },
        schema=READING_SCHEMA,
    )
    out.insert(5, bad)
    return out


def _run(plant, tmp_path, db_path) -> Database:
    plant.write_context(tmp_path / "erp")
    settings = PipelineSettings(
        rules=ReadingRules(
            max_future=timedelta(days=36500), ranges={"spindle_temp_c": (-50.0, 400.0)}
        )
    )
    flow = build_flow(
        TestingSource(_batches(plant)), ContextStore(tmp_path / "erp"), db_path, settings
    )
    run_main(flow)
    return Database(db_path)


def test_flow_writes_features_scores_alerts_and_dead_letters(plant, tmp_path) -> None:
    db = _run(plant, tmp_path, tmp_path / "f.duckdb")
    per_machine = db.query(
        "SELECT machine_id, count(*) AS n, sum(n) AS readings FROM features "
        "WHERE sensor = 'vibration_mm_s' GROUP BY 1 ORDER BY 1"
    )
    # 30 minutes of 10 s windows, every reading of the sensor counted once
    assert per_machine["machine_id"].to_list() == ["M01", "M02", "M03"]
    assert per_machine["readings"].to_list() == [18_000] * 3
    assert db.query("SELECT count(*) AS n FROM features WHERE work_order = ''")["n"][0] == 0

    alerts = db.query("SELECT * FROM alerts")
    assert alerts["machine_id"].to_list() == ["M02"]
    alert = alerts.row(0, named=True)
    assert FAULT.start <= alert["raised_at"] <= FAULT.end
    expected_wo = plant.work_orders_frame().filter(
        (pl.col("machine_id") == "M02")
        & (pl.col("start") <= alert["first_seen"])
        & (pl.col("end") > alert["first_seen"])
    )["work_order"][0]
    assert alert["work_order"] == expected_wo
    assert "spindle_current_a" in alert["evidence"] or "bore_diameter_mm" in alert["evidence"]

    dead = db.query("SELECT reason FROM dead_letters ORDER BY reason")["reason"].to_list()
    assert dead == ["spindle_temp_c = 1000000000.0 outside [-50.0, 400.0]", "value is NaN"]
    assert db.query("SELECT count(*) AS n FROM spec_limits")["n"][0] == len(PRODUCTS)


def test_running_the_same_input_twice_changes_nothing(plant, tmp_path) -> None:
    db = _run(plant, tmp_path, tmp_path / "g.duckdb")
    tables = ["features", "scores", "alerts", "dead_letters"]
    first = {t: db.query(f"SELECT * FROM {t}").sort(pl.all()) for t in tables}
    db = _run(plant, tmp_path, tmp_path / "g.duckdb")
    for t in tables:
        again = db.query(f"SELECT * FROM {t}").sort(pl.all())
        assert again.height == first[t].height, t
        if t != "dead_letters":  # received_at is the arrival time
            assert again.equals(first[t]), t


def test_changeover_hand_computed_windows_and_late_data_through_the_flow(tmp_path) -> None:
    from floorsight.pipelines.context import SPEC_SCHEMA, WORK_ORDER_SCHEMA
    from tests.conftest import readings

    erp = tmp_path / "erp"
    erp.mkdir()
    pl.DataFrame(
        {
            "work_order": ["WO-1", "WO-2"],
            "machine_id": ["M1", "M1"],
            "product": ["A", "B"],
            "material_lot": ["L1", "L2"],
            "start": [T0, T0 + timedelta(seconds=10)],
            "end": [T0 + timedelta(seconds=10), T0 + timedelta(hours=1)],
        },
        schema=WORK_ORDER_SCHEMA,
    ).write_csv(erp / "work_orders.csv")
    # a context needs spec limits; these are of a characteristic this machine does not measure
    pl.DataFrame(
        {"product": ["A"], "characteristic": ["w"], "lsl": [0.0], "target": [1.0], "usl": [2.0]},
        schema=SPEC_SCHEMA,
    ).write_csv(erp / "spec_limits.csv")
    batches = [
        # WO-1 until 10 s, WO-2 from 10 s: the changeover at event time splits the readings
        readings([("M1", "v", t, float(t)) for t in range(10)] + [("M1", "v", 10.0, 110.0)]),
        # 8.5 s is out of order but inside the 2 s lateness (watermark 10 - 2 = 8): counted
        readings([("M1", "v", 8.5, 50.0), ("M1", "v", 11.0, 111.0), ("M1", "v", 12.5, 112.5)]),
        # window [0, 10) closed when the watermark passed 10 s: 9.9 s is too late
        readings([("M1", "v", 9.9, 77.0), ("M1", "v", 25.0, 125.0)]),
    ]
    db_path = tmp_path / "f.duckdb"
    settings = PipelineSettings(
        window=timedelta(seconds=10),
        lateness=timedelta(seconds=2),
        rules=ReadingRules(max_future=timedelta(days=3650)),
    )
    run_main(build_flow(TestingSource(batches), ContextStore(erp), db_path, settings))
    db = Database(db_path)
    f = db.query(
        "SELECT window_start, work_order, product, material_lot, n, mean, min, max, last "
        "FROM features ORDER BY window_start"
    )
    first = [*range(10), 50.0]
    assert f.rows() == [
        (T0, "WO-1", "A", "L1", 11, sum(first) / 11, 0.0, 50.0, 9.0),
        (
            T0 + timedelta(seconds=10),
            "WO-2",
            "B",
            "L2",
            3,
            (110 + 111 + 112.5) / 3,
            110.0,
            112.5,
            112.5,
        ),
        (T0 + timedelta(seconds=20), "WO-2", "B", "L2", 1, 125.0, 125.0, 125.0, 125.0),
    ]
    dead = db.query("SELECT ts, value, reason FROM dead_letters")
    assert dead.height == 1 and dead["value"][0] == 77.0
    assert dead["reason"][0].startswith("late: event time is behind a closed window")


def test_a_bearing_failure_is_alerted_hours_ahead_with_its_cause(tmp_path) -> None:
    wear = Fault(
        "F-B",
        "M01",
        FaultKind.BEARING_WEAR,
        T0 + timedelta(hours=1),
        timedelta(hours=4),
        downtime=timedelta(hours=1),
    )
    plant = build_plant(
        2,
        start=T0,
        horizon=timedelta(hours=6),
        seed=7,
        sample_hz=1,
        faults=(wear,),
        machine_types=("cnc",),
        idle_share=0.0,
    )
    plant.write_context(tmp_path / "erp")
    batches, t = [], T0
    while t < T0 + timedelta(hours=6):
        batches.append(plant.readings(t, t + timedelta(minutes=10)))
        t += timedelta(minutes=10)
    db_path = tmp_path / "f.duckdb"
    settings = PipelineSettings(rules=ReadingRules(max_future=timedelta(days=3650)))
    run_main(build_flow(TestingSource(batches), ContextStore(tmp_path / "erp"), db_path, settings))
    risk = Database(db_path).query(
        "SELECT machine_id, raised_at, reason FROM alerts WHERE cause = 'failure_risk'"
    )
    assert set(risk["machine_id"]) == {"M01"}  # none on the healthy machine
    first = risk["raised_at"].min()
    assert wear.start < first < wear.end - timedelta(hours=1)  # at least an hour ahead
    assert "failure risk" in risk["reason"][0]


def test_an_alert_raised_during_a_setup_from_the_floor_is_muted(plant, tmp_path) -> None:
    """The floor says M02 is in a changeover over the upset: the state changes reach the score
    step, and the upset's alert is written muted (severity info, the reason says why)."""
    plant.write_context(tmp_path / "erp")
    states = pl.DataFrame(
        {
            "machine_id": ["M02", "M02"],
            "signal": ["state", "state"],
            "ts": [T0 + timedelta(minutes=19), T0 + timedelta(minutes=26)],
            "value": [None, None],
            "text": ["changeover", "running"],
        },
        schema=SIGNAL_SCHEMA,
    )
    batches: list = _batches(plant)
    batches.insert(6, Signals(states))
    settings = PipelineSettings(rules=ReadingRules(max_future=timedelta(days=36500)))
    db_path = tmp_path / "m.duckdb"
    run_main(build_flow(TestingSource(batches), ContextStore(tmp_path / "erp"), db_path, settings))
    db = Database(db_path)
    alerts = db.query("SELECT machine_id, severity, reason, raised_at FROM alerts")
    assert alerts["machine_id"].to_list() == ["M02"]
    alert = alerts.row(0, named=True)
    assert alert["severity"] == "info"
    assert "muted: during setup" in alert["reason"], alert["reason"]
    incidents = db.query("SELECT machine_id, causes, severity FROM incidents")
    assert incidents.rows() == [("M02", "anomaly", "info")]
