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

The resume state is the last emitted source timestamp per sensor. When the connection drops
(server restart), the client is rebuilt and steps 1-2 run again. With ``until``, the partition
ends once every sensor has reached that time (for tests and bounded replays).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta

import polars as pl
from asyncua import Client, ua
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from floorsight.records import READING_SCHEMA

log = logging.getLogger(__name__)
NAMESPACE = "urn:floorsight:plant"
_ONE_US = timedelta(microseconds=1)

#: resume state: "machine/sensor" -> ISO time of the last reading emitted
State = dict[str, str]


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
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set when the backfill after a (re)connect is done
        self._stop = threading.Event()
        self._sensors: set[str] = set()
        self._past_until: float | None = None
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name=f"opcua-{index}", daemon=True)
        self._thread.start()

    # -- Bytewax side ------------------------------------------------------------------------
    def next_batch(self) -> list[pl.DataFrame]:
        if self._done() or (self._src.stop is not None and self._src.stop.is_set()):
            raise StopIteration
        if not self._ready.is_set():
            return []
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return []
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
        out = fresh.select(list(READING_SCHEMA))
        return [out] if out.height else []

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
            rows = [
                (machine_id, sensor, dv.SourceTimestamp, float(dv.Value.Value))
                for dv in values
                if dv.SourceTimestamp is not None and dv.Value is not None
            ]
            with self._lock:
                self._pending.extend(rows)


class _Handler:
    def __init__(self, part: _OpcUaPartition, keys: dict) -> None:
        self.part = part
        self.keys = keys

    def datachange_notification(self, node, val, data) -> None:
        dv = data.monitored_item.Value
        key = self.keys.get(node.nodeid)
        if key is None or dv.SourceTimestamp is None or val is None:
            return
        machine_id, sensor = key.split("/", 1)
        ts = dv.SourceTimestamp
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        with self.part._lock:
            self.part._pending.append((machine_id, sensor, ts, float(val)))
