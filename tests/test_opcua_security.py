"""OPC-UA security and login against a server that offers only Basic256Sha256 SignAndEncrypt
and a user name login (an asyncua server with names of its own, see tests/opcua_servers.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from floorsight.config import SecretError
from floorsight.opcua_client import (
    PASSWORD_ENV,
    OpcuaConnectError,
    OpcuaSecurity,
    certificate_application_uri,
    connect_retrying,
    ensure_client_certificate,
    opcua_session,
    thumbprint,
    write_values,
)
from tests.opcua_servers import ACME_NS, AcmeServer, free_url


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory):
    pki = tmp_path_factory.mktemp("pki")
    with AcmeServer(secure_only=True, users={"operator": "s3cret"}, cert_dir=pki) as server:
        yield server


def _read(url: str, security: OpcuaSecurity, node_id) -> object:
    async def main():
        async with opcua_session(url, security) as client:
            return await client.get_node(node_id).read_value()

    return asyncio.run(main())


def test_generated_certificate_is_private_and_names_its_application(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        made = ensure_client_certificate(tmp_path)
    assert stat.S_IMODE(made.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.cert.parent.stat().st_mode) == 0o700
    cert = x509.load_der_x509_certificate(made.cert.read_bytes())
    assert certificate_application_uri(cert) == made.application_uri
    assert made.thumbprint == thumbprint(cert) and len(made.thumbprint) == 40
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and usage.data_encipherment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    # the user learns where it is and how to recognise it on the server
    assert str(made.cert) in caplog.text and made.thumbprint in caplog.text
    # made once: the next run uses the same certificate (already trusted on the server)
    assert ensure_client_certificate(tmp_path).thumbprint == made.thumbprint


def test_sign_and_encrypt_with_user_login_reads_a_value(secure_server, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    security = OpcuaSecurity.from_options(
        "Basic256Sha256,SignAndEncrypt", user="operator", home=tmp_path
    )
    assert security.cert == tmp_path / "opcua" / "client_cert.der"
    assert "s3cret" not in repr(security)
    secure_server.write("Press7", "Force", 41.5)
    assert _read(secure_server.url, security, secure_server.nodes[("Press7", "Force")]) == 41.5


def test_a_certificate_of_the_users_own_brings_its_application_uri(secure_server, tmp_path):
    key, cert = tmp_path / "mine-key.pem", tmp_path / "mine.der"
    asyncio.run(
        setup_self_signed_certificate(
            key,
            cert,
            "urn:acme:integrator:gateway",
            socket.gethostname(),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {},
        )
    )
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "pw").chmod(0o600)
    security = OpcuaSecurity.from_options(
        "basic256sha256,signandencrypt", cert, key, "operator", tmp_path / "pw", home=tmp_path
    )
    assert not (tmp_path / "opcua").exists()  # nothing generated when a pair is given
    secure_server.write("Press7", "Strokes", 7)
    assert _read(secure_server.url, security, secure_server.nodes[("Press7", "Strokes")]) == 7


def test_refused_login_names_the_status_and_what_to_do(secure_server, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    security = OpcuaSecurity.from_options(
        "Basic256Sha256,SignAndEncrypt", user="operator", home=tmp_path
    )
    with pytest.raises(OpcuaConnectError) as refused:
        _read(secure_server.url, security, secure_server.nodes[("Press7", "Force")])
    assert refused.value.status == "BadUserAccessDenied (0x801F0000)"
    assert "--user" in str(refused.value) and PASSWORD_ENV in str(refused.value)


def test_no_login_on_a_server_that_wants_one_says_give_user(secure_server, tmp_path):
    security = OpcuaSecurity.from_options("Basic256Sha256,SignAndEncrypt", home=tmp_path)
    with pytest.raises(OpcuaConnectError, match=r"BadIdentityToken.*give --user NAME"):
        _read(secure_server.url, security, secure_server.nodes[("Press7", "Force")])


def test_no_security_on_a_secure_only_server_lists_what_it_offers(secure_server) -> None:
    with pytest.raises(OpcuaConnectError) as refused:
        _read(secure_server.url, OpcuaSecurity(), secure_server.nodes[("Press7", "Force")])
    message = str(refused.value)
    assert "offers: Basic256Sha256,SignAndEncrypt" in message
    assert "--security" in message


def test_a_wrong_mode_is_refused_with_the_offer(secure_server, tmp_path) -> None:
    security = OpcuaSecurity.from_options("Basic256Sha256,Sign", home=tmp_path)
    with pytest.raises(OpcuaConnectError, match="offers: Basic256Sha256,SignAndEncrypt"):
        _read(secure_server.url, security, secure_server.nodes[("Press7", "Force")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Basic256Sha256", "POLICY,MODE"),
        ("Basic999,Sign", "unknown policy"),
        ("Basic256Sha256,Encrypt", "unknown mode"),
        ("Basic256Sha256,None", "policy None goes with mode None"),
        ("None,Sign", "policy None goes with mode None"),
    ],
)
def test_bad_security_options_are_refused(text, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        OpcuaSecurity.from_options(text, home=tmp_path)


def test_the_password_comes_only_from_env_or_a_private_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(SecretError, match=PASSWORD_ENV):
        OpcuaSecurity.from_options(None, user="operator")
    shared = tmp_path / "pw"
    shared.write_text("s3cret\n")
    shared.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        OpcuaSecurity.from_options(None, user="operator", password_file=shared)
    with pytest.raises(ValueError, match="both --cert and --key"):
        OpcuaSecurity.from_options("Basic256Sha256,Sign", cert=Path("c.der"), home=tmp_path)


def test_a_server_that_is_not_there_is_retried_with_warnings(caplog) -> None:
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    with caplog.at_level(logging.WARNING, logger="floorsight.opcua_client"):
        client = asyncio.run(
            connect_retrying(free_url(), OpcuaSecurity(), stop=stop, first_backoff=0.1)
        )
    timer.join()
    assert client is None
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 2 and all(r.levelno == logging.WARNING for r in retries)


def test_write_values_writes_each_node_in_its_own_type(tmp_path, monkeypatch) -> None:
    with AcmeServer(extra_namespaces=("urn:other:a", "urn:other:b")) as server:
        write_values(
            server.url,
            OpcuaSecurity(),
            {server.node_text("Press7", "State"): 3, server.node_text("Press7", "Recipe"): "R-9"},
        )
        assert _read(server.url, OpcuaSecurity(), server.nodes[("Press7", "State")]) == 3
        assert _read(server.url, OpcuaSecurity(), server.nodes[("Press7", "Recipe")]) == "R-9"


def _context(folder: Path) -> Path:
    """A context of one work order for the press shop's machine (long enough for any run)."""
    folder.mkdir()
    (folder / "work_orders.csv").write_text(
        "work_order,machine_id,product,material_lot,start,end\n"
        "WO-1,press-7,P-1,LOT-1,2020-01-01T00:00:00Z,2099-01-01T00:00:00Z\n"
    )
    (folder / "spec_limits.csv").write_text(
        "product,characteristic,lsl,target,usl\nP-1,force,0,100,400\n"
    )
    return folder


def _run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "floorsight.cli", "run", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def _plain(text: str) -> str:
    """A usage error's text without its box and line breaks."""
    return re.sub(r"[\s│╭╮╰╯─]+", " ", text)


def test_run_with_a_refused_login_stops_with_exit_2_and_the_status(secure_server, tmp_path):
    env = {PASSWORD_ENV: "wrong", "FLOORSIGHT_HOME": str(tmp_path / "home")}
    tags = tmp_path / "tags.csv"
    tags.write_text(
        "node_id,machine_id,sensor,unit\n"
        f"{secure_server.node_text('Press7', 'Force')},press-7,force,kN\n"
    )
    common = (
        *("--opcua", secure_server.url, "--tags", str(tags)),
        *("--security", "Basic256Sha256,SignAndEncrypt", "--user", "operator"),
        *("--context", str(_context(tmp_path / "erp")), "--db", str(tmp_path / "f.duckdb")),
    )
    refused = _run(*common, env=env)  # bounded by the timeout: never an endless retry
    assert refused.returncode == 2, refused.stderr
    assert "BadUserAccessDenied (0x801F0000)" in _plain(refused.stderr)
    assert "Traceback" not in refused.stderr and "wrong" not in refused.stderr

    tags.write_text(
        "node_id,machine_id,sensor,unit\n"
        f"{secure_server.node_text('Press7', 'Force')},press-7,force,kN\n"
        f"nsu={ACME_NS};s=PS.Press7.Nope,press-7,nope,kN\n"
    )
    unknown = _run(*common, env={**env, PASSWORD_ENV: "s3cret"})
    assert unknown.returncode == 2, unknown.stderr
    said = _plain(unknown.stderr)
    assert f"{tags}, line 3, column node_id" in said and "BadNodeIdUnknown" in said


def test_run_refuses_opcua_options_it_cannot_use(tmp_path) -> None:
    env = {"FLOORSIGHT_HOME": str(tmp_path / "home")}
    context = str(_context(tmp_path / "erp"))
    bad_map = tmp_path / "tags.csv"
    bad_map.write_text("node_id,machine_id,sensor,unit\nns=2;s=A,M 1,t,C\n")
    cases = [
        (("--opcua", "opc.tcp://127.0.0.1:4840/", "--tags", str(bad_map)), "line 2, column"),
        (("--opcua", "opc.tcp://127.0.0.1:4840/", "--security", "Basic256"), "POLICY,MODE"),
        (("--opcua", "opc.tcp://127.0.0.1:4840/", "--opcua-mode", "push"), "subscribe, poll"),
    ]
    for args, message in cases:
        done = _run(*args, "--context", context, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert message in _plain(done.stderr), (args, done.stderr)


def test_runs_opcua_options_reach_a_clusters_processes_without_the_password(tmp_path) -> None:
    from floorsight.runner import RunConfig

    cfg = RunConfig(
        history=None,
        context=tmp_path,
        db=tmp_path / "f.duckdb",
        opcua="opc.tcp://plc:4840",
        opcua_user="operator",
        opcua_password="s3cret",
        opcua_password_file=tmp_path / "pw",
        opcua_tags=tmp_path / "tags.csv",
        opcua_security="Basic256Sha256,SignAndEncrypt",
        opcua_cert=tmp_path / "c.der",
        opcua_key=tmp_path / "k.pem",
        opcua_mode="poll",
        opcua_interval_s=2.5,
    )
    args = cfg.args()
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--opcua"] == "opc.tcp://plc:4840" and pairs["--user"] == "operator"
    assert pairs["--tags"] == str(tmp_path / "tags.csv")
    assert pairs["--security"] == "Basic256Sha256,SignAndEncrypt"
    assert (pairs["--cert"], pairs["--key"]) == (str(tmp_path / "c.der"), str(tmp_path / "k.pem"))
    assert (pairs["--opcua-mode"], pairs["--interval"]) == ("poll", "2.5")
    assert "s3cret" not in " ".join(args) and "s3cret" not in repr(cfg)
