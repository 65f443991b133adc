"""Alert delivery through the outbox to real local HTTP servers: down for a while, down for
days, flooded with due notifications; parking, re-sending, private files."""

from __future__ import annotations

import json
import socket
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from floorsight.alerts.destinations import webhook
from floorsight.alerts.outbox import Outbox

pytestmark = pytest.mark.e2e

T = datetime(2026, 1, 5, 6, tzinfo=UTC)


class Receiver:
    """A webhook receiver on ``host`` (127.0.0.1) that records what it got (and its idempotency
    keys).

    It answers ``status`` (204: accepted); ``requests`` keeps each request's headers and body
    bytes as received, for signature checks.
    """

    def __init__(self, port: int = 0, status: int = 204, host: str = "127.0.0.1") -> None:
        received = self.received = []
        requests = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                requests.append((dict(self.headers), body))
                if 200 <= status < 300:
                    received.append((self.headers["Idempotency-Key"], json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def webhook_routing(path: Path, url: str, *more: str) -> Path:
    """A routing file that sends every alert to the maintenance role's webhooks: ``url``
    (destination ``maintenance_hook``) and each of ``more`` (``maintenance_hook_2`` ...)."""
    names = ["maintenance_hook", *(f"maintenance_hook_{i}" for i in range(2, len(more) + 2))]
    hooks = "".join(
        f'[destinations.{name}]\nkind = "webhook"\nurl = "{u}"\n'
        for name, u in zip(names, (url, *more), strict=True)
    )
    path.write_text(
        f"""{hooks}[roles]
maintenance = {json.dumps(names)}
[[rules]]
roles = ["maintenance"]
"""
    )
    return path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alerts_wait_while_the_webhook_is_down_and_all_arrive_once_it_is_back(tmp_path) -> None:
    port = _port()
    url = f"http://127.0.0.1:{port}/alerts"
    box = Outbox(tmp_path / "outbox.sqlite", base_delay=timedelta(seconds=10))
    alerts = [{"alert_id": f"M01:anomaly:{i}", "machine_id": "M01", "score": i} for i in range(5)]
    for a in alerts:
        assert box.enqueue("maintenance", a["alert_id"], a, now=T)
    assert not box.enqueue("maintenance", alerts[0]["alert_id"], alerts[0], now=T)  # once
    senders = {"maintenance": webhook(url, deadline_s=2)}
    # the receiver is down: one probe fails, the rest waits with it; nothing is lost
    report = box.deliver(senders, now=T)
    assert (report.delivered, report.failed, report.pending) == (0, 1, 5)
    assert "unreachable" in box.failing()["maintenance"]["last_error"]
    # the process restarts: a new outbox on the same file still holds everything
    box = Outbox(tmp_path / "outbox.sqlite", base_delay=timedelta(seconds=10))
    receiver = Receiver(port)
    try:
        report = box.deliver(senders, now=T + timedelta(seconds=11))
    finally:
        receiver.close()
    assert (report.delivered, report.pending) == (5, 0)
    keys = [k for k, _ in receiver.received]
    assert sorted(keys) == sorted(a["alert_id"] for a in alerts)  # each once, none lost
    assert {b["alert_id"]: b for _, b in receiver.received}[alerts[2]["alert_id"]] == alerts[2]
    assert box.deliver(senders, now=T + timedelta(hours=1)).delivered == 0  # nothing resent


def test_a_destination_without_sender_is_retried_not_dropped(tmp_path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.enqueue("erp", "k1", {"x": 1})
    report = box.deliver({})
    assert (report.delivered, report.failed, report.pending) == (0, 1, 1)


def test_backoff_is_capped_and_jittered_for_any_number_of_failures(tmp_path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_delay=timedelta(minutes=15), seed=1)
    for failures in (0, 10, 46, 47, 48, 1_000, 10**9):
        waits = [box.backoff(failures) for _ in range(200)]  # 2**47 s overflowed timedelta
        assert all(timedelta(0) <= w <= timedelta(minutes=15) for w in waits)
        assert len(set(waits)) > 100  # jittered: receivers are not hit in lockstep
    assert max(box.backoff(1_000) for _ in range(200)) > timedelta(minutes=10)  # capped, high


def test_a_receiver_down_for_days_parks_its_alert_while_another_gets_every_round(
    tmp_path,
) -> None:
    down_port = _port()  # nothing listens: every attempt is refused
    up = Receiver()
    box = Outbox(tmp_path / "o.sqlite", max_age=timedelta(hours=24), seed=2)
    senders = {
        "down": webhook(f"http://127.0.0.1:{down_port}/alerts", deadline_s=2),
        "up": webhook(up.url, deadline_s=2),
    }
    box.enqueue("down", "M01:failure_risk:1/opened", {"alert_id": "M01:failure_risk:1"}, now=T)
    step, rounds = timedelta(minutes=5), 5 * 24 * 12  # five simulated days, 1,440 rounds
    parked_in_round = None
    try:
        for r in range(rounds):
            now = T + r * step
            box.enqueue("up", f"up-{r}", {"r": r}, now=now)
            box.deliver(senders, now=now)  # never raises, whatever the failures
            assert up.received[-1][0] == f"up-{r}"  # delivered in its own round
            if parked_in_round is None and box.counts()["down"]["parked"]:
                parked_in_round = r
        assert parked_in_round is not None
        assert T + parked_in_round * step >= T + timedelta(hours=24)  # not before max_age
        assert T + parked_in_round * step <= T + timedelta(hours=24, minutes=20)  # nor long after
        assert box.counts() == {
            "down": {"delivered": 0, "pending": 0, "parked": 1},
            "up": {"delivered": rounds, "pending": 0, "parked": 0},
        }
        [parked] = box.parked()
        assert parked.key == "M01:failure_risk:1/opened" and parked.attempts > 10
        assert "unreachable" in parked.last_error and parked.payload["alert_id"]
        # the receiver comes back; someone re-sends the parked alert
        later = T + rounds * step
        assert box.deliver(senders, now=later).delivered == 0  # parked: not sent by itself
        back = Receiver(down_port)
        try:
            assert box.resend("M01:failure_risk:1/opened", now=later) == 1
            report = box.deliver(senders, now=later)
        finally:
            back.close()
        assert report.delivered == 1 and box.counts()["down"] == {
            "delivered": 1,
            "pending": 0,
            "parked": 0,
        }
        assert [k for k, _ in back.received] == ["M01:failure_risk:1/opened"]
    finally:
        up.close()


def test_thousands_of_due_alerts_of_a_down_destination_do_not_starve_another(tmp_path) -> None:
    down, up = Receiver(status=503), Receiver()  # down answers every request 503
    box = Outbox(tmp_path / "o.sqlite", seed=3)
    for i in range(3_000):
        box.enqueue("down", f"d-{i}", {"i": i}, now=T)
    senders = {"down": webhook(down.url, deadline_s=2), "up": webhook(up.url, deadline_s=2)}
    try:
        for r in range(60):
            now = T + timedelta(seconds=r)
            box.enqueue("up", f"u-{r}", {"r": r}, now=now)
            report = box.deliver(senders, now=now)
            assert up.received[-1][0] == f"u-{r}" and report.delivered == 1
        # a failing destination is probed once per round at most, then waits its backoff
        assert 1 <= len(down.requests) <= 60
    finally:
        down.close()
        up.close()
    assert box.counts()["down"] == {"delivered": 0, "pending": 3_000, "parked": 0}
    # the receiver comes back: the backlog drains, a batch per destination and round
    back = Receiver(down.port)
    try:
        box.resend_all()  # nothing parked: a no-op
        now = T + timedelta(hours=1)
        delivered = [
            box.deliver(senders, now=now + timedelta(seconds=i)).delivered for i in range(30)
        ]
    finally:
        back.close()
    assert delivered[:3] == [100, 100, 100] and sum(delivered) == 3_000
    assert len({k for k, _ in back.received}) == 3_000


def test_parked_notifications_are_listed_and_resent_one_or_all(tmp_path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_age=timedelta(hours=1))
    for key in ("a/opened", "b/opened"):
        box.enqueue("hook", key, {"k": key}, now=T)
        box.enqueue("mail", key, {"k": key}, now=T)

    def refuse(key: str, payload: dict) -> None:
        raise ConnectionError("receiver down")

    failing = {"hook": refuse, "mail": refuse}
    now = T
    while now < T + timedelta(hours=3):
        box.deliver(failing, now=now)
        now += timedelta(minutes=1)
    assert box.counts() == {
        "hook": {"delivered": 0, "pending": 0, "parked": 2},
        "mail": {"delivered": 0, "pending": 0, "parked": 2},
    }
    assert [(p.destination, p.key) for p in box.parked("hook")] == [
        ("hook", "a/opened"),
        ("hook", "b/opened"),
    ]
    assert box.parked()[0].last_error == "ConnectionError: receiver down"
    got: list[tuple[str, str]] = []
    ok = {
        "hook": lambda k, p: got.append(("hook", k)),
        "mail": lambda k, p: got.append(("mail", k)),
    }
    assert box.resend("a/opened", destination="hook", now=now) == 1
    assert box.deliver(ok, now=now).delivered == 1 and got == [("hook", "a/opened")]
    assert box.resend_all(now=now) == 3
    assert box.deliver(ok, now=now).delivered == 3
    assert box.counts()["mail"] == {"delivered": 2, "pending": 0, "parked": 0}
    assert box.resend("a/opened", now=now) == 0  # delivered: nothing to re-send


def test_an_alert_is_not_parked_without_a_failed_attempt(tmp_path) -> None:
    # the delivery loop was off for two days: its queue is tried, not given up on
    box = Outbox(tmp_path / "o.sqlite", max_age=timedelta(hours=24))
    box.enqueue("hook", "k", {}, now=T)
    got = []
    report = box.deliver({"hook": lambda k, p: got.append(k)}, now=T + timedelta(days=2))
    assert report.delivered == 1 and got == ["k"]


def test_the_outbox_file_is_private_and_an_older_file_is_carried_on(tmp_path) -> None:
    box = Outbox(tmp_path / "new" / "outbox.sqlite")
    box.enqueue("hook", "k", {}, now=T)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    for name in ("outbox.sqlite", "outbox.sqlite-wal"):
        assert stat.S_IMODE((tmp_path / "new" / name).stat().st_mode) == 0o600
    # a file of the first outbox schema, world-readable, with an undelivered notification
    old = tmp_path / "old.sqlite"
    con = sqlite3.connect(old)
    con.execute(
        "CREATE TABLE outbox (destination TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT"
        " NULL, created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at"
        " TEXT NOT NULL, last_error TEXT, delivered_at TEXT, PRIMARY KEY (destination, key))"
    )
    con.execute(
        "INSERT INTO outbox VALUES ('hook', 'k', '{\"x\": 1}', ?, 47, ?, 'boom', NULL)",
        (T.isoformat(), T.isoformat()),
    )
    con.commit()
    con.close()
    old.chmod(0o644)
    box = Outbox(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    got = []
    assert box.deliver({"hook": lambda k, p: got.append(p)}, now=T).delivered == 1
    assert got == [{"x": 1}]


def test_the_outbox_beside_a_database_is_the_one_the_runner_uses(tmp_path) -> None:
    from floorsight.alerts.outbox import outbox_beside
    from floorsight.runner import outbox_path

    db = tmp_path / "plant" / "floorsight.duckdb"
    assert outbox_beside(db) == outbox_path(db) == tmp_path / "plant" / "floorsight.outbox.sqlite"
