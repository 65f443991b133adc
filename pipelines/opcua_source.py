"""OPC-UA source: a plant's sensor and signal variables, on any server, gapless across reconnects.

Which nodes it reads:

- with a tag map (:mod:`floorsight.pipelines.opcua_tags`), exactly the mapped nodes, their
  ``nsu=`` namespaces resolved to the server's current indexes at every connect. A node id the
  server does not know stops the source with the tag map's line (:class:`TagMapError`);
- without one, it browses the simulator's ``Objects/Plant/<line>/<machine>`` in namespace
  ``urn:floorsight:plant``: every variable with an ``EngineeringUnits`` property is a sensor,
  and the variables named ``State``, ``GoodCount`` and ``ScrapCount`` are machine signals.

Its partitions split the machines (``crc32(machine_id) % partitions``); each partition runs an
asyncua client in a thread (sessions from :mod:`floorsight.opcua_client`, with the
security and login given):

1. connect (a dropped or refused connection is retried with exponential backoff up to
   ``max_backoff``, each attempt a logged WARNING; a refusal that retrying cannot cure, such as
   a wrong password or an untrusted certificate, ends the source with its
   :class:`OpcuaConnectError`);
2. ``mode="subscribe"``: subscribe to its nodes with a queue, so every value the server writes
   is delivered (nodes the server refuses to monitor, e.g. beyond its limit of monitored items,
   are named in a WARNING and polled instead); ``mode="poll"``: read all its nodes with one Read
   call every ``interval``;
3. read the history (HistoryRead raw) of each node since the last value it emitted, so values
   written while it was disconnected (or before a restart from a recovery snapshot) are not
   lost; a server without history (BadHistoryOperationUnsupported ...) is a WARNING naming the
   gap (from, to), never a crash. Until that backfill is done it emits nothing;
4. emit, per batch, the values newer than the last one emitted for their node (a value seen
   both in the backfill and the subscription is emitted once): sensors as a readings frame,
   signals as a :class:`~floorsight.records.Signals` item.

Every value a server sends becomes a reading, a signal or a dead letter with its reason
(:func:`reading_from_value`): a value that is no finite number, a status that is not Good, an
event time that is missing or OPC-UA's zero or maximum time, a scaled value outside the tag's
``min``/``max``. The event time is the value's SourceTimestamp; a value without one takes its
ServerTimestamp (counted in ``server_time_values``, logged once); only a value with neither is
a dead letter. A batch with dead letters is emitted as a
:class:`~floorsight.pipelines.validate.Checked`.

The resume state is the last emitted event time per node. With ``until``, the partition ends
once every node has reached that time (for tests and bounded replays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta

import polars as pl
from asyncua import Client, ua
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from floorsight.opcua_client import (
    OpcuaConnectError,
    OpcuaSecurity,
    connect,
    parse_node_id,
    resolve,
    status_text,
)
from floorsight.pipelines.opcua_tags import Tag, TagMap, TagMapError
from floorsight.pipelines.validate import Checked, dead_letters
from floorsight.records import READING_SCHEMA, SIGNAL_SCHEMA, SignalKind, Signals

log = logging.getLogger(__name__)
NAMESPACE = "urn:floorsight:plant"
_ONE_US = timedelta(microseconds=1)
MODES = ("subscribe", "poll")
#: browse mode: variables with these names are machine signals
SIGNAL_NAMES = {
    "State": SignalKind.STATE.value,
    "GoodCount": SignalKind.GOOD_COUNT.value,
    "ScrapCount": SignalKind.SCRAP_COUNT.value,
}
#: HistoryRead refusals that mean "this server keeps no history here": a gap, not a failure
_NO_HISTORY = {
    "BadHistoryOperationUnsupported",
    "BadHistoryOperationInvalid",
    "BadNotSupported",
    "BadServiceUnsupported",
    "BadNotImplemented",
    "BadNotReadable",
    "BadUserAccessDenied",
    "BadNoData",
}

#: resume state: tag key ("machine/sensor", "machine//state") -> ISO time of the last value
State = dict[str, str]

#: OPC-UA's DateTime 0 (1601-01-01): a server's "no time"; and its largest time (year 9999)
_OPCUA_ZERO_YEAR, _OPCUA_MAX_YEAR = 1601, 9999
_DEAD_SCHEMA = {
    **READING_SCHEMA,
    "node_id": pl.String,
    "value_type": pl.String,
    "value_repr": pl.String,
    "source_timestamp": pl.String,
    "status": pl.String,
    "_reason": pl.String,
}


def reading_from_value(
    machine_id: str,
    sensor: str,
    value: object,
    source_timestamp: object,
    *,
    status: object = None,
) -> tuple[dict | None, str | None]:
    """A reading from one OPC-UA value, or the reason it is none: ``(reading, None)`` or
    ``(None, reason)``, never an exception.

    A reading is ``{"machine_id", "sensor", "ts", "value"}`` with a float value and a UTC
    time. The value must be a finite int or float (not a bool; an int too large for a float is
    out of range); every other Variant (text, bytes, arrays, LocalizedText, ExtensionObject,
    None ...) is no reading. The source timestamp must be a datetime: one without a time zone
    is UTC (OPC-UA's DateTime is UTC), one in another zone is converted; a missing timestamp,
    OPC-UA's zero time (year 1601 or before) or its largest (year 9999) is no reading. With a
    ``status`` (a ``ua.StatusCode``), one that is not Good is a reason, named.

    >>> from datetime import datetime, UTC
    >>> reading_from_value("M1", "temp", 21, datetime(2026, 1, 5, 6, tzinfo=UTC))[0]["value"]
    21.0
    >>> reading_from_value("M1", "temp", "hot", datetime(2026, 1, 5, 6, tzinfo=UTC))[1]
    "value 'hot' (str) is not a number"
    """
    try:
        return _reading_from_value(machine_id, sensor, value, source_timestamp, status)
    except Exception as e:  # a value no rule foresaw is a dead letter, never a crash
        return None, f"value not readable: {type(e).__name__}"


def _reading_from_value(
    machine_id: str, sensor: str, value: object, ts: object, status: object
) -> tuple[dict | None, str | None]:
    if status is not None and not _is_good(status):
        return None, f"status {_status_name(status)}"
    if value is None:
        return None, "value is empty"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"value {_short_repr(value)} ({type(value).__name__}) is not a number"
    try:
        number = float(value)
    except OverflowError:
        return None, f"value {_short_repr(value)} is out of range"
    if math.isnan(number):
        return None, "value is NaN"
    if math.isinf(number):
        return None, f"value {number} is infinite"
    if ts is None:
        return None, "no source timestamp"
    if not isinstance(ts, datetime):
        return None, f"source timestamp {_short_repr(ts)} ({type(ts).__name__}) is not a time"
    if ts.year <= _OPCUA_ZERO_YEAR:
        return None, f"source timestamp {ts.isoformat()} is OPC-UA's zero time (none given)"
    if ts.year >= _OPCUA_MAX_YEAR:
        return None, f"source timestamp {ts.isoformat()} is OPC-UA's largest time"
    try:
        when = ts.replace(tzinfo=UTC) if ts.utcoffset() is None else ts.astimezone(UTC)
    except (OverflowError, ValueError):
        return None, f"source timestamp {ts.isoformat()} is out of range"
    return {"machine_id": machine_id, "sensor": sensor, "ts": when, "value": number}, None


def _is_good(status: object) -> bool:
    value = getattr(status, "value", status)
    return isinstance(value, int) and value >> 30 == 0  # severity bits 00: Good


def _status_name(status: object) -> str:
    value = getattr(status, "value", status)
    if not isinstance(value, int):
        return _short_repr(status)
    name = _STATUS_NAMES.get(value & 0xFFFF0000, "unknown")
    return f"{name} (0x{value & 0xFFFFFFFF:08X})"


_STATUS_NAMES = {
    code: name
    for name, code in vars(ua.StatusCodes).items()
    if isinstance(code, int) and not name.startswith("_")
}


def _short_repr(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _dead_row(
    machine_id: str,
    sensor: str,
    value: object,
    ts: object,
    status: object,
    reason: str,
    node_id: str | None = None,
) -> dict:
    """A dead letter's row: the node, the value and its source timestamp as text, the reason."""
    when = None
    if isinstance(ts, datetime) and _OPCUA_ZERO_YEAR < ts.year < _OPCUA_MAX_YEAR:
        when = ts.replace(tzinfo=UTC) if ts.utcoffset() is None else ts
    return {
        "machine_id": machine_id,
        "sensor": sensor,
        "ts": when,
        "value": None,
        "node_id": node_id,
        "value_type": type(value).__name__,
        "value_repr": _short_repr(value, 200),
        "source_timestamp": _short_repr(ts, 100),
        "status": None if status is None else _status_name(status),
        "_reason": reason,
    }


def _valid_time(ts: object) -> bool:
    return isinstance(ts, datetime) and _OPCUA_ZERO_YEAR < ts.year < _OPCUA_MAX_YEAR


#: a state sent as text longer than this is a dead letter (no state name is that long)
_MAX_STATE_TEXT = 100


class OpcUaSource(FixedPartitionedSource["pl.DataFrame | Checked | Signals", State]):
    """Readings and machine signals from an OPC-UA server, ``partitions`` partitions by machine.

    ``tags``: the nodes to read (else the simulator's browse); ``security``: the session's
    security and login (else none, with ``user``/``password`` if given); ``mode``:
    ``subscribe`` or ``poll`` (one Read of every node each ``interval``).
    """

    def __init__(
        self,
        url: str,
        partitions: int = 1,
        until: datetime | None = None,
        user: str | None = None,
        password: str | None = None,
        queue_size: int = 100_000,
        max_backoff: timedelta = timedelta(seconds=5),
        stop: threading.Event | None = None,
        *,
        security: OpcuaSecurity | None = None,
        tags: TagMap | None = None,
        mode: str = "subscribe",
        interval: timedelta = timedelta(seconds=1),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"OPC-UA mode {mode!r}: one of {', '.join(MODES)}")
        self.url = url
        self.partitions = partitions
        self.until = until
        self.security = security or OpcuaSecurity(user=user, password=password)
        self.queue_size = queue_size
        self.max_backoff = max_backoff
        self.stop = stop  # set it to end every partition cleanly (Ctrl-C)
        self.tags = tags
        self.mode = mode
        self.interval = interval

    def list_parts(self) -> list[str]:
        return [f"opcua-{i}-of-{self.partitions}" for i in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: State | None):
        index = int(for_part.split("-")[1])
        return _OpcUaPartition(self, index, dict(resume_state or {}))


def owns(machine_id: str, index: int, partitions: int) -> bool:
    return zlib.crc32(machine_id.encode()) % partitions == index


async def resolve_tags(
    client: Client, tags: tuple[Tag, ...] | list[Tag]
) -> list[tuple[Tag, ua.NodeId]]:
    """Each tag with its node id on this server (``nsu=`` resolved to the current index), every
    node checked to exist and be a variable; raises :class:`TagMapError` naming the tag map's
    line of the first that is not."""
    namespaces = await client.get_namespace_array()
    out = []
    for tag in tags:
        try:
            out.append((tag, resolve(parse_node_id(tag.node_id), namespaces)))
        except ValueError as e:
            raise TagMapError(f"{tag.where}, column node_id: {e}") from None
    if not out:
        return out
    classes = await client.uaclient.read_attributes([n for _, n in out], ua.AttributeIds.NodeClass)
    for (tag, _), dv in zip(out, classes, strict=True):
        status = dv.StatusCode
        if status is not None and not status.is_good():
            raise TagMapError(
                f"{tag.where}, column node_id: the server does not know node {tag.node_id} "
                f"({status_text(status.value)}): correct it in the tag map "
                "(`floorsight opcua browse URL` lists the server's variables)"
            )
        node_class = dv.Value.Value if dv.Value is not None else None
        if node_class != ua.NodeClass.Variable.value:
            kind = ua.NodeClass(node_class).name if node_class in iter(ua.NodeClass) else "?"
            raise TagMapError(
                f"{tag.where}, column node_id: node {tag.node_id} is a {kind} node, "
                "not a variable with a value"
            )
    return out


async def check_server(
    url: str, security: OpcuaSecurity, tags: TagMap | None, timeout: float = 4
) -> int:
    """Connect once and resolve every mapped node: the number of nodes the server knows.
    Raises :class:`OpcuaConnectError`, :class:`TagMapError`, or a transient failure's own."""
    client = await connect(url, security, timeout, closed_is_refusal=True)
    try:
        return len(await resolve_tags(client, tags.tags)) if tags is not None else 0
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


def preflight(url: str, security: OpcuaSecurity, tags: TagMap | None) -> None:
    """Before the dataflow starts: a refusal that retrying cannot cure, or a mapped node the
    server does not know, stops the run at once (raised); a server that is not reachable yet
    is logged and left to the source, which retries."""
    try:
        asyncio.run(check_server(url, security, tags))
    except (OpcuaConnectError, TagMapError):
        raise
    except Exception as e:
        log.warning(
            "%s: not reachable at start (%s: %s); the source retries", url, type(e).__name__, e
        )


class _OpcUaPartition(StatefulSourcePartition["pl.DataFrame | Checked | Signals", State]):
    def __init__(self, source: OpcUaSource, index: int, last: State) -> None:
        self._src = source
        self._index = index
        self._last = {k: datetime.fromisoformat(v) for k, v in last.items()}
        self._pending: list[tuple[str, str, datetime, float]] = []
        self._signals: list[tuple[str, str, datetime, float | None, str | None]] = []
        self._dead: list[dict] = []  # values that are no reading (see reading_from_value)
        self._last_dead: dict[str, tuple[str, str]] = {}  # a repeated bad value: one letter
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set when the backfill after a (re)connect is done
        self._stop = threading.Event()
        self._past_until: float | None = None
        self._fatal: BaseException | None = None
        self.reconnects = 0
        self.polls = 0  # Read calls of the nodes polled
        #: values that had no SourceTimestamp and took their ServerTimestamp
        self.server_time_values = 0
        #: (from, to) of each reconnect whose values the server could not give from history
        self.history_gaps: list[tuple[datetime, datetime]] = []
        self._thread = threading.Thread(target=self._run, name=f"opcua-{index}", daemon=True)
        self._thread.start()

    # -- Bytewax side ------------------------------------------------------------------------
    def next_batch(self) -> list[pl.DataFrame | Checked | Signals]:
        if self._fatal is not None:
            raise self._fatal
        if self._done() or (self._src.stop is not None and self._src.stop.is_set()):
            raise StopIteration
        if not self._ready.is_set():
            return []
        with self._lock:
            rows, self._pending = self._pending, []
            signals, self._signals = self._signals, []
            dead, self._dead = self._dead, []
        out: list[pl.DataFrame | Checked | Signals] = []
        readings = self._fresh_readings(rows)
        if dead:
            frame = pl.DataFrame(dead, schema=_DEAD_SCHEMA)
            out.append(Checked(readings, dead_letters(frame, "opcua", reason_col="_reason")))
        elif readings.height:
            out.append(readings)
        if signals:
            frame = self._fresh_signals(signals)
            if frame.height:
                out.append(Signals(frame))
        return out

    def _fresh_readings(self, rows: list[tuple[str, str, datetime, float]]) -> pl.DataFrame:
        """The readings of ``rows`` newer than the last emitted of their sensor, in time order."""
        if not rows:
            return pl.DataFrame(schema=READING_SCHEMA)
        frame = pl.DataFrame(
            rows, schema=["machine_id", "sensor", "ts", "value"], orient="row"
        ).cast(READING_SCHEMA)
        keyed = frame.with_columns(key=pl.format("{}/{}", "machine_id", "sensor"))
        return self._newer(keyed).select(list(READING_SCHEMA))

    def _fresh_signals(self, rows: list[tuple]) -> pl.DataFrame:
        frame = pl.DataFrame(
            rows, schema=["machine_id", "signal", "ts", "value", "text"], orient="row"
        ).cast(SIGNAL_SCHEMA)
        keyed = frame.with_columns(key=pl.format("{}//{}", "machine_id", "signal"))
        return self._newer(keyed).select(list(SIGNAL_SCHEMA))

    def _newer(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows newer than the last emitted of their ``key``, once each, in time order; the
        last emitted times move on."""
        frame = frame.sort("ts", maintain_order=True)
        last = pl.DataFrame(
            {"key": list(self._last), "_last": list(self._last.values())},
            schema={"key": pl.String, "_last": READING_SCHEMA["ts"]},
        )
        fresh = (
            frame.join(last, on="key", how="left")
            .filter(pl.col("_last").is_null() | (pl.col("ts") > pl.col("_last")))
            .unique(["key", "ts"], keep="first", maintain_order=True)
        )
        if self._src.until is not None:
            if self._past_until is None and (fresh["ts"] >= self._src.until).any():
                self._past_until = time.monotonic()
            fresh = fresh.filter(pl.col("ts") < self._src.until)
        for key, ts in fresh.group_by("key").agg(pl.col("ts").max()).iter_rows():
            self._last[key] = ts
        return fresh

    def take(self, machine_id: str, sensor: str, value: object, ts: object, status: object) -> None:
        """Queue one sensor value (source timestamp ``ts``) as a reading or a dead letter."""
        self.take_value(Tag("", machine_id, sensor), value, ts, None, status)

    def take_value(
        self, tag: Tag, value: object, source_ts: object, server_ts: object, status: object
    ) -> None:
        """Queue one value from the server: a reading, a signal, or a dead letter with its
        reason. Without a SourceTimestamp the ServerTimestamp is the event time."""
        ts = source_ts
        if not _valid_time(source_ts) and _valid_time(server_ts):
            ts = server_ts
            self._server_time(tag)
        if tag.is_signal:
            row, reason = self._signal(tag, value, ts, status)
        else:
            row, reason = self._reading(tag, value, ts, status)
        no_time = not _valid_time(source_ts) and not _valid_time(server_ts)
        if reason is not None and no_time and "timestamp" in reason:
            reason = f"{reason}, and no server timestamp"
        with self._lock:
            if reason is None:
                (self._signals if tag.is_signal else self._pending).append(row)
                self._last_dead.pop(tag.key, None)
                return
            seen = (reason, _short_repr(ts, 100))
            if self._last_dead.get(tag.key) == seen:
                return  # the same bad value read again (a poll): one dead letter is enough
            self._last_dead[tag.key] = seen
            self._dead.append(
                _dead_row(
                    tag.machine_id, tag.sensor, value, ts, status, reason, tag.node_id or None
                )
            )

    @staticmethod
    def _reading(tag: Tag, value: object, ts: object, status: object):
        reading, reason = reading_from_value(tag.machine_id, tag.sensor, value, ts, status=status)
        if reading is None:
            return None, reason
        scaled, reason = tag.apply(reading["value"])
        if scaled is None:
            return None, reason
        return (tag.machine_id, tag.sensor, reading["ts"], scaled), None

    @staticmethod
    def _signal(tag: Tag, value: object, ts: object, status: object):
        text = None
        if tag.kind == SignalKind.STATE.value and isinstance(value, str):
            if len(value) > _MAX_STATE_TEXT or not value.isprintable():
                return None, f"state text {_short_repr(value)} is no state name"
            text, value = value, 0.0  # the time and status rules of a number apply
        reading, reason = reading_from_value(tag.machine_id, tag.kind, value, ts, status=status)
        if reading is None:
            return None, reason
        number = None if text is not None else reading["value"]
        return (tag.machine_id, tag.kind, reading["ts"], number, text), None

    def _server_time(self, tag: Tag) -> None:
        self.server_time_values += 1
        if self.server_time_values == 1:
            log.warning(
                "%s: values without a SourceTimestamp take their ServerTimestamp as event time "
                "(first: %s/%s%s); they are counted",
                self._src.url,
                tag.machine_id,
                tag.sensor,
                f", node {tag.node_id}" if tag.node_id else "",
            )

    def next_awake(self) -> datetime | None:
        return datetime.now(tz=UTC) + timedelta(milliseconds=50)

    def snapshot(self) -> State:
        return {k: v.isoformat() for k, v in self._last.items()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _done(self) -> bool:
        # the server writes in time order: a second after the first reading at or past `until`,
        # everything before it has arrived
        past = self._past_until
        return past is not None and time.monotonic() - past > 1.0

    # -- client thread -----------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.run(self._client_loop())

    async def _client_loop(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                await self._session()
                backoff = 0.2
            except (OpcuaConnectError, TagMapError) as e:  # retrying cannot help: stop the run
                log.error("%s", e)
                self._fatal = e
                return
            except Exception as e:  # any other failure of a session means: reconnect
                hint = ""
                if self._src.security.secure and isinstance(e, ConnectionError):
                    # node-opcua closes the channel of a certificate it no longer trusts
                    hint = " (if it keeps closing, the server may not trust the certificate "
                    hint += f"{self._src.security.cert} any more)"
                log.warning(
                    "%s: connection lost or refused (%s: %s); reconnecting in %.1f s%s",
                    self._src.url,
                    type(e).__name__,
                    e,
                    backoff,
                    hint,
                )
            self._ready.clear()
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._src.max_backoff.total_seconds())

    async def _session(self) -> None:
        client = await connect(self._src.url, self._src.security)
        try:
            points = await self._points(client)
            poll = list(points) if self._src.mode == "poll" else []
            if self._src.mode == "subscribe" and points:
                poll = await self._subscribe(client, points)
            await self._backfill(client, points)
            self._ready.set()
            interval = self._src.interval.total_seconds()
            next_poll = time.monotonic()
            while not self._stop.is_set():
                if poll and time.monotonic() >= next_poll:
                    next_poll = max(next_poll + interval, time.monotonic())
                    await self._poll(client, poll)
                await asyncio.sleep(
                    max(0.0, min(0.5, next_poll - time.monotonic())) if poll else 0.5
                )
                await client.check_connection()
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()

    async def _points(self, client: Client) -> list[tuple[Tag, ua.NodeId]]:
        if self._src.tags is None:
            return await self._browse(client)
        mine = [
            t for t in self._src.tags.tags if owns(t.machine_id, self._index, self._src.partitions)
        ]
        return await resolve_tags(client, mine)

    async def _subscribe(
        self, client: Client, points: list[tuple[Tag, ua.NodeId]]
    ) -> list[tuple[Tag, ua.NodeId]]:
        """Subscribe to ``points``; the ones the server refuses to monitor, to be polled."""
        handler = _Handler(self, {node: tag for tag, node in points})
        sub = await client.create_subscription(50, handler)
        # a held value (cycle time, part weight) is re-written unchanged with a new source
        # timestamp: trigger on the timestamp too, or the server reports no change
        # (asyncua's public subscribe_data_change takes no filter; _subscribe is its core)
        results = await sub._subscribe(
            [client.get_node(node) for _, node in points],
            mfilter=ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp),
            queuesize=self._src.queue_size,
        )
        refused = [
            (point, result)
            for point, result in zip(points, results, strict=True)
            if isinstance(result, ua.StatusCode)
        ]
        if refused:
            named = "; ".join(
                f"{tag.node_id or tag.key}{' (' + tag.where + ')' if tag.where else ''}: "
                f"{status_text(result.value)}"
                for (tag, _), result in refused[:10]
            )
            more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
            log.warning(
                "%s: the server refused to monitor %d of %d nodes (%s%s); they are polled every "
                "%.1f s instead (--opcua-mode poll polls all)",
                self._src.url,
                len(refused),
                len(points),
                named,
                more,
                self._src.interval.total_seconds(),
            )
        return [point for point, _ in refused]

    async def _poll(self, client: Client, points: list[tuple[Tag, ua.NodeId]]) -> None:
        """One Read call of every node in ``points``, each value taken."""
        params = ua.ReadParameters()
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.NodesToRead = [
            ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value) for _, node in points
        ]
        values = await client.uaclient.read(params)
        self.polls += 1
        for (tag, _), dv in zip(points, values, strict=True):
            value = dv.Value.Value if dv.Value is not None else None
            self.take_value(tag, value, dv.SourceTimestamp, dv.ServerTimestamp, dv.StatusCode)

    async def _browse(self, client: Client) -> list[tuple[Tag, ua.NodeId]]:
        ns = await client.get_namespace_index(NAMESPACE)
        plant = await client.nodes.objects.get_child(f"{ns}:Plant")
        points = []
        for line in await plant.get_children():
            for machine in await line.get_children():
                machine_id = (await machine.read_browse_name()).Name
                if not owns(machine_id, self._index, self._src.partitions):
                    continue
                for var in await machine.get_children():
                    name = (await var.read_browse_name()).Name
                    props = {(await p.read_browse_name()).Name for p in await var.get_properties()}
                    if "EngineeringUnits" in props:
                        points.append((Tag("", machine_id, name), var.nodeid))
                    elif name in SIGNAL_NAMES:
                        kind = SIGNAL_NAMES[name]
                        points.append((Tag("", machine_id, kind, kind=kind), var.nodeid))
        return points

    async def _backfill(self, client: Client, points: list[tuple[Tag, ua.NodeId]]) -> None:
        """The values since the last emitted of each node, from the server's history; a node
        whose history the server does not keep is a logged gap."""
        gaps: list[tuple[Tag, datetime, str]] = []
        behind = [(tag, node) for tag, node in points if tag.key in self._last]
        if not behind:
            return  # nothing emitted yet: start with the live values
        levels = await client.uaclient.read_attributes(
            [node for _, node in behind], ua.AttributeIds.AccessLevel
        )
        for (tag, node), level in zip(behind, levels, strict=True):
            since = self._last[tag.key]
            bits = level.Value.Value if level.Value is not None else None
            if isinstance(bits, int) and not bits & ua.AccessLevel.HistoryRead.mask:
                gaps.append((tag, since, "its AccessLevel has no HistoryRead"))
                continue
            try:
                values = await client.get_node(node).read_raw_history(
                    starttime=since + _ONE_US, numvalues=0
                )
            except ua.UaStatusCodeError as e:
                gaps.append((tag, since, status_text(e.code)))
                continue
            for dv in values:
                value = dv.Value.Value if dv.Value is not None else None
                self.take_value(tag, value, dv.SourceTimestamp, dv.ServerTimestamp, dv.StatusCode)
        if gaps:
            now = datetime.now(tz=UTC)
            start = min(since for _, since, _ in gaps)
            self.history_gaps.append((start, now))
            tag, _, why = gaps[0]
            log.warning(
                "%s: no history of %d node(s) (%s: %s): the values between %s and %s (the "
                "reconnect) are lost",
                self._src.url,
                len(gaps),
                tag.node_id or tag.key,
                why,
                start.isoformat(),
                now.isoformat(),
            )


class _Handler:
    def __init__(self, part: _OpcUaPartition, tags: dict) -> None:
        self.part = part
        # node id -> Tag (or "machine/sensor", the simulator's browse)
        self.tags = {
            node: tag if isinstance(tag, Tag) else Tag("", *tag.split("/", 1))
            for node, tag in tags.items()
        }

    def datachange_notification(self, node, val, data) -> None:
        # runs in asyncua's callback: whatever the server sent, nothing may raise from here
        tag = None
        try:
            tag = self.tags.get(node.nodeid)
            if tag is None:
                return  # not one of the nodes subscribed to
            dv = data.monitored_item.Value
            self.part.take_value(tag, val, dv.SourceTimestamp, dv.ServerTimestamp, dv.StatusCode)
        except Exception as e:
            log.warning("OPC-UA value not taken: %s: %s", type(e).__name__, e)
            reason = f"value not readable: {type(e).__name__}"
            machine_id, sensor = (tag.machine_id, tag.sensor) if tag else ("", "")
            with self.part._lock:
                self.part._dead.append(_dead_row(machine_id, sensor, val, None, None, reason))


def source_for_run(cfg, stop: threading.Event, *, check: bool = True) -> OpcUaSource:
    """The source of ``floorsight run --opcua`` from its ``RunConfig``: the tag map read, the
    security and login set; with ``check``, :func:`preflight` first."""
    from dataclasses import replace

    from floorsight.pipelines.opcua_tags import read_tag_map

    security = OpcuaSecurity.from_options(cfg.opcua_security, cfg.opcua_cert, cfg.opcua_key)
    security = replace(security, user=cfg.opcua_user, password=cfg.opcua_password)
    tags = read_tag_map(cfg.opcua_tags) if cfg.opcua_tags is not None else None
    if check:
        preflight(cfg.opcua, security, tags)
    return OpcUaSource(
        cfg.opcua,
        cfg.partitions,
        stop=stop,
        security=security,
        tags=tags,
        mode=cfg.opcua_mode,
        interval=timedelta(seconds=cfg.opcua_interval_s),
    )
