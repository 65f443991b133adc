"""OPC-UA source: subscriptions to a plant's sensor variables, gapless across reconnects.

The source browses ``Objects/Plant/<line>/<machine>`` on the endpoint and takes every variable
with an ``EngineeringUnits`` property as a sensor. Its partitions split the machines
(``crc32(machine_id) % partitions``); each partition runs an asyncua client in a thread:

1. connect (retrying with exponential backoff, up to ``max_backoff``), browse, subscribe to its
   sensors with a queue, so every value the server writes is delivered;
2. read the history (HistoryRead raw) of each sensor since the last reading it emitted, so the
   readings written while it was disconnected (or before a restart from a recovery snapshot)
   are not lost; until that backfill is done it emits nothing;
3. emit, per batch, the readings newer than the last one emitted for their sensor (a reading
   seen both in the backfill and the subscription is emitted once).

Every value a server sends becomes a reading or a dead letter with its reason
(:func:`reading_from_value`): a value that is no finite number, a status that is not Good, or a
source timestamp that is missing or OPC-UA's zero or maximum time. A batch with dead letters is
emitted as a :class:`~floorsight.pipelines.validate.Checked`.

The resume state is the last emitted source timestamp per sensor. When the connection drops
(server restart), the client is rebuilt and steps 1-2 run again. With ``until``, the partition
ends once every sensor has reached that time (for tests and bounded replays).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta

import polars as pl
from asyncua import Client, ua
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from floorsight.pipelines.validate import Checked, dead_letters
from floorsight.records import READING_SCHEMA

log = logging.getLogger(__name__)
NAMESPACE = "urn:floorsight:plant"
_ONE_US = timedelta(microseconds=1)

#: resume state: "machine/sensor" -> ISO time of the last reading emitted
State = dict[str, str]

#: OPC-UA's DateTime 0 (1601-01-01): a server's "no time"; and its largest time (year 9999)
_OPCUA_ZERO_YEAR, _OPCUA_MAX_YEAR = 1601, 9999
_DEAD_SCHEMA = {
    **READING_SCHEMA,
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
    machine_id: str, sensor: str, value: object, ts: object, status: object, reason: str
) -> dict:
    """A dead letter's row: the value and its source timestamp as text, the reason."""
    when = None
    if isinstance(ts, datetime) and _OPCUA_ZERO_YEAR < ts.year < _OPCUA_MAX_YEAR:
        when = ts.replace(tzinfo=UTC) if ts.utcoffset() is None else ts
    return {
        "machine_id": machine_id,
        "sensor": sensor,
        "ts": when,
        "value": None,
        "value_type": type(value).__name__,
        "value_repr": _short_repr(value, 200),
        "source_timestamp": _short_repr(ts, 100),
        "status": None if status is None else _status_name(status),
        "_reason": reason,
    }


class OpcUaSource(FixedPartitionedSource[pl.DataFrame, State]):
    """Readings from an OPC-UA plant server, ``partitions`` partitions by machine."""

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
    ) -> None:
        self.url = url
        self.partitions = partitions
        self.until = until
        self.user, self.password = user, password
        self.queue_size = queue_size
        self.max_backoff = max_backoff
        self.stop = stop  # set it to end every partition cleanly (Ctrl-C)

    def list_parts(self) -> list[str]:
        return [f"opcua-{i}-of-{self.partitions}" for i in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: State | None):
        index = int(for_part.split("-")[1])
        return _OpcUaPartition(self, index, dict(resume_state or {}))


def owns(machine_id: str, index: int, partitions: int) -> bool:
    return zlib.crc32(machine_id.encode()) % partitions == index


class _OpcUaPartition(StatefulSourcePartition[pl.DataFrame, State]):
    def __init__(self, source: OpcUaSource, index: int, last: State) -> None:
        self._src = source
        self._index = index
        self._last = {k: datetime.fromisoformat(v) for k, v in last.items()}
        self._pending: list[tuple[str, str, datetime, float]] = []
        self._dead: list[dict] = []  # values that are no reading (see reading_from_value)
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set when the backfill after a (re)connect is done
        self._stop = threading.Event()
        self._sensors: set[str] = set()
        self._past_until: float | None = None
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name=f"opcua-{index}", daemon=True)
        self._thread.start()

    # -- Bytewax side ------------------------------------------------------------------------
    def next_batch(self) -> list[pl.DataFrame | Checked]:
        if self._done() or (self._src.stop is not None and self._src.stop.is_set()):
            raise StopIteration
        if not self._ready.is_set():
            return []
        with self._lock:
            rows, self._pending = self._pending, []
            dead, self._dead = self._dead, []
        out = self._fresh(rows)
        if dead:
            frame = pl.DataFrame(dead, schema=_DEAD_SCHEMA)
            return [Checked(out, dead_letters(frame, "opcua", reason_col="_reason"))]
        return [out] if out.height else []

    def _fresh(self, rows: list[tuple[str, str, datetime, float]]) -> pl.DataFrame:
        """The readings of ``rows`` newer than the last emitted of their sensor, in time order."""
        if not rows:
            return pl.DataFrame(schema=READING_SCHEMA)
        frame = pl.DataFrame(
            rows, schema=["machine_id", "sensor", "ts", "value"], orient="row"
        ).cast(READING_SCHEMA)
        frame = frame.sort("ts", maintain_order=True)
        last = pl.DataFrame(
            {
                "key": list(self._last),
                "_last": list(self._last.values()),
            },
            schema={"key": pl.String, "_last": READING_SCHEMA["ts"]},
        )
        fresh = (
            frame.with_columns(key=pl.format("{}/{}", "machine_id", "sensor"))
            .join(last, on="key", how="left")
            .filter(pl.col("_last").is_null() | (pl.col("ts") > pl.col("_last")))
            .unique(["key", "ts"], keep="first", maintain_order=True)
        )
        if self._src.until is not None:
            if self._past_until is None and (fresh["ts"] >= self._src.until).any():
                self._past_until = time.monotonic()
            fresh = fresh.filter(pl.col("ts") < self._src.until)
        for key, ts in fresh.group_by("key").agg(pl.col("ts").max()).iter_rows():
            self._last[key] = ts
        return fresh.select(list(READING_SCHEMA))

    def take(self, machine_id: str, sensor: str, value: object, ts: object, status: object) -> None:
        """Queue one value from the server: as a reading, or as a dead letter with its reason."""
        reading, reason = reading_from_value(machine_id, sensor, value, ts, status=status)
        with self._lock:
            if reading is not None:
                self._pending.append((machine_id, sensor, reading["ts"], reading["value"]))
            else:
                self._dead.append(_dead_row(machine_id, sensor, value, ts, status, reason))

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
            except Exception as e:  # any failure of a session means: reconnect
                log.info(
                    "%s: connection lost (%s); reconnecting in %.1f s", self._src.url, e, backoff
                )
            self._ready.clear()
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._src.max_backoff.total_seconds())

    async def _session(self) -> None:
        client = Client(self._src.url, timeout=4)
        if self._src.user:
            client.set_user(self._src.user)
            client.set_password(self._src.password or "")
        async with client:
            nodes = await self._browse(client)
            handler = _Handler(self, {n.nodeid: key for key, n in nodes.items()})
            sub = await client.create_subscription(50, handler)
            # a held value (cycle time, part weight) is re-written unchanged with a new source
            # timestamp: trigger on the timestamp too, or the server reports no change
            # (asyncua's public subscribe_data_change takes no filter; _subscribe is its core)
            await sub._subscribe(
                list(nodes.values()),
                mfilter=ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp),
                queuesize=self._src.queue_size,
            )
            await self._backfill(nodes)
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.5)
                await client.check_connection()

    async def _browse(self, client: Client) -> dict[str, object]:
        ns = await client.get_namespace_index(NAMESPACE)
        plant = await client.nodes.objects.get_child(f"{ns}:Plant")
        nodes = {}
        for line in await plant.get_children():
            for machine in await line.get_children():
                machine_id = (await machine.read_browse_name()).Name
                if not owns(machine_id, self._index, self._src.partitions):
                    continue
                for var in await machine.get_children():
                    props = {(await p.read_browse_name()).Name for p in await var.get_properties()}
                    if "EngineeringUnits" in props:
                        sensor = (await var.read_browse_name()).Name
                        nodes[f"{machine_id}/{sensor}"] = var
        self._sensors = set(nodes)
        return nodes

    async def _backfill(self, nodes: dict) -> None:
        for key, node in nodes.items():
            since = self._last.get(key)
            if since is None:
                continue  # nothing emitted yet: start with the live values
            values = await node.read_raw_history(starttime=since + _ONE_US, numvalues=0)
            machine_id, sensor = key.split("/", 1)
            for dv in values:
                value = dv.Value.Value if dv.Value is not None else None
                self.take(machine_id, sensor, value, dv.SourceTimestamp, dv.StatusCode)


class _Handler:
    def __init__(self, part: _OpcUaPartition, keys: dict) -> None:
        self.part = part
        self.keys = keys

    def datachange_notification(self, node, val, data) -> None:
        # runs in asyncua's callback: whatever the server sent, nothing may raise from here
        machine_id = sensor = ""
        try:
            key = self.keys.get(node.nodeid)
            if key is None:
                return  # not one of the sensors subscribed to
            machine_id, sensor = key.split("/", 1)
            dv = data.monitored_item.Value
            self.part.take(machine_id, sensor, val, dv.SourceTimestamp, dv.StatusCode)
        except Exception as e:
            log.warning("OPC-UA value not taken: %s: %s", type(e).__name__, e)
            reason = f"value not readable: {type(e).__name__}"
            with self.part._lock:
                self.part._dead.append(_dead_row(machine_id, sensor, val, None, None, reason))
