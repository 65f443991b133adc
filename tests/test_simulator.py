"""The simulated plant: deterministic for a seed, consistent ERP/MES context, history files.

What each fault does to the signals is tested in test_plant_faults.py.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.records import FaultKind
from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators import build_plant
from floorsight.simulators.erp import erp_tables
from floorsight.simulators.history import write_history
from floorsight.simulators.plant import LAB_DELAY_H
from tests.conftest import T0

KEY = ["machine_id", "sensor", "ts"]


def _options(seed: int, **kw) -> PlantOptions:
    defaults = {"machines": 3, "start": T0, "horizon": timedelta(days=2), "seed": seed}
    return PlantOptions(**{**defaults, "faults_per_machine_day": 2.0, **kw})


def test_same_seed_same_readings_however_the_range_is_cut() -> None:
    a = build_plant(3, start=T0, horizon=timedelta(minutes=20), seed=5)
    b = build_plant(3, start=T0, horizon=timedelta(minutes=20), seed=5)
    whole = a.readings(T0, T0 + timedelta(minutes=10))
    parts = pl.concat(
        [
            b.readings(T0 + timedelta(seconds=s), T0 + timedelta(seconds=s + 7))
            for s in range(0, 600, 7)
        ]
    ).filter(pl.col("ts") < T0 + timedelta(minutes=10))
    assert_frame_equal(whole.sort(KEY), parts.sort(KEY))
    c = build_plant(3, start=T0, horizon=timedelta(minutes=20), seed=6)
    other = c.readings(T0, T0 + timedelta(minutes=1))
    assert not other["value"].equals(a.readings(T0, T0 + timedelta(minutes=1))["value"])


def test_same_seed_same_plant_context_and_truth() -> None:
    a, b = make_plant(_options(11)), make_plant(_options(11))
    assert len(a.faults) > 3 and a.faults == b.faults
    assert {str(f.kind) for f in a.faults} >= {"bearing_wear", "tool_wear"} or len(a.faults) > 5
    for name, frame in erp_tables(a).items():
        assert_frame_equal(frame, erp_tables(b)[name], check_row_order=True), name
    assert_frame_equal(a.ground_truth_frame(), b.ground_truth_frame())
    assert_frame_equal(a.states(), b.states())
    assert_frame_equal(a.parts, b.parts)
    t = T0 + timedelta(hours=30)
    assert_frame_equal(
        a.readings(t, t + timedelta(minutes=5)), b.readings(t, t + timedelta(minutes=5))
    )
    c = make_plant(_options(12))
    assert c.faults != a.faults
    assert not erp_tables(c)["work_orders"].equals(erp_tables(a)["work_orders"])


def test_two_machine_types_with_their_sensors_rates_and_states() -> None:
    plant = build_plant(3, start=T0, horizon=timedelta(hours=6), seed=1)
    types = {m.machine_id: (m.line, m.machine_type) for m in plant.machines}
    assert types == {
        "M01": ("L1", "cnc"),
        "M02": ("L1", "cnc"),
        "M03": ("L2", "injection_moulding"),
    }
    r = plant.readings(T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    per_sensor = r.group_by("machine_id", "sensor").len()
    im = dict(per_sensor.filter(pl.col("machine_id") == "M03").select("sensor", "len").iter_rows())
    assert {"injection_pressure_bar", "cooling_flow_l_min", "cycle_time_s", "part_weight_g"} <= set(
        im
    )
    # per-cycle signals are sampled at 1 Hz against 10 Hz, and hold one value per cycle
    assert im["cycle_time_s"] * 10 == im["barrel_temp_c"]
    weight = r.filter((pl.col("machine_id") == "M03") & (pl.col("sensor") == "part_weight_g"))
    assert weight["value"].n_unique() < weight.height / 20
    states = set(plant.states()["state"])
    assert {"running", "setup"} <= states
    # readings only while running
    segs = plant.states().filter(pl.col("state") != "running")
    for s in segs.iter_rows(named=True):
        inside = r.filter(
            (pl.col("machine_id") == s["machine_id"])
            & pl.col("ts").is_between(s["start"], s["end"], closed="left")
        )
        assert inside.height == 0


def test_counters_and_context_are_consistent() -> None:
    plant = make_plant(_options(3, fault_kinds=(FaultKind.TOOL_WEAR, FaultKind.BEARING_WEAR)))
    tables = erp_tables(plant)
    parts = plant.parts
    # counters never go down and equal the parts made so far
    last = None
    for hours in range(0, 48, 6):
        status = plant.status_at(T0 + timedelta(hours=hours)).sort("machine_id")
        made = parts.filter(pl.col("ts") <= T0 + timedelta(hours=hours))
        assert status["good_parts"].sum() + status["scrap_parts"].sum() == made.height
        assert status["good_parts"].sum() == made["good"].sum()
        if last is not None:
            assert (status["good_parts"] >= last["good_parts"]).all()
        last = status
    # genealogy: lot -> batch -> customer order, with matching products
    batches, genealogy = tables["batches"], tables["genealogy"]
    assert set(genealogy["material_lot"]) <= set(tables["material_lots"]["lot_id"])
    assert set(genealogy["batch_id"]) == set(batches["batch_id"])
    co = batches.join(tables["customer_orders"], on="customer_order", suffix="_co")
    assert co.height == batches.height and (co["product"] == co["product_co"]).all()
    assert batches["good_parts"].sum() + batches["scrap_parts"].sum() == parts.height
    # lab results are delayed labels close to the parts' true values
    lab = tables["lab_results"].join(
        parts.select(
            "machine_id", pl.col("ts").alias("part_made_at"), pl.col("value").alias("true")
        ),
        on=["machine_id", "part_made_at"],
    )
    assert lab.height == tables["lab_results"].height > 50
    delay_h = (lab["available_at"] - lab["part_made_at"]).dt.total_seconds() / 3600
    assert delay_h.min() >= LAB_DELAY_H[0] and delay_h.max() <= LAB_DELAY_H[1]
    assert ((lab["value"] - lab["true"]).abs() < 0.1).all()
    # every failure and tool change is in the maintenance log, with planned maintenance
    log = tables["maintenance_log"]
    kinds = set(log["kind"])
    assert {"planned_maintenance", "tool_change"} <= kinds
    for f in plant.truth():
        if f.failure_at is not None:
            assert (
                log.filter((pl.col("kind") == "failure") & (pl.col("start") == f.failure_at)).height
                == 1
            )
    # spec limits and recipes for every product of both types
    assert set(tables["spec_limits"]["characteristic"]) == {"bore_diameter_mm", "part_weight_g"}
    assert tables["recipes"].group_by("product").len().height == tables["products"].height


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_history_files_hold_what_the_plant_generates(tmp_path, fmt) -> None:
    plant = make_plant(_options(5, machines=2, horizon=timedelta(hours=30), sample_hz=2))
    end = T0 + timedelta(hours=30)
    stats = write_history(plant, tmp_path, T0, end, fmt=fmt)
    files = sorted((tmp_path / "readings").iterdir())
    assert [f.name for f in files] == [f"2026-01-05.{fmt}", f"2026-01-06.{fmt}"]
    read = pl.read_parquet if fmt == "parquet" else lambda p: pl.read_csv(p, try_parse_dates=True)
    got = pl.concat([read(f) for f in files]).with_columns(pl.col("ts").dt.convert_time_zone("UTC"))
    assert stats.readings == got.height
    expected = plant.readings(T0, end)
    assert_frame_equal(got.sort(KEY), expected.sort(KEY), check_dtypes=False)
    assert got["ts"].is_sorted()
    truth = read(tmp_path / "truth" / f"faults.{fmt}")
    assert truth.height == len(plant.faults) == stats.faults > 0
    with duckdb.connect(str(tmp_path / "erp.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.sql("SHOW TABLES").fetchall()}
        n = con.sql("SELECT count(*) FROM work_orders").fetchall()[0][0]
    assert {"work_orders", "batches", "genealogy", "customer_orders", "lab_results"} <= tables
    assert n == len(plant.work_orders)
    assert (tmp_path / "erp" / "work_orders.csv").exists()
    assert (tmp_path / "erp" / "work_orders.parquet").exists()
