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

Running sums are River's ``stats.Mean`` and ``stats.Var`` (weighted, and reverted when a
window leaves the rolling set). Two scopes, rows of the ``capability`` table (:data:`CAPABILITY`):

- ``rolling``: the product's last ``rolling_windows`` windows on the machine, across its work
  orders; a row every ``every_windows`` windows of the product;
- ``work_order``: from the order's first window; a row every ``every_windows`` windows and the
  ``final`` one at the order's last window, written when the machine's next order starts.

With 10 s windows and the defaults (``every_windows`` = 60), a machine-day gives per quality
characteristic 144 rolling rows, 144 work-order rows and one final row per order.

Score rows (model ``capability``): one per window in which a characteristic has a rolling
estimate of at least ``min_windows`` windows and as many readings or parts (a part weight held
per 28 s cycle gives about 110 parts in 360 windows); ``score = 1 - Cpk / cpk_level`` clipped
to 0..1 (the worst characteristic), ``is_anomaly`` when the rolling Cpk is below
``cpk_level``. Windows another model quarantined (a faulty measurement) are scored but not
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
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from river import stats

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


@dataclass
class _Pool:
    """Windows pooled exactly from their (n, mean, variance), added and removed one by one."""

    #: window variances weighted by n - 1: the pooled within-window variance
    within: stats.Mean = field(default_factory=stats.Mean)
    #: window means weighted by n (divisor N): the between-window part of the readings' variance
    between: stats.Var = field(default_factory=lambda: stats.Var(ddof=0))
    #: the parts (each new value of a characteristic held per cycle), and their moving ranges
    parts: stats.Var = field(default_factory=stats.Var)
    moving_range: stats.Mean = field(default_factory=stats.Mean)
    windows: int = 0

    def add(self, sub: tuple) -> None:
        n, mean, var, part, mr = sub
        self.windows += 1
        self.between.update(mean, n)
        if var is not None and n > 1:
            self.within.update(var, n - 1)
        if part is not None:
            self.parts.update(part)
        if mr is not None:
            self.moving_range.update(mr)

    def remove(self, sub: tuple) -> None:
        n, mean, var, part, mr = sub
        self.windows -= 1
        self.between.revert(mean, n)
        if var is not None and n > 1:
            self.within.revert(var, n - 1)
        if part is not None:
            self.parts.revert(part)
        if mr is not None:
            self.moving_range.revert(mr)

    def estimate(self, held: bool) -> tuple[int, float, float | None, float | None] | None:
        """(n, mean, σ within, σ overall) on the basis ``held`` says; None: nothing pooled."""
        if held:
            n = round(self.parts.n)
            if n == 0:
                return None
            within = self.moving_range.get() / D2[2] if self.moving_range.n else None
            overall = math.sqrt(max(self.parts.get(), 0.0)) if n > 1 else None
            return n, self.parts.mean.get(), within, overall
        readings = self.between.n
        if readings == 0:
            return None
        within_ss = self.within.get() * self.within.n
        within = math.sqrt(max(self.within.get(), 0.0)) if self.within.n else None
        overall = None
        if readings > 1:
            ss = within_ss + self.between.get() * readings
            overall = math.sqrt(max(ss, 0.0) / (readings - 1))
        return round(readings), self.between.mean.get(), within, overall


@dataclass
class _Characteristic:
    """One product × characteristic on the machine: its rolling windows and how it is read."""

    window: deque
    pool: _Pool = field(default_factory=_Pool)
    seen: int = 0  # windows pooled, ever (the cadence of rolling rows)
    zero_spread: int = 0
    last_part: float | None = None

    @property
    def held(self) -> bool:
        return self.seen >= HELD_AFTER and self.zero_spread > HELD_SHARE * self.seen


@dataclass
class _OrderRun:
    """The running work order: its pools per characteristic and where each stands."""

    work_order: str | None
    product: str | None
    pools: dict[str, _Pool] = field(default_factory=dict)
    #: characteristic -> (window_end, lsl, usl) of its newest pooled window
    last: dict[str, tuple[datetime, float, float]] = field(default_factory=dict)


@dataclass
class CapabilityModel(MachineModel):
    """Cp, Cpk, Pp, Ppk of each quality characteristic, rolling and per work order; flags a
    rolling Cpk below ``cpk_level`` once ``min_windows`` windows (and as many parts) are
    pooled."""

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
    _characteristics: dict[tuple[str, str], _Characteristic] = field(default_factory=dict)
    _order: _OrderRun = field(default_factory=lambda: _OrderRun(None, None))

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        scores: list[dict] = []
        table: list[dict] = []
        characteristics = _characteristics_of(context.specs)
        for seg in segments:
            product = seg.product
            if seg.work_order != self._order.work_order or product != self._order.product:
                table += self._close_order(seg.key[0])
                self._order = _OrderRun(seg.work_order, product)
            learn = seg.start not in context.quarantine
            worst: tuple[float, str] | None = None
            for sensor, lsl, usl in characteristics.get(product, ()):
                r = seg.rows.get(sensor)
                if r is None:
                    continue
                state = self._characteristics.get((product, sensor))
                if learn and r["n"] and r["mean"] is not None:
                    if state is None:
                        state = self._characteristics[(product, sensor)] = _Characteristic(
                            deque(maxlen=self.rolling_windows)
                        )
                    table += self._pool(seg, sensor, r, state, lsl, usl)
                if state is None or state.pool.windows < self.min_windows:
                    continue
                est = state.pool.estimate(state.held)
                # no spread within: Cpk is undefined; too few parts: nothing to judge yet
                if est is None or not est[2] or est[0] < self.min_windows:
                    continue
                n, mean, within, _ = est
                # Cpk as models.spc.capability_of computes it (the table's rows use that)
                cpk = min(usl - mean, mean - lsl) / (3 * within)
                score = min(1.0, max(0.0, 1.0 - cpk / self.cpk_level))
                if worst is None or score > worst[0]:
                    evidence = ""
                    if cpk < self.cpk_level:
                        evidence = (
                            f"Cpk {cpk:.2f} < {self.cpk_level:.2f} over {state.pool.windows} "
                            f"windows (n={n}) of {sensor}"
                        )
                    worst = (score, evidence)
            if worst is not None:
                score, evidence = worst
                scores.append(seg.score_row(self.name, score, bool(evidence), evidence))
        return ModelOutput(scores, {CAPABILITY.name: table} if table else {})

    def _pool(
        self, seg: Segment, sensor: str, r: dict, state: _Characteristic, lsl: float, usl: float
    ) -> list[dict]:
        """Pool one window of a characteristic; the table rows it completes."""
        std, last = r["std"], r["last"]
        state.zero_spread += std == 0 and r["n"] > 1
        part = mr = None
        if last is not None and last != state.last_part:
            part = last
            if state.last_part is not None:
                mr = abs(last - state.last_part)
            state.last_part = last
        sub = (r["n"], r["mean"], None if std is None else std * std, part, mr)
        if len(state.window) == state.window.maxlen:
            state.pool.remove(state.window[0])
        state.window.append(sub)
        state.pool.add(sub)
        state.seen += 1
        order = self._order
        pool = order.pools.get(sensor)
        if pool is None:
            pool = order.pools[sensor] = _Pool()
        # an order's first part has no moving range within the order
        pool.add(sub if pool.parts.n else (*sub[:4], None))
        order.last[sensor] = (seg.end, lsl, usl)
        at = (seg.key[0], seg.product, sensor, seg.work_order, seg.end)
        rows = []
        if state.seen % self.every_windows == 0:
            rows.append(_row(at, "rolling", False, state.pool, state.held, lsl, usl))
        if pool.windows % self.every_windows == 0:
            rows.append(_row(at, "work_order", False, pool, state.held, lsl, usl))
        return [row for row in rows if row is not None]

    def _close_order(self, machine: str) -> list[dict]:
        """The final rows of the order that ran until now (its whole run on the machine)."""
        order, rows = self._order, []
        for sensor, pool in order.pools.items():
            end, lsl, usl = order.last[sensor]
            held = self._characteristics[(order.product, sensor)].held
            at = (machine, order.product, sensor, order.work_order, end)
            row = _row(at, "work_order", True, pool, held, lsl, usl)
            if row is not None:
                rows.append(row)
        return rows


def _characteristics_of(specs: dict) -> dict[str, list[tuple[str, float, float]]]:
    """product -> its quality characteristics with their (valid) limits: (sensor, lsl, usl)."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    for (product, sensor), (lsl, _, usl) in specs.items():
        if lsl < usl:
            out.setdefault(product, []).append((sensor, lsl, usl))
    return out


@dataclass(frozen=True, slots=True)
class _Estimate:
    n: int
    mean: float
    sigma_within: float | None
    sigma_overall: float | None
    cp: float | None
    cpk: float | None
    pp: float | None
    ppk: float | None


def _capability(pool: _Pool, held: bool, lsl: float, usl: float) -> _Estimate | None:
    est = pool.estimate(held)
    if est is None:
        return None
    n, mean, within, overall = est
    c = capability_of(mean, within or 0.0, overall or 0.0, lsl, usl)
    return _Estimate(
        n,
        mean,
        within,
        overall,
        *(_finite(x) for x in (c.cp, c.cpk, c.pp, c.ppk)),
    )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _row(
    at: tuple, scope: str, final: bool, pool: _Pool, held: bool, lsl: float, usl: float
) -> dict | None:
    """A row of the ``capability`` table; ``at`` is (machine_id, product, characteristic,
    work_order, window_end)."""
    cap = _capability(pool, held, lsl, usl)
    if cap is None:
        return None
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
        "n": cap.n,
        "cp": cap.cp,
        "cpk": cap.cpk,
        "pp": cap.pp,
        "ppk": cap.ppk,
        "lsl": lsl,
        "usl": usl,
        "mean": cap.mean,
        "sigma_within": cap.sigma_within,
        "sigma_overall": cap.sigma_overall,
    }
