"""Every fault kind changes the signal it should, from its recorded start on, on both machine types.

Each test builds the same seeded plant twice, with and without one fault, and compares readings
row by row: the difference is the fault's effect and nothing else.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from floorsight.records import FaultKind
from floorsight.simulators import Fault, build_plant
from floorsight.simulators.faults import OFFSET_SIGMAS, SPIKE_SIGMAS
from tests.conftest import T0

KEY = ["machine_id", "sensor", "ts"]
HORIZON = timedelta(hours=3)
START = T0 + timedelta(minutes=40)
DURATION = timedelta(minutes=50)
# M01 is a CNC machine, M03 an injection-moulding machine (the default type mix)
MACHINES = {"M01": "cnc", "M03": "injection_moulding"}


def _plants(fault: Fault):
    kw = {"start": T0, "horizon": HORIZON, "seed": 4, "planned_maintenance": False}
    return build_plant(3, faults=(), **kw), build_plant(3, faults=(fault,), **kw)


def _diff(clean, faulty, t1=None) -> pl.DataFrame:
    t1 = t1 or T0 + HORIZON
    a = faulty.readings(T0, t1)
    b = clean.readings(T0, t1)
    return a.join(b, on=KEY, how="full", coalesce=True, suffix="_clean").with_columns(
        d=pl.col("value") - pl.col("value_clean")
    )


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize(
    "kind", [FaultKind.BEARING_WEAR, FaultKind.PROCESS_UPSET, FaultKind.TOOL_WEAR]
)
def test_process_fault_changes_its_sensors_from_its_start(machine, kind) -> None:
    fault = Fault("F", machine, kind, START, DURATION)
    clean, faulty = _plants(fault)
    mtype = faulty.machine(machine).type
    effects = mtype.fault_effects[str(kind)]
    # before the fault's end the readings are the same rows, changed only on its sensors
    d = _diff(clean, faulty, fault.end)
    assert d["value"].null_count() == 0 and d["value_clean"].null_count() == 0
    changed = d.filter(pl.col("d").abs() > 1e-12)
    assert set(changed["machine_id"]) == {machine}
    assert set(changed["sensor"]) == set(effects) == set(fault.sensors(mtype))
    assert changed["ts"].min() >= fault.start
    # at the end of the fault each sensor carries (close to) the full effect
    for sensor, full in effects.items():
        late = changed.filter(
            (pl.col("sensor") == sensor) & (pl.col("ts") > fault.end - timedelta(minutes=2))
        )
        assert late.height > 0
        noise = mtype.sensor(sensor).noise
        assert abs(late["d"].mean() - full) < 0.2 * abs(full) + noise, (sensor, late["d"].mean())


def test_bearing_wear_ends_in_failure_and_downtime() -> None:
    fault = Fault(
        "F", "M01", FaultKind.BEARING_WEAR, START, DURATION, downtime=timedelta(minutes=30)
    )
    clean, faulty = _plants(fault)
    truth = faulty.truth()[0]
    assert truth.failure_at == fault.end and truth.repaired_at == fault.end + fault.downtime
    # down from the failure to the repair (segments split where a work order changes)
    down = faulty.states().filter(
        (pl.col("machine_id") == "M01")
        & pl.col("start").is_between(fault.end, truth.repaired_at, closed="left")
    )
    assert set(down["state"]) == {"down"}
    assert down["start"].min() == fault.end and down["end"].max() == truth.repaired_at
    assert (down["start"].slice(1) == down["end"].slice(0, down.height - 1)).all()
    assert faulty.status_at(fault.end + timedelta(minutes=5)).row(0, named=True)["state"] == "down"
    # no process values while down; the same readings as the clean plant once repaired
    d = _diff(clean, faulty)
    during = d.filter(
        (pl.col("machine_id") == "M01")
        & pl.col("ts").is_between(fault.end, fault.end + fault.downtime, closed="left")
    )
    assert during.height > 0 and during["value"].null_count() == during.height
    after = d.filter((pl.col("machine_id") == "M01") & (pl.col("ts") >= truth.repaired_at))
    assert after.height > 0 and (after["d"].abs() < 1e-12).all()
    log = {(e.kind, e.start) for e in faulty.downtime_log("M01")}
    assert ("repair", fault.end) in log


def test_tool_wear_drives_parts_out_of_spec_and_ends_with_a_tool_change() -> None:
    fault = Fault("F", "M01", FaultKind.TOOL_WEAR, START, DURATION)
    clean, faulty = _plants(fault)

    def scrap(plant, a, b):
        parts = plant.parts.filter(
            (pl.col("machine_id") == "M01") & pl.col("ts").is_between(a, b, closed="left")
        )
        return (~parts["in_spec"]).mean()

    late = (fault.end - DURATION / 4, fault.end)
    assert scrap(clean, *late) < 0.05
    assert scrap(faulty, *late) > 0.5
    assert scrap(faulty, T0, fault.start) == scrap(clean, T0, fault.start)
    assert ("tool_change", fault.end) in {(e.kind, e.start) for e in faulty.downtime_log("M01")}


@pytest.mark.parametrize("machine", MACHINES)
def test_bad_lot_shift_starts_with_the_lot_change(machine) -> None:
    fault = Fault("F", machine, FaultKind.BAD_LOT, START, DURATION)
    clean, faulty = _plants(fault)
    (resolved,) = faulty.faults
    order = next(
        w for w in faulty.work_orders if w.machine_id == machine and w.start >= fault.start
    )
    # the fault covers the first work order after its requested start, with a new (bad) lot
    assert resolved.start == order.running_from and resolved.end == order.end
    assert resolved.detail == order.material_lot != clean_lot(clean, order.work_order)
    assert faulty.truth()[0].detail == order.material_lot
    mtype = faulty.machine(machine).type
    d = _diff(clean, faulty).filter(pl.col("d").abs() > 1e-12)
    assert set(d["sensor"]) == set(mtype.fault_effects["bad_lot"])
    assert d["ts"].min() >= order.running_from and d["ts"].max() < order.end


def clean_lot(plant, work_order: str) -> str:
    return next(w.material_lot for w in plant.work_orders if w.work_order == work_order)


@pytest.mark.parametrize("machine", MACHINES)
def test_sensor_faults_change_only_the_measurement(machine) -> None:
    mtype_name = MACHINES[machine]
    sensor = "vibration_mm_s"
    for kind in (
        FaultKind.SENSOR_STUCK,
        FaultKind.SENSOR_SPIKES,
        FaultKind.SENSOR_DROPOUT,
        FaultKind.SENSOR_OFFSET,
    ):
        fault = Fault("F", machine, kind, START, DURATION, sensor=sensor)
        clean, faulty = _plants(fault)
        assert faulty.machine(machine).machine_type == mtype_name
        noise = faulty.machine(machine).type.sensor(sensor).noise
        d = _diff(clean, faulty)
        touched = d.filter(
            (pl.col("value").is_null() != pl.col("value_clean").is_null())
            | (pl.col("d").abs() > 1e-12)
        )
        assert set(touched["sensor"]) == {sensor} and set(touched["machine_id"]) == {machine}
        assert touched["ts"].min() >= fault.start and touched["ts"].max() < fault.end
        inside = d.filter(
            (pl.col("machine_id") == machine)
            & (pl.col("sensor") == sensor)
            & pl.col("ts").is_between(fault.start, fault.end, closed="left")
        )
        if kind is FaultKind.SENSOR_DROPOUT:
            assert inside["value"].null_count() == inside.height > 0
        elif kind is FaultKind.SENSOR_STUCK:
            running = inside.filter(pl.col("value").is_not_null())
            assert running["value"].n_unique() == 1
            assert running["value_clean"].n_unique() > 100
        elif kind is FaultKind.SENSOR_OFFSET:
            assert np.allclose(inside["d"].to_numpy(), OFFSET_SIGMAS * noise)
        else:
            spikes = inside.filter(pl.col("d").abs() > 1e-12)
            assert 0.005 < spikes.height / inside.height < 0.05
            assert np.allclose(spikes["d"].abs().to_numpy(), SPIKE_SIGMAS * noise)
        # the parts are what they were: a sensor fault is not a process fault
        assert faulty.parts.equals(clean.parts)
