"""Machine windows as the per-machine models read them: segments, their coverage, score rows.

A batch of feature rows (one row per machine, window, work order and sensor) becomes
:class:`Segment` objects once (:func:`segments_of`), one per machine window within one work
order, and every model reads those: on a few hundred rows one polars call costs more than the
Python that reads the values. :class:`Coverage` marks which sensors of a segment have a
complete window; :func:`score_frame` turns the models' score rows into a ``scores`` frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from floorsight.models.tables import SCORES
from floorsight.records import TIMESTAMP

#: Window statistics the anomaly model reads, per sensor.
MODEL_STATISTICS = ("mean", "std")

SCORE_SCHEMA = SCORES.polars_schema


#: columns that identify a scored segment: one machine window within one work order
SEGMENT_KEYS = ("machine_id", "window_start", "window_end", "work_order", "product", "material_lot")

#: per-sensor window statistics the models read
SEGMENT_STATS = ("n", "mean", "std", "min", "max", "last")


@dataclass(slots=True)
class Segment:
    """One machine window within one work order, as plain Python values.

    A batch of feature rows is turned into segments once (:func:`segments_of`) and every model
    reads them: on a few hundred rows, one polars call costs more than the Python that reads
    the values, so the models loop over these instead of filtering frames.
    """

    #: the values of :data:`SEGMENT_KEYS`
    key: tuple
    #: sensor -> its statistics (:data:`SEGMENT_STATS`), in the order of the input rows
    rows: dict[str, dict]
    #: the rows of sensors with a complete window (set by :meth:`Coverage.mark`)
    full: dict[str, dict] | None = None

    @property
    def start(self):
        return self.key[1]

    @property
    def end(self):
        return self.key[2]

    @property
    def work_order(self) -> str | None:
        return self.key[3]

    @property
    def product(self) -> str | None:
        return self.key[4]

    def score_row(self, model: str, score: float, is_anomaly: bool, evidence: str) -> dict:
        """A row of the ``scores`` table for this segment."""
        row = dict(zip(SEGMENT_KEYS, self.key, strict=True))
        row["model"], row["score"], row["is_anomaly"], row["evidence"] = (
            model,
            score,
            is_anomaly,
            evidence,
        )
        return row


def segments_of(features: pl.DataFrame) -> list[Segment]:
    """Feature rows as segments, in time order (ties: the input's order); rows of several
    machines give each machine's segments in that order (see :func:`by_machine`)."""
    if features.height == 0:
        return []
    cols = features.columns
    none = [None] * features.height

    def column(name: str) -> list:
        if name not in cols:
            return none
        series = features.get_column(name)
        return _times(series) if series.dtype == TIMESTAMP else series.to_list()

    keys = list(zip(*(column(k) for k in SEGMENT_KEYS), strict=True))
    sensors = column("sensor")
    stats = list(zip(*(column(s) for s in SEGMENT_STATS), strict=True))
    starts = features.get_column("window_start").to_physical().to_list()
    out: dict[tuple, Segment] = {}
    for i in sorted(range(features.height), key=starts.__getitem__):
        key = keys[i]
        seg = out.get(key)
        if seg is None:
            seg = out[key] = Segment(key, {})
        seg.rows[sensors[i]] = dict(zip(SEGMENT_STATS, stats[i]))  # noqa: B905 (same length)
    return list(out.values())


def by_machine(segments: list[Segment]) -> dict[str, list[Segment]]:
    """Segments by machine, each machine's in the given (time) order."""
    out: dict[str, list[Segment]] = {}
    for seg in segments:
        out.setdefault(seg.key[0], []).append(seg)
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))


def _times(series: pl.Series) -> list:
    """A UTC microsecond time column as Python datetimes (what ``to_list`` gives), each
    distinct value built once: a batch holds a few window bounds, repeated on every row."""
    cache: dict[int, datetime] = {}
    out = []
    for us in series.to_physical().to_list():
        t = cache.get(us)
        if t is None and us is not None:
            t = cache[us] = _EPOCH + timedelta(microseconds=us)
        out.append(t)
    return out


#: windows whose reading counts make a sensor's full count (the median of the newest of them)
FULL_COUNT_WINDOWS = 15


@dataclass
class Coverage:
    """Which sensors of a machine window have enough readings to be judged: one per machine.

    A window cut short by a changeover or by the start of data has too few readings for its
    statistics to be comparable; it is stored as a feature but not scored by the models that
    read only complete windows (``MachineModel.needs_coverage``). A sensor's full count is the
    median reading count of its newest :data:`FULL_COUNT_WINDOWS` windows (the new segments
    included): it follows the sampling rate, and no single window (a burst of duplicates, a
    short one) changes what counts as complete.
    """

    min_coverage: float = 0.8
    #: sensor -> its newest reading counts
    _counts: dict[str, deque] = field(default_factory=dict)

    def mark(self, segments: list[Segment]) -> None:
        """Set each segment's ``full``: the rows with at least ``min_coverage`` of the
        sensor's full reading count (an empty dict when none has)."""
        counts_of = self._counts
        for seg in segments:
            for sensor, r in seg.rows.items():
                n = r["n"]
                if n is None:
                    continue
                counts = counts_of.get(sensor)
                if counts is None:
                    counts = counts_of[sensor] = deque(maxlen=FULL_COUNT_WINDOWS)
                counts.append(n)
        # the upper median: of an even number of counts, the larger middle one
        cut = self.min_coverage
        expected = {s: cut * sorted(c)[len(c) // 2] for s, c in counts_of.items() if c}
        for seg in segments:
            seg.full = {
                sensor: r
                for sensor, r in seg.rows.items()
                if r["n"] is not None and r["n"] >= expected.get(sensor, 0)
            }


def full_means(seg: Segment) -> dict[str, float]:
    """Sensor -> window mean of a marked segment's complete rows (missing means left out)."""
    return {s: r["mean"] for s, r in seg.full.items() if r["mean"] is not None}


def score_frame(rows: list[dict]) -> pl.DataFrame:
    """Score rows as a frame of the ``scores`` table's schema (built column by column: times
    go in as integers, each distinct one converted once, many times faster than row dicts)."""
    return rows_frame(rows, SCORE_SCHEMA)


def rows_frame(rows: list[dict], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Row dicts as a frame of ``schema``; UTC times may be Python datetimes."""
    columns = []
    for name, dtype in schema.items():
        values = [r[name] for r in rows]
        if dtype == TIMESTAMP:
            cache: dict[datetime | None, int | None] = {None: None}
            ints = []
            for t in values:
                if t not in cache:
                    aware = t if t.tzinfo is not None else t.replace(tzinfo=_EPOCH.tzinfo)
                    cache[t] = (aware - _EPOCH) // _US
                ints.append(cache[t])
            columns.append(pl.Series(name, ints, dtype=pl.Int64).cast(dtype))
        else:
            columns.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(columns)


_US = timedelta(microseconds=1)
