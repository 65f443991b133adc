"""Senders: deliver one notification body to one kind of destination.

A sender is ``send(key, payload)``: it returns when the destination accepted the notification
and raises otherwise (the outbox then retries with backoff). Every sender is idempotent for a
key, or passes the key on so the receiver can be: webhooks get an ``Idempotency-Key`` header,
MQTT messages carry the key in the body, e-mails use it as their Message-ID, the ERP file
drop names the file after it and the ERP table has it as its primary key.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import tempfile
import threading
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

from floorsight.alerts.notify import MATERIAL_CAUSES
from floorsight.alerts.outbox import Sender
from floorsight.alerts.routing import Destination

#: the OPC-UA namespace of the plant's machine nodes (``floorsight.simulators.opcua_server``)
OPCUA_NAMESPACE = "urn:floorsight:plant"
#: causes that put the machine's output on hold (``QualityHold`` = true on the machine's node)
HOLD_CAUSES = MATERIAL_CAUSES | {"anomaly"}


def webhook(url: str, timeout_s: float = 5.0) -> Sender:
    """POST the payload as JSON with an ``Idempotency-Key`` header; 2xx means accepted."""

    def send(key: str, payload: dict) -> None:
        request = urllib.request.Request(
            url,
            data=json.dumps(payload, default=str).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                if not 200 <= response.status < 300:
                    raise ConnectionError(f"{url} answered {response.status}")
        except urllib.error.HTTPError as e:
            raise ConnectionError(f"{url} answered {e.code}") from None

    return send


def mqtt(url: str, topic: str, timeout_s: float = 5.0) -> Sender:
    """Publish the body with QoS 1 to ``topic`` (``{line}``, ``{machine_id}`` filled in)."""
    import paho.mqtt.client as paho

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    lock = threading.Lock()

    def send(key: str, payload: dict) -> None:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"floorsight-{key}"[:60])
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


def opcua(url: str, user: str | None = None, password: str | None = None) -> Sender:
    """Write ``AlarmText`` (and ``QualityHold`` for quality causes) on the machine's node."""
    from asyncua import ua
    from asyncua.sync import Client

    def send(key: str, payload: dict) -> None:
        client = Client(url, timeout=5)
        if user is not None:
            client.set_user(user)
            client.set_password(password or "")
        with client:
            ns = client.get_namespace_index(OPCUA_NAMESPACE)
            prefix = f"ns={ns};s={payload['line']}.{payload['machine_id']}"
            text = f"{payload['severity'].upper()} {payload['type']}: {payload['reason']}"
            if payload["event"] == "cleared":
                text = f"cleared {payload['type']} ({payload['alert_id']})"
            client.get_node(f"{prefix}.AlarmText").write_value(
                ua.Variant(text[:500], ua.VariantType.String)
            )
            if payload["type"] in HOLD_CAUSES and payload["event"] != "cleared":
                # a hold is released by a person (on the HMI or in the dashboard), not by us
                client.get_node(f"{prefix}.QualityHold").write_value(
                    ua.Variant(True, ua.VariantType.Boolean)
                )

    return send


def email(url: str, address: str) -> Sender:
    """Send a plain-text mail through the SMTP server at ``url`` (``smtp://host:port``)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 25

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
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.send_message(msg)

    return send


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


def erp_table(url: str) -> Sender:
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
            with psycopg.connect(url, connect_timeout=5) as con:
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
    """The sender for one configured destination."""
    d = destination
    if d.kind == "webhook":
        return webhook(d.url)
    if d.kind == "mqtt":
        return mqtt(d.url, d.topic)
    if d.kind == "opcua":
        return opcua(d.url, d.user, d.password)
    if d.kind == "email":
        return email(d.url, d.address)
    if d.kind == "erp_file":
        return erp_file(d.path)
    return erp_table(d.url)
