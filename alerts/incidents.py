"""Incidents: the alerts of one machine and one fault, across causes, as one row.

One fault often raises alerts of several causes (a spiking sensor: ``sensor`` and ``anomaly``; a
worn bearing: ``failure_risk`` and ``anomaly``). :class:`IncidentTracker` (one per machine)
groups them: an alert joins the machine's current incident when that incident still has an
open alert, or when the alert's ``first_seen`` lies within ``gap`` of the incident's last
activity (the latest ``last_seen`` or ``cleared_at`` of its alerts); otherwise it opens a new
incident.

An incident row (the :data:`~floorsight.alerts.tables.INCIDENTS` table) lists its causes
(sorted, comma-separated) and alert ids (in order of ``first_seen``), the first and last
flagged window of any of its alerts, the highest severity and score, the summed ``windows`` of
its alerts (one window flagged by two causes counts twice), and the work order, product and
material lot of its first alert. ``closed_at`` is the clear of its last open alert, written
when that alert clears; an alert that joins within ``gap`` (or a cleared alert that reopens,
``alerts.rules``) sets it back to None, so a closed incident stays closed only once ``gap`` has
passed without alerts, and nothing needs a clock.

The incident id is the machine and the first alert's ``first_seen``, so replaying the same
alert rows after a restart rewrites the same incident rows. The grouping is decided by when
each alert first appears: alert rows of one batch are taken in order of ``first_seen``, and as
long as ``gap`` exceeds the alert rules' flap ``hold`` by more than the windows it takes them to
open (the defaults: 15 min against 10 min), the same windows in one batch or in many give the
same incidents.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 4, 6, 6, tzinfo=UTC)
>>> def alert(cause, start_min, end_min):
...     first, last = t0 + timedelta(minutes=start_min), t0 + timedelta(minutes=end_min)
...     return {"alert_id": f"M1:{cause}:{start_min}", "machine_id": "M1", "cause": cause,
...             "severity": "warning", "first_seen": first, "last_seen": last,
...             "cleared_at": last + timedelta(seconds=30), "score": 0.99, "windows": 6,
...             "work_order": "WO-1", "product": "P", "material_lot": "L"}
>>> incidents = IncidentTracker()
>>> [row["causes"] for row in incidents.update([alert("sensor", 0, 30), alert("anomaly", 1, 29)])]
['anomaly,sensor']
>>> [row["incident_id"] for row in incidents.update([alert("anomaly", 120, 130)])]
['M1:incident:20260406T080000Z']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from floorsight.alerts.rules import DEFAULT_HOLD, SEVERITY_RANK
from floorsight.alerts.tables import INCIDENTS

INCIDENT_SCHEMA = INCIDENTS.polars_schema

#: Default incident gap: longer than the flap hold (10 min, ``alerts.rules.DEFAULT_HOLD``) so a
#: reopened alert always finds its incident, and far shorter than the hour between two faults
#: of one machine in the simulated plant.
DEFAULT_GAP = DEFAULT_HOLD + timedelta(minutes=5)

#: alert columns an incident keeps of each of its alerts
_MEMBER = ("cause", "severity", "first_seen", "last_seen", "cleared_at", "score", "windows")


@dataclass
class IncidentTracker:
    """The incidents of one machine; :meth:`update` takes the alert rows its rules changed.

    ``keep``: recent incidents kept, so an update of an older incident's alert (a late reopen)
    still finds it; ``max_alerts``: an incident with that many alerts takes no more (an alert
    that never clears must not swallow every later one of its machine).
    """

    gap: timedelta = DEFAULT_GAP
    keep: int = 4
    max_alerts: int = 50
    #: (incident row, alert_id -> the alert's columns in ``_MEMBER``), oldest first
    _recent: list[tuple[dict, dict[str, dict]]] = field(default_factory=list)

    def update(self, alert_rows: list[dict]) -> list[dict]:
        """Feed alert rows of this machine (each alert's newest row); returns the incident rows
        that changed (rows of :data:`INCIDENT_SCHEMA`)."""
        touched: dict[str, tuple[dict, dict[str, dict]]] = {}
        for alert in sorted(alert_rows, key=lambda a: (a["first_seen"], a["alert_id"])):
            incident, members = entry = self._incident_of(alert)
            members[alert["alert_id"]] = {k: alert[k] for k in _MEMBER}
            touched[incident["incident_id"]] = entry
        out = []
        for incident, members in touched.values():
            _refresh(incident, members)
            out.append(dict(incident))
        return out

    def _incident_of(self, alert: dict) -> tuple[dict, dict[str, dict]]:
        for entry in reversed(self._recent):
            if alert["alert_id"] in entry[1]:
                return entry
        if self._recent:
            incident, members = self._recent[-1]
            if (
                incident["machine_id"] == alert["machine_id"]
                and len(members) < self.max_alerts
                and _takes(members, alert["first_seen"], self.gap)
            ):
                return incident, members
        entry = (_new_incident(alert), {})
        self._recent.append(entry)
        del self._recent[: -self.keep]
        return entry


def incident_id(machine_id: str, first_seen: datetime) -> str:
    return f"{machine_id}:incident:{first_seen:%Y%m%dT%H%M%SZ}"


def _new_incident(alert: dict) -> dict:
    return {
        "incident_id": incident_id(alert["machine_id"], alert["first_seen"]),
        "machine_id": alert["machine_id"],
        "causes": "",
        "alert_ids": "",
        "alerts": 0,
        "severity": alert["severity"],
        "first_seen": alert["first_seen"],
        "last_seen": alert["last_seen"],
        "closed_at": None,
        "score": alert["score"],
        "windows": 0,
        "work_order": alert["work_order"],
        "product": alert["product"],
        "material_lot": alert["material_lot"],
    }


def _takes(members: dict[str, dict], first_seen: datetime, gap: timedelta) -> bool:
    """Whether an alert first seen then joins the incident of ``members``: one of them is still
    open, or the last of them cleared at most ``gap`` before."""
    if any(m["cleared_at"] is None for m in members.values()):
        return True
    return first_seen <= max(m["cleared_at"] for m in members.values()) + gap


def _refresh(incident: dict, members: dict[str, dict]) -> None:
    ms = sorted(members.items(), key=lambda kv: (kv[1]["first_seen"], kv[0]))
    values = [m for _, m in ms]
    incident["causes"] = ",".join(sorted({m["cause"] for m in values}))
    incident["alert_ids"] = ",".join(alert_id for alert_id, _ in ms)
    incident["alerts"] = len(values)
    incident["severity"] = max((m["severity"] for m in values), key=SEVERITY_RANK.__getitem__)
    incident["first_seen"] = values[0]["first_seen"]
    incident["last_seen"] = max(m["last_seen"] for m in values)
    open_ = any(m["cleared_at"] is None for m in values)
    incident["closed_at"] = None if open_ else max(m["cleared_at"] for m in values)
    incident["score"] = max(m["score"] for m in values)
    incident["windows"] = sum(m["windows"] for m in values)
