"""The simulator is deterministic for a seed and its faults change the signals they should."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.records import FaultKind
from floorsight.simulators import Fault, build_plant
from tests.conftest import T0


def test_same_seed_same_readings_however_the_range_is_cut() -> None:
    a = build_plant(2, start=T0, horizon=timedelta(minutes=20), seed=5)
    b = build_plant(2, start=T0, horizon=timedelta(minutes=20), seed=5)
    whole = a.readings(T0, T0 + timedelta(minutes=10))
    parts = pl.concat(
        [
            b.readings(T0 + timedelta(seconds=s), T0 + timedelta(seconds=s + 7))
            for s in range(0, 600, 7)
        ]
    ).filter(pl.col("ts") < T0 + timedelta(minutes=10))
    key = ["machine_id", "sensor", "ts"]
    assert_frame_equal(whole.sort(key), parts.sort(key))
    assert a.work_orders == b.work_orders and a.faults == b.faults
    c = build_plant(2, start=T0, horizon=timedelta(minutes=20), seed=6)
    assert not c.readings(T0, T0 + timedelta(minutes=1)).equals(whole.head(0))
    assert not c.readings(T0, T0 + timedelta(minutes=1))["value"].equals(
        a.readings(T0, T0 + timedelta(minutes=1))["value"]
    )


@pytest.mark.parametrize(
    ("kind", "sensor"),
    [
        (FaultKind.BEARING_WEAR, "vibration_mm_s"),
        (FaultKind.PROCESS_UPSET, "spindle_current_a"),
        (FaultKind.TOOL_WEAR, "bore_diameter_mm"),
    ],
)
def test_fault_changes_its_signal_from_its_start_on_only(kind, sensor) -> None:
    fault = Fault("F", "M01", kind, T0 + timedelta(minutes=10), timedelta(minutes=10))
    clean = build_plant(2, start=T0, horizon=timedelta(minutes=30), seed=1, faults=())
    faulty = build_plant(2, start=T0, horizon=timedelta(minutes=30), seed=1, faults=(fault,))
    diff = (
        faulty.readings(T0, T0 + timedelta(minutes=25))
        .join(clean.readings(T0, T0 + timedelta(minutes=25)), on=["machine_id", "sensor", "ts"])
        .with_columns(d=pl.col("value") - pl.col("value_right"))
    )
    changed = diff.filter(pl.col("d").abs() > 1e-12)
    assert set(changed["machine_id"]) == {"M01"}
    assert sensor in set(changed["sensor"])
    assert set(changed["sensor"]) == set(fault.sensors)
    assert changed["ts"].min() >= fault.start
    assert changed["ts"].max() < fault.end
    # by the end of the fault the effect is large against the sensor's noise
    late = changed.filter(
        (pl.col("sensor") == sensor) & (pl.col("ts") > fault.end - timedelta(minutes=1))
    )
    assert (
        late["d"].abs().mean()
        > 3 * {"vibration_mm_s": 0.08, "spindle_current_a": 0.15, "bore_diameter_mm": 0.003}[sensor]
    )


def test_ground_truth_and_context_files(tmp_path) -> None:
    plant = build_plant(3, start=T0, horizon=timedelta(hours=2), seed=2)
    plant.write_context(tmp_path)
    truth = pl.read_csv(tmp_path / "faults.csv")
    assert truth.height == 1 and truth["kind"][0] == "bearing_wear"
    wo = pl.read_csv(tmp_path / "work_orders.csv", try_parse_dates=True)
    # every machine is covered by work orders from before the start to past the horizon
    cover = wo.group_by("machine_id").agg(pl.col("start").min(), pl.col("end").max())
    assert cover.height == 3
    assert (cover["start"] <= T0).all() and (cover["end"] >= T0 + timedelta(hours=2)).all()
