"""Senders: deliver one notification body to one kind of destination.

A sender is ``send(key, payload)``: it returns when the destination accepted the notification
and raises otherwise (the outbox then retries with backoff). Every sender is idempotent for a
key, or passes the key on so the receiver can be: webhooks get an ``Idempotency-Key`` header,
MQTT messages carry the key in the body, e-mails use it as their Message-ID, the ERP file
drop names the file after it and the ERP table has it as its primary key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import ipaddress
import json
import logging
import os
import re
import smtplib
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

from floorsight.alerts.notify import MATERIAL_CAUSES
from floorsight.alerts.outbox import Sender
from floorsight.alerts.routing import Destination, OpcuaNodes, Routing, RoutingError
from floorsight.alerts.signing import DELIVERY_HEADER, delivery_id, signed_headers
from floorsight.config import SecretError, secret

log = logging.getLogger("floorsight.alerts")

#: the OPC-UA namespace of the plant's machine nodes (``floorsight.simulators.opcua_server``)
OPCUA_NAMESPACE = "urn:floorsight:plant"
#: causes that put the machine's output on hold (``QualityHold`` = true on the machine's node)
HOLD_CAUSES = MATERIAL_CAUSES | {"anomaly"}


class DeliveryError(ConnectionError):
    """A destination did not accept a notification; ``reason`` says why in a word or two
    (``deadline``, ``redirect``, ``http 503``, ``unreachable``, ``smtp``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class _Deadline:
    """A bound on a whole exchange: when ``seconds`` have passed, the sockets ``sockets()``
    returns are shut down, which ends any read or write blocked on them.

    Per-operation socket timeouts are no such bound: a receiver that sends one byte every
    second never trips a 5 s timeout, and holds the sender as long as it likes.
    """

    def __init__(self, seconds: float, sockets: Callable[[], list]) -> None:
        self.seconds, self._sockets = seconds, sockets
        self.expired = threading.Event()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def check(self) -> None:
        """Raise if the deadline has passed (between steps the shutdown cannot interrupt)."""
        if self.expired.is_set():
            raise TimeoutError("deadline")

    def failure(self, url: str, error: Exception, reason: str, late: str) -> DeliveryError:
        """The delivery error for ``error``: ``deadline`` when the deadline cut the exchange
        off (``late`` says what did not happen in time), else ``reason``."""
        if self.expired.is_set():
            return DeliveryError("deadline", f"{url} {late} within {self.seconds:g} s")
        return DeliveryError(reason, f"{url}: {type(error).__name__}: {error}")

    def _expire(self) -> None:
        self.expired.set()
        for sock in self._sockets():
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def webhook(url: str, secret: str | None = None, deadline_s: float = 10.0) -> Sender:
    """POST the payload as JSON; only a 2xx answer to this POST means accepted.

    Headers: ``Idempotency-Key`` (the notification's key) and ``X-Floorsight-Delivery`` (the
    same on every retry), and with a ``secret`` the HMAC-SHA256 signature and its timestamp
    (:mod:`floorsight.alerts.signing`). Redirects are not followed: a 3xx fails, naming its
    ``Location`` (following one would turn the POST into a GET without the body). The whole
    attempt, from connecting to the answer's headers, ends after ``deadline_s``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url}: a webhook url is http://host/... or https://host/...")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )

    def send(key: str, payload: dict) -> None:
        body = json.dumps(payload, default=str).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "floorsight",
            "Idempotency-Key": key,
            DELIVERY_HEADER: delivery_id(url, key),
        }
        if secret is not None:
            headers |= signed_headers(secret, body, datetime.now(tz=UTC))
        conn = connection(parts.hostname, parts.port, timeout=deadline_s)
        with _Deadline(deadline_s, lambda: [conn.sock]) as deadline:
            try:
                conn.connect()
                deadline.check()
                conn.request("POST", target, body=body, headers=headers)
                response = conn.getresponse()
                status, location = response.status, response.getheader("Location")
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise deadline.failure(url, e, "unreachable", "gave no complete answer") from None
            finally:
                conn.close()
        if 300 <= status < 400:
            raise DeliveryError(
                "redirect",
                f"{url} answered {status} redirecting to {location or '(no Location)'};"
                " redirects are not followed: point the destination at the final url",
            )
        if not 200 <= status < 300:
            raise DeliveryError(f"http {status}", f"{url} answered {status}")

    return send


def mqtt(
    url: str,
    topic: str,
    timeout_s: float = 5.0,
    user: str | None = None,
    password: str | None = None,
) -> Sender:
    """Publish the body with QoS 1 to ``topic`` (``{line}``, ``{machine_id}`` filled in)."""
    import paho.mqtt.client as paho

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    lock = threading.Lock()

    def send(key: str, payload: dict) -> None:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"floorsight-{key}"[:60])
        if user is not None:
            client.username_pw_set(user, password)
        with lock:
            client.connect(host, port, keepalive=10)
            client.loop_start()
            try:
                name = topic.format(
                    line=payload.get("line") or "", machine_id=payload["machine_id"]
                )
                info = client.publish(name, json.dumps(payload, default=str), qos=1)
                info.wait_for_publish(timeout=timeout_s)
                if not info.is_published():
                    raise ConnectionError(f"mqtt {host}:{port} did not acknowledge {name}")
            finally:
                client.disconnect()
                client.loop_stop()

    return send


def opcua(
    url: str,
    user: str | None = None,
    password: str | None = None,
    timeout_s: float = 5.0,
    *,
    security: str | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    nodes: Mapping[str, OpcuaNodes] | None = None,
) -> Sender:
    """Write the alert's text, and a hold flag for hold causes, on the machine's nodes.

    ``nodes`` names the plant's own nodes per machine (``alarm_text``, ``hold``); each is
    written as the node's own data type (read first). A machine ``nodes`` does not name has
    nothing to write on this server: the notification is accepted and a warning names the
    machine (retrying could not change that). Without ``nodes``, floorsight's own simulator
    nodes: ``<line>.<machine>.AlarmText`` and ``QualityHold`` in ``urn:floorsight:plant``.

    The session uses ``security`` (``POLICY,MODE``), ``cert``/``key`` (default: the client
    certificate generated in the floorsight home) and the login, like ``floorsight run``
    (:mod:`floorsight.opcua_client`). A refused login or certificate, an unknown
    node or a refused write raises a :class:`DeliveryError` whose reason is the server's
    status (``BadUserAccessDenied``); an unreachable server or a dropped connection raises
    one with reason ``unreachable``. The outbox retries both: a certificate trusted later, or
    a server back up, then takes the notification.
    """
    from asyncua import ua

    from floorsight.opcua_client import OpcuaConnectError, OpcuaSecurity, write_values

    session = dataclasses.replace(
        OpcuaSecurity.from_options(
            security, Path(cert) if cert else None, Path(key) if key else None
        ),
        user=user,
        password=password,
    )

    def writes(payload: dict) -> dict[str, object]:
        machine = payload["machine_id"]
        text = f"{payload['severity'].upper()} {payload['type']}: {payload['reason']}"
        if payload["event"] == "cleared":
            text = f"cleared {payload['type']} ({payload['alert_id']})"
        # a hold is released by a person (on the HMI or in the dashboard), not by us
        hold = payload["type"] in HOLD_CAUSES and payload["event"] != "cleared"
        if nodes is None:
            prefix = f"nsu={OPCUA_NAMESPACE};s={payload['line']}.{machine}"
            mapped = OpcuaNodes(alarm_text=f"{prefix}.AlarmText", hold=f"{prefix}.QualityHold")
        elif machine in nodes:
            mapped = nodes[machine]
        else:
            return {}
        out: dict[str, object] = {}
        if mapped.alarm_text is not None:
            out[mapped.alarm_text] = text[:500]
        if hold and mapped.hold is not None:
            out[mapped.hold] = True
        return out

    def send(key: str, payload: dict) -> None:
        values = writes(payload)
        if not values:
            log.warning(
                "OPC-UA destination %s names no nodes for machine %r: notification %s not"
                " written there (add [destinations.<name>.nodes.%s] to the routing file)",
                url,
                payload["machine_id"],
                key,
                payload["machine_id"],
            )
            return
        try:
            write_values(url, session, values, timeout=timeout_s)
        except OpcuaConnectError as e:
            reason = (e.status or "refused").split(" ")[0]
            raise DeliveryError(reason, str(e)) from None
        except ValueError as e:  # a node id the server cannot resolve (no such namespace)
            raise DeliveryError("node", f"{url}: {e}") from None
        except (OSError, TimeoutError, ua.UaError) as e:
            hint = ""
            if session.secure and isinstance(e, ConnectionError):
                # node-opcua, for one, refuses an untrusted certificate by closing the channel
                hint = (
                    f" (if the server is up, it may not trust the client certificate"
                    f" {session.cert}: trust it on the server)"
                )
            raise DeliveryError("unreachable", f"{url}: {type(e).__name__}: {e}{hint}") from None

    return send


def email(
    url: str,
    address: str,
    user: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    deadline_s: float = 10.0,
) -> Sender:
    """Send a plain-text mail through the SMTP server at ``url`` (``smtp://host:port``, or
    ``smtps://`` for TLS from the start; ``starttls`` upgrades a plain connection first).

    With a ``user`` it logs in with ``password``; a password is sent over TLS only, except to
    a server on this machine (loopback). The whole exchange ends after ``deadline_s``.
    """
    parts = urlsplit(url)
    implicit_tls = parts.scheme == "smtps"
    host, port = parts.hostname or "127.0.0.1", parts.port or (465 if implicit_tls else 25)
    if user is not None and not (implicit_tls or starttls or _loopback(host)):
        raise ValueError(
            f"{url}: an SMTP login needs TLS (smtps:// or starttls = true) unless the server"
            " is on this machine"
        )

    def send(key: str, payload: dict) -> None:
        msg = EmailMessage()
        msg["From"] = "floorsight@localhost"
        msg["To"] = address
        msg["Subject"] = (
            f"[{payload['severity']}] {payload['type']} on {payload['machine_id']}: "
            f"{payload['event']}"
        )
        msg["Message-ID"] = message_id(key)
        msg.set_content(json.dumps(payload, indent=2, default=str))
        smtp = (
            smtplib.SMTP_SSL(timeout=deadline_s, context=ssl.create_default_context())
            if implicit_tls
            else smtplib.SMTP(timeout=deadline_s)
        )
        with _Deadline(deadline_s, lambda: [smtp.sock]) as deadline:
            try:
                smtp.connect(host, port)
                deadline.check()
                if starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if user is not None:
                    smtp.login(user, password or "")
                smtp.send_message(msg)
                smtp.quit()
            except (OSError, smtplib.SMTPException, ValueError) as e:
                raise deadline.failure(url, e, "smtp", "did not take the mail") from None
            finally:
                smtp.close()

    return send


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def message_id(key: str) -> str:
    """The e-mail Message-ID of a notification key (only characters a Message-ID allows)."""
    return "<" + re.sub(r"[^A-Za-z0-9.-]", ".", key) + "@floorsight>"


def erp_file(path: str | Path) -> Sender:
    """Drop one JSON file per notification into ``path`` (atomically: write, then rename)."""
    folder = Path(path)

    def send(key: str, payload: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (key.replace("/", "__").replace(":", "_") + ".json")
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(payload, out, default=str, indent=1)
        os.replace(tmp, target)

    return send


_QN_COLUMNS = (
    "notification_key",
    "alert_id",
    "event",
    "type",
    "severity",
    "machine_id",
    "work_order",
    "batch",
    "material_lot",
    "reason",
    "raised_at",
    "body",
)


def erp_table(url: str, password: str | None = None) -> Sender:
    """Insert a quality notification into the ERP database (DuckDB file or PostgreSQL)."""

    def row(key: str, p: dict) -> tuple:
        c = p["context"]
        return (
            key,
            p["alert_id"],
            p["event"],
            p["type"],
            p["severity"],
            p["machine_id"],
            c["work_order"],
            c["batch"],
            c["material_lot"],
            p["reason"],
            p["raised_at"],
            json.dumps(p, default=str),
        )

    cols = ", ".join(_QN_COLUMNS)
    ddl = (
        "CREATE TABLE IF NOT EXISTS quality_notifications (notification_key VARCHAR PRIMARY KEY,"
        " alert_id VARCHAR, event VARCHAR, type VARCHAR, severity VARCHAR, machine_id VARCHAR,"
        " work_order VARCHAR, batch VARCHAR, material_lot VARCHAR, reason VARCHAR,"
        " raised_at VARCHAR, body VARCHAR)"
    )
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        def send(key: str, payload: dict) -> None:
            extra = {"password": password} if password is not None else {}
            with psycopg.connect(url, connect_timeout=5, **extra) as con:
                con.execute(ddl)
                con.execute(
                    f"INSERT INTO quality_notifications ({cols}) VALUES "
                    f"({', '.join(['%s'] * len(_QN_COLUMNS))}) ON CONFLICT DO NOTHING",
                    row(key, payload),
                )

        return send

    import duckdb

    def send_duckdb(key: str, payload: dict) -> None:
        con = duckdb.connect(url)
        try:
            con.execute(ddl)
            con.execute(
                f"INSERT INTO quality_notifications ({cols}) VALUES "
                f"({', '.join(['?'] * len(_QN_COLUMNS))}) ON CONFLICT DO NOTHING",
                row(key, payload),
            )
        finally:
            con.close()

    return send_duckdb


def sender(destination: Destination) -> Sender:
    """The sender for one configured destination; its secret is read now (environment
    variable or private file, :func:`floorsight.config.secret`)."""
    d = destination
    password = _secret(d.password_env, d.password_file)
    if d.kind == "webhook":
        return webhook(d.url, _secret(d.secret_env, d.secret_file), d.deadline_s)
    if d.kind == "mqtt":
        return mqtt(d.url, d.topic, d.deadline_s, d.user, password)
    if d.kind == "opcua":
        return opcua(
            d.url,
            d.user,
            password,
            d.deadline_s,
            security=d.security,
            cert=d.cert,
            key=d.key,
            nodes=d.nodes,
        )
    if d.kind == "email":
        return email(d.url, d.address, d.user, password, d.starttls, d.deadline_s)
    if d.kind == "erp_file":
        return erp_file(d.path)
    return erp_table(d.url, password)


def senders(routing: Routing) -> dict[str, Sender]:
    """A sender per destination of ``routing``; a secret that cannot be read is an error
    naming the destination (:class:`RoutingError`), before anything is sent."""
    out = {}
    for name, destination in routing.destinations.items():
        try:
            out[name] = sender(destination)
        except (SecretError, OSError, ValueError) as e:
            raise RoutingError(f"destination {name!r}: {e}") from None
        if (
            destination.kind == "webhook"
            and destination.secret_env is None
            and (destination.secret_file is None)
        ):
            log.warning(
                "webhook destination %r has no secret_env or secret_file: its requests are not"
                " signed, so its receiver cannot tell them from forged ones",
                name,
            )
    return out


def _secret(env: str | None, file: str | None) -> str | None:
    if env is None and file is None:
        return None
    value = secret(env or "", file, required=True)
    if not value:
        raise SecretError(f"the secret in {file or env} is empty")
    return value
