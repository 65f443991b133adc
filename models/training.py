"""Offline training on the feature tables: feature matrix, labels, time splits, provenance.

The notebooks and the pipeline's champion scoring (in the score step) share this module, so a
model is trained on exactly the columns it is later scored on in the stream (no copy of the
feature code in a notebook).

- :func:`load_training_features`: the ``features`` table, refused unless it passes its suite.
- :func:`window_matrix`: the long ``features`` table (one row per machine, sensor and window)
  as one row per machine window with a column per ``sensor.statistic``.
- :func:`failure_labels`: whether the machine failed (CMMS ``maintenance_log``, kind
  ``failure``) within ``horizon`` after the window; windows whose horizon reaches past the end
  of what is known are dropped (their label is not known yet).
- :func:`quality_targets`: lab results joined to the window in which their part was made, as
  a deviation from target in half-tolerances (in spec means -1..1).
- :func:`time_split`: earlier rows train, later rows test, with an embargo between them so a
  training label never looks into the test period.
- :class:`ProductStandardizer`: a scikit-learn transformer that scales each feature by the
  product's own robust baseline (median, IQR) learned on the training rows.
- :func:`provenance`: table, time range, row count and content hash of a training frame.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
from sklearn.base import BaseEstimator, TransformerMixin

from floorsight.features.expectations import (
    ValidationReport,
    content_hash,
    require_valid,
    validate_features,
)
from floorsight.storage import Database

#: Columns that identify a machine window (a window spanning a changeover is two rows).
WINDOW_KEYS = ("machine_id", "window_start", "window_end", "work_order", "product", "material_lot")

#: Window statistics the offline models read, per sensor.
MATRIX_STATISTICS = ("mean", "std", "slope")


def load_training_features(
    db_path,
    fresh_since: datetime | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> tuple[pl.DataFrame, ValidationReport]:
    """The ``features`` table of a pipeline database, if it passes the feature suite.

    Raises :class:`~floorsight.features.expectations.DataValidationError` (with the report)
    when it does not: a model is never trained on data that failed its checks.
    """
    features = Database(db_path).query(
        "SELECT * FROM features ORDER BY window_start, machine_id, sensor, work_order"
    )
    report = validate_features(features, fresh_since, ranges)
    require_valid([report])
    return features, report


def window_matrix(
    features: pl.DataFrame, statistics: tuple[str, ...] = MATRIX_STATISTICS
) -> pl.DataFrame:
    """One row per machine window, a column ``<sensor>.<statistic>`` per sensor and statistic.

    >>> from datetime import datetime, UTC
    >>> t = datetime(2026, 1, 5, tzinfo=UTC)
    >>> f = pl.DataFrame({"machine_id": ["M1", "M1"], "sensor": ["temp", "vib"],
    ...     "window_start": [t, t], "window_end": [t, t], "work_order": ["W", "W"],
    ...     "product": ["P", "P"], "material_lot": ["L", "L"], "mean": [50.0, 2.0],
    ...     "std": [0.1, 0.2], "slope": [0.0, 0.01]})
    >>> window_matrix(f).columns[6:]
    ['temp.mean', 'temp.std', 'temp.slope', 'vib.mean', 'vib.std', 'vib.slope']
    """
    keys = list(WINDOW_KEYS)
    if features.height == 0:
        return pl.DataFrame(schema={k: features.schema[k] for k in keys})
    long = features.select(*keys, "sensor", *statistics).unpivot(
        index=[*keys, "sensor"], on=list(statistics), variable_name="statistic"
    )
    long = long.with_columns(
        column=pl.concat_str("sensor", pl.lit("."), "statistic"),
        value=pl.col("value").cast(pl.Float64),
    )
    wide = long.pivot(on="column", index=keys, values="value", aggregate_function="first")
    names = sorted(
        (c for c in wide.columns if c not in keys),
        key=lambda c: (c.rsplit(".", 1)[0], statistics.index(c.rsplit(".", 1)[1])),
    )
    return wide.select(*keys, *names).sort("window_start", "machine_id")


def failure_labels(
    windows: pl.DataFrame,
    maintenance_log: pl.DataFrame,
    horizon: timedelta,
    known_until: datetime | None = None,
) -> pl.DataFrame:
    """``windows`` with ``failure_at`` (the machine's next failure) and ``failure_within``.

    A window is positive when its machine fails within ``horizon`` after the window ends. A
    negative label is only known once ``horizon`` has passed: windows that end later than
    ``known_until - horizon`` without a failure in sight are dropped (``known_until`` defaults
    to the newest window's end).
    """
    known_until = known_until or windows["window_end"].max()
    failures = (
        maintenance_log.filter(pl.col("kind") == "failure")
        .select(
            pl.col("machine_id").cast(pl.String),
            pl.col("start").cast(windows.schema["window_end"]).alias("failure_at"),
        )
        .sort("failure_at")
    )
    labelled = (
        windows.sort("window_end")
        .join_asof(
            failures,
            left_on="window_end",
            right_on="failure_at",
            by="machine_id",
            strategy="forward",
            check_sortedness=False,
        )
        .with_columns(
            failure_within=(
                pl.col("failure_at").is_not_null()
                & (pl.col("failure_at") - pl.col("window_end") <= horizon)
            ).cast(pl.Int8)
        )
    )
    known = (pl.col("failure_within") == 1) | (pl.col("window_end") + horizon <= known_until)
    return labelled.filter(known).sort("window_start", "machine_id")


def quality_targets(
    windows: pl.DataFrame, lab_results: pl.DataFrame, spec_limits: pl.DataFrame
) -> pl.DataFrame:
    """Lab results joined to the window (of their machine) in which their part was made.

    ``deviation`` is ``(value - target) / half tolerance``: in spec is -1..1 for every product,
    so one regressor serves products of different sizes. ``available_at`` is when the label
    became known (a backtest must not use it earlier).
    """
    lab = (
        lab_results.select(
            pl.col("machine_id").cast(pl.String),
            pl.col("product").cast(pl.String).alias("lab_product"),
            pl.col("characteristic").cast(pl.String),
            pl.col("part_made_at").cast(windows.schema["window_start"]),
            pl.col("available_at").cast(windows.schema["window_start"]),
            pl.col("value").cast(pl.Float64).alias("lab_value"),
        )
        .join(
            spec_limits.select("product", "characteristic", "lsl", "target", "usl"),
            left_on=["lab_product", "characteristic"],
            right_on=["product", "characteristic"],
            how="inner",
        )
        .sort("part_made_at")
    )
    joined = lab.join_asof(
        windows.sort("window_start"),
        left_on="part_made_at",
        right_on="window_start",
        by="machine_id",
        strategy="backward",
        check_sortedness=False,
    ).filter(pl.col("window_end").is_not_null() & (pl.col("part_made_at") < pl.col("window_end")))
    half = (pl.col("usl") - pl.col("lsl")) / 2
    return joined.with_columns(deviation=(pl.col("lab_value") - pl.col("target")) / half).drop(
        "lab_product"
    )


@dataclass(frozen=True)
class TimeSplit:
    """Rows before ``cutoff - embargo`` train, rows from ``cutoff`` on test."""

    train: pl.DataFrame
    test: pl.DataFrame
    cutoff: datetime
    embargo: timedelta


def time_split(
    frame: pl.DataFrame,
    test_share: float = 0.3,
    embargo: timedelta = timedelta(0),
    time_col: str = "window_end",
) -> TimeSplit:
    """Split by time: the latest ``test_share`` of the time range tests, the earlier part trains.

    Rows within ``embargo`` before the cutoff are in neither part: with a label that looks
    ``embargo`` ahead (failure within the horizon), a training row there would carry
    information from the test period.
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    first, last = frame[time_col].min(), frame[time_col].max()
    cutoff = first + (last - first) * (1 - test_share)
    return TimeSplit(
        train=frame.filter(pl.col(time_col) < cutoff - embargo),
        test=frame.filter(pl.col(time_col) >= cutoff),
        cutoff=cutoff,
        embargo=embargo,
    )


def feature_columns(matrix: pl.DataFrame) -> list[str]:
    """The ``sensor.statistic`` columns of a window matrix."""
    return [c for c in matrix.columns if "." in c]


def model_input(matrix: pl.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The pandas frame a trained model reads: ``product`` and ``columns`` (missing ones null)."""
    present = set(matrix.columns)
    frame = matrix.select(
        pl.col("product").cast(pl.String),
        *(
            pl.col(c).cast(pl.Float64) if c in present else pl.lit(None, pl.Float64).alias(c)
            for c in columns
        ),
    )
    return frame.to_pandas()


class ProductStandardizer(TransformerMixin, BaseEstimator):
    """Scale every numeric column by its product's median and IQR, learned in ``fit``.

    Products run at other setpoints (a heavier part vibrates differently), so "high" means
    high for this product. Products not seen in training use the pooled baseline. Reads a
    pandas frame with a ``product`` column; returns a float array without it, in which a
    missing value (a sensor the machine type lacks) is 0, no deviation, and values are clipped
    to +-``clip`` (near-constant columns have a tiny IQR).
    """

    def __init__(self, product_column: str = "product", clip: float = 25.0) -> None:
        self.product_column = product_column
        self.clip = clip

    def fit(self, X: pd.DataFrame, y=None):  # noqa: N803 - scikit-learn's argument name
        numeric = X.drop(columns=[self.product_column]).astype(float)
        self.feature_names_in_ = np.asarray(numeric.columns, dtype=object)
        self.pooled_ = self._baseline(numeric)
        self.baselines_ = {
            product: self._baseline(rows.drop(columns=[self.product_column]).astype(float))
            for product, rows in X.groupby(self.product_column, observed=True)
        }
        return self

    @staticmethod
    def _baseline(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values = frame.to_numpy(dtype=float)
        # a sensor that a product's machine type lacks is all-NaN: its baseline is 0 and 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(values, axis=0) if len(values) else np.zeros(values.shape[1])
            q75, q25 = (
                np.nanpercentile(values, [75, 25], axis=0)
                if len(values)
                else (np.ones(values.shape[1]), np.zeros(values.shape[1]))
            )
        scale = (q75 - q25) / 1.349  # the IQR of a normal distribution is 1.349 sigma
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return np.nan_to_num(median), scale

    def transform(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        numeric = X.drop(columns=[self.product_column]).astype(float).to_numpy()
        out = np.empty_like(numeric)
        products = X[self.product_column].to_numpy()
        for product in pd.unique(products):
            rows = products == product
            median, scale = self.baselines_.get(product, self.pooled_)
            out[rows] = (numeric[rows] - median) / scale
        # a sensor the machine lacks (or a missing statistic) shows no deviation: 0; a value
        # beyond ``clip`` robust sigmas (a near-constant column) is only "very far"
        out = np.nan_to_num(out, nan=0.0, posinf=self.clip, neginf=-self.clip)
        return np.clip(out, -self.clip, self.clip)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return self.feature_names_in_


def provenance(frame: pl.DataFrame, table: str, time_col: str = "window_end") -> dict[str, str]:
    """What a model was trained on: table, time range, row count and a content hash."""
    return {
        "data.table": table,
        "data.time_from": frame[time_col].min().isoformat() if frame.height else "",
        "data.time_to": frame[time_col].max().isoformat() if frame.height else "",
        "data.rows": str(frame.height),
        "data.sha256": content_hash(frame),
    }


__all__ = [
    "MATRIX_STATISTICS",
    "WINDOW_KEYS",
    "ProductStandardizer",
    "TimeSplit",
    "failure_labels",
    "feature_columns",
    "load_training_features",
    "model_input",
    "provenance",
    "quality_targets",
    "time_split",
    "window_matrix",
]
