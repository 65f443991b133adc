"""Poison payloads on a live broker: the pipeline never exits because of them.

A real Mosquitto in its stock configuration; valid readings and hostile payloads interleaved on
the topics (nesting 100,000 deep, a 5,000-digit integer, a lone surrogate in an id, invalid
UTF-8, a 1 MB payload, a forged ``_reason``, wrong types). Every valid reading is in the
features (windows with their full counts) and every poison payload is a dead letter with the
parser's reason for it.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from floorsight.pipelines.context import sensor_units
from floorsight.pipelines.mqtt_source import MqttSource
from floorsight.pipelines.validate import parse_mqtt_payload, parse_records
from floorsight.simulators.mqtt_publisher import MqttPublisher
from floorsight.storage import Database
from tests.conftest import T0
from tests.mqtt_helpers import FEATURE_COUNTS, in_background, mqtt_flow, steady_plant, window_counts

pytestmark = pytest.mark.e2e
START = T0 + timedelta(minutes=5)
UNTIL = START + timedelta(seconds=40)
TS = (START + timedelta(seconds=1)).isoformat()


def reading(**fields) -> dict:
    return {"machine_id": "M01", "sensor": "spindle_temp_c", "ts": TS, "value": 1.0} | fields


#: (topic, payload, what the dead letter's reason must say)
POISON = [
    ("plant/L1/M01/spindle_temp_c", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (
        "plant/L1/M01/spindle_temp_c",
        json.dumps(reading(ts=TS)).replace("1.0", "7" * 5000).encode(),
        "digits",
    ),
    ("plant/poison/surrogate", json.dumps(reading(machine_id="\ud800")).encode(), "machine_id"),
    ("plant/L1/M01/spindle_temp_c", b'{"machine_id": "M01\xff\xfe", "value": 1}', "UTF-8"),
    ("plant/L1/M01/spindle_temp_c", b'{"pad": "' + b"x" * (1 << 20) + b'"}', "bytes"),
    (
        "plant/L1/M01/spindle_temp_c",
        json.dumps(reading(value="hot", _reason="forged by the publisher")).encode(),
        "hot",
    ),
    (
        "plant/L1/M01/spindle_temp_c",
        json.dumps({"machine_id": 7, "sensor": [], "ts": 5, "value": None}).encode(),
        "machine_id",
    ),
    ("plant/L1/M01/spindle_temp_c", b"{not json", "not JSON"),
    ("plant/L1/M01/spindle_temp_c", b"NaN", "NaN"),
]


def parser_verdict(topic: str, payload: bytes) -> str:
    """The reason the parser gives for ``payload`` on ``topic`` (it must reject it)."""
    checked = parse_records([parse_mqtt_payload(topic, payload)], "mqtt")
    assert checked.ok.height == 0 and checked.dead is not None and checked.dead.height == 1
    return checked.dead["reason"][0]


@pytest.mark.parametrize("recovery", [False, True])
def test_poison_payloads_become_dead_letters_and_every_reading_reaches_the_features(
    mosquitto, tmp_path, recovery
) -> None:
    host, port = mosquitto
    plant = steady_plant(tmp_path / "erp")
    expected_reasons = sorted(parser_verdict(t, p) for t, p, _ in POISON)
    ready = threading.Event()
    source = MqttSource(
        host,
        port,
        client_id="test-poison",
        until=UNTIL,
        units=sensor_units(tmp_path / "erp"),
        journal=tmp_path / "journal" if recovery else None,
        ready=ready,
    )
    flow = mqtt_flow(source, tmp_path, recovery=recovery)

    def publish() -> None:
        assert ready.wait(30), "the MQTT source did not subscribe"
        pub = MqttPublisher.for_plant(plant, host, port, client_id="test-poison-pub")
        try:
            t, i, poison = START, 0, []
            while t < UNTIL + timedelta(seconds=2):
                step = t + timedelta(seconds=1)
                pub.publish_frame(plant.readings(t, step).sort("ts"))
                if i < len(POISON):  # one poison payload after each second of readings
                    topic, payload, _ = POISON[i]
                    poison.append(pub.client.publish(topic, payload, qos=1))
                t, i = step, i + 1
            pub.flush()
            for info in poison:
                info.wait_for_publish(timeout=30)
                assert info.is_published()
        finally:
            pub.close()

    with in_background(publish, timeout_s=60):
        config = None
        if recovery:
            (tmp_path / "recovery").mkdir()
            init_db_dir(tmp_path / "recovery", 1)
            config = RecoveryConfig(str(tmp_path / "recovery"))
        run_main(flow, epoch_interval=timedelta(seconds=0.5), recovery_config=config)

    db = Database(tmp_path / "f.duckdb")
    got = db.query(FEATURE_COUNTS)
    expected = window_counts(plant.readings(START, UNTIL))
    assert got.height == expected.height == 2 * 4 * 4
    assert got["n"].to_list() == expected["n"].to_list()  # every valid reading, once
    dead = db.query("SELECT source, reason FROM dead_letters")
    assert sorted(dead["reason"].to_list()) == expected_reasons
    assert set(dead["source"]) == {"mqtt"}
    for topic, payload, says in POISON:
        assert says in parser_verdict(topic, payload)
    assert not any("forged" in r for r in dead["reason"])
