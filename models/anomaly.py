"""Process anomalies of one machine: a multivariate z-score per product on its window statistics.

One detector per product: the process runs at other setpoints after a changeover, so each
product keeps its own in-control baseline and a planned changeover is not an anomaly. When a
new work order starts, the product's detector re-bases: it keeps the spread it learned but
re-estimates each level from the order's first windows (the setup, the material and the hours
the product was away all move the operating point); a tool change or a repair from the CMMS
log does the same. Only windows that look clearly normal (score below ``learn_below``, well
under the alarm threshold) teach the detector its spread; the others only nudge its levels
(robustly, a few standard deviations at most), so a fault is not learned as normal, yet the
levels keep following the process and the alert clears when the fault is over. Windows in
which sensor health found the measurement faulty (``Context.quarantine``) teach it nothing.

People's feedback moves the threshold: a false alarm halves the share of windows it may flag
(0.9999 -> 0.99995 ...; a factor of 2 in the p-value also past 0.999999, where the score
leaves ``1 - p``: models/evidence.py), a confirmed problem undoes one such step (never below
the setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from floorsight.models.base import AlertRule, Context, MachineModel, Maintenance, ModelOutput
from floorsight.models.evidence import evidence_score, log10_p_of_score
from floorsight.models.machine import Segment
from floorsight.models.zscore import MultivariateZScore

_LOG10_2 = math.log10(2.0)


@dataclass
class AnomalyModel(MachineModel):
    """Scores each complete window of one machine, then learns it unless it was anomalous."""

    name: ClassVar[str] = "anomaly"
    alert: ClassVar[AlertRule] = AlertRule(label="process anomaly")
    needs_coverage: ClassVar[bool] = True

    threshold: float = 0.9999
    learn_below: float = 0.99
    grace_period: int = 30
    half_life: float = 360.0
    _detectors: dict[str, MultivariateZScore] = field(default_factory=dict)
    _work_order: str | None = None
    _zero_std: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: the threshold as set, which confirmed problems never go below
    _base_threshold: float | None = None

    def maintenance(self, event: Maintenance) -> None:
        """A tool change, repair or maintenance moves the operating point like a changeover:
        re-estimate the running product's levels from the next windows."""
        if event.kind == "failure":
            return
        self._work_order = None
        for detector in self._detectors.values():
            detector.rebase()

    def feedback(self, label: str) -> None:
        if self._base_threshold is None:
            self._base_threshold = self.threshold
        # the step is a factor of 2 in p (the share of in-control windows flagged), also past
        # the score's knee at p = 1e-6, where halving 1 - score would divide p by many decades
        log10_p = log10_p_of_score(self.threshold)
        if label == "false_alarm":
            self.threshold = evidence_score(log10_p - _LOG10_2)
        elif label == "true_problem":
            self.threshold = max(evidence_score(log10_p + _LOG10_2), self._base_threshold)

    def metrics(self) -> dict[str, float]:
        return {"threshold": self.threshold}

    def _detector(self, product: str) -> MultivariateZScore:
        if product not in self._detectors:
            self._detectors[product] = MultivariateZScore(
                grace_period=self.grace_period, half_life=self.half_life
            )
        return self._detectors[product]

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """Score rows of the complete segments, in time order."""
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
        quarantine = context.quarantine
        rows = []
        for seg in segments:
            full = seg.full
            if not full:
                continue
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
        return ModelOutput(rows)
