"""The OPC-UA source on a server that is not floorsight's, through a tag map: the partition's
own output (readings, dead letters, machine signals), server by server.

The server (tests/opcua_servers.py) is an asyncua server with a namespace and names of its own,
run in a thread on 127.0.0.1.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from asyncua import ua

from floorsight.opcua_client import OpcuaSecurity
from floorsight.pipelines.opcua_source import OpcUaSource, preflight
from floorsight.pipelines.opcua_tags import TagMapError, read_tag_map
from floorsight.pipelines.validate import Checked
from floorsight.records import Signals
from tests.opcua_servers import ACME_NS, AcmeServer, free_url

HEADER = "node_id,machine_id,sensor,unit,line,scale,offset,min,max,kind\n"


def _map(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "tags.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def _rows(server: AcmeServer) -> list[str]:
    return [
        f"{server.node_text('Press7', 'Force')},press-7,force,kN,L1,0.5,10,0,400,",
        f"{server.node_text('Press7', 'Strokes')},press-7,strokes,1,L1,,,,,",
        f"{server.node_text('Press7', 'State')},press-7,,,L1,,,,,state",
        f"{server.node_text('Press7', 'GoodParts')},press-7,,,L1,,,,,good_count",
        f"{server.node_text('Press7', 'RejectCount')},press-7,,,L1,,,,,scrap_count",
    ]


class Collected:
    def __init__(self) -> None:
        self.readings: list[tuple] = []
        self.dead: list[dict] = []
        self.signals: list[tuple] = []

    def add(self, items: list) -> None:
        for item in items:
            if isinstance(item, Signals):
                self.signals += item.frame.rows()
            elif isinstance(item, Checked):
                self.readings += item.ok.rows()
                if item.dead is not None:
                    self.dead += item.dead.to_dicts()
            else:
                self.readings += item.rows()


def _drain(part, done, timeout: float = 20) -> Collected:
    """Batches of ``part`` until ``done(collected)`` (bounded: the test fails, never hangs)."""
    got = Collected()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got.add(part.next_batch())
        if done(got):
            return got
        time.sleep(0.02)
    return got


def _later() -> datetime:
    """A whole second after every value the server holds now (the source emits a node's values
    newer than its last, and subscribing delivers each node's current value first)."""
    return (datetime.now(tz=UTC) + timedelta(seconds=2)).replace(microsecond=0)


def _wait(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def renumbered():
    """The press shop's server with two namespaces registered before its own (index 4)."""
    with AcmeServer(extra_namespaces=("urn:other:first", "urn:other:second")) as server:
        yield server


def _subscribed(server, tmp_path, rows=None, **kw):
    tags = read_tag_map(_map(tmp_path, rows or _rows(server)))
    source = OpcUaSource(server.url, tags=tags, **kw)
    part = source.build_part("s", source.list_parts()[0], None)
    if source.mode == "subscribe":
        _wait(lambda: server.monitored() >= len(tags.tags))
    else:
        _wait(lambda: part.polls >= 1)
    return part


def test_mapped_nodes_by_namespace_uri_on_a_renumbered_server(renumbered, tmp_path) -> None:
    assert renumbered.ns == 4  # the map's nsu= names survive this
    part = _subscribed(renumbered, tmp_path)
    t = _later()
    try:
        for i, force in enumerate([100.0, 120.0, 900.0]):
            renumbered.write("Press7", "Force", force, source_ts=t + timedelta(seconds=i))
        renumbered.write("Press7", "Strokes", 12, source_ts=t)
        renumbered.write("Press7", "State", 3, source_ts=t)
        renumbered.write("Press7", "GoodParts", 41, source_ts=t)
        renumbered.write("Press7", "RejectCount", 2, source_ts=t)
        got = _drain(part, lambda g: len(g.readings) >= 3 and len(g.signals) >= 3 and g.dead)
    finally:
        part.close()
    # value * scale + offset; 900 kN * 0.5 + 10 = 460 is outside the tag's [0, 400]
    assert sorted(r for r in got.readings if r[2] >= t) == [
        ("press-7", "force", t, 60.0),
        ("press-7", "force", t + timedelta(seconds=1), 70.0),
        ("press-7", "strokes", t, 12.0),
    ]
    assert sorted(s for s in got.signals if s[2] >= t) == [
        ("press-7", "good_count", t, 41.0, None),
        ("press-7", "scrap_count", t, 2.0, None),
        ("press-7", "state", t, 3.0, None),
    ]
    [dead] = [d for d in got.dead if d["ts"] is not None and d["ts"] >= t]
    assert dead["machine_id"] == "press-7" and dead["sensor"] == "force"
    assert "value 460 outside [0, 400]" in dead["reason"] and "line 2" in dead["reason"]
    assert f"nsu={ACME_NS};s=PS.Press7.Force" in dead["raw"]


def test_a_state_sent_as_text_is_a_signal_with_its_text(renumbered, tmp_path) -> None:
    row = f"{renumbered.node_text('Press7', 'Recipe')},press-7,,,,,,,,state"
    part = _subscribed(renumbered, tmp_path, [row])
    t = _later()
    try:
        renumbered.write("Press7", "Recipe", "EXECUTE", source_ts=t)
        got = _drain(part, lambda g: any(s[2] == t for s in g.signals))
    finally:
        part.close()
    assert [s for s in got.signals if s[2] == t] == [("press-7", "state", t, None, "EXECUTE")]


def test_a_value_without_source_timestamp_takes_the_server_timestamp(
    renumbered, tmp_path, caplog
) -> None:
    part = _subscribed(renumbered, tmp_path)
    server_ts = _later()
    try:
        with caplog.at_level(logging.WARNING, logger="floorsight.pipelines.opcua_source"):
            renumbered.write("Press7", "Strokes", 5, server_ts=server_ts, no_source_ts=True)
            later = server_ts + timedelta(seconds=1)
            renumbered.write("Press7", "Strokes", 6, server_ts=later, no_source_ts=True)
            got = _drain(part, lambda g: len([r for r in g.readings if r[3] in (5, 6)]) == 2)
    finally:
        part.close()
    assert [r for r in got.readings if r[3] in (5.0, 6.0)] == [
        ("press-7", "strokes", server_ts, 5.0),
        ("press-7", "strokes", server_ts + timedelta(seconds=1), 6.0),
    ]
    assert part.server_time_values >= 2
    said = [r for r in caplog.records if "take their ServerTimestamp" in r.getMessage()]
    assert len(said) == 1  # logged once, counted always


def test_a_value_with_neither_timestamp_is_a_dead_letter(tmp_path) -> None:
    source = OpcUaSource(free_url(), tags=read_tag_map(_map(tmp_path, ["ns=2;s=A,M1,t,C,,,,,,"])))
    part = source.build_part("s", source.list_parts()[0], None)
    try:
        tag = source.tags.tags[0]
        part.take_value(tag, 1.0, None, None, ua.StatusCode(ua.StatusCodes.Good))
        part.take_value(tag, 1.0, datetime(1601, 1, 1), None, ua.StatusCode(ua.StatusCodes.Good))
        with part._lock:
            reasons = [d["_reason"] for d in part._dead]
    finally:
        part.close()
    assert reasons == [
        "no source timestamp, and no server timestamp",
        "source timestamp 1601-01-01T00:00:00 is OPC-UA's zero time (none given), and no "
        "server timestamp",
    ]


def test_a_node_that_goes_bad_is_a_dead_letter_with_its_status(renumbered, tmp_path) -> None:
    part = _subscribed(renumbered, tmp_path)
    t = _later()
    try:
        failed, off = ua.StatusCodes.BadSensorFailure, ua.StatusCodes.BadOutOfService
        renumbered.write("Press7", "Force", 50.0, source_ts=t, status=failed)
        renumbered.write("Press7", "GoodParts", 9, source_ts=t, status=off)
        got = _drain(part, lambda g: len([d for d in g.dead if d["ts"] == t]) == 2)
    finally:
        part.close()
    dead = sorted((d["sensor"], d["reason"]) for d in got.dead if d["ts"] == t)
    assert dead == [
        ("force", "status BadSensorFailure (0x808C0000)"),
        ("good_count", "status BadOutOfService (0x808D0000)"),
    ]


def test_poll_mode_reads_every_node_once_per_value(renumbered, tmp_path) -> None:
    part = _subscribed(renumbered, tmp_path, mode="poll", interval=timedelta(seconds=0.05))
    t = _later()
    try:
        assert renumbered.monitored() == 0  # no subscription at all
        renumbered.write("Press7", "Force", 100.0, source_ts=t)
        renumbered.write("Press7", "GoodParts", 7, source_ts=t)
        got = _drain(part, lambda g: any(r[2] == t for r in g.readings) and g.signals)
        polls = part.polls
        _wait(lambda: part.polls >= polls + 5)  # the same values, read again and again
        renumbered.write("Press7", "Force", 110.0, source_ts=t + timedelta(seconds=1))
        more = _drain(part, lambda g: any(r[3] == 65.0 for r in g.readings))
    finally:
        part.close()
    forces = [r for r in got.readings + more.readings if r[1] == "force" and r[2] >= t]
    assert forces == [
        ("press-7", "force", t, 60.0),
        ("press-7", "force", t + timedelta(seconds=1), 65.0),
    ]
    assert [s for s in got.signals + more.signals if s[2] >= t] == [
        ("press-7", "good_count", t, 7.0, None)
    ]


def test_a_node_the_server_does_not_know_stops_naming_the_tag_map_line(
    renumbered, tmp_path
) -> None:
    rows = [*_rows(renumbered), f"nsu={ACME_NS};s=PS.Press7.NoSuchTag,press-7,ghost,C,,,,,,"]
    tags = read_tag_map(_map(tmp_path, rows))
    with pytest.raises(TagMapError) as refused:
        preflight(renumbered.url, OpcuaSecurity(), tags)
    assert "tags.csv, line 7, column node_id" in str(refused.value)
    assert "BadNodeIdUnknown (0x80340000)" in str(refused.value)
    # the source itself stops the same way (no endless reconnect)
    source = OpcUaSource(renumbered.url, tags=tags)
    part = source.build_part("s", source.list_parts()[0], None)
    try:
        with pytest.raises(TagMapError, match="line 7"):
            _drain(part, lambda g: False, timeout=10)
    finally:
        part.close()


def test_a_namespace_the_server_does_not_have_is_named(renumbered, tmp_path) -> None:
    tags = read_tag_map(_map(tmp_path, ["nsu=urn:acme:paint-shop;s=PS.Press7.Force,p,f,C,,,,,,"]))
    with pytest.raises(TagMapError, match=r"line 2, column node_id: .*urn:acme:paint-shop"):
        preflight(renumbered.url, OpcuaSecurity(), tags)


def test_nodes_the_server_refuses_to_monitor_are_named_and_polled(
    renumbered, tmp_path, caplog, monkeypatch
) -> None:
    from asyncua.server.monitored_item_service import MonitoredItemService

    create = MonitoredItemService.create_monitored_items

    async def at_most_two(self, params):  # a server that limits monitored items
        results = await create(self, params)
        for result in results[2:]:
            result.StatusCode = ua.StatusCode(ua.StatusCodes.BadTooManyMonitoredItems)
        return results

    monkeypatch.setattr(MonitoredItemService, "create_monitored_items", at_most_two)
    tags = read_tag_map(_map(tmp_path, _rows(renumbered)))
    with caplog.at_level(logging.WARNING, logger="floorsight.pipelines.opcua_source"):
        source = OpcUaSource(renumbered.url, tags=tags, interval=timedelta(seconds=0.05))
        part = source.build_part("s", source.list_parts()[0], None)
        t = _later()
        try:
            _wait(lambda: part.polls >= 1)
            renumbered.write("Press7", "RejectCount", 4, source_ts=t)  # the fifth: polled
            got = _drain(part, lambda g: any(s[2] == t for s in g.signals))
        finally:
            part.close()
    [warning] = [r.getMessage() for r in caplog.records if "refused to monitor" in r.getMessage()]
    assert "3 of 5 nodes" in warning and "BadTooManyMonitoredItems (0x80DB0000)" in warning
    assert "PS.Press7.RejectCount (" in warning and "tags.csv, line 6" in warning
    assert [s for s in got.signals if s[2] == t] == [("press-7", "scrap_count", t, 4.0, None)]


@pytest.mark.parametrize("advertised", [False, True])
def test_a_server_without_history_reconnects_with_the_gap_logged(
    tmp_path, caplog, advertised
) -> None:
    url = free_url()
    first = AcmeServer(url, history=False, advertise_history=advertised).start()
    tags = read_tag_map(_map(tmp_path, _rows(first)))
    source = OpcUaSource(url, tags=tags, max_backoff=timedelta(seconds=0.3))
    part = source.build_part("s", source.list_parts()[0], None)
    t = _later()
    second = None
    try:
        _wait(lambda: first.monitored() >= 5)
        first.write("Press7", "Force", 100.0, source_ts=t)
        before = _drain(part, lambda g: any(r[2] == t for r in g.readings))
        first.stop()
        second = AcmeServer(url, history=False, advertise_history=advertised)
        with caplog.at_level(logging.WARNING, logger="floorsight.pipelines.opcua_source"):
            second.start()
            _wait(lambda: second.monitored() >= 5)
            second.write("Press7", "Force", 120.0, source_ts=t + timedelta(seconds=20))
            after = _drain(part, lambda g: any(r[3] == 70.0 for r in g.readings))
    finally:
        part.close()
        first.stop()
        if second is not None:
            second.stop()
    assert [r for r in before.readings if r[1] == "force" and r[2] >= t] == [
        ("press-7", "force", t, 60.0)
    ]
    forces = [r for r in after.readings if r[1] == "force"]
    assert ("press-7", "force", t + timedelta(seconds=20), 70.0) in forces
    assert all(r[2] > t for r in forces)  # nothing emitted twice
    assert part._fatal is None and part.reconnects >= 1
    gap = [r.getMessage() for r in caplog.records if "no history of" in r.getMessage()]
    assert gap and "are lost" in gap[0]
    start, end = part.history_gaps[0]  # from the oldest last value of a node to the reconnect
    assert start <= t < end and start.isoformat() in gap[0] and end.isoformat() in gap[0]
    why = "BadHistoryOperationUnsupported" if advertised else "AccessLevel has no HistoryRead"
    assert why in gap[0]


def test_resume_state_holds_each_node_last_time(renumbered, tmp_path) -> None:
    part = _subscribed(renumbered, tmp_path)
    t = _later()
    try:
        renumbered.write("Press7", "Force", 1.0, source_ts=t)
        renumbered.write("Press7", "State", 2, source_ts=t)
        _drain(part, lambda g: any(r[2] == t for r in g.readings) and g.signals)
        state = part.snapshot()
    finally:
        part.close()
    assert state["press-7/force"] == t.isoformat()
    assert state["press-7//state"] == t.isoformat()
    assert pl.Series(list(state)).str.contains("/").all()
