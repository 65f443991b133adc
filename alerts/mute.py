"""Muting: alerts raised while a machine is in planned maintenance or a setup page nobody.

During a tool change, a repair, planned maintenance or a product setup the process is not
producing as usual: sensors are unplugged, the tool is new, the first parts are trial parts. The
models see it and flag it, and a person on the floor already knows. :class:`MuteWindows` (one
per machine) holds the intervals known from the CMMS maintenance log
(``models.base.Maintenance``: kind, start, end) and from the machine's state changes (the
floor's ``machine_states``: machine_id, since, state, category; a state lasts until the next
change), and :meth:`MuteWindows.apply` marks an alert raised inside one of them, or within
``margin_s`` after it ends (the machine settling):

- action ``mute``: severity ``info``; ``downgrade``: one severity lower (critical -> warning ->
  info); ``off``: nothing is muted. The reason says why (``muted: during planned maintenance
  10:00-10:40``), so the alert is still in the table, the dashboard and the incident.
- An alert that lasts beyond the interval and its margin is the process's, not the setup's:
  from its first update after that, it carries its own severity again (and is paged then).
- ``unmuted_causes`` are never muted. Default: ``failure_risk``, since a failing bearing is not
  caused by a setup, is the costliest alert to miss, and its rule already waits for a health
  index held over several windows. ``sensor`` is muted by default: sensors unplugged or knocked
  during maintenance are expected, and a sensor that stays broken after it outlasts the margin.

What an ``info`` alert reaches depends on the routing: a rule pages only alerts at or above its
``min_severity`` (``alerts.routing.Rule``, default ``info``, so a rule without one pages muted
alerts too); the demo's routing (``routing.default_routing``) pages from ``warning`` up.

Which intervals mute is configurable (:class:`MuteSettings`): maintenance kinds (default the
planned and known work: ``planned_maintenance``, ``maintenance``, ``tool_change``, ``repair``;
not ``failure``, which is a label, not a planned stop) and state categories (default ``setup``
and ``planned_stop``; not ``offline``, since a machine dropping off the network unplanned is
news). Intervals are forgotten an hour after they end (and their margin), and at most
``max_intervals`` of each kind are kept.

>>> from datetime import UTC, datetime, timedelta
>>> from floorsight.models.base import Maintenance
>>> t = datetime(2026, 4, 6, 10, tzinfo=UTC)
>>> windows = MuteWindows()
>>> windows.add_maintenance([Maintenance("planned_maintenance", t, t + timedelta(minutes=40))])
>>> alert = {"cause": "anomaly", "severity": "warning", "reason": "M1: process anomaly",
...          "raised_at": t + timedelta(minutes=5), "last_seen": t + timedelta(minutes=6)}
>>> muted = windows.apply(alert)
>>> muted["severity"], muted["reason"]
('info', 'M1: process anomaly; muted: during planned maintenance 10:00-10:40 UTC')
>>> windows.apply({**alert, "cause": "failure_risk"})["severity"]
'warning'
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from floorsight.models.base import Maintenance
from floorsight.records import Severity

#: an interval is kept this long after it ends (and its margin), for the updates and the clear
#: of the alerts raised in it
RETAIN = timedelta(hours=1)

_LOWER = {
    str(Severity.CRITICAL): str(Severity.WARNING),
    str(Severity.WARNING): str(Severity.INFO),
    str(Severity.INFO): str(Severity.INFO),
}


class MuteSettings(BaseModel):
    """What mutes an alert, and how (the ``[alerts.mute]`` section; see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["mute", "downgrade", "off"] = "mute"
    maintenance_kinds: tuple[str, ...] = (
        "planned_maintenance",
        "maintenance",
        "tool_change",
        "repair",
    )
    state_categories: tuple[str, ...] = ("setup", "planned_stop")
    #: after an interval ends, alerts raised this long after it are muted too
    margin_s: float = Field(default=300.0, ge=0)
    unmuted_causes: tuple[str, ...] = ("failure_risk",)

    @property
    def margin(self) -> timedelta:
        return timedelta(seconds=self.margin_s)


@dataclass
class MuteWindows:
    """The muted intervals of one machine; :meth:`apply` marks an alert raised in one."""

    settings: MuteSettings = field(default_factory=MuteSettings)
    max_intervals: int = 256
    #: (start, end, kind) of the muting maintenance events, by start
    _maintenance: list[tuple[datetime, datetime, str]] = field(default_factory=list)
    #: (since, state, category) of the machine's state changes, by time (muting or not: a
    #: state lasts until the next change)
    _states: list[tuple[datetime, str, str]] = field(default_factory=list)
    #: the newest event time seen (alerts, states), for forgetting
    _newest: datetime | None = None

    def add_maintenance(self, events: Iterable[Maintenance]) -> None:
        """Take CMMS events of the machine (repeats and events already known add nothing)."""
        kinds = self.settings.maintenance_kinds
        for e in events:
            item = (e.start, e.end, e.kind)
            if e.kind in kinds and item not in self._maintenance and not self._expired(e.end):
                insort(self._maintenance, item)
        self._forget()

    def add_states(self, rows: Iterable[dict]) -> None:
        """Take the machine's state changes (``machine_states`` rows: since, state, category)."""
        known = {since for since, _, _ in self._states}
        for row in rows:
            if row["since"] not in known:
                known.add(row["since"])
                insort(self._states, (row["since"], row["state"] or "", row["category"] or ""))
                self._seen(row["since"])
        self._forget()

    def apply(self, alert: dict) -> dict:
        """The alert row as written: unchanged, or a copy muted or downgraded with the reason
        naming the interval. The input is not changed."""
        self._seen(alert["last_seen"])
        s = self.settings
        if s.action == "off" or alert["cause"] in s.unmuted_causes:
            return alert
        found = self._interval_at(alert["raised_at"])
        if found is None:
            return alert
        start, end, what = found
        if end is not None and alert["last_seen"] >= end + s.margin:
            return alert  # it outlasted the interval: the process's own
        until = f"{end:%H:%M}" if end is not None else ""
        during = f"during {what} {start:%H:%M}-{until} UTC"
        if end is not None and alert["raised_at"] >= end:
            during = f"within {s.margin_s / 60:g} min after {what} {start:%H:%M}-{until} UTC"
        if s.action == "mute":
            severity, note = str(Severity.INFO), f"muted: {during}"
        else:
            severity = _LOWER[alert["severity"]]
            note = f"downgraded from {alert['severity']}: {during}"
        return {**alert, "severity": severity, "reason": f"{alert['reason']}; {note}"}

    def _interval_at(self, t: datetime) -> tuple[datetime, datetime | None, str] | None:
        """The muting interval (start, end or None while it lasts, what) that ``t`` falls in
        or within the margin after."""
        margin = self.settings.margin
        for start, end, kind in self._maintenance:
            if start <= t < end + margin:
                return start, end, kind.replace("_", " ")
        categories = self.settings.state_categories
        states = self._states
        for i, (since, state, category) in enumerate(states):
            if category not in categories or since > t:
                continue
            end = states[i + 1][0] if i + 1 < len(states) else None
            if end is None or t < end + margin:
                what = category.replace("_", " ")
                return since, end, f"{what} ({state})" if state and state != category else what
        return None

    def _seen(self, t: datetime) -> None:
        if self._newest is None or t > self._newest:
            self._newest = t

    def _expired(self, end: datetime) -> bool:
        return self._newest is not None and end + self.settings.margin + RETAIN < self._newest

    def _forget(self) -> None:
        self._maintenance = [m for m in self._maintenance if not self._expired(m[1])][
            -self.max_intervals :
        ]
        states = self._states
        # a state change is needed while the state it starts may still matter
        k = 0
        while k + 1 < len(states) and self._expired(states[k + 1][0]):
            k += 1
        self._states = states[k:][-self.max_intervals :]
