"""The floorsight dataflow: readings -> checked -> context -> windows -> scores -> alerts -> DuckDB.

Items are polars frames, never single readings: a batch of readings crosses each step as one
frame, so Python runs per batch and per window, not per reading. The logic lives in plain
libraries (``features``, ``models``, ``alerts``, ``pipelines.validate``, ``pipelines.context``);
this module only wires them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import bytewax.operators as op
import polars as pl
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic

from floorsight.alerts import ALERTS, AlertTracker
from floorsight.features import FEATURES, WindowAggregator
from floorsight.features.expectations import VALIDATION_RESULTS, reports_frame
from floorsight.models import SCORES, MachineAnomalyModel
from floorsight.models.failure import MachineFailureModel
from floorsight.pipelines.context import ContextHold, ContextStore
from floorsight.pipelines.sink import DuckDBSink, TableRows
from floorsight.pipelines.tables import DEAD_LETTERS, SPEC_LIMITS, WORK_ORDERS
from floorsight.pipelines.validate import ReadingRules, check_batch, dead_letters
from floorsight.storage import Database

if TYPE_CHECKING:  # scikit-learn and MLflow load only when a champion is configured
    from floorsight.models.champion import ChampionScorer

#: Every table the pipeline writes.
TABLES = [FEATURES, SCORES, ALERTS, DEAD_LETTERS, WORK_ORDERS, SPEC_LIMITS, VALIDATION_RESULTS]


@dataclass(frozen=True)
class PipelineSettings:
    """Window lengths, lateness, validation rules and model settings of one pipeline."""

    window: timedelta = timedelta(seconds=10)
    hop: timedelta | None = None
    lateness: timedelta = timedelta(seconds=2)
    #: how long (event time) a reading without a valid work order waits for its context
    context_hold: timedelta = timedelta(seconds=30)
    rules: ReadingRules = field(default_factory=ReadingRules)
    anomaly_threshold: float = 0.9999
    grace_windows: int = 30
    alert_open_after: int = 2
    alert_clear_after: int = 3
    flush_interval: timedelta = timedelta(seconds=1)


def mirror_context(context: ContextStore, db_path: Path) -> None:
    """Copy the current ERP context into the database before the flow starts writing it."""
    erp = context.current()
    db = Database(db_path, TABLES)
    db.create()
    dead = context.take_dead()
    reports = context.take_reports()
    db.upsert(
        {
            "work_orders": [erp.work_orders],
            "spec_limits": [erp.spec_limits],
            "dead_letters": [dead] if dead is not None else [],
            "validation_results": [reports_frame(reports)] if reports else [],
        }
    )
    # the rest of the context (lots, genealogy, maintenance log, lab results, ...) as erp_* tables
    for name, frame in erp.records.items():
        db.replace_table(f"erp_{name}", frame)


class _WindowLogic(StatefulLogic[pl.DataFrame, tuple[str, pl.DataFrame], WindowAggregator]):
    """Bytewax shell around one machine's :class:`WindowAggregator`."""

    def __init__(self, aggregator: WindowAggregator) -> None:
        self.aggregator = aggregator

    def on_item(self, value: pl.DataFrame) -> tuple[list[tuple[str, pl.DataFrame]], bool]:
        features, late = self.aggregator.push(value)
        out = []
        if features is not None:
            out.append(("features", features))
        if late is not None:
            out.append(("late", late))
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[str, pl.DataFrame]], bool]:
        features = self.aggregator.flush()
        return ([("features", features)] if features is not None else []), StatefulLogic.RETAIN

    def snapshot(self) -> WindowAggregator:
        return copy.deepcopy(self.aggregator)


class _ContextLogic(StatefulLogic[pl.DataFrame, tuple[str, pl.DataFrame], ContextHold]):
    """Bytewax shell around one machine's :class:`ContextHold`."""

    def __init__(self, context: ContextStore, state: ContextHold | None, hold: timedelta) -> None:
        self.context = context
        self.hold = state or ContextHold(hold)

    def on_item(self, value: pl.DataFrame) -> tuple[list[tuple[str, pl.DataFrame]], bool]:
        erp = self.context.current()
        out = []
        dead = self.context.take_dead()
        if dead is not None:
            out.append(("context_dead", dead))
        reports = self.context.take_reports()
        if reports:
            out.append(("validation", reports_frame(reports)))
        joined = self.hold.push(erp, value)
        if joined is not None:
            out.append(("joined", joined))
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[str, pl.DataFrame]], bool]:
        joined = self.hold.flush(self.context.current())
        out = [("joined", joined)] if joined is not None else []
        reports = self.context.take_reports(wait=True)  # a short run ends before the verdict
        if reports:
            out.append(("validation", reports_frame(reports)))
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> ContextHold:
        return copy.deepcopy(self.hold)


@dataclass
class _MachineModels:
    """Per-machine model and alert state, kept in the dataflow (part of its recovery state)."""

    model: MachineAnomalyModel
    alerts: AlertTracker
    failure: MachineFailureModel
    failure_alerts: AlertTracker


def build_flow(
    source: Source[pl.DataFrame],
    context: ContextStore,
    db_path: Path,
    settings: PipelineSettings = PipelineSettings(),
    flow_id: str = "floorsight",
    champion: ChampionScorer | None = None,
) -> Dataflow:
    """The dataflow from a source of reading frames to the DuckDB tables in ``db_path``.

    With ``champion``, the MLflow champion scores every machine's closed windows beside the
    online models (its own step; a new champion version is picked up while the flow runs).
    """

    def new_windows(state: WindowAggregator | None) -> _WindowLogic:
        return _WindowLogic(
            state or WindowAggregator(settings.window, settings.hop, settings.lateness)
        )

    def score(state: _MachineModels | None, features: pl.DataFrame):
        state = state or _MachineModels(
            MachineAnomalyModel(
                threshold=settings.anomaly_threshold, grace_period=settings.grace_windows
            ),
            AlertTracker(
                open_after=settings.alert_open_after, clear_after=settings.alert_clear_after
            ),
            MachineFailureModel(),
            AlertTracker(
                cause="failure_risk",
                label="failure risk (vibration rising above its baseline)",
                open_after=1,
                clear_after=settings.alert_clear_after,
            ),
        )
        scores = state.model.score(features)
        alerts = [state.alerts.update(scores)]
        risk = state.failure.score(features)
        if risk is not None:
            alerts.append(state.failure_alerts.update(risk))
            scores = pl.concat([scores, risk], how="vertical_relaxed")
        found = [a for a in alerts if a is not None]
        return state, (scores, pl.concat(found) if found else None)

    mirror_context(context, db_path)
    flow = Dataflow(flow_id)
    batches = op.input("readings", flow, source)
    # pl.DataFrame(machine_id, sensor, ts, value)
    checked = op.map("validate", batches, lambda b: check_batch(b, settings.rules, "readings"))
    # Checked(ok, dead)
    rejected = op.filter_map("rejected", checked, lambda c: c.dead)
    valid = op.filter_map("valid", checked, lambda c: c.ok if c.ok.height else None)
    by_machine = op.flat_map(
        "key_by_machine", valid, lambda f: f.partition_by("machine_id", as_dict=True).items()
    )
    keyed = op.map("machine_key", by_machine, lambda kv: (kv[0][0], kv[1]))
    # (machine_id, readings of that machine)
    with_context = op.stateful(
        "join_context", keyed, lambda state: _ContextLogic(context, state, settings.context_hold)
    )
    # (machine_id, ("joined", readings + work_order, product, material_lot at event time)
    #  | ("context_dead", context rows rejected when the context files changed)
    #  | ("validation", the context suites' reports of a (re)load))
    joined = op.filter_map_value(
        "joined", with_context, lambda t: t[1] if t[0] == "joined" else None
    )
    context_dead = op.filter_map(
        "context_dead", with_context, lambda kv: kv[1][1] if kv[1][0] == "context_dead" else None
    )
    validations = op.filter_map(
        "validation", with_context, lambda kv: kv[1][1] if kv[1][0] == "validation" else None
    )
    windowed = op.stateful("windows", joined, new_windows)
    # (machine_id, ("features" | "late", frame))
    features = op.filter_map_value(
        "features", windowed, lambda t: t[1] if t[0] == "features" else None
    )
    late = op.filter_map_value("late", windowed, lambda t: t[1] if t[0] == "late" else None)
    # (machine_id, feature rows of closed windows)
    scored = op.stateful_map("score", features, score)
    # (machine_id, (scores, alerts | None))

    def rows(table: str):
        return lambda frame: None if frame is None or frame.height == 0 else (table, (table, frame))

    late_rows = op.map_value(
        "late_dead_letters",
        late,
        lambda f: dead_letters(
            f.select("machine_id", "sensor", "ts", "value"),
            "windows",
            reason=f"late: event time is behind a closed window (allowed lateness "
            f"{settings.lateness})",
        ),
    )
    out: list[op.Stream[tuple[str, TableRows]]] = [
        op.filter_map("w_rejected", rejected, rows("dead_letters")),
        op.filter_map("w_context_dead", context_dead, rows("dead_letters")),
        op.filter_map("w_late", late_rows, lambda kv: rows("dead_letters")(kv[1])),
        op.filter_map("w_features", features, lambda kv: rows("features")(kv[1])),
        op.filter_map("w_scores", scored, lambda kv: rows("scores")(kv[1][0])),
        op.filter_map("w_alerts", scored, lambda kv: rows("alerts")(kv[1][1])),
        op.filter_map("w_validation", validations, rows("validation_results")),
    ]
    if champion is not None:
        champion_scores = op.filter_map_value("champion", features, champion.score)
        # (machine_id, champion score rows of the machine's closed windows)
        out.append(op.filter_map("w_champion", champion_scores, lambda kv: rows("scores")(kv[1])))
    tables = op.merge("tables", *out)
    # (table, (table, frame))
    op.output("duckdb", tables, DuckDBSink(db_path, TABLES, flush_interval=settings.flush_interval))
    return flow
