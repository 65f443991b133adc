"""The plant over OPC-UA: a real asyncua server and client over TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta

import polars as pl
import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from floorsight.simulators import build_plant
from floorsight.simulators.opcua_server import NAMESPACE, PlantServer
from tests.conftest import T0

pytestmark = pytest.mark.e2e


def _url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"opc.tcp://127.0.0.1:{s.getsockname()[1]}/floorsight/"


def _plant():
    return build_plant(3, start=T0, horizon=timedelta(hours=1), seed=1)


async def _serving(plant, url, stop, **kw) -> tuple[PlantServer, asyncio.Task]:
    server = PlantServer(plant, url, T0 + timedelta(minutes=5), speed=60, **kw)
    await server.start_server()
    return server, asyncio.create_task(server.run(stop, echo=lambda _: None))


async def _until(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.05)


def test_browse_subscribe_and_write_back() -> None:
    plant = _plant()
    url = _url()

    async def main() -> None:
        stop = threading.Event()
        server, task = await _serving(plant, url, stop)
        try:
            async with Client(url) as client:
                ns = await client.get_namespace_index(NAMESPACE)
                objects = client.nodes.objects
                # browse: Objects/Plant/<line>/<machine>/<sensor> with engineering units
                for m in plant.machines:
                    machine = await objects.get_child(
                        [f"{ns}:Plant", f"{ns}:{m.line}", f"{ns}:{m.machine_id}"]
                    )
                    names = {
                        (await c.read_browse_name()).Name for c in await machine.get_children()
                    }
                    assert {s.name for s in m.sensors} | {"State", "QualityHold"} <= names
                    for s in m.sensors:
                        var = await machine.get_child(f"{ns}:{s.name}")
                        eu = await (await var.get_child("0:EngineeringUnits")).read_value()
                        assert eu.DisplayName.Text == s.unit
                # subscribe to M01's sensors: data changes with simulated source timestamps
                m01 = plant.machine("M01")
                nodes = [client.get_node(f"ns={ns};s=L1.M01.{s.name}") for s in m01.sensors]
                changes: list[tuple[str, ua.DataValue]] = []

                class Handler:
                    def datachange_notification(self, node, val, data) -> None:
                        changes.append((node.nodeid.Identifier, data.monitored_item.Value))

                sub = await client.create_subscription(50, Handler())
                await sub.subscribe_data_change(nodes)

                async def enough() -> bool:
                    return len({n for n, dv in changes if dv.SourceTimestamp > T0}) == len(nodes)

                await _until(enough)
                received = [
                    (n.split(".")[-1], dv.SourceTimestamp, dv.Value.Value)
                    for n, dv in changes
                    if dv.SourceTimestamp > T0
                ]
                ts = [t for _, t, _ in received]
                expected = plant.readings(min(ts), max(ts) + timedelta(microseconds=1)).filter(
                    pl.col("machine_id") == "M01"
                )
                lookup = {(r[1], r[2]): r[3] for r in expected.iter_rows()}
                for sensor, t, value in received:
                    assert lookup[(sensor, t)] == pytest.approx(value)
                # machine signals: the PackML state number and the good-part counter
                state = await client.get_node(f"ns={ns};s=L1.M01.State").read_data_value()
                assert state.Value.VariantType is ua.VariantType.Int32
                codes = plant.state_codes("M01").filter(pl.col("ts") <= state.SourceTimestamp)
                assert state.Value.Value == codes["code"][-1] and state.Value.Value in {6, 4, 2}
                good = await client.get_node(f"ns={ns};s=L1.M01.GoodCount").read_data_value()
                made = plant.parts.filter(
                    (pl.col("machine_id") == "M01") & (pl.col("ts") <= good.SourceTimestamp)
                )
                assert good.Value.Value == made["good"].sum()
                # write-back: a client sets a quality hold and an alarm text
                hold = client.get_node(f"ns={ns};s=L1.M01.QualityHold")
                text = client.get_node(f"ns={ns};s=L1.M01.AlarmText")
                await hold.write_value(ua.Variant(True, ua.VariantType.Boolean))
                await text.write_value(ua.Variant("bore drifting: hold WO", ua.VariantType.String))
                assert await hold.read_value() is True
                assert await text.read_value() == "bore drifting: hold WO"
            backs = await server.write_backs()
            assert backs["M01"] == {"QualityHold": True, "AlarmText": "bore drifting: hold WO"}
            assert backs["M02"] == {"QualityHold": False, "AlarmText": ""}
        finally:
            stop.set()
            await task
            await server.stop()

    asyncio.run(main())


def test_username_and_password() -> None:
    plant = _plant()
    url = _url()

    async def main() -> None:
        stop = threading.Event()
        server, task = await _serving(plant, url, stop, users={"quality": "s3cret"})
        try:
            bad = Client(url)
            bad.set_user("quality")
            bad.set_password("wrong")
            with pytest.raises(ua.UaError):
                async with bad:
                    pass
            anonymous = Client(url)
            with pytest.raises(ua.UaError):
                async with anonymous:
                    pass
            good = Client(url)
            good.set_user("quality")
            good.set_password("s3cret")
            async with good:
                ns = await good.get_namespace_index(NAMESPACE)
                assert await good.get_node(f"ns={ns};s=L1.M01.QualityHold").read_value() is False
        finally:
            stop.set()
            await task
            await server.stop()

    asyncio.run(main())


def test_basic256sha256_sign_and_encrypt(tmp_path) -> None:
    plant = _plant()
    url = _url()

    async def main() -> None:
        stop = threading.Event()
        server, task = await _serving(plant, url, stop, secure=True, cert_dir=tmp_path / "server")
        try:
            key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
            await setup_self_signed_certificate(
                key,
                cert,
                "urn:floorsight:test-client",
                socket.gethostname(),
                [ExtendedKeyUsageOID.CLIENT_AUTH],
                {"commonName": "test client"},
            )
            plain = Client(url)
            with pytest.raises((ua.UaError, ConnectionError, TimeoutError)):
                async with plain:
                    pass
            client = Client(url)
            client.application_uri = "urn:floorsight:test-client"
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                str(cert),
                str(key),
                mode=ua.MessageSecurityMode.SignAndEncrypt,
            )
            async with client:
                ns = await client.get_namespace_index(NAMESPACE)
                node = client.get_node(f"ns={ns};s=L1.M01.AlarmText")
                await node.write_value(ua.Variant("encrypted hello", ua.VariantType.String))
                assert await node.read_value() == "encrypted hello"
        finally:
            stop.set()
            await task
            await server.stop()

    asyncio.run(main())


def test_cli_serves_until_ctrl_c_and_logs_write_backs(tmp_path) -> None:
    url = _url()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "simulate", "--opcua", url),
            *("--machines", "3", "--hours", "1", "--speed", "10", "--seed", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    async def client() -> tuple[float, str]:
        async with asyncio.timeout(30):
            while True:
                try:
                    async with Client(url) as c:
                        ns = await c.get_namespace_index(NAMESPACE)
                        value = await c.get_node(f"ns={ns};s=L2.M03.part_weight_g").read_value()
                        await c.get_node(f"ns={ns};s=L2.M03.AlarmText").write_value("check mould")
                        await asyncio.sleep(0.5)  # a few ticks of the server loop
                        state = await c.get_node(f"ns={ns};s=L2.M03.State").read_value()
                        return value, state
                except (OSError, ua.UaError):
                    await asyncio.sleep(0.2)

    try:
        value, state = asyncio.run(client())
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert state in {6, 4, 2, 9, 11}  # a PackML state number (Execute, Idle, Stopped, ...)
    assert value == 0.0 or 40 < value < 70  # a part weight once the first reading arrived
    assert "write-back: M03.AlarmText = 'check mould'" in out
