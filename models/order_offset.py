"""Does a work order run where the product usually runs? (bad material lots, bad setups)

The anomaly model re-bases its levels at every changeover, because each order legitimately
starts at a slightly different operating point (setup, material, the hours the product was
away). That makes it blind to an order that is wrong *from its first part on*: a bad material
lot or a bad setup looks like the new normal. This model closes that gap. Per product it keeps
the distribution of order levels: for each feature (each sensor's window mean) the mean and
the variance of the levels of past orders, learned only from orders that were not flagged.
An order's **level** is the mean of its windows ``settle`` .. ``settle + level_windows`` (the
first windows after a setup are skipped: the process is still settling); the reference learns
exactly that statistic from past orders, so wander within an order is part of the spread it
compares with. Once an order's level is known it is compared with that distribution:

    t = (order level - mean of past order levels) / sd of past order levels

and the score is one minus the Bonferroni-corrected two-sided p-value of the largest |t| under
a Student-t distribution with ``orders - 1`` degrees of freedom (few past orders give a wide
distribution rather than false alarms; below a p-value of 1e-6 the score is
``models.evidence.evidence_score`` of it, which keeps rising and stays below 1). Every later
window of the order carries the order's verdict, so a bad order raises one alert that lasts
while the order runs and clears at the next changeover.

Examples
--------
>>> import random
>>> from datetime import UTC, datetime, timedelta
>>> rng = random.Random(3)
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> def order(i, shift):
...     level = rng.gauss(10.0, 0.05) + shift
...     return pl.DataFrame([
...         {"machine_id": "M1", "sensor": "bore", "work_order": f"WO-{i}",
...          "window_start": t0 + timedelta(minutes=i * 60 + w),
...          "window_end": t0 + timedelta(minutes=i * 60 + w, seconds=10),
...          "product": "P", "material_lot": f"L{i}", "n": 10, "mean": rng.gauss(level, 0.01)}
...         for w in range(20)])
>>> import polars as pl
>>> model = OrderOffsetModel()
>>> flags = [model.score(order(i, 0.0))["is_anomaly"].any() for i in range(12)]
>>> any(flags)
False
>>> bad = model.score(order(12, 0.6))
>>> bad["is_anomaly"].to_list() == [False] * 11 + [True] * 9
True
>>> bad["evidence"][-1][:9]
'bore mean'

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from river import stats
from scipy.stats import t as student_t

from floorsight.models.base import AlertRule
from floorsight.models.evidence import TAIL_P, evidence_score, log10_t_two_sided
from floorsight.models.work_order import Order, OrderModel


@dataclass
class _Order(Order):
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    verdict: tuple[float, str] | None = None


@dataclass
class OrderOffsetModel(OrderModel):
    """Per machine: each work order's level against the product's past order levels."""

    name: ClassVar[str] = "order_offset"
    alert: ClassVar[AlertRule] = AlertRule(
        label="work order off the product's usual level (material lot or setup)", clear_after=1
    )

    threshold: float = 0.99999
    settle: int = 6
    level_windows: int = 6
    min_orders: int = 5
    #: (product, feature) -> the levels of its past orders (their mean and variance)
    _refs: dict[tuple[str, str], stats.Var] = field(default_factory=dict)
    _order: _Order | None = None

    def _new_order(self, work_order: str, product: str) -> _Order:
        return _Order(work_order, product)

    def _step(self, order: _Order, x: dict[str, float]) -> tuple[float, str]:
        order.windows += 1
        if order.verdict is not None:
            return order.verdict
        if order.windows <= self.settle or not order.work_order:
            return 0.0, ""
        for name, value in x.items():
            if value is None or not math.isfinite(value):
                continue
            order.sums[name] = order.sums.get(name, 0.0) + value
            order.counts[name] = order.counts.get(name, 0) + 1
        if order.windows < self.settle + self.level_windows:
            return 0.0, ""
        t = {}
        for name, n in order.counts.items():
            ref = self._refs.get((order.product, name))
            if ref is None:
                continue
            orders, var = int(ref.n), ref.get()
            if orders < self.min_orders or var <= 0:
                continue
            offset = order.sums[name] / n - ref.mean.get()
            t[name] = (offset, offset / math.sqrt(var * (1 + 1 / orders)), orders)
        order.complete = True
        if not t:
            order.verdict = (0.0, "")
            return order.verdict
        name, (offset, worst, orders) = max(t.items(), key=lambda kv: abs(kv[1][1]))
        p = min(1.0, len(t) * 2 * student_t.sf(abs(worst), orders - 1))
        if p >= TAIL_P:
            score = 1.0 - p
        else:  # the p-value in log space: the score keeps rising with |t|, below 1.0
            score = evidence_score(math.log10(len(t)) + log10_t_two_sided(abs(worst), orders - 1))
        evidence = ""
        if score >= self.threshold:
            mean = self._refs[(order.product, name)].mean.get()
            evidence = (
                f"{name} mean {mean + offset:.5g} vs {mean:.5g} over "
                f"{orders} earlier orders of {order.product} ({worst:+.1f} sd of the "
                "order-to-order spread)"
            )
        order.verdict = (score, evidence)
        return order.verdict

    def _close_order(self) -> None:
        order = self._order
        if order is None or order.flagged or not order.complete:
            return
        for name, n in order.counts.items():
            self._refs.setdefault((order.product, name), stats.Var()).update(order.sums[name] / n)
