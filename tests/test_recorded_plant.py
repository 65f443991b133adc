"""Replaying a recorded dataset (SKAB) as a machine, over the plant's interface."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from asyncua import Client, ua
from polars.testing import assert_frame_equal

from floorsight.simulators.opcua_server import NAMESPACE
from floorsight.simulators.recorded import SKAB_UNITS, RecordedPlant, snake
from tests.conftest import T0

# ../shared/data beside the checkout (the design card's place), or FLOORSIGHT_DATA
DATA = Path(
    os.environ.get("FLOORSIGHT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
SKAB = DATA / "skab"
needs_skab = pytest.mark.skipif(
    not (SKAB / "valve1" / "0.csv").exists(), reason=f"SKAB data not found at {SKAB}"
)


def test_from_frame_turns_a_wide_table_into_readings() -> None:
    wide = pl.DataFrame(
        {
            "time": ["2024-01-01 00:00:00", "2024-01-01 00:00:01", "2024-01-01 00:00:02"],
            "a": [1.0, 2.0, 3.0],
            "b": [10, 20, 30],
            "label": [0, 1, 0],
        }
    )
    plant = RecordedPlant.from_frame(wide, "time", "X1", units={"a": "bar"}, label_cols=("label",))
    (machine,) = plant.machines
    assert machine.machine_id == "X1" and [(s.name, s.unit) for s in machine.sensors] == [
        ("a", "bar"),
        ("b", ""),
    ]
    t = datetime(2024, 1, 1, tzinfo=UTC)
    got = plant.readings(t, t + timedelta(seconds=2))
    assert got.rows() == [
        ("X1", "a", t, 1.0),
        ("X1", "b", t, 10.0),
        ("X1", "a", t + timedelta(seconds=1), 2.0),
        ("X1", "b", t + timedelta(seconds=1), 20.0),
    ]
    assert plant.labels()["label"].to_list() == [0, 1, 0]
    shifted = plant.shift_to(T0)
    assert shifted.start == T0 and shifted.end == T0 + timedelta(seconds=2, microseconds=1)
    assert shifted.labels()["ts"].to_list()[1] == T0 + timedelta(seconds=1)


def test_snake_case_of_skab_columns() -> None:
    assert snake("Accelerometer1RMS") == "accelerometer1_rms"
    assert snake("Volume Flow RateRMS") == "volume_flow_rate_rms"
    assert snake("Thermocouple") == "thermocouple"


@needs_skab
def test_skab_file_round_trips_and_streams_once() -> None:
    path = SKAB / "valve1" / "0.csv"
    raw = pl.read_csv(path, separator=";")
    plant = RecordedPlant.from_skab(path).shift_to(T0)
    (machine,) = plant.machines
    assert {s.name: s.unit for s in machine.sensors} == SKAB_UNITS
    # every value of every row, in the file's order
    wide = plant.data.pivot("sensor", index="ts", values="value").sort("ts")
    assert wide.height == raw.height
    assert wide["ts"][0] == T0  # the recording's own spacing (1 s, some 2 s gaps) is kept
    assert (
        wide["ts"].diff().drop_nulls().to_list()
        == raw["datetime"].str.to_datetime().diff().drop_nulls().to_list()
    )
    for col in raw.columns:
        if col in ("datetime", "anomaly", "changepoint"):
            continue
        assert wide[snake(col)].to_list() == raw[col].cast(pl.Float64).to_list(), col
    labels = plant.labels()
    assert labels["anomaly"].sum() == raw["anomaly"].sum() > 0
    assert labels["changepoint"].sum() == raw["changepoint"].sum()
    # cut into pieces = the whole
    whole = plant.readings(plant.start, plant.end)
    pieces = pl.concat(
        [
            plant.readings(
                plant.start + timedelta(seconds=s), plant.start + timedelta(seconds=s + 37)
            )
            for s in range(0, int((plant.end - plant.start).total_seconds()) + 37, 37)
        ]
    )
    assert_frame_equal(whole, pieces)
    # streaming on a fake clock yields every reading exactly once
    now = [0.0]

    def clock() -> float:
        now[0] += 0.5
        return now[0]

    frames = [f for f in plant.stream(T0, speed=120, clock=clock) if f is not None]
    assert_frame_equal(pl.concat(frames), whole)
    assert plant.status_at(T0 + timedelta(seconds=5))["state"].to_list() == ["running"]


@needs_skab
@pytest.mark.e2e
def test_skab_is_served_over_opcua_like_a_machine() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"opc.tcp://127.0.0.1:{s.getsockname()[1]}/"
    path = SKAB / "valve1" / "0.csv"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "simulate", "--opcua", url),
            *("--skab", str(path), "--speed", "5", "--start", T0.isoformat()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    raw = pl.read_csv(path, separator=";")

    async def read() -> tuple[float, datetime]:
        async with asyncio.timeout(30):
            while True:
                try:
                    async with Client(url) as c:
                        ns = await c.get_namespace_index(NAMESPACE)
                        node = await c.nodes.objects.get_child(
                            [f"{ns}:Plant", f"{ns}:SKAB", f"{ns}:SKAB-1", f"{ns}:pressure"]
                        )
                        await asyncio.sleep(1.0)
                        dv = await node.read_data_value()
                        return dv.Value.Value, dv.SourceTimestamp
                except (OSError, ua.UaError):
                    await asyncio.sleep(0.2)

    try:
        value, ts = asyncio.run(read())
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    # the value served at a source time is the file's value at the same offset from its start
    times = raw["datetime"].str.to_datetime()
    offset = ts.replace(tzinfo=None) - T0.replace(tzinfo=None)
    row = raw.filter(times == times[0] + offset)
    assert row.height == 1 and row["Pressure"][0] == pytest.approx(value)
