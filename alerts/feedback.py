"""People's verdicts on alerts, fed back to the models that raised them.

When someone resolves an alert in the dashboard they label it ``true_problem`` or
``false_alarm`` (``alert_events``, written by :mod:`floorsight.alerts.lifecycle`). The pipeline
reads those labels every few seconds and hands them to the machine's
:class:`~floorsight.alerts.engine.MachineAlerting`, which makes the rule that raised a false
alarm more demanding (one more anomalous window before it opens, and a stricter score
threshold for the anomaly model), and relaxes it again, step by step, after confirmed problems.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from floorsight.storage import Database, DatabaseLocked


@dataclass(frozen=True)
class Verdict:
    event_id: str
    machine_id: str
    cause: str
    label: str  # "true_problem" | "false_alarm"


@dataclass
class FeedbackStore:
    """Labelled resolutions from the database, re-read at most every ``every_s`` seconds."""

    db_path: Path
    every_s: float = 5.0
    _read_at: float = field(default=-1e18, repr=False)
    _verdicts: dict[str, list[Verdict]] = field(default_factory=dict, repr=False)

    def for_machine(self, machine_id: str) -> list[Verdict]:
        if time.monotonic() - self._read_at >= self.every_s:
            self._read()
        return self._verdicts.get(machine_id, [])

    def _read(self) -> None:
        self._read_at = time.monotonic()
        # a short wait: while another process holds the file, the last verdicts stay in force
        db = Database(self.db_path, lock_timeout_s=1.0)
        if not db.exists():
            return
        try:
            # read-write: the pipeline's own sink writes this file from this process
            with db.write() as con:
                rows = con.execute(
                    "SELECT e.event_id, a.machine_id, a.cause, e.label FROM alert_events e"
                    " JOIN alerts a USING (alert_id) WHERE e.label IS NOT NULL"
                    ' ORDER BY e."at", e.event_id'
                ).fetchall()
        except duckdb.CatalogException:
            return  # nobody has labelled anything yet: the table does not exist
        except DatabaseLocked:
            return  # a reader holds the file: read again next time
        out: dict[str, list[Verdict]] = {}
        for event_id, machine_id, cause, label in rows:
            out.setdefault(machine_id, []).append(Verdict(event_id, machine_id, cause, label))
        self._verdicts = out
