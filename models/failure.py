"""Failure prediction: a degradation monitor per machine with a remaining-useful-life estimate.

A failing bearing shows as vibration that rises for hours before the machine stops. For each
machine the monitor follows one signal (``vibration_mm_s`` window means by default):

1. **healthy baseline per product**: the first ``baseline_windows`` windows of each product are
   its reference (mean, std) - products differ in their normal vibration;
2. **health index**: ``h = (x - mean) / std`` against the running product's baseline, smoothed
   with an EWMA (``half_life`` windows), so one noisy window does not count;
3. **risk**: ``p = 1 / (1 + exp(-(h - h_alert) / scale))``, the probability that the machine is
   degrading towards failure; an alert opens when ``h`` stays above ``h_alert`` for
   ``confirm`` windows;
4. **remaining useful life**: a least-squares line through the last ``trend_windows`` values of
   ``h`` extrapolated to ``h_fail``, the index at which machines failed before. ``h_fail``
   starts from a prior and is learned from the maintenance log: :meth:`learn_failure` takes the
   index seen just before a recorded failure (a label that arrives with the log's delay), and
   new machines share the fleet's estimate (:class:`FleetPrior`).
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field

import polars as pl


@dataclass
class FleetPrior:
    """Failure index learned across machines: new machines start from the fleet's knowledge."""

    h_fail: float = 30.0
    failures: int = 0

    def learn(self, h_at_failure: float) -> None:
        self.failures += 1
        # running mean of the index at failure, starting from the prior as one observation
        self.h_fail += (h_at_failure - self.h_fail) / (self.failures + 1)


@dataclass
class Verdict:
    health: float
    risk: float
    alert: bool
    rul_windows: float | None


@dataclass
class DegradationMonitor:
    baseline_windows: int = 60
    half_life: float = 10.0
    h_alert: float = 4.0
    scale: float = 1.0
    confirm: int = 5
    trend_windows: int = 60
    prior: FleetPrior = field(default_factory=FleetPrior)
    _base: dict[str, list[float]] = field(default_factory=dict)
    _stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    _h: float | None = None
    _above: int = 0
    _trend: deque = field(default_factory=lambda: deque(maxlen=60))

    def update(self, product: str, x: float) -> Verdict | None:
        """Feed one window's value; None while the product's baseline is being learned."""
        stats = self._stats.get(product)
        if stats is None:
            base = self._base.setdefault(product, [])
            base.append(x)
            if len(base) < self.baseline_windows:
                return None
            mean = sum(base) / len(base)
            std = math.sqrt(sum((v - mean) ** 2 for v in base) / (len(base) - 1)) or 1e-9
            stats = self._stats[product] = (mean, std)
            del self._base[product]
        z = (x - stats[0]) / stats[1]
        alpha = 1 - 0.5 ** (1 / self.half_life)
        self._h = z if self._h is None else alpha * z + (1 - alpha) * self._h
        h = self._h
        self._above = self._above + 1 if h > self.h_alert else 0
        if self._trend.maxlen != self.trend_windows:
            self._trend = deque(self._trend, maxlen=self.trend_windows)
        self._trend.append(h)
        risk = 1 / (1 + math.exp(-(h - self.h_alert) / self.scale))
        return Verdict(h, risk, self._above >= self.confirm, self._rul())

    def _rul(self) -> float | None:
        n = len(self._trend)
        if n < 10:
            return None
        xs = range(n)
        mx, my = (n - 1) / 2, sum(self._trend) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, self._trend, strict=True)) / sxx
        if slope <= 0:
            return None
        now = my + slope * (n - 1 - mx)
        return max(0.0, (self.prior.h_fail - now) / slope)

    def learn_failure(self) -> None:
        """A failure was recorded for this machine: learn the index it failed at, then reset."""
        if self._h is not None:
            self.prior.learn(self._h)
        self._h = None
        self._above = 0
        self._trend.clear()


@dataclass
class MachineFailureModel:
    """The dataflow's failure model of one machine: window features in, ``failure_risk`` scores out.

    Scores use the score table's schema (model ``failure_risk``; ``score`` is the risk,
    ``is_anomaly`` the monitor's alert, ``evidence`` the health index and the RUL in windows).
    """

    signal: str = "vibration_mm_s"
    monitor: DegradationMonitor = field(default_factory=DegradationMonitor)

    def score(self, features: pl.DataFrame) -> pl.DataFrame | None:
        from floorsight.models.machine import score_frame, segments_of

        rows = self.score_segments(segments_of(features))
        return score_frame(rows) if rows else None

    def score_segments(self, segments: list) -> list[dict]:
        """One score row per segment with the signal's mean (once the monitor has a verdict)."""
        rows = []
        for seg in segments:
            r = seg.rows.get(self.signal)
            if r is None or r["mean"] is None:
                continue
            v = self.monitor.update(seg.product or "?", r["mean"])
            if v is None:
                continue
            rul = None if v.rul_windows is None else round(v.rul_windows, 1)
            evidence = json.dumps({"health": round(v.health, 2), "rul_windows": rul})
            rows.append(seg.score_row("failure_risk", v.risk, v.alert, evidence))
        return rows
