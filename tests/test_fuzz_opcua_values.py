"""OPC-UA values from a foreign server: any Variant, status and source timestamp.

``reading_from_value`` turns each into a reading or a reason and never raises (fuzzed); a real
asyncua server on 127.0.0.1 that sends text, a bad status, NaN and a zero time between valid
values makes the source emit the valid ones as readings and the rest as dead letters.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest
from asyncua import Server, ua
from hypothesis import given, settings
from hypothesis import strategies as st

from floorsight.pipelines.opcua_source import NAMESPACE, OpcUaSource, reading_from_value
from floorsight.pipelines.validate import Checked

T0 = datetime(2026, 1, 5, 6, tzinfo=UTC)

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.just(10**5000),  # beyond int's digit limit for str()
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.lists(st.floats(), max_size=5),
    st.datetimes(),
    st.builds(ua.LocalizedText, st.text(max_size=10)),
    st.builds(ua.ExtensionObject),
    st.builds(ua.QualifiedName, st.text(max_size=10)),
    st.builds(ua.Variant, st.floats()),
    st.builds(ua.NodeId, st.integers(0, 1000)),
    st.just(object()),
)
_TIMES = st.one_of(
    st.none(),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.datetimes(
        timezones=st.builds(
            lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
        )
    ),
    st.sampled_from(
        [
            datetime(1601, 1, 1),
            datetime(1601, 1, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59),
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
            datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5))),
        ]
    ),
    st.text(max_size=10),
    st.integers(),
)
_STATUSES = st.one_of(
    st.none(),
    st.integers(0, 2**32 - 1).map(ua.StatusCode),
    st.sampled_from([ua.StatusCode(0), ua.StatusCode(ua.StatusCodes.BadNoData)]),
)


@settings(max_examples=3000, deadline=None)
@given(value=_VALUES, ts=_TIMES, status=_STATUSES)
def test_any_value_and_time_is_a_reading_or_a_reason(value, ts, status) -> None:
    reading, reason = reading_from_value("M1", "temp", value, ts, status=status)
    assert (reading is None) != (reason is None)
    if reason is not None:
        assert isinstance(reason, str) and 0 < len(reason) < 400
        return
    # taken only when it is one: a finite number, a real time, a Good status
    assert isinstance(value, int | float) and not isinstance(value, bool)
    assert isinstance(ts, datetime) and (status is None or status.value >> 30 == 0)
    assert set(reading) == {"machine_id", "sensor", "ts", "value"}
    assert type(reading["value"]) is float and math.isfinite(reading["value"])
    assert reading["value"] == pytest.approx(value, rel=1e-12)
    assert reading["ts"].utcoffset() == timedelta(0)
    assert 1601 < reading["ts"].year < 9999
    # (compared in UTC: Python never calls an inter-zone time in a DST gap or fold equal)
    expected = ts.replace(tzinfo=UTC) if ts.utcoffset() is None else ts.astimezone(UTC)
    assert reading["ts"] == expected


@pytest.mark.parametrize(
    ("value", "ts", "status", "reason"),
    [
        ("21.5", T0, None, "value '21.5' (str) is not a number"),
        (True, T0, None, "value True (bool) is not a number"),
        (None, T0, None, "value is empty"),
        (float("nan"), T0, None, "value is NaN"),
        (10**400, T0, None, "is out of range"),
        ([1.0, 2.0], T0, None, "value [1.0, 2.0] (list) is not a number"),
        (1.0, None, None, "no source timestamp"),
        (1.0, datetime(1601, 1, 1), None, "OPC-UA's zero time"),
        (1.0, datetime(9999, 12, 31, 23, 59, 59), None, "OPC-UA's largest time"),
        (1.0, T0, ua.StatusCode(ua.StatusCodes.BadSensorFailure), "status BadSensorFailure"),
        (1.0, T0, ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue), "Uncertain"),
    ],
)
def test_each_kind_of_bad_value_has_a_reason_naming_it(value, ts, status, reason) -> None:
    assert reason in reading_from_value("M1", "temp", value, ts, status=status)[1]


def test_a_naive_source_timestamp_is_utc_and_an_offset_is_converted() -> None:
    naive = reading_from_value("M1", "temp", 3, datetime(2026, 1, 5, 6))[0]
    assert naive["ts"] == T0 and naive["value"] == 3.0
    berlin = datetime(2026, 1, 5, 7, tzinfo=timezone(timedelta(hours=1)))
    assert reading_from_value("M1", "temp", 3, berlin)[0]["ts"] == T0


def _url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"opc.tcp://127.0.0.1:{s.getsockname()[1]}/hostile/"


# what the hostile server writes to M1/temp, one second apart: (Variant, status)
_WRITES = [
    (ua.Variant(20.0, ua.VariantType.Double), ua.StatusCodes.Good),
    (ua.Variant("hot", ua.VariantType.String), ua.StatusCodes.Good),
    (ua.Variant(21.0, ua.VariantType.Double), ua.StatusCodes.BadSensorFailure),
    (ua.Variant(float("nan"), ua.VariantType.Double), ua.StatusCodes.Good),
    (ua.Variant([1.0, 2.0], ua.VariantType.Double), ua.StatusCodes.Good),
    (ua.Variant(True, ua.VariantType.Boolean), ua.StatusCodes.Good),
    (ua.Variant(b"\xff\x00", ua.VariantType.ByteString), ua.StatusCodes.Good),
    (ua.Variant(ua.LocalizedText("warm"), ua.VariantType.LocalizedText), ua.StatusCodes.Good),
    (ua.Variant(22, ua.VariantType.Int64), ua.StatusCodes.Good),
]


async def _hostile_server(url: str, ready: threading.Event, done: threading.Event) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(url)
    ns = await server.register_namespace(NAMESPACE)
    plant = await server.nodes.objects.add_object(ns, "Plant")
    line = await plant.add_object(ns, "L1")
    machine = await line.add_object(ns, "M1")
    # of the abstract type Number: the server then takes a value of any type after an empty one
    temp = await machine.add_variable(ns, "temp", 0.0, datatype=ua.NodeId(ua.ObjectIds.Number))
    await temp.add_property(ns, "EngineeringUnits", ua.EUInformation(DisplayName="degC"))
    # the source emits a sensor's readings newer than its last: the first one is old
    first = ua.DataValue(ua.Variant(0.0), SourceTimestamp=T0 - timedelta(hours=2))
    await server.write_attribute_value(temp.nodeid, first)
    async with server:
        ready.set()
        await asyncio.sleep(1.0)  # the client browses and subscribes
        for i, (variant, status) in enumerate(_WRITES):
            # asyncua's server refuses a value of another type than the last one unless a bad
            # status has emptied it: empty it first, with a time long before the test's values
            before = T0 - timedelta(hours=1) + timedelta(seconds=i)
            empty = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)
            await server.write_attribute_value(
                temp.nodeid, ua.DataValue(ua.Variant(None), empty, SourceTimestamp=before)
            )
            dv = ua.DataValue(
                variant,
                ua.StatusCode(status),
                SourceTimestamp=T0 + timedelta(seconds=i),
                ServerTimestamp=datetime.now(tz=UTC),
            )
            await server.write_attribute_value(temp.nodeid, dv)
            await asyncio.sleep(0.1)
        while not done.is_set():
            await asyncio.sleep(0.05)


def test_a_hostile_server_values_become_readings_and_dead_letters() -> None:
    url = _url()
    ready, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(_hostile_server(url, ready, done)))
    thread.start()
    part = None
    try:
        assert ready.wait(15)
        source = OpcUaSource(url)
        part = source.build_part("s", source.list_parts()[0], None)
        readings, dead = [], []
        deadline = time.monotonic() + 20  # bounded: the test fails rather than waits forever
        while (len(readings) < 2 or len(dead) < 7) and time.monotonic() < deadline:
            for item in part.next_batch():
                checked = item if isinstance(item, Checked) else Checked(item, None)
                recent = pl.col("ts").is_between(T0, T0 + timedelta(minutes=1))
                readings += checked.ok.filter(recent).rows()
                if checked.dead is not None:
                    dead += checked.dead.filter(recent).select("ts", "reason").rows()
            time.sleep(0.05)
    finally:
        done.set()
        if part is not None:
            part.close()
        thread.join(15)
    assert readings == [("M1", "temp", T0, 20.0), ("M1", "temp", T0 + timedelta(seconds=8), 22.0)]
    assert dead == [
        (T0 + timedelta(seconds=i), reason)
        for i, reason in enumerate(
            [
                "value 'hot' (str) is not a number",
                "status BadSensorFailure (0x808C0000)",
                "value is NaN",
                "value [1.0, 2.0] (list) is not a number",
                "value True (bool) is not a number",
                "value b'\\xff\\x00' (bytes) is not a number",
                "value LocalizedText(Locale=None, Text='warm') (LocalizedText) is not a number",
            ],
            start=1,
        )
    ]


def test_the_handler_never_raises_into_asyncua_and_dead_letters_what_it_cannot_read() -> None:
    from types import SimpleNamespace

    from floorsight.pipelines.opcua_source import _Handler

    source = OpcUaSource(_url(), max_backoff=timedelta(seconds=0.2))  # nobody listens there
    part = source.build_part("s", source.list_parts()[0], None)
    try:
        node = SimpleNamespace(nodeid="n1")
        handler = _Handler(part, {"n1": "M1/temp"})
        good = SimpleNamespace(
            monitored_item=SimpleNamespace(
                Value=ua.DataValue(ua.Variant(1.5), SourceTimestamp=T0, ServerTimestamp=T0)
            )
        )
        handler.datachange_notification(node, 1.5, good)
        handler.datachange_notification(node, "x", good)
        handler.datachange_notification(node, 1.5, object())  # a notification of no known shape
        handler.datachange_notification(SimpleNamespace(nodeid="other"), 1.5, good)  # not ours
        with part._lock:
            pending = list(part._pending)
            dead = [(d["machine_id"], d["sensor"], d["_reason"]) for d in part._dead]
    finally:
        part.close()
    assert pending == [("M1", "temp", T0, 1.5)]
    assert dead == [
        ("M1", "temp", "value 'x' (str) is not a number"),
        ("M1", "temp", "value not readable: AttributeError"),
    ]
