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
distribution rather than false alarms). Every later window of the order carries the order's
verdict, so a bad order raises one alert that lasts while the order runs and clears at the
next changeover.

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

import polars as pl
from scipy.stats import t as student_t

from floorsight.models.machine import Segment, score_frame, segment_means, segments_of


@dataclass
class _Reference:
    orders: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def learn(self, level: float) -> None:
        self.orders += 1
        d = level - self.mean
        self.mean += d / self.orders
        self.m2 += d * (level - self.mean)

    @property
    def var(self) -> float:
        return self.m2 / (self.orders - 1) if self.orders > 1 else 0.0


@dataclass
class _Order:
    work_order: str
    product: str
    windows: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    flagged: bool = False
    complete: bool = False
    verdict: tuple[float, str] | None = None


@dataclass
class OrderOffsetModel:
    """Per machine: each work order's level against the product's past order levels."""

    threshold: float = 0.99999
    settle: int = 6
    level_windows: int = 6
    min_orders: int = 5
    min_coverage: float = 0.8
    name: str = "order_offset"
    _refs: dict[tuple[str, str], _Reference] = field(default_factory=dict)
    _order: _Order | None = None
    _full_count: dict[str, int] = field(default_factory=dict)

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        return score_frame(self.score_segments(segments_of(features)))

    def score_segments(self, segments: list[Segment]) -> list[dict]:
        """One score row per full segment, in time order."""
        rows = []
        for seg, x in segment_means(segments, self._full_count, self.min_coverage):
            if self._order is None or seg.work_order != self._order.work_order:
                self._close_order()
                self._order = _Order(seg.work_order, seg.product or "?")
            score, evidence = self._step(self._order, x)
            rows.append(seg.score_row(self.name, score, score >= self.threshold, evidence))
        return rows

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
            if ref is None or ref.orders < self.min_orders or ref.var <= 0:
                continue
            offset = order.sums[name] / n - ref.mean
            t[name] = (offset, offset / math.sqrt(ref.var * (1 + 1 / ref.orders)), ref.orders)
        order.complete = True
        if not t:
            order.verdict = (0.0, "")
            return order.verdict
        name, (offset, worst, orders) = max(t.items(), key=lambda kv: abs(kv[1][1]))
        p = min(1.0, len(t) * 2 * student_t.sf(abs(worst), orders - 1))
        score = 1.0 - p
        order.flagged = score >= self.threshold
        evidence = ""
        if order.flagged:
            ref = self._refs[(order.product, name)]
            evidence = (
                f"{name} mean {ref.mean + offset:.5g} vs {ref.mean:.5g} over "
                f"{ref.orders} earlier orders of {order.product} ({worst:+.1f} sd of the "
                "order-to-order spread)"
            )
        order.verdict = (score, evidence)
        return order.verdict

    def _close_order(self) -> None:
        order = self._order
        if order is None or order.flagged or not order.complete:
            return
        for name, n in order.counts.items():
            ref = self._refs.setdefault((order.product, name), _Reference())
            ref.learn(order.sums[name] / n)
