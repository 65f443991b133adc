"""Alerts of one machine: its models' flags turned into alerts, as one object the dataflow keeps.

The dataflow's ``score`` step holds one :class:`MachineAlerting` per machine (so its state is
part of Bytewax's recovery snapshots), feeds it the machine's closed windows, and writes what it
returns: score rows for the ``scores`` table, rows of the models' own tables, and alert rows for
the ``alerts`` table. The models are the registry's (``models/registry.py``), run by
:class:`~floorsight.models.engine.MachineModels`; every model with an alert rule
(``MachineModel.alert``) gets an :class:`~floorsight.alerts.rules.AlertTracker` whose cause is
the model's name. What the trackers raise then goes through the machine's hygiene
(``alerts/hygiene.py``): an alert raised in planned maintenance or a setup is muted or
downgraded (:class:`~floorsight.alerts.mute.MuteWindows`, from the CMMS log and the floor's
machine states), and the alerts of one fault across causes form one incident
(:class:`~floorsight.alerts.incidents.IncidentTracker`, the ``incidents`` table). The
benchmarks run the very same object over simulated histories, so the accuracy they report is
the pipeline's.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from floorsight.alerts.feedback import Verdict
from floorsight.alerts.hygiene import AlertHygiene
from floorsight.alerts.incidents import INCIDENT_SCHEMA, IncidentTracker
from floorsight.alerts.mute import MuteWindows
from floorsight.alerts.rules import ALERT_SCHEMA, AlertTracker
from floorsight.models.base import Context, LabResult, Maintenance, SpecLimits
from floorsight.models.engine import MachineModels
from floorsight.models.machine import Segment, by_machine, rows_frame, score_frame, segments_of
from floorsight.models.registry import model_tables

#: however many false alarms, a rule opens after at most this many anomalous windows
MAX_OPEN_AFTER = 6


@dataclass(frozen=True)
class AlertSettings:
    """The alert rules' hysteresis and hygiene, and the models' settings (model name ->
    settings)."""

    open_after: int = 2
    clear_after: int = 3
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hygiene: AlertHygiene = field(default_factory=AlertHygiene)


@dataclass
class MachineOutput:
    """What one machine's windows gave: score rows, alert rows, incident rows, and rows of the
    models' own tables by table name."""

    scores: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)
    tables: dict[str, list[dict]] = field(default_factory=dict)
    #: with ``track_open``: cause -> (window_start, an alert of it open after that window)
    open: dict[str, list[tuple]] = field(default_factory=dict)


@dataclass
class MachineAlerting:
    """The models and alert trackers of one machine; :meth:`update` takes its closed windows."""

    settings: AlertSettings = field(default_factory=AlertSettings)
    models: MachineModels | None = None
    #: model name (the alert cause) -> its alert rule's state
    trackers: dict[str, AlertTracker] = field(default_factory=dict)
    #: labelled resolutions already taken into account (event ids)
    applied: set[str] = field(default_factory=set)
    #: online metrics: windows scored, flagged and alert updates per model
    counts: dict[str, int] = field(default_factory=dict)
    #: windows scored at the last snapshot to the model registry
    snapshot_at: int = 0
    #: the machine's muted intervals (maintenance, setups) and its incidents
    mute: MuteWindows | None = None
    incidents: IncidentTracker | None = None

    def __post_init__(self) -> None:
        s = self.settings
        if self.models is None:
            self.models = MachineModels(s.models)
        if self.mute is None:
            self.mute = s.hygiene.mute_windows()
        if self.incidents is None:
            self.incidents = s.hygiene.incidents()
        if not self.trackers:
            for name, model in self.models.models.items():
                rule = model.alert
                if rule is None:
                    continue
                self.trackers[name] = AlertTracker(
                    cause=name,
                    label=rule.label,
                    open_after=self._base_open_after(name),
                    clear_after=rule.clear_after or s.clear_after,
                    hold=s.hygiene.hold,
                    severity=s.hygiene.severity.get(name, "warning"),
                )

    @property
    def windows(self) -> int:
        """Machine windows scored."""
        return self.models.windows

    def _base_open_after(self, name: str) -> int:
        rule = self.models.models[name].alert
        return rule.open_after or self.settings.open_after

    def metrics(self) -> dict[str, float]:
        """Online metrics for the model registry: counts, flag rates, thresholds, feedback."""
        out: dict[str, float] = {k: float(v) for k, v in self.counts.items()}
        for name, model in self.models.models.items():
            n = self.counts.get(f"{name}.windows", 0)
            if n:
                out[f"{name}.flag_rate"] = self.counts.get(f"{name}.flagged", 0) / n
            for key, value in model.metrics().items():
                out[f"{name}.{key}"] = float(value)
        for name, tracker in self.trackers.items():
            out[f"{name}.open_after"] = float(tracker.open_after)
        out["feedback.labels"] = float(len(self.applied))
        out["maintenance.events"] = float(self.models.maintenance_events)
        return out

    def apply_feedback(self, verdicts: list[Verdict]) -> int:
        """Take people's labels into account (each once); returns how many were new.

        A false alarm makes its rule need one more flagged window to open (up to
        ``MAX_OPEN_AFTER``) and is handed to the model that raised it (the anomaly model
        tightens its threshold); a confirmed problem undoes one such step.
        """
        new = [v for v in verdicts if v.event_id not in self.applied]
        for v in new:
            self.applied.add(v.event_id)
            tracker = self.trackers.get(v.cause)
            if tracker is None:
                continue
            if v.label == "false_alarm":
                tracker.open_after = min(tracker.open_after + 1, MAX_OPEN_AFTER)
            elif v.label == "true_problem":
                tracker.open_after = max(tracker.open_after - 1, self._base_open_after(v.cause))
            self.models.models[v.cause].feedback(v.label)
        return len(new)

    def update(
        self,
        features: pl.DataFrame,
        context: Context | None = None,
        maintenance: list[Maintenance] | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """Score one machine's closed windows; returns (score rows, alert rows or None)."""
        out = self.update_segments(segments_of(features), context, maintenance)
        alerts = rows_frame(out.alerts, ALERT_SCHEMA) if out.alerts else None
        return score_frame(out.scores), alerts

    def update_segments(
        self,
        segments: list[Segment],
        context: Context | None = None,
        maintenance: list[Maintenance] | None = None,
        track_open: bool = False,
    ) -> MachineOutput:
        """:meth:`update` on the machine's segments (in time order).

        ``context``: the machine's spec limits, lab results and champion scores;
        ``maintenance``: its CMMS log as far as it is known (each event is applied once, to
        every model, before the first window after its end); ``track_open``: record each
        alert rule's state after every window (``MachineOutput.open``, for backtests).
        """
        if maintenance:
            self.mute.add_maintenance(maintenance)
        outputs = self.models.update(segments, context or Context(), maintenance)
        result = MachineOutput()
        c = self.counts
        for name, out in outputs.items():
            for table, rows in out.tables.items():
                result.tables.setdefault(table, []).extend(rows)
            rows = out.scores
            if not rows:
                continue
            result.scores.extend(rows)
            c[f"{name}.windows"] = c.get(f"{name}.windows", 0) + len(rows)
            c[f"{name}.flagged"] = c.get(f"{name}.flagged", 0) + sum(r["is_anomaly"] for r in rows)
            tracker = self.trackers.get(name)
            if tracker is None:
                continue  # scores only
            opened = result.open.setdefault(name, []) if track_open else None
            changed = tracker.update_rows(rows, opened)
            if changed:
                result.alerts.extend(changed)
                c[f"{name}.alert_updates"] = c.get(f"{name}.alert_updates", 0) + len(changed)
        if result.alerts:
            result.alerts = [self.mute.apply(a) for a in result.alerts]
            result.incidents = self.incidents.update(result.alerts)
        return result

    def add_states(self, rows: list[dict]) -> None:
        """The machine's state changes from the floor (``machine_states`` rows), for muting."""
        self.mute.add_states(rows)


@dataclass
class BatchScores:
    """What :func:`score_batch` returns for one batch of closed windows."""

    scores: pl.DataFrame | None
    alerts: pl.DataFrame | None
    #: machine -> end of its newest window in the batch
    machines: dict[str, datetime]
    #: rows of the models' own tables, by table name
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    incidents: pl.DataFrame | None = None


def score_batch(
    machines: dict[str, MachineAlerting],
    features: pl.DataFrame,
    settings: AlertSettings,
    specs: SpecLimits | None = None,
    maintenance: dict[str, list[Maintenance]] | None = None,
    labs: dict[str, list[LabResult]] | None = None,
    verdicts: Callable[[str], list[Verdict]] | None = None,
    champion: dict[str, list[dict]] | None = None,
) -> BatchScores:
    """The closed windows of many machines (a shard's batch) through each machine's models and
    alert rules (``machines`` holds them, new machines are added): one frame of score rows, one
    of alert rows and one per model table for the whole batch, so the per-batch cost is paid
    once, not per machine. ``verdicts(machine_id)``: people's labels of the machine's alerts
    (feedback); ``champion``: the champion's score rows of the batch by machine."""
    # the models allocate many small short-lived objects (score rows, table rows) and hold a
    # large state (every machine's models): the cyclic collector, left on, walks that state
    # again and again within a batch for garbage that reference counting frees anyway. Off
    # for the batch, on again after it (none of this makes reference cycles).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _score_batch(
            machines, features, settings, specs or {}, maintenance, labs, verdicts, champion
        )
    finally:
        if collecting:
            gc.enable()


def _score_batch(
    machines: dict[str, MachineAlerting],
    features: pl.DataFrame,
    settings: AlertSettings,
    specs: SpecLimits,
    maintenance: dict[str, list[Maintenance]] | None,
    labs: dict[str, list[LabResult]] | None,
    verdicts: Callable[[str], list[Verdict]] | None,
    champion: dict[str, list[dict]] | None,
) -> BatchScores:
    scores: list[dict] = []
    alerts: list[dict] = []
    incidents: list[dict] = []
    tables: dict[str, list[dict]] = {}
    newest: dict[str, datetime] = {}
    for machine_id, segments in by_machine(segments_of(features)).items():
        state = machines.get(machine_id)
        if state is None:
            state = machines[machine_id] = MachineAlerting(settings)
        if verdicts is not None:
            state.apply_feedback(verdicts(machine_id))
        context = Context(
            machine_id,
            specs,
            (labs or {}).get(machine_id, []),
            (champion or {}).get(machine_id, []),
        )
        out = state.update_segments(segments, context, (maintenance or {}).get(machine_id, []))
        scores.extend(out.scores)
        alerts.extend(out.alerts)
        incidents.extend(out.incidents)
        for table, rows in out.tables.items():
            tables.setdefault(table, []).extend(rows)
        newest[machine_id] = max(seg.end for seg in segments)
    specs_by_name = {spec.name: spec for spec in model_tables()}
    return BatchScores(
        score_frame(scores) if scores else None,
        rows_frame(alerts, ALERT_SCHEMA) if alerts else None,
        newest,
        {
            table: rows_frame(rows, specs_by_name[table].polars_schema)
            for table, rows in tables.items()
            if rows
        },
        rows_frame(incidents, INCIDENT_SCHEMA) if incidents else None,
    )


def add_states(
    machines: dict[str, MachineAlerting], states: pl.DataFrame, settings: AlertSettings
) -> None:
    """A shard's machine state changes from the floor to each machine's muting (machines
    not seen yet are added)."""
    for (machine_id,), part in states.partition_by("machine_id", as_dict=True).items():
        state = machines.get(machine_id)
        if state is None:
            state = machines[machine_id] = MachineAlerting(settings)
        state.add_states(part.select("since", "state", "category").to_dicts())
