"""Process capability in the stream: Cp, Cpk, Pp, Ppk per product and quality characteristic.

A quality characteristic is a sensor with ERP spec limits for the product running
(``Context.specs``). Each machine window is a rational subgroup: its ``n`` readings, their
mean and standard deviation. From the subgroups the model keeps, per product × characteristic
on the machine, exactly (not approximately):

- **σ within** (short-term, for Cp and Cpk): the pooled within-window standard deviation,
  ``sqrt(Σ (n_i - 1) s_i² / Σ (n_i - 1))`` (Montgomery's ``s_p``; its ``c4`` correction is
  below 0.01 % at the hundreds of degrees of freedom a window set has, and left out);
- **σ overall** (long-term, for Pp and Ppk): the standard deviation of all the readings,
  ``sqrt((Σ (n_i - 1) s_i² + Σ n_i (x̄_i - x̄)²) / (N - 1))``: within plus between windows.

A characteristic held per machine cycle (a part's weight, published once per part and
repeated until the next) has no spread within most windows, so its subgroups say nothing of
the short-term spread. When more than :data:`HELD_SHARE` of its windows have zero spread, each
new ``last`` value is taken as one part and capability is that of individual parts, as
``models.spc.capability`` computes it: σ within = MR̄ / d2(2) of consecutive parts, σ overall
their sample standard deviation (``basis`` ``parts`` in the table, else ``subgroups``).

The windows of a product wait in a short list and are pooled at once, for all its
characteristics together (array sums over windows × characteristics), whenever a block of
gcd(``rolling_windows``, ``every_windows``) windows ends or an order row is due. A pool holds
sums that combine exactly (Chan, Golub and LeVeque's pairwise update); the rolling set is the
last ``rolling_windows // block`` blocks, combined afresh at each block's end, so nothing is
ever subtracted and the estimate does not drift. Two scopes, rows of the ``capability`` table
(:data:`CAPABILITY`):

- ``rolling``: the product's last ``rolling_windows`` windows on the machine, across its work
  orders; a row every ``every_windows`` windows of the product;
- ``work_order``: from the order's first window; a row every ``every_windows`` windows and the
  ``final`` one at the order's last window, written when the machine's next order starts.

With 10 s windows and the defaults (``every_windows`` = 60), a machine-day gives per quality
characteristic 144 rolling rows, 144 work-order rows and one final row per order.

Score rows (model ``capability``): one per window of a characteristic once its rolling
estimate holds at least ``min_windows`` windows and as many readings or parts (a part weight
held per 28 s cycle gives about 110 parts in 360 windows); ``score = 1 - Cpk / cpk_level``
clipped to 0..1 (the worst characteristic), ``is_anomaly`` when the rolling Cpk is below
``cpk_level``. The rolling estimate is re-estimated at each block's end (every 60 windows, 10
minutes, with the defaults: the windows of the rolling rows), and each window's score is the
estimate of the newest block end before it: a product's first score comes with the first block
end that holds ``min_windows`` windows (its 60th window by default), and a flag changes only at
block ends. Windows another model quarantined (a faulty measurement) are scored but not
pooled. Capability is that of the product's last ``rolling_windows`` windows, not of the
current one: a shift flags once it has pulled the rolling Cpk under the level, and the flag
lasts until the shifted windows have left the rolling set (or the process is capable anyway).

>>> import random, statistics
>>> from datetime import UTC, datetime, timedelta
>>> from floorsight.models.base import Context
>>> from floorsight.models.machine import Segment
>>> rng, t0 = random.Random(7), datetime(2026, 1, 5, tzinfo=UTC)
>>> def window(i, mean):
...     xs = [rng.gauss(mean, 0.01) for _ in range(10)]
...     start = t0 + timedelta(seconds=10 * i)
...     key = ("M1", start, start + timedelta(seconds=10), "WO-1", "PA", "LOT-1")
...     stats = {"n": 10, "mean": statistics.fmean(xs), "std": statistics.stdev(xs), "last": xs[-1]}
...     return Segment(key, {"bore_mm": stats})
>>> context = Context("M1", specs={("PA", "bore_mm"): (11.95, 12.0, 12.05)})
>>> model = CapabilityModel(rolling_windows=60, min_windows=30, every_windows=30)
>>> out = model.score_segments([window(i, 12.0) for i in range(60)], context)
>>> [(r["scope"], r["n_windows"], r["n"]) for r in out.tables["capability"]][-2:]
[('rolling', 60, 600), ('work_order', 60, 600)]
>>> row = out.tables["capability"][-2]
>>> round(row["cp"], 2), round(row["cpk"], 2), round(row["pp"], 2), round(row["ppk"], 2)
(1.67, 1.67, 1.65, 1.64)
>>> out.scores[-1]["is_anomaly"]
False
>>> shifted = model.score_segments([window(i, 12.02) for i in range(60, 120)], context)
>>> shifted.scores[-1]["evidence"]
'Cpk 0.97 < 1.33 over 60 windows (n=600) of bore_mm'
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, compress, repeat
from operator import itemgetter, mul, ne, sub
from typing import ClassVar, NamedTuple

import numpy as np

from floorsight.models.base import AlertRule, Context, MachineModel, ModelOutput
from floorsight.models.machine import Segment
from floorsight.models.spc import D2, capability_of
from floorsight.storage import TableSpec

CAPABILITY = TableSpec(
    name="capability",
    schema=(
        ("machine_id", "VARCHAR NOT NULL"),
        ("product", "VARCHAR NOT NULL"),
        ("characteristic", "VARCHAR NOT NULL"),
        ("scope", "VARCHAR NOT NULL"),  # rolling | work_order
        ("work_order", "VARCHAR NOT NULL"),  # rolling: the order running at window_end
        ("window_end", "TIMESTAMPTZ NOT NULL"),  # the estimate as of this window
        ("final", "BOOLEAN NOT NULL"),  # work_order: the order's whole run
        ("basis", "VARCHAR NOT NULL"),  # subgroups | parts (see the module docstring)
        ("n_windows", "BIGINT NOT NULL"),
        ("n", "BIGINT NOT NULL"),  # readings (subgroups) or parts
        ("cp", "DOUBLE"),  # NULL: no spread to divide by
        ("cpk", "DOUBLE"),
        ("pp", "DOUBLE"),
        ("ppk", "DOUBLE"),
        ("lsl", "DOUBLE NOT NULL"),
        ("usl", "DOUBLE NOT NULL"),
        ("mean", "DOUBLE NOT NULL"),
        ("sigma_within", "DOUBLE"),
        ("sigma_overall", "DOUBLE"),
    ),
    key=(
        "machine_id",
        "product",
        "characteristic",
        "scope",
        "work_order",
        "window_end",
        "final",
    ),
)

#: share of zero-spread windows above which a characteristic counts as held per machine cycle
HELD_SHARE = 0.3
#: windows seen before that share decides
HELD_AFTER = 10


class _Pool(NamedTuple):
    """Windows pooled exactly from their (n, mean, variance), as sums that combine without
    loss (Chan, Golub and LeVeque's pairwise update): the pool of pools is the pool of their
    windows, and nothing is ever subtracted."""

    windows: int = 0
    #: readings, their mean and Σ n_i (x̄_i - x̄)² (the between-window sum of squares)
    n: int = 0
    mean: float = 0.0
    between: float = 0.0
    #: Σ (n_i - 1) and Σ (n_i - 1) s_i² over the windows with a spread (within windows)
    dof: int = 0
    within: float = 0.0
    #: the parts (each new value of a characteristic held per cycle): count, mean, Σ (x - x̄)²
    parts: int = 0
    parts_mean: float = 0.0
    parts_m2: float = 0.0
    #: the moving ranges of consecutive parts: their sum and count
    range_sum: float = 0.0
    ranges: int = 0


EMPTY = _Pool()
#: the window statistics a characteristic's pool reads
_STATISTICS = itemgetter("n", "mean", "std", "last")
_EACH_STATISTIC = tuple(map(itemgetter, ("n", "mean", "std", "last")))


def _merge(a: _Pool, b: _Pool, link: float | None = None) -> _Pool:
    """The pool of ``a``'s windows and then ``b``'s; ``link``: the moving range from ``a``'s
    last part to ``b``'s first."""
    wa, na, ma, ba, da, sa, ka, pa, qa, ra, ca = a
    wb, nb, mb, bb, db, sb, kb, pb, qb, rb, cb = b
    n, k = na + nb, ka + kb
    if na and nb:
        delta = mb - ma
        mean, between = ma + delta * nb / n, ba + bb + delta * delta * na * nb / n
    else:
        mean, between = (ma, ba) if na else (mb, bb)
    if ka and kb:
        delta = pb - pa
        parts_mean, parts_m2 = pa + delta * kb / k, qa + qb + delta * delta * ka * kb / k
    else:
        parts_mean, parts_m2 = (pa, qa) if ka else (pb, qb)
    if link is not None:
        rb, cb = rb + link, cb + 1
    return _Pool(
        wa + wb, n, mean, between, da + db, sa + sb, k, parts_mean, parts_m2, ra + rb, ca + cb
    )


def _combine(pools: Iterable[_Pool]) -> _Pool:
    """The pool of several pools' windows, in one pass over them."""
    windows, ns, means, betweens, dofs, withins, parts, parts_means, parts_m2s, ranges_, counts = (
        zip(*pools, strict=True)
    )
    n, k = sum(ns), sum(parts)
    mean = sum(map(mul, ns, means)) / n if n else 0.0
    deviations = [x - mean for x in means]
    parts_mean = sum(map(mul, parts, parts_means)) / k if k else 0.0
    part_deviations = [x - parts_mean for x in parts_means]
    return _Pool(
        sum(windows),
        n,
        mean,
        sum(betweens) + sum(map(mul, ns, map(mul, deviations, deviations))),
        sum(dofs),
        sum(withins),
        k,
        parts_mean,
        sum(parts_m2s) + sum(map(mul, parts, map(mul, part_deviations, part_deviations))),
        sum(ranges_),
        sum(counts),
    )


def _estimate(pool: _Pool, held: bool) -> tuple[int, float, float | None, float | None] | None:
    """(n, mean, σ within, σ overall) on the basis ``held`` says; None: nothing pooled."""
    if held:
        k = pool.parts
        if k == 0:
            return None
        within = pool.range_sum / pool.ranges / D2[2] if pool.ranges else None
        overall = math.sqrt(pool.parts_m2 / (k - 1)) if k > 1 else None
        return k, pool.parts_mean, within, overall
    n = pool.n
    if n == 0:
        return None
    within = math.sqrt(pool.within / pool.dof) if pool.dof else None
    overall = math.sqrt((pool.within + pool.between) / (n - 1)) if n > 1 else None
    return n, pool.mean, within, overall


@dataclass
class _Characteristic:
    """One product × characteristic on the machine: its rolling blocks, how it is read, and
    its rolling estimate as of the product's newest complete block."""

    #: the complete blocks of the rolling set, and the block in progress
    blocks: deque
    block: _Pool = EMPTY
    seen: int = 0  # windows pooled, ever
    zero_spread: int = 0
    last_part: float | None = None
    #: (score, is_anomaly, evidence) of the rolling estimate; None: nothing to judge yet
    judged: tuple[float, bool, str] | None = None

    @property
    def held(self) -> bool:
        return self.seen >= HELD_AFTER and self.zero_spread > HELD_SHARE * self.seen

    def take(self, sensor: str, pending: list[dict]) -> tuple[_Pool, float | None] | None:
        """The characteristic's statistics in the pending windows (their ``rows``) as a pool,
        how it is read updated by them, and the moving range of their first part from the
        part before (None: no part before); None: no window measures it."""
        measured = list(map(dict.get, pending, repeat(sensor)))
        if None in measured:
            measured = [r for r in measured if r is not None]
        if not measured:
            return None
        ns, means, stds, lasts = zip(*map(_STATISTICS, measured), strict=True)
        if not all(ns) or None in means:
            measured = [r for r in measured if r["n"] and r["mean"] is not None]
            if not measured:
                return None
            ns, means, stds, lasts = zip(*map(_STATISTICS, measured), strict=True)
        windows, readings = len(ns), sum(ns)
        mean = sum(map(mul, ns, means)) / readings
        deviations = list(map(sub, means, repeat(mean)))
        between = sum(map(mul, ns, map(mul, deviations, deviations)))
        if None in stds or 1 in ns:
            spread = [(n, s) for n, s in zip(ns, stds, strict=True) if s is not None and n > 1]
            dof = sum(n for n, _ in spread) - len(spread)
            within = sum((n - 1) * s * s for n, s in spread)
            self.zero_spread += sum(s == 0 for _, s in spread)
        else:
            dof = readings - windows
            within = sum(map(mul, map(sub, ns, repeat(1)), map(mul, stds, stds)))
            self.zero_spread += stds.count(0.0)
        self.seen += windows
        # a part is a last value other than the one before it (windows without one skipped)
        before = self.last_part
        values = [x for x in lasts if x is not None] if None in lasts else lasts
        parts = list(compress(values, map(ne, values, chain((before,), values))))
        if not parts:
            return _Pool(windows, readings, mean, between, dof, within), None
        k = len(parts)
        parts_mean = sum(parts) / k
        deviations = list(map(sub, parts, repeat(parts_mean)))
        self.last_part = parts[-1]
        pool = _Pool(
            windows,
            readings,
            mean,
            between,
            dof,
            within,
            k,
            parts_mean,
            sum(map(mul, deviations, deviations)),
            sum(map(abs, map(sub, parts[1:], parts))),
            k - 1,
        )
        return pool, None if before is None else abs(parts[0] - before)


@dataclass
class _Product:
    """A product on the machine: its learned windows not pooled yet, its characteristics."""

    #: windows per block: a characteristic's rolling set is its last ``blocks.maxlen`` blocks
    block_windows: int
    #: the rows of the windows not pooled yet, the newest's end and characteristics' limits
    pending: list[dict] = field(default_factory=list)
    end: datetime | None = None
    limits: list[tuple[str, tuple[float, float]]] = field(default_factory=list)
    #: pool the pending windows when they are this many (a block ends or an order row is due)
    due: int = 0
    windows: int = 0  # windows pooled, ever: the cadence of blocks and rolling rows
    characteristics: dict[str, _Characteristic] = field(default_factory=dict)
    #: the worst characteristic's judged rolling estimate: every window's score until the next
    judged: tuple[float, bool, str] | None = None


@dataclass
class _OrderRun:
    """The running work order: its pools per characteristic and where each stands."""

    machine_id: str | None
    work_order: str | None
    product: str | None
    windows: int = 0  # the product's windows pooled in the order
    pools: dict[str, _Pool] = field(default_factory=dict)
    #: characteristic -> (window_end, lsl, usl) of its newest pooled window
    last: dict[str, tuple[datetime, float, float]] = field(default_factory=dict)


@dataclass
class CapabilityModel(MachineModel):
    """Cp, Cpk, Pp, Ppk of each quality characteristic, rolling and per work order; flags a
    rolling Cpk below ``cpk_level`` once ``min_windows`` windows (and as many parts) are
    pooled. The rolling estimate, and with it every window's score and flag, is re-estimated
    every gcd(``rolling_windows``, ``every_windows``) windows of the product (``every_windows``,
    60, by default: every 10 minutes of 10 s windows, where the rolling rows are written)."""

    name: ClassVar[str] = "capability"
    alert: ClassVar[AlertRule | None] = AlertRule(
        label="process capability below target (Cpk < the capability level, 1.33 by default)",
        # a rolling Cpk moves slowly: it clears once it has stayed above the level 10 minutes
        clear_after=60,
    )
    tables: ClassVar[tuple[TableSpec, ...]] = (CAPABILITY,)

    cpk_level: float = 1.33
    min_windows: int = 30
    rolling_windows: int = 360
    every_windows: int = 60
    _products: dict[str, _Product] = field(default_factory=dict)
    _order: _OrderRun = field(default_factory=lambda: _OrderRun(None, None, None))

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        scores: list[dict] = []
        table: list[dict] = []
        specs, quarantine = context.specs, context.quarantine
        plans: dict[str | None, tuple[_Product, list, list[str]] | None] = {}
        for seg in segments:
            key = seg.key
            product = key[4]
            if key[3] != self._order.work_order or product != self._order.product:
                table += self._close_order()
                self._start_order(key[0], key[3], product)
            plan = plans.get(product, False)
            if plan is False:
                plan = plans[product] = self._plan(product, specs)
            if plan is None:
                continue
            state, limits, sensors = plan
            rows = seg.rows
            if not any(map(rows.__contains__, sensors)):
                continue
            if key[1] not in quarantine:
                state.pending.append(rows)
                state.end, state.limits = key[2], limits
                if len(state.pending) == state.due:
                    table += self._pool(state)
            if state.judged is not None:
                scores.append(seg.score_row(self.name, *state.judged))
        return ModelOutput(scores, {CAPABILITY.name: table} if table else {})

    def _plan(
        self, product: str | None, specs: dict
    ) -> tuple[_Product, list[tuple[str, tuple[float, float]]], list[str]] | None:
        """The product's state, its characteristics with their (valid) limits and their names;
        None: it has none."""
        limits = [
            (sensor, (lsl, usl))
            for (p, sensor), (lsl, _, usl) in specs.items()
            if p == product and lsl < usl
        ]
        if not limits:
            return None
        state = self._products.get(product)
        if state is None:
            block = math.gcd(self.rolling_windows, self.every_windows)
            state = self._products[product] = _Product(block)
            state.due = self._due(state)
        return state, limits, [sensor for sensor, _ in limits]

    def _due(self, state: _Product) -> int:
        """Windows to pend before the next pooling: until the block ends or an order row."""
        every = self.every_windows
        return min(
            state.block_windows - state.windows % state.block_windows,
            every - self._order.windows % every,
        )

    def _pool(self, state: _Product) -> list[dict]:
        """Pool the product's pending windows into its characteristics' blocks and the order's
        pools; the rows due as of the newest of them."""
        pending, state.pending = state.pending, []
        order, end = self._order, state.end
        state.windows += len(pending)
        order.windows += len(pending)
        block_ends = state.windows % state.block_windows == 0
        rolling_row = block_ends and state.windows % self.every_windows == 0
        order_row = order.windows % self.every_windows == 0
        chars = []
        for sensor, _ in state.limits:
            char = state.characteristics.get(sensor)
            if char is None:
                maxlen = self.rolling_windows // state.block_windows
                char = state.characteristics[sensor] = _Characteristic(deque(maxlen=maxlen))
            chars.append(char)
        sensors = [sensor for sensor, _ in state.limits]
        taken = _take_all(chars, sensors, pending)
        if taken is None:  # a window without a characteristic or its statistics
            taken = [
                char.take(sensor, pending) for sensor, char in zip(sensors, chars, strict=True)
            ]
        rows = []
        worst = None
        for (sensor, (lsl, usl)), char, pooled_link in zip(state.limits, chars, taken, strict=True):
            held = char.held
            pool = order.pools.get(sensor)
            at = (order.machine_id, order.product, sensor, order.work_order, end)
            if pooled_link is not None:
                pooled, link = pooled_link
                # an order's first part has no moving range within the order
                if pool is None:
                    pool = pooled
                else:
                    pool = _merge(pool, pooled, link if pool.parts else None)
                order.pools[sensor] = pool
                order.last[sensor] = (end, lsl, usl)
                char.block = _merge(char.block, pooled, link)
            if block_ends:
                char.blocks.append(char.block)
                char.block = EMPTY
                rolling = _combine(char.blocks)
                char.judged = self._judge(rolling, held, lsl, usl, sensor)
                if char.judged is not None and (worst is None or char.judged[0] > worst[0]):
                    worst = char.judged
                if rolling_row:
                    rows.append(_row(at, "rolling", False, rolling, held, lsl, usl))
            if order_row and pool is not None:
                rows.append(_row(at, "work_order", False, pool, held, lsl, usl))
        if block_ends:
            state.judged = worst
        state.due = self._due(state)
        return [row for row in rows if row is not None]

    def _judge(
        self, rolling: _Pool, held: bool, lsl: float, usl: float, sensor: str
    ) -> tuple[float, bool, str] | None:
        """(score, is_anomaly, evidence) of a rolling estimate; None: not enough to judge."""
        if rolling.windows < self.min_windows:
            return None
        est = _estimate(rolling, held)
        # no spread within: Cpk is undefined; too few parts: nothing to judge yet
        if est is None or not est[2] or est[0] < self.min_windows:
            return None
        n, mean, within, _ = est
        # Cpk as models.spc.capability_of computes it (the table's rows use that)
        cpk = min(usl - mean, mean - lsl) / (3 * within)
        score = min(1.0, max(0.0, 1.0 - cpk / self.cpk_level))
        if cpk >= self.cpk_level:
            return score, False, ""
        evidence = (
            f"Cpk {cpk:.2f} < {self.cpk_level:.2f} over {rolling.windows} windows (n={n}) "
            f"of {sensor}"
        )
        return score, True, evidence

    def _close_order(self) -> list[dict]:
        """The final rows of the order that ran until now (its whole run on the machine)."""
        order, rows = self._order, []
        state = self._products.get(order.product)
        if state is None:
            return rows
        if state.pending:  # short of a block's end and an order row: pooling writes no row
            rows += self._pool(state)
        for sensor, pool in order.pools.items():
            end, lsl, usl = order.last[sensor]
            held = state.characteristics[sensor].held
            at = (order.machine_id, order.product, sensor, order.work_order, end)
            row = _row(at, "work_order", True, pool, held, lsl, usl)
            if row is not None:
                rows.append(row)
        return rows

    def _start_order(self, machine_id: str, work_order: str | None, product: str | None) -> None:
        self._order = _OrderRun(machine_id, work_order, product)
        state = self._products.get(product)
        if state is not None:
            state.due = self._due(state)


def _take_all(
    chars: list[_Characteristic], sensors: list[str], pending: list[dict]
) -> list[tuple[_Pool, float | None]] | None:
    """:meth:`_Characteristic.take` of every characteristic at once, as arrays over windows
    and characteristics; None (and nothing taken) unless every pending window has every
    characteristic with its n > 1, mean, std and last value."""
    windows, k = len(pending), len(sensors)
    rows_of = itemgetter(*sensors) if k > 1 else lambda rows: (rows[sensors[0]],)
    try:
        measured = list(chain.from_iterable(map(rows_of, pending)))
        n, mean, std, last = (
            np.fromiter(map(statistic, measured), dtype=float, count=windows * k).reshape(
                windows, k
            )
            for statistic in _EACH_STATISTIC
        )
    except (KeyError, TypeError):
        return None
    if not (n > 1).all():
        return None
    readings = n.sum(axis=0)
    pooled_mean = (n * mean).sum(axis=0) / readings
    deviations = mean - pooled_mean
    between = (n * deviations * deviations).sum(axis=0)
    within = ((n - 1) * std * std).sum(axis=0)
    zero = (std == 0).sum(axis=0)
    # a part is a last value other than the window's before (a part's moving range: to it)
    before = np.array([math.nan if c.last_part is None else c.last_part for c in chars])
    previous = np.vstack([before, last[:-1]])
    is_part = last != previous
    parts = is_part.sum(axis=0)
    parts_mean = np.where(is_part, last, 0.0).sum(axis=0) / np.maximum(parts, 1)
    part_deviations = np.where(is_part, last - parts_mean, 0.0)
    parts_m2 = (part_deviations * part_deviations).sum(axis=0)
    moving_range = np.abs(last - previous)
    first = is_part.argmax(axis=0)
    columns = np.arange(k)
    link = moving_range[first, columns]
    inside = is_part.copy()
    inside[first, columns] = False
    range_sum = np.where(inside, moving_range, 0.0).sum(axis=0)
    out = []
    for char, *c in zip(
        chars,
        readings.tolist(),
        pooled_mean.tolist(),
        between.tolist(),
        within.tolist(),
        zero.tolist(),
        parts.tolist(),
        parts_mean.tolist(),
        parts_m2.tolist(),
        range_sum.tolist(),
        link.tolist(),
        last[-1].tolist(),
        strict=True,
    ):
        (
            readings_,
            mean_,
            between_,
            within_,
            zero_,
            parts_,
            parts_mean_,
            m2,
            ranges_,
            link_,
            newest,
        ) = c
        readings_ = int(readings_)
        char.seen += windows
        char.zero_spread += zero_
        subgroups = (windows, readings_, mean_, between_, readings_ - windows, within_)
        if not parts_:
            out.append((_Pool(*subgroups), None))
            continue
        char.last_part = newest
        pool = _Pool(*subgroups, parts_, parts_mean_, m2, ranges_, parts_ - 1)
        out.append((pool, None if math.isnan(link_) else link_))
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _row(
    at: tuple, scope: str, final: bool, pool: _Pool, held: bool, lsl: float, usl: float
) -> dict | None:
    """A row of the ``capability`` table; ``at`` is (machine_id, product, characteristic,
    work_order, window_end)."""
    est = _estimate(pool, held)
    if est is None:
        return None
    n, mean, within, overall = est
    c = capability_of(mean, within or 0.0, overall or 0.0, lsl, usl)
    machine, product, characteristic, work_order, window_end = at
    return {
        "machine_id": machine,
        "product": product,
        "characteristic": characteristic,
        "scope": scope,
        "work_order": work_order,
        "window_end": window_end,
        "final": final,
        "basis": "parts" if held else "subgroups",
        "n_windows": pool.windows,
        "n": n,
        "cp": _finite(c.cp),
        "cpk": _finite(c.cpk),
        "pp": _finite(c.pp),
        "ppk": _finite(c.ppk),
        "lsl": lsl,
        "usl": usl,
        "mean": mean,
        "sigma_within": within,
        "sigma_overall": overall,
    }
