"""Failure prediction: a health index from all of a machine's sensors, and its remaining life.

A wearing bearing shows for hours before the machine stops, and in more than one signal: it
vibrates, and the friction heats the spindle or loads the motor. The model of one machine:

1. **healthy baseline per product**: the first ``baseline_windows`` windows of each product
   (not quarantined) give each sensor's median and robust spread (MAD) of the window means;
   products differ in their normal levels, so each product keeps its own. An hour does not see
   all of a sensor's slow wander (cycles of one to two hours; a product whose orders alternate
   with another's may see one phase of it only): while the machine is healthy (index below
   ``learn_below``), one window in ``learn_every`` moves each sensor's variance towards its
   squared deviation from the median (winsorised at ``learn_clip`` spreads; weights halving
   every ``baseline_half_life`` windows; never below the first hour's spread), so the spread
   comes to hold the wander, and two sensors that wander together stay below the alert
   (``baseline_half_life=0`` keeps the first hour's spread). The median stays: a level learned
   on would follow the first hours of wear, where a wider spread only dulls them;
2. **per-sensor deviation**: ``z = (mean - median) / spread`` against the running product's
   baseline, smoothed per sensor with an exponentially weighted mean (``half_life`` windows);
3. **health index**: the ``min_sensors``-th largest smoothed ``|z|`` (default the second): the
   deviation that several condition sensors agree on. A process upset, a bad lot, tool wear or
   a calibration offset moves one condition sensor (and the part); wear moves several. The
   parts' quality characteristics (the ERP spec limits' characteristics in ``Context.specs``)
   are left out: they are the SPC and deviation models' concern, and tool wear shows there;
   windows whose measurement another model found faulty (``Context.quarantine``) are scored
   with the index as it stands and teach nothing;
4. **risk**: ``score = 1 / (1 + exp(-(h - h_alert) / scale))``; a window is flagged once the
   index has stayed above ``h_alert`` for ``confirm`` windows;
5. **remaining useful life in hours**: a least-squares line through the index over the last
   ``trend_hours`` (times from the segments, so the window length does not matter), carried to
   ``h_fail``, the index at which this machine failed before (a prior until a failure is
   logged: :meth:`MachineFailureModel.maintenance` learns it from a CMMS ``failure`` event,
   then starts the trend afresh). The interval ``[rul_low_h, rul_high_h]`` comes from the
   slope's standard error (``interval_z`` of them, inflated for the smoothing's correlation)
   and the spread of the failure index (``h_fail_spread``, relative).
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import ClassVar

from floorsight.models.base import (
    AlertRule,
    Context,
    MachineModel,
    Maintenance,
    ModelOutput,
    fading_factor,
)
from floorsight.models.machine import Segment

#: robust spread: the MAD of a normal sample times this is its standard deviation
_MAD_TO_STD = 1.4826


@dataclass
class MachineFailureModel(MachineModel):
    """Health index and remaining useful life of one machine (model and alert cause
    ``failure_risk``).

    ``evidence`` of a score row (JSON): ``health`` (the index), ``rul_hours`` with
    ``rul_low_h`` / ``rul_high_h`` (None while the index does not rise; ``rul_high_h`` None when
    the slope is not surely positive), and ``sensors``: the most deviating sensors with their
    smoothed z.

    Examples
    --------
    Two sensors rise together, slowly, after an hour of healthy windows:

    >>> import random
    >>> from datetime import UTC, datetime, timedelta
    >>> from floorsight.models.machine import Segment
    >>> rng, t0 = random.Random(7), datetime(2026, 1, 1, tzinfo=UTC)
    >>> def window(i, wear):
    ...     start = t0 + timedelta(seconds=10 * i)
    ...     key = ("M1", start, start + timedelta(seconds=10), "WO-1", "P-100", "L-1")
    ...     means = {"vibration_mm_s": 1.8 + rng.gauss(0, 0.03) + wear,
    ...              "spindle_temp_c": 42 + rng.gauss(0, 0.2) + 8 * wear,
    ...              "spindle_current_a": 11.5 + rng.gauss(0, 0.05)}
    ...     return Segment(key, {s: {"mean": m} for s, m in means.items()})
    >>> model = MachineFailureModel(baseline_windows=360, h_fail=20.0)
    >>> healthy = model.score_segments([window(i, 0.0) for i in range(720)], Context())
    >>> max(r["score"] for r in healthy.scores) < 0.5
    True
    >>> worn = model.score_segments(
    ...     [window(720 + i, 0.001 * i) for i in range(900)], Context()).scores
    >>> worn[-1]["is_anomaly"], json.loads(worn[-1]["evidence"])["sensors"][0][0]
    (True, 'spindle_temp_c')
    """

    name: ClassVar[str] = "failure_risk"
    alert: ClassVar[AlertRule] = AlertRule(
        label="failure risk (health index of the machine's sensors rising towards failure)",
        open_after=1,
    )

    baseline_windows: int = 360
    baseline_half_life: float = 2160.0
    learn_below: float = 2.5
    learn_clip: float = 4.0
    learn_every: int = 6
    half_life: float = 30.0
    min_sensors: int = 2
    h_alert: float = 5.0
    scale: float = 1.0
    confirm: int = 30
    trend_hours: float = 1.0
    h_fail: float = 12.0
    h_fail_spread: float = 0.3
    interval_z: float = 1.64
    _base: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: product -> sensor -> [median, variance, 1 / spread, the first hour's variance] (the
    #: variance learned on while the machine is healthy, never below the first hour's)
    _stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: sensor -> its smoothed |z| (a float each: a River ``EWMean`` per sensor costs more
    #: than the whole model on 20 sensors, for the same arithmetic)
    _smooth: dict[str, float] = field(default_factory=dict)
    #: the most deviating sensors at the last update, (sensor, smoothed |z|)
    _top: list[tuple[str, float]] = field(default_factory=list)
    _health: float = 0.0
    _above: int = 0
    #: healthy windows since the baseline's spread last learned
    _healthy: int = 0
    _trend: deque = field(default_factory=deque)
    #: running sums of the trend: n, t, h, t*t, t*h, h*h
    _sums: list[float] = field(default_factory=lambda: [0.0] * 6)
    _t0: datetime | None = None
    _failures: list[float] = field(default_factory=list)

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """One score row per segment once a product's baseline is learned, in time order."""
        quality = set(context.characteristics)
        rows = []
        for seg in segments:
            product = seg.product or "?"
            means = {
                s: r["mean"]
                for s, r in seg.rows.items()
                if s not in quality and r.get("mean") is not None
            }
            if not means:
                continue
            baseline = self._stats.get(product)
            if seg.start in context.quarantine:
                if baseline is None:
                    continue
            elif baseline is None:
                baseline = self._learn_baseline(product, means)
                if baseline is None:
                    continue
            else:
                self._update(seg, means, baseline)
            rows.append(self._row(seg))
        return ModelOutput(rows)

    def _learn_baseline(self, product: str, means: dict[str, float]):
        base = self._base.setdefault(product, {})
        for s, x in means.items():
            base.setdefault(s, []).append(x)
        if max(len(v) for v in base.values()) < self.baseline_windows:
            return None
        baseline = {}
        for s, values in base.items():
            if len(values) >= self.baseline_windows // 2:
                med = _median(values)
                mad = _median([abs(v - med) for v in values]) * _MAD_TO_STD
                spread = max(mad, 1e-6 * abs(med), 1e-12)
                baseline[s] = [med, spread * spread, 1.0 / spread, spread * spread]
        del self._base[product]
        self._stats[product] = baseline
        return baseline

    def _update(self, seg: Segment, means: dict[str, float], baseline: dict) -> None:
        alpha = fading_factor(self.half_life)
        smooth = self._smooth
        for s, x in means.items():
            ref = baseline.get(s)
            if ref is None:
                continue
            z = abs(x - ref[0]) * ref[2]
            last = smooth.get(s)
            smooth[s] = z if last is None else last + alpha * (z - last)
        ranked = sorted(smooth.items(), key=itemgetter(1), reverse=True)
        self._top = ranked[:3]
        k = self.min_sensors
        self._health = h = ranked[k - 1][1] if len(ranked) >= k else 0.0
        self._above = self._above + 1 if h > self.h_alert else 0
        self._add_trend(seg.start, h)
        if self.baseline_half_life > 0 and h < self.learn_below:
            self._healthy += 1
            if self._healthy >= self.learn_every:
                self._healthy = 0
                self._learn(means, baseline)

    def _learn(self, means: dict[str, float], baseline: dict) -> None:
        """A healthy window (one in ``learn_every``: the wander is slow, neighbours alike)
        moves each sensor's variance towards its squared deviation from the baseline's median,
        winsorised at ``learn_clip`` spreads, never below the first hour's (a stuck sensor
        would narrow it to nothing)."""
        a = fading_factor(self.baseline_half_life / self.learn_every)
        clip = self.learn_clip
        for s, x in means.items():
            ref = baseline.get(s)
            if ref is None:
                continue
            lim = clip / ref[2]
            d = min(max(x - ref[0], -lim), lim)
            ref[1] = max(ref[1] + a * (d * d - ref[1]), ref[3])
            ref[2] = 1.0 / math.sqrt(ref[1])

    def _add_trend(self, at: datetime, h: float) -> None:
        if self._t0 is None:
            self._t0 = at
        t = (at - self._t0).total_seconds() / 3600
        self._trend.append((t, h))
        self._sum(t, h, 1.0)
        while self._trend and self._trend[0][0] < t - self.trend_hours:
            self._sum(*self._trend.popleft(), -1.0)

    def _sum(self, t: float, h: float, sign: float) -> None:
        s = self._sums
        s[0] += sign
        s[1] += sign * t
        s[2] += sign * h
        s[3] += sign * t * t
        s[4] += sign * t * h
        s[5] += sign * h * h

    def _rul(self) -> tuple[float, float, float | None] | None:
        """(RUL, low, high) in hours from the index's trend, or None while it does not rise."""
        trend = self._trend
        n = len(trend)
        if n < 10:
            return None
        _, st, sh, stt, sth, shh = self._sums
        mt, mh = st / n, sh / n
        sxx = stt - n * mt * mt
        if sxx <= 0:
            return None
        slope = (sth - n * mt * mh) / sxx
        if slope <= 0:
            return None
        now_t = trend[-1][0]
        now = mh + slope * (now_t - mt)
        rss = max(0.0, shh - n * mh * mh - slope * (sth - n * mt * mh))
        # the smoothing makes neighbouring residuals alike: about one free value per half-life
        inflate = math.sqrt(max(1.0, 2 * self.half_life))
        se = math.sqrt(rss / max(n - 2, 1) / sxx) * inflate
        h_fail, spread = self._failure_index()
        lo_slope, hi_slope = slope + self.interval_z * se, slope - self.interval_z * se
        rul = max(0.0, (h_fail - now) / slope)
        low = max(0.0, (h_fail * (1 - self.interval_z * spread) - now) / lo_slope)
        high = None if hi_slope <= 0 else (h_fail * (1 + self.interval_z * spread) - now) / hi_slope
        return rul, min(low, rul), None if high is None else max(high, rul)

    def _failure_index(self) -> tuple[float, float]:
        """The index this machine fails at, and its relative spread (prior until learned)."""
        seen = self._failures
        if not seen:
            return self.h_fail, self.h_fail_spread
        # the prior counts as one failure, so one odd failure does not decide alone
        values = [self.h_fail, *seen]
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        return mean, max(sd / mean, 0.1) if mean > 0 else self.h_fail_spread

    def _row(self, seg: Segment) -> dict:
        h = self._health
        risk = 1 / (1 + math.exp(-min(max((h - self.h_alert) / self.scale, -50.0), 50.0)))
        rul = self._rul()
        evidence = {
            "health": round(h, 2),
            "rul_hours": None if rul is None else round(rul[0], 2),
            "rul_low_h": None if rul is None else round(rul[1], 2),
            "rul_high_h": None if rul is None or rul[2] is None else round(rul[2], 2),
            "sensors": [[s, round(z, 1)] for s, z in self._top],
        }
        flagged = self._above >= self.confirm
        return seg.score_row(self.name, risk, flagged, json.dumps(evidence))

    def maintenance(self, event: Maintenance) -> None:
        """A logged failure is the label: learn the index the machine failed at, then start
        afresh (the repair restores the healthy state; the product baselines still hold)."""
        if event.kind != "failure":
            return
        if self._trend:
            self._failures.append(self._health)
            del self._failures[:-20]
        self._smooth.clear()
        self._top = []
        self._health = 0.0
        self._above = 0
        self._trend.clear()
        self._sums = [0.0] * 6
        self._t0 = None

    def metrics(self) -> dict[str, float]:
        h_fail, _ = self._failure_index()
        return {"failure_risk.h_fail": h_fail, "failure_risk.failures": float(len(self._failures))}


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
