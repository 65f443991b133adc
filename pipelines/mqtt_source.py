"""MQTT source: JSON readings from a broker's topic tree (``plant/<line>/<machine>/<sensor>``).

One partition holds one persistent MQTT session (fixed client id, QoS 1, kept by the broker
while the pipeline is down) in a receiver process of its own (``pipelines/mqtt_receiver.py``):
every message received is first appended to a local journal (``pipelines/mqtt_journal.py``)
and acknowledged to the broker only once it is there, in groups. The flow's work never holds up
the broker's window of messages in flight, so the broker does not queue, let alone drop (with
its stock limits of 20 in flight and 1,000 queued, a source that acknowledged at snapshots lost
most of a fast publisher's readings).

The flow reads the journal, a batch per poll, and the partition's Bytewax state is its position
in the journal. With a journal folder (``floorsight run --mqtt --recovery DIR`` keeps it in
``DIR/mqtt-journal``) each group is fsynced before it is acknowledged, and a run killed at any
point resumes from the last snapshot's position: nothing acknowledged is lost, and a message
the broker delivers again because its acknowledgement was not sent is recognised and skipped.
Segments are deleted once a snapshot several epochs newer than them exists, so the folder holds
a few epochs of messages. Without a journal folder (no recovery) the journal is a private
temporary folder, not fsynced and deleted at close: a crash loses what it holds that has not yet
reached the features, as it loses the windows' state.

A stop (Ctrl-C, SIGTERM) ends the intake first: what is acknowledged goes into the features,
and the broker keeps what is not. Memory and disk are bounded: the flow takes at most
``max_batch`` messages per poll, and when ``max_backlog`` messages wait in the journal the
receiving thread stops taking more, so the broker keeps them (and queues or drops by its own
limits; a warning says so).

Every payload becomes readings or a dead letter naming the topic and the reason (bad JSON, too
deep, too large, invalid Unicode, wrong types: ``parse_mqtt_payload`` and ``parse_records`` of
``floorsight.pipelines.validate``). Should a batch still break the parser, it is parsed message
by message and the message that breaks it alone is a dead letter too: no payload ends the
pipeline. Status topics are skipped.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from floorsight.config import private_dir
from floorsight.pipelines.mqtt_journal import JournalReader, Message
from floorsight.pipelines.mqtt_receiver import (
    END_FILE,
    READ_FILE,
    SUBSCRIBED_FILE,
    read_counter,
    write_counter,
)
from floorsight.pipelines.validate import Checked, Rejected, parse_mqtt_payload, parse_records

log = logging.getLogger("floorsight.mqtt")


class MqttSource(FixedPartitionedSource[Checked, int]):
    """Readings published to ``topic`` on an MQTT broker.

    ``journal`` is the folder of the received messages' journal (durable: set it with recovery);
    None keeps it in a temporary folder. ``max_batch`` messages at most go into the flow per
    poll; at most ``max_backlog`` wait in the journal. A journal segment is deleted once
    ``keep_snapshots`` snapshots newer than its last message exist (Bytewax resumes from the
    last snapshot the whole cluster committed, at most an epoch or two behind the newest).
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        topic: str = "plant/#",
        client_id: str = "floorsight-pipeline",
        until: datetime | None = None,
        stop: threading.Event | None = None,
        units: dict[str, str] | None = None,
        journal: Path | None = None,
        max_batch: int = 20_000,
        max_backlog: int = 500_000,
        keep_snapshots: int = 10,
        ready: threading.Event | None = None,
    ) -> None:
        self.host, self.port, self.topic, self.client_id = host, port, topic, client_id
        self.units = units  # sensor -> unit: payloads in another unit are dead-lettered
        self.until = until
        self.stop = stop
        self.journal = journal
        self.max_batch = max_batch
        self.max_backlog = max_backlog
        self.keep_snapshots = keep_snapshots
        self.ready = ready  # set once the broker confirmed the subscription

    def list_parts(self) -> list[str]:
        return ["mqtt"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _MqttPartition:
        return _MqttPartition(self, resume_state)


class _MqttPartition(StatefulSourcePartition[Checked, int]):
    def __init__(self, source: MqttSource, resume_state: int | None) -> None:
        self._src = source
        self._durable = source.journal is not None
        self._folder = private_dir(
            source.journal or Path(tempfile.mkdtemp(prefix="floorsight-mqtt-"))
        )
        (self._folder / END_FILE).unlink(missing_ok=True)
        self._reader = JournalReader(self._folder)
        first = self._reader.first
        # no snapshot yet (first run, or a crash before the first): everything on disk is new
        self._seq = resume_state if resume_state is not None else (first or 0)
        self._snapshots: deque[int] = deque()
        self._past_until: float | None = None
        self._busy = False
        self._stopped = False
        write_counter(self._folder / READ_FILE, self._seq)
        self._receiver = subprocess.Popen(
            [
                *(sys.executable, "-m", "floorsight.pipelines.mqtt_receiver"),
                *("--host", source.host, "--port", str(source.port), "--topic", source.topic),
                *("--client-id", source.client_id, "--folder", str(self._folder)),
                *("--start", str(self._seq), "--max-backlog", str(source.max_backlog)),
                *("--parent", str(os.getpid())),
                *(["--durable"] if self._durable else []),
            ]
        )
        deadline = time.monotonic() + 30
        while (end := read_counter(self._folder / END_FILE)) is None:
            if self._receiver.poll() is not None or time.monotonic() > deadline:
                self._receiver.kill()
                raise RuntimeError(f"the MQTT receiver did not start (journal {self._folder})")
            time.sleep(0.02)
        # the flow starts once the broker sends to the session (or after a while without it)
        while not (self._folder / SUBSCRIBED_FILE).exists():
            if self._receiver.poll() is not None or time.monotonic() > deadline:
                log.warning("MQTT source: no subscription confirmed yet; starting the flow")
                break
            time.sleep(0.02)
        else:
            if source.ready is not None:
                source.ready.set()
        if resume_state is not None and resume_state > end:
            log.error(
                "MQTT journal %s ends at message %d but the snapshot resumes at %d: messages "
                "acknowledged before the crash are missing from it",
                self._folder,
                end,
                resume_state,
            )

    def next_batch(self) -> list[Checked]:
        stopping = self._src.stop is not None and self._src.stop.is_set()
        if stopping and not self._stopped:
            # take no more from the broker (it keeps the rest), then drain what was acked
            self._stop_receiver()
        if self._past_until is not None and time.monotonic() - self._past_until > 1.0:
            raise StopIteration
        end = read_counter(self._folder / END_FILE) or 0
        messages = self._reader.read(self._seq, self._src.max_batch, end)
        self._busy = len(messages) == self._src.max_batch
        if not messages:
            if stopping:
                raise StopIteration
            if self._receiver.poll() is not None and not self._stopped:
                code = self._receiver.returncode
                raise RuntimeError(f"the MQTT receiver ended (exit code {code})")
            return []
        self._seq = messages[-1].seq + 1
        write_counter(self._folder / READ_FILE, self._seq)
        if not self._durable:  # nothing replays it: gone once it is in the flow
            self._reader.release(self._seq)
        checked = parse_messages(messages, self._src.units)
        ok = checked.ok
        if self._src.until is not None and ok.height:
            if self._past_until is None and (ok["ts"] >= self._src.until).any():
                self._past_until = time.monotonic()
            ok = ok.filter(pl.col("ts") < self._src.until)
        return [Checked(ok, checked.dead)]

    def next_awake(self) -> datetime | None:
        if self._busy:
            return None  # more is waiting in the journal
        return datetime.now(tz=UTC) + timedelta(milliseconds=20)

    def snapshot(self) -> int:
        self._snapshots.append(self._seq)
        if len(self._snapshots) > self._src.keep_snapshots:
            # a resume never goes back further than this snapshot: what is below it is done
            self._reader.release(self._snapshots.popleft())
        return self._seq

    def close(self) -> None:
        self._stop_receiver()
        self._reader.close()
        if not self._durable:
            shutil.rmtree(self._folder, ignore_errors=True)

    def _stop_receiver(self) -> None:
        self._stopped = True
        if self._receiver.poll() is None:
            self._receiver.terminate()
            try:
                self._receiver.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._receiver.kill()
                self._receiver.wait(timeout=5)


def parse_messages(messages: list[Message], units: dict[str, str] | None = None) -> Checked:
    """Readings and dead letters from journaled messages; never raises for any payload."""
    readings = [m for m in messages if not m.topic.endswith("/status")]
    records = [parse_mqtt_payload(m.topic, m.payload) for m in readings]
    try:
        return parse_records(records, "mqtt", units)
    except Exception:  # one message may break the batch: find it, keep the rest
        log.exception("MQTT source: a batch of %d broke the parser; one by one", len(records))
    parts = [_parse_one(m, r, units) for m, r in zip(readings, records, strict=True)]
    oks = [p.ok for p in parts if p.ok.height]
    dead = [p.dead for p in parts if p.dead is not None]
    return Checked(
        pl.concat(oks) if oks else parts[0].ok.clear(),
        pl.concat(dead, how="vertical_relaxed") if dead else None,
    )


def _parse_one(msg: Message, record: object, units: dict[str, str] | None) -> Checked:
    try:
        return parse_records([record], "mqtt", units)
    except Exception as e:
        raw = msg.payload[:1024].decode("utf-8", "replace")
        why = f"{msg.topic}: payload breaks the parser ({type(e).__name__})"
        return parse_records([Rejected(raw, why)], "mqtt")
