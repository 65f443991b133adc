"""Connecting to a real plant's broker: URL forms, login, TLS, and what happens when they fail.

Against a real Mosquitto in its stock limits, each broker configured only with what the test is
about: a password file made by ``mosquitto_passwd`` with anonymous access off, or a TLS listener
with a CA and a server certificate generated here (``cryptography``), optionally asking for a
client certificate. A refused login and a certificate that does not verify stop ``floorsight
run`` with exit 2 and a sentence naming the broker; the receiver's password is in its
environment, never its command line; an unreachable broker is retried until it is there.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from floorsight.pipelines.mqtt_receiver import (
    PASSWORD_ENV,
    Broker,
    MqttConnectError,
    MqttUrlError,
    check_broker,
)
from floorsight.pipelines.mqtt_source import MqttSource
from tests.conftest import _free_port, start_mosquitto

pytestmark = pytest.mark.e2e
USER, PASSWORD = "plant-reader", "s3cret-Pa55"
ANONYMOUS = ["allow_anonymous true"]
NOW = dt.datetime.now(tz=dt.UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:1884", Broker("127.0.0.1", 1884)),
        ("mqtt://broker.plant", Broker("broker.plant", 1883)),
        ("mqtts://reader@broker.plant", Broker("broker.plant", 8883, tls=True, user="reader")),
        ("mqtt://reader@[::1]:1999", Broker("::1", 1999, user="reader")),
    ],
)
def test_broker_urls_old_and_new_forms(url: str, expected: Broker) -> None:
    assert Broker.from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mqtt://reader:hunter2@host:1883", "holds a password"),
        ("http://host:1883", "scheme"),
        ("host", "HOST:PORT"),
        ("mqtt://host:1883/plant", "path"),
    ],
)
def test_a_broker_url_with_a_password_or_no_broker_is_refused(url: str, says: str) -> None:
    with pytest.raises(MqttUrlError, match=says) as e:
        Broker.from_url(url)
    assert "hunter2" not in str(e.value)


@pytest.fixture
def broker_files() -> Iterator[Path]:
    """A folder the broker can read: Mosquitto started as root runs as the ``mosquitto`` user,
    who may not enter pytest's folders (only root may)."""
    folder = Path(tempfile.mkdtemp(prefix="floorsight-mqtt-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _for_broker(*paths: Path) -> None:
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, "mosquitto")


@pytest.fixture
def login_broker(tmp_path, broker_files) -> Iterator[int]:
    """Mosquitto with a password file (mosquitto_passwd) and anonymous access off."""
    passwd = broker_files / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), USER, PASSWORD], check=True)
    _for_broker(broker_files, passwd)
    port, stop = start_mosquitto(tmp_path, ["allow_anonymous false", f"password_file {passwd}"])
    yield port
    stop()


def _cert(subject: str, key, issuer=None, issuer_key=None, names=(), ca=False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        alt = [
            x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
            for n in names
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(folder: Path, stem: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
    crt, pem = folder / f"{stem}.crt", folder / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    return crt, pem


@pytest.fixture
def pki(broker_files) -> dict[str, Path]:
    """A CA, a broker certificate for ``localhost`` only (not 127.0.0.1), a client certificate."""
    folder = broker_files
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("floorsight test CA", ca_key, ca=True)
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    server = _cert("localhost", server_key, ca, ca_key, names=("localhost",))
    client = _cert("pipeline", client_key, ca, ca_key)
    ca_crt, _ = _write(folder, "ca", ca, ca_key)
    server_crt, server_pem = _write(folder, "server", server, server_key)
    client_crt, client_pem = _write(folder, "client", client, client_key)
    _for_broker(folder, ca_crt, server_crt, server_pem)
    return {
        "ca": ca_crt,
        "server_crt": server_crt,
        "server_key": server_pem,
        "client_crt": client_crt,
        "client_key": client_pem,
    }


def _tls_lines(pki: dict[str, Path], client_cert: bool = False) -> list[str]:
    lines = [
        "allow_anonymous true",
        f"cafile {pki['ca']}",
        f"certfile {pki['server_crt']}",
        f"keyfile {pki['server_key']}",
    ]
    return lines + (["require_certificate true"] if client_cert else [])


def _context(tmp_path: Path) -> Path:
    from floorsight.simulators import build_plant

    plant = build_plant(1, start=NOW, horizon=dt.timedelta(minutes=30), seed=3, faults=())
    plant.write_context(tmp_path / "erp")
    return tmp_path / "erp"


def _run(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *(sys.executable, "-m", "floorsight.cli", "run", "--context", str(_context(tmp_path))),
            *("--db", str(tmp_path / "f.duckdb"), *args),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != PASSWORD_ENV} | (env or {}),
    )


def test_a_wrong_password_stops_run_with_exit_2_naming_the_broker_and_the_reason(
    login_broker, tmp_path
) -> None:
    url = f"mqtt://{USER}@127.0.0.1:{login_broker}"
    done = _run(tmp_path, "--mqtt", url, env={PASSWORD_ENV: "not-the-password"})
    assert done.returncode == 2, done.stderr
    text = " ".join(done.stderr.split())
    assert url in text
    assert "Bad user name or password" in text or "Not authorized" in text
    assert "FLOORSIGHT_MQTT_PASSWORD" in text  # says where the password goes
    assert "not-the-password" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_no_login_at_all_is_refused_and_an_exposed_password_file_too(login_broker, tmp_path):
    done = _run(tmp_path, "--mqtt", f"mqtt://127.0.0.1:{login_broker}")
    assert done.returncode == 2
    assert "Not authorized" in " ".join(done.stderr.split())
    exposed = tmp_path / "pw"
    exposed.write_text(PASSWORD + "\n")
    exposed.chmod(0o644)
    done = _run(
        tmp_path,
        *("--mqtt", f"mqtt://{USER}@127.0.0.1:{login_broker}"),
        *("--mqtt-password-file", str(exposed)),
    )
    assert done.returncode == 2 and "chmod 600" in " ".join(done.stderr.split())


def _partition(source: MqttSource):
    return source.build_part("readings", source.list_parts()[0], None)


def _reading(machine: str = "M01", value: float = 1.5) -> bytes:
    ts = dt.datetime.now(tz=dt.UTC).isoformat()
    return json.dumps({"machine_id": machine, "sensor": "s1", "ts": ts, "value": value}).encode()


def _publish(port: int, payloads: list[bytes], **login) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub")
    if login.get("user"):
        client.username_pw_set(login["user"], login["password"])
    if login.get("ca"):
        client.tls_set(ca_certs=str(login["ca"]))
    client.connect(login.get("host", "127.0.0.1"), port)
    client.loop_start()
    for p in payloads:
        client.publish("plant/L1/M01/s1", p, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def _drain(part, n: int, timeout: float = 20) -> list[float]:
    values: list[float] = []
    deadline = time.monotonic() + timeout
    while len(values) < n and time.monotonic() < deadline:
        for item in part.next_batch():
            values += item.ok["value"].to_list()
        time.sleep(0.05)
    return values


def test_the_password_reaches_the_receiver_in_its_environment_never_its_command_line(
    login_broker, tmp_path
) -> None:
    broker = Broker("127.0.0.1", login_broker, user=USER, password=PASSWORD)
    assert check_broker(broker) is None
    part = _partition(MqttSource("127.0.0.1", login_broker, broker=broker, client_id="t-login"))
    try:
        pid = part._receiver.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert USER.encode() in cmdline and PASSWORD.encode() not in cmdline
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"{PASSWORD_ENV}={PASSWORD}".encode() in environ
        _publish(login_broker, [_reading(value=7.0)], user=USER, password=PASSWORD)
        assert _drain(part, 1) == [7.0]
    finally:
        part.close()


def test_tls_with_the_ca_connects_and_an_unknown_ca_or_a_wrong_host_name_are_permanent(
    tmp_path, pki
) -> None:
    port, stop = start_mosquitto(tmp_path, _tls_lines(pki))
    try:
        good = Broker("localhost", port, tls=True, ca=pki["ca"])
        assert check_broker(good) is None
        with pytest.raises(MqttConnectError, match="TLS failed") as unknown:
            check_broker(Broker("localhost", port, tls=True))  # the system's CAs only
        assert "--mqtt-ca" in str(unknown.value) and "localhost" in str(unknown.value)
        with pytest.raises(MqttConnectError, match="TLS failed") as mismatch:
            check_broker(Broker("127.0.0.1", port, tls=True, ca=pki["ca"]))
        assert "127.0.0.1" in str(mismatch.value)
        part = _partition(MqttSource("localhost", port, broker=good, client_id="t-tls"))
        try:
            _publish(port, [_reading(value=3.0)], host="localhost", ca=pki["ca"])
            assert _drain(part, 1) == [3.0]
        finally:
            part.close()
        done = _run(tmp_path, "--mqtt", f"mqtts://127.0.0.1:{port}", "--mqtt-ca", str(pki["ca"]))
        assert done.returncode == 2, done.stderr
        assert "TLS failed" in " ".join(done.stderr.split())
    finally:
        stop()


def test_a_client_certificate_is_presented_when_the_broker_asks_for_one(tmp_path, pki) -> None:
    port, stop = start_mosquitto(tmp_path, _tls_lines(pki, client_cert=True))
    try:
        broker = Broker(
            "localhost", port, tls=True, ca=pki["ca"], cert=pki["client_crt"], key=pki["client_key"]
        )
        assert check_broker(broker) is None
    finally:
        stop()


def test_an_unreachable_broker_is_retried_until_it_is_there(tmp_path) -> None:
    port = _free_port()
    broker = Broker("127.0.0.1", port)
    warning = check_broker(broker)
    assert warning is not None and "unreachable" in warning
    started: list[Callable] = []
    later = threading.Timer(
        1.5, lambda: started.append(start_mosquitto(tmp_path, ANONYMOUS, port)[1])
    )
    later.start()
    part = _partition(MqttSource("127.0.0.1", port, broker=broker, client_id="t-retry"))
    try:
        later.join()
        assert (part._folder / "subscribed").exists()
        assert part._receiver.poll() is None
        _publish(port, [_reading(value=9.0)])
        assert _drain(part, 1) == [9.0]
    finally:
        later.cancel()  # a broker started after the test ended would outlive it
        later.join()
        part.close()
        for stop in started:
            stop()


def test_a_clusters_child_processes_get_every_mqtt_option_but_the_password() -> None:
    from floorsight.runner import RunConfig

    cfg = RunConfig(
        history=None,
        context=Path("erp"),
        db=Path("f.duckdb"),
        mqtt=f"mqtts://{USER}@broker:8883",
        mqtt_password=PASSWORD,
        mqtt_password_file=Path("pw"),
        mqtt_ca=Path("ca.crt"),
        mqtt_topics=["factory/{line}/{machine_id}/{sensor}", "site/{machine_id}/+"],
        payload_map=Path("map.toml"),
        mqtt_share="floorsight",
    )
    args = cfg.args()
    assert PASSWORD not in " ".join(args) and PASSWORD not in repr(cfg)
    pairs = dict(itertools.pairwise(args))
    assert pairs["--mqtt-password-file"] == "pw" and pairs["--mqtt-ca"] == "ca.crt"
    assert pairs["--payload-map"] == "map.toml" and pairs["--mqtt-share"] == "floorsight"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--topic"] == cfg.mqtt_topics


def test_a_missing_tls_file_or_a_client_key_others_can_read_is_named(tmp_path, pki) -> None:
    with pytest.raises(MqttConnectError, match=r"--mqtt-ca .*nope.crt: no such file"):
        check_broker(Broker("localhost", 1, tls=True, ca=tmp_path / "nope.crt"))
    pki["client_key"].chmod(0o644)
    with pytest.raises(MqttConnectError, match=r"--mqtt-key: .*chmod 600"):
        check_broker(
            Broker("localhost", 1, tls=True, cert=pki["client_crt"], key=pki["client_key"])
        )
    with pytest.raises(MqttConnectError, match="go together"):
        check_broker(Broker("localhost", 1, tls=True, cert=pki["client_crt"]))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--mqtt", "mqtt://reader:hunter2@broker:1883"], "holds a password"),
        (["--mqtt", "broker"], "HOST:PORT"),
        (["--mqtt", "broker:1883", "--topic", "factory/{plant}/{sensor}"], "{plant}"),
        (["--mqtt", "broker:1883", "--mqtt-format", "csv"], "json or sparkplug"),
        (["--mqtt", "broker:1883", "--payload-map", "/nonexistent/map.toml"], "no such file"),
        (
            ["--mqtt", "broker:1883", "--mqtt-format", "sparkplug", "--mqtt-share", "g"],
            "without --mqtt-share",
        ),
    ],
)
def test_run_refuses_bad_mqtt_options_before_it_starts(tmp_path, args, says) -> None:
    from typer.testing import CliRunner

    from floorsight.cli import app

    result = CliRunner().invoke(app, ["run", "--context", str(tmp_path), *args])
    assert result.exit_code == 2
    flat = "".join(c for c in result.output if not c.isspace() and c not in "│╭╮╰╯─")
    assert says.replace(" ", "") in flat, result.output  # typer wraps the message in a box
    assert "hunter2" not in result.output


def test_shared_property_tables_keep_each_packets_properties_its_own(monkeypatch) -> None:
    from paho.mqtt.exception import MQTTException
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from floorsight.pipelines.mqtt_receiver import share_property_tables

    # the receiver's process patches paho's class; this process gets it back after the test
    monkeypatch.setattr(Properties, "__init__", Properties.__init__)
    monkeypatch.setattr(Properties, "_floorsight_shared", False, raising=False)
    sent = Properties(PacketTypes.PUBLISH)
    sent.UserProperty = ("line", "L1")
    sent.MessageExpiryInterval = 5
    packed = sent.pack()
    assert share_property_tables()
    got, other = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.PUBLISH)
    got.unpack(packed[:])
    assert got.UserProperty == [("line", "L1")] and got.MessageExpiryInterval == 5
    assert (
        not hasattr(other, "UserProperty")
        and other.pack() == Properties(PacketTypes.PUBLISH).pack()
    )
    assert got.names is other.names  # one table, not one per packet
    with pytest.raises(MQTTException, match="does not apply"):  # the tables' checks still hold
        other.SessionExpiryInterval = 1  # not a PUBLISH property


def test_run_reads_a_plants_topics_with_a_login_on_two_shared_partitions(
    login_broker, tmp_path
) -> None:
    """`floorsight run` end to end: login from a private file, a topic template and payload map,
    two workers on a shared subscription; Ctrl-C, and every reading is in the features."""
    from floorsight.pipelines.mqtt_receiver import END_FILE, READ_FILE, read_counter
    from floorsight.simulators import build_plant
    from floorsight.storage import Database

    start = dt.datetime.now(tz=dt.UTC) - dt.timedelta(minutes=10)
    plant = build_plant(
        2, start=start, horizon=dt.timedelta(hours=1), seed=3, faults=(), setup_minutes=(0, 1)
    )
    plant.write_context(tmp_path / "erp")
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    mapping = tmp_path / "map.toml"
    mapping.write_text('sensors = "*"\ntime = "t"\ntime_format = "epoch_ms"\n')
    t0 = (start + dt.timedelta(minutes=6)).replace(microsecond=0)
    readings = plant.readings(t0, t0 + dt.timedelta(seconds=20))
    run = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "run", "--context", str(tmp_path / "erp")),
            *("--db", str(tmp_path / "f.duckdb"), "--recovery", str(tmp_path / "rec")),
            *("--mqtt", f"mqtt://{USER}@127.0.0.1:{login_broker}"),
            *("--mqtt-password-file", str(password_file), "--topic", "factory/{line}/{machine_id}"),
            *("--payload-map", str(mapping), "--mqtt-share", "fs", "-w", "2"),
        ],
        env={k: v for k, v in os.environ.items() if k != PASSWORD_ENV},
        stderr=subprocess.PIPE,
        text=True,
    )
    parts = [tmp_path / "rec" / "mqtt-journal" / f"part-{i}" for i in (0, 1)]
    try:
        deadline = time.monotonic() + 60
        while not all((p / "subscribed").exists() for p in parts):
            assert run.poll() is None and time.monotonic() < deadline, "run did not subscribe"
            time.sleep(0.1)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-gateway")
        client.username_pw_set(USER, PASSWORD)
        client.connect("127.0.0.1", login_broker)
        client.loop_start()
        sent = 0
        for (machine, ts), rows in readings.sort("ts").group_by(
            "machine_id", "ts", maintain_order=True
        ):
            body = {"t": round(ts.timestamp() * 1000)} | dict(
                zip(rows["sensor"], rows["value"], strict=True)
            )
            client.publish(f"factory/L1/{machine}", json.dumps(body), qos=1).wait_for_publish(10)
            sent += 1
        client.loop_stop()
        client.disconnect()
        # both partitions took a share and the flow has read all of it
        while sum(read_counter(p / END_FILE) or 0 for p in parts) < sent or any(
            (read_counter(p / READ_FILE) or 0) < (read_counter(p / END_FILE) or 0) for p in parts
        ):
            assert run.poll() is None and time.monotonic() < deadline + 60, "run fell behind"
            time.sleep(0.1)
        assert all((read_counter(p / END_FILE) or 0) > 0 for p in parts)
        time.sleep(1.0)  # a poll after the last read
    finally:
        run.send_signal(2)  # Ctrl-C: windows close, the sink flushes
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err[-2000:]
    got = Database(tmp_path / "f.duckdb").query("SELECT sum(n) AS n FROM features")["n"][0]
    assert got == readings.height
