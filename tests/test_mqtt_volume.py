"""100,000 QoS 1 readings published as fast as the publisher can into a stock Mosquitto: every one
ends in the features (or as a dead letter), none is lost to the broker's limits.

Mosquitto's defaults hold (20 messages in flight, 1,000 queued per client): a source that
acknowledged late, or read in the flow's own thread, lost most of such a burst to the queue
limit. The figure of the same run with its throughput is `benchmarks/mqtt_throughput.py`
(docs/pipeline.md).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import polars as pl
from bytewax.testing import run_main

from floorsight.pipelines.context import sensor_units
from floorsight.pipelines.mqtt_source import MqttSource
from floorsight.simulators.mqtt_publisher import MqttPublisher
from floorsight.storage import Database
from tests.conftest import T0
from tests.mqtt_helpers import mqtt_flow, steady_plant

MACHINES, SECONDS = 10, 250  # 10 machines x 4 sensors x 10 Hz x 250 s: 100,000 readings


def test_a_burst_of_100000_qos1_readings_into_a_stock_broker_loses_none(
    mosquitto, tmp_path
) -> None:
    host, port = mosquitto
    plant = steady_plant(tmp_path / "erp", machines=MACHINES, horizon=timedelta(hours=2))
    start = T0 + timedelta(minutes=5)
    until = start + timedelta(seconds=SECONDS)
    # in event-time order, as a plant publishes
    readings = plant.readings(start, until).sort("ts", "machine_id", "sensor")
    assert readings.height >= 100_000
    stop, ready = threading.Event(), threading.Event()
    source = MqttSource(
        host,
        port,
        client_id="volume-pipeline",
        until=until,
        stop=stop,
        ready=ready,
        units=sensor_units(tmp_path / "erp"),
    )
    flow = mqtt_flow(source, tmp_path)
    failed: list[BaseException] = []

    def publish() -> None:
        try:
            assert ready.wait(60), "the pipeline never subscribed"
            pub = MqttPublisher.for_plant(plant, host, port, client_id="volume-publisher")
            try:
                for i in range(0, readings.height, 50_000):  # as fast as paho publishes
                    pub.publish_frame(readings.slice(i, 50_000))
                    pub.flush(timeout_s=300)
                # the source ends once it has seen event time pass `until`
                pub.publish_frame(plant.readings(until, until + timedelta(seconds=2)).sort("ts"))
                pub.flush(timeout_s=300)
            finally:
                pub.close()
        except BaseException as e:
            failed.append(e)
            stop.set()

    timer = threading.Timer(600, stop.set)  # a source that lost readings never sees the end
    publisher = threading.Thread(target=publish, daemon=True)
    timer.start()
    publisher.start()
    try:
        run_main(flow)
    finally:
        timer.cancel()
        publisher.join(timeout=60)
    assert not failed, failed
    assert not stop.is_set(), "the pipeline never saw the end of the stream (readings lost)"
    db = Database(tmp_path / "f.duckdb")
    dead = db.query("SELECT reason FROM dead_letters")
    assert dead.height == 0, dead.head(5)
    got = db.query("SELECT machine_id, sensor, window_start, n FROM features")
    short = (
        readings.group_by("machine_id", "sensor", window_start=pl.col("ts").dt.truncate("10s"))
        .agg(expected=pl.len())
        .join(got, on=["machine_id", "sensor", "window_start"], how="left")
        .filter(pl.col("n").is_null() | (pl.col("n") != pl.col("expected")))
    )
    assert short.height == 0, short.sort("window_start").head(5)
    assert int(got["n"].sum()) == readings.height
