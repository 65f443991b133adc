"""Backtesting: the online detectors over a historical table, row by row, in time order.

This is what ``floorsight replay`` runs (the contract is in the project's design card). For
each entity (machine) separately, every row is first scored and predicted, then learned:

- ``anomaly_score`` (0..1) and ``is_anomaly``, from one of two detectors
  (``ReplaySettings.detector``):

  - ``"zscore"`` (the default): the multivariate z-score detector
    (:class:`~floorsight.models.zscore.MultivariateZScore`) on the row's sensors; rows it flags
    are tracked, not learned, so an anomaly does not become the new normal;
  - ``"mahalanobis"``: window features (the mean of each sensor over the entity's last
    ``window`` rows, this one included) scored by
    :class:`~floorsight.models.mahalanobis.RobustMahalanobis` behind a
    :class:`~floorsight.models.control_limit.ControlLimitFilter`: the first ``phase_one`` rows
    of each entity are learned and set the control limit, later rows are flagged above it and,
    with ``adapt``, learned when not flagged. This is what ``floorsight eval skab`` runs;
- ``changepoint``: 1 when an ADWIN drift detector on any sensor detects a change at this row;
- ``prediction`` (with a label column): an online model's prediction of the label, made before
  the row's label is known. A label becomes known ``label_delay`` rows later of the same entity
  (progressive validation); rows whose label is empty are predicted, never learned. Labels that
  are all 0/1 give a classifier (logistic regression), others a linear regressor, both on
  standardized sensors.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import polars as pl
from river import compose, drift, linear_model, optim, preprocessing

from floorsight.models.control_limit import ControlLimitFilter
from floorsight.models.mahalanobis import RobustMahalanobis
from floorsight.models.zscore import MultivariateZScore

DETECTORS = ("zscore", "mahalanobis")


@dataclass(frozen=True)
class ReplaySettings:
    """Settings of the replay detectors; the defaults are ``floorsight replay``'s.

    ``threshold`` and ``learn_below`` apply to the z-score detector; ``sensors`` (None: all),
    ``window``, ``phase_one``, ``q``, ``adapt`` and ``half_life`` (of the learned moments, in
    rows; None: equal weights) to the Mahalanobis one; ``grace_period`` to both; the ADWIN
    settings to the changepoints (``adwin_clock``: rows between two of its checks).
    """

    threshold: float = 0.999
    grace_period: int = 100
    learn_below: float = 0.99
    adwin_delta: float = 0.002
    adwin_clock: int = 32
    detector: str = "zscore"
    sensors: tuple[str, ...] | None = None
    window: int = 1
    phase_one: int = 400
    q: float = 0.999
    adapt: bool = True
    half_life: float | None = None


@dataclass
class _Entity:
    settings: ReplaySettings
    classify: bool
    label_delay: int
    detector: MultivariateZScore | ControlLimitFilter = field(init=False)
    drifts: dict[str, drift.ADWIN] = field(default_factory=dict)
    model: object = None
    pending: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.settings.detector == "mahalanobis":
            self.detector = ControlLimitFilter(
                RobustMahalanobis(
                    grace_period=self.settings.grace_period, half_life=self.settings.half_life
                ),
                phase_one=self.settings.phase_one,
                q=self.settings.q,
            )
        else:
            self.detector = MultivariateZScore(grace_period=self.settings.grace_period)
        regressor = (
            linear_model.LogisticRegression(optimizer=optim.SGD(0.1))
            if self.classify
            else linear_model.LinearRegression()
        )
        self.model = compose.Pipeline(preprocessing.StandardScaler(), regressor)

    def _anomaly(self, features: dict[str, float]) -> tuple[float, int]:
        score = self.detector.score_one(features)
        if isinstance(self.detector, ControlLimitFilter):
            flag = self.detector.classify(score)
            if self.settings.adapt or not self.detector.in_phase_two:
                self.detector.learn_one(features)
            return score, int(flag)
        if score < self.settings.learn_below:
            self.detector.learn_one(features)
        else:
            self.detector.track_one(features)
        return score, int(score > self.settings.threshold)

    def step(
        self, x: dict[str, float], features: dict[str, float], label
    ) -> tuple[float, int, int, float | None]:
        score, flag = self._anomaly(features)
        change = 0
        for name, value in x.items():
            detector = self.drifts.get(name)
            if detector is None:
                detector = self.drifts[name] = drift.ADWIN(
                    delta=self.settings.adwin_delta, clock=self.settings.adwin_clock
                )
            detector.update(value)
            change |= int(detector.drift_detected)
        prediction = None
        if label is not _NO_LABEL:
            prediction = self.model.predict_one(x)
            if self.classify:
                prediction = int(bool(prediction)) if prediction is not None else 0
            self.pending.append((x, label))
            while len(self.pending) > self.label_delay:
                x_old, y_old = self.pending.popleft()
                if y_old is not None:
                    self.model.learn_one(x_old, y_old)
        return score, flag, change, prediction


_NO_LABEL = object()


def replay_frame(
    frame: pl.DataFrame,
    time_col: str,
    entity_col: str | None = None,
    label_col: str | None = None,
    label_delay: int = 0,
    settings: ReplaySettings | None = None,
) -> pl.DataFrame:
    """One output row per input row, in time order (ties keep the input order)."""
    settings = settings or ReplaySettings()
    for col in (time_col, entity_col, label_col):
        if col is not None and col not in frame.columns:
            raise ValueError(f"no column {col!r} (columns: {frame.columns})")
    if label_delay < 0:
        raise ValueError(f"label delay must be >= 0 rows, got {label_delay}")
    skip = {time_col, entity_col, label_col}
    sensors = [c for c in frame.columns if c not in skip and frame[c].dtype.is_numeric()]
    if not sensors:
        raise ValueError(f"no numeric sensor columns besides {sorted(c for c in skip if c)}")
    if settings.detector not in DETECTORS:
        raise ValueError(f"unknown detector {settings.detector!r} (one of {DETECTORS})")
    watched = sensors if settings.sensors is None else list(settings.sensors)
    if unknown := [s for s in watched if s not in sensors]:
        raise ValueError(f"no numeric sensor column {unknown} (sensors: {sensors})")
    if settings.window < 1:
        raise ValueError(f"window must be >= 1 row, got {settings.window}")
    data = frame.with_row_index("_row").sort(time_col, "_row")
    classify = False
    if label_col is not None:
        labels = data[label_col].drop_nulls()
        classify = (
            bool(labels.cast(pl.Float64, strict=False).is_in([0.0, 1.0]).all())
            if labels.len()
            else True
        )
    entities: dict[object, _Entity] = {}
    scores, flags, changes, predictions = [], [], [], []
    entity_values = data[entity_col].to_list() if entity_col else [None] * data.height
    label_values = data[label_col].to_list() if label_col else [_NO_LABEL] * data.height
    rows = data.select(sensors).iter_rows()
    feature_rows = _window_features(data, watched, settings.window, entity_col).iter_rows()
    for entity, label, values, feature_values in zip(
        entity_values, label_values, rows, feature_rows, strict=True
    ):
        state = entities.get(entity)
        if state is None:
            state = entities[entity] = _Entity(settings, classify, label_delay)
        x = {s: float(v) for s, v in zip(sensors, values, strict=True) if _finite(v)}
        features = {s: float(v) for s, v in zip(watched, feature_values, strict=True) if _finite(v)}
        score, flag, change, prediction = state.step(x, features, label)
        scores.append(score)
        flags.append(flag)
        changes.append(change)
        predictions.append(prediction)
    out = data.select(time_col, *([entity_col] if entity_col else [])).with_columns(
        anomaly_score=pl.Series(scores, dtype=pl.Float64),
        is_anomaly=pl.Series(flags, dtype=pl.Int8),
        changepoint=pl.Series(changes, dtype=pl.Int8),
    )
    if label_col is not None:
        out = out.with_columns(prediction=pl.Series(predictions, dtype=pl.Float64))
    return out


def _window_features(
    data: pl.DataFrame, sensors: list[str], window: int, entity_col: str | None
) -> pl.DataFrame:
    """Each sensor's mean over the entity's last ``window`` rows (this one included), in order.

    Causal, so computing it for the whole frame at once gives what a stream would: row i's
    features use rows up to i only. Missing and NaN values are skipped.
    """
    columns = []
    for s in sensors:
        expr = pl.col(s).cast(pl.Float64).fill_nan(None)
        if window > 1:
            expr = expr.rolling_mean(window, min_samples=1)
            if entity_col is not None:
                expr = expr.over(entity_col)
        columns.append(expr.alias(s))
    return data.select(columns)


def _finite(v) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)
