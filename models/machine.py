"""The per-machine anomaly model that the pipeline runs on each machine's window features.

One detector per product: the process runs at other setpoints after a changeover, so each
product keeps its own in-control baseline and a planned changeover is not an anomaly. When a
new work order starts, the product's detector re-bases: it keeps the spread it learned but
re-estimates each level from the order's first windows (the setup, the material and the hours
the product was away all move the operating point). Only
windows that look clearly normal (score below ``learn_below``, well under the alarm threshold)
teach the detector its spread; the others only nudge its levels (robustly, a few standard
deviations at most), so a fault is not learned as normal, yet the levels keep following the
process and the alert clears when the fault is over.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from floorsight.models.zscore import MultivariateZScore
from floorsight.records import TIMESTAMP

#: Window statistics the anomaly model reads, per sensor.
MODEL_STATISTICS = ("mean", "std")

SCORE_SCHEMA: dict[str, pl.DataType] = {
    "machine_id": pl.String(),
    "window_start": TIMESTAMP,
    "window_end": TIMESTAMP,
    "work_order": pl.String(),
    "product": pl.String(),
    "material_lot": pl.String(),
    "model": pl.String(),
    "score": pl.Float64(),
    "is_anomaly": pl.Boolean(),
    "evidence": pl.String(),
}


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


def full_rows(
    segments: list[Segment], full_count: dict[str, deque], min_coverage: float
) -> list[tuple[Segment, dict[str, dict]]]:
    """Per segment, the rows whose window has at least ``min_coverage`` of the sensor's full
    reading count (segments with none are left out).

    A window cut short by a changeover or by the start of data has too few readings for its
    statistics to be comparable; it is stored as a feature but not scored. A sensor's full
    count is the median reading count of its newest :data:`FULL_COUNT_WINDOWS` windows (these
    segments included): it follows the sampling rate, and no single window (a burst of
    duplicates, a short one) changes what counts as complete. ``full_count`` (sensor -> those
    counts) is updated in place; a count kept by an older version (the largest one seen, an
    int) starts the sensor's history.
    """
    for seg in segments:
        for sensor, r in seg.rows.items():
            n = r["n"]
            if n is None:
                continue
            counts = full_count.get(sensor)
            if not isinstance(counts, deque):
                counts = full_count[sensor] = deque(
                    () if counts is None else (counts,), maxlen=FULL_COUNT_WINDOWS
                )
            counts.append(n)
    # the upper median: of an even number of counts, the larger middle one
    expected = {s: sorted(c)[len(c) // 2] for s, c in full_count.items() if c}
    out = []
    for seg in segments:
        full = {
            sensor: r
            for sensor, r in seg.rows.items()
            if r["n"] is not None and r["n"] >= min_coverage * expected.get(sensor, 0)
        }
        if full:
            out.append((seg, full))
    return out


def segment_means(
    segments: list[Segment], full_count: dict[str, deque], min_coverage: float
) -> list[tuple[Segment, dict[str, float]]]:
    """Per full segment, in time order: sensor -> window mean (missing means left out)."""
    out = []
    for seg, rows in full_rows(segments, full_count, min_coverage):
        means = {s: r["mean"] for s, r in rows.items() if r["mean"] is not None}
        if means:
            out.append((seg, means))
    return out


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


@dataclass
class MachineAnomalyModel:
    """Scores each complete window of one machine, then learns it unless it was anomalous."""

    threshold: float = 0.9999
    learn_below: float = 0.99
    grace_period: int = 30
    half_life: float = 360.0
    min_coverage: float = 0.8
    name: str = "zscore"
    _detectors: dict[str, MultivariateZScore] = field(default_factory=dict)
    _full_count: dict[str, deque] = field(default_factory=dict)
    _work_order: str | None = None
    _zero_std: dict[str, tuple[int, int]] = field(default_factory=dict)

    def rebase(self) -> None:
        """Re-estimate the running product's levels from the next windows (after maintenance:
        a tool change or a repair moves the operating point like a changeover does)."""
        self._work_order = None
        for detector in self._detectors.values():
            detector.rebase()

    def _detector(self, product: str) -> MultivariateZScore:
        if product not in self._detectors:
            self._detectors[product] = MultivariateZScore(
                grace_period=self.grace_period, half_life=self.half_life
            )
        return self._detectors[product]

    def score(self, features: pl.DataFrame, quarantine: frozenset = frozenset()) -> pl.DataFrame:
        """One score row per (window, work order) segment of ``features`` (one machine)."""
        return score_frame(self.score_segments(segments_of(features), quarantine))

    def score_segments(self, segments: list[Segment], quarantine=frozenset()) -> list[dict]:
        """Score rows of the full segments, in time order.

        Windows whose start is in ``quarantine`` (another model found the measurement itself
        faulty: a stuck, missing or spiking sensor) are scored but teach the detector nothing.
        """
        # a sensor held per machine cycle has no spread in most windows: its std is not a
        # statistic of the process, so only its mean is scored
        zero_std = self._zero_std
        for seg in segments:
            for sensor, r in seg.rows.items():
                std = r["std"]
                if std is not None:
                    z0, t0 = zero_std.get(sensor, (0, 0))
                    zero_std[sensor] = (z0 + (std == 0), t0 + 1)
        held = {s for s, (z, t) in zero_std.items() if t >= 10 and z > 0.3 * t}
        rows = []
        for seg, full in full_rows(segments, self._full_count, self.min_coverage):
            x = {}
            for sensor, r in full.items():
                x[f"{sensor}.mean"] = r["mean"]
                if sensor not in held:
                    x[f"{sensor}.std"] = r["std"]
            detector = self._detector(seg.product)
            if seg.work_order != self._work_order:
                if self._work_order is not None:
                    detector.rebase()
                self._work_order = seg.work_order
            score = detector.score_one(x)
            flagged = score >= self.threshold
            evidence = ""
            if flagged:
                z = detector.explain_one(x)
                top = sorted(z.items(), key=lambda kv: -kv[1])[:3]
                evidence = "; ".join(f"{k} z={v:.1f} (value {x[k]:.4g})" for k, v in top)
            if seg.start in quarantine:
                pass
            elif score < self.learn_below:
                detector.learn_one(x)
            else:
                detector.track_one(x)
            rows.append(seg.score_row(self.name, score, flagged, evidence))
        return rows
