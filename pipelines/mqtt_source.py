"""MQTT source: JSON readings from a broker's topic tree (``plant/<line>/<machine>/<sensor>``).

One partition holds one persistent MQTT session (fixed client id, ``clean_session=False``, QoS 1),
so the broker keeps the messages that arrive while the pipeline is down. Messages are
acknowledged manually, when Bytewax snapshots the epoch in which they were emitted: a crash
before that makes the broker deliver them again, and the restored state has not seen them.
Payloads that are not readings (bad JSON, wrong types) become dead letters naming the topic and
the reason (:func:`floorsight.pipelines.validate.parse_records`); status topics are skipped.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from floorsight.pipelines.validate import Checked, parse_records


class MqttSource(FixedPartitionedSource[Checked, None]):
    """Readings published to ``topic`` on an MQTT broker."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        topic: str = "plant/#",
        client_id: str = "floorsight-pipeline",
        until: datetime | None = None,
        stop: threading.Event | None = None,
        units: dict[str, str] | None = None,
    ) -> None:
        self.host, self.port, self.topic, self.client_id = host, port, topic, client_id
        self.units = units  # sensor -> unit: payloads in another unit are dead-lettered
        self.until = until
        self.stop = stop

    def list_parts(self) -> list[str]:
        return ["mqtt"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _MqttPartition:
        return _MqttPartition(self)


class _MqttPartition(StatefulSourcePartition[Checked, None]):
    def __init__(self, source: MqttSource) -> None:
        self._src = source
        self._messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._to_ack: list[int] = []
        self._past_until: float | None = None
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=source.client_id,
            clean_session=False,
            manual_ack=True,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.connect(source.host, source.port, keepalive=30)
        self._client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self._src.topic, qos=1)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append(msg)

    def next_batch(self) -> list[Checked]:
        if self._src.stop is not None and self._src.stop.is_set():
            raise StopIteration
        if self._past_until is not None and time.monotonic() - self._past_until > 1.0:
            raise StopIteration
        with self._lock:
            messages, self._messages = self._messages, []
        if not messages:
            return []
        records = []
        for msg in messages:
            self._to_ack.append(msg.mid)
            if msg.topic.endswith("/status"):
                continue
            records.append(_record(msg))
        checked = parse_records(records, "mqtt", self._src.units)
        ok = checked.ok
        if self._src.until is not None and ok.height:
            if self._past_until is None and (ok["ts"] >= self._src.until).any():
                self._past_until = time.monotonic()
            ok = ok.filter(pl.col("ts") < self._src.until)
        return [Checked(ok, checked.dead)]

    def next_awake(self) -> datetime | None:
        return datetime.now(tz=UTC) + timedelta(milliseconds=50)

    def snapshot(self) -> None:
        # everything emitted so far is in this epoch's state: the broker may forget it now
        for mid in self._to_ack:
            self._client.ack(mid, 1)
        self._to_ack = []

    def close(self) -> None:
        self.snapshot()
        self._client.disconnect()
        self._client.loop_stop()


def _record(msg: mqtt.MQTTMessage) -> object:
    """The payload as a record for parse_records; undecodable ones keep the topic as evidence."""
    try:
        data = json.loads(msg.payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {
            "topic": msg.topic,
            "payload": msg.payload.decode("utf-8", "replace"),
            "_reason": f"{msg.topic}: payload is not JSON",
        }
    return data
