"""Is the process drifting away from where this work order started? (tool wear, fouling)

A slow drift is invisible to a detector that follows the process level (the anomaly model
re-learns its level within minutes, so a drift over hours is "the new normal" all along), and a
changeover must not count as drift. So the reference is the **work order's own baseline**:
after ``settle`` windows, the mean of the next ``baseline`` windows of each feature (each
sensor's window mean). From then on the order's smoothed level (an exponentially weighted mean
with half-life ``level_half_life`` windows) is compared with that baseline:

    z = (level - baseline) / spread

where ``spread`` is the product's usual within-order wander of that difference, learned from
past orders that were not flagged (the process wanders slowly within an order too; that is not
a fault). The score is one minus the Bonferroni-corrected two-sided p-value of the largest |z|
(below a p-value of 1e-6, ``models.evidence.evidence_score`` of it: it keeps rising, below 1).
Nothing is scored before ``min_orders`` orders of the product were learned.

Examples
--------
>>> import random
>>> from datetime import UTC, datetime, timedelta
>>> rng = random.Random(5)
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> def order(i, slope):
...     start = t0 + timedelta(hours=i)
...     return pl.DataFrame([
...         {"machine_id": "M1", "sensor": "bore", "work_order": f"WO-{i}", "product": "P",
...          "material_lot": "L", "window_start": start + timedelta(seconds=10 * w),
...          "window_end": start + timedelta(seconds=10 * w + 10), "n": 10,
...          "mean": 25.0 + rng.gauss(0, 0.001) + slope * w}
...         for w in range(200)])
>>> import polars as pl
>>> model = OrderDriftModel()
>>> any(model.score(order(i, 0.0))["is_anomaly"].any() for i in range(6))
False
>>> worn = model.score(order(6, 0.0002))  # 0.04 mm over the order: tool wear
>>> first = worn["is_anomaly"].arg_max()
>>> 20 < first < 80, bool(worn["is_anomaly"][first:].all())
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from floorsight.models.base import AlertRule, Maintenance, fading_factor
from floorsight.models.evidence import TAIL_P, evidence_score, log10_normal_two_sided
from floorsight.models.work_order import Order, OrderModel


@dataclass
class _Spread:
    orders: int = 0
    n: int = 0
    sum_sq: float = 0.0

    @property
    def sd(self) -> float:
        return math.sqrt(self.sum_sq / self.n) if self.n else 0.0


@dataclass
class _Order(Order):
    base_sum: dict[str, float] = field(default_factory=dict)
    base_n: dict[str, int] = field(default_factory=dict)
    level: dict[str, float] = field(default_factory=dict)
    sq: dict[str, float] = field(default_factory=dict)
    sq_n: dict[str, int] = field(default_factory=dict)


@dataclass
class OrderDriftModel(OrderModel):
    """Per machine: each feature's drift from its work order's baseline."""

    name: ClassVar[str] = "drift"
    alert: ClassVar[AlertRule] = AlertRule(
        label="process drifting from the work order's baseline (wear, fouling)"
    )

    threshold: float = 0.99999
    settle: int = 6
    baseline: int = 12
    level_half_life: float = 6.0
    min_orders: int = 3
    _spread: dict[tuple[str, str], _Spread] = field(default_factory=dict)
    _order: _Order | None = None

    def _new_order(self, work_order: str, product: str) -> _Order:
        return _Order(work_order, product)

    def _step(self, order: _Order, x: dict[str, float]) -> tuple[float, str]:
        order.windows += 1
        if order.windows <= self.settle or not order.work_order:
            return 0.0, ""
        a = fading_factor(self.level_half_life)
        in_baseline = order.windows <= self.settle + self.baseline
        z = {}
        for name, value in x.items():
            if value is None or not math.isfinite(value):
                continue
            if in_baseline:
                order.base_sum[name] = order.base_sum.get(name, 0.0) + value
                order.base_n[name] = order.base_n.get(name, 0) + 1
                order.level[name] = order.base_sum[name] / order.base_n[name]
                continue
            if name not in order.base_n:
                continue
            base = order.base_sum[name] / order.base_n[name]
            order.level[name] += a * (value - order.level[name])
            d = order.level[name] - base
            order.sq[name] = order.sq.get(name, 0.0) + d * d
            order.sq_n[name] = order.sq_n.get(name, 0) + 1
            spread = self._spread.get((order.product, name))
            if spread is None or spread.orders < self.min_orders or spread.sd <= 0:
                continue
            z[name] = (d, base, d / spread.sd)
        if not z:
            return 0.0, ""
        name, (d, base, worst) = max(z.items(), key=lambda kv: abs(kv[1][2]))
        p = len(z) * math.erfc(abs(worst) / math.sqrt(2))
        if p >= TAIL_P:
            score = 1.0 - min(1.0, p)
        else:  # the p-value in log space: the score keeps rising with |z|, below 1.0
            score = evidence_score(math.log10(len(z)) + log10_normal_two_sided(abs(worst)))
        evidence = ""
        if score >= self.threshold:
            evidence = (
                f"{name} drifted {d:+.4g} from the order's baseline {base:.5g} "
                f"({worst:+.1f} x its usual within-order wander)"
            )
        return score, evidence

    def maintenance(self, event: Maintenance) -> None:
        """After a tool change, repair or maintenance take a new baseline from the next
        windows; the interrupted order is not learned as a normal one."""
        if event.kind != "failure":
            self._order = None

    def _close_order(self) -> None:
        order = self._order
        if order is None or order.flagged:
            return
        for name, n in order.sq_n.items():
            spread = self._spread.setdefault((order.product, name), _Spread())
            spread.orders += 1
            spread.n += n
            spread.sum_sq += order.sq[name]
