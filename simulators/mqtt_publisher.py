"""The plant over MQTT: one JSON message per reading on an ISA-95 style topic tree, QoS 1.

Topics and payloads (the contract the pipeline's MQTT source reads)::

    <prefix>/<line>/<machine>/<sensor>   {"machine_id", "sensor", "ts", "value", "unit"}
    <prefix>/<line>/<machine>/status     the machine's MES status (retained)
    <prefix>/<line>/<machine>/state      {"machine_id", "signal": "state", "ts", "value"}: the
                                         PackML state number at each change (retained)
    <prefix>/<line>/<machine>/good_count  {"machine_id", "signal": "good_count", "ts", "value"}:
                                         the good-part counter at each good part (retained)
    <prefix>/<line>/<machine>/scrap_count the same for scrapped parts (retained)

``ts`` is ISO 8601 in UTC with microseconds (the reading's simulated time). Publishing does not
wait for each PUBACK: paho keeps the in-flight messages and :meth:`MqttPublisher.flush` waits
for all of them, so a flush after a frame means the broker has every reading of it.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import polars as pl

from floorsight.records import READING_SCHEMA, Signals

QOS = 1


def topic_for(line: str, machine_id: str, sensor: str, prefix: str = "plant") -> str:
    return f"{prefix}/{line}/{machine_id}/{sensor}"


def parse_message(topic: str, payload: bytes) -> dict:
    """A reading from one message; ValueError naming the topic and reason when it is not one."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{topic}: payload is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{topic}: payload is not a JSON object")
    missing = [k for k in ("machine_id", "sensor", "ts", "value") if k not in data]
    if missing:
        raise ValueError(f"{topic}: payload lacks {', '.join(missing)}")
    try:
        ts = datetime.fromisoformat(data["ts"])
    except (TypeError, ValueError):
        raise ValueError(f"{topic}: ts {data['ts']!r} is not an ISO 8601 time") from None
    if ts.tzinfo is None:
        raise ValueError(f"{topic}: ts {data['ts']!r} has no time zone")
    value = data["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{topic}: value {value!r} is not a number")
    return {
        "machine_id": str(data["machine_id"]),
        "sensor": str(data["sensor"]),
        "ts": ts.astimezone(UTC),
        "value": float(value),
    }


def messages_to_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=READING_SCHEMA)


class MqttPublisher:
    """Publishes readings and machine status of a plant to a broker."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        prefix: str = "plant",
        client_id: str = "floorsight-simulator",
        username: str | None = None,
        password: str | None = None,
        lines: dict[str, str] | None = None,
        units: dict[tuple[str, str], str] | None = None,
    ) -> None:
        self.prefix = prefix
        self.lines = lines or {}
        self.units = units or {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout=10):
            self.client.loop_stop()
            raise ConnectionError(f"no MQTT broker answered at {host}:{port}")
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self._status: dict[str, str] = {}

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    @classmethod
    def for_plant(cls, plant, host: str, port: int, **kw) -> MqttPublisher:
        lines = {m.machine_id: m.line for m in plant.machines}
        units = {(m.machine_id, s.name): s.unit for m in plant.machines for s in m.sensors}
        return cls(host, port, lines=lines, units=units, **kw)

    def publish_frame(self, frame: pl.DataFrame) -> int:
        """Publish every reading of ``frame`` (one message each); returns how many."""
        for machine_id, sensor, ts, value in frame.select(
            "machine_id", "sensor", "ts", "value"
        ).iter_rows():
            payload = json.dumps(
                {
                    "machine_id": machine_id,
                    "sensor": sensor,
                    "ts": ts.isoformat(timespec="microseconds"),
                    "value": value,
                    "unit": self.units.get((machine_id, sensor), ""),
                }
            )
            line = self.lines.get(machine_id, "line")
            info = self.client.publish(
                topic_for(line, machine_id, sensor, self.prefix), payload, QOS
            )
            self._pending.append(info)
        return frame.height

    def publish_signals(self, signals: pl.DataFrame) -> int:
        """Publish machine signals (``records.SIGNAL_SCHEMA``: states and part counters), one
        retained message each on ``<prefix>/<line>/<machine>/<signal>``; returns how many."""
        for machine_id, signal, ts, value in signals.select(
            "machine_id", "signal", "ts", "value"
        ).iter_rows():
            payload = json.dumps(
                {
                    "machine_id": machine_id,
                    "signal": signal,
                    "ts": ts.isoformat(timespec="microseconds"),
                    "value": int(value),
                }
            )
            topic = topic_for(self.lines.get(machine_id, "line"), machine_id, signal, self.prefix)
            self._pending.append(self.client.publish(topic, payload, QOS, retain=True))
        return signals.height

    def publish_status(self, status: pl.DataFrame) -> int:
        """Publish each machine's status row when it changed (retained); returns how many."""
        sent = 0
        for row in status.iter_rows(named=True):
            payload = json.dumps(row, default=str, sort_keys=True)
            if self._status.get(row["machine_id"]) == payload:
                continue
            self._status[row["machine_id"]] = payload
            line = row.get("line") or self.lines.get(row["machine_id"], "line")
            topic = topic_for(line, row["machine_id"], "status", self.prefix)
            self._pending.append(self.client.publish(topic, payload, QOS, retain=True))
            sent += 1
        return sent

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until the broker acknowledged every message published so far."""
        deadline = time.monotonic() + timeout_s
        for info in self._pending:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError(f"broker did not acknowledge message {info.mid} in time")
        self._pending.clear()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.client.disconnect()
            self.client.loop_stop()


def publish(
    plant,
    host: str,
    port: int,
    start: datetime,
    speed: float = 1.0,
    end: datetime | None = None,
    stop_event: threading.Event | None = None,
    prefix: str = "plant",
    signals: bool = False,
) -> None:
    """Run ``plant`` on the wall clock into the broker until ``end`` or ``stop_event``; with
    ``signals`` (a simulated plant) its machines' states and part counters too, on their own
    topics (a subscriber of ``<prefix>/#`` that reads every message as a reading would take
    them for sensors)."""
    pub = MqttPublisher.for_plant(plant, host, port, prefix=prefix)
    with_signals = {"signals": True} if signals and hasattr(plant, "signals") else {}
    try:
        for frame in plant.stream(start, speed=speed, end=end, **with_signals):
            if stop_event is not None and stop_event.is_set():
                break
            if frame is None:
                time.sleep(0.05)
                continue
            if isinstance(frame, Signals):
                pub.publish_signals(frame.frame)
                continue
            if frame.height:
                pub.publish_frame(frame)
                pub.publish_status(plant.status_at(frame["ts"].max()))
                pub.flush()
    finally:
        pub.close()
