"""Alert rows -> notifications: which events to send, to whom, with which body.

The pipeline rewrites an alert row every time the alert is updated; people need to hear only
when something changes for them. Each alert row yields these **events**, each sent once:

- ``opened``: the alert exists (sent with its first row);
- ``critical``: it became critical (it lasted, or the rule says so);
- ``cleared``: the condition is over (the pipeline saw normal windows again);
- ``escalated``: nobody acknowledged it in time (added by the dispatcher, not here).

The idempotency key of a notification is ``<alert_id>/<event>``: the outbox stores each
(destination, key) once, so replaying the same alert rows after a restart sends nothing twice,
and a receiver that sees a key again can drop it. A ``cleared`` key carries the clear's time
(``<alert_id>/cleared/<cleared_at>``): an alert that flags again within the flap hold goes on
as the same alert (``alerts.rules``), and its later clear is news too.

The body (``schema_version`` 1, documented in ``docs/alerts.md``) carries the alert, the roles
it is routed to, and its ERP context: machine line, work order, product, batch, material lot,
and the cascade: for a material-lot problem every batch made from the lot, their customer
orders and shipments; for a failure risk the work orders planned on the machine and the
customer orders whose due dates they put at risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from floorsight.alerts.cascade import Cascade, batch_cascade, lot_cascade, machine_cascade
from floorsight.alerts.routing import Routing
from floorsight.records import Severity

SCHEMA_VERSION = 1

#: causes whose problem travels with the material: the hold reaches everything made from it
MATERIAL_CAUSES = frozenset({"order_offset"})
#: causes that take the machine out of production: planned work is at risk
MACHINE_CAUSES = frozenset({"failure_risk"})


@dataclass(frozen=True)
class Notification:
    destination: str
    key: str
    payload: dict


def events(alert: dict) -> list[str]:
    out = ["opened"]
    if alert["severity"] == Severity.CRITICAL:
        out.append("critical")
    if alert.get("cleared_at") is not None:
        out.append("cleared")
    return out


def notifications(
    alerts: pl.DataFrame, routing: Routing, tables: dict[str, pl.DataFrame]
) -> list[Notification]:
    """Every (destination, event) notification the alert rows call for."""
    out = []
    lines = _lines(tables)
    for alert in alerts.iter_rows(named=True):
        line = lines.get(alert["machine_id"], "")
        roles = routing.roles_for(alert["cause"], line, alert["severity"])
        if not roles:
            continue
        context = alert_context(alert, line, tables)
        for event in events(alert):
            payload = body(alert, event, roles, context)
            for destination in routing.destinations_for(roles):
                out.append(Notification(destination, payload["idempotency_key"], payload))
    return out


def body(alert: dict, event: str, roles: list[str], context: dict) -> dict:
    """The JSON body every destination receives (webhooks as is, others their own way)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": _key(alert, event),
        "event": event,
        "alert_id": alert["alert_id"],
        "type": alert["cause"],
        "severity": alert["severity"],
        "machine_id": alert["machine_id"],
        "line": context["line"],
        "first_seen": _iso(alert["first_seen"]),
        "raised_at": _iso(alert["raised_at"]),
        "last_seen": _iso(alert["last_seen"]),
        "cleared_at": _iso(alert.get("cleared_at")),
        "score": alert["score"],
        "reason": alert["reason"],
        "evidence": alert["evidence"],
        "roles": roles,
        "context": context,
    }


def _key(alert: dict, event: str) -> str:
    if event == "cleared":
        return f"{alert['alert_id']}/cleared/{alert['cleared_at']:%Y%m%dT%H%M%SZ}"
    return f"{alert['alert_id']}/{event}"


def alert_context(alert: dict, line: str, tables: dict[str, pl.DataFrame]) -> dict:
    """Work order, product, batch, lot and the cascade of what the alert touches."""
    batch = _batch_of(alert["work_order"], tables)
    cascade: Cascade | None = None
    if "genealogy" in tables and "batches" in tables and "customer_orders" in tables:
        if alert["cause"] in MATERIAL_CAUSES and alert["material_lot"]:
            cascade = lot_cascade(alert["material_lot"], tables)
        elif alert["cause"] in MACHINE_CAUSES:
            cascade = machine_cascade(alert["machine_id"], alert["raised_at"], tables)
        elif batch:
            cascade = batch_cascade(batch, tables)
    return {
        "line": line,
        "work_order": alert["work_order"],
        "product": alert["product"],
        "batch": batch,
        "material_lot": alert["material_lot"],
        "cascade": _jsonable(cascade.as_dict()) if cascade is not None else None,
    }


def _batch_of(work_order: str, tables: dict[str, pl.DataFrame]) -> str:
    batches = tables.get("batches")
    if batches is None or not work_order:
        return ""
    hit = batches.filter(pl.col("work_order") == work_order)
    return hit["batch_id"][0] if hit.height else ""


def _lines(tables: dict[str, pl.DataFrame]) -> dict[str, str]:
    machines = tables.get("machines")
    if machines is None or "line" not in machines.columns:
        return {}
    return dict(machines.select("machine_id", "line").iter_rows())


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
