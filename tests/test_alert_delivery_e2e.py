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
from tests.test_outbox import Receiver, _port, webhook_routing

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
    routing = webhook_routing(tmp_path / "routing.toml", f"http://127.0.0.1:{port}/alerts")
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
        # an alert that cleared and flagged again within the flap hold was cleared twice: each
        # clear is its own notification, the last one is the table's
        expected = {f"{a}/opened" for a in alerts["alert_id"]} | {
            f"{a}/cleared/{c:%Y%m%dT%H%M%SZ}" for a, c in alerts.iter_rows() if c is not None
        }
        _deliver_until(receiver, expected, db, routing)
        keys = [k for k, _ in receiver.received]
        assert len(keys) == len(set(keys))  # each once
        sent = {k for k in keys if not k.endswith("/critical")}
        assert sent >= expected
        assert all(k.split("/")[0] in set(alerts["alert_id"]) for k in sent - expected)
        assert all("/cleared/" in k for k in sent - expected)
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


def test_parked_notifications_are_listed_and_resent_from_the_command_line(tmp_path) -> None:
    from datetime import UTC, datetime, timedelta

    from floorsight.alerts.outbox import Outbox
    from floorsight.runner import outbox_path

    db = tmp_path / "f.duckdb"
    port = _port()
    routing = tmp_path / "routing.toml"
    routing.write_text(
        f'[destinations.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{port}/alerts"\n'
    )
    # a receiver down for a day and more: the notification is parked
    box = Outbox(outbox_path(db), max_age=timedelta(hours=24))
    t = datetime.now(tz=UTC) - timedelta(days=2)
    box.enqueue("hook", "M01:failure_risk:1/opened", {"alert_id": "M01:failure_risk:1"}, now=t)

    def down(key: str, payload: dict) -> None:
        raise ConnectionError("receiver down")

    box.deliver({"hook": down}, now=t)
    box.deliver({"hook": down}, now=t + timedelta(hours=25))
    assert box.counts()["hook"]["parked"] == 1

    listed = _cli("notify", "parked", "--db", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["key"] == "M01:failure_risk:1/opened" and "receiver down" in row["last_error"]
    waiting = _cli("notify", "--routing", str(routing), "--db", str(db), "--once")
    assert json.loads(waiting.stdout)["hook"] == {"delivered": 0, "pending": 0, "parked": 1}

    missing = _cli("notify", "resend", "no/such", "--db", str(db))
    assert missing.returncode != 0 and "no parked notification" in missing.stderr
    resent = _cli("notify", "resend", "M01:failure_risk:1/opened", "--db", str(db))
    assert resent.returncode == 0 and "re-queued 1" in resent.stdout, resent.stderr
    receiver = Receiver(port)
    try:
        sent = _cli("notify", "--routing", str(routing), "--db", str(db), "--once")
    finally:
        receiver.close()
    assert json.loads(sent.stdout)["hook"] == {"delivered": 1, "pending": 0, "parked": 0}
    assert [k for k, _ in receiver.received] == ["M01:failure_risk:1/opened"]
