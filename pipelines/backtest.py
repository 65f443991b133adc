"""Backtesting on the pipeline's own engine: what ``floorsight replay`` runs over a history.

The history is a polars frame, in one of two layouts:

- **wide**: one row per time (and entity), one numeric column per sensor (SKAB, NAB, C-MAPSS,
  most plant exports);
- **long**: one row per reading, ``machine_id, sensor, ts, value`` (floorsight's own history,
  ``floorsight simulate --out``).

Its readings go through what the dataflow runs after validation, in event-time order per entity
(machine): the pipeline's window features (:func:`~floorsight.features.window_features`, the
pipeline's window length), every model of the registry (``models/registry.py``, with a models
settings file's values, as ``floorsight run --models``) and the alert rules
(:class:`~floorsight.alerts.engine.MachineAlerting`). Per-row data (one reading per sensor
and row, at any pace: a cycle number is a time too) can run in **row mode**, where each input
row is one window. A work order or product column, when the frame has one, is the row's
context (a changeover re-bases the models, as in the pipeline).

The result has one row per input row, in time order (ties keep the input order):

- ``T`` and ``E`` (the time and entity columns, as given);
- ``anomaly_score``: the score of the window holding the row by one model of the registry
  (``score_model``, default ``anomaly``), 0..1, keeping the ordering of the evidence to the
  top (the models' scores do not saturate: ``models/evidence.py``); 0 for a window the model
  did not judge (its warm-up, an incomplete window);
- ``is_anomaly``: that model's flag of the window;
- ``changepoint``: 1 on the first row of a window where an alert of that model opened or
  cleared (the alert rule's hysteresis: ``open_after`` flagged windows open it,
  ``clear_after`` normal ones clear it);
- ``alert``: the causes of every alert open in the row's window (``;``-joined, in registry
  order), empty when none;
- with a label column, ``prediction``, ``prediction_low`` and ``prediction_high``: the fleet
  label model's prediction (``models/fleet.py``) made before the row's label is learned. A
  label becomes known ``label_delay`` rows later of the same entity; an empty label is
  predicted, never learned.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from floorsight.alerts.engine import AlertSettings, MachineAlerting
from floorsight.features import window_features
from floorsight.models.base import Context
from floorsight.models.context import lab_results_by_machine, maintenance_events, spec_limits_dict
from floorsight.models.machine import Segment, segments_of
from floorsight.models.registry import by_name, check_settings
from floorsight.pipelines.context import ErpContext
from floorsight.records import TIMESTAMP

#: the long layout's columns (floorsight's own history files)
LONG_COLUMNS = ("machine_id", "sensor", "ts", "value")
#: context columns a wide frame may carry (text): a changeover re-bases the models
CONTEXT = ("work_order", "product", "material_lot")
#: the pipeline's window (``floorsight run --window-s``)
PIPELINE_WINDOW = timedelta(seconds=10)
#: windows per entity handed to the engine at once (the engine's batches; equal results)
CHUNK_WINDOWS = 2000
#: the backtest's own column names (a frame with one of them is refused)
RESERVED = frozenset({"_row", "_t", "_entity", "_start"})
#: the entity of a frame without an entity column
SINGLE = "replay"
#: the numeric times a backtest takes (seconds since the epoch, or a count such as cycles):
#: those of a calendar time, years 1 to 9999
NUMERIC_TIME_S = (-62_135_596_800.0, 253_402_300_799.0)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BacktestSettings:
    """What a backtest runs: the pipeline's defaults unless set.

    ``window``: the window length (None: row mode, one window per input row); ``models``: model
    name -> settings (a ``--models`` file's sections); ``open_after`` / ``clear_after``: the
    alert rules' hysteresis; ``score_model``: the model whose score and flag are
    ``anomaly_score`` and ``is_anomaly``; ``labels``: the label model's settings
    (``models.fleet.LabelSettings``; None: its defaults).
    """

    window: timedelta | None = PIPELINE_WINDOW
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    open_after: int = 2
    clear_after: int = 3
    score_model: str = "anomaly"
    labels: Any = None
    #: the ``[alerts]`` hygiene of a models file (``alerts.hygiene.AlertHygiene``; None: defaults)
    hygiene: Any = None
    #: K > 0: ``anomaly_score`` only where the window's score is above every score of the
    #: entity's K windows before it, 0 elsewhere (the evidence that an anomaly *starts* here:
    #: onset benchmarks such as NAB count the first detection in a window only)
    onset: int = 0

    def __post_init__(self) -> None:
        if self.window is not None and self.window <= timedelta(0):
            raise ValueError(f"window must be positive, got {self.window}")
        if self.score_model not in by_name():
            raise ValueError(
                f"no model {self.score_model!r} to score with (models: {', '.join(by_name())})"
            )
        if self.onset < 0:
            raise ValueError(f"onset must be >= 0 windows, got {self.onset}")
        if self.open_after < 1 or self.clear_after < 1:
            raise ValueError("open_after and clear_after must be at least 1 window")
        check_settings(self.models, "backtest models")

    def alert_settings(self) -> AlertSettings:
        if self.hygiene is None:
            return AlertSettings(self.open_after, self.clear_after, self.models)
        return AlertSettings(self.open_after, self.clear_after, self.models, self.hygiene)


def parse_window(text: str) -> timedelta | None:
    """``"row"`` (row mode: None) or a duration: ``10s``, ``500ms``, ``1min``, ``2h``, ``10``
    (seconds).

    >>> parse_window("row"), parse_window("1min"), parse_window("2.5")
    (None, datetime.timedelta(seconds=60), datetime.timedelta(seconds=2, microseconds=500000))
    """
    text = text.strip().lower()
    if text == "row":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min|h)?", text)
    if not m:
        raise ValueError(f"bad window {text!r}: 'row' or a duration such as 10s, 500ms, 1min")
    unit = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}[m.group(2) or "s"]
    window = timedelta(seconds=float(m.group(1)) * unit)
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {text!r}")
    return window


def is_long(frame: pl.DataFrame) -> bool:
    """The frame is in the long layout (``machine_id, sensor, ts, value``)."""
    return all(c in frame.columns for c in LONG_COLUMNS)


def backtest(
    frame: pl.DataFrame,
    time_col: str,
    entity_col: str | None = None,
    label_col: str | None = None,
    label_delay: int = 0,
    settings: BacktestSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    context: ErpContext | None = None,
) -> pl.DataFrame:
    """The pipeline's engine over a history frame; one output row per input row (module doc).

    ``progress(done, total)`` is called as windows are scored (for a progress bar).
    ``context``: the plant's ERP/CMMS context (``floorsight run --context``): its work orders
    are joined to the readings as the pipeline joins them (entities are its machines), its spec
    limits, lab results and maintenance log reach the models.
    """
    settings = settings or BacktestSettings()
    long = is_long(frame) and time_col == "ts"
    if long and entity_col is None:
        entity_col = "machine_id"
    for col in (time_col, entity_col, label_col):
        if col is not None and col not in frame.columns:
            raise ValueError(f"no column {col!r} (columns: {frame.columns})")
    if reserved := sorted(RESERVED & set(frame.columns)):
        raise ValueError(f"column names {reserved} are the backtest's own: rename them")
    if label_delay < 0:
        raise ValueError(f"label delay must be >= 0 rows, got {label_delay}")
    if long and label_col is not None:
        raise ValueError("a label column needs the wide layout (one row per time and entity)")
    data = _ordered(frame, time_col, entity_col, long)
    context_cols = [c for c in CONTEXT if c in data.columns and data[c].dtype == pl.String]
    if long:
        sensors: list[str] = []
    else:
        skip = {time_col, entity_col, label_col, *context_cols}
        sensors = [
            c for c in data.columns if c not in skip | RESERVED and data[c].dtype.is_numeric()
        ]
        if not sensors:
            raise ValueError(f"no numeric sensor columns besides {sorted(c for c in skip if c)}")
    # each row's entity and window start (µs), the keys its results are joined on
    if settings.window is None:
        window_us = None
        starts = data["_t"]
    else:
        window_us = round(settings.window.total_seconds() * 1e6)
        starts = data["_t"] - data["_t"] % window_us
    data = data.with_columns(_start=starts)
    if long:
        readings = _long_readings(data, context_cols)
    else:
        readings = _wide_readings(data, sensors, context_cols)
    erp = _EngineContext()
    if context is not None:
        readings = context.join(readings.drop(*CONTEXT, "batch"))
        erp = _EngineContext.of(context)
    segments = (
        _row_segments(readings)
        if window_us is None
        else segments_of(window_features(readings, settings.window))
    )
    windows = _run_engine(segments, settings, progress, erp)
    out = data.join(windows, on=["_entity", "_start"], how="left", maintain_order="left")
    first_row = pl.col("_row") == pl.col("_row").min().over("_entity", "_start")
    out = out.with_columns(
        anomaly_score=pl.col("_score").fill_null(0.0),
        is_anomaly=pl.col("_flag").fill_null(0).cast(pl.Int8),
        changepoint=(pl.col("_change").fill_null(False) & first_row).cast(pl.Int8),
        alert=pl.col("_alert").fill_null(""),
    )
    keep = [time_col, *([entity_col] if entity_col else [])]
    result = out.select(*keep, "anomaly_score", "is_anomaly", "changepoint", "alert")
    if label_col is not None:
        result = result.with_columns(_predictions(data, sensors, label_col, label_delay, settings))
    return result


def _ordered(
    frame: pl.DataFrame, time_col: str, entity_col: str | None, long: bool
) -> pl.DataFrame:
    """The frame in time order (ties: input order), with ``_row`` (input position), ``_t``
    (µs since the epoch; a numeric time counts seconds) and ``_entity``. Wide rows of one
    entity at the same time are 1 µs apart (each its own window in row mode)."""
    t = frame[time_col]
    if isinstance(t.dtype, pl.Datetime):
        aware = t if t.dtype.time_zone else t.dt.replace_time_zone("UTC")
        us = aware.dt.convert_time_zone("UTC").cast(TIMESTAMP).to_physical()
    elif t.dtype.is_numeric():
        seconds = t.cast(pl.Float64)
        bad = (~seconds.is_finite() | ~seconds.is_between(*NUMERIC_TIME_S)).fill_null(True)
        if bad.any():
            row = int(bad.arg_max()) + 1
            raise ValueError(
                f"row {row}: time {t[row - 1]!r} in {time_col!r} is no number of seconds in "
                f"{NUMERIC_TIME_S[0]:.0f}..{NUMERIC_TIME_S[1]:.0f} (years 1 to 9999)"
            )
        us = (seconds * 1e6).round().cast(pl.Int64)
    elif t.dtype == pl.Date:
        us = t.cast(pl.Datetime("us")).to_physical()
    else:
        raise ValueError(f"time column {time_col!r} is {t.dtype}: a time or a number is needed")
    if us.null_count():
        row = int(us.is_null().arg_max()) + 1
        raise ValueError(f"row {row}: empty or non-finite time in {time_col!r}")
    entity = (
        frame[entity_col].cast(pl.String).fill_null("")
        if entity_col is not None
        else pl.repeat(SINGLE, frame.height, eager=True, dtype=pl.String)
    )
    ordered = frame.with_columns(
        _row=pl.int_range(frame.height, dtype=pl.Int64),
        _t=us.alias("_t"),
        _entity=entity.alias("_entity"),
    ).sort("_t", "_row")
    if long:
        return ordered
    return ordered.with_columns(
        _t=pl.col("_t") + pl.int_range(pl.len(), dtype=pl.Int64).over("_entity", "_t")
    )


def _wide_readings(data: pl.DataFrame, sensors: list[str], context: list[str]) -> pl.DataFrame:
    """Wide rows as readings (``machine_id, sensor, ts, value`` and context), in time order;
    empty and non-finite cells are no readings."""
    values = data.select(
        "_entity",
        "_t",
        "_start",
        *context,
        *(pl.col(s).cast(pl.Float64).alias(s) for s in sensors),
    )
    long = values.unpivot(
        index=["_entity", "_t", "_start", *context], variable_name="_sensor", value_name="_value"
    ).filter(pl.col("_value").is_finite())
    return _with_context(
        long.select(
            *context,
            machine_id=pl.col("_entity"),
            sensor=pl.col("_sensor"),
            ts=pl.col("_t").cast(TIMESTAMP),
            value=pl.col("_value"),
            _start=pl.col("_start"),
        ).sort("ts", maintain_order=True)
    )


def _long_readings(data: pl.DataFrame, context: list[str]) -> pl.DataFrame:
    readings = data.select(
        *context,
        machine_id=pl.col("_entity"),
        sensor=pl.col("sensor").cast(pl.String),
        ts=pl.col("_t").cast(TIMESTAMP),
        value=pl.col("value").cast(pl.Float64),
        _start=pl.col("_start"),
    ).filter(pl.col("value").is_finite())
    return _with_context(readings)


def _with_context(readings: pl.DataFrame) -> pl.DataFrame:
    """Readings with every context column of the pipeline's window rows (empty when absent)."""
    missing = [c for c in (*CONTEXT, "batch") if c not in readings.columns]
    return readings.with_columns(
        *(pl.lit("", pl.String).alias(c) for c in missing),
        *(pl.col(c).fill_null("") for c in CONTEXT if c not in missing),
    )


def _row_segments(readings: pl.DataFrame) -> list[Segment]:
    """Row mode: every input row is one window of one reading per sensor (std undefined)."""
    out: dict[tuple, Segment] = {}
    one_us = timedelta(microseconds=1)
    cache: dict[int, datetime] = {}
    for entity, sensor, start, value, wo, product, lot in readings.select(
        "machine_id", "sensor", "_start", "value", *CONTEXT
    ).iter_rows():
        key = (entity, start, wo, product, lot)
        seg = out.get(key)
        if seg is None:
            t = cache.get(start)
            if t is None:
                t = cache[start] = _EPOCH + timedelta(microseconds=start)
            seg = out[key] = Segment((entity, t, t + one_us, wo, product, lot), {})
        seg.rows[sensor] = {
            "n": 1, "mean": value, "std": None, "min": value, "max": value, "last": value
        }  # fmt: skip
    return list(out.values())


@dataclass
class _EngineContext:
    """The context lookups the engine's models read, from an :class:`ErpContext`."""

    specs: dict = field(default_factory=dict)
    labs: dict = field(default_factory=dict)
    maintenance: dict = field(default_factory=dict)

    @classmethod
    def of(cls, context: ErpContext) -> _EngineContext:
        return cls(
            spec_limits_dict(context.spec_limits),
            lab_results_by_machine(context.records.get("lab_results")),
            maintenance_events(context.records.get("maintenance_log")),
        )


def _run_engine(
    segments: list[Segment],
    settings: BacktestSettings,
    progress: Callable[[int, int], None] | None,
    erp: _EngineContext,
) -> pl.DataFrame:
    """Each entity's windows through its :class:`MachineAlerting`; one row per window:
    ``_entity, _start`` (µs), the score model's ``_score`` and ``_flag``, ``_change`` (an
    alert of the score model opened or cleared) and ``_alert`` (the causes open)."""
    alert_settings = settings.alert_settings()
    by_entity: dict[str, list[Segment]] = {}
    for seg in segments:
        by_entity.setdefault(seg.key[0], []).append(seg)
    total, done = len(segments), 0
    cols: dict[str, list] = {k: [] for k in ("_entity", "_start", "_score", "_flag")}
    opened: dict[tuple[str, int], set[str]] = {}
    changed: set[tuple[str, int]] = set()
    name = settings.score_model
    for entity, segs in by_entity.items():
        engine = MachineAlerting(alert_settings)
        was_open = False
        for i in range(0, len(segs), CHUNK_WINDOWS):
            chunk = segs[i : i + CHUNK_WINDOWS]
            context = Context(entity, erp.specs, erp.labs.get(entity, []))
            events = erp.maintenance.get(entity, [])
            out = engine.update_segments(chunk, context, events, track_open=True)
            for row in out.scores:
                if row["model"] == name:
                    cols["_entity"].append(entity)
                    cols["_start"].append(_us(row["window_start"]))
                    cols["_score"].append(row["score"])
                    cols["_flag"].append(bool(row["is_anomaly"]))
            for cause, states in out.open.items():
                for start, is_open in states:
                    key = (entity, _us(start))
                    if is_open:
                        opened.setdefault(key, set()).add(cause)
                    if cause == name:
                        if is_open != was_open:
                            changed.add(key)
                        was_open = is_open
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    scores = pl.DataFrame(
        cols, schema={"_entity": pl.String, "_start": pl.Int64, "_score": pl.Float64,
                      "_flag": pl.Boolean},
    )  # fmt: skip
    # a window of two work orders has two segments: its strongest score and any flag
    scores = scores.group_by("_entity", "_start", maintain_order=True).agg(
        pl.col("_score").max(), pl.col("_flag").any()
    )
    if settings.onset:
        scores = scores.with_columns(
            _score=onset_only(pl.col("_score"), settings.onset, over="_entity")
        )
    order = list(by_name())
    alerts = pl.DataFrame(
        {
            "_entity": [k[0] for k in opened],
            "_start": [k[1] for k in opened],
            "_alert": [";".join(sorted(v, key=order.index)) for v in opened.values()],
        },
        schema={"_entity": pl.String, "_start": pl.Int64, "_alert": pl.String},
    )
    changes = pl.DataFrame(
        {"_entity": [k[0] for k in changed], "_start": [k[1] for k in changed]},
        schema={"_entity": pl.String, "_start": pl.Int64},
    ).with_columns(_change=pl.lit(True))
    return scores.join(alerts, on=["_entity", "_start"], how="full", coalesce=True).join(
        changes, on=["_entity", "_start"], how="full", coalesce=True
    )


def onset_only(score: pl.Expr, k: int, over: str | None = None) -> pl.Expr:
    """``score`` where it is above each of the ``k`` scores before it (per ``over``), else 0.

    >>> pl.select(onset_only(pl.lit(pl.Series([0.1, 0.5, 0.4, 0.6, 0.2])), 2)).to_series().to_list()
    [0.1, 0.5, 0.0, 0.6, 0.0]
    """
    before = score.rolling_max(k, min_samples=1).shift(1)
    if over is not None:
        before = before.over(over)
    return pl.when(score > before.fill_null(-1.0)).then(score).otherwise(0.0)


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _predictions(
    data: pl.DataFrame,
    sensors: list[str],
    label_col: str,
    label_delay: int,
    settings: BacktestSettings,
) -> list[pl.Series]:
    """The fleet label model over the rows in time order: (prediction, low, high) per row."""
    from floorsight.models.fleet import FleetLabels

    labels = data[label_col]
    known = labels.drop_nulls()
    if known.dtype.is_numeric():
        known = known.filter(known.cast(pl.Float64).is_finite())
    numeric = known.cast(pl.Float64, strict=False)
    if numeric.null_count() > 0:
        raise ValueError(f"label column {label_col!r} holds values that are not numbers")
    classify = bool(numeric.is_in([0.0, 1.0]).all()) if known.len() else True
    model = FleetLabels(sensors, classify, label_delay, settings.labels)
    preds, lows, highs = [], [], []
    values = data.select(sensors).iter_rows()
    label_values = labels.cast(pl.Float64, strict=False).to_list()
    for entity, row, y in zip(data["_entity"].to_list(), values, label_values, strict=True):
        x = {
            s: float(v)
            for s, v in zip(sensors, row, strict=True)
            if v is not None and math.isfinite(v)
        }
        p, lo, hi = model.step(entity, x, y if y is not None and math.isfinite(y) else None)
        preds.append(p)
        lows.append(lo)
        highs.append(hi)
    return [
        pl.Series("prediction", preds, dtype=pl.Float64),
        pl.Series("prediction_low", lows, dtype=pl.Float64),
        pl.Series("prediction_high", highs, dtype=pl.Float64),
    ]
