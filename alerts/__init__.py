"""Alerts: rules that turn model scores into deduplicated alerts, and the table they live in.

- :class:`AlertTracker`: one machine's alert state for one cause (open after N anomalous
  windows, update while it lasts, clear after M normal ones).
- :data:`ALERTS`: the DuckDB table; the pipeline writes evidence, people write status.
- :mod:`~floorsight.alerts.lifecycle`: what people do with an alert (acknowledge, comment,
  resolve with a label, reopen), each action audited in :data:`ALERT_EVENTS`.
"""

from __future__ import annotations

from floorsight.alerts.lifecycle import ALERT_EVENTS, AlertLabel
from floorsight.alerts.rules import ALERT_SCHEMA, AlertTracker, alert_id
from floorsight.alerts.tables import ALERTS

__all__ = ["ALERTS", "ALERT_EVENTS", "ALERT_SCHEMA", "AlertLabel", "AlertTracker", "alert_id"]
