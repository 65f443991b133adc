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

from dataclasses import dataclass, field

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


def full_windows(
    features: pl.DataFrame, full_count: dict[str, int], min_coverage: float
) -> pl.DataFrame:
    """Rows whose window has at least ``min_coverage`` of the sensor's full reading count.

    A window cut short by a changeover or by the start of data has too few readings for its
    statistics to be comparable; it is stored as a feature but not scored. ``full_count`` (the
    most readings each sensor delivered in a window so far) is updated in place.
    """
    for sensor, n in features.group_by("sensor").agg(pl.col("n").max()).iter_rows():
        full_count[sensor] = max(full_count.get(sensor, 0), n)
    full = pl.col("sensor").replace_strict(full_count, default=0)
    return features.filter(pl.col("n") >= min_coverage * full)


def segment_means(
    features: pl.DataFrame, full_count: dict[str, int], min_coverage: float
) -> pl.DataFrame:
    """Per full segment, in time order: its keys and lists ``sensor`` and ``mean``."""
    return (
        full_windows(features, full_count, min_coverage)
        .filter(pl.col("mean").is_not_null())
        .group_by(SEGMENT_KEYS)
        .agg("sensor", "mean")
        .sort("window_start")
    )


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
    _full_count: dict[str, int] = field(default_factory=dict)
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
        """One score row per (window, work order) segment of ``features`` (one machine).

        Windows whose start is in ``quarantine`` (another model found the measurement itself
        faulty: a stuck, missing or spiking sensor) are scored but teach the detector nothing.
        """
        # a sensor held per machine cycle has no spread in most windows: its std is not a
        # statistic of the process, so only its mean is scored
        for sensor, zero, total in (
            features.group_by("sensor")
            .agg((pl.col("std") == 0).sum().alias("zero"), pl.col("std").is_not_null().sum())
            .iter_rows()
        ):
            z0, t0 = self._zero_std.get(sensor, (0, 0))
            self._zero_std[sensor] = (z0 + zero, t0 + total)
        held = [s for s, (z, t) in self._zero_std.items() if t >= 10 and z > 0.3 * t]
        segments = (
            full_windows(features, self._full_count, self.min_coverage)
            .with_columns(
                feature=pl.concat_list(
                    [pl.concat_str([pl.col("sensor"), pl.lit("." + s)]) for s in MODEL_STATISTICS]
                ),
                stat=pl.concat_list([pl.col(s) for s in MODEL_STATISTICS]),
            )
            .explode("feature", "stat")
            .group_by(SEGMENT_KEYS)
            .agg("feature", "stat")
            .sort("window_start")
        )
        rows = []
        for seg in segments.iter_rows(named=True):
            x = dict(zip(seg.pop("feature"), seg.pop("stat"), strict=True))
            for sensor in held:
                x.pop(f"{sensor}.std", None)
            detector = self._detector(seg["product"])
            if seg["work_order"] != self._work_order:
                if self._work_order is not None:
                    detector.rebase()
                self._work_order = seg["work_order"]
            score = detector.score_one(x)
            flagged = score >= self.threshold
            evidence = ""
            if flagged:
                z = detector.explain_one(x)
                top = sorted(z.items(), key=lambda kv: -kv[1])[:3]
                evidence = "; ".join(f"{k} z={v:.1f} (value {x[k]:.4g})" for k, v in top)
            if seg["window_start"] in quarantine:
                pass
            elif score < self.learn_below:
                detector.learn_one(x)
            else:
                detector.track_one(x)
            rows.append(
                {
                    **seg,
                    "model": self.name,
                    "score": score,
                    "is_anomaly": flagged,
                    "evidence": evidence,
                }
            )
        return pl.DataFrame(rows, schema=SCORE_SCHEMA)
