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


def test_the_demos_source_gives_the_overview_oee_from_states_and_counts(tmp_path) -> None:
    """What ``floorsight demo`` wires: the plant's stream with signals through FrameSource and
    the flow into DuckDB; the overview's OEE of every machine then has the basis of the floor."""
    import threading

    from bytewax.testing import run_main

    from floorsight.dashboards import oee, queries
    from floorsight.demo import Counter, counted
    from floorsight.pipelines.context import ContextStore
    from floorsight.pipelines.flow import PipelineSettings, build_flow
    from floorsight.pipelines.sources import FrameSource
    from floorsight.storage import Database

    plant = build_plant(3, start=T0, horizon=timedelta(minutes=40), seed=4, faults=())
    plant.write_context(tmp_path / "erp")
    end = T0 + timedelta(minutes=40)
    ticks = iter(range(100_000))
    counter = Counter()

    def frames(worker_index: int, worker_count: int):
        stream = plant.stream(
            T0, speed=60.0, end=end, tick_s=1.0, clock=lambda: float(next(ticks)), signals=True
        )
        return counted(stream, counter, threading.Event())

    db_path = tmp_path / "demo.duckdb"
    settings = PipelineSettings(rules=ReadingRules(max_future=timedelta(days=36500)))
    run_main(build_flow(FrameSource(frames), ContextStore(tmp_path / "erp"), db_path, settings))
    assert counter.readings == plant.readings(T0, end).height  # signals are not readings
    with Database(db_path).read() as con:
        start, now = T0, queries.latest_window_end(con)
        planned = queries.work_orders_between(con, start, now)
        windows = oee.oee(
            planned,
            queries.run_windows(con, start, now),
            queries.cycle_windows(con, start, now),
            queries.quality_windows(con, start, now),
            start,
            now,
        )
        floor = oee.oee_from_signals(
            planned,
            queries.state_spans(con, start, now),
            queries.part_counts_between(con, start, now),
            queries.counted_machines(con, now),
            queries.ideal_cycle_times(con),
            start,
            now,
        )
    shift = oee.shift_oee(windows, floor)
    assert shift["basis"].to_list() == ["states + counts"] * 3
    # every machine has an OEE now, the CNC machines too (they report no cycle time)
    assert windows.filter(pl.col("machine_id") == "M01")["oee"][0] is None
    assert shift["oee"].is_not_null().all() and (shift["oee"] > 0.3).all()
    made = plant.parts.filter((pl.col("ts") > T0) & (pl.col("ts") < now))
    assert floor["good"].sum() + floor["scrap"].sum() == made.height


@pytest.mark.e2e
def test_states_and_counters_served_over_opcua_reach_the_tables(tmp_path) -> None:
    """The simulator's OPC-UA server (State, GoodCount, ScrapCount of each machine object),
    the pipeline's OPC-UA source and the flow: M02's changeover at 06:46 and its end at 06:59
    are state changes at their simulated times, and the counters count the plant's parts."""

    from bytewax.testing import run_main

    from floorsight.pipelines.context import ContextStore
    from floorsight.pipelines.flow import PipelineSettings, build_flow
    from floorsight.pipelines.opcua_source import OpcUaSource
    from floorsight.storage import Database
    from tests.opcua_servers import serving_plant

    plant = build_plant(2, start=T0, horizon=timedelta(hours=2), seed=5, faults=())
    plant.write_context(tmp_path / "erp")
    start, until = T0 + timedelta(minutes=44), T0 + timedelta(minutes=62)
    db_path = tmp_path / "opcua.duckdb"
    with serving_plant(plant, start, speed=60.0) as url:
        settings = PipelineSettings(rules=ReadingRules(max_future=timedelta(days=36500)))
        source = OpcUaSource(url, until=until)
        run_main(build_flow(source, ContextStore(tmp_path / "erp"), db_path, settings))
    db = Database(db_path)
    m02 = db.query(
        "SELECT since, code, state, category FROM machine_states WHERE machine_id = 'M02' "
        "ORDER BY since"
    )
    changes = m02.filter(pl.col("since") > start).rows()
    assert changes == [
        (T0 + timedelta(minutes=46), 2.0, "Stopped", "idle"),
        (T0 + timedelta(minutes=59), 6.0, "Execute", "running"),
    ]
    counts = db.query(
        "SELECT machine_id, signal, min(ts) AS base, max(ts) AS last, sum(parts) AS parts "
        "FROM part_counts GROUP BY ALL"
    )
    assert counts.height == 4  # good and scrap of both machines
    for machine_id, signal, base, last, parts in counts.iter_rows():
        made = plant.parts.filter(
            (pl.col("machine_id") == machine_id)
            & (pl.col("ts") > base)
            & (pl.col("ts") <= last)
            & (pl.col("good") == (signal == "good_count"))
        )
        assert parts == made.height
    good = counts.filter(pl.col("signal") == "good_count")["parts"].sum()
    assert good > 10


@pytest.mark.e2e
def test_states_and_counters_published_over_mqtt_reach_the_tables(mosquitto, tmp_path) -> None:
    """The simulator's publisher on a stock Mosquitto, the pipeline's MQTT source and the flow:
    the signals of 20 simulated minutes give the state changes and parts of the plant."""
    import threading

    from bytewax.testing import run_main

    from floorsight.pipelines.mqtt_source import MqttSource
    from floorsight.simulators.mqtt_publisher import MqttPublisher
    from floorsight.storage import Database
    from tests.mqtt_helpers import in_background, mqtt_flow

    host, port = mosquitto
    plant = build_plant(2, start=T0, horizon=timedelta(hours=2), seed=5, faults=())
    plant.write_context(tmp_path / "erp")
    start, until = T0 + timedelta(minutes=44), T0 + timedelta(minutes=64)
    ready = threading.Event()
    source = MqttSource(host, port, client_id="test-signals", until=until, ready=ready)
    flow = mqtt_flow(source, tmp_path)
    sent = plant.signals(start, until, initial=True)

    def publish() -> None:
        assert ready.wait(30), "the MQTT source did not subscribe"
        pub = MqttPublisher.for_plant(plant, host, port, client_id="test-signal-publisher")
        try:
            t = start
            while t < until:  # readings and signals in time order, a minute at a time
                a, b = t, t + timedelta(minutes=1)
                pub.publish_frame(plant.readings(a, b).sort("ts"))
                pub.publish_signals(sent.filter(pl.col("ts").is_between(a, b, closed="left")))
                pub.flush()
                t = b
            # time beyond `until`, so the source ends
            pub.publish_frame(plant.readings(until, until + timedelta(seconds=5)))
            pub.flush()
        finally:
            pub.close()

    with in_background(publish):
        run_main(flow)
    db = Database(tmp_path / "f.duckdb")
    states = db.query("SELECT machine_id, since, code FROM machine_states ORDER BY ALL")
    expected = pl.concat(
        [
            plant.state_codes(m)
            .filter(pl.col("ts").is_between(start, until, closed="left"))
            .select(pl.lit(m).alias("machine_id"), pl.col("ts").alias("since"), "code")
            for m in ("M01", "M02")
        ]
    )
    assert states.filter(pl.col("since") > start).rows() == [
        (m, since, float(code)) for m, since, code in expected.iter_rows()
    ]
    parts = db.query("SELECT signal, sum(parts) AS n FROM part_counts GROUP BY 1 ORDER BY 1")
    made = plant.parts.filter((pl.col("ts") > start) & (pl.col("ts") < until))
    assert parts.rows() == [
        ("good_count", made["good"].sum()),
        ("scrap_count", (~made["good"]).sum()),
    ]
    dead = db.query("SELECT source, reason, count(*) AS n FROM dead_letters GROUP BY ALL")
    assert dead.height == 0, dead.rows()[:5]
