"""The node-opcua test server (``tests/nodeopcua/server.js``) as a pytest fixture.

An OPC-UA server floorsight does not own: node-opcua, with an address space of its own
(namespace ``urn:acme:press-shop``, ``Objects/Site/Hall2/Press07`` and ``Press08``), offering
only Basic256Sha256 with SignAndEncrypt and a user login. A client certificate is trusted the
way an admin trusts one (:meth:`NodeOpcuaServer.trust`); an unknown one is refused.

Needs ``node`` and ``tests/nodeopcua/node_modules`` (``make test`` runs ``npm ci`` there).
Without them the tests that use it skip, naming what is missing, except in CI
(``CI=true``), where they fail: CI cannot pass without the server.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from floorsight.opcua_client import ClientCertificate, OpcuaSecurity

SERVER_DIR = Path(__file__).parent / "nodeopcua"
#: the test server's own namespace (what its tag map names nodes by)
NAMESPACE = "urn:acme:press-shop"
#: its machines and their numeric variables, as server.js builds them
MACHINES = ("Press07", "Press08")
SENSORS = ("OilTemp", "RamForce", "StrokeCount", "State")
#: seconds the server has to start (it makes its own certificate on first start)
START_TIMEOUT_S = 60.0
#: the server's own certificate and key, made by the first server of a test session and
#: given to the next ones (making an RSA key is most of a first start)
_OWN_PKI = Path(tempfile.mkdtemp(prefix="floorsight-nodeopcua-own-")) / "own"
atexit.register(shutil.rmtree, _OWN_PKI.parent, ignore_errors=True)


def node(name: str) -> str:
    """A node id of the test server in the standard text form (``nsu=...;s=Press07.OilTemp``)."""
    return f"nsu={NAMESPACE};s={name}"


@dataclass
class NodeOpcuaServer:
    """A running node-opcua test server: its endpoint, PKI folder and its one user's login."""

    url: str
    pki: Path
    user: str
    password: str = field(repr=False)
    process: subprocess.Popen
    log: Path
    _answers: queue.Queue[str] = field(default_factory=queue.Queue, repr=False)

    def trust(self, cert: Path, timeout_s: float = 30.0) -> str:
        """Trust a client certificate (DER or PEM), as the server's admin does; returns its
        SHA-1 thumbprint as the server reports it."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"trust {cert}\n")
        self.process.stdin.flush()
        answer = self._answer(timeout_s)
        if not answer.startswith("trusted "):
            raise AssertionError(f"node-opcua did not trust {cert}: {answer}")
        return answer.removeprefix("trusted ")

    def _answer(self, timeout_s: float) -> str:
        try:
            return self._answers.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(
                f"node-opcua gave no answer within {timeout_s:g} s; its log:\n{self.tail()}"
            ) from None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def client_security(server: NodeOpcuaServer, cert: ClientCertificate) -> OpcuaSecurity:
    """How floorsight's client signs in to ``server``: Basic256Sha256 with SignAndEncrypt, the
    client certificate ``cert`` and the server's one user."""
    # imported here: conftest imports this module for every test, most of which need no asyncua
    from floorsight.opcua_client import OpcuaSecurity

    return OpcuaSecurity(
        "Basic256Sha256", "SignAndEncrypt", cert.cert, cert.key, server.user, server.password
    )


def read_values(server: NodeOpcuaServer, security: OpcuaSecurity, names: list[str]) -> dict:
    """The values of the server's variables ``names`` (``Press07.OilTemp``), read in one
    session."""
    from floorsight.opcua_client import opcua_session, parse_node_id, resolve

    async def read() -> dict:
        async with opcua_session(server.url, security) as client:
            namespaces = await client.get_namespace_array()
            return {
                name: await client.get_node(
                    resolve(parse_node_id(node(name)), namespaces)
                ).read_value()
                for name in names
            }

    return asyncio.run(read())


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (make setup installs Debian's nodejs and npm)"
    if not (SERVER_DIR / "node_modules" / "node-opcua").is_dir():
        return f"{SERVER_DIR}/node_modules is missing (make test runs npm ci there)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    folder: Path,
    user: str = "press-operator",
    port: int | None = None,
    password: str | None = None,
) -> NodeOpcuaServer:
    """Start the node-opcua test server with its PKI in ``folder``; waits until it listens.

    The same ``folder``, ``port`` and ``password`` again restart a stopped server as it was
    (its trusted certificates are in the folder)."""
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the node-opcua test server cannot run in CI: {missing}")
        pytest.skip(missing)
    password = password or secrets.token_urlsafe(12)
    folder.mkdir(parents=True, exist_ok=True)
    pki, log = folder / "pki", folder / "node-opcua.log"
    if _OWN_PKI.is_dir() and not pki.exists():
        shutil.copytree(_OWN_PKI, pki / "own")
    process = subprocess.Popen(
        [
            *("node", str(SERVER_DIR / "server.js"), "--port", str(port or _free_port())),
            *("--pki", str(pki), "--user", user),
        ],
        cwd=SERVER_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NODEOPCUA_TEST_PASSWORD": password},
    )
    answers: queue.Queue[str] = queue.Queue()
    ready: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        with log.open("w") as out:
            for line in process.stdout:
                out.write(line)
                out.flush()
                if line.startswith("ready "):
                    ready.put(line.split()[1])
                elif line.startswith(("trusted ", "error ")):
                    answers.put(line.strip())

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    url = None
    while url is None:
        try:
            url = ready.get(timeout=0.2)
        except queue.Empty:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(timeout=10)
                pytest.fail(f"the node-opcua test server did not start:\n{log.read_text()}")
    if not _OWN_PKI.is_dir():
        shutil.copytree(pki / "own", _OWN_PKI, ignore=shutil.ignore_patterns("*.mutex"))
    return NodeOpcuaServer(url, pki, user, password, process, log, answers)


def stop_server(server: NodeOpcuaServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture
def node_opcua(tmp_path) -> Iterator[NodeOpcuaServer]:
    """A node-opcua server on 127.0.0.1 (a free port) for this test: Basic256Sha256
    SignAndEncrypt only, one user (``.user``, ``.password``), no client trusted yet."""
    server = start_server(tmp_path / "node-opcua")
    try:
        yield server
    finally:
        stop_server(server)
