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
acknowledged is on disk; the rest the broker delivers again). A broker that refuses the login or
a TLS certificate that does not verify ends it with exit code 2 and the reason in the ``failed``
file (:class:`MqttConnectError`: retrying cannot help); an unreachable broker or a dropped
connection is retried with backoff (1 s doubling to 30 s), each attempt a warning.

:class:`Broker` holds where and how to connect (``mqtt://[user@]host:port``, ``mqtts://``, the
old ``HOST:PORT``; TLS files; login). The password reaches this process in its environment
(``FLOORSIGHT_MQTT_PASSWORD``), never in its arguments, which every user can read in
``/proc/<pid>/cmdline``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from floorsight.config import exposed_file
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
FAILED_FILE = "failed"
#: the environment variable that holds the broker password (of ``run`` and of this process)
PASSWORD_ENV = "FLOORSIGHT_MQTT_PASSWORD"
#: CONNACK reason codes after which a reconnect cannot succeed: the login or the client is refused
_REFUSALS = {0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C}
_COUNTER = struct.Struct("<q")


class MqttConnectError(ValueError):
    """A broker that refuses this client for good (login, TLS): the message says what to do."""


class MqttUrlError(ValueError):
    """A ``--mqtt`` value that is no broker address."""


@dataclass(frozen=True)
class Broker:
    """Where and how to connect: host, port, TLS (``ca``: the CA file; ``cert`` and ``key``: a
    client certificate) and login (``user``; ``password`` never printed)."""

    host: str
    port: int = 1883
    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, **kw) -> Broker:
        """``mqtt://[user@]host[:port]``, ``mqtts://[user@]host[:port]`` (ports 1883 / 8883 by
        default) or ``HOST:PORT``. A password in the URL is refused: it would be on the command
        line for every user to read."""
        if "://" not in url:
            host, _, port = url.rpartition(":")
            if not host or not port.isdigit():
                raise MqttUrlError(
                    f"--mqtt must be mqtt://[user@]host:port, mqtts://... or HOST:PORT, got {url!r}"
                )
            return cls(host.strip("[]"), int(port), **kw)
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise MqttUrlError(f"--mqtt: scheme {parts.scheme!r} is not mqtt:// or mqtts://")
        if parts.password is not None:
            raise MqttUrlError(
                "--mqtt holds a password: anyone on this host can read a command line; give the "
                f"user only (mqtt://user@host:port) and the password in ${PASSWORD_ENV} or "
                "--mqtt-password-file"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise MqttUrlError(f"--mqtt: {url!r} has a path or query; give scheme://host:port")
        try:
            port = parts.port
        except ValueError as e:
            raise MqttUrlError(f"--mqtt: {url!r}: {e}") from None
        if not parts.hostname:
            raise MqttUrlError(f"--mqtt: {url!r} names no host")
        tls = parts.scheme == "mqtts"
        return cls(
            parts.hostname,
            port or (8883 if tls else 1883),
            tls=tls,
            user=parts.username,
            **kw,
        )

    @property
    def name(self) -> str:
        """The broker as a URL (never with the password)."""
        login = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{login}{host}:{self.port}"

    def args(self) -> list[str]:
        """The receiver's arguments for this broker: no password."""
        out = [f"--host={self.host}", "--port", str(self.port)]
        if self.tls:
            out.append("--tls")
        for flag, path in (("--ca", self.ca), ("--cert", self.cert), ("--key", self.key)):
            if path is not None:
                out.append(f"{flag}={path}")
        if self.user is not None:
            out.append(f"--user={self.user}")  # "=": a value may start with "-"
        return out

    def env(self) -> dict[str, str]:
        """The receiver's environment: this process's, with the password when there is one."""
        env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
        if self.password is not None:
            env[PASSWORD_ENV] = self.password
        return env

    def configure(self, client: mqtt.Client) -> None:
        """Set TLS and login on a paho client (a missing TLS file, or a client key that others
        can read, is a :class:`MqttConnectError` naming it)."""
        for flag, path in (("--mqtt-ca", self.ca), ("--mqtt-cert", self.cert)):
            if path is not None and not Path(path).is_file():
                raise MqttConnectError(f"{flag} {path}: no such file")
        if self.key is not None:
            if not Path(self.key).is_file():
                raise MqttConnectError(f"--mqtt-key {self.key}: no such file")
            if (exposed := exposed_file(Path(self.key))) is not None:
                raise MqttConnectError(f"--mqtt-key: {exposed}")
        if (self.cert is None) != (self.key is None):
            raise MqttConnectError("--mqtt-cert and --mqtt-key go together (a client certificate)")
        if self.tls:
            client.tls_set(
                ca_certs=str(self.ca) if self.ca else None,
                certfile=str(self.cert) if self.cert else None,
                keyfile=str(self.key) if self.key else None,
            )
        if self.user is not None or self.password is not None:
            client.username_pw_set(self.user or "", self.password)

    def refused(self, reason: object) -> MqttConnectError:
        """The error for a CONNACK that refuses the session."""
        login = f"as {self.user!r} " if self.user else "without a user name "
        code = getattr(reason, "value", None)
        if code == 0x84:
            return MqttConnectError(
                f"MQTT broker {self.name} refused the connection ({reason}): floorsight's MQTT "
                "source needs a broker that speaks MQTT 5 (Mosquitto 1.6 or later, EMQX, HiveMQ, "
                "VerneMQ); upgrade the broker or enable MQTT 5 on its listener"
            )
        if code == 0x85:
            return MqttConnectError(
                f"MQTT broker {self.name} refused the client id ({reason}): allow floorsight's "
                "client ids (floorsight-pipeline, floorsight-pipeline-<i>) on the broker"
            )
        return MqttConnectError(
            f"MQTT broker {self.name} refused the connection {login}({reason}): check the user "
            f"in --mqtt (mqtt://user@host:port) and the password in ${PASSWORD_ENV} or "
            "--mqtt-password-file, and that the broker lets this user connect"
        )

    def tls_failed(self, e: ssl.SSLError) -> MqttConnectError:
        """The error for a TLS handshake that failed verification."""
        why = getattr(e, "verify_message", None) or getattr(e, "reason", None) or str(e)
        return MqttConnectError(
            f"MQTT broker {self.name}: TLS failed ({why}): give --mqtt-ca the CA certificate "
            "that signed the broker's, connect by a host name that its certificate holds, and "
            "check --mqtt-cert/--mqtt-key if the broker asks for a client certificate"
        )


def check_broker(broker: Broker, timeout: float = 10.0) -> str | None:
    """Connect once (no session, no subscription) to find a refusal before the pipeline starts.

    Raises :class:`MqttConnectError` for a refused login or a TLS failure; returns a warning
    when the broker is unreachable (the receiver retries), None when it accepts the login."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"floorsight-check-{os.getpid()}",
        protocol=mqtt.MQTTv5,
    )
    broker.configure(client)
    answer: list[object] = []
    client.on_connect = lambda c, u, f, reason_code, p: answer.append(reason_code)
    try:
        client.connect(broker.host, broker.port, keepalive=10, clean_start=True)
    except ssl.SSLCertVerificationError as e:
        raise broker.tls_failed(e) from None
    except (OSError, ValueError) as e:  # refused, unreachable, a TLS handshake cut off
        return f"MQTT broker {broker.name} unreachable ({e}); the source retries"
    deadline = time.monotonic() + timeout
    try:
        while not answer and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS and not answer:
                return f"MQTT broker {broker.name} closed the connection; the source retries"
    finally:
        client.disconnect()
    if not answer:
        return f"MQTT broker {broker.name} did not answer the login; the source retries"
    reason = answer[0]
    if getattr(reason, "is_failure", False):
        # the check's own client id is not the source's: a broker refusing it may take those
        if getattr(reason, "value", None) in _REFUSALS - {0x85}:
            raise broker.refused(reason)
        return f"MQTT broker {broker.name} refused the connection ({reason}); the source retries"
    return None


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
        broker: Broker,
        topics: list[str],
        client_id: str,
        folder: Path,
        durable: bool,
        start: int,
        max_backlog: int,
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.folder = Path(folder)
        self.failure: MqttConnectError | None = None
        self._backoff = 1.0
        self.max_backlog = max_backlog
        self.journal = Journal(self.folder, durable=durable, start=start)
        self.closing = threading.Event()
        self._pending: list[mqtt.MQTTMessage] = []
        self._warned = False
        self._end_file = self.folder / END_FILE
        (self.folder / SUBSCRIBED_FILE).unlink(missing_ok=True)
        (self.folder / FAILED_FILE).unlink(missing_ok=True)
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
        broker.configure(self.client)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def run(self) -> None:
        # one thread reads, journals and acknowledges: no hand-over between threads, so the
        # broker's window of 20 turns over as fast as a group reaches the disk
        connected = False
        while not self.closing.is_set():
            if not connected:
                connected = self._connect()
                continue
            if self._read_burst() != mqtt.MQTT_ERR_SUCCESS:
                if self.closing.is_set():
                    break
                self._retry("connection lost (the broker keeps the session)")
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
                self.broker.host,
                self.broker.port,
                keepalive=30,
                clean_start=False,
                properties=self._connect_properties,
            )
        except ssl.SSLCertVerificationError as e:  # the same certificate fails every time
            self._fail(self.broker.tls_failed(e))
            return False
        except (OSError, ValueError) as e:
            self._retry(f"unreachable ({e})")
            return False
        return True

    def _retry(self, why: str) -> None:
        log.warning("MQTT broker %s %s; retrying in %.0f s", self.broker.name, why, self._backoff)
        self.closing.wait(self._backoff)
        self._backoff = min(self._backoff * 2, 30.0)

    def _fail(self, error: MqttConnectError) -> None:
        log.error("%s", error)
        self.failure = error
        (self.folder / FAILED_FILE).write_text(str(error), encoding="utf-8")
        self.closing.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if reason_code.value in _REFUSALS:
                self._fail(self.broker.refused(reason_code))
            else:
                log.warning("MQTT broker %s refused the session: %s", self.broker.name, reason_code)
            return
        self._backoff = 1.0
        client.subscribe([(topic, 1) for topic in self.topics])

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


def share_property_tables() -> bool:
    """Let paho's ``Properties`` objects share their lookup tables instead of building them anew.

    paho builds three tables (property names, types, which packets allow which) in every
    ``Properties.__init__``, and it makes one ``Properties`` per MQTT 5 PUBLISH received: about
    half of this process's CPU per message (``benchmarks/mqtt_receiver_cpu.py``, 40,000 QoS 1
    messages from a local Mosquitto: 120 to 135 µs of CPU each with the tables built per message,
    51 to 66 µs with them shared). The tables
    are only read after ``__init__``, so one copy serves every instance. Only in the receiver's
    own process (it patches the class); False when paho's class is not as expected."""
    from paho.mqtt import properties

    cls = properties.Properties
    if getattr(cls, "_floorsight_shared", False):
        return True
    try:
        template = cls(PacketTypes.PUBLISH)
        tables = (template.types, template.names, template.properties)
    except Exception:
        return False

    def shared_init(self, packetType, _tables=tables):  # noqa: N803 (paho's own argument name)
        self.packetType = packetType
        self.types, self.names, self.properties = _tables

    cls.__init__ = shared_init
    cls._floorsight_shared = True
    return True


def _topic(msg: mqtt.MQTTMessage) -> str:
    try:
        return msg.topic
    except UnicodeDecodeError:  # MQTT topics are UTF-8; a broker may pass one that is not
        return bytes(msg._topic).decode("utf-8", "backslashreplace")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--ca", type=Path)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--user")
    parser.add_argument("--topic", action="append", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--max-backlog", type=int, default=500_000)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    # the receiver's CPU per message is what keeps it ahead of the broker's window when the
    # pipeline's own work takes the machine's cores
    if not share_property_tables():
        log.info("MQTT receiver: paho's Properties differ from what it expects; left as they are")
    broker = Broker(
        args.host,
        args.port,
        tls=args.tls,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        user=args.user,
        password=os.environ.pop(PASSWORD_ENV, None),
    )
    receiver = Receiver(
        broker,
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
    if receiver.failure is not None:
        raise SystemExit(2)


if __name__ == "__main__":
    main()
