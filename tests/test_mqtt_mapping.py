"""The plant's own MQTT topics and payloads: topic templates, payload maps, signals, receive time.

Decoders are plain classes: these tests feed them topics and bytes and read what comes back, then
run journaled messages through the source's decoding step (``decode_messages``) as a poll does.
A fuzz part sends arbitrary bytes and mutated payloads through a mapped decoder: nothing raises,
and every message is readings, signals or dead letters.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floorsight.pipelines.mqtt_journal import Message
from floorsight.pipelines.mqtt_mapping import (
    RECEIVE_TIME,
    JsonDecoder,
    MappedJsonDecoder,
    MappingError,
    MqttDecoder,
    PayloadMap,
    TopicTemplate,
    decoder_factory,
)
from floorsight.pipelines.mqtt_source import MqttSource, decode_messages
from floorsight.pipelines.validate import Rejected

TS = "2026-12-01T11:59:59+00:00"
T = datetime(2026, 12, 1, 11, 59, 59, tzinfo=UTC)
TEMPLATE = "factory/{line}/{machine_id}/{sensor}"


def decode(decoder: MqttDecoder, topic: str, payload: object) -> list:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decoder.decode(topic, raw)


def test_a_template_derives_its_filter_and_reads_the_placeholders_from_a_topic() -> None:
    t = TopicTemplate("factory/{line}/+/{machine_id}/{sensor}")
    assert t.filter == "factory/+/+/+/+"
    assert t.match("factory/L1/cell3/M7/temp") == {
        "line": "L1",
        "machine_id": "M7",
        "sensor": "temp",
    }
    assert t.match("factory/L1/cell3/M7") is None
    assert t.match("plant/L1/cell3/M7/temp") is None
    assert TopicTemplate("site/{machine_id}/#").match("site/M1/a/b") == {"machine_id": "M1"}


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("factory/{plant}/{machine_id}", "unknown placeholder"),
        ("factory/m{machine_id}", "whole level"),
        ("factory/#/{machine_id}", "last level"),
        ("factory/{sensor}/{sensor}", "twice"),
    ],
)
def test_a_bad_template_is_refused_naming_what_is_wrong(template: str, says: str) -> None:
    with pytest.raises(MappingError, match=says):
        TopicTemplate(template)


def test_the_default_decoder_is_floorsights_own_json_and_a_payload_cannot_pass_for_a_signal() -> (
    None
):
    d = JsonDecoder()
    assert d.subscriptions() == ["plant/#"]
    good = {"machine_id": "M1", "sensor": "s", "ts": TS, "value": 1.0, "signal": "state"}
    (record,) = decode(d, "plant/L1/M1/s", good)
    assert "signal" not in record and record["value"] == 1.0
    assert decode(d, "plant/L1/status", {"online": True}) == []
    # the simulator's signal topics carry signals
    (state,) = decode(
        d, "plant/L1/M1/state", {"machine_id": "M1", "signal": "state", "ts": TS, "value": 6}
    )
    assert state == {"machine_id": "M1", "signal": "state", "ts": TS, "value": 6, "text": None}
    msgs = [
        Message(
            0,
            "plant/L1/M1/good_count",
            json.dumps(
                {"machine_id": "M1", "signal": "good_count", "ts": TS, "value": 41}
            ).encode(),
            0,
        )
    ]
    decoded = decode_messages(msgs, d)
    assert decoded.signals.frame.select("signal", "ts", "value").rows() == [("good_count", T, 41.0)]
    assert decoded.readings.ok.height == 0 and decoded.readings.dead is None


def test_a_value_with_the_topics_machine_and_sensor_and_an_epoch_ms_time() -> None:
    mapping = PayloadMap.from_dict({"value": "v", "time": "t", "time_format": "epoch_ms"})
    d = MappedJsonDecoder([TEMPLATE], mapping)
    assert d.subscriptions() == ["factory/+/+/+"]
    (r,) = decode(d, "factory/L1/M7/temp", {"v": 21.5, "t": int(T.timestamp() * 1000) + 250})
    assert r == {
        "machine_id": "M7",
        "sensor": "temp",
        "ts": datetime(2026, 12, 1, 11, 59, 59, 250_000, tzinfo=UTC),
        "value": 21.5,
    }


@pytest.mark.parametrize(
    ("fmt", "raw"),
    [
        ("epoch_s", T.timestamp()),
        ("epoch_us", int(T.timestamp()) * 10**6),
        ("epoch_ns", int(T.timestamp()) * 10**9),
        ("iso", "2026-12-01T12:59:59+01:00"),
    ],
)
def test_every_time_format_reads_the_same_instant(fmt: str, raw: object) -> None:
    d = MappedJsonDecoder([TEMPLATE], PayloadMap.from_dict({"time_format": fmt}))
    (r,) = decode(d, "factory/L1/M7/temp", {"value": 1, "ts": raw})
    assert r["ts"] == T


def test_one_message_with_several_sensors_becomes_a_reading_each_and_signals() -> None:
    mapping = PayloadMap.from_dict(
        {
            "sensors": "*",
            "fields": "data",
            "time": "meta.time",
            "signals": {"state": "status", "good_count": "good", "scrap_count": "scrap"},
        }
    )
    d = MappedJsonDecoder(["factory/{line}/{machine_id}"], mapping)
    payload = {
        "meta": {"time": TS},
        "data": {
            "temp": 21.5,
            "vib": 0.3,
            "status": "RUNNING",
            "good": 120,
            "scrap": 3,
            "note": "text is no sensor",
            "flag": True,
        },
    }
    out = decode(d, "factory/L1/M7", payload)
    readings = {r["sensor"]: r["value"] for r in out if "sensor" in r}
    signals = {r["signal"]: (r["value"], r["text"]) for r in out if "signal" in r}
    assert readings == {"temp": 21.5, "vib": 0.3}
    assert signals == {
        "state": (None, "RUNNING"),
        "good_count": (120, None),
        "scrap_count": (3, None),
    }
    assert all(r["ts"] == T and r["machine_id"] == "M7" for r in out)


def test_a_listed_sensor_that_is_missing_or_no_number_is_a_dead_letter_naming_the_field() -> None:
    d = MappedJsonDecoder(
        ["factory/{line}/{machine_id}"], PayloadMap.from_dict({"sensors": ["temp", "vib"]})
    )
    out = decode(d, "factory/L1/M7", {"ts": TS, "temp": 21.5, "vib": "high"})
    assert out[0]["value"] == 21.5
    assert isinstance(out[1], Rejected)
    assert out[1].reason.startswith("factory/L1/M7: ") and "'vib'" in out[1].reason
    (gone,) = decode(d, "factory/L1/M7", {"ts": TS, "temp": 1, "vib": 2} | {"temp": None})[:1]
    assert isinstance(gone, Rejected) and "'temp'" in gone.reason


def test_quality_good_values_keep_a_reading_and_others_are_dead_letters() -> None:
    mapping = PayloadMap.from_dict({"quality": "q.status", "good": ["good", 192]})
    d = MappedJsonDecoder([TEMPLATE], mapping)
    topic = "factory/L1/M7/temp"
    assert decode(d, topic, {"value": 1, "ts": TS, "q": {"status": 192}})[0]["value"] == 1
    (bad,) = decode(d, topic, {"value": 1, "ts": TS, "q": {"status": "bad"}})
    assert isinstance(bad, Rejected) and "quality field 'q.status'" in bad.reason
    (none,) = decode(d, topic, {"value": 1, "ts": TS})
    assert isinstance(none, Rejected) and "missing" in none.reason


def test_a_message_without_event_time_takes_its_receive_time_or_is_refused() -> None:
    topic = "factory/L1/M7/temp"
    receive = MappedJsonDecoder([TEMPLATE], PayloadMap.from_dict({"value": ""}))
    (r,) = receive.decode(topic, b"21.5")  # a bare number, as Node-RED and Telegraf send
    assert r["ts"] is RECEIVE_TIME and r["value"] == 21.5
    msg = Message(0, topic, b"21.5", T.timestamp())
    decoded = decode_messages([msg], receive)
    assert decoded.receive_times == 1
    assert decoded.readings.ok["ts"].to_list() == [T]
    refuse = MappedJsonDecoder([TEMPLATE], PayloadMap.from_dict({"missing_time": "reject"}))
    (no,) = decode(refuse, topic, {"value": 1})
    assert isinstance(no, Rejected) and "time field 'ts' is missing" in no.reason


def test_a_sensor_named_as_a_signal_on_its_own_topic_is_a_signal() -> None:
    mapping = PayloadMap.from_dict({"signals": {"state": "status", "good_count": "parts"}})
    d = MappedJsonDecoder([TEMPLATE], mapping)
    msgs = [
        Message(0, "factory/L1/M7/status", json.dumps({"value": "IDLE", "ts": TS}).encode(), 0),
        Message(1, "factory/L1/M7/parts", json.dumps({"value": 17, "ts": TS}).encode(), 0),
        Message(2, "factory/L1/M7/temp", json.dumps({"value": 20.0, "ts": TS}).encode(), 0),
        Message(3, "factory/L1/M7/parts", json.dumps({"value": "many", "ts": TS}).encode(), 0),
    ]
    decoded = decode_messages(msgs, d)
    signals = decoded.signals.frame
    assert signals.select("signal", "value", "text").rows() == [
        ("state", None, "IDLE"),
        ("good_count", 17.0, None),
    ]
    assert decoded.readings.ok["sensor"].to_list() == ["temp"]
    (reason,) = decoded.readings.dead["reason"].to_list()
    assert reason.startswith("factory/L1/M7/parts: signal good_count") and "'many'" in reason


def test_a_topic_that_fits_no_template_and_a_wrong_machine_field_are_dead_letters() -> None:
    d = MappedJsonDecoder(
        ["factory/{line}/{sensor}"], PayloadMap.from_dict({"machine_id": "asset.id"})
    )
    (stray,) = decode(d, "other/L1/temp", {"value": 1, "ts": TS})
    assert isinstance(stray, Rejected) and "fits no --topic template" in stray.reason
    (bad,) = decode(d, "factory/L1/temp", {"value": 1, "ts": TS, "asset": {"id": 5}})
    assert isinstance(bad, Rejected) and "machine_id field 'asset.id'" in bad.reason
    (ok,) = decode(d, "factory/L1/temp", {"value": 1, "ts": TS, "asset": {"id": "M9"}})
    assert ok["machine_id"] == "M9"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"valeu": "v"}, "unknown key 'valeu'"),
        ({"time_format": "epoch_min"}, "time_format"),
        ({"quality": "q"}, "good"),
        ({"sensors": 3}, "sensors"),
        ({"signals": {"speed": "x"}}, "'speed'"),
    ],
)
def test_a_bad_payload_map_is_refused_at_start_naming_the_key(data: dict, says: str) -> None:
    with pytest.raises(MappingError, match=says):
        PayloadMap.from_dict(data)


def test_a_template_without_machine_and_no_field_for_it_is_refused(tmp_path) -> None:
    with pytest.raises(MappingError, match="machine"):
        MappedJsonDecoder(["factory/{sensor}"], PayloadMap.from_dict({"machine_id": ""}))
    path = tmp_path / "map.toml"
    path.write_text('value = "v"\nsensors = ["a"]\n[signals]\nstate = "st"\n')
    make = decoder_factory("json", [TEMPLATE], path)
    assert make().mapping.signals == {"state": "st"}
    assert decoder_factory() is JsonDecoder


FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MULTI = MappedJsonDecoder(
    ["factory/{line}/{machine_id}", TEMPLATE],
    PayloadMap.from_dict(
        {"sensors": "*", "time_format": "epoch_ms", "signals": {"state": "status"}}
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)


def _poll(decoder: MqttDecoder, messages: list[tuple[str, bytes]]) -> None:
    msgs = [Message(i, t, p, T.timestamp()) for i, (t, p) in enumerate(messages)]
    decoded = decode_messages(msgs, decoder)
    n_dead = decoded.readings.dead.height if decoded.readings.dead is not None else 0
    n_signals = decoded.signals.frame.height if decoded.signals is not None else 0
    # every message is accounted for: at least one row of some kind per message
    assert decoded.readings.ok.height + n_dead + n_signals >= len(messages)


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=30), st.binary(max_size=200)), max_size=8))
def test_fuzz_any_bytes_on_any_topic_through_a_mapped_decoder(messages) -> None:
    _poll(MULTI, messages)


@FUZZ
@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    st.sampled_from(["factory/L1/M7", "factory/L1/M7/temp", "factory/L1/\ud800"]),
)
def test_fuzz_mutated_multi_sensor_payloads(data: dict, topic: str) -> None:
    raw = json.dumps({"ts": 1_764_590_399_000, "temp": 1.5} | data).encode("utf-8", "surrogatepass")
    _poll(MULTI, [(topic, raw)])


class _CountingDecoder(JsonDecoder):
    """A decoder with state (as Sparkplug's aliases and sequence numbers are)."""

    def __init__(self) -> None:
        super().__init__(["plant/#"])
        self.seen = 0

    def decode(self, topic: str, payload: bytes) -> list:
        self.seen += 1
        return super().decode(topic, payload)

    def state(self) -> dict:
        return {"seen": self.seen}

    def restore(self, state: dict) -> None:
        self.seen = state["seen"]


@pytest.mark.e2e
def test_the_decoders_state_is_snapshotted_with_the_journal_position_and_restored(
    mosquitto, tmp_path
) -> None:
    host, port = mosquitto
    source = MqttSource(
        host, port, client_id="t-state", journal=tmp_path / "j", decoder=_CountingDecoder
    )
    part = source.build_part("readings", "mqtt", None)
    try:
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-state-pub")
        pub.connect(host, port)
        pub.loop_start()
        now = datetime.now(tz=UTC).isoformat()
        for v in range(3):
            body = {"machine_id": "M1", "sensor": "s", "ts": now, "value": v}
            pub.publish("plant/L1/M1/s", json.dumps(body), qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        got, deadline = 0, time.monotonic() + 20
        while got < 3 and time.monotonic() < deadline:
            got += sum(item.ok.height for item in part.next_batch())
            time.sleep(0.05)
        state = part.snapshot()
    finally:
        part.close()
    assert state == {"position": 3, "decoder": {"seen": 3}}
    again = source.build_part("readings", "mqtt", state)
    try:
        assert again._decoder.seen == 3 and again._seq == 3
    finally:
        again.close()
    old = source.build_part("readings", "mqtt", 2)  # a snapshot of the bare position
    try:
        assert old._seq == 2 and old._decoder.seen == 0
    finally:
        old.close()
