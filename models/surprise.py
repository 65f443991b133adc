"""Surprise: is the machine's recent behaviour more surprising than it usually is?

A process anomaly detector for any stream, with no sensor chosen by hand and no spec limits:
every sensor of the machine is watched on its own and the evidence is combined.

1. **Raw surprise** of each sensor's window mean (a reading's value in row mode): its absolute
   deviation from a robust level (exponentially weighted, half-life ``level_half_life``
   windows, a step clipped at 3 spreads, so a fault moves it slowly) in units of the spread of
   those deviations (half-life ``half_life``, learned only from windows below ``learn_z``). The
   spread never falls below the sensor's resolution (the smallest change it has shown), so a
   sensor that sat still does not turn its first step into a thousand standard deviations.
2. **Likelihood**, as Numenta's anomaly likelihood (Ahmad et al., "Unsupervised real-time
   anomaly detection for streaming data", Neurocomputing 2017) does it for any raw score: the
   mean raw surprise of the last ``short`` windows against the distribution of the raw surprise
   over the long run (an exponentially weighted mean and variance, half-life
   ``long_half_life``, of the values that left the short window). A series that is always
   jumpy is not anomalous for being jumpy; one that is calm is when it starts to jump.
3. Each sensor's one-sided p-value of that z, combined over the sensors by Bonferroni (the
   smallest p times the number of sensors): ``score = evidence_score(log10 p)``
   (``models/evidence.py``: it keeps the ordering to the top), flagged at ``threshold``.

One state per product: a changeover re-bases every level (the spreads stay), like the anomaly
model. Windows that sensor health quarantined teach it nothing. State per sensor is a few
numbers and the last ``short`` surprises.

The defaults were chosen on NAB's development series by leave-series-out cross-validation
(``benchmarks/surprise_selection.py``; docs/accuracy.md).

>>> import random
>>> from datetime import UTC, datetime, timedelta
>>> rng = random.Random(3)
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> def seg(i, v):
...     start = t0 + timedelta(seconds=i)
...     rows = {"temp": {"n": 1, "mean": v}}
...     return Segment(("M", start, start + timedelta(seconds=1), "", "", ""), rows, rows)
>>> model = SurpriseModel(short=3, long_half_life=1000.0, level_half_life=100.0)
>>> calm = [seg(i, 40 + rng.gauss(0, 0.1)) for i in range(3000)]
>>> max(r["score"] for r in model.score_segments(calm, Context()).scores[100:]) < 0.9999
True
>>> jump = [seg(3000 + i, 41.5 + rng.gauss(0, 0.1)) for i in range(5)]
>>> any(r["is_anomaly"] for r in model.score_segments(jump, Context()).scores)
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

from scipy import special

from floorsight.models.base import (
    AlertRule,
    Context,
    MachineModel,
    Maintenance,
    ModelOutput,
    fading_factor,
)
from floorsight.models.evidence import evidence_score
from floorsight.models.machine import Segment

_LN10 = math.log(10.0)


@dataclass(slots=True)
class _Sensor:
    """One sensor's state within one product."""

    short: int
    n: int = 0
    level: float = 0.0
    #: values since the start or the last re-base (the level's own count)
    settled: int = 0
    var: float = 0.0
    quantum: float = math.inf
    last: float | None = None
    recent: deque = field(default_factory=deque)
    #: surprises that left the short window: their count, mean and variance
    z_n: int = 0
    z_mean: float = 0.0
    z_var: float = 0.0


@dataclass
class SurpriseModel(MachineModel):
    """Per machine: the anomaly likelihood of every sensor, combined (module docstring)."""

    name: ClassVar[str] = "surprise"
    #: scores only in the pipeline (the anomaly model alerts on process anomalies)
    alert: ClassVar[AlertRule | None] = None
    needs_coverage: ClassVar[bool] = True

    threshold: float = 0.99999
    level_half_life: float = 30.0
    half_life: float = 360.0
    learn_z: float = 4.0
    short: int = 1
    long_half_life: float = 300.0
    grace_period: int = 30
    _products: dict[str, dict[str, _Sensor]] = field(default_factory=dict)
    _work_order: str | None = None

    def __post_init__(self) -> None:
        if self.short < 1:
            raise ValueError(f"short must be at least 1 window, got {self.short}")
        for name in ("level_half_life", "half_life", "long_half_life"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def maintenance(self, event: Maintenance) -> None:
        if event.kind != "failure":
            self._rebase()

    def _rebase(self) -> None:
        for sensors in self._products.values():
            for s in sensors.values():
                s.settled = 0

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        rows = []
        quarantine = context.quarantine
        a_level = fading_factor(self.level_half_life)
        a_var = fading_factor(self.half_life)
        a_long = fading_factor(self.long_half_life)
        grace, learn_z, short = self.grace_period, self.learn_z, self.short
        for seg in segments:
            full = seg.full
            if not full:
                continue
            if seg.work_order != self._work_order:
                if self._work_order is not None:
                    self._rebase()
                self._work_order = seg.work_order
            sensors = self._products.setdefault(seg.product or "", {})
            learn = seg.start not in quarantine
            best_log_p, judged, top = 0.0, 0, ""
            for name, r in full.items():
                v = r["mean"]
                if v is None or not math.isfinite(v):
                    continue
                s = sensors.get(name)
                if s is None:
                    s = sensors[name] = _Sensor(short)
                log_p = self._step(s, v, learn, a_level, a_var, a_long, grace, learn_z, short)
                if log_p is None:
                    continue
                judged += 1
                if log_p < best_log_p:
                    best_log_p, top = log_p, name
            if judged == 0:
                rows.append(seg.score_row(self.name, 0.0, False, ""))
                continue
            log10_p = min(0.0, best_log_p + math.log10(judged))
            score = evidence_score(log10_p)
            flagged = score >= self.threshold
            evidence = f"{top}: p={10**log10_p:.2g}" if flagged else ""
            rows.append(seg.score_row(self.name, score, flagged, evidence))
        return ModelOutput(rows)

    @staticmethod
    def _step(
        s: _Sensor,
        v: float,
        learn: bool,
        a_level: float,
        a_var: float,
        a_long: float,
        grace: int,
        learn_z: float,
        short: int,
    ) -> float | None:
        """One value of one sensor: its log10 p-value (None while warming up), then learned."""
        if s.last is not None and v != s.last:
            s.quantum = min(s.quantum, abs(v - s.last))
        s.last = v
        if s.settled == 0:  # the start, or a re-base: the level starts at this value
            s.level = v
            s.settled = 1
            s.n += 1
            return None
        d = v - s.level
        spread = math.sqrt(s.var) if s.n > 1 else 0.0
        floor = s.quantum if s.quantum != math.inf else 1e-12
        spread = max(spread, floor, 1e-12)
        z = abs(d) / spread
        warm = s.n >= grace
        if learn:
            if z < learn_z or not warm:
                a = max(1.0 / s.n, a_var)
                s.var = (1.0 - a) * s.var + a * d * d
            limit = 3.0 * spread
            step = d if not warm else max(-limit, min(limit, d))
            s.level += max(1.0 / (s.settled + 1), a_level) * step
        s.n += 1
        s.settled += 1
        if not warm:
            return None
        recent = s.recent
        recent.append(z)
        if len(recent) > short:
            old = recent.popleft()
            s.z_n += 1
            a = max(1.0 / s.z_n, a_long)
            delta = old - s.z_mean
            s.z_mean += a * delta
            s.z_var = (1.0 - a) * (s.z_var + a * delta * delta)
        if s.z_n < grace:
            return None
        m = sum(recent) / len(recent)
        sd = max(math.sqrt(s.z_var), 1e-9)
        r = (m - s.z_mean) / sd
        if r <= 0:
            return 0.0
        if r < 8.0:
            return math.log10(0.5 * math.erfc(r / math.sqrt(2.0)))
        return float(special.log_ndtr(-r)) / _LN10
