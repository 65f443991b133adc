"""Alert delivery through the outbox to a real local HTTP server that is down for a while."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from floorsight.alerts.destinations import webhook
from floorsight.alerts.outbox import Outbox

pytestmark = pytest.mark.e2e


class Receiver:
    """A webhook receiver on 127.0.0.1 that records what it got (and its idempotency keys)."""

    def __init__(self, port: int) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["Idempotency-Key"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alerts_wait_while_the_webhook_is_down_and_all_arrive_once_it_is_back(tmp_path) -> None:
    port = _port()
    url = f"http://127.0.0.1:{port}/alerts"
    t = datetime(2026, 1, 5, 6, tzinfo=UTC)
    box = Outbox(tmp_path / "outbox.sqlite", base_delay=timedelta(seconds=10))
    alerts = [{"alert_id": f"M01:anomaly:{i}", "machine_id": "M01", "score": i} for i in range(5)]
    for a in alerts:
        assert box.enqueue("maintenance", a["alert_id"], a, now=t)
    assert not box.enqueue("maintenance", alerts[0]["alert_id"], alerts[0], now=t)  # once
    senders = {"maintenance": webhook(url, timeout_s=2)}
    # the receiver is down: every attempt fails, nothing is lost, retries back off
    report = box.deliver(senders, now=t)
    assert (report.delivered, report.failed, report.pending) == (0, 5, 5)
    assert box.deliver(senders, now=t + timedelta(seconds=5)).failed == 0  # not due yet
    # the process restarts: a new outbox on the same file still holds everything
    box = Outbox(tmp_path / "outbox.sqlite", base_delay=timedelta(seconds=10))
    receiver = Receiver(port)
    try:
        report = box.deliver(senders, now=t + timedelta(seconds=11))
    finally:
        receiver.close()
    assert (report.delivered, report.pending) == (5, 0)
    keys = [k for k, _ in receiver.received]
    assert sorted(keys) == sorted(a["alert_id"] for a in alerts)  # each once, none lost
    assert {b["alert_id"]: b for _, b in receiver.received}[alerts[2]["alert_id"]] == alerts[2]
    assert box.deliver(senders, now=t + timedelta(hours=1)).delivered == 0  # nothing resent


def test_a_destination_without_sender_is_retried_not_dropped(tmp_path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.enqueue("erp", "k1", {"x": 1})
    report = box.deliver({})
    assert (report.delivered, report.failed, report.pending) == (0, 1, 1)
