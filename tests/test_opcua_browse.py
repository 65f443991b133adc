"""``floorsight opcua browse``: a tag-map draft of a server that is not floorsight's."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

from floorsight.pipelines.opcua_tags import read_tag_map
from tests.opcua_servers import ACME_NS, AcmeServer

PASSWORD_ENV = "FLOORSIGHT_OPCUA_PASSWORD"


def _floorsight(*args: str, env: dict | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "floorsight.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def server():
    # two namespaces registered first: the draft names nodes by URI, not by index
    with AcmeServer(extra_namespaces=("urn:other:first", "urn:other:second")) as s:
        yield s


def test_browse_drafts_a_row_for_every_numeric_variable(server, tmp_path) -> None:
    out = tmp_path / "tags.csv"
    done = _floorsight("opcua", "browse", server.url, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "8 tags from" in done.stderr and str(out) in done.stderr
    rows = {r["node_id"]: r for r in csv.DictReader(out.open())}
    press7 = f"nsu={ACME_NS};s=PS.Press7"
    drafted = {
        k: (r["machine_id"], r["sensor"], r["unit"], r["line"], r["kind"]) for k, r in rows.items()
    }
    assert drafted == {
        f"{press7}.Force": ("Press7", "Force", "kN", "PressShop", "sensor"),
        f"{press7}.OilTemp": ("Press7", "OilTemp", "°C", "PressShop", "sensor"),
        f"{press7}.Strokes": ("Press7", "Strokes", "", "PressShop", "sensor"),
        f"{press7}.State": ("Press7", "State", "", "PressShop", "state"),
        f"{press7}.GoodParts": ("Press7", "GoodParts", "", "PressShop", "good_count"),
        f"{press7}.RejectCount": ("Press7", "RejectCount", "", "PressShop", "scrap_count"),
        # a name that is no id is made one
        f"nsu={ACME_NS};s=PS.Press 8/B.Force": ("Press_8_B", "Force", "kN", "PressShop", "sensor"),
        # of the standard's DataType Counter (a UInt32 subtype)
        f"nsu={ACME_NS};s=PS.Press 8/B.Cycles": ("Press_8_B", "Cycles", "", "PressShop", "sensor"),
    }
    # the draft is a valid tag map as it stands (the text variable Recipe is left out)
    assert len(read_tag_map(out).tags) == len(rows) == 8
    assert not any("Recipe" in k for k in rows)


def test_browse_without_out_prints_the_csv(server) -> None:
    done = _floorsight("opcua", "browse", server.url)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 8 and "tags from" in done.stderr and "stdout" in done.stderr


def test_browse_with_security_and_login(tmp_path) -> None:
    with AcmeServer(secure_only=True, users={"operator": "s3cret"}, cert_dir=tmp_path) as secure:
        env = {PASSWORD_ENV: "s3cret", "FLOORSIGHT_HOME": str(tmp_path / "home")}
        args = ("opcua", "browse", secure.url, "--security", "Basic256Sha256,SignAndEncrypt")
        done = _floorsight(*args, "--user", "operator", env=env)
        assert done.returncode == 0, done.stderr
        assert len(list(csv.DictReader(io.StringIO(done.stdout)))) == 8
        # the certificate was made on first use: where it is and its thumbprint are said
        assert "generated the OPC-UA client certificate" in done.stderr
        assert str(tmp_path / "home" / "opcua" / "client_cert.der") in done.stderr
        refused = _floorsight(*args, "--user", "operator", env={**env, PASSWORD_ENV: "nope"})
        none = _floorsight("opcua", "browse", secure.url, env=env)
    assert refused.returncode == 2
    assert (
        "BadUserAccessDenied (0x801F0000)" in refused.stderr and "Traceback" not in refused.stderr
    )
    assert none.returncode == 2 and "offers: Basic256Sha256,SignAndEncrypt" in none.stderr


def test_browse_of_nothing_listening_says_so(tmp_path) -> None:
    from tests.opcua_servers import free_url

    done = _floorsight("opcua", "browse", free_url(), "--timeout-s", "2")
    assert done.returncode == 1
    assert "cannot reach" in done.stderr and "Traceback" not in done.stderr


def test_browse_on_node_opcua_says_what_each_refusal_needs(node_opcua, tmp_path) -> None:
    """node-opcua (not floorsight's, strict on certificates): an untrusted certificate, no
    security and a wrong password each stop browse with exit 2 and what to do."""
    server = node_opcua
    env = {PASSWORD_ENV: server.password, "FLOORSIGHT_HOME": str(tmp_path / "home")}
    secure = ("--security", "Basic256Sha256,SignAndEncrypt", "--user", server.user)
    untrusted = _floorsight("opcua", "browse", server.url, *secure, env=env)
    cert = tmp_path / "home" / "opcua" / "client_cert.der"
    thumbprint = server.trust(cert)
    plain = _floorsight("opcua", "browse", server.url, "--user", server.user, env=env)
    wrong = _floorsight("opcua", "browse", server.url, *secure, env={**env, PASSWORD_ENV: "not-it"})
    trusted = _floorsight("opcua", "browse", server.url, *secure, env=env)
    assert untrusted.returncode == 2, untrusted.stderr
    assert "closed the secure channel" in untrusted.stderr
    assert f"{cert} (SHA-1 thumbprint {thumbprint})" in untrusted.stderr
    assert plain.returncode == 2 and "BadSecurityModeRejected (0x80540000)" in plain.stderr
    assert "offers: Basic256Sha256,SignAndEncrypt" in plain.stderr
    assert wrong.returncode == 2 and "BadUserAccessDenied (0x801F0000)" in wrong.stderr
    assert trusted.returncode == 0, trusted.stderr
    rows = list(csv.DictReader(io.StringIO(trusted.stdout)))
    assert rows and all(r["node_id"].startswith(f"nsu={ACME_NS};") for r in rows)
