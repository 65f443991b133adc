"""Fuzz suite of the MQTT parser path: any message becomes a reading or a dead letter.

Hypothesis (bounded) sends arbitrary bytes, arbitrary JSON-ish values and mutations of a valid
payload through what the pipeline runs per MQTT poll (``parse_mqtt_payload`` ->
``parse_records`` -> ``validate_readings`` with the context's catalogue). No exception escapes,
readings + dead letters == messages, every accepted reading passes an independent statement of
the rules, and every known-bad class of issue 14 is dead-lettered, never accepted.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floorsight.pipelines.validate import (
    ID_PATTERN,
    MAX_RAW_CHARS,
    Catalogue,
    ReadingRules,
    parse_mqtt_payload,
    parse_records,
    validate_readings,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULES = ReadingRules.live()
SENSORS = ("spindle_temp_c", "vibration_mm_s")
CATALOGUE = Catalogue(frozenset({"M01", "M02"}), {"M01": frozenset(SENSORS)})
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def good(machine_id: str = "M01", sensor: str = "spindle_temp_c", **kw) -> dict:
    return {
        "machine_id": machine_id,
        "sensor": sensor,
        "ts": (NOW - timedelta(seconds=1)).isoformat(),
        "value": 42.5,
        "unit": "degC",
    } | kw


def topic_of(record: object) -> str:
    if isinstance(record, dict) and isinstance(record.get("machine_id"), str):
        return f"plant/L1/{record['machine_id']}/{record.get('sensor')}"
    return "plant/L1/M01/spindle_temp_c"


def poll(messages: list[tuple[str, bytes]]) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """One MQTT poll as the pipeline handles it: readings taken, and every dead letter."""
    parsed = parse_records([parse_mqtt_payload(t, p) for t, p in messages], "mqtt")
    checked = validate_readings(parsed.ok, RULES, "mqtt", now=NOW, catalogue=CATALOGUE)
    dead = [d for d in (parsed.dead, checked.dead) if d is not None]
    assert checked.ok.height + sum(d.height for d in dead) == len(messages)
    for d in dead:
        assert d["reason"].null_count() == 0 and (d["reason"].str.len_chars() > 0).all()
        assert (d["raw"].str.len_chars() <= MAX_RAW_CHARS + 100).all()
        assert (d["reason"].str.len_chars() <= 400).all()
    for m, s, ts, v in checked.ok.select("machine_id", "sensor", "ts", "value").iter_rows():
        assert _plausible(m, s, ts, v), (m, s, ts, v)
    return checked.ok, dead


def _plausible(machine_id: str, sensor: str, ts: datetime, value: float) -> bool:
    """The rules stated independently of validate.py: what an accepted reading must be."""
    return (
        re.fullmatch(ID_PATTERN, machine_id) is not None
        and machine_id in CATALOGUE.machines
        and (machine_id not in CATALOGUE.sensors or sensor in CATALOGUE.sensors[machine_id])
        and re.fullmatch(ID_PATTERN, sensor) is not None
        and NOW - RULES.max_past <= ts <= NOW + RULES.max_future
        and math.isfinite(value)
        and abs(value) <= 1e15
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["M01", "spindle_temp_c", NOW.isoformat(), "\ud800", " ", "\x00"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
records = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "machine_id": st.one_of(st.sampled_from(["M01", "M02", "M99"]), json_values),
            "sensor": st.one_of(st.sampled_from([*SENSORS, "zz"]), json_values),
            "ts": st.one_of(
                st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
                st.just((NOW - timedelta(seconds=5)).isoformat()),
                json_values,
            ),
            "value": st.one_of(st.floats(), st.integers(), json_values),
        }
    ),
)


def _dump(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=True).encode()  # lone surrogates as \ud800 escapes


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=40), st.binary(max_size=600)), max_size=20))
def test_arbitrary_bytes_on_arbitrary_topics_never_crash(messages) -> None:
    poll(messages)


@FUZZ
@given(st.lists(records, max_size=20))
def test_arbitrary_json_values_never_crash_and_are_accounted_for(values) -> None:
    poll([(topic_of(v), _dump(v)) for v in values])


@st.composite
def mutated(draw) -> bytes:
    """A valid payload with a few random byte edits (flip, insert, delete, truncate)."""
    data = bytearray(_dump(good()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, len(data)))
        if op == "flip" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        else:
            del data[i:]
    return bytes(data)


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=20))
def test_mutations_of_a_valid_payload_never_crash(payloads) -> None:
    poll([("plant/L1/M01/spindle_temp_c", p) for p in payloads])


#: every known-bad class of issue 14, as (topic, payload): each must be a dead letter
KNOWN_BAD = {
    "whitespace machine id": _dump(good(machine_id="   ")),
    "whitespace sensor": _dump(good(sensor="\t")),
    "NUL in machine id": _dump(good(machine_id="M0\x001")),
    "NUL in sensor": _dump(good(sensor="spindle\x00temp_c")),
    "200,000-character id": _dump(good(machine_id="M" * 200_000)),
    "unknown machine": _dump(good(machine_id="M99")),
    "unknown sensor": _dump(good(sensor="zz")),
    "year 2120": _dump(good(ts="2120-01-01T00:00:00+00:00")),
    "before 1970": _dump(good(ts="1969-12-31T23:59:59+00:00")),
    "a day ahead": _dump(good(ts=(NOW + timedelta(days=1)).isoformat())),
    "+1.8e308": b'{"machine_id": "M01", "sensor": "spindle_temp_c", "ts": "%s", "value": 1.8e308}'
    % NOW.isoformat().encode(),
    "-1.8e308": b'{"machine_id": "M01", "sensor": "spindle_temp_c", "ts": "%s", "value": -1.8e308}'
    % NOW.isoformat().encode(),
    "+1.7e308": _dump(good(value=1.7e308)),
    "-1.7e308": _dump(good(value=-1.7e308)),
    "_reason forgery": _dump(good(value="hot", _reason="publisher says fine")),
    "lone surrogate id": _dump(good(machine_id="M\ud800")),
    "5,000-digit value": b'{"machine_id": "M01", "sensor": "spindle_temp_c", "ts": "x", "value": '
    + b"9" * 5000
    + b"}",
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "nested 1,000 deep value": _dump(good(value=json.loads("[" * 900 + "]" * 900))),
    "NaN literal": b'{"machine_id": "M01", "sensor": "spindle_temp_c", "ts": "x", "value": NaN}',
    "invalid UTF-8": b'{"machine_id": "M\xff01"}',
    "gigantic payload": b'{"x": "' + b"a" * 300_000 + b'"}',
    "JSON array": b"[" + _dump(good()) + b"]",
    "naive time": _dump(good(ts=NOW.replace(tzinfo=None).isoformat())),
    "topic of another machine": _dump(good(machine_id="M02")),
}


@pytest.mark.parametrize("kind", list(KNOWN_BAD))
def test_every_known_bad_class_is_dead_lettered_never_accepted(kind) -> None:
    payload = KNOWN_BAD[kind]
    ok, dead = poll([("plant/L1/M01/spindle_temp_c", _dump(good())), (_topic(kind), payload)])
    assert ok.height == 1  # the valid reading beside it is taken
    reasons = [r for d in dead for r in d["reason"].to_list()]
    assert len(reasons) == 1 and "publisher says fine" not in reasons[0]


def _topic(kind: str) -> str:
    return "plant/L1/M01/spindle_temp_c" if kind == "topic of another machine" else "readings"


def test_a_forged_reason_on_a_valid_reading_does_not_dead_letter_it() -> None:
    ok, dead = poll([("plant/L1/M01/spindle_temp_c", _dump(good(_reason="drop this one")))])
    assert ok.height == 1 and not dead


@given(
    st.lists(
        st.one_of(
            st.sampled_from(list(KNOWN_BAD)).map(lambda k: (True, _topic(k), KNOWN_BAD[k])),
            st.tuples(
                st.sampled_from(["M01", "M02"]), st.sampled_from(SENSORS), st.integers(0, 299)
            )
            .filter(lambda t: t[0] == "M01" or t[1] == SENSORS[0])
            .map(
                lambda t: (
                    False,
                    f"plant/L1/{t[0]}/{t[1]}",
                    _dump(
                        good(t[0], t[1], ts=(NOW - timedelta(seconds=t[2])).isoformat(), value=t[2])
                    ),
                )
            ),
        ),
        min_size=100,
        max_size=100,
    )
)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_one_poll_of_100_messages_mixing_good_and_poison(messages) -> None:
    ok, dead = poll([(topic, payload) for _, topic, payload in messages])
    good_values = sorted(json.loads(p)["value"] for is_bad, _, p in messages if not is_bad)
    assert sorted(ok["value"].to_list()) == good_values
    assert sum(d.height for d in dead) == sum(is_bad for is_bad, _, _ in messages)
