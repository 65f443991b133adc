"""Alert hygiene settings: flap hold, incident gap and muting, as one ``[alerts]`` TOML section.

:class:`AlertHygiene` bundles what turns a machine's raw alerts into what people see:

- ``hold_s``: a cleared alert whose cause flags again within this long reopens as the same alert
  (``alerts.rules.AlertTracker.hold``; 0 raises a new alert at every reopen);
- ``incident_gap_s``: an alert raised within this long of a machine's incident joins it
  (``alerts.incidents.IncidentTracker.gap``); at least ``hold_s``, so the alerts of one fault
  group the same however the windows are batched;
- ``mute``: what mutes or downgrades alerts raised in planned maintenance and setups
  (``alerts.mute.MuteSettings``);
- ``severity``: the severity each cause's alerts start at (default warning; ``capability``
  and ``deviation`` start at info: shown, not paged).

Example section::

    [alerts]
    hold_s = 600
    incident_gap_s = 900
    severity = { capability = "warning", deviation = "info" }

    [alerts.mute]
    action = "downgrade"
    margin_s = 300
    state_categories = ["setup", "planned_stop"]
    unmuted_causes = ["failure_risk"]

>>> hygiene = AlertHygiene.from_toml({"alerts": {"hold_s": 300, "mute": {"action": "off"}}})
>>> hygiene.hold, hygiene.incidents().gap, hygiene.mute.action
(datetime.timedelta(seconds=300), datetime.timedelta(seconds=900), 'off')
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from floorsight.alerts.incidents import DEFAULT_GAP, IncidentTracker
from floorsight.alerts.mute import MuteSettings, MuteWindows
from floorsight.alerts.routing import load_settings
from floorsight.alerts.rules import DEFAULT_HOLD


class AlertHygiene(BaseModel):
    """Flap hold, incident gap and mute settings, with the defaults the modules argue for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hold_s: float = Field(default=DEFAULT_HOLD.total_seconds(), ge=0)
    incident_gap_s: float = Field(default=DEFAULT_GAP.total_seconds(), ge=0)
    mute: MuteSettings = Field(default_factory=MuteSettings)
    #: the severity a cause's alerts start at (a flagged window's own, an SPC rule's, wins);
    #: causes not listed start at warning. ``info`` alerts are stored and shown, not paged by
    #: the default routing, and do not escalate. Default: the two whose precision on the
    #: simulated fault week is far below a pager's (docs/accuracy.md): a rolling capability
    #: that stays low for an hour after a fault has passed, and deviation predictions.
    severity: dict[str, Literal["info", "warning", "critical"]] = Field(
        default_factory=lambda: {"capability": "info", "deviation": "info"}
    )

    @model_validator(mode="after")
    def _gap_covers_hold(self) -> AlertHygiene:
        if self.incident_gap_s < self.hold_s:
            raise ValueError(
                f"incident_gap_s ({self.incident_gap_s:g}) is shorter than hold_s"
                f" ({self.hold_s:g}): an alert reopened after the gap would depend on batching"
            )
        return self

    @property
    def hold(self) -> timedelta:
        return timedelta(seconds=self.hold_s)

    @property
    def incident_gap(self) -> timedelta:
        return timedelta(seconds=self.incident_gap_s)

    def incidents(self) -> IncidentTracker:
        """A machine's incident tracker with these settings."""
        return IncidentTracker(gap=self.incident_gap)

    def mute_windows(self) -> MuteWindows:
        """A machine's muted intervals with these settings."""
        return MuteWindows(self.mute)

    @classmethod
    def from_toml(cls, document: Mapping) -> AlertHygiene:
        """The ``[alerts]`` section of a parsed TOML document (defaults without one)."""
        return cls.model_validate(document.get("alerts", {}))


class AlertHygieneError(ValueError):
    """The settings file cannot be used; the message names the file and what is wrong."""


def load_alert_hygiene(path: Path) -> AlertHygiene:
    """Read the ``[alerts]`` section of a TOML file; errors name the file and the entry."""
    return load_settings(path, AlertHygiene.from_toml, AlertHygieneError, ("alerts",))
