"""The pipeline routes its alerts through the outbox: a webhook that is down loses nothing, and
a re-run (as after a crash) sends nothing twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from floorsight.storage import Database
from tests.test_outbox import Receiver, _port

pytestmark = pytest.mark.e2e


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "floorsight.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _deliver_until(receiver: Receiver, expected: set[str], db, routing) -> None:
    """The delivery loop, running until the receiver has the expected keys (retries back off)."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "notify", "--db", str(db)),
            *("--routing", str(routing), "--interval-s", "0.5"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if expected <= {k for k, _ in receiver.received}:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert json.loads(out.splitlines()[-1])["pending"] == 0, out


def test_alerts_wait_for_a_dead_webhook_and_a_rerun_sends_nothing_twice(tmp_path) -> None:
    hist = tmp_path / "hist"
    made = _cli(
        *("simulate", "--out", str(hist), "--hours", "3", "--seed", "5", "--hz", "1"),
        *("--machines", "3", "--faults-per-day", "24", "--fault-kinds", "process_upset"),
    )
    assert made.returncode == 0, made.stderr
    port = _port()
    routing = tmp_path / "routing.toml"
    routing.write_text(
        f"""
[destinations.maintenance_hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/alerts"
[roles]
maintenance = ["maintenance_hook"]
[[rules]]
roles = ["maintenance"]
"""
    )
    db = tmp_path / "f.duckdb"
    run_args = (
        *("run", "--history", str(hist / "readings"), "--context", str(hist / "erp")),
        *("--db", str(db), "--routing", str(routing)),
    )
    first = _cli(*run_args)
    assert first.returncode == 0, first.stderr
    alerts = Database(db).query("SELECT alert_id, cleared_at FROM alerts")
    assert alerts.height >= 1  # the process upsets were alerted
    # nobody listens yet: everything waits in the outbox
    waiting = _cli("notify", "--db", str(db), "--routing", str(routing), "--once")
    assert json.loads(waiting.stdout)["pending"] > 0

    receiver = Receiver(port)
    try:
        expected = {f"{a}/opened" for a in alerts["alert_id"]} | {
            f"{a}/cleared" for a, c in alerts.iter_rows() if c is not None
        }
        _deliver_until(receiver, expected, db, routing)
        keys = [k for k, _ in receiver.received]
        assert len(keys) == len(set(keys))  # each once
        assert {k for k in keys if not k.endswith("/critical")} == expected
        bodies = {k: b for k, b in receiver.received}
        some = bodies[next(iter(sorted(expected)))]
        assert some["schema_version"] == 1 and some["context"]["work_order"]
        assert some["context"]["batch"].startswith("B-")

        # the same run again (what Bytewax replays after a crash): no notification twice
        again = _cli(*run_args)
        assert again.returncode == 0, again.stderr
        _cli("notify", "--db", str(db), "--routing", str(routing), "--once")
        assert [k for k, _ in receiver.received] == keys
    finally:
        receiver.close()
