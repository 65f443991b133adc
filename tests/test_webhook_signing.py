"""Signed webhooks: a real receiver on 127.0.0.1 checks the HMAC-SHA256 signature the way
docs/alerts.md tells receivers to; secrets come from the environment or a private file, never
from the routing file."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from floorsight.alerts.destinations import senders, webhook
from floorsight.alerts.dispatcher import Dispatcher
from floorsight.alerts.outbox import Outbox
from floorsight.alerts.routing import Routing, RoutingError, load_routing
from floorsight.alerts.signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
    verify_signature,
)
from tests.test_outbox import Receiver

pytestmark = pytest.mark.e2e

SECRET = "whsec-3f9c2a0e5b"


class VerifyingReceiver:
    """A receiver that accepts a request only when its signature verifies (else 401), as a
    CMMS or MES behind the webhook should."""

    def __init__(self, secret: str) -> None:
        accepted = self.accepted = []
        refused = self.refused = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify_signature(
                    secret,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    body,
                    self.headers.get(SIGNATURE_HEADER),
                    now=datetime.now(tz=UTC),
                )
                (accepted if ok else refused).append(json.loads(body))
                self.send_response(204 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _routing(url: str, **secret: str) -> Routing:
    return Routing.model_validate(
        {"destinations": {"hook": {"kind": "webhook", "url": url, **secret}}}
    )


def test_a_receiver_verifies_the_signature_and_refuses_a_wrong_secret(
    tmp_path, monkeypatch
) -> None:
    receiver = VerifyingReceiver(SECRET)
    monkeypatch.setenv("FLOORSIGHT_HOOK_SECRET", SECRET)
    try:
        box = Outbox(tmp_path / "o.sqlite")
        dispatcher = Dispatcher(box, _routing(receiver.url, secret_env="FLOORSIGHT_HOOK_SECRET"))
        box.enqueue("hook", "M01:anomaly:1/opened", {"alert_id": "M01:anomaly:1"})
        assert dispatcher.step().delivered == 1
        assert receiver.accepted == [{"alert_id": "M01:anomaly:1"}]
        # signed with another secret: the receiver refuses, the outbox keeps it
        monkeypatch.setenv("FLOORSIGHT_HOOK_SECRET", "not-the-shared-secret")
        box2 = Outbox(tmp_path / "o2.sqlite")
        wrong = Dispatcher(box2, _routing(receiver.url, secret_env="FLOORSIGHT_HOOK_SECRET"))
        box2.enqueue("hook", "M01:anomaly:2/opened", {"alert_id": "M01:anomaly:2"})
        report = wrong.step()
        assert (report.delivered, report.failed, report.pending) == (0, 1, 1)
        assert "http 401" in box2.failing()["hook"]["last_error"]
        assert receiver.refused == [{"alert_id": "M01:anomaly:2"}]
    finally:
        receiver.close()


def test_the_signature_covers_timestamp_and_body_and_expires(tmp_path) -> None:
    receiver = Receiver()
    try:
        send = webhook(receiver.url, secret=SECRET)
        send("M01:anomaly:1/opened", {"alert_id": "M01:anomaly:1", "score": 0.99})
        send("M01:anomaly:1/opened", {"alert_id": "M01:anomaly:1", "score": 0.99})  # a retry
    finally:
        receiver.close()
    (headers, body), (again, _) = receiver.requests
    ts, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    now = datetime.now(tz=UTC)
    assert sig.startswith("sha256=") and len(sig) == len("sha256=") + 64
    assert sig == signature(SECRET, int(ts), body)
    assert verify_signature(SECRET, ts, body, sig, now=now)
    tampered = body.replace(b"0.99", b"0.10")
    assert not verify_signature(SECRET, ts, tampered, sig, now=now)
    assert not verify_signature(SECRET, str(int(ts) + 1), body, sig, now=now)  # moved time
    assert not verify_signature("other", ts, body, sig, now=now)
    assert not verify_signature(SECRET, ts, body, None, now=now)
    assert not verify_signature(SECRET, "soon", body, sig, now=now)
    assert not verify_signature(SECRET, "9" * 5000, body, sig, now=now)  # beyond int's limit
    assert not verify_signature(SECRET, ts, body, "sha256=\u00e9\ud800", now=now)  # no raise
    # replayed later than the window: refused; within it: taken
    assert verify_signature(SECRET, ts, body, sig, now=now + timedelta(seconds=250))
    assert not verify_signature(SECRET, ts, body, sig, now=now + timedelta(seconds=400))
    assert not verify_signature(SECRET, ts, body, sig, now=now - timedelta(seconds=400))
    # one delivery id for every attempt of a notification, with its idempotency key
    assert headers[DELIVERY_HEADER] == again[DELIVERY_HEADER]
    assert headers["Idempotency-Key"] == "M01:anomaly:1/opened"


def test_the_secret_comes_from_a_private_file_and_a_readable_one_is_refused(tmp_path) -> None:
    receiver = VerifyingReceiver(SECRET)
    key = tmp_path / "hook.secret"
    key.write_text(SECRET + "\n")
    key.chmod(0o600)
    try:
        routing = _routing(receiver.url, secret_file=str(key))
        box = Outbox(tmp_path / "o.sqlite")
        box.enqueue("hook", "k/opened", {"alert_id": "k"})
        assert Dispatcher(box, routing).step().delivered == 1
    finally:
        receiver.close()
    key.chmod(0o644)
    with pytest.raises(RoutingError, match=r"destination 'hook'.*readable by others.*chmod 600"):
        senders(routing)


def test_a_named_secret_that_is_not_set_stops_the_start(monkeypatch) -> None:
    monkeypatch.delenv("FLOORSIGHT_UNSET_SECRET", raising=False)
    routing = _routing("http://127.0.0.1:9/x", secret_env="FLOORSIGHT_UNSET_SECRET")
    with pytest.raises(RoutingError, match=r"destination 'hook'.*FLOORSIGHT_UNSET_SECRET"):
        senders(routing)


def test_an_unsigned_webhook_is_warned_about(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="floorsight.alerts"):
        senders(_routing("http://127.0.0.1:9/x"))
    assert "'hook'" in caplog.text and "not signed" in caplog.text


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ('kind = "webhook"\nurl = "http://h/x"\nsecret = "abc"', 'secret_env = "VARIABLE"'),
        ('kind = "opcua"\nurl = "opc.tcp://h:4840/"\npassword = "pw"', 'password_env = "VARIABLE"'),
        ('kind = "email"\nurl = "smtp://h:25"\naddress = "q@p"\npassword = "pw"', "password_file"),
        ('kind = "erp_table"\nurl = "postgresql://erp:pw@h/erp"', "password inside the url"),
        ('kind = "webhook"\nurl = "http://h/x"\ntoken = "abc"', "a token written in the routing"),
    ],
)
def test_a_secret_written_in_the_routing_file_is_refused(tmp_path, entry, says) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(f"[destinations.x]\n{entry}\n")
    with pytest.raises(RoutingError, match=r"routing\.toml") as refused:
        load_routing(path)
    assert says in str(refused.value) and "refused" in str(refused.value)
    for plain in ("abc", ":pw@", '"pw"'):
        assert plain not in str(refused.value)  # the secret is not echoed into logs


def test_secret_fields_belong_to_their_kinds(tmp_path) -> None:
    path = tmp_path / "routing.toml"
    path.write_text('[destinations.x]\nkind = "erp_file"\npath = "/tmp/x"\nsecret_env = "S"\n')
    with pytest.raises(RoutingError, match="takes no secret_env"):
        load_routing(path)


@pytest.mark.parametrize(
    "destination",
    [
        {"kind": "opcua", "url": "opc.tcp://127.0.0.1:4840/", "user": "hmi"},
        {"kind": "email", "url": "smtp://127.0.0.1:25", "address": "q@p", "user": "fs"},
        {"kind": "mqtt", "url": "mqtt://127.0.0.1:1883", "topic": "t", "user": "fs"},
        {"kind": "erp_table", "url": "postgresql://erp@127.0.0.1/erp"},
    ],
)
def test_write_back_and_smtp_passwords_come_from_env_or_a_private_file(
    tmp_path, monkeypatch, destination
) -> None:
    monkeypatch.delenv("FLOORSIGHT_UNSET_PASSWORD", raising=False)
    unset = {**destination, "password_env": "FLOORSIGHT_UNSET_PASSWORD"}
    with pytest.raises(RoutingError, match=r"destination 'x'.*FLOORSIGHT_UNSET_PASSWORD"):
        senders(Routing.model_validate({"destinations": {"x": unset}}))
    readable = tmp_path / "pw"
    readable.write_text("pw\n")
    readable.chmod(0o640)
    in_file = {**destination, "password_file": str(readable)}
    with pytest.raises(RoutingError, match="readable by others"):
        senders(Routing.model_validate({"destinations": {"x": in_file}}))
    readable.chmod(0o600)
    assert "x" in senders(Routing.model_validate({"destinations": {"x": in_file}}))
