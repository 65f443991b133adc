"""The plant over MQTT: readings round-trip through a real Mosquitto on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from polars.testing import assert_frame_equal

from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators import build_plant
from floorsight.simulators.mqtt_publisher import (
    MqttPublisher,
    messages_to_frame,
    parse_message,
    topic_for,
)
from tests.conftest import T0

pytestmark = pytest.mark.e2e
KEY = ["machine_id", "sensor", "ts"]


class Subscriber:
    def __init__(self, host: str, port: int, topic: str, client_id: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.ready = threading.Event()
        # MQTT 5 with the largest receive maximum, as the pipeline's receiver: with a 3.1.1
        # session a stock Mosquitto keeps 20 in flight and 1,000 queued, and drops the rest
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda c, u, msg: self.messages.append(msg)
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = 65_535
        self.client.connect(host, port, properties=props)
        self.client.loop_start()
        assert self.ready.wait(10), "subscription not acknowledged"

    def wait_for(self, n: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_readings_round_trip_through_mosquitto(mosquitto) -> None:
    host, port = mosquitto
    plant = build_plant(3, start=T0, horizon=timedelta(hours=1), seed=1)
    frame = plant.readings(T0, T0 + timedelta(seconds=20))
    sub = Subscriber(host, port, "plant/#", "test-sub")
    pub = MqttPublisher.for_plant(plant, host, port)
    try:
        assert pub.publish_frame(frame) == frame.height > 1000
        pub.flush()
        sub.wait_for(frame.height)
        time.sleep(0.3)  # a duplicate would arrive right behind the last message
    finally:
        pub.close()
        sub.close()
    readings = [m for m in sub.messages if not m.topic.endswith("/status")]
    assert len(readings) == frame.height  # nothing lost, nothing duplicated
    for m in readings[:50]:
        row = parse_message(m.topic, m.payload)
        line = plant.machine(row["machine_id"]).line
        assert m.topic == topic_for(line, row["machine_id"], row["sensor"]) and m.qos == 1
    got = messages_to_frame([parse_message(m.topic, m.payload) for m in readings])
    assert_frame_equal(got.sort(KEY), frame.sort(KEY))


def test_status_is_retained_for_late_subscribers(mosquitto) -> None:
    host, port = mosquitto
    plant = build_plant(3, start=T0, horizon=timedelta(hours=1), seed=1)
    pub = MqttPublisher.for_plant(plant, host, port)
    try:
        status = plant.status_at(T0 + timedelta(minutes=30))
        assert pub.publish_status(status) == 3
        assert pub.publish_status(status) == 0  # unchanged: not sent again
        pub.flush()
    finally:
        pub.close()
    late = Subscriber(host, port, "plant/+/+/status", "late-sub")
    try:
        late.wait_for(3, timeout_s=10)
    finally:
        late.close()
    assert sorted(m.topic for m in late.messages) == [
        "plant/L1/M01/status",
        "plant/L1/M02/status",
        "plant/L2/M03/status",
    ]
    assert all(m.retain for m in late.messages)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"machine_id": "M01", "sensor": "x", "ts": "2026-01-05T06:00:00+00:00"}', "lacks value"),
        (b'{"machine_id": "M01", "sensor": "x", "ts": "yesterday", "value": 1}', "not an ISO"),
        (
            b'{"machine_id": "M01", "sensor": "x", "ts": "2026-01-05T06:00:00", "value": 1}',
            "no time zone",
        ),
        (
            b'{"machine_id": "M01", "sensor": "x", "ts": "2026-01-05T06:00:00Z", "value": "7"}',
            "not a number",
        ),
    ],
)
def test_parse_message_names_the_topic_and_the_reason(payload, reason) -> None:
    with pytest.raises(ValueError, match=reason) as e:
        parse_message("plant/L1/M01/x", payload)
    assert "plant/L1/M01/x" in str(e.value)


def test_cli_publishes_the_plant_live(mosquitto) -> None:
    host, port = mosquitto
    sub = Subscriber(host, port, "plant/#", "cli-sub")
    args = ["--machines", "2", "--hours", "0.05", "--seed", "3", "--start", T0.isoformat()]
    try:
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "floorsight.cli", "simulate", "--mqtt", f"{host}:{port}"),
                *(*args, "--speed", "60"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # the same plant, computed as history: every reading arrived exactly once
        plant = make_plant(
            PlantOptions(machines=2, start=T0, horizon=timedelta(hours=0.05), seed=3)
        )
        expected = plant.readings(T0, T0 + timedelta(hours=0.05))
        sub.wait_for(expected.height)
        time.sleep(0.3)
    finally:
        sub.close()
    readings = [m for m in sub.messages if not m.topic.endswith("/status")]
    got = messages_to_frame([parse_message(m.topic, m.payload) for m in readings])
    assert_frame_equal(got.sort(KEY), expected.sort(KEY))
    assert {m.topic for m in sub.messages if m.topic.endswith("/status")} == {
        "plant/L1/M01/status",
        "plant/L1/M02/status",
    }
