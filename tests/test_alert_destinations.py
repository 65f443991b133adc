"""Each alert destination receives the alert, for real: HTTP, Mosquitto, the simulator's OPC-UA
server, SMTP, the ERP file drop and the ERP table (DuckDB and PostgreSQL); routing, context and
escalation."""

from __future__ import annotations

import asyncio
import email
import json
import smtpd
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import paho.mqtt.client as paho
import polars as pl
import pytest

from floorsight.alerts import ALERT_SCHEMA, ALERTS
from floorsight.alerts.destinations import message_id
from floorsight.alerts.dispatcher import Dispatcher
from floorsight.alerts.outbox import Outbox
from floorsight.alerts.routing import Routing, RoutingError, load_routing
from floorsight.simulators import build_plant
from floorsight.simulators.erp import erp_tables
from floorsight.storage import Database
from tests.conftest import T0
from tests.test_outbox import Receiver, _port

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def plant_tables():
    plant = build_plant(3, start=T0, horizon=timedelta(hours=6), seed=4, faults=())
    return plant, erp_tables(plant)


def _alert(plant, cause: str = "order_offset", **over) -> pl.DataFrame:
    w = next(w for w in plant.work_orders if w.machine_id == "M02" and w.start > T0)
    row = {
        "alert_id": f"M02:{cause}:20260302T083000Z",
        "machine_id": "M02",
        "cause": cause,
        "severity": "warning",
        "status": "open",
        "first_seen": w.start + timedelta(minutes=15),
        "raised_at": w.start + timedelta(minutes=16),
        "last_seen": w.start + timedelta(minutes=20),
        "cleared_at": None,
        "score": 0.99999,
        "windows": 3,
        "reason": "M02: work order off the product's usual level",
        "evidence": "bore_diameter_mm mean 25.012 vs 25.000",
        "work_order": w.work_order,
        "product": w.product,
        "material_lot": w.material_lot,
        **over,
    }
    return pl.DataFrame([row], schema=ALERT_SCHEMA)


def test_routing_file_is_checked_and_errors_name_the_problem(tmp_path) -> None:
    good = tmp_path / "routing.toml"
    good.write_text(
        """
[destinations.hook]
kind = "webhook"
url = "http://127.0.0.1:9/x"
[destinations.topic]
kind = "mqtt"
url = "mqtt://127.0.0.1:1883"
topic = "floorsight/alerts/{line}"
[roles]
maintenance = ["hook"]
quality = ["topic"]
boss = ["hook", "topic"]
[[rules]]
causes = ["failure_risk"]
roles = ["maintenance"]
[[rules]]
lines = ["L2"]
min_severity = "critical"
roles = ["boss"]
[escalation]
after_s = 60
roles = ["boss"]
"""
    )
    r = load_routing(good)
    assert r.roles_for("failure_risk", "L1", "warning") == ["maintenance"]
    assert r.roles_for("anomaly", "L2", "warning") == []
    assert r.roles_for("anomaly", "L2", "critical") == ["boss"]
    assert r.destinations_for(["maintenance", "boss"]) == ["hook", "topic"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles]\nquality = ["nowhere"]\n')
    with pytest.raises(RoutingError, match=r"(?s)bad\.toml.*unknown destination 'nowhere'"):
        load_routing(bad)
    bad.write_text('[destinations.x]\nkind = "mqtt"\nurl = "mqtt://h:1"\n')
    with pytest.raises(RoutingError, match="needs topic"):
        load_routing(bad)


class _Smtp:
    """A real SMTP server on 127.0.0.1 (stdlib ``smtpd``), collecting what it receives."""

    def __init__(self, port: int) -> None:
        import asyncore

        received = self.received = []

        class Server(smtpd.SMTPServer):
            def process_message(self, peer, mailfrom, rcpttos, data, **kw):
                received.append((rcpttos, data.decode() if isinstance(data, bytes) else data))

        self.server = Server(("127.0.0.1", port), None)
        self.thread = threading.Thread(target=asyncore.loop, kwargs={"timeout": 0.1}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.close()


def _mqtt_listener(host: str, port: int, topic: str) -> tuple[paho.Client, list]:
    got: list = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    client.connect(host, port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    time.sleep(0.3)
    return client, got


def _opcua_server(url: str, machines: int = 3) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "simulate", "--opcua", url),
            *("--machines", str(machines), "--hours", "1", "--speed", "1", "--seed", "4"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_node(url: str, node: str):
    from asyncua import Client, ua

    async def read():
        async with asyncio.timeout(30):
            while True:
                try:
                    async with Client(url) as c:
                        ns = await c.get_namespace_index("urn:floorsight:plant")
                        return await c.get_node(f"ns={ns};s={node}").read_value()
                except (OSError, ua.UaError):
                    await asyncio.sleep(0.2)

    return asyncio.run(read())


def test_every_destination_receives_the_alert_with_its_context(
    tmp_path, plant_tables, mosquitto, postgres
) -> None:
    plant, tables = plant_tables
    host, mport = mosquitto
    http_port, smtp_port, opc_port = _port(), _port(), _port()
    opc_url = f"opc.tcp://127.0.0.1:{opc_port}/floorsight/"
    server = _opcua_server(opc_url)
    hook, smtp = Receiver(http_port), _Smtp(smtp_port)
    listener, got = _mqtt_listener(host, mport, "floorsight/alerts/#")
    erp_db = tmp_path / "erp.duckdb"
    routing = Routing.model_validate(
        {
            "destinations": {
                "hook": {"kind": "webhook", "url": f"http://127.0.0.1:{http_port}/alerts"},
                "topic": {
                    "kind": "mqtt",
                    "url": f"mqtt://{host}:{mport}",
                    "topic": "floorsight/alerts/{line}",
                },
                "node": {"kind": "opcua", "url": opc_url},
                "mail": {
                    "kind": "email",
                    "url": f"smtp://127.0.0.1:{smtp_port}",
                    "address": "quality@plant.example",
                },
                "drop": {"kind": "erp_file", "path": str(tmp_path / "qn")},
                "erp": {"kind": "erp_table", "url": str(erp_db)},
                "erp_pg": {"kind": "erp_table", "url": postgres},
            },
            "roles": {"quality": ["hook", "topic", "node", "mail", "drop", "erp", "erp_pg"]},
            "rules": [{"causes": ["order_offset"], "roles": ["quality"]}],
        }
    )
    try:
        _read_node(opc_url, "L1.M02.QualityHold")  # wait until the server answers
        dispatcher = Dispatcher(Outbox(tmp_path / "outbox.sqlite"), routing)
        alert = _alert(plant)
        assert dispatcher.queue(alert, tables) == 7
        assert dispatcher.queue(alert, tables) == 0  # the same alert again: nothing new
        report = dispatcher.step()
        assert (report.delivered, report.failed, report.pending) == (7, 0, 0)
        time.sleep(0.5)

        lot = alert["material_lot"][0]
        expected_batches = sorted(
            tables["genealogy"].filter(pl.col("material_lot") == lot)["batch_id"]
        )
        # webhook: the documented body, the idempotency key as a header
        key, body = hook.received[0]
        assert key == body["idempotency_key"] == f"{alert['alert_id'][0]}/opened"
        assert body["line"] == "L1" and body["type"] == "order_offset"
        ctx = body["context"]
        assert ctx["material_lot"] == lot
        assert ctx["batch"] == "B-" + alert["work_order"][0].removeprefix("WO-")
        assert ctx["cascade"]["batches"] == expected_batches
        shipped = tables["shipments"].filter(pl.col("batch_id").is_in(expected_batches))
        assert {s["shipment_id"] for s in ctx["cascade"]["shipments"]} == set(
            shipped["shipment_id"]
        )
        # MQTT: the line's topic
        assert [t for t, _ in got] == ["floorsight/alerts/L1"]
        assert got[0][1]["idempotency_key"] == key
        # OPC-UA: the machine's node on the simulator's server
        assert _read_node(opc_url, "L1.M02.QualityHold") is True
        assert "order_offset" in _read_node(opc_url, "L1.M02.AlarmText")
        # e-mail
        assert smtp.received[0][0] == ["quality@plant.example"]
        mail = email.message_from_string(smtp.received[0][1])
        assert mail["Message-ID"] == message_id(key)
        assert json.loads(mail.get_payload())["idempotency_key"] == key
        # ERP: the file drop and the quality-notification tables
        files = list((tmp_path / "qn").glob("*.json"))
        assert [json.loads(f.read_text())["idempotency_key"] for f in files] == [key]
        con = duckdb.connect(str(erp_db))
        rows = con.sql("SELECT notification_key, batch FROM quality_notifications").fetchall()
        con.close()
        assert rows == [(key, ctx["batch"])]
        import psycopg

        with psycopg.connect(postgres) as pg:
            assert pg.execute("SELECT material_lot FROM quality_notifications").fetchall() == [
                (lot,)
            ]
    finally:
        listener.loop_stop()
        listener.disconnect()
        hook.close()
        smtp.close()
        server.terminate()
        server.communicate(timeout=30)


def test_unacknowledged_alerts_escalate_once_acknowledged_ones_do_not(
    tmp_path, plant_tables
) -> None:
    plant, tables = plant_tables
    db = Database(tmp_path / "f.duckdb", [ALERTS])
    db.create()
    left_open = _alert(plant, cause="failure_risk")
    handled = _alert(plant, cause="failure_risk", alert_id="M01:failure_risk:x", machine_id="M01")
    db.upsert({"alerts": [left_open, handled]})
    with db.write() as con:
        con.execute(
            "UPDATE alerts SET status = 'acknowledged' WHERE alert_id = 'M01:failure_risk:x'"
        )
    routing = Routing.model_validate(
        {
            "destinations": {
                "maint": {"kind": "erp_file", "path": str(tmp_path / "maint")},
                "boss": {"kind": "erp_file", "path": str(tmp_path / "boss")},
            },
            "roles": {"maintenance": ["maint"], "supervisor": ["boss"]},
            "rules": [{"causes": ["failure_risk"], "roles": ["maintenance"]}],
            "escalation": {"after_s": 600, "roles": ["supervisor"]},
        }
    )
    outbox = Outbox(tmp_path / "outbox.sqlite")
    dispatcher = Dispatcher(outbox, routing, db_path=db.path)
    sent_at = T0
    from floorsight.alerts.notify import notifications

    for n in notifications(pl.concat([left_open, handled]), routing, tables):
        outbox.enqueue(n.destination, n.key, n.payload, now=sent_at)
    assert dispatcher.escalate(now=sent_at + timedelta(seconds=599)) == 0  # not yet
    assert dispatcher.escalate(now=sent_at + timedelta(seconds=601)) == 1
    assert dispatcher.escalate(now=sent_at + timedelta(seconds=900)) == 0  # once only
    dispatcher.step(now=sent_at + timedelta(seconds=901))
    escalated = [json.loads(p.read_text()) for p in (tmp_path / "boss").glob("*.json")]
    assert [(e["event"], e["alert_id"], e["roles"]) for e in escalated] == [
        ("escalated", left_open["alert_id"][0], ["supervisor"])
    ]
    # the escalation is in the alert's audit trail; the alert stays open
    from floorsight.alerts.lifecycle import history

    trail = history(db.path, left_open["alert_id"][0])
    assert trail["action"].to_list() == ["escalated"] and "supervisor" in trail["comment"][0]
    assert history(db.path, "M01:failure_risk:x").height == 0
    # a failure risk carries the work orders planned on the machine from the alert on
    planned = escalated[0]["context"]["cascade"]["work_orders"]
    raised = left_open["raised_at"][0]
    assert planned == [
        w.work_order
        for w in sorted(plant.work_orders, key=lambda w: w.start)
        if w.machine_id == "M02" and w.end > raised
    ]


def test_a_bad_routing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match=r"missing\.toml"):
        load_routing(tmp_path / "missing.toml")


class _AuthSmtp:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that takes mail only after AUTH with the
    given login and password."""

    def __init__(self, login: str, password: str) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        received = self.received = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd)
                received.append((session.auth_data.login.decode(), envelope.rcpt_tos))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == login.encode()
                and auth_data.password == password.encode()
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=_port(),
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,  # plain text on loopback only: the sender refuses it elsewhere
        )
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.controller.port}"

    def close(self) -> None:
        self.controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_email_logs_in_with_a_password_from_the_environment(tmp_path, monkeypatch) -> None:
    from floorsight.alerts.destinations import senders

    smtp = _AuthSmtp("floorsight", "smtp-pw-71")
    mail = {"kind": "email", "address": "quality@plant.example", "user": "floorsight"}
    routing = Routing.model_validate(
        {
            "destinations": {
                "mail": {**mail, "url": smtp.url, "password_env": "FLOORSIGHT_SMTP_PASSWORD"}
            }
        }
    )
    alert = {"severity": "warning", "type": "anomaly", "machine_id": "M01", "event": "opened"}
    try:
        monkeypatch.setenv("FLOORSIGHT_SMTP_PASSWORD", "smtp-pw-71")
        box = Outbox(tmp_path / "o.sqlite")
        box.enqueue("mail", "M01:anomaly:1/opened", alert)
        assert Dispatcher(box, routing).step().delivered == 1
        assert smtp.received == [("floorsight", ["quality@plant.example"])]
        # a wrong password: refused by the server, kept in the outbox
        monkeypatch.setenv("FLOORSIGHT_SMTP_PASSWORD", "wrong")
        box.enqueue("mail", "M01:anomaly:2/opened", alert)
        report = Dispatcher(box, routing).step()
        assert (report.delivered, report.failed, report.pending) == (0, 1, 1)
        assert "SMTPAuthenticationError" in box.failing()["mail"]["last_error"]
    finally:
        smtp.close()
    # a login to a server elsewhere needs TLS: the password is never sent in plain text
    remote = {**mail, "url": "smtp://mail.plant.example:25", "password_env": "X"}
    monkeypatch.setenv("X", "pw")
    with pytest.raises(RoutingError, match=r"destination 'mail'.*needs TLS"):
        senders(Routing.model_validate({"destinations": {"mail": remote}}))
    ok = {**remote, "starttls": True}
    assert "mail" in senders(Routing.model_validate({"destinations": {"mail": ok}}))
