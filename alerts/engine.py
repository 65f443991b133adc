"""Every model and alert rule of one machine, as one plain object the dataflow keeps as state.

The dataflow's ``score`` step holds one :class:`MachineAlerting` per machine (so its state is
part of Bytewax's recovery snapshots), feeds it the machine's closed windows, and writes what
it returns: score rows for the ``scores`` table and alert rows for the ``alerts`` table. The
benchmarks run the very same object over simulated histories, so the accuracy they report is
the pipeline's.

Models and the alert cause each one raises:

- ``anomaly``: multivariate z-score per product (``models.machine``), process anomalies;
- ``sensor``: sensor health (``models.sensor_health``): stuck, missing, spiking sensors;
- ``order_offset``: a work order that runs off the product's usual level from its start (bad
  material lot, bad setup), which the anomaly model's re-base at changeover cannot see
  (``models.order_offset``);
- ``drift``: a feature drifting away from its work order's baseline (tool wear, fouling;
  ``models.order_drift``), so changeovers are never drift;
- ``out_of_spec``: a quality characteristic's window mean outside the product's spec limits
  from ERP (``models.spc_monitor``, which also puts it on the product's I-MR chart and names
  every Nelson rule violated, for the SPC dashboard);
- ``deviation`` (scores only, no alert): the quality characteristic predicted from the other
  sensors before the lab measures it, with a prediction interval, lab results as late labels
  (``models.deviation_monitor``);
- ``failure_risk``: degradation of vibration against the product's baseline (``models.failure``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from floorsight.alerts.feedback import Verdict
from floorsight.alerts.rules import ALERT_SCHEMA, AlertTracker
from floorsight.models import MachineAnomalyModel
from floorsight.models.deviation_monitor import DeviationModel, LabResult
from floorsight.models.failure import MachineFailureModel
from floorsight.models.machine import Segment, by_machine, rows_frame, score_frame, segments_of
from floorsight.models.order_drift import OrderDriftModel
from floorsight.models.order_offset import OrderOffsetModel
from floorsight.models.sensor_health import SensorHealthModel
from floorsight.models.spc_monitor import SpcModel, SpecLimits

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: however many false alarms, a rule opens after at most this many anomalous windows
MAX_OPEN_AFTER = 6


@dataclass(frozen=True, slots=True)
class Maintenance:
    """One CMMS event of the machine: ``kind`` is failure, repair, tool_change, maintenance..."""

    kind: str
    start: datetime
    end: datetime


def maintenance_events(log: pl.DataFrame | None) -> dict[str, list[Maintenance]]:
    """The ERP ``maintenance_log`` table by machine."""
    out: dict[str, list[Maintenance]] = {}
    if log is None or log.height == 0:
        return out
    for machine_id, kind, start, end in log.select(
        "machine_id", "kind", "start", "end"
    ).iter_rows():
        out.setdefault(machine_id, []).append(Maintenance(kind, start, end))
    return out


@dataclass(frozen=True)
class AlertSettings:
    """Thresholds and hysteresis of one machine's models and alert rules."""

    anomaly_threshold: float = 0.9999
    grace_windows: int = 30
    open_after: int = 2
    clear_after: int = 3


@dataclass
class MachineAlerting:
    """Models and alert trackers of one machine; :meth:`update` takes its closed windows."""

    settings: AlertSettings = field(default_factory=AlertSettings)
    anomaly: MachineAnomalyModel | None = None
    sensors: SensorHealthModel = field(default_factory=SensorHealthModel)
    orders: OrderOffsetModel = field(default_factory=OrderOffsetModel)
    drift: OrderDriftModel = field(default_factory=OrderDriftModel)
    spc: SpcModel = field(default_factory=SpcModel)
    deviation: DeviationModel = field(default_factory=DeviationModel)
    failure: MachineFailureModel = field(default_factory=MachineFailureModel)
    trackers: dict[str, AlertTracker] = field(default_factory=dict)
    #: labelled resolutions already taken into account (event ids)
    applied: set[str] = field(default_factory=set)
    #: online metrics: windows scored, flagged and alerts opened per model/cause
    counts: dict[str, int] = field(default_factory=dict)
    #: feature batches seen, and the count at the last snapshot to the model registry
    windows: int = 0
    snapshot_at: int = 0
    #: end of the last maintenance event applied
    maintenance_seen: datetime = EPOCH

    def __post_init__(self) -> None:
        s = self.settings
        if self.anomaly is None:
            self.anomaly = MachineAnomalyModel(
                threshold=s.anomaly_threshold, grace_period=s.grace_windows
            )
        if not self.trackers:
            self.trackers = {
                "anomaly": AlertTracker(open_after=s.open_after, clear_after=s.clear_after),
                "sensor": AlertTracker(
                    cause="sensor",
                    label="sensor fault (the measurement, not the process)",
                    open_after=s.open_after,
                    clear_after=s.clear_after,
                ),
                "order_offset": AlertTracker(
                    cause="order_offset",
                    label="work order off the product's usual level (material lot or setup)",
                    open_after=s.open_after,
                    clear_after=1,
                ),
                "drift": AlertTracker(
                    cause="drift",
                    label="process drifting from the work order's baseline (wear, fouling)",
                    open_after=s.open_after,
                    clear_after=s.clear_after,
                ),
                "out_of_spec": AlertTracker(
                    cause="out_of_spec",
                    label="parts out of spec (window mean beyond the ERP spec limits)",
                    open_after=s.open_after,
                    clear_after=s.clear_after,
                ),
                "failure_risk": AlertTracker(
                    cause="failure_risk",
                    label="failure risk (vibration rising above its baseline)",
                    open_after=1,
                    clear_after=s.clear_after,
                ),
            }

    def metrics(self) -> dict[str, float]:
        """Online metrics for the model registry: counts, flag rates, thresholds, feedback."""
        out: dict[str, float] = {k: float(v) for k, v in self.counts.items()}
        for cause in self.trackers:
            n = self.counts.get(f"{cause}.windows", 0)
            if n:
                out[f"{cause}.flag_rate"] = self.counts.get(f"{cause}.flagged", 0) / n
            out[f"{cause}.open_after"] = float(self.trackers[cause].open_after)
        out["anomaly.threshold"] = self.anomaly.threshold
        out["feedback.labels"] = float(len(self.applied))
        return out

    def apply_feedback(self, verdicts: list[Verdict]) -> int:
        """Take people's labels into account (each once); returns how many were new.

        A false alarm makes its rule need one more anomalous window to open (up to
        ``MAX_OPEN_AFTER``) and, for the anomaly model, halves the share of windows it may flag
        (threshold 0.9999 -> 0.99995 ...); a confirmed problem undoes one such step.
        """
        new = [v for v in verdicts if v.event_id not in self.applied]
        for v in new:
            self.applied.add(v.event_id)
            tracker = self.trackers.get(v.cause)
            if tracker is None:
                continue
            base = 1 if v.cause == "failure_risk" else self.settings.open_after
            if v.label == "false_alarm":
                tracker.open_after = min(tracker.open_after + 1, MAX_OPEN_AFTER)
                if v.cause == "anomaly":
                    self.anomaly.threshold = 1.0 - (1.0 - self.anomaly.threshold) / 2
            elif v.label == "true_problem":
                tracker.open_after = max(tracker.open_after - 1, base)
                if v.cause == "anomaly":
                    self.anomaly.threshold = max(
                        1.0 - (1.0 - self.anomaly.threshold) * 2, self.settings.anomaly_threshold
                    )
        return len(new)

    def update(
        self,
        features: pl.DataFrame,
        specs: SpecLimits | None = None,
        maintenance: list[Maintenance] | None = None,
        labs: list[LabResult] | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """Score one machine's closed windows; returns (score rows, alert rows or None).

        ``specs``: the ERP spec limits, (product, characteristic) -> (lsl, target, usl).
        ``maintenance``: the machine's maintenance log (CMMS) as far as it is known; an event
        that ended before a window is applied before that window (each once): a tool change,
        repair or planned maintenance re-bases the anomaly model and restarts the drift
        baseline, like a changeover; a failure is the failure model's label.
        ``labs``: the machine's lab results (ordered by ``available_at``), the deviation
        model's labels, each learned once the windows have passed its ``available_at``.
        """
        scores, alerts = self.update_segments(segments_of(features), specs, maintenance, labs)
        return score_frame(scores), rows_frame(alerts, ALERT_SCHEMA) if alerts else None

    def update_segments(
        self,
        segments: list[Segment],
        specs: SpecLimits | None = None,
        maintenance: list[Maintenance] | None = None,
        labs: list[LabResult] | None = None,
    ) -> tuple[list[dict], list[dict]]:
        """:meth:`update` on the machine's segments (in time order); returns score rows and
        alert rows as dicts."""
        due = sorted(
            (m for m in maintenance or () if m.end > self.maintenance_seen), key=lambda m: m.end
        )
        labs = labs or []
        scores: list[dict] = []
        alerts: list[dict] = []
        rest = segments
        for event in due:
            if not rest or rest[-1].start < event.end:
                break
            k = next(i for i, seg in enumerate(rest) if seg.start >= event.end)
            if k:
                self._update(rest[:k], specs, labs, scores, alerts)
            self._maintenance(event)
            rest = rest[k:]
        if rest:
            self._update(rest, specs, labs, scores, alerts)
        return scores, alerts

    def _maintenance(self, event: Maintenance) -> None:
        self.maintenance_seen = event.end
        if event.kind == "failure":
            self.failure.monitor.learn_failure()
            return
        self.anomaly.rebase()
        self.drift.restart()
        self.counts["maintenance.events"] = self.counts.get("maintenance.events", 0) + 1

    def _update(
        self,
        segments: list[Segment],
        specs: SpecLimits | None,
        labs: list[LabResult],
        scores: list[dict],
        alerts: list[dict],
    ) -> None:
        """Score ``segments`` (in time order): appends score rows and changed alert rows."""
        sensors = self.sensors.score_segments(segments)
        # a faulty measurement must not teach the process model its value
        quarantine = frozenset(r["window_start"] for r in sensors if r["is_anomaly"])
        scored = [
            ("anomaly", self.anomaly.score_segments(segments, quarantine)),
            ("sensor", sensors),
            ("order_offset", self.orders.score_segments(segments)),
            ("drift", self.drift.score_segments(segments)),
            ("out_of_spec", self.spc.score_segments(segments, specs or {})),
            ("failure_risk", self.failure.score_segments(segments)),
            ("deviation", self.deviation.score_segments(segments, specs or {}, labs)),
        ]
        c = self.counts
        self.windows += len({seg.start for seg in segments})
        for cause, rows in scored:
            if not rows:
                continue
            scores.extend(rows)
            c[f"{cause}.windows"] = c.get(f"{cause}.windows", 0) + len(rows)
            flagged = sum(r["is_anomaly"] for r in rows)
            c[f"{cause}.flagged"] = c.get(f"{cause}.flagged", 0) + flagged
            if cause not in self.trackers:
                continue  # scores only (predicted deviations are shown, not paged)
            changed = self.trackers[cause].update_rows(rows)
            if changed:
                alerts.extend(changed)
                c[f"{cause}.alert_updates"] = c.get(f"{cause}.alert_updates", 0) + len(changed)


@dataclass
class BatchScores:
    """What :func:`score_batch` returns for one batch of closed windows."""

    scores: pl.DataFrame | None
    alerts: pl.DataFrame | None
    #: machine -> end of its newest window in the batch
    machines: dict[str, datetime]


def score_batch(
    machines: dict[str, MachineAlerting],
    features: pl.DataFrame,
    settings: AlertSettings,
    specs: SpecLimits | None = None,
    maintenance: dict[str, list[Maintenance]] | None = None,
    labs: dict[str, list[LabResult]] | None = None,
    verdicts: Callable[[str], list[Verdict]] | None = None,
) -> BatchScores:
    """The closed windows of many machines (a shard's batch) through each machine's models and
    alert rules (``machines`` holds them, new machines are added): one frame of score rows and
    one of alert rows for the whole batch, so the per-batch cost is paid once, not per machine.
    ``verdicts(machine_id)``: people's labels of the machine's alerts (feedback)."""
    scores: list[dict] = []
    alerts: list[dict] = []
    newest: dict[str, datetime] = {}
    for machine_id, segments in by_machine(segments_of(features)).items():
        state = machines.get(machine_id)
        if state is None:
            state = machines[machine_id] = MachineAlerting(settings)
        if verdicts is not None:
            state.apply_feedback(verdicts(machine_id))
        s, a = state.update_segments(
            segments,
            specs,
            (maintenance or {}).get(machine_id, []),
            (labs or {}).get(machine_id, []),
        )
        scores.extend(s)
        alerts.extend(a)
        newest[machine_id] = max(seg.end for seg in segments)
    return BatchScores(
        score_frame(scores) if scores else None,
        rows_frame(alerts, ALERT_SCHEMA) if alerts else None,
        newest,
    )
