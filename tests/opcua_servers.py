"""An OPC-UA server of a plant that is not floorsight's, for the OPC-UA client tests.

:class:`AcmeServer` runs an asyncua server in a thread of its own (its own event loop) on
127.0.0.1, with a namespace and names floorsight never uses (``urn:acme:press-shop``,
``Objects/PressShop/Press7/...``), optionally only a secure endpoint, a user login, extra
namespaces registered first (so its namespace index differs), with or without history. Tests
write values with :meth:`AcmeServer.write` (any source/server timestamps and status).

:func:`serving_plant` runs the simulator's own :class:`PlantServer` the same way, for the tests
of what it serves.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

from floorsight.simulators.opcua_server import PlantServer

ACME_NS = "urn:acme:press-shop"
#: machine -> variable -> (initial value, type, unit or None)
MACHINES: dict[str, dict[str, tuple[object, ua.VariantType, str | None]]] = {
    "Press7": {
        "Force": (0.0, ua.VariantType.Double, "kN"),
        "OilTemp": (0.0, ua.VariantType.Float, "°C"),
        "Strokes": (0, ua.VariantType.UInt32, None),
        "State": (0, ua.VariantType.Int32, None),
        "GoodParts": (0, ua.VariantType.Int64, None),
        "RejectCount": (0, ua.VariantType.Int64, None),
        "Recipe": ("", ua.VariantType.String, None),
    },
    "Press 8/B": {
        "Force": (0.0, ua.VariantType.Double, "kN"),
        "Cycles": (0, ua.VariantType.UInt32, None),  # of DataType Counter (a UInt32)
    },
}


def free_url(path: str = "acme/") -> str:
    """An endpoint URL on a free port of 127.0.0.1, with ``path``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"opc.tcp://127.0.0.1:{s.getsockname()[1]}/{path}"


@contextmanager
def serving_plant(plant, start: datetime, speed: float) -> Iterator[str]:
    """The simulator's :class:`PlantServer` of ``plant`` from ``start`` at ``speed``, in a thread
    of its own on a free port of 127.0.0.1 for the ``with`` body (listening within 60 s); yields
    its URL and stops the server after the body."""
    url = free_url(path="")
    ready, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        server = PlantServer(plant, url, start, speed)
        await server.start_server()
        ready.set()
        try:
            await server.run(stop, echo=lambda _: None)
        finally:
            await server.stop()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(60), "the simulator's OPC-UA server did not start"
    try:
        yield url
    finally:
        stop.set()
        thread.join(30)


class _Users(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


class AcmeServer:
    """The press shop's server, started with :meth:`start` (blocks until it listens)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        secure_only: bool = False,
        users: dict[str, str] | None = None,
        cert_dir: Path | None = None,
        extra_namespaces: tuple[str, ...] = (),
        history: bool = True,
        advertise_history: bool | None = None,
    ) -> None:
        self.url = url or free_url()
        self.secure_only, self.users, self.cert_dir = secure_only, users, cert_dir
        self.extra_namespaces, self.history = extra_namespaces, history
        # a server without history: its AccessLevel says so (or, advertised, it refuses)
        self.advertise_history = history if advertise_history is None else advertise_history
        self.ns = 0
        self.nodes: dict[tuple[str, str], ua.NodeId] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._up = threading.Event()
        self._done: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.server: Server | None = None
        self._own_items = 0

    # -- control from the test's thread ------------------------------------------------------
    def start(self) -> AcmeServer:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._up.wait(30) or self.error is not None:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        if self._loop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> AcmeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run ``fn()`` on the server's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout=30)

    def write(
        self,
        machine: str,
        name: str,
        value: object,
        *,
        source_ts: datetime | None = None,
        server_ts: datetime | None = None,
        status: int = ua.StatusCodes.Good,
        no_source_ts: bool = False,
    ) -> None:
        """Write one value as a device would (its own timestamps and status)."""
        vtype = MACHINES[machine][name][1]
        now = datetime.now(tz=UTC)
        dv = ua.DataValue(
            Value=ua.Variant(value, vtype) if value is not None else ua.Variant(),
            StatusCode=ua.StatusCode(status),
            SourceTimestamp=None if no_source_ts else (source_ts or now),
            ServerTimestamp=server_ts or now,
        )
        node_id = self.nodes[(machine, name)]

        async def _write() -> None:
            assert self.server is not None
            await self.server.iserver.write_attribute_value(node_id, dv)

        self.call(_write)

    def monitored(self) -> int:
        """How many monitored items clients' subscriptions have (the server's own history
        subscription left out)."""
        return self.call(self._count_monitored) - self._own_items

    async def _count_monitored(self) -> int:
        assert self.server is not None
        subs = self.server.iserver.subscription_service.subscriptions
        return sum(len(s.monitored_item_srv._monitored_items) for s in subs.values())

    def node_text(self, machine: str, name: str) -> str:
        """The node id of a variable with the namespace by URI."""
        return f"nsu={ACME_NS};s={self.nodes[(machine, name)].Identifier}"

    # -- the server's thread -------------------------------------------------------------------
    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:
            self.error = e
            self._up.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        server = Server(user_manager=_Users(self.users) if self.users else None)
        self.server = server
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("ACME press shop")
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self.secure_only:
            cert_dir = self.cert_dir or Path("pki")
            cert_dir.mkdir(parents=True, exist_ok=True)
            key, cert = cert_dir / "acme-key.pem", cert_dir / "acme-cert.der"
            await setup_self_signed_certificate(
                key,
                cert,
                "urn:acme:press-shop:server",
                socket.gethostname(),
                [ExtendedKeyUsageOID.SERVER_AUTH],
                {"organizationName": "ACME"},
            )
            await server.set_application_uri("urn:acme:press-shop:server")
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        for uri in self.extra_namespaces:
            await server.register_namespace(uri)
        self.ns = ns = await server.register_namespace(ACME_NS)
        shop = await server.nodes.objects.add_object(ua.NodeId("PressShop", ns), f"{ns}:PressShop")
        for machine, variables in MACHINES.items():
            obj = await shop.add_object(ua.NodeId(f"PS.{machine}", ns), f"{ns}:{machine}")
            for name, (initial, vtype, unit) in variables.items():
                var = await obj.add_variable(
                    ua.NodeId(f"PS.{machine}.{name}", ns),
                    f"{ns}:{name}",
                    initial,
                    varianttype=vtype,
                    # the standard's Counter, a subtype of UInt32, as counters often are
                    datatype=ua.NodeId(ua.ObjectIds.Counter) if name == "Cycles" else None,
                )
                if unit is not None:
                    eu = ua.EUInformation(
                        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                        UnitId=-1,
                        DisplayName=ua.LocalizedText(unit),
                        Description=ua.LocalizedText(unit),
                    )
                    await var.add_property(
                        ua.NodeId(f"PS.{machine}.{name}.EU", ns),
                        ua.QualifiedName("EngineeringUnits", 0),
                        eu,
                        datatype=ua.ObjectIds.EUInformation,
                    )
                self.nodes[(machine, name)] = var.nodeid
        await server.start()
        if not self.history:  # as a PLC's server: HistoryRead is not supported

            async def refuse(params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
                unsupported = ua.StatusCode(ua.StatusCodes.BadHistoryOperationUnsupported)
                return [ua.HistoryReadResult(StatusCode=unsupported) for _ in params.NodesToRead]

            server.iserver.history_manager.read_history = refuse
        if self.history:
            nodes = [server.get_node(n) for n in self.nodes.values()]
            await server.historize_node_data_change(nodes, period=None, count=100_000)
        for node_id in self.nodes.values():  # a hold flag or a recipe a client may write
            node = server.get_node(node_id)
            levels = ua.AccessLevel.CurrentRead, ua.AccessLevel.CurrentWrite
            if self.advertise_history:
                levels += (ua.AccessLevel.HistoryRead,)
            bits = ua.Variant(ua.AccessLevel.to_bitfield(levels), ua.VariantType.Byte)
            for attribute in (ua.AttributeIds.AccessLevel, ua.AttributeIds.UserAccessLevel):
                await node.write_attribute(attribute, ua.DataValue(bits))
        self._own_items = await self._count_monitored()
        self._up.set()
        try:
            await self._done.wait()
        finally:
            await server.stop()
