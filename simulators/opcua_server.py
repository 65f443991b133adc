"""The plant as an OPC-UA server (asyncua), in real time or faster.

Address space (namespace ``urn:floorsight:plant``, index looked up at run time)::

    Objects/Plant/<line>/<machine>/<sensor>       Double, EngineeringUnits property, source
                                                  timestamp = the reading's simulated time
    Objects/Plant/<line>/<machine>/State          Int32: PackML state number (6 Execute, 4 Idle,
                                                  2 Stopped, 9 Aborted, 11 Held; see
                                                  ``plant.PACKML_STATE``), no EngineeringUnits
    Objects/Plant/<line>/<machine>/GoodCount      Int64: good parts since the plant's start
    Objects/Plant/<line>/<machine>/ScrapCount     Int64: scrapped parts since the plant's start
    Objects/Plant/<line>/<machine>/WorkOrder      String (also Product, MaterialLot)
    Objects/Plant/<line>/<machine>/QualityHold    Boolean, writable by clients (write-back)
    Objects/Plant/<line>/<machine>/AlarmText      String, writable by clients (write-back)

Node ids are strings: ``ns=<idx>;s=<line>.<machine>.<name>`` (``Plant`` and ``<line>`` and
``<line>.<machine>`` for the folders), e.g. ``ns=2;s=L1.M01.vibration_mm_s``. The browse path
is the stable contract. State, GoodCount and ScrapCount change when the machine's state changes
and when a part is made, each with that moment's simulated time as its source timestamp (the
pipeline's OPC-UA source maps them to machine signals). By default each tick writes the latest
reading of every sensor (cheap,
enough for a dashboard). With ``every_sample`` each reading is written in time order, and the
sensor variables keep a history (HistoryRead, the last ``history_count`` values in memory):
a client subscribing with a queue gets every sample, and after a reconnect reads what it missed.
``backfill_from`` makes a (re)started server put the readings since that time into the history
first, as an edge device that buffered them while its OPC-UA server was down would.

Options: username/password (anonymous is then refused) and Basic256Sha256 (Sign and
SignAndEncrypt) with a self-signed certificate generated on first use.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

from floorsight.records import Signals

NAMESPACE = "urn:floorsight:plant"
WRITABLE = {
    "QualityHold": (False, ua.VariantType.Boolean),
    "AlarmText": ("", ua.VariantType.String),
}
STATUS = {
    "WorkOrder": ("work_order", ua.VariantType.String),
    "Product": ("product", ua.VariantType.String),
    "MaterialLot": ("material_lot", ua.VariantType.String),
}
#: machine signals: variable -> (signal kind, type, column of ``status_at``)
SIGNALS = {
    "State": ("state", ua.VariantType.Int32, "state"),
    "GoodCount": ("good_count", ua.VariantType.Int64, "good_parts"),
    "ScrapCount": ("scrap_count", ua.VariantType.Int64, "scrap_parts"),
}
#: PackML numbers of ``status_at`` states, for a plant without ``signals`` (a recorded one)
PACKML_OF_STATE = {"running": 6, "idle": 4, "setup": 2, "down": 11}
log = logging.getLogger(__name__)


class _Users(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


class PlantServer:
    """Serves ``plant`` (anything with ``machines``, ``stream`` and ``status_at``) over OPC-UA."""

    def __init__(
        self,
        plant,
        url: str,
        start: datetime,
        speed: float = 1.0,
        end: datetime | None = None,
        users: dict[str, str] | None = None,
        secure: bool = False,
        cert_dir: Path | None = None,
        tick_s: float = 0.2,
        every_sample: bool = False,
        history_count: int = 100_000,
        backfill_from: datetime | None = None,
    ) -> None:
        self.plant, self.url, self.start, self.speed, self.end = plant, url, start, speed, end
        self.users, self.secure, self.cert_dir, self.tick_s = users, secure, cert_dir, tick_s
        self.every_sample, self.history_count = every_sample, history_count
        self.backfill_from = backfill_from
        self.server = Server(user_manager=_Users(users) if users else None)
        self.ns = 0
        self.sensors: dict[tuple[str, str], ua.NodeId] = {}
        self.status: dict[tuple[str, str], ua.NodeId] = {}
        self.signal_nodes: dict[tuple[str, str], ua.NodeId] = {}  # (machine, signal kind)
        self.writable: dict[tuple[str, str], ua.NodeId] = {}
        self.sim_now = start

    async def start_server(self) -> None:
        s = self.server
        await s.init()
        s.set_endpoint(self.url)
        s.set_server_name("floorsight simulated plant")
        if self.users:
            s.set_identity_tokens([ua.UserNameIdentityToken])
        if self.secure:
            cert_dir = self.cert_dir or Path("pki")
            cert_dir.mkdir(parents=True, exist_ok=True)
            key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
            await setup_self_signed_certificate(
                key,
                cert,
                "urn:floorsight:simulator",
                socket.gethostname(),
                [ExtendedKeyUsageOID.SERVER_AUTH],
                {"countryName": "DE", "organizationName": "floorsight", "commonName": "plant"},
            )
            await s.set_application_uri("urn:floorsight:simulator")
            await s.load_certificate(cert)
            await s.load_private_key(key)
            s.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                ]
            )
        self.ns = await s.register_namespace(NAMESPACE)
        await self._build_address_space()
        await s.start()
        if self.every_sample:
            nodes = [s.get_node(n) for n in self.sensors.values()]
            await s.historize_node_data_change(nodes, period=None, count=self.history_count)
            if self.backfill_from is not None and self.backfill_from < self.start:
                await self._backfill(self.backfill_from, self.start)
        await self._write_status(self.start)
        if hasattr(self.plant, "signals"):
            await self._write_signals(self.plant.signals(self.start, self.start, initial=True))

    async def _build_address_space(self) -> None:
        ns = self.ns
        root = await self.server.nodes.objects.add_object(ua.NodeId("Plant", ns), f"{ns}:Plant")
        lines = {}
        for m in self.plant.machines:
            if m.line not in lines:
                lines[m.line] = await root.add_object(ua.NodeId(m.line, ns), f"{ns}:{m.line}")
            prefix = f"{m.line}.{m.machine_id}"
            node = await lines[m.line].add_object(ua.NodeId(prefix, ns), f"{ns}:{m.machine_id}")
            for sensor in m.sensors:
                var = await node.add_variable(
                    ua.NodeId(f"{prefix}.{sensor.name}", ns),
                    f"{ns}:{sensor.name}",
                    0.0,
                    varianttype=ua.VariantType.Double,
                )
                eu = ua.EUInformation(
                    NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                    UnitId=-1,
                    DisplayName=ua.LocalizedText(sensor.unit),
                    Description=ua.LocalizedText(sensor.unit),
                )
                await var.add_property(
                    ua.NodeId(f"{prefix}.{sensor.name}.EngineeringUnits", ns),
                    ua.QualifiedName("EngineeringUnits", 0),
                    eu,
                    datatype=ua.ObjectIds.EUInformation,
                )
                self.sensors[(m.machine_id, sensor.name)] = var.nodeid
            for name, (_, vtype) in STATUS.items():
                var = await node.add_variable(
                    ua.NodeId(f"{prefix}.{name}", ns), f"{ns}:{name}", "", varianttype=vtype
                )
                self.status[(m.machine_id, name)] = var.nodeid
            for name, (kind, vtype, _) in SIGNALS.items():
                var = await node.add_variable(
                    ua.NodeId(f"{prefix}.{name}", ns), f"{ns}:{name}", 0, varianttype=vtype
                )
                self.signal_nodes[(m.machine_id, kind)] = var.nodeid
            for name, (initial, vtype) in WRITABLE.items():
                var = await node.add_variable(
                    ua.NodeId(f"{prefix}.{name}", ns), f"{ns}:{name}", initial, varianttype=vtype
                )
                await var.set_writable()
                self.writable[(m.machine_id, name)] = var.nodeid

    async def _backfill(self, t0: datetime, t1: datetime) -> None:
        """Put the readings of ``[t0, t1)`` into the history without touching current values."""
        storage = self.server.iserver.history_manager.storage
        now = datetime.now(tz=UTC)
        frame = self.plant.readings(t0, t1).sort("ts")
        for machine_id, sensor, ts, value in frame.select(
            "machine_id", "sensor", "ts", "value"
        ).iter_rows():
            node = self.sensors.get((machine_id, sensor))
            if node is not None:
                dv = ua.DataValue(
                    Value=ua.Variant(float(value), ua.VariantType.Double),
                    SourceTimestamp=ts,
                    ServerTimestamp=now,
                )
                await storage.save_node_value(node, dv)

    async def _write_readings(self, frame: pl.DataFrame) -> None:
        now = datetime.now(tz=UTC)
        if self.every_sample:
            latest = frame.sort("ts")
        else:
            latest = frame.sort("ts").group_by("machine_id", "sensor").last()
        for machine_id, sensor, ts, value in latest.select(
            "machine_id", "sensor", "ts", "value"
        ).iter_rows():
            node = self.sensors.get((machine_id, sensor))
            if node is None:
                continue
            dv = ua.DataValue(
                Value=ua.Variant(float(value), ua.VariantType.Double),
                SourceTimestamp=ts,
                ServerTimestamp=now,
            )
            await self.server.write_attribute_value(node, dv)

    async def _write_status(self, at: datetime) -> None:
        now = datetime.now(tz=UTC)
        for row in self.plant.status_at(at).iter_rows(named=True):
            for name, (column, vtype) in STATUS.items():
                node = self.status[(row["machine_id"], name)]
                dv = ua.DataValue(
                    Value=ua.Variant(row[column], vtype), SourceTimestamp=at, ServerTimestamp=now
                )
                await self.server.write_attribute_value(node, dv)
            if not hasattr(self.plant, "signals"):  # a plant that only knows its status
                for kind, vtype, column in SIGNALS.values():
                    value = row[column]
                    value = PACKML_OF_STATE.get(value, 0) if kind == "state" else value
                    dv = ua.DataValue(
                        Value=ua.Variant(value, vtype), SourceTimestamp=at, ServerTimestamp=now
                    )
                    await self.server.write_attribute_value(
                        self.signal_nodes[(row["machine_id"], kind)], dv
                    )

    async def _write_signals(self, frame: pl.DataFrame) -> None:
        """Each state change and part of a ``plant.signals`` frame, in time order, with its own
        simulated time."""
        now = datetime.now(tz=UTC)
        vtypes = {kind: vtype for kind, vtype, _ in SIGNALS.values()}
        for machine_id, kind, ts, value in (
            frame.sort("ts").select("machine_id", "signal", "ts", "value").iter_rows()
        ):
            node = self.signal_nodes.get((machine_id, kind))
            if node is None:
                continue
            dv = ua.DataValue(
                Value=ua.Variant(int(value), vtypes[kind]), SourceTimestamp=ts, ServerTimestamp=now
            )
            await self.server.write_attribute_value(node, dv)

    async def write_backs(self) -> dict[str, dict[str, object]]:
        """What clients wrote: QualityHold and AlarmText per machine."""
        out: dict[str, dict[str, object]] = {}
        for (machine_id, name), node in self.writable.items():
            value = await self.server.get_node(node).read_value()
            out.setdefault(machine_id, {})[name] = value
        return out

    async def run(self, stop: threading.Event | None = None, echo=print) -> None:
        """Feed the plant's stream into the address space until its end or ``stop``."""
        seen = await self.write_backs()
        # a simulated plant's stream follows each frame with its machine signals (also while
        # no machine runs and no reading comes)
        signals = {"signals": True} if hasattr(self.plant, "signals") else {}
        stream = self.plant.stream(
            self.start, speed=self.speed, end=self.end, tick_s=0.05, **signals
        )
        for frame in stream:
            if stop is not None and stop.is_set():
                break
            if frame is None:
                await asyncio.sleep(0.05)
                continue
            if isinstance(frame, Signals):
                await self._write_signals(frame.frame)
                continue
            if frame.height:
                await self._write_readings(frame)
                self.sim_now = frame["ts"].max()
                await self._write_status(self.sim_now)
            now = await self.write_backs()
            for machine_id, values in now.items():
                for name, value in values.items():
                    if seen[machine_id][name] != value:
                        echo(f"write-back: {machine_id}.{name} = {value!r}")
            seen = now
            await asyncio.sleep(0)

    async def stop(self) -> None:
        await self.server.stop()


def serve(
    plant,
    url: str,
    start: datetime,
    speed: float = 1.0,
    end: datetime | None = None,
    users: dict[str, str] | None = None,
    secure: bool = False,
    cert_dir: Path | None = None,
    stop_event: threading.Event | None = None,
    echo=print,
    every_sample: bool = False,
) -> None:
    """Serve ``plant`` at ``url`` until its end or until ``stop_event`` is set (the CLI's way)."""

    async def main() -> None:
        server = PlantServer(
            plant, url, start, speed, end, users, secure, cert_dir, every_sample=every_sample
        )
        await server.start_server()
        try:
            await server.run(stop_event, echo)
        finally:
            await server.stop()

    asyncio.run(main())
