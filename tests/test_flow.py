"""The whole dataflow on a simulated plant: features, scores, alerts and dead letters in DuckDB."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from bytewax.testing import TestingSource, run_main

from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.validate import ReadingRules
from floorsight.records import READING_SCHEMA, FaultKind
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
