"""A real plant's OPC-UA server, end to end: node-opcua, browse, edit the map, run, write back.

What a new user does against a server floorsight does not own (the node-opcua test server of
:mod:`tests.node_opcua`: its own namespace ``urn:acme:press-shop``, only Basic256Sha256 with
SignAndEncrypt, a user login, no certificate trusted):

1. ``floorsight opcua browse`` generates the client certificate in the floorsight home; the
   server refuses it; the admin trusts it; browse writes a tag-map draft;
2. the user edits the map (machine ids, sensor names; the write-back nodes dropped);
3. ``floorsight run --opcua --tags`` with a context naming those machines and a routing file
   that writes alerts back to the press's own nodes runs until the out-of-spec alert is on
   the press's ``AlarmMessage`` node, and stops cleanly on SIGINT;
4. the DuckDB file holds the windows of every mapped sensor, with the server's values.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from floorsight.opcua_client import (
    OpcuaSecurity,
    ensure_client_certificate,
    opcua_session,
    parse_node_id,
    resolve,
)
from floorsight.storage import Database
from tests.node_opcua import NodeOpcuaServer, client_security, node, read_values

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SECURITY = "Basic256Sha256,SignAndEncrypt"
#: the edited map: server variable -> (machine_id, sensor), for both presses
MAPPED = {
    f"Press0{n}.{variable}": (f"press-0{n}", sensor)
    for n in (7, 8)
    for variable, sensor in (("OilTemp", "oil_temp"), ("RamForce", "ram_force"))
} | {"Press07.StrokeCount": ("press-07", "strokes")}
#: what server.js makes each variable (tick n = 1, 2, ...): the range of its values
RANGES = {
    ("press-07", "oil_temp"): (40.0, 49.5),
    ("press-08", "oil_temp"): (50.0, 59.5),
    ("press-07", "ram_force"): (800.0, 818.0),
    ("press-08", "ram_force"): (900.0, 918.0),
    ("press-07", "strokes"): (1.0, 1e9),
}
RUN_TIMEOUT_S = 120.0


def _floorsight(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "floorsight.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _wait_for_alarm(
    server: NodeOpcuaServer, security: OpcuaSecurity, run: subprocess.Popen, name: str
) -> str:
    """The text on the node ``name`` once it names an out-of-spec alert (one session, read
    every half second while the pipeline runs)."""

    async def wait() -> str:
        async with opcua_session(server.url, security) as client:
            namespaces = await client.get_namespace_array()
            target = client.get_node(resolve(parse_node_id(node(name)), namespaces))
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while "out_of_spec" not in (text := str(await target.read_value())):
                assert run.poll() is None, run.communicate()[0]
                assert time.monotonic() < deadline, f"no alert on {name}; it holds {text!r}"
                await asyncio.sleep(0.5)
            return text

    return asyncio.run(wait())


def _context(folder: Path) -> Path:
    """Work orders running now on both presses; press-07's product has an oil temperature
    spec its readings (40-49.5) are above, press-08's one they meet."""
    folder.mkdir()
    now = datetime.now(tz=UTC).replace(microsecond=0)
    start, end = (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=3)).isoformat()
    (folder / "work_orders.csv").write_text(
        "work_order,machine_id,product,material_lot,start,end\n"
        f"WO-7001,press-07,HOOD-L,LOT-A1,{start},{end}\n"
        f"WO-8001,press-08,DOOR-R,LOT-B1,{start},{end}\n"
    )
    (folder / "spec_limits.csv").write_text(
        "product,characteristic,lsl,target,usl\nHOOD-L,oil_temp,20,30,35\nDOOR-R,oil_temp,40,55,70\n"
    )
    return folder


def _routing(path: Path, server: NodeOpcuaServer) -> Path:
    path.write_text(
        f"""
[destinations.press_hmi]
kind = "opcua"
url = "{server.url}"
security = "{SECURITY}"
user = "{server.user}"
password_env = "FLOORSIGHT_OPCUA_PASSWORD"
deadline_s = 10

[destinations.press_hmi.nodes.press-07]
alarm_text = "{node("Press07.AlarmMessage")}"
hold = "{node("Press07.HoldRequest")}"

[roles]
quality = ["press_hmi"]

[[rules]]
causes = ["out_of_spec"]
roles = ["quality"]
"""
    )
    return path


def _edit(draft: Path, out: Path) -> list[dict]:
    """The user's edit of the browse draft: only the mapped variables, named for the plant."""
    with draft.open(newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, list(reader)
    assert columns is not None
    kept = []
    for row in rows:
        variable = row["node_id"].rpartition(";s=")[2]
        if variable in MAPPED:
            row["machine_id"], row["sensor"] = MAPPED[variable]
            row["line"], row["kind"] = "hall-2", "sensor"  # StrokeCount: drafted as a counter
            kept.append(row)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(kept)
    return rows


def test_browse_map_run_and_write_back_on_node_opcua(node_opcua, tmp_path) -> None:
    server = node_opcua
    home = tmp_path / "home"
    env = {
        **os.environ,
        "FLOORSIGHT_HOME": str(home),
        "FLOORSIGHT_OPCUA_PASSWORD": server.password,
        "PYTHONUNBUFFERED": "1",
    }
    draft = tmp_path / "tags_draft.csv"
    browse = ("opcua", "browse", server.url, "--out", str(draft), "--security", SECURITY)
    browse += ("--user", server.user)

    # 1. the first browse makes the client certificate; the server does not trust it yet
    refused = _floorsight(*browse, env=env)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    cert_path = home / "opcua" / "client_cert.der"
    assert cert_path.exists()
    thumbprint = server.trust(cert_path)
    assert thumbprint in refused.stdout + refused.stderr  # printed for the admin to check
    assert not draft.exists()

    browsed = _floorsight(*browse, env=env)
    assert browsed.returncode == 0, browsed.stdout + browsed.stderr

    # 2. the draft has every numeric variable of both presses, units from EngineeringUnits
    rows = _edit(draft, tmp_path / "tags.csv")
    by_variable = {r["node_id"].rpartition(";s=")[2]: r for r in rows}
    for press in ("Press07", "Press08"):
        for variable in ("OilTemp", "RamForce", "StrokeCount", "State"):
            assert f"{press}.{variable}" in by_variable, sorted(by_variable)
        assert f"{press}.AlarmMessage" not in by_variable  # a String is no reading
    assert by_variable["Press07.RamForce"]["unit"] == "kN"
    assert by_variable["Press07.OilTemp"]["unit"] in ("°C", "degC")
    assert all(r["node_id"].startswith("nsu=urn:acme:press-shop;") for r in rows)

    # 3. run until the out-of-spec alert is on press-07's AlarmMessage node
    cert = ensure_client_certificate(home)
    security = client_security(server, cert)
    db = tmp_path / "plant.duckdb"
    run = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "run", "--opcua", server.url),
            *("--tags", str(tmp_path / "tags.csv"), "--security", SECURITY),
            *("--user", server.user, "--context", str(_context(tmp_path / "context"))),
            *("--db", str(db), "--window-s", "1"),
            *("--routing", str(_routing(tmp_path / "routing.toml", server))),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        text = _wait_for_alarm(server, security, run, "Press07.AlarmMessage")
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, output
    assert re.match(r"(WARNING|CRITICAL) out_of_spec: press-07: parts out of spec", text), text
    # press-08 runs in spec and has no nodes in the routing file: nothing written there
    assert read_values(server, security, ["Press08.AlarmMessage", "Press07.HoldRequest"]) == {
        "Press08.AlarmMessage": "",
        "Press07.HoldRequest": False,  # out of spec is no hold cause
    }

    # 4. windows of every mapped sensor, with the server's values
    features = Database(db).query(
        "SELECT machine_id, sensor, count(*) AS windows, min(mean) AS low, max(mean) AS high,"
        " min(work_order) AS work_order FROM features GROUP BY 1, 2"
    )
    got = {(r["machine_id"], r["sensor"]): r for r in features.iter_rows(named=True)}
    assert set(got) == set(RANGES), output
    for key, (low, high) in RANGES.items():
        row = got[key]
        assert row["windows"] >= 2, (key, row)
        assert low <= row["low"] <= row["high"] <= high, (key, row)
        assert row["work_order"] == ("WO-7001" if key[0] == "press-07" else "WO-8001")
