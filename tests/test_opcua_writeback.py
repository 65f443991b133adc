"""Alerts written back to the plant's own OPC-UA nodes, on a server floorsight does not own.

The node-opcua test server (:mod:`tests.node_opcua`) offers only Basic256Sha256 with
SignAndEncrypt and a user login; the routing file names, per machine, the nodes an alert writes
(``AlarmMessage``, a String, and ``HoldRequest``, a Boolean). Delivery goes through the real
Dispatcher and outbox; what the server holds afterwards is read back with asyncua.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest

from floorsight.alerts import ALERT_SCHEMA
from floorsight.alerts.destinations import DeliveryError, sender
from floorsight.alerts.dispatcher import Dispatcher
from floorsight.alerts.outbox import Outbox
from floorsight.alerts.routing import Routing, RoutingError, load_routing
from floorsight.opcua_client import (
    OpcuaSecurity,
    ensure_client_certificate,
)
from tests.node_opcua import (
    NodeOpcuaServer,
    client_security,
    node,
    read_values,
    start_server,
    stop_server,
)

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PASSWORD_ENV = "FLOORSIGHT_OPCUA_PASSWORD"
T = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
TABLES = {"machines": pl.DataFrame({"machine_id": ["Press07", "Press08"], "line": ["H2", "H2"]})}


def _alert(machine: str = "Press07", cause: str = "anomaly", cleared: bool = False):
    row = {
        "alert_id": f"{machine}:{cause}:20260302T083000Z",
        "machine_id": machine,
        "cause": cause,
        "severity": "warning",
        "status": "open",
        "first_seen": T,
        "raised_at": T + timedelta(minutes=1),
        "last_seen": T + timedelta(minutes=2),
        "cleared_at": T + timedelta(minutes=9) if cleared else None,
        "score": 0.9999,
        "windows": 3,
        "reason": f"{machine}: OilTemp far from its usual level",
        "evidence": "OilTemp mean 71.5 vs 44.7",
        "work_order": "",
        "product": "",
        "material_lot": "",
    }
    return pl.DataFrame([row], schema=ALERT_SCHEMA)


def _routing(server: NodeOpcuaServer, **extra) -> Routing:
    hmi = {
        "kind": "opcua",
        "url": server.url,
        "security": "Basic256Sha256,SignAndEncrypt",
        "user": server.user,
        "password_env": PASSWORD_ENV,
        "nodes": {
            "Press07": {
                "alarm_text": node("Press07.AlarmMessage"),
                "hold": node("Press07.HoldRequest"),
            }
        },
    } | extra
    return Routing.model_validate(
        {
            "destinations": {"press_hmi": hmi},
            "roles": {"quality": ["press_hmi"]},
            "rules": [{"causes": ["anomaly", "sensor"], "roles": ["quality"]}],
        }
    )


@pytest.fixture
def trusted(node_opcua, tmp_path, monkeypatch) -> tuple[NodeOpcuaServer, OpcuaSecurity]:
    """The server, with floorsight's generated client certificate trusted, and the login."""
    monkeypatch.setenv("FLOORSIGHT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(PASSWORD_ENV, node_opcua.password)
    cert = ensure_client_certificate()
    node_opcua.trust(cert.cert)
    security = client_security(node_opcua, cert)
    return node_opcua, security


def test_an_alert_writes_the_machines_own_nodes_through_the_outbox(trusted, tmp_path) -> None:
    server, security = trusted
    names = ["Press07.AlarmMessage", "Press07.HoldRequest", "Press08.HoldRequest"]
    assert read_values(server, security, names) == dict(zip(names, ["", False, False], strict=True))
    dispatcher = Dispatcher(Outbox(tmp_path / "outbox.sqlite"), _routing(server))

    assert dispatcher.queue(_alert(), TABLES) == 1
    report = dispatcher.step()
    assert (report.delivered, report.failed, report.pending) == (1, 0, 0)
    after = read_values(server, security, names)
    assert after == {
        "Press07.AlarmMessage": "WARNING anomaly: Press07: OilTemp far from its usual level",
        "Press07.HoldRequest": True,
        "Press08.HoldRequest": False,  # another machine's node is left alone
    }

    # the condition clears: the text says so, the hold stays until a person releases it
    assert dispatcher.queue(_alert(cleared=True), TABLES) == 1  # "opened" is already sent
    assert dispatcher.step().delivered == 1
    cleared = read_values(server, security, names)
    assert cleared["Press07.AlarmMessage"] == "cleared anomaly (Press07:anomaly:20260302T083000Z)"
    assert cleared["Press07.HoldRequest"] is True


def test_a_sensor_alert_writes_the_text_and_no_hold(trusted, tmp_path) -> None:
    server, security = trusted
    dispatcher = Dispatcher(Outbox(tmp_path / "outbox.sqlite"), _routing(server))
    dispatcher.queue(_alert(cause="sensor"), TABLES)
    assert dispatcher.step().delivered == 1
    got = read_values(server, security, ["Press07.AlarmMessage", "Press07.HoldRequest"])
    assert got == {
        "Press07.AlarmMessage": "WARNING sensor: Press07: OilTemp far from its usual level",
        "Press07.HoldRequest": False,
    }


def test_a_machine_without_nodes_is_accepted_with_a_warning_naming_it(
    trusted, tmp_path, caplog
) -> None:
    server, security = trusted
    dispatcher = Dispatcher(Outbox(tmp_path / "outbox.sqlite"), _routing(server))
    dispatcher.queue(_alert(machine="Press08"), TABLES)
    with caplog.at_level(logging.WARNING, logger="floorsight.alerts"):
        report = dispatcher.step()
    assert (report.delivered, report.failed, report.pending) == (1, 0, 0)
    assert "names no nodes for machine 'Press08'" in caplog.text
    got = read_values(server, security, ["Press08.AlarmMessage", "Press08.HoldRequest"])
    assert got == {"Press08.AlarmMessage": "", "Press08.HoldRequest": False}


def test_a_refused_login_is_a_delivery_error_with_the_servers_status(trusted, monkeypatch) -> None:
    server, _ = trusted
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    send = sender(_routing(server).destinations["press_hmi"])
    payload = {
        "machine_id": "Press07",
        "line": "H2",
        "event": "opened",
        "type": "anomaly",
        "severity": "warning",
        "reason": "x",
        "alert_id": "a",
    }
    with pytest.raises(DeliveryError, match="BadUserAccessDenied") as refused:
        send("a/opened", payload)
    assert refused.value.reason == "BadUserAccessDenied"


def test_an_untrusted_certificate_fails_and_is_retried_until_the_admin_trusts_it(
    node_opcua, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FLOORSIGHT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(PASSWORD_ENV, node_opcua.password)
    outbox_path = tmp_path / "outbox.sqlite"
    dispatcher = Dispatcher(Outbox(outbox_path), _routing(node_opcua))
    dispatcher.queue(_alert(), TABLES)

    report = dispatcher.step()
    assert (report.delivered, report.failed, report.pending) == (0, 1, 1)
    rejected = list((node_opcua.pki / "rejected").iterdir())
    assert len(rejected) == 1  # the server refused floorsight's certificate and kept it aside
    with sqlite3.connect(outbox_path) as con:
        (error,) = con.execute("SELECT last_error FROM outbox").fetchone()
    cert = ensure_client_certificate()
    # the error names the certificate to trust (node-opcua closes the channel without a status)
    assert error.startswith("DeliveryError: ") and f"client certificate {cert.cert}" in error
    node_opcua.trust(cert.cert)
    later = datetime.now(tz=UTC) + timedelta(hours=1)  # past any backoff
    assert dispatcher.step(now=later).delivered == 1
    security = client_security(node_opcua, cert)
    assert read_values(node_opcua, security, ["Press07.HoldRequest"]) == {
        "Press07.HoldRequest": True
    }


def test_a_server_that_is_down_gets_the_alert_once_it_is_back(trusted, tmp_path) -> None:
    server, security = trusted
    dispatcher = Dispatcher(Outbox(tmp_path / "outbox.sqlite"), _routing(server))
    stop_server(server)
    dispatcher.queue(_alert(), TABLES)
    report = dispatcher.step()
    assert (report.delivered, report.failed, report.pending) == (0, 1, 1)
    with sqlite3.connect(tmp_path / "outbox.sqlite") as con:
        (error,) = con.execute("SELECT last_error FROM outbox").fetchone()
    assert error.startswith("DeliveryError: unreachable: ")

    port = urlsplit(server.url).port
    back = start_server(server.pki.parent, server.user, port, server.password)
    try:
        later = datetime.now(tz=UTC) + timedelta(hours=1)  # past any backoff
        assert dispatcher.step(now=later).delivered == 1
        assert read_values(back, security, ["Press07.HoldRequest"]) == {"Press07.HoldRequest": True}
    finally:
        stop_server(back)


def test_routing_file_nodes_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(
        """
[destinations.press_hmi]
kind = "opcua"
url = "opc.tcp://127.0.0.1:4840/acme"
security = "Basic256Sha256,SignAndEncrypt"
user = "press-operator"
password_env = "FLOORSIGHT_OPCUA_PASSWORD"
[destinations.press_hmi.nodes.Press07]
alarm_text = "nsu=urn:acme:press-shop;s=Press07.AlarmMessage"
hold = "nsu=urn:acme:press-shop;s=Press07.HoldRequest"
"""
    )
    nodes = load_routing(path).destinations["press_hmi"].nodes
    assert nodes is not None
    assert nodes["Press07"].hold == "nsu=urn:acme:press-shop;s=Press07.HoldRequest"

    path.write_text(
        '[destinations.press_hmi]\nkind = "opcua"\nurl = "opc.tcp://h:4840"\n'
        '[destinations.press_hmi.nodes.Press07]\nhold = "Press07 hold flag"\n'
    )
    with pytest.raises(RoutingError, match=r"nodes\.Press07.*is no OPC-UA node id"):
        load_routing(path)
    path.write_text(
        '[destinations.press_hmi]\nkind = "opcua"\nurl = "opc.tcp://h:4840"\n'
        "[destinations.press_hmi.nodes.Press07]\n"
    )
    with pytest.raises(RoutingError, match="alarm_text node, its hold node, or both"):
        load_routing(path)
    path.write_text(
        '[destinations.hook]\nkind = "webhook"\nurl = "http://h/x"\n'
        '[destinations.hook.nodes.Press07]\nhold = "ns=2;s=Press07.Hold"\n'
    )
    with pytest.raises(RoutingError, match="a webhook destination takes no nodes"):
        load_routing(path)


def test_without_the_servers_packages_its_tests_skip_here_and_fail_in_ci(
    tmp_path, monkeypatch
) -> None:
    import tests.node_opcua as fixture

    monkeypatch.setattr(fixture, "SERVER_DIR", tmp_path / "nodeopcua")  # no node_modules
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="node_modules is missing"):
        fixture.start_server(tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"cannot run in CI: .*node_modules"):
        fixture.start_server(tmp_path)


def test_the_test_server_offers_only_basic256sha256_signandencrypt(node_opcua) -> None:
    from floorsight.opcua_client import OpcuaConnectError, connect

    async def endpoints() -> set[tuple[str, str]]:
        from asyncua import Client

        found = await Client(node_opcua.url).connect_and_get_server_endpoints()
        return {(e.SecurityPolicyUri.rpartition("#")[2], e.SecurityMode.name) for e in found}

    assert asyncio.run(endpoints()) == {("Basic256Sha256", "SignAndEncrypt")}
    with pytest.raises(OpcuaConnectError, match="BadSecurityModeRejected"):
        asyncio.run(connect(node_opcua.url, OpcuaSecurity()))


def test_a_destinations_unknown_security_policy_stops_the_start_naming_it(tmp_path) -> None:
    from floorsight.alerts.destinations import senders

    hmi = {"kind": "opcua", "url": "opc.tcp://127.0.0.1:4840", "security": "Basic999,Sign"}
    with pytest.raises(RoutingError, match=r"destination 'hmi': .*unknown policy 'Basic999'"):
        senders(Routing.model_validate({"destinations": {"hmi": hmi}}))
