"""Hostile receivers, for real on 127.0.0.1: one that answers a byte at a time, one that
redirects, one that holds the connection while another destination waits its turn."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from floorsight.alerts.destinations import DeliveryError, webhook
from floorsight.alerts.dispatcher import Dispatcher
from floorsight.alerts.outbox import Outbox
from floorsight.alerts.routing import Routing
from tests.test_outbox import Receiver

pytestmark = pytest.mark.e2e

T = datetime(2026, 1, 5, 6, tzinfo=UTC)


class SlowReceiver:
    """A TCP server that reads a request, then answers ``HTTP/1.1 200 OK`` one byte every
    ``drip_s`` (each byte well within any per-operation timeout), or, with ``drip_s=None``,
    says nothing until :meth:`release`."""

    def __init__(self, drip_s: float | None) -> None:
        self.drip_s = drip_s
        self.connections = 0
        self.closed_by_peer = threading.Event()
        self.released = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/alerts"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            if self.drip_s is None:
                self.released.wait(60)
                conn.sendall(answer)
                return
            try:
                for i in range(len(answer)):
                    conn.sendall(answer[i : i + 1])
                    if self.released.wait(self.drip_s):
                        return
            except OSError:  # the sender gave up and closed the connection
                self.closed_by_peer.set()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.listener.close()


def test_a_receiver_answering_a_byte_at_a_time_fails_at_the_deadline(tmp_path) -> None:
    slow = SlowReceiver(drip_s=0.5)  # the whole answer would take ~30 s
    try:
        send = webhook(slow.url, deadline_s=2)
        with pytest.raises(DeliveryError, match="deadline") as failed:
            send("M01:anomaly:1/opened", {"alert_id": "M01:anomaly:1"})
        assert failed.value.reason == "deadline"
        # the connection is closed, not left to the receiver: its next byte finds it gone
        assert slow.closed_by_peer.wait(30)
        # through the outbox: a failed attempt with its reason, the notification kept
        box = Outbox(tmp_path / "o.sqlite")
        box.enqueue("slow", "k", {}, now=T)
        report = box.deliver({"slow": send}, now=T)
        assert (report.delivered, report.failed, report.pending) == (0, 1, 1)
        assert "deadline" in box.failing()["slow"]["last_error"]
    finally:
        slow.close()


class Redirecting:
    """An HTTP server whose webhook path redirects (``status``) to a path that answers 200 to
    anything, recording every request it gets."""

    def __init__(self, status: int) -> None:
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path, body))
                if self.path == "/alerts":
                    self.send_response(status)
                    self.send_header("Location", "/moved")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _any  # noqa: N815 (BaseHTTPRequestHandler's names)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_that_names_where_it_pointed(tmp_path, status) -> None:
    server = Redirecting(status)
    try:
        box = Outbox(tmp_path / "o.sqlite")
        box.enqueue("hook", "M01:anomaly:1/opened", {"alert_id": "M01:anomaly:1"}, now=T)
        report = box.deliver({"hook": webhook(server.url, deadline_s=5)}, now=T)
    finally:
        server.close()
    assert (report.delivered, report.failed, report.pending) == (0, 1, 1)
    error = box.failing()["hook"]["last_error"]
    assert f"answered {status} redirecting to /moved" in error
    # only the POST itself was made, with its body; nothing followed the redirect
    assert [(m, p) for m, p, _ in server.seen] == [("POST", "/alerts")]
    assert b"M01:anomaly:1" in server.seen[0][2]


def test_a_receiver_holding_the_connection_does_not_hold_the_other_destinations(
    tmp_path,
) -> None:
    stuck, fast = SlowReceiver(drip_s=None), Receiver()
    routing = Routing.model_validate(
        {
            "destinations": {
                "stuck": {"kind": "webhook", "url": stuck.url, "deadline_s": 60},
                "fast": {"kind": "webhook", "url": fast.url, "deadline_s": 5},
            }
        }
    )
    box = Outbox(tmp_path / "o.sqlite")
    box.enqueue("stuck", "s-1", {}, now=T)
    box.enqueue("fast", "f-1", {})
    dispatcher = Dispatcher(box, routing)
    thread, stop = dispatcher.start(interval_s=0.05)
    try:
        _wait_for(lambda: [k for k, _ in fast.received] == ["f-1"])
        for i in (2, 3):  # new alerts keep reaching the fast receiver while "stuck" waits
            box.enqueue("fast", f"f-{i}", {})
            _wait_for(lambda i=i: len(fast.received) == i)
        assert [k for k, _ in fast.received] == ["f-1", "f-2", "f-3"]
        assert stuck.connections == 1  # its round is still running, and is not started again
        assert box.counts()["stuck"] == {"delivered": 0, "pending": 1, "parked": 0}
        stuck.release()
        _wait_for(lambda: box.counts()["stuck"]["delivered"] == 1)
    finally:
        stop.set()
        thread.join(60)
        stuck.close()
        fast.close()
    assert not thread.is_alive()
    assert box.counts() == {
        "fast": {"delivered": 3, "pending": 0, "parked": 0},
        "stuck": {"delivered": 1, "pending": 0, "parked": 0},
    }


def _wait_for(condition, limit_s: float = 30.0) -> None:
    end = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < end, "condition not met"
        time.sleep(0.02)
