"""The simulated plant's MES signals: PackML states and good/scrap counters that agree with its
own ground truth (state timeline, parts made), however the time range is cut."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.pipelines.signals import SignalTracker, check_signals
from floorsight.pipelines.validate import ReadingRules
from floorsight.records import FaultKind, Signals
from floorsight.simulators import Fault, build_plant
from tests.conftest import T0

HORIZON = timedelta(hours=6)
KEY = ["machine_id", "ts", "signal"]
FAILURE = Fault(
    "F-1",
    "M02",
    FaultKind.BEARING_WEAR,
    T0 + timedelta(hours=2),
    timedelta(hours=1),
    downtime=timedelta(minutes=40),
)


@pytest.fixture(scope="module")
def plant():
    return build_plant(3, start=T0, horizon=HORIZON, seed=4, faults=(FAILURE,))


def tracked(plant):
    rules = ReadingRules(max_future=None)
    checked = check_signals(plant.signals(T0, T0 + HORIZON, initial=True), rules)
    assert checked.dead is None
    return SignalTracker().push(checked.ok)


def test_the_states_tracked_from_the_signals_are_the_plants_running_time(plant) -> None:
    rows = tracked(plant).states
    end = T0 + HORIZON
    spans = rows.sort("machine_id", "since").with_columns(
        until=pl.col("since").shift(-1).over("machine_id").fill_null(end)
    )
    running = (
        spans.filter(pl.col("category") == "running")
        .group_by("machine_id")
        .agg(((pl.col("until") - pl.col("since")).dt.total_seconds()).sum().alias("s"))
    )
    for machine_id, seconds in running.iter_rows():
        truth = plant.running_share(machine_id, T0, end) * HORIZON.total_seconds()
        assert seconds == pytest.approx(truth, abs=1e-6)
    # the bearing failure's repair is Aborted (down) from the failure to the repair's end
    at_failure = spans.filter(
        (pl.col("machine_id") == "M02") & (pl.col("since") == FAILURE.end)
    ).row(0, named=True)
    assert (at_failure["state"], at_failure["category"]) == ("Aborted", "down")
    assert at_failure["until"] == FAILURE.end + FAILURE.downtime


def test_the_counted_parts_are_the_parts_the_plant_made(plant) -> None:
    counts = tracked(plant).counts
    made = plant.parts.filter((pl.col("ts") > T0) & (pl.col("ts") < T0 + HORIZON))
    for machine_id in ("M01", "M02", "M03"):
        mine = made.filter(pl.col("machine_id") == machine_id)
        got = counts.filter(pl.col("machine_id") == machine_id)
        good = got.filter(pl.col("signal") == "good_count")["parts"].sum()
        scrap = got.filter(pl.col("signal") == "scrap_count")["parts"].sum()
        assert (good, scrap) == (mine["good"].sum(), (~mine["good"]).sum())
        assert good > 100
    assert made.filter(~pl.col("good")).height > 0  # some scrap, when out of spec


def test_signals_do_not_depend_on_how_the_range_is_cut(plant) -> None:
    cuts = [
        T0,
        T0 + timedelta(minutes=7, seconds=3),
        T0 + timedelta(hours=2, minutes=1),
        T0 + HORIZON,
    ]
    pieces = [plant.signals(a, b, initial=(a == T0)) for a, b in itertools.pairwise(cuts)]
    assert_frame_equal(pl.concat(pieces).sort(KEY), plant.signals(T0, T0 + HORIZON, initial=True))
    again = build_plant(3, start=T0, horizon=HORIZON, seed=4, faults=(FAILURE,))
    assert_frame_equal(again.signals(T0, T0 + HORIZON), plant.signals(T0, T0 + HORIZON))


def test_the_stream_follows_each_frame_with_its_signals(plant) -> None:
    ticks = iter(range(0, 10_000, 1))
    stream = plant.stream(
        T0,
        speed=600.0,
        end=T0 + timedelta(minutes=30),
        tick_s=1.0,
        clock=lambda: float(next(ticks)),
        signals=True,
    )
    items = [item for item in stream if item is not None]
    frames = [i for i in items if isinstance(i, pl.DataFrame)]
    signals = [i.frame for i in items if isinstance(i, Signals)]
    assert len(frames) == len(signals) == 3  # 10 simulated minutes per wall second
    assert_frame_equal(
        pl.concat(signals).sort(KEY),
        plant.signals(T0, T0 + timedelta(minutes=30), initial=True),
    )


def test_the_publisher_sends_states_and_counters_on_their_own_retained_topics(
    plant, mosquitto
) -> None:
    from floorsight.simulators.mqtt_publisher import MqttPublisher
    from tests.test_mqtt_publisher import Subscriber

    host, port = mosquitto
    sent = plant.signals(T0, T0 + timedelta(minutes=20), initial=True)
    pub = MqttPublisher.for_plant(plant, host, port)
    try:
        assert pub.publish_signals(sent) == sent.height > 20
        pub.flush()
    finally:
        pub.close()
    # a subscriber that comes later gets the newest value of every topic (retained)
    late = Subscriber(host, port, "plant/+/+/+", "late-signals")
    try:
        late.wait_for(9, timeout_s=10)
    finally:
        late.close()
    got = {m.topic: json.loads(m.payload) for m in late.messages}
    assert sorted(got) == [
        f"plant/{line}/{m}/{s}"
        for line, m in (("L1", "M01"), ("L1", "M02"), ("L2", "M03"))
        for s in ("good_count", "scrap_count", "state")
    ]
    newest = sent.group_by("machine_id", "signal").agg(pl.col("value").last(), pl.col("ts").last())
    for machine_id, signal, value, ts in newest.iter_rows():
        payload = got[f"plant/{plant.machine(machine_id).line}/{machine_id}/{signal}"]
        assert payload == {
            "machine_id": machine_id,
            "signal": signal,
            "ts": ts.isoformat(timespec="microseconds"),
            "value": int(value),
        }
