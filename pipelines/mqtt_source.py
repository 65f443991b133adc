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

A decoder (``pipelines/mqtt_mapping.py``: floorsight's own JSON by default, the plant's own
topics and payloads with a mapping, Sparkplug B) says what to subscribe and turns each message
into readings, machine signals (``records.Signals``, emitted as items of their own beside the
readings' ``Checked`` batches) or rejections. Every payload becomes readings, signals or a dead
letter naming the topic and the reason (bad JSON, too deep, too large, invalid Unicode, wrong
types: ``parse_mqtt_payload`` and ``parse_records`` of ``floorsight.pipelines.validate``).
Should a batch still break the parser, it is parsed message by message and the message that
breaks it alone is a dead letter too: no payload ends the pipeline. The partition's state is its
journal position and the decoder's state at that position.

With ``share`` (MQTT 5 shared subscriptions), the source has ``partitions`` partitions, each a
receiver of its own on ``$share/<share>/<filter>`` (client id ``<client_id>-<i>``, journal
``<journal>/part-<i>``): the broker hands each message to one of them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from floorsight.config import private_dir
from floorsight.pipelines.mqtt_journal import JournalReader, Message
from floorsight.pipelines.mqtt_mapping import RECEIVE_TIME, JsonDecoder, MqttDecoder
from floorsight.pipelines.mqtt_receiver import (
    END_FILE,
    FAILED_FILE,
    READ_FILE,
    SUBSCRIBED_FILE,
    Broker,
    MqttConnectError,
    read_counter,
    write_counter,
)
from floorsight.pipelines.validate import (
    EARLIEST,
    ID_PATTERN,
    LATEST,
    MAX_ABS_VALUE,
    Checked,
    Rejected,
    parse_records,
)
from floorsight.records import SIGNAL_SCHEMA, SignalKind, Signals

log = logging.getLogger("floorsight.mqtt")

_ID = re.compile(ID_PATTERN)
_SIGNALS = frozenset(k.value for k in SignalKind)
#: a state sent as a word: at most this many characters
MAX_STATE_CHARS = 128


class MqttSource(FixedPartitionedSource["Checked | Signals", dict]):
    """Readings (and machine signals) published to an MQTT broker.

    ``broker`` (a :class:`~floorsight.pipelines.mqtt_receiver.Broker`: TLS, login) replaces
    ``host`` and ``port`` when given. ``decoder`` builds one decoder per partition (floorsight's
    own JSON on ``topic`` when None). ``share`` names a shared-subscription group: the source
    then has ``partitions`` partitions. ``journal`` is the folder of the received messages'
    journal (durable: set it with recovery); None keeps it in a temporary folder. ``max_batch``
    messages at most go into the flow per poll; at most ``max_backlog`` wait in the journal. A
    journal segment is deleted once ``keep_snapshots`` snapshots newer than its last message
    exist (Bytewax resumes from the last snapshot the whole cluster committed, at most an epoch
    or two behind the newest).
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
        broker: Broker | None = None,
        decoder: Callable[[], MqttDecoder] | None = None,
        share: str | None = None,
        partitions: int = 1,
    ) -> None:
        self.host, self.port, self.topic, self.client_id = host, port, topic, client_id
        self.units = units  # sensor -> unit: payloads in another unit are dead-lettered
        self.until = until
        self.stop = stop
        self.journal = journal
        self.max_batch = max_batch
        self.max_backlog = max_backlog
        self.keep_snapshots = keep_snapshots
        self.ready = ready  # set once the broker confirmed a partition's subscription
        self.broker = broker
        self.decoder = decoder
        self.share = share
        self.partitions = partitions

    def list_parts(self) -> list[str]:
        if self.share is None:
            return ["mqtt"]  # one session: several would each receive every message
        return [f"mqtt-{i}" for i in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: dict | int | None
    ) -> _MqttPartition:
        return _MqttPartition(self, for_part, resume_state)

    def _broker(self) -> Broker:
        return self.broker if self.broker is not None else Broker(self.host, self.port)

    def _decoder(self) -> MqttDecoder:
        return self.decoder() if self.decoder is not None else JsonDecoder([self.topic])


class _MqttPartition(StatefulSourcePartition["Checked | Signals", dict]):
    def __init__(self, source: MqttSource, part: str, resume_state: dict | int | None) -> None:
        self._src = source
        self._durable = source.journal is not None
        self._decoder = source._decoder()
        position, decoder_state = _resume(resume_state)
        if decoder_state:
            self._decoder.restore(decoder_state)
        client_id, journal, topics = source.client_id, source.journal, self._decoder.subscriptions()
        if source.share is not None:  # a session, a journal and a share of the messages each
            client_id = f"{client_id}-{part.rpartition('-')[2]}"
            journal = journal / f"part-{part.rpartition('-')[2]}" if journal is not None else None
            topics = [f"$share/{source.share}/{t}" for t in topics]
        self._folder = private_dir(journal or Path(tempfile.mkdtemp(prefix="floorsight-mqtt-")))
        (self._folder / END_FILE).unlink(missing_ok=True)
        self._reader = JournalReader(self._folder)
        first = self._reader.first
        # no snapshot yet (first run, or a crash before the first): everything on disk is new
        self._seq = position if position is not None else (first or 0)
        self._snapshots: deque[int] = deque()
        self._past_until: float | None = None
        self._busy = False
        self._stopped = False
        self._receive_times = 0
        self._receive_logged = (0, -math.inf)  # (count, when): logged at most once a minute
        write_counter(self._folder / READ_FILE, self._seq)
        broker = source._broker()
        self._broker = broker
        # the password goes in the child's environment: its argv is public (/proc/<pid>/cmdline)
        self._receiver = subprocess.Popen(
            [
                *(sys.executable, "-m", "floorsight.pipelines.mqtt_receiver", *broker.args()),
                *(f"--topic={t}" for t in topics),
                *("--client-id", client_id, "--folder", str(self._folder)),
                *("--start", str(self._seq), "--max-backlog", str(source.max_backlog)),
                *("--parent", str(os.getpid())),
                *(["--durable"] if self._durable else []),
            ],
            env=broker.env(),
        )
        deadline = time.monotonic() + 30
        while (end := read_counter(self._folder / END_FILE)) is None:
            if self._receiver.poll() is not None or time.monotonic() > deadline:
                self._receiver.kill()
                raise RuntimeError(f"the MQTT receiver did not start (journal {self._folder})")
            time.sleep(0.02)
        # the flow starts once the broker sends to the session (or after a while without it)
        while not (self._folder / SUBSCRIBED_FILE).exists():
            if self._receiver.poll() is not None:
                self._raise_ended()
            if time.monotonic() > deadline:
                log.warning("MQTT source: no subscription confirmed yet; starting the flow")
                break
            time.sleep(0.02)
        else:
            if source.ready is not None:
                source.ready.set()
        if position is not None and position > end:
            log.error(
                "MQTT journal %s ends at message %d but the snapshot resumes at %d: messages "
                "acknowledged before the crash are missing from it",
                self._folder,
                end,
                position,
            )

    def next_batch(self) -> list[Checked | Signals]:
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
                self._raise_ended()
            return []
        self._seq = messages[-1].seq + 1
        write_counter(self._folder / READ_FILE, self._seq)
        if not self._durable:  # nothing replays it: gone once it is in the flow
            self._reader.release(self._seq)
        decoded = decode_messages(messages, self._decoder, self._src.units)
        if decoded.receive_times:
            if not self._receive_times:
                log.warning(
                    "MQTT source: messages without an event time take their receive time "
                    "(the payload map's rule); their count is logged at most once a minute"
                )
            self._receive_times += decoded.receive_times
        ok = decoded.readings.ok
        if self._src.until is not None and ok.height:
            if self._past_until is None and (ok["ts"] >= self._src.until).any():
                self._past_until = time.monotonic()
            ok = ok.filter(pl.col("ts") < self._src.until)
        out: list[Checked | Signals] = [Checked(ok, decoded.readings.dead)]
        if decoded.signals is not None:
            out.append(decoded.signals)
        return out

    def next_awake(self) -> datetime | None:
        if self._busy:
            return None  # more is waiting in the journal
        return datetime.now(tz=UTC) + timedelta(milliseconds=20)

    def snapshot(self) -> dict:
        self._snapshots.append(self._seq)
        if len(self._snapshots) > self._src.keep_snapshots:
            # a resume never goes back further than this snapshot: what is below it is done
            self._reader.release(self._snapshots.popleft())
        now = time.monotonic()
        if self._receive_times != self._receive_logged[0] and now - self._receive_logged[1] > 60:
            log.info(
                "MQTT source: %d messages so far took their receive time (no event time)",
                self._receive_times,
            )
            self._receive_logged = (self._receive_times, now)
        return {"position": self._seq, "decoder": self._decoder.state()}

    def close(self) -> None:
        self._stop_receiver()
        self._reader.close()
        if not self._durable:
            shutil.rmtree(self._folder, ignore_errors=True)

    def _raise_ended(self) -> None:
        code = self._receiver.returncode
        try:
            failure = (self._folder / FAILED_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RuntimeError(f"the MQTT receiver ended (exit code {code})") from None
        raise MqttConnectError(failure)

    def _stop_receiver(self) -> None:
        self._stopped = True
        if self._receiver.poll() is None:
            self._receiver.terminate()
            try:
                self._receiver.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._receiver.kill()
                self._receiver.wait(timeout=5)


def _resume(state: object) -> tuple[int | None, dict]:
    """(journal position, decoder state) from a snapshot; an old snapshot is the bare position."""
    if isinstance(state, int) and not isinstance(state, bool):
        return state, {}
    if isinstance(state, dict) and isinstance(state.get("position"), int):
        decoder = state.get("decoder")
        return state["position"], decoder if isinstance(decoder, dict) else {}
    if state is not None:
        log.error("MQTT source: resume state %r is not understood; reading the journal anew", state)
    return None, {}


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a poll's messages hold: readings (checked for types), signals, and how many took the
    receive time for want of an event time."""

    readings: Checked
    signals: Signals | None
    receive_times: int


def decode_messages(
    messages: list[Message], decoder: MqttDecoder | None = None, units: dict[str, str] | None = None
) -> Decoded:
    """Readings, signals and dead letters from journaled messages; never raises for any payload."""
    decoder = decoder if decoder is not None else JsonDecoder()
    records: list[object] = []
    origin: list[Message] = []
    signals: list[dict] = []
    receive_times = 0
    for msg in messages:
        try:
            out = decoder.decode(msg.topic, msg.payload)
            if not isinstance(out, list):
                raise TypeError(f"decode returned a {type(out).__name__}, not a list")
        except Exception as e:  # a decoder's bug is one message's dead letter, not the end
            raw = msg.payload[:1024].decode("utf-8", "replace")
            out = [Rejected(raw, f"{msg.topic}: the decoder failed ({type(e).__name__})")]
        for item in out:
            record = item
            if isinstance(record, dict):
                if record.get("ts") is RECEIVE_TIME:
                    record = record | {"ts": datetime.fromtimestamp(msg.received, UTC)}
                    receive_times += 1
                if "signal" in record:
                    signal, rejected = check_signal(msg.topic, record)
                    if rejected is None:
                        signals.append(signal)
                        continue
                    record = rejected
            records.append(record)
            origin.append(msg)
    readings = _parse(records, origin, units)
    frame = pl.DataFrame(signals, schema=SIGNAL_SCHEMA) if signals else None
    return Decoded(readings, Signals(frame) if frame is not None else None, receive_times)


def parse_messages(messages: list[Message], units: dict[str, str] | None = None) -> Checked:
    """Readings and dead letters from journaled messages of floorsight's own JSON."""
    return decode_messages(messages, JsonDecoder(), units).readings


def check_signal(topic: str, record: dict) -> tuple[dict, None] | tuple[None, Rejected]:
    """A signal row (:data:`~floorsight.records.SIGNAL_SCHEMA`) or the rejection naming why."""
    try:
        return _check_signal(topic, record)
    except Exception as e:
        return None, Rejected(_excerpt(record), f"{topic}: signal unreadable ({type(e).__name__})")


def _check_signal(topic: str, record: dict) -> tuple[dict, None] | tuple[None, Rejected]:
    def no(why: str) -> tuple[None, Rejected]:
        return None, Rejected(_excerpt(record), f"{topic}: signal {why}")

    machine, kind = record.get("machine_id"), record.get("signal")
    if not isinstance(machine, str) or not _ID.fullmatch(machine):
        return no(f"machine_id {_short(machine)} is not a machine id")
    if kind not in _SIGNALS:
        return no(f"kind {_short(kind)} is not one of {', '.join(sorted(_SIGNALS))}")
    ts = record.get("ts")
    if isinstance(ts, str) and len(ts) <= 64:
        with contextlib.suppress(ValueError):
            ts = datetime.fromisoformat(ts)
    if not isinstance(ts, datetime) or ts.utcoffset() is None:
        return no(f"{kind} of {machine}: ts {_short(record.get('ts'))} is not a time with a zone")
    ts = ts.astimezone(UTC)
    if not EARLIEST <= ts < LATEST:
        return no(f"{kind} of {machine}: ts {ts.isoformat()} is out of range")
    value, text = record.get("value"), record.get("text")
    if isinstance(value, bool):
        value = float(value)
    if value is not None and (
        not isinstance(value, int | float) or not abs(float(value)) <= MAX_ABS_VALUE
    ):
        return no(f"{kind} of {machine}: value {_short(value)} is not a finite number")
    if text is not None and (not isinstance(text, str) or not 0 < len(text) <= MAX_STATE_CHARS):
        return no(f"{kind} of {machine}: text {_short(text)} is not a short word")
    if value is None and text is None:
        return no(f"{kind} of {machine}: neither a value nor a text")
    if kind != SignalKind.STATE and value is None:
        return no(f"{kind} of {machine}: a counter needs a number, got {_short(text)}")
    if text is not None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return no(f"{kind} of {machine}: text is not UTF-8")
    row = {"machine_id": machine, "signal": kind, "ts": ts, "text": text}
    return row | {"value": float(value) if value is not None else None}, None


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _excerpt(record: object) -> str:
    return _short(record) if len(repr(record)) <= 40 else repr(record)[:1024]


def _parse(records: list[object], origin: list[Message], units: dict[str, str] | None) -> Checked:
    try:
        return parse_records(records, "mqtt", units)
    except Exception:  # one message may break the batch: find it, keep the rest
        log.exception("MQTT source: a batch of %d broke the parser; one by one", len(records))
    parts = [_parse_one(m, r, units) for m, r in zip(origin, records, strict=True)]
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
