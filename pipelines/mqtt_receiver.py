"""The MQTT source's receiving process: holds the broker session, journals, acknowledges.

It runs as a child process of the pipeline (``python -m floorsight.pipelines.mqtt_receiver``),
so the flow's work never holds up the broker: in the pipeline's own process the flow's Python
holds the GIL, the acknowledgements of the broker's 20 messages in flight (Mosquitto's stock
limit) wait for it, the broker's queue of 1,000 fills and it drops messages. Here one thread
runs paho's network loop: what a read brings is appended to the journal as a group (fsynced when
durable), the pipeline is told how far the journal goes (the ``end`` file: 8 bytes, the number
after the last record on disk) and only then is the group acknowledged. The ``subscribed`` file
appears once the broker has confirmed the subscription. When more than
``--max-backlog`` records wait unread (the pipeline writes its read position to the ``read``
file) it takes no more until the pipeline catches up; the broker keeps them.

It ends on SIGTERM or SIGINT, and by itself when the pipeline's process is gone (what it has
acknowledged is on disk; the rest the broker delivers again).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import struct
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from floorsight.pipelines.mqtt_journal import Journal

log = logging.getLogger("floorsight.mqtt")

#: messages in flight from the broker to the receiver (MQTT 5 receive maximum, the protocol's
#: largest): the broker's window is its own memory and the sockets' buffers, not this process's
#: (a read takes at most GROUP messages), and a burst fills it instead of the broker's queue
RECEIVE_MAXIMUM = 65_535
#: messages per journal group at most (Mosquitto has 20 in flight by default, 65,535 at most)
GROUP = 2000
END_FILE = "end"
READ_FILE = "read"
SUBSCRIBED_FILE = "subscribed"
_COUNTER = struct.Struct("<q")


def write_counter(path: Path, value: int) -> None:
    """Set the 8-byte counter file ``path`` (another process reads it with read_counter)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, _COUNTER.pack(value), 0)
    finally:
        os.close(fd)


def read_counter(path: Path) -> int | None:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    return _COUNTER.unpack(data[: _COUNTER.size])[0] if len(data) >= _COUNTER.size else None


class Receiver:
    """One persistent QoS-1 session whose messages go to the journal before they are acked."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        client_id: str,
        folder: Path,
        durable: bool,
        start: int,
        max_backlog: int,
    ) -> None:
        self.topic = topic
        self.folder = Path(folder)
        self.max_backlog = max_backlog
        self.journal = Journal(self.folder, durable=durable, start=start)
        self.closing = threading.Event()
        self._pending: list[mqtt.MQTTMessage] = []
        self._warned = False
        self._end_file = self.folder / END_FILE
        (self.folder / SUBSCRIBED_FILE).unlink(missing_ok=True)
        write_counter(self._end_file, self.journal.end)
        # MQTT 5: the session outlives the connection (clean start off, no expiry), and the
        # receive maximum asks the broker for a window of RECEIVE_MAXIMUM messages in flight
        # instead of its default for 3.1.1 clients (20 in Mosquitto), so a publisher's burst
        # is in flight to us rather than in the broker's queue (1,000, then it drops)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._connect_properties = Properties(PacketTypes.CONNECT)
        self._connect_properties.SessionExpiryInterval = 0xFFFFFFFF
        self._connect_properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._host, self._port = host, port

    def run(self) -> None:
        # one thread reads, journals and acknowledges: no hand-over between threads, so the
        # broker's window of 20 turns over as fast as a group reaches the disk
        connected = False
        while not self.closing.is_set():
            if not connected:
                connected = self._connect()
                continue
            if self._read_burst() != mqtt.MQTT_ERR_SUCCESS:
                log.warning("MQTT connection lost; reconnecting (the broker keeps the session)")
                connected = False
                self._pending.clear()  # not acknowledged: the broker delivers them again
                continue
            if self._pending:
                if self._backlog() > self.max_backlog:
                    self._wait_for_reader()
                    continue
                group, self._pending = self._pending, []
                self._journal_and_ack(group)
        self.client.disconnect()
        self.journal.close()

    def _read_burst(self) -> mqtt.MQTTErrorCode:
        """Wait for a packet, then take every message already readable (paho reads one packet
        per loop), so that a group is all the broker has in flight."""
        rc = self.client.loop(timeout=0.05)
        before = -1
        # what comes within a moment joins the group: acknowledged together, the broker's next
        # window arrives together (acknowledging one by one, it sends one by one)
        while rc == mqtt.MQTT_ERR_SUCCESS and before < len(self._pending) < GROUP:
            before = len(self._pending)
            rc = self.client.loop(timeout=0.002)
        return rc

    def _connect(self) -> bool:
        try:
            self.client.connect(
                self._host,
                self._port,
                keepalive=30,
                clean_start=False,
                properties=self._connect_properties,
            )
        except OSError as e:
            log.warning("MQTT broker %s:%d unreachable (%s); retrying", self._host, self._port, e)
            self.closing.wait(1.0)
            return False
        return True

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the session: %s", reason_code)
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        (self.folder / SUBSCRIBED_FILE).touch()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self._pending.append(msg)

    def _wait_for_reader(self) -> None:
        if not self._warned:
            log.warning(
                "MQTT source: %d messages wait in the journal for the flow; taking no more "
                "until it catches up (the broker keeps them, within its limits)",
                self._backlog(),
            )
            self._warned = True
        self.closing.wait(0.05)

    def _backlog(self) -> int:
        read = read_counter(self.folder / READ_FILE)
        return self.journal.end - read if read is not None else 0

    def _journal_and_ack(self, group: list[mqtt.MQTTMessage]) -> None:
        records = []
        for msg in group:
            topic = _topic(msg)
            # a copy the broker sends again because our acknowledgement was lost: on disk already
            if msg.dup and self.journal.seen(topic, msg.payload):
                continue
            records.append((topic, msg.payload, time.time()))
        while not self.closing.is_set():
            try:
                end = self.journal.append(records)
                break
            except OSError:
                log.exception("MQTT journal: cannot write; retrying (the broker keeps them)")
                self.closing.wait(1.0)
        else:
            return  # closing: not acknowledged, so the broker delivers them again
        write_counter(self._end_file, end)
        self._warned = False
        for msg in group:
            if msg.qos > 0:
                self.client.ack(msg.mid, msg.qos)


def _topic(msg: mqtt.MQTTMessage) -> str:
    try:
        return msg.topic
    except UnicodeDecodeError:  # MQTT topics are UTF-8; a broker may pass one that is not
        return bytes(msg._topic).decode("utf-8", "backslashreplace")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--max-backlog", type=int, default=500_000)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    receiver = Receiver(
        args.host,
        args.port,
        args.topic,
        args.client_id,
        args.folder,
        args.durable,
        args.start,
        args.max_backlog,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: receiver.closing.set())

    def watch_parent() -> None:  # a SIGKILLed pipeline takes its receiver with it
        while not receiver.closing.wait(0.5):
            if os.getppid() != args.parent:
                receiver.closing.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    receiver.run()
    if not args.durable and os.getppid() != args.parent:  # nobody is left to read it
        shutil.rmtree(args.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
