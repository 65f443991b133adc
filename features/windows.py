"""Event-time window features per machine and sensor, computed on polars frames.

:func:`window_features` turns readings (with their context columns) into one row per machine,
sensor, window and context segment: a window that spans a changeover becomes two rows, one per
work order, so a window's statistics never mix two products.

:class:`WindowAggregator` is the per-machine state of a streaming computation: it buffers the
readings of open windows, closes a window once the watermark (latest event time minus the allowed
lateness) passes its end, and hands back readings too late for any open window, so the caller
can dead-letter them. It knows nothing of Bytewax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from floorsight.records import TIMESTAMP

#: Context columns a window row carries; empty string when no context was valid.
CONTEXT_COLUMNS = ("work_order", "product", "material_lot", "batch")

#: Statistics computed per window, in column order.
STATISTICS = ("n", "mean", "std", "min", "max", "last", "slope", "rms")


def _newest_window_start(ts: pl.Expr, hop: timedelta) -> pl.Expr:
    """Start of the newest window (aligned to the epoch in steps of ``hop``) holding ``ts``."""
    return ts.dt.truncate(f"{int(hop.total_seconds() * 1e6)}us")


def window_features(
    readings: pl.DataFrame, window: timedelta, hop: timedelta | None = None
) -> pl.DataFrame:
    """Statistics of every (machine, sensor, window, context) group in ``readings``.

    Windows are aligned to the epoch. With ``hop`` shorter than ``window`` they slide: each
    reading counts in ``window / hop`` windows. ``slope`` is the least-squares slope of value
    against seconds; ``std`` is the sample standard deviation (null for one reading).

    >>> from datetime import datetime, UTC
    >>> r = pl.DataFrame({
    ...     "machine_id": ["M1"] * 4, "sensor": ["t"] * 4,
    ...     "ts": [datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in (0, 1, 2, 3)],
    ...     "value": [1.0, 2.0, 3.0, 4.0],
    ...     "work_order": ["WO-1"] * 4, "product": ["P"] * 4, "material_lot": ["L"] * 4,
    ...     "batch": ["B-1"] * 4,
    ... })
    >>> f = window_features(r, timedelta(seconds=2))
    >>> f.select("window_start", "n", "mean", "slope").to_dicts()[1]["slope"]
    1.0
    >>> f["mean"].to_list()
    [1.5, 3.5]
    """
    hop = hop or window
    if window.total_seconds() <= 0 or hop > window:
        raise ValueError(f"need 0 < hop <= window, got window={window} hop={hop}")
    steps = window / hop
    if steps != int(steps):
        raise ValueError(f"window {window} must be a whole number of hops ({hop})")
    newest = _newest_window_start(pl.col("ts"), hop)
    if int(steps) == 1:
        assigned = readings.with_columns(newest.alias("window_start"))
    else:
        assigned = readings.with_columns(
            pl.concat_list(
                [
                    newest - pl.duration(microseconds=int(j * hop.total_seconds() * 1e6))
                    for j in range(int(steps))
                ]
            ).alias("window_start")
        ).explode("window_start")
    t = (pl.col("ts") - pl.col("window_start")).dt.total_microseconds() / 1e6
    v = pl.col("value")
    keys = ["machine_id", "sensor", "window_start", *CONTEXT_COLUMNS]
    out = (
        assigned.with_columns(_t=t)
        .group_by(keys)
        .agg(
            n=pl.len().cast(pl.Int32),
            mean=v.mean(),
            std=v.std(),
            min=v.min(),
            max=v.max(),
            last=v.sort_by("ts").last(),
            _mt=pl.col("_t").mean(),
            _mtv=(pl.col("_t") * v).mean(),
            _mtt=(pl.col("_t") * pl.col("_t")).mean(),
            rms=(v * v).mean().sqrt(),
        )
        .with_columns(
            slope=pl.when(pl.col("_mtt") - pl.col("_mt") ** 2 > 1e-12)
            .then(
                (pl.col("_mtv") - pl.col("_mt") * pl.col("mean"))
                / (pl.col("_mtt") - pl.col("_mt") ** 2)
            )
            .otherwise(0.0),
            window_end=pl.col("window_start")
            + pl.duration(microseconds=int(window.total_seconds() * 1e6)),
        )
        .select("machine_id", "sensor", "window_start", "window_end", *CONTEXT_COLUMNS, *STATISTICS)
        .sort("machine_id", "sensor", "window_start", "work_order")
    )
    return out


@dataclass
class WindowAggregator:
    """Open event-time windows of one machine; closes them as the watermark passes.

    ``push`` returns (closed window rows, readings too late for any open window). A reading is
    late when its newest window has already closed; up to ``lateness`` behind the latest event
    time it still counts.
    """

    window: timedelta
    hop: timedelta | None = None
    lateness: timedelta = timedelta(0)
    _buffer: list[pl.DataFrame] = field(default_factory=list)
    _max_ts: datetime | None = None
    #: every window starting before this has been emitted
    _closed_before: datetime | None = None

    def push(self, readings: pl.DataFrame) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
        late = None
        if self._closed_before is not None:
            # a reading whose newest window started before `_closed_before` can't be placed
            is_late = pl.col("ts") < self._closed_before
            late = readings.filter(is_late)
            readings = readings.filter(~is_late)
            late = late if late.height else None
        if readings.height:
            self._buffer.append(readings)
            batch_max = readings["ts"].max()
            if self._max_ts is None or batch_max > self._max_ts:
                self._max_ts = batch_max
        return self._close(until=self._watermark()), late

    def flush(self) -> pl.DataFrame | None:
        """Close every open window (end of input)."""
        if self._max_ts is None:
            return None
        return self._close(until=None)

    def _watermark(self) -> datetime | None:
        return None if self._max_ts is None else self._max_ts - self.lateness

    def _close(self, until: datetime | None) -> pl.DataFrame | None:
        """Emit windows whose end is <= ``until`` (all open ones when ``until`` is None).

        Windows start on multiples of ``hop``; every window starting before ``_closed_before``
        has been emitted, so only readings at or after it are still needed by an open window.
        """
        if not self._buffer:
            return None
        hop = self.hop or self.window
        data = pl.concat(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        previous = self._closed_before
        if until is None:
            closed_before = None
            rows = data
        else:
            closed_before = _floor(until - self.window, hop) + hop
            if previous is not None and closed_before <= previous:
                self._buffer = [data]
                return None
            # the newest window to emit ends at closed_before - hop + window
            rows = data.filter(pl.col("ts") < closed_before - hop + self.window)
        features = window_features(rows, self.window, self.hop)
        keep = pl.lit(True)
        if previous is not None:
            keep = keep & (pl.col("window_start") >= previous)
        if closed_before is not None:
            keep = keep & (pl.col("window_start") < closed_before)
        features = features.filter(keep)
        if closed_before is None:
            self._buffer = []
            self._max_ts = None
        else:
            self._buffer = [data.filter(pl.col("ts") >= closed_before)]
        self._closed_before = closed_before
        return features if features.height else None


def _floor(ts: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=ts.tzinfo)
    return epoch + ((ts - epoch) // step) * step


FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "machine_id": pl.String(),
    "sensor": pl.String(),
    "window_start": TIMESTAMP,
    "window_end": TIMESTAMP,
    "work_order": pl.String(),
    "product": pl.String(),
    "material_lot": pl.String(),
    "batch": pl.String(),
    "n": pl.Int32(),
    "mean": pl.Float64(),
    "std": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
    "last": pl.Float64(),
    "slope": pl.Float64(),
    "rms": pl.Float64(),
}
