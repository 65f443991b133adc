"""The pipeline reading MQTT topics through a real Mosquitto: the simulator's, and a plant's own.

Every reading published arrives in the feature table (windows with all their readings), and the
malformed payloads published among them land in dead_letters with their reasons. A plant's
gateway (a plain paho client) publishing every sensor of a machine in one message on its own
topic tree is read through a topic template and a payload map.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import paho.mqtt.client as mqtt
import polars as pl
import pytest
from bytewax.testing import run_main

from floorsight.pipelines.context import sensor_units
from floorsight.pipelines.mqtt_mapping import decoder_factory
from floorsight.pipelines.mqtt_source import MqttSource
from floorsight.simulators.mqtt_publisher import MqttPublisher
from floorsight.storage import Database
from tests.conftest import T0
from tests.mqtt_helpers import FEATURE_COUNTS, in_background, mqtt_flow, steady_plant, window_counts

pytestmark = pytest.mark.e2e
START = T0 + timedelta(minutes=5)
UNTIL = START + timedelta(seconds=60)


def test_mqtt_readings_reach_the_feature_table_and_bad_payloads_the_dead_letters(
    mosquitto, tmp_path
) -> None:
    host, port = mosquitto
    plant = steady_plant(tmp_path / "erp")
    units = sensor_units(tmp_path / "erp")
    assert units["spindle_temp_c"] == "degC"
    ready = threading.Event()
    source = MqttSource(
        host, port, client_id="test-pipeline", until=UNTIL, units=units, ready=ready
    )
    flow = mqtt_flow(source, tmp_path)

    def publish() -> None:
        # the pipeline's session exists before anything is published
        assert ready.wait(30), "the MQTT source did not subscribe"
        pub = MqttPublisher.for_plant(plant, host, port, client_id="test-publisher")
        try:
            t = START
            while t < UNTIL + timedelta(seconds=5):
                pub.publish_frame(plant.readings(t, t + timedelta(seconds=5)))
                t += timedelta(seconds=5)
            bad = [
                b"{not json",
                b'{"machine_id": "M01", "sensor": "x", "ts": "2026-01-05T06:05Z", "value": "hot"}',
                b'{"machine_id": "M01", "sensor": "x", "ts": "noon", "value": 1}',
                b'{"machine_id": "M01", "sensor": "spindle_temp_c", "unit": "degF", '
                b'"ts": "2026-01-05T06:05Z", "value": 110.0}',
            ]
            for payload in bad:
                sensor = "spindle_temp_c" if b"degF" in payload else "x"
                pub.client.publish(f"plant/L1/M01/{sensor}", payload, qos=1)
            pub.flush()
            # more good data so the source sees time pass beyond UNTIL
            pub.publish_frame(
                plant.readings(UNTIL + timedelta(seconds=5), UNTIL + timedelta(seconds=6))
            )
            pub.flush()
        finally:
            pub.close()

    with in_background(publish):
        run_main(flow)

    db = Database(tmp_path / "f.duckdb")
    got = db.query("SELECT machine_id, sensor, window_start, n, mean FROM features ORDER BY ALL")
    expected = (
        plant.readings(START, UNTIL)
        .with_columns(window_start=pl.col("ts").dt.truncate("10s"))
        .group_by("machine_id", "sensor", "window_start")
        .agg(n=pl.len(), mean=pl.col("value").mean())
        .sort("machine_id", "sensor", "window_start")
    )
    assert got.height == expected.height == 2 * 4 * 6
    assert got["n"].to_list() == expected["n"].cast(pl.Int32).to_list()
    assert (got["mean"] - expected["mean"]).abs().max() < 1e-9
    dead = sorted(db.query("SELECT reason FROM dead_letters")["reason"].to_list())
    # the reasons' wording is validate's; each names what is wrong
    expected_reasons = ["payload is not JSON", "'noon'", "'degF'", "'hot'"]
    assert len(dead) == len(expected_reasons)
    for reason, part in zip(dead, expected_reasons, strict=True):
        assert part in reason


def test_the_plants_own_topics_and_multi_sensor_payloads_reach_the_feature_table(
    mosquitto, tmp_path
) -> None:
    host, port = mosquitto
    plant = steady_plant(tmp_path / "erp")
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        'sensors = "*"\nfields = "data"\ntime = "meta.t"\ntime_format = "epoch_us"\n'
        'quality = "meta.q"\ngood = ["ok"]\n'
    )
    until = START + timedelta(seconds=30)
    ready = threading.Event()
    source = MqttSource(
        host,
        port,
        client_id="test-mapped",
        until=until,
        ready=ready,
        decoder=decoder_factory("json", ["factory/{line}/{machine_id}"], mapping),
    )
    flow = mqtt_flow(source, tmp_path)
    wanted = plant.readings(START, until)
    # one message per machine and instant, every sensor in it (a plant's gateway, not floorsight)
    messages = []
    for (machine, ts), rows in (
        plant.readings(START, until + timedelta(seconds=2))
        .sort("ts")
        .group_by("machine_id", "ts", maintain_order=True)
    ):
        us = int(ts.timestamp()) * 1_000_000 + ts.microsecond
        data = dict(zip(rows["sensor"], rows["value"], strict=True))
        body = {"meta": {"t": us, "q": "ok"}, "data": data}
        messages.append((f"factory/L1/{machine}", json.dumps(body).encode()))
    messages.insert(3, ("factory/L1/M01", b'{"meta": {"t": 1, "q": "bad"}, "data": {"x": 1}}'))

    def publish() -> None:
        assert ready.wait(30), "the MQTT source did not subscribe"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-gateway")
        client.connect(host, port)
        client.loop_start()
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(30)
        client.loop_stop()
        client.disconnect()

    with in_background(publish):
        run_main(flow)

    db = Database(tmp_path / "f.duckdb")
    got = db.query(FEATURE_COUNTS)
    expected = window_counts(wanted)
    assert got.height == expected.height == 2 * 4 * 3
    assert got["n"].to_list() == expected["n"].to_list()
    (reason,) = db.query("SELECT reason FROM dead_letters")["reason"].to_list()
    assert reason.startswith("factory/L1/M01: quality field 'meta.q' is 'bad'")
