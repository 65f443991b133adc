"""The Sparkplug B decoder on payloads that Eclipse Tahu's own encoder wrote.

Every payload here is encoded by Tahu's npm ``sparkplug-payload`` (``tests/sparkplug_tahu.py``),
none by floorsight: births define metrics and aliases and carry values, data names metrics by
alias, deaths are machine states, sequence gaps are logged and counted, an unknown alias is a
dead letter that says a rebirth is needed, the state survives a JSON round trip, the state kept
is bounded, and no byte string (random, or a mutated valid payload) makes the decoder raise.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import math
import re
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floorsight.pipelines.mqtt_mapping import RECEIVE_TIME, MqttDecoder, decoder_factory
from floorsight.pipelines.sparkplug import COUNTERS, SparkplugDecoder
from floorsight.pipelines.validate import ID_PATTERN, Rejected, parse_records
from floorsight.records import SignalKind
from tests.sparkplug_tahu import tahu_encode

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)
G = "Plant1"
NODE, DEVICE = "gw1", "press3"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def topic(kind: str, device: str | None = None, edge: str = NODE) -> str:
    return f"spBv1.0/{G}/{kind}/{edge}" + (f"/{device}" if device else "")


def nbirth(seq: int = 0, bdseq: int = 0, metrics: list[dict] | None = None) -> dict:
    """An NBIRTH as Tahu's client sends it (bdSeq last, Node Control/Rebirth among metrics)."""
    return {
        "timestamp": MS,
        "seq": seq,
        "metrics": [
            {"name": "Node Control/Rebirth", "type": "Boolean", "value": False},
            *(metrics or []),
            {"name": "bdSeq", "type": "UInt64", "value": bdseq},
        ],
    }


DEVICE_METRICS = [
    {"name": "Spindle/Temp C", "alias": 1, "type": "Double", "value": 41.5},
    {"name": "vibration_mm_s", "alias": 2, "type": "Float", "value": 0.5},
    {"name": "Running", "alias": 3, "type": "Boolean", "value": True},
    {"name": "State", "alias": 4, "type": "String", "value": "EXECUTE"},
    {"name": "Good Count", "alias": 5, "type": "Int32", "value": 120},
]


def born(decoder: SparkplugDecoder) -> int:
    """NBIRTH (seq 0) and the press's DBIRTH (seq 1) decoded; the next seq."""
    birth, dbirth = tahu_encode(nbirth(), {"timestamp": MS, "seq": 1, "metrics": DEVICE_METRICS})
    decoder.decode(topic("NBIRTH"), birth)
    decoder.decode(topic("DBIRTH", DEVICE), dbirth)
    return 2


def ddata(seq: int, *metrics: dict, ms: int = MS + 1000) -> dict:
    return {"timestamp": ms, "seq": seq, "metrics": list(metrics)}


def readings(items: list) -> list[tuple]:
    return [
        (i["machine_id"], i["sensor"], i["ts"], i["value"])
        for i in items
        if isinstance(i, dict) and "signal" not in i
    ]


def signals(items: list) -> list[tuple]:
    return [
        (i["machine_id"], i["signal"], i["value"], i["text"])
        for i in items
        if isinstance(i, dict) and "signal" in i
    ]


def dead(items: list) -> list[str]:
    return [i.reason for i in items if isinstance(i, Rejected)]


def test_subscribes_to_the_group_or_every_group():
    assert isinstance(SparkplugDecoder(), MqttDecoder)  # the MQTT source's decoder protocol
    assert isinstance(decoder_factory("sparkplug")(), SparkplugDecoder)  # --mqtt-format
    assert SparkplugDecoder().subscriptions() == ["spBv1.0/+/#"]
    assert SparkplugDecoder(group=G).subscriptions() == [f"spBv1.0/{G}/#"]
    with pytest.raises(ValueError, match="one topic level"):
        SparkplugDecoder(group="a/#")


def test_births_carry_values_and_state_online_then_data_resolves_aliases():
    decoder = SparkplugDecoder(group=G)
    birth, dbirth = tahu_encode(nbirth(), {"timestamp": MS, "seq": 1, "metrics": DEVICE_METRICS})
    node_items = decoder.decode(topic("NBIRTH"), birth)
    # the protocol's own metrics (bdSeq, Node Control/...) are neither readings nor dead
    # letters, and a gateway without metrics of the plant is no machine: no state of its own
    assert node_items == []
    items = decoder.decode(topic("DBIRTH", DEVICE), dbirth)
    assert signals(items) == [
        (DEVICE, "state", None, "online"),
        (DEVICE, "state", None, "EXECUTE"),
        (DEVICE, "good_count", 120.0, None),
    ]
    assert readings(items) == [
        (DEVICE, "Spindle.Temp_C", T0, 41.5),
        (DEVICE, "vibration_mm_s", T0, 0.5),
        (DEVICE, "Running", T0, 1.0),
    ]
    (data,) = tahu_encode(
        ddata(
            2,
            {"alias": 1, "type": "Double", "value": 43.25},
            {"alias": 3, "type": "Boolean", "value": False},
            {"alias": 2, "type": "Float", "value": 0.75, "timestamp": MS + 1500},
            {"alias": 5, "type": "Int32", "value": 121},
        )
    )
    items = decoder.decode(topic("DDATA", DEVICE), data)
    t1 = T0 + timedelta(seconds=1)
    assert readings(items) == [
        (DEVICE, "Spindle.Temp_C", t1, 43.25),
        (DEVICE, "Running", t1, 0.0),
        (DEVICE, "vibration_mm_s", T0 + timedelta(seconds=1.5), 0.75),
    ]
    assert signals(items) == [(DEVICE, "good_count", 121.0, None)]
    assert dead(items) == []
    assert decoder.counts()["seq_gaps"] == 0
    # the readings are what the pipeline's parser takes, no dead letter
    parsed = parse_records(items[:3], "mqtt")
    assert parsed.dead is None and parsed.ok.height == 3


@pytest.mark.parametrize(
    ("datatype", "value", "expected"),
    [
        ("Int8", -5, -5.0),
        ("Int16", -300, -300.0),
        ("Int32", -70000, -70000.0),
        ("Int64", -7, -7.0),
        ("UInt8", 250, 250.0),
        ("UInt16", 65000, 65000.0),
        ("UInt32", 4_000_000_000, 4e9),
        ("UInt64", 2**53, float(2**53)),
        ("Float", 1.5, 1.5),
        ("Double", -2.25, -2.25),
        ("Boolean", True, 1.0),
    ],
)
def test_numbers_and_booleans_are_readings(datatype, value, expected):
    decoder = SparkplugDecoder()
    (birth,) = tahu_encode(nbirth(metrics=[{"name": "x", "type": datatype, "value": value}]))
    assert readings(decoder.decode(topic("NBIRTH"), birth)) == [(NODE, "x", T0, expected)]


@pytest.mark.parametrize(
    ("metric", "says"),
    [
        ({"name": "Recipe", "type": "String", "value": "A7"}, "'Recipe' is a String, not a number"),
        ({"name": "Since", "type": "DateTime", "value": MS}, "'Since' is a DateTime, not a number"),
        ({"name": "Blob", "type": "Bytes", "value": [1, 2]}, "'Blob' is a Bytes, not a number"),
        ({"name": "Temp", "type": "Double", "value": None}, "'Temp' is null"),
        ({"name": "Temp (°C)", "type": "Double", "value": 1.0}, "does not fit the id rule"),
        ({"name": "State", "type": "DateTime", "value": MS}, "no usable value"),
    ],
)
def test_what_is_not_a_reading_is_a_dead_letter_naming_the_metric(metric, says):
    decoder = SparkplugDecoder()
    (birth,) = tahu_encode(nbirth(metrics=[metric, {"name": "ok", "type": "Double", "value": 2.0}]))
    items = decoder.decode(topic("NBIRTH"), birth)
    (reason,) = dead(items)
    assert reason.startswith(topic("NBIRTH") + ": ") and says in reason
    assert readings(items) == [(NODE, "ok", T0, 2.0)]  # the valid metric beside it goes on
    assert decoder.counts()["dead_letters"] == 1


def test_default_signals_match_the_last_level_of_a_name_in_any_spelling():
    decoder = SparkplugDecoder()
    (birth,) = tahu_encode(
        nbirth(
            metrics=[
                {"name": "Press/Machine State", "type": "String", "value": "Held"},
                {"name": "MES/GoodParts", "type": "UInt32", "value": 7},
                {"name": "reject_count", "type": "Int64", "value": 1},
                {"name": "State of charge", "type": "Double", "value": 0.5},  # a sensor
            ]
        )
    )
    items = decoder.decode(topic("NBIRTH"), birth)
    assert signals(items) == [
        (NODE, "state", None, "online"),
        (NODE, "state", None, "Held"),
        (NODE, "good_count", 7.0, None),
        (NODE, "scrap_count", 1.0, None),
    ]
    assert readings(items) == [(NODE, "State_of_charge", T0, 0.5)]


def test_a_value_whose_quality_is_not_good_is_a_dead_letter_with_its_code():
    decoder = SparkplugDecoder()
    seq = born(decoder)

    def temp(value: float, quality: int | None) -> dict:
        props = (
            {}
            if quality is None
            else {"properties": {"Quality": {"type": "Int32", "value": quality}}}
        )
        return {"alias": 1, "type": "Double", "value": value} | props

    (data,) = tahu_encode(ddata(seq, temp(1.0, 192), temp(2.0, 0), temp(3.0, 500), temp(4.0, None)))
    items = decoder.decode(topic("DDATA", DEVICE), data)
    assert [r[3] for r in readings(items)] == [1.0, 4.0]
    assert [r.split(": ", 1)[1] for r in dead(items)] == [
        "metric 'Spindle/Temp C' has quality 0, not Good (192)",
        "metric 'Spindle/Temp C' has quality 500, not Good (192)",
    ]


def test_a_signal_map_of_its_own():
    decoder = SparkplugDecoder(
        signals={"MES/Mode": "state", "Parts OK": "good_count", "Parts NOK": "scrap_count"}
    )
    (birth,) = tahu_encode(
        nbirth(
            metrics=[
                {"name": "MES/Mode", "type": "Int32", "value": 6},
                {"name": "Parts OK", "type": "UInt32", "value": 10},
                {"name": "Parts NOK", "type": "UInt64", "value": 2},
                {"name": "State", "type": "String", "value": "IDLE"},  # not mapped here
            ]
        )
    )
    items = decoder.decode(topic("NBIRTH"), birth)
    assert signals(items) == [
        (NODE, "state", None, "online"),
        (NODE, SignalKind.STATE, 6.0, None),
        (NODE, SignalKind.GOOD_COUNT, 10.0, None),
        (NODE, SignalKind.SCRAP_COUNT, 2.0, None),
    ]
    assert "'State' is a String" in dead(items)[0]
    # an edge node with metrics of its own is a machine: its death is its offline state too
    (death,) = tahu_encode(
        {"timestamp": MS, "metrics": [{"name": "bdSeq", "type": "UInt64", "value": 0}]}
    )
    assert signals(decoder.decode(topic("NDEATH"), death)) == [(NODE, "state", None, "offline")]


def test_an_alias_without_a_birth_is_a_dead_letter_and_asks_for_a_rebirth(caplog):
    decoder = SparkplugDecoder()  # started after the edge node's births
    (data,) = tahu_encode(
        ddata(
            7,
            {"alias": 1, "type": "Double", "value": 1.0},
            {"name": "named", "type": "Double", "value": 2.0},
        )
    )
    with caplog.at_level(logging.WARNING, logger="floorsight.pipelines.sparkplug"):
        items = decoder.decode(topic("DDATA", DEVICE), data)
    (reason,) = dead(items)
    assert "alias 1 is unknown" in reason and "rebirth" in reason
    # a metric sent by name needs no birth
    assert readings(items) == [(DEVICE, "named", T0 + timedelta(seconds=1), 2.0)]
    assert decoder.counts()["unknown_aliases"] == 1
    assert decoder.nodes_needing_rebirth() == [f"{G}/{NODE}"]
    assert any("Node Control/Rebirth" in r.message for r in caplog.records)
    born(decoder)  # the rebirth
    assert decoder.nodes_needing_rebirth() == []


def test_a_sequence_gap_is_logged_and_counted_and_nbirth_restarts_the_sequence(caplog):
    decoder = SparkplugDecoder()
    seq = born(decoder)
    metric = {"alias": 1, "type": "Double", "value": 1.0}
    payloads = tahu_encode(ddata(seq, metric), ddata(seq + 3, metric), ddata(seq + 4, metric))
    with caplog.at_level(logging.WARNING, logger="floorsight.pipelines.sparkplug"):
        for p in payloads:
            assert len(readings(decoder.decode(topic("DDATA", DEVICE), p))) == 1
    assert decoder.counts()["seq_gaps"] == 1
    (warning,) = [r.getMessage() for r in caplog.records if "sequence gap" in r.getMessage()]
    assert f"{G}/{NODE}" in warning and "expected seq 3, got 5" in warning
    # the counts go to the log when the source snapshots the decoder's state
    with caplog.at_level(logging.INFO, logger="floorsight.pipelines.sparkplug"):
        decoder.state()
    assert "seq gaps 1, unknown aliases 0" in caplog.records[-1].getMessage()
    # a new NBIRTH (seq 0) after seq 6 is no gap
    (again,) = tahu_encode(nbirth(bdseq=1))
    decoder.decode(topic("NBIRTH"), again)
    assert decoder.counts()["seq_gaps"] == 1


def test_seq_wraps_from_255_to_0_without_a_gap():
    decoder = SparkplugDecoder()
    (birth,) = tahu_encode(nbirth(seq=254))
    decoder.decode(topic("NBIRTH"), birth)
    metric = {"name": "x", "type": "Double", "value": 1.0}
    for p in tahu_encode(ddata(255, metric), ddata(0, metric), ddata(1, metric)):
        decoder.decode(topic("NDATA"), p)
    assert decoder.counts()["seq_gaps"] == 0


def test_deaths_are_offline_states_and_a_stale_will_changes_nothing():
    decoder = SparkplugDecoder()
    born(decoder)
    other = "press4"
    (dbirth4, ddeath4) = tahu_encode(
        {"timestamp": MS, "seq": 2, "metrics": [{"name": "t", "type": "Double", "value": 1.0}]},
        {"timestamp": MS + 5000, "seq": 3},
    )
    decoder.decode(topic("DBIRTH", other), dbirth4)
    items = decoder.decode(topic("DDEATH", other), ddeath4)
    assert items == [
        {
            "machine_id": other,
            "signal": "state",
            "ts": T0 + timedelta(seconds=5),
            "value": None,
            "text": "offline",
        }
    ]
    # a will from an earlier session (bdSeq 7; this birth's is 0) is not this node's death
    stale, death = tahu_encode(
        {"timestamp": MS, "metrics": [{"name": "bdSeq", "type": "UInt64", "value": 7}]},
        {"timestamp": MS, "metrics": [{"name": "bdSeq", "type": "UInt64", "value": 0}]},
    )
    assert decoder.decode(topic("NDEATH"), stale) == []
    assert decoder.counts()["stale_deaths"] == 1
    items = decoder.decode(topic("NDEATH"), death)
    assert signals(items) == [(DEVICE, "state", None, "offline")]
    # a will's timestamp is its session's start: the death takes the time it was received
    assert {i["ts"] for i in items} == {RECEIVE_TIME}
    # after the death, its aliases are gone: data needs a new birth
    (data,) = tahu_encode(ddata(4, {"alias": 1, "type": "Double", "value": 1.0}))
    assert "alias 1 is unknown" in dead(decoder.decode(topic("DDATA", DEVICE), data))[0]


def test_state_is_json_and_a_restored_decoder_goes_on_where_it_was():
    decoder = SparkplugDecoder()
    seq = born(decoder)
    state = json.loads(json.dumps(decoder.state()))
    restored = SparkplugDecoder()
    restored.restore(state)
    (data, gap) = tahu_encode(
        ddata(seq, {"alias": 1, "type": "Double", "value": 44.0}),
        ddata(seq + 2, {"alias": 2, "type": "Float", "value": 0.25}),
    )
    assert readings(restored.decode(topic("DDATA", DEVICE), data)) == [
        (DEVICE, "Spindle.Temp_C", T0 + timedelta(seconds=1), 44.0)
    ]
    restored.decode(topic("DDATA", DEVICE), gap)
    assert restored.counts()["seq_gaps"] == 1
    assert restored.counts()["messages"] == decoder.counts()["messages"] + 2


def test_a_json_round_trip_of_the_state_after_every_message_changes_nothing():
    birth, dbirth = tahu_encode(nbirth(), {"timestamp": MS, "seq": 1, "metrics": DEVICE_METRICS})
    data = tahu_encode(
        ddata(2, {"alias": 1, "type": "Double", "value": 1.0}),
        ddata(5, {"alias": 2, "type": "Float", "value": 2.0}),  # a gap
        ddata(6, {"alias": 42, "type": "Double", "value": 3.0}),  # an unknown alias
        ddata(
            7,
            {"alias": 4, "type": "String", "value": "HELD"},
            {"alias": 5, "type": "Int32", "value": 9},
        ),
        {"timestamp": MS + 9000, "seq": 8},  # DDEATH
        {"timestamp": MS, "metrics": [{"name": "bdSeq", "type": "UInt64", "value": 0}]},
    )
    kinds = ["DDATA"] * 4 + ["DDEATH", "NDEATH"]
    messages = [(topic("NBIRTH"), birth), (topic("DBIRTH", DEVICE), dbirth)] + [
        (topic(k, None if k == "NDEATH" else DEVICE), p) for k, p in zip(kinds, data, strict=True)
    ]
    straight = SparkplugDecoder()
    expected = [straight.decode(t, p) for t, p in messages]
    got, state = [], SparkplugDecoder().state()
    for t, p in messages:
        decoder = SparkplugDecoder()
        decoder.restore(json.loads(json.dumps(state)))
        got.append(decoder.decode(t, p))
        state = decoder.state()
    assert got == expected
    assert decoder.counts() == straight.counts()
    assert straight.counts()["seq_gaps"] == 1 and straight.counts()["unknown_aliases"] == 1


@pytest.mark.parametrize("state", [{"nodes": {"G/n": {"seq": "x"}}}, {"nodes": []}, {"x": 1}])
def test_a_malformed_state_restores_as_empty(state):
    decoder = SparkplugDecoder()
    decoder.restore(state)
    assert decoder.state()["nodes"] == {}


def test_the_state_kept_is_bounded():
    # each NBIRTH defines 3 metrics (a, bdSeq, Node Control/Rebirth): 6 of 8 before the DBIRTH
    decoder = SparkplugDecoder(max_nodes=2, max_devices=1, max_metrics=8)
    births = tahu_encode(
        nbirth(metrics=[{"name": "a", "type": "Double", "value": 1.0}]),
        {
            "timestamp": MS,
            "seq": 1,
            "metrics": [{"name": f"m{i}", "type": "Double", "value": 1.0} for i in range(4)],
        },
        {"timestamp": MS, "seq": 2, "metrics": []},
    )
    decoder.decode(topic("NBIRTH", edge="n1"), births[0])
    decoder.decode(topic("NBIRTH", edge="n2"), births[0])
    (refused,) = decoder.decode(topic("NBIRTH", edge="n3"), births[0])
    assert "2 edge nodes are tracked already" in refused.reason
    items = decoder.decode(topic("DBIRTH", "d1", edge="n1"), births[1])
    assert len(readings(items)) == 2
    assert [r.split(": ")[1] for r in dead(items)] == [
        "metric 'm2' refused",
        "metric 'm3' refused",
    ]
    assert "8 metrics are tracked already" in dead(items)[0]
    (refused,) = decoder.decode(topic("DBIRTH", "d2", edge="n1"), births[2])
    assert "1 devices are tracked already" in refused.reason
    assert decoder.counts()["refused"] == 4  # a node, two metrics, a device


@pytest.mark.parametrize(
    ("where", "payload", "says"),
    [
        ("spBv1.0/G/DDATA/gw1/d1", b"\xff\xff\xff", "not a Sparkplug B payload"),
        ("spBv1.0/G/DDATA/gw1/d1", b"", "no timestamp"),
        ("spBv1.0/G/NDATA", b"", "3 levels"),
        ("spBv1.0/G/XDATA/gw1", b"", "unknown Sparkplug message type 'XDATA'"),
        ("spBv1.0/G/NBIRTH/gw1/d1", b"", "NBIRTH on a topic with a device"),
        ("spBv1.0/G/DBIRTH/gw1", b"", "DBIRTH on a topic without a device"),
        ("spBv1.0/G/NBIRTH/_gw", b"", "machine id '_gw' does not fit"),
        ("plant/L1/M01/t", b"{}", "not a Sparkplug B topic"),
        ("spBv1.0/G/NDATA/gw1", b"\x00" * 300_000, "exceeds"),
    ],
)
def test_garbage_is_a_dead_letter_that_starts_with_the_topic(where, payload, says):
    decoder = SparkplugDecoder()
    if says == "no timestamp":
        (payload,) = tahu_encode(
            {"seq": 0, "metrics": [{"name": "x", "type": "Double", "value": 1}]}
        )
    (item,) = decoder.decode(where, payload)
    assert isinstance(item, Rejected)
    assert item.reason.startswith(where[:200] + ": ") and says in item.reason, item.reason


def test_host_state_and_commands_are_ignored_and_other_groups_refused():
    decoder = SparkplugDecoder(group=G)
    assert decoder.decode("spBv1.0/STATE/scada1", b'{"online": true, "timestamp": 1}') == []
    (cmd,) = tahu_encode(
        {
            "timestamp": MS,
            "metrics": [{"name": "Node Control/Rebirth", "type": "Boolean", "value": True}],
        }
    )
    assert decoder.decode(f"spBv1.0/{G}/NCMD/{NODE}", cmd) == []
    assert decoder.counts()["ignored"] == 2
    (item,) = decoder.decode(f"spBv1.0/Other/NDATA/{NODE}", cmd)
    assert "group 'Other' is not 'Plant1'" in item.reason


def test_payloads_compressed_by_tahus_client_are_read():
    decoder = SparkplugDecoder()
    born(decoder)
    data = tahu_encode(
        ddata(2, {"alias": 1, "type": "Double", "value": 40.0}) | {"compress": "GZIP"},
        ddata(3, {"alias": 1, "type": "Double", "value": 41.0}) | {"compress": "DEFLATE"},
    )
    values = [readings(decoder.decode(topic("DDATA", DEVICE), p))[0][3] for p in data]
    assert values == [40.0, 41.0]
    assert decoder.counts()["seq_gaps"] == 0  # the seq inside the compressed body counts


def compressed(body: bytes, algorithm: str | None = "GZIP") -> bytes:
    """A compressed payload's wrapper as Tahu encodes it, around ``body``."""
    metrics = (
        [] if algorithm is None else [{"name": "algorithm", "type": "String", "value": algorithm}]
    )
    wrapper = {
        "uuid": "SPBV1.0_COMPRESSED",
        "body": base64.b64encode(body).decode(),
        "metrics": metrics,
    }
    return tahu_encode(wrapper)[0]


@pytest.mark.parametrize(
    ("body", "algorithm", "says"),
    [
        (gzip.compress(b"\0" * (8 << 20)), "GZIP", "inflates beyond 1048576 bytes"),
        (gzip.compress(b"x" * 1000)[:20], "GZIP", "cut short"),
        (b"not deflated", None, "does not inflate"),
        (zlib.compress(b"x"), "LZ4", "compression 'LZ4' is neither DEFLATE nor GZIP"),
        (zlib.compress(b"\xff\xff"), "DEFLATE", "not a compressed Sparkplug B payload"),
    ],
)
def test_a_compressed_payload_that_is_hostile_is_a_dead_letter(body, algorithm, says):
    where = topic("NDATA")
    (item,) = SparkplugDecoder().decode(where, compressed(body, algorithm))
    assert isinstance(item, Rejected) and item.reason.startswith(where) and says in item.reason


# -- hostile input: nothing raises, whatever arrives ---------------------------------------

_ID = re.compile(ID_PATTERN)
_KINDS = ["NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA", "NCMD", "STATE", "x"]


def _check(where: str, items: object) -> None:
    assert isinstance(items, list)
    for item in items:
        if isinstance(item, Rejected):
            assert item.reason.startswith(where[:200]) and len(item.reason) < 600
            assert isinstance(item.raw, str) and len(item.raw) <= 4200
            item.raw.encode("utf-8")
            item.reason.encode("utf-8")
            continue
        assert isinstance(item, dict)
        assert _ID.fullmatch(item["machine_id"])
        if "signal" in item:
            ts = item["ts"]
            assert ts is RECEIVE_TIME or (isinstance(ts, datetime) and ts.tzinfo is UTC)
            assert item["signal"] in set(SignalKind)
            assert item["value"] is None or isinstance(item["value"], float)
            assert item["text"] is None or isinstance(item["text"], str)
        else:
            assert isinstance(item["ts"], datetime) and item["ts"].tzinfo is UTC
            assert _ID.fullmatch(item["sensor"])
            assert isinstance(item["value"], float)


topics = st.builds(
    lambda g, k, e, d: "/".join(["spBv1.0", g, k, e, *d]),
    st.sampled_from([G, "", "+", "a b"]),
    st.sampled_from(_KINDS),
    st.sampled_from([NODE, "", "n/x", "é"]),
    st.lists(st.sampled_from([DEVICE, "", "d 1", "#"]), max_size=2),
)


@FUZZ
@given(where=topics, payload=st.binary(max_size=600))
def test_random_bytes_on_any_sparkplug_topic_never_raise(where, payload):
    decoder = SparkplugDecoder()
    _check(where, decoder.decode(where, payload))
    json.dumps(decoder.state())


@pytest.fixture(scope="module")
def valid_payloads() -> list[tuple[str, bytes]]:
    metrics = [
        {"name": n, "alias": i, "type": t, "value": v, "timestamp": MS}
        for i, (n, t, v) in enumerate(
            [
                ("a/b c", "Double", 1.5),
                ("i", "Int8", -3),
                ("l", "Int64", -(2**40)),
                ("s", "String", "RUN"),
                ("State", "String", "IDLE"),
                ("b", "Boolean", True),
                ("u", "UInt64", 2**63 + 5),
            ]
        )
    ]
    births = tahu_encode(nbirth(metrics=metrics), {"timestamp": MS, "seq": 1, "metrics": metrics})
    values = [{"alias": m["alias"], "type": m["type"], "value": m["value"]} for m in metrics]
    data = tahu_encode(ddata(2, *values), ddata(3, *values) | {"compress": "GZIP"})
    return [
        (topic("NBIRTH"), births[0]),
        (topic("DBIRTH", DEVICE), births[1]),
        (topic("DDATA", DEVICE), data[0]),
        (topic("DDATA", DEVICE), data[1]),
    ]


@FUZZ
@given(data=st.data())
def test_mutated_valid_payloads_never_raise(valid_payloads, data):
    decoder = SparkplugDecoder()
    for where, payload in valid_payloads:
        buf = bytearray(payload)
        for _ in range(data.draw(st.integers(0, 6))):
            op = data.draw(st.sampled_from(["flip", "cut", "insert", "drop"]))
            at = data.draw(st.integers(0, max(len(buf) - 1, 0)))
            if op == "flip" and buf:
                buf[at] ^= 1 << data.draw(st.integers(0, 7))
            elif op == "cut":
                del buf[at:]
            elif op == "insert":
                buf[at:at] = data.draw(st.binary(min_size=1, max_size=8))
            elif buf:
                del buf[at]
        _check(where, decoder.decode(where, bytes(buf)))
    json.dumps(decoder.state())
    counts = decoder.counts()
    assert set(counts) == set(COUNTERS) and counts["messages"] == len(valid_payloads)


def test_unmutated_valid_payloads_decode_fully(valid_payloads):
    decoder = SparkplugDecoder()
    out = [decoder.decode(t, p) for t, p in valid_payloads]
    values = [v for m, s, ts, v in readings(out[2])]
    assert values == [1.5, -3.0, float(-(2**40)), 1.0, float(2**63 + 5)]
    assert not math.isnan(sum(values))
    assert [r for r in dead(out[2])] == [
        f"{topic('DDATA', DEVICE)}: metric 's' is a String, not a number "
        "(map it as a signal to read it)"
    ]
