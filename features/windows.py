"""Event-time window features per machine and sensor, computed on polars frames.

:func:`window_features` turns readings (with their context columns) into one row per machine,
sensor, window and context segment: a window that spans a changeover becomes two rows, one per
work order, so a window's statistics never mix two products.

:class:`WindowAggregator` is the state of a streaming computation over the readings of any number
of machines: it buffers the readings of open windows, closes a machine's window once that
machine's watermark (its latest event time minus the allowed lateness) passes the window's end,
and hands back readings too late for any open window, so the caller can dead-letter them. A
frame of many machines is one vectorised pass, not a loop over machines. It knows nothing of
Bytewax.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

import polars as pl

from floorsight.features.tables import FEATURES
from floorsight.records import TIMESTAMP

#: Context columns a window row carries; empty string when no context was valid.
CONTEXT_COLUMNS = ("work_order", "product", "material_lot", "batch")

#: The columns that identify a window row (the key of the features table).
WINDOW_KEY = ["machine_id", "sensor", "window_start", "work_order"]

#: Readings grouped at once by :func:`window_features` (larger frames are cut between windows).
CHUNK_ROWS = 250_000

#: The columns that make two readings the same reading (a duplicate delivery).
DUPLICATE_KEY = ["machine_id", "sensor", "ts"]
#: one 64-bit hash of a reading's ``DUPLICATE_KEY`` (equal keys, equal hashes)
#: one 64-bit hash of a reading's machine and sensor: with its time, its ``DUPLICATE_KEY``
_PAIR_HASH = (pl.col("machine_id").hash(1) * 0x9E3779B97F4A7C15) ^ pl.col("sensor").hash(2)
_KEY_HASH = _PAIR_HASH ^ (pl.col("ts").hash(3) * 0xC2B2AE3D27D4EB4F)

#: seed of the machine-id hash that finds each machine's newest reading, drawn per process: an id
#: cannot be aimed at another machine's hash (which would leave that machine's windows open)
_MACHINE_SEED = secrets.randbits(63)

#: Statistics computed per window, in column order.
STATISTICS = ("n", "mean", "std", "min", "max", "last", "slope", "rms")


def _newest_window_start(ts: pl.Expr, hop: timedelta) -> pl.Expr:
    """Start of the newest window (aligned to the epoch in steps of ``hop``) holding ``ts``."""
    return ts.dt.truncate(f"{int(hop.total_seconds() * 1e6)}us")


def window_features(
    readings: pl.DataFrame, window: timedelta, hop: timedelta | None = None
) -> pl.DataFrame:
    """Statistics of every (machine, sensor, window, work order) group in ``readings``.

    Windows are aligned to the epoch. With ``hop`` shorter than ``window`` they slide: each
    reading counts in ``window / hop`` windows. ``slope`` is the least-squares slope of value
    against seconds; ``std`` is the sample standard deviation (null for one reading); ``last`` is
    the value of the newest reading. A row's product, material lot and batch are those of its
    work order.

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
    # in time order, a group's last row is its newest reading (no sort per group)
    if not readings["ts"].is_sorted():
        readings = readings.sort("ts", maintain_order=True)
    if steps == 1 and readings.height > 2 * CHUNK_ROWS:
        return _in_chunks(readings, window)
    return _window_statistics(readings, window, hop)


def _window_statistics(readings: pl.DataFrame, window: timedelta, hop: timedelta) -> pl.DataFrame:
    """:func:`window_features` of ``readings`` sorted by time, in one grouping."""
    steps = int(window / hop)
    newest = _newest_window_start(pl.col("ts"), hop)
    if steps == 1:
        assigned = readings.with_columns(newest.alias("window_start"))
    else:
        assigned = readings.with_columns(
            pl.concat_list(
                [
                    newest - pl.duration(microseconds=int(j * hop.total_seconds() * 1e6))
                    for j in range(steps)
                ]
            ).alias("window_start")
        ).explode("window_start")
    v = pl.col("value")
    t = pl.col("_t")
    # products computed as columns first, so every aggregation below is a plain one
    assigned = assigned.with_columns(
        _t=(pl.col("ts") - pl.col("window_start")).dt.total_microseconds() / 1e6
    ).with_columns(_tv=t * v, _tt=t * t, _vv=v * v)
    mt, mtt = pl.col("_mt"), pl.col("_mtt")
    return (
        assigned.group_by(WINDOW_KEY)
        .agg(
            *(pl.col(c).first() for c in CONTEXT_COLUMNS if c != "work_order"),
            n=pl.len().cast(pl.Int32),
            mean=v.mean(),
            std=v.std(),
            min=v.min(),
            max=v.max(),
            last=v.last(),
            _mt=t.mean(),
            _mtv=pl.col("_tv").mean(),
            _mtt=pl.col("_tt").mean(),
            rms=pl.col("_vv").mean().sqrt(),
        )
        .with_columns(
            slope=pl.when(mtt - mt**2 > 1e-12)
            .then((pl.col("_mtv") - mt * pl.col("mean")) / (mtt - mt**2))
            .otherwise(0.0),
            window_end=pl.col("window_start")
            + pl.duration(microseconds=int(window.total_seconds() * 1e6)),
        )
        .select("machine_id", "sensor", "window_start", "window_end", *CONTEXT_COLUMNS, *STATISTICS)
        .sort(WINDOW_KEY)
    )


def _in_chunks(readings: pl.DataFrame, window: timedelta) -> pl.DataFrame:
    """Tumbling-window features of a large frame (sorted by time), a few windows at a time.

    Grouping costs more per row once the frame outgrows the CPU caches (measured: 180 ns per
    reading for 0.5 M readings, 380 ns for 2 M), so whole windows are grouped in slices of about
    ``CHUNK_ROWS`` readings; a window is never cut.
    """
    ts = readings["ts"]
    first = _floor(ts[0], window)
    spanned = max(1, (ts[-1] - first) // window + 1)
    per_chunk = max(1, spanned * CHUNK_ROWS // readings.height)
    bounds = [first + k * per_chunk * window for k in range(1, spanned // per_chunk + 1)]
    cuts = [0, *ts.search_sorted(pl.Series(bounds, dtype=ts.dtype)).to_list(), readings.height]
    parts = [
        _window_statistics(readings.slice(a, b - a), window, window)
        for a, b in pairwise(cuts)
        if b > a
    ]
    return pl.concat(parts).sort(WINDOW_KEY)


@dataclass
class WindowAggregator:
    """Open event-time windows of the machines in a stream; closes them per machine.

    Each machine has its own watermark (its latest event time minus the allowed ``lateness``),
    so one machine's clock never closes another's windows, and a frame of many machines is
    handled in one vectorised pass (a frame of one machine works the same). ``push`` returns
    (closed window rows, readings too late for any open window). A reading is late when its
    newest window has already closed; up to ``lateness`` behind its machine's latest event time
    it still counts.

    Exact duplicates (same machine, sensor and event time) are dropped before they enter a
    window and counted in ``duplicates``: at-least-once sources (MQTT QoS 1, an OPC-UA backfill,
    a recovered run) deliver them as normal traffic, and a window's reading count must not
    depend on them. Of a batch's duplicates the first is kept; a reading equal in key to one an
    open window holds is dropped. A duplicate of a reading whose window has closed is late like
    any reading of a closed window (only the open windows' keys are kept, so state stays
    bounded).
    """

    window: timedelta
    hop: timedelta | None = None
    lateness: timedelta = timedelta(0)
    #: exact duplicates dropped so far (a class default: snapshots from before it load too)
    duplicates: int = 0
    _buffer: list[pl.DataFrame] = field(default_factory=list)
    #: per machine: the newest event time seen
    _max_ts: dict[str, datetime] = field(default_factory=dict)
    #: per machine: every window starting before this has been emitted
    _closed_before: dict[str, datetime] = field(default_factory=dict)

    def push(self, readings: pl.DataFrame) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
        late = None
        # the usual case costs one min(): the batch starts after every closed window
        if (
            self._closed_before
            and readings.height
            and readings["ts"].min() < max(self._closed_before.values())
        ):
            is_late = (pl.col("ts") < _per_machine(self._closed_before)).fill_null(False)
            flagged = readings.with_columns(_late=is_late)
            late = flagged.filter(pl.col("_late")).drop("_late")
            readings = flagged.filter(~pl.col("_late")).drop("_late")
            late = late if late.height else None
        if readings.height:
            readings = self._without_duplicates(readings)
        if readings.height:
            self._buffer.append(readings)
            for machine, ts in _newest(readings).iter_rows():
                if machine not in self._max_ts or ts > self._max_ts[machine]:
                    self._max_ts[machine] = ts
        return self._close(), late

    def _without_duplicates(self, readings: pl.DataFrame) -> pl.DataFrame:
        """``readings`` less exact duplicates, of each other and of the open windows' readings
        (counted in ``duplicates``); the order of the rest is kept."""
        height = readings.height
        if _distinct_keys(readings) < height:
            readings = readings.unique(DUPLICATE_KEY, keep="first", maintain_order=True)
        # only a reading at or before its machine's newest event time can repeat a buffered one
        if self._buffer and self._max_ts and readings["ts"].min() <= max(self._max_ts.values()):
            seen = (pl.col("ts") <= _per_machine(self._max_ts)).fill_null(False)
            candidates = readings.with_row_index("_row").filter(seen)
            if candidates.height:
                held = pl.concat(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
                held = held.filter(pl.col("ts") >= candidates["ts"].min())
                keys = held.select(pl.struct(DUPLICATE_KEY).alias("_key"))["_key"]
                repeated = candidates.filter(pl.struct(DUPLICATE_KEY).is_in(keys.implode()))
                if repeated.height:
                    rows = repeated["_row"].implode()
                    readings = (
                        readings.with_row_index("_row")
                        .filter(~pl.col("_row").is_in(rows))
                        .drop("_row")
                    )
        self.duplicates += height - readings.height
        return readings

    def flush(self) -> pl.DataFrame | None:
        """Close every open window (end of input)."""
        if not self._max_ts or not self._buffer:
            self._reset()
            return None
        data = pl.concat(self._buffer)
        features = window_features(data, self.window, self.hop)
        if self._closed_before:
            done = _per_machine(self._closed_before)
            features = features.filter(done.is_null() | (pl.col("window_start") >= done))
        self._reset()
        return features if features.height else None

    def _reset(self) -> None:
        self._buffer = []
        self._max_ts = {}
        self._closed_before = {}

    def _close(self) -> pl.DataFrame | None:
        """Emit, per machine, the windows whose end its watermark has passed.

        Windows start on multiples of ``hop``; every window of a machine starting before its
        ``_closed_before`` has been emitted, so only its readings at or after that are still
        needed by an open window.
        """
        if not self._buffer:
            return None
        hop = self.hop or self.window
        closing: dict[str, datetime] = {}
        for machine, newest in self._max_ts.items():
            closed_before = _floor(newest - self.lateness - self.window, hop) + hop
            previous = self._closed_before.get(machine)
            if previous is None or closed_before > previous:
                closing[machine] = closed_before
        if not closing:
            return None
        data = pl.concat(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        bounds = set(closing.values())
        if len(closing) == len(self._max_ts) and len(bounds) == 1:
            # every machine closes at the same time (a plant on one clock): scalar bounds
            until: pl.Expr | datetime = bounds.pop()
        else:
            until = _per_machine(closing)
        # the newest window to emit ends at closed_before - hop + window
        cuts = _cuts(data, until, until - hop + self.window)
        if cuts is not None:  # in time order: the rows to emit are a slice, not a copy
            rows = data.slice(0, cuts[0]).with_columns(pl.col("ts").set_sorted())
        else:
            rows = data.filter(pl.col("ts") < until - hop + self.window)
        features = window_features(rows, self.window, self.hop) if rows.height else None
        if features is not None:
            keep = pl.col("window_start") < until
            if self._closed_before:
                done = _per_machine(self._closed_before)
                keep = keep & (done.is_null() | (pl.col("window_start") >= done))
            features = features.filter(keep.fill_null(False))
        if cuts is not None:  # the held rows copied: the batch they are a part of is freed
            self._buffer = [data[pl.int_range(cuts[1], data.height, eager=True)]]
        else:
            kept = pl.col("ts") >= until
            held = kept if isinstance(until, datetime) else kept.fill_null(True)
            self._buffer = [data.filter(held)]
        self._closed_before.update(closing)
        return features if features is not None and features.height else None


def _newest(readings: pl.DataFrame) -> pl.DataFrame:
    """Each machine's newest event time in ``readings`` (``machine_id``, ``ts``). In time order
    (the join's batches) it is the machine's last row, found by a hash of its id (a third of
    the group-by's time: ``benchmarks/window_bookkeeping.py``); otherwise the group-by."""
    ts = readings["ts"]
    if not ts.null_count() and ts.is_sorted():
        last = pl.col("machine_id").hash(_MACHINE_SEED).is_last_distinct()
        return readings.select("machine_id", "ts").filter(last)
    return readings.group_by("machine_id").agg(pl.col("ts").max())


def _distinct_keys(readings: pl.DataFrame) -> int:
    """How many distinct ``DUPLICATE_KEY`` hashes ``readings`` holds (its height when no two
    readings share a key; a hash collision only costs the caller an exact unique). Counted on
    the keys' hashes, cheaper than the keys: in time order (the join's batches) equal keys lie
    in one run of equal times, so the distinct machine-and-sensor hashes of each time are
    added up (small hash tables: 22.4 against 53.1 ms per 2.4 M readings,
    ``benchmarks/window_bookkeeping.py``); otherwise the distinct hashes of the whole key."""
    ts = readings["ts"]
    if not ts.null_count() and ts.is_sorted():
        per_time = readings.lazy().group_by("ts").agg(_PAIR_HASH.n_unique().alias("n"))
        return per_time.select(pl.col("n").sum()).collect().item()
    return readings.select(_KEY_HASH.n_unique()).item()


def _cuts(
    data: pl.DataFrame, until: pl.Expr | datetime, emit_end: datetime
) -> tuple[int, int] | None:
    """Where ``data`` stops being before ``emit_end`` and starts being at or after ``until``,
    when ``until`` is one time for every machine and the readings are in time order without
    missing times (the usual case: the context join hands its batches on in time order, and the
    held rows end where the next batch begins; checking costs under 1 ms per 2.4 M readings);
    None otherwise (the caller filters)."""
    ts = data["ts"]
    if not isinstance(until, datetime) or not data.height or ts.null_count() or not ts.is_sorted():
        return None
    return int(ts.search_sorted(emit_end, side="left")), int(ts.search_sorted(until, side="left"))


def _per_machine(values: dict[str, datetime]) -> pl.Expr:
    """Each row's machine's value (null for machines not in ``values``)."""
    return pl.col("machine_id").replace_strict(values, default=None, return_dtype=TIMESTAMP)


def _floor(ts: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=ts.tzinfo)
    return epoch + ((ts - epoch) // step) * step


FEATURE_SCHEMA = FEATURES.polars_schema
