"""The floorsight dataflow: readings -> checked -> context -> windows -> scores -> alerts -> DuckDB.

Items are polars frames, never single readings: a batch of readings crosses each step as one
frame, so Python runs per batch and per window, not per reading. Every stateful step (context
join, windows, models) is keyed by shard, a fixed group of machines (``pipelines/shards.py``),
so a batch costs a few calls however many machines it holds and stays on the worker that read
it; inside the score step each machine has its own models, run once per batch of its closed
windows. The logic lives in plain
libraries (``features``, ``models``, ``alerts``, ``pipelines.validate``, ``pipelines.context``);
this module only wires them.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import bytewax.operators as op
import polars as pl
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import Sink

from floorsight.alerts import ALERTS
from floorsight.alerts.engine import AlertSettings, MachineAlerting, add_states, score_batch
from floorsight.alerts.feedback import FeedbackStore
from floorsight.alerts.hygiene import AlertHygiene
from floorsight.alerts.routing import Routing
from floorsight.alerts.tables import INCIDENTS
from floorsight.features import FEATURES, WindowAggregator
from floorsight.features.expectations import VALIDATION_RESULTS, reports_frame
from floorsight.metrics import HEALTH, METRICS
from floorsight.models import SCORES
from floorsight.models.context import (
    lab_results_by_machine,
    maintenance_events,
    spec_limits_dict,
)
from floorsight.models.registry import model_tables
from floorsight.pipelines.context import ContextHold, ContextStore, ErpContext
from floorsight.pipelines.model_snapshots import MlflowSnapshotSink, ModelSnapshot
from floorsight.pipelines.notify_sink import NotifySink
from floorsight.pipelines.shards import SHARDS, by_shard
from floorsight.pipelines.signals import SignalRows, SignalTracker, StateTable, check_signals
from floorsight.pipelines.sink import DuckDBSink, TableRows
from floorsight.pipelines.tables import (
    DEAD_LETTERS,
    MACHINE_STATES,
    PART_COUNTS,
    SPEC_LIMITS,
    WORK_ORDERS,
)
from floorsight.pipelines.validate import (
    Catalogue,
    Checked,
    ReadingRules,
    check_batch,
    dead_letters,
)
from floorsight.records import Signals
from floorsight.retention import Retention
from floorsight.storage import COPIED_PREFIX, Database

if TYPE_CHECKING:  # scikit-learn and MLflow load only when a champion is configured
    from floorsight.models.champion import ChampionScorer

log = logging.getLogger("floorsight.flow")

#: Every table the pipeline writes.
TABLES = [
    FEATURES,
    SCORES,
    ALERTS,
    INCIDENTS,
    DEAD_LETTERS,
    WORK_ORDERS,
    SPEC_LIMITS,
    VALIDATION_RESULTS,
    MACHINE_STATES,
    PART_COUNTS,
    *model_tables(),
]


@dataclass(frozen=True)
class NotifySettings:
    """Where alerts are routed: the outbox file and the routing rules."""

    outbox: Path
    routing: Routing


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
    #: every model's settings by model name (``models/registry.py``); the two above are the
    #: anomaly model's ``threshold`` and ``grace_period`` unless set here
    models: dict = field(default_factory=dict)
    alert_open_after: int = 2
    alert_clear_after: int = 3
    #: flap hold, incidents and muting (the ``[alerts]`` section of the models settings file)
    hygiene: AlertHygiene = field(default_factory=AlertHygiene)
    flush_interval: timedelta = timedelta(seconds=1)
    #: route alerts to people and systems (None: alerts go to the DuckDB table only)
    notify: NotifySettings | None = None
    #: log the online models' state and metrics to this MLflow store (None: don't)
    mlflow_uri: str | None = None
    #: ... every this many scored windows of a machine
    snapshot_windows: int = 360
    #: machines are grouped into this many shards for the per-reading steps: one per worker
    #: spreads them over the workers (recovery state is kept per shard: resume with the same)
    shards: int = SHARDS
    #: keep recovery snapshots of the state (off when the run has no recovery store: Bytewax
    #: asks every stateful step for a snapshot each epoch all the same, and copying the models
    #: of every machine each epoch costs more than scoring them)
    recovery: bool = True
    #: how machine states from the floor are classified (PackML codes and common words unless
    #: the plant's own table is given: ``--states``)
    states: StateTable = field(default_factory=StateTable)
    #: delete rows older than their table's retention behind the newest event time (None: keep
    #: everything; ``floorsight.retention``)
    retention: Retention | None = None

    @property
    def alerting(self) -> AlertSettings:
        """The thresholds and hysteresis of every machine's models and alert rules."""
        anomaly = {"threshold": self.anomaly_threshold, "grace_period": self.grace_windows}
        models = {**self.models, "anomaly": {**anomaly, **self.models.get("anomaly", {})}}
        return AlertSettings(
            open_after=self.alert_open_after,
            clear_after=self.alert_clear_after,
            models=models,
            hygiene=self.hygiene,
        )


def _per_version(frame_of, derive):
    """``derive(frame)`` recomputed only when ``frame_of()`` returns another frame.

    The cache holds the frame its value was derived from and compares by identity: an ``id``
    alone can be reused by a new frame once the old one is freed (a reload), which would then
    get the old frame's value.
    """
    derived: list = []  # [frame, derive(frame)] once computed

    def get():
        frame = frame_of()
        if not derived or derived[0] is not frame:
            derived[:] = [frame, derive(frame)]
        return derived[1]

    return get


class ContextMirror:
    """Which context the database's copy (``work_orders``, ``spec_limits``, ``erp_*``) holds.

    :func:`mirror_context` writes the first one before the flow starts; afterwards the first
    shard to see a reloaded context (one object per load, held here so that it stays itself)
    sends its tables to the sink, so dashboards and notebooks see what the flow joins with.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: ErpContext | None = None

    def hold(self, erp: ErpContext) -> None:
        with self._lock:
            self._held = erp

    def due(self, erp: ErpContext) -> bool:
        """True once for each context that is not the one the database holds."""
        with self._lock:
            if erp is self._held:
                return False
            self._held = erp
            return True


def context_tables(erp: ErpContext) -> list[TableRows]:
    """The database's copy of one context: work orders and spec limits (upserted on their
    keys) and every other table as ``erp_<name>`` (replaced whole: see ``Database.upsert``)."""
    return [
        ("work_orders", erp.work_orders),
        ("spec_limits", erp.spec_limits),
        *((f"{COPIED_PREFIX}{name}", frame) for name, frame in erp.records.items()),
    ]


def mirror_context(
    context: ContextStore, db_path: Path, mirror: ContextMirror | None = None
) -> None:
    """Copy the current ERP context into the database before the flow starts writing it."""
    erp = context.current()
    if mirror is not None:
        mirror.hold(erp)
    HEALTH.write_began()  # a file held by another process holds the start here: /healthz says so
    try:
        _mirror(context, db_path, erp)
    finally:
        HEALTH.write_ended()


def _mirror(context: ContextStore, db_path: Path, erp: ErpContext) -> None:
    # no give-up: a notebook holding the file at start delays the start, never ends it
    db = Database(db_path, TABLES, lock_timeout_s=None)
    db.create()
    dead = context.take_dead()
    reports = context.take_reports()
    frames = {
        "work_orders": [erp.work_orders],
        "spec_limits": [erp.spec_limits],
        "dead_letters": [dead] if dead is not None else [],
        "validation_results": [reports_frame(reports)] if reports else [],
    }
    began = time.monotonic()
    db.upsert(frames)
    METRICS.committed(frames, time.monotonic() - began)
    if dead is not None:
        METRICS.table_rows("dead_letters", dead)
    # the rest of the context (lots, genealogy, maintenance log, lab results, ...) as erp_* tables
    for name, frame in erp.records.items():
        db.replace_table(f"{COPIED_PREFIX}{name}", frame)


def _snapshot(state: object, recovery: bool) -> bytes | None:
    """A recovery snapshot: the state pickled (immutable, and far cheaper than a deep copy);
    None when the run keeps no snapshots."""
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL) if recovery else None


def _resume(snapshot: bytes | None) -> object | None:
    return pickle.loads(snapshot) if snapshot is not None else None


class _PickledLogic(StatefulLogic[pl.DataFrame, tuple, bytes | None]):
    """A Bytewax logic whose ``state`` is snapshotted pickled, and only when the run keeps
    recovery snapshots (the builder gets the pickle back: :func:`_resume`)."""

    state: object
    recovery: bool

    def snapshot(self) -> bytes | None:
        return _snapshot(self.state, self.recovery)


class _WindowLogic(_PickledLogic):
    """Bytewax shell around one shard's :class:`WindowAggregator`."""

    #: at most one log line about dropped duplicates per this many seconds
    DUPLICATES_LOG_EVERY_S = 60.0

    def __init__(self, aggregator: WindowAggregator, recovery: bool) -> None:
        self.state = self.aggregator = aggregator
        self.recovery = recovery
        self._logged_duplicates = aggregator.duplicates
        self._logged_at = -float("inf")

    def _log_duplicates(self, force: bool = False) -> None:
        """Say how many exact duplicates the windows dropped (at-least-once sources send them as
        normal traffic: a count, not a warning)."""
        new = self.aggregator.duplicates - self._logged_duplicates
        now = time.monotonic()
        if new and (force or now - self._logged_at >= self.DUPLICATES_LOG_EVERY_S):
            log.info(
                "windows dropped %d exact duplicate readings (%d in all)",
                new,
                self.aggregator.duplicates,
            )
            self._logged_duplicates, self._logged_at = self.aggregator.duplicates, now

    def on_item(self, value: pl.DataFrame) -> tuple[list[tuple[str, pl.DataFrame]], bool]:
        features, late = self.aggregator.push(value)
        self._log_duplicates()
        out = []
        if features is not None:
            out.append(("features", features))
        if late is not None:
            out.append(("late", late))
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[str, pl.DataFrame]], bool]:
        self._log_duplicates(force=True)
        features = self.aggregator.flush()
        return ([("features", features)] if features is not None else []), StatefulLogic.RETAIN


class _ContextLogic(_PickledLogic):
    """Bytewax shell around one shard's :class:`ContextHold`."""

    def __init__(
        self,
        context: ContextStore,
        state: bytes | None,
        hold: timedelta,
        recovery: bool,
        mirror: ContextMirror | None = None,
    ) -> None:
        self.context = context
        self.state = self.hold = _resume(state) or ContextHold(hold)
        self.recovery = recovery
        self.mirror = mirror

    def on_item(self, value: pl.DataFrame) -> tuple[list[tuple[str, object]], bool]:
        erp = self.context.current()
        out: list[tuple[str, object]] = []
        if self.mirror is not None and self.mirror.due(erp):
            out.append(("context_tables", context_tables(erp)))  # a reload: the copy follows
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


class _SignalLogic(_PickledLogic):
    """Bytewax shell around one shard's :class:`SignalTracker` (last states and counters)."""

    def __init__(self, state: bytes | None, recovery: bool) -> None:
        self.state = self.tracker = _resume(state) or SignalTracker()
        self.recovery = recovery

    def on_item(self, value: pl.DataFrame) -> tuple[list[SignalRows], bool]:
        return [self.tracker.push(value)], StatefulLogic.RETAIN


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """What the score step gives for one batch of a shard's closed windows."""

    scores: pl.DataFrame | None
    alerts: pl.DataFrame | None
    incidents: pl.DataFrame | None
    #: rows of the models' own tables (``capability``, ``drift`` ...) by table name
    tables: dict[str, pl.DataFrame]
    snapshots: list[ModelSnapshot]


@dataclass(frozen=True, slots=True)
class ClosedWindows:
    """Score step input: feature rows of the windows a shard's machines closed."""

    frame: pl.DataFrame


@dataclass(frozen=True, slots=True)
class StateChanges:
    """Score step input: machine state changes from the floor (``machine_states`` rows)."""

    frame: pl.DataFrame


class _ScoreLogic(_PickledLogic):
    """Bytewax shell around one shard's machines, each a :class:`MachineAlerting` (their
    models and alert trackers are the state: recovery snapshots keep them). Keyed by shard like
    the steps before it, so a batch stays on its worker and costs one call."""

    def __init__(self, state: dict[str, MachineAlerting], score, states, recovery: bool) -> None:
        self.state = state
        self.score = score
        self.states = states
        self.recovery = recovery

    def on_item(self, value: ClosedWindows | StateChanges) -> tuple[list[ScoredBatch], bool]:
        if isinstance(value, StateChanges):
            self.states(self.state, value.frame)
            return [], StatefulLogic.RETAIN
        return [self.score(self.state, value.frame)], StatefulLogic.RETAIN


def _count_in(source: str, item: object) -> None:
    """The metrics of one item from the source: its readings (valid or not) and newest time."""
    if isinstance(item, Signals):
        frame = item.frame
        METRICS.delivered(source, 0, frame["ts"].max() if frame.height else None)
        if frame.height:
            HEALTH.delivered()
        return
    if isinstance(item, Checked):
        ok, rows = item.ok, item.ok.height + (item.dead.height if item.dead is not None else 0)
    else:
        ok, rows = item, item.height
    METRICS.delivered(source, rows, ok["ts"].max() if ok.height else None)


def _count_rows(_step: str, item: tuple[str, TableRows]) -> None:
    table, frame = item[1]
    METRICS.table_rows(table, frame)


def sink_settings(settings: PipelineSettings) -> dict:
    """The DuckDB sink's settings from the pipeline's (one file or a per-process store)."""
    return {
        "flush_interval": settings.flush_interval,
        "recovery": settings.recovery,
        "retention": settings.retention,
        "outbox": settings.notify.outbox if settings.notify is not None else None,
    }


def build_flow(
    source: Source[pl.DataFrame],
    context: ContextStore,
    db_path: Path,
    settings: PipelineSettings = PipelineSettings(),
    flow_id: str = "floorsight",
    sink: Sink[tuple[str, TableRows]] | None = None,
    champion: ChampionScorer | None = None,
    source_name: str = "readings",
) -> Dataflow:
    """The dataflow from a source of reading frames to the DuckDB tables in ``db_path``.

    ``sink`` replaces the default :class:`DuckDBSink` on ``db_path`` (for instance one that
    reports its commits, to measure latency). With ``champion``, the MLflow champion scores
    every machine's closed windows in the score step, once per batch, before the online models
    (its rows raise ``champion`` alerts; a new champion version is picked up while the flow
    runs). ``source_name`` labels the readings the source delivers in the metrics
    (``floorsight.metrics``: history, opcua, mqtt).
    """

    def new_windows(state: bytes | None) -> _WindowLogic:
        aggregator = _resume(state) or WindowAggregator(
            settings.window, settings.hop, settings.lateness
        )
        return _WindowLogic(aggregator, settings.recovery)

    alert_settings = settings.alerting

    feedback = FeedbackStore(db_path)
    # each derived once per context version (the context store replaces its frames on reload)
    specs = _per_version(lambda: context.current().spec_limits, spec_limits_dict)
    labs_by_machine = _per_version(
        lambda: context.current().records.get("lab_results"), lab_results_by_machine
    )
    maintenance_by_machine = _per_version(
        lambda: context.current().records.get("maintenance_log"), maintenance_events
    )

    def champion_rows(features: pl.DataFrame) -> dict[str, list[dict]] | None:
        """The champion's score rows of a batch by machine (one call for the whole batch)."""
        rows = champion.score(features) if champion is not None else None
        if rows is None or rows.height == 0:
            return None
        return {
            m: part.to_dicts()
            for (m,), part in rows.partition_by("machine_id", as_dict=True).items()
        }

    def score(machines: dict[str, MachineAlerting], features: pl.DataFrame) -> ScoredBatch:
        """A shard's closed windows through each machine's models and alert rules: one frame
        of scores, one of alert rows (or None), the models' own tables and the model
        snapshots due, per batch."""
        batch = score_batch(
            machines,
            features,
            alert_settings,
            specs(),
            maintenance_by_machine(),
            labs_by_machine(),
            feedback.for_machine,
            champion_rows(features),
        )
        METRICS.alerts_opened(batch.alerts, features)
        snapshots = []
        for machine_id, newest in batch.machines.items() if settings.mlflow_uri else ():
            state = machines[machine_id]
            if state.windows - state.snapshot_at >= settings.snapshot_windows:
                state.snapshot_at = state.windows
                snapshots.append(
                    ModelSnapshot(
                        machine_id, newest, state.windows, state.metrics(), pickle.dumps(state)
                    )
                )
        return ScoredBatch(batch.scores, batch.alerts, batch.incidents, batch.tables, snapshots)

    def states(machines: dict[str, MachineAlerting], changes: pl.DataFrame) -> None:
        """A shard's machine state changes to its machines' muting."""
        add_states(machines, changes, alert_settings)

    def new_scorer(state: bytes | None) -> _ScoreLogic:
        return _ScoreLogic(_resume(state) or {}, score, states, settings.recovery)

    mirror = ContextMirror()
    mirror_context(context, db_path, mirror)
    flow = Dataflow(flow_id)
    items = op.inspect(
        "count_in", op.input("readings", flow, source), lambda _, item: _count_in(source_name, item)
    )
    # pl.DataFrame(machine_id, sensor, ts, value) | Checked(ok, dead) | Signals(frame)
    split = op.branch("split_signals", items, lambda item: isinstance(item, Signals))
    signals = op.map("signal_frames", split.trues, lambda s: s.frame)
    # pl.DataFrame(machine_id, signal, ts, value, text): states and part counters
    batches = split.falses
    # pl.DataFrame(machine_id, sensor, ts, value) | Checked(ok, dead)
    # the machine/sensor catalogue of the context in use: a reload brings its own
    catalogue = _per_version(context.current, Catalogue.from_context)
    checked = op.map(
        "validate", batches, lambda b: check_batch(b, settings.rules, "readings", catalogue())
    )
    # Checked(ok, dead)
    rejected = op.filter_map("rejected", checked, lambda c: c.dead)
    valid = op.filter_map("valid", checked, lambda c: c.ok if c.ok.height else None)
    keyed = op.flat_map("key_by_shard", valid, lambda f: by_shard(f, settings.shards))
    # (shard key, readings of that shard's machines)
    with_context = op.stateful(
        "join_context",
        keyed,
        lambda state: _ContextLogic(
            context, state, settings.context_hold, settings.recovery, mirror
        ),
    )
    # (shard key, ("joined", readings + work_order, product, material_lot, batch at event time)
    #  | ("context_dead", context rows rejected when the context files changed)
    #  | ("validation", the context suites' reports of a (re)load)
    #  | ("context_tables", [(table, frame)] of a reloaded context, for the database's copy))
    joined = op.filter_map_value(
        "joined", with_context, lambda t: t[1] if t[0] == "joined" else None
    )
    context_dead = op.filter_map(
        "context_dead", with_context, lambda kv: kv[1][1] if kv[1][0] == "context_dead" else None
    )
    validations = op.filter_map(
        "validation", with_context, lambda kv: kv[1][1] if kv[1][0] == "validation" else None
    )
    copied = op.flat_map(
        "context_tables",
        with_context,
        lambda kv: [(t, (t, f)) for t, f in kv[1][1]] if kv[1][0] == "context_tables" else [],
    )
    # (table, (table, frame)): the database's copy of a reloaded context
    windowed = op.stateful("windows", joined, new_windows)
    # (shard key, ("features" | "late", frame))
    features = op.filter_map_value(
        "features", windowed, lambda t: t[1] if t[0] == "features" else None
    )
    late = op.filter_map_value("late", windowed, lambda t: t[1] if t[0] == "late" else None)
    # (shard key, feature rows of the windows its machines closed)
    # the signal branch: machine states and part counters, checked, then tracked per shard
    checked_signals = op.map(
        "check_signals",
        signals,
        lambda f: check_signals(f, settings.rules, settings.states, catalogue()),
    )
    # Checked(ok: signals with state name and category, dead)
    valid_signals = op.filter_map(
        "valid_signals", checked_signals, lambda c: c.ok if c.ok.height else None
    )
    signals_keyed = op.flat_map(
        "signals_by_shard", valid_signals, lambda f: by_shard(f, settings.shards)
    )
    tracked = op.stateful(
        "signal_states", signals_keyed, lambda state: _SignalLogic(state, settings.recovery)
    )
    # (shard key, SignalRows(state changes, counted parts, late samples))
    # the score step takes the closed windows and the state changes (setups mute alerts)
    score_inputs = op.merge(
        "score_inputs",
        op.map_value("closed_windows", features, ClosedWindows),
        op.filter_map_value(
            "state_changes",
            tracked,
            lambda r: StateChanges(r.states) if r.states is not None and r.states.height else None,
        ),
    )
    # (shard key, ClosedWindows(features) | StateChanges(machine_states rows))
    scored = op.stateful("score", score_inputs, new_scorer)
    # (shard key, ScoredBatch(scores, alerts, incidents, tables, snapshots))

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
        copied,
        op.filter_map("w_late", late_rows, lambda kv: rows("dead_letters")(kv[1])),
        op.filter_map("w_features", features, lambda kv: rows("features")(kv[1])),
        op.filter_map("w_scores", scored, lambda kv: rows("scores")(kv[1].scores)),
        op.filter_map("w_alerts", scored, lambda kv: rows("alerts")(kv[1].alerts)),
        op.filter_map("w_incidents", scored, lambda kv: rows("incidents")(kv[1].incidents)),
        op.flat_map(
            "w_model_tables",
            scored,
            lambda kv: [(t, (t, f)) for t, f in kv[1].tables.items() if f.height],
        ),
        op.filter_map("w_validation", validations, rows("validation_results")),
    ]
    out += [
        op.filter_map(
            "w_signals_rejected", checked_signals, lambda c: rows("dead_letters")(c.dead)
        ),
        op.filter_map("w_machine_states", tracked, lambda kv: rows("machine_states")(kv[1].states)),
        op.filter_map("w_part_counts", tracked, lambda kv: rows("part_counts")(kv[1].counts)),
        op.filter_map("w_signals_late", tracked, lambda kv: rows("dead_letters")(kv[1].dead)),
    ]
    if settings.notify is not None:
        alert_rows = op.filter_map("alert_rows", scored, lambda kv: kv[1].alerts)
        notify = NotifySink(settings.notify.outbox, settings.notify.routing, context)
        op.output("notify", alert_rows, notify)
    if settings.mlflow_uri:
        snapshots = op.flat_map("model_snapshots", scored, lambda kv: kv[1].snapshots)
        op.output("mlflow", snapshots, MlflowSnapshotSink(settings.mlflow_uri))
    tables = op.inspect("count_rows", op.merge("tables", *out), _count_rows)
    # (table, (table, frame))
    sink = sink or DuckDBSink(db_path, TABLES, **sink_settings(settings))
    op.output("duckdb", tables, sink)
    return flow
