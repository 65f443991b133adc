"""Does a work order run where the product usually runs? (bad material lots, bad setups)

The anomaly model re-bases its levels at every changeover, because each order legitimately
starts at a slightly different operating point (setup, material, the hours the product was
away). That makes it blind to an order that is wrong *from its first part on*: a bad material
lot or a bad setup looks like the new normal. This model closes that gap. Per product it keeps
the distribution of order levels: for each feature (each sensor's window mean) the mean and
the variance of the levels of past orders, learned only from orders that were not flagged.
Once an order has ``settle`` full windows, its level is compared with that distribution:

    z = (order level - mean of past order levels) / sqrt(var of past order levels + se^2)

where ``se`` is the standard error of the order's own level. The score is one minus the
Bonferroni-corrected two-sided p-value of the largest |z| (Student-t with ``orders - 1``
degrees of freedom would be more exact for few orders; ``min_orders`` and the high default
threshold cover that). Every later window of the order carries the order's verdict, so a bad
order raises one alert that lasts while the order runs and clears at the next changeover.

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
>>> bad["is_anomaly"].to_list() == [False] * 5 + [True] * 15
True
>>> bad["evidence"][-1][:9]
'bore mean'

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from floorsight.models.machine import SCORE_SCHEMA


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
    squares: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    flagged: bool = False
    verdict: tuple[float, str] | None = None


@dataclass
class OrderOffsetModel:
    """Per machine: each work order's level against the product's past order levels."""

    threshold: float = 0.99999
    settle: int = 6
    min_orders: int = 5
    min_coverage: float = 0.8
    name: str = "order_offset"
    _refs: dict[tuple[str, str], _Reference] = field(default_factory=dict)
    _order: _Order | None = None
    _full_count: dict[str, int] = field(default_factory=dict)

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        for sensor, n in features.group_by("sensor").agg(pl.col("n").max()).iter_rows():
            self._full_count[sensor] = max(self._full_count.get(sensor, 0), n)
        full = pl.col("sensor").replace_strict(self._full_count, default=0)
        keys = ["machine_id", "window_start", "window_end", "work_order", "product", "material_lot"]
        segments = (
            features.filter(
                (pl.col("n") >= self.min_coverage * full) & pl.col("mean").is_not_null()
            )
            .group_by(keys)
            .agg("sensor", "mean")
            .sort("window_start")
        )
        rows = []
        for seg in segments.iter_rows(named=True):
            x = dict(zip(seg.pop("sensor"), seg.pop("mean"), strict=True))
            if self._order is None or seg["work_order"] != self._order.work_order:
                self._close_order()
                self._order = _Order(seg["work_order"], seg["product"] or "?")
            score, evidence = self._step(self._order, x)
            rows.append(
                {
                    **seg,
                    "model": self.name,
                    "score": score,
                    "is_anomaly": score >= self.threshold,
                    "evidence": evidence,
                }
            )
        return pl.DataFrame(rows, schema=SCORE_SCHEMA)

    def _step(self, order: _Order, x: dict[str, float]) -> tuple[float, str]:
        order.windows += 1
        for name, value in x.items():
            if value is None or not math.isfinite(value):
                continue
            order.sums[name] = order.sums.get(name, 0.0) + value
            order.squares[name] = order.squares.get(name, 0.0) + value * value
            order.counts[name] = order.counts.get(name, 0) + 1
        if order.verdict is not None:
            return order.verdict
        if order.windows < self.settle or not order.work_order:
            return 0.0, ""
        z = {}
        for name, n in order.counts.items():
            ref = self._refs.get((order.product, name))
            if ref is None or ref.orders < self.min_orders:
                continue
            level = order.sums[name] / n
            within = max(order.squares[name] / n - level * level, 0.0)
            sd = math.sqrt(ref.var + within / n)
            if sd > 0:
                z[name] = (level - ref.mean, (level - ref.mean) / sd)
        if not z:
            order.verdict = (0.0, "")
            return order.verdict
        name, (offset, worst) = max(z.items(), key=lambda kv: abs(kv[1][1]))
        p = min(1.0, len(z) * math.erfc(abs(worst) / math.sqrt(2)))
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
        if order is None or order.flagged or order.windows < self.settle:
            return
        for name, n in order.counts.items():
            ref = self._refs.setdefault((order.product, name), _Reference())
            ref.learn(order.sums[name] / n)
