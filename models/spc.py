"""Statistical process control: control charts, run rules and capability, online.

Quality engineers read these charts, so they follow the textbook (Montgomery, *Introduction to
Statistical Quality Control*):

- :class:`IndividualsChart` (I-MR): limits ``center ± 3 σ`` with ``σ = MR̄ / d2(2)`` estimated
  from an in-control phase (phase I), then applied (phase II); run rules on every point.
- :class:`XbarRChart`: subgroups of ``n``; ``X̄ ± A2 R̄`` and ``[D3 R̄, D4 R̄]``.
- :class:`EWMAChart` and :class:`CUSUMChart` for small sustained shifts.
- :class:`RunRules`: the eight Nelson rules (the first four Western Electric rules are Nelson
  1, 5, 6 and 2 with a run of 8: ``RunRules(western_electric=True)``), each violation named.
- :func:`capability`: Cp, Cpk (within-subgroup σ) and Pp, Ppk (overall σ) against LSL/USL
  (:func:`capability_of` from the two σ, which ``models/capability.py`` also uses).

Charts are per product: :class:`ProductCharts` keeps one chart per product and starts a new
phase I when a product runs for the first time, so a changeover re-bases the limits instead of
raising alarms.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: control chart constants for subgroup sizes 2..10 (Montgomery, Appendix VI)
D2 = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}
D3 = {2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.076, 8: 0.136, 9: 0.184, 10: 0.223}
D4 = {2: 3.267, 3: 2.574, 4: 2.282, 5: 2.114, 6: 2.004, 7: 1.924, 8: 1.864, 9: 1.816, 10: 1.777}

NELSON = {
    1: "one point beyond 3 sigma",
    2: "nine points in a row on one side of the center line",
    3: "six points in a row steadily increasing or decreasing",
    4: "fourteen points in a row alternating up and down",
    5: "two of three points beyond 2 sigma on one side",
    6: "four of five points beyond 1 sigma on one side",
    7: "fifteen points in a row within 1 sigma",
    8: "eight points in a row beyond 1 sigma on either side",
}


@dataclass(frozen=True, slots=True)
class Violation:
    """A run-rule violation at one point of a chart."""

    rule: int
    name: str
    index: int  # the point (0-based, phase II) that completed the pattern
    value: float


@dataclass
class RunRules:
    """The Nelson rules on standardized points ``z = (x - center) / sigma``, online.

    Each rule reports at the point that completes its pattern; while the pattern continues it
    reports again at every further point (a chart marks every point of a run).

    The rules are kept as run lengths updated per point (same verdicts as checking the last
    15 points each time, at a fraction of the cost: every quality characteristic of every
    machine window goes through here).
    """

    rules: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    western_electric: bool = False
    #: the last five points (rules 5 and 6 count within them)
    _z: deque = field(default_factory=lambda: deque(maxlen=5))
    _n: int = 0
    _prev_d: float | None = None
    _above: int = 0  # points in a row above the center
    _below: int = 0
    _up: int = 0  # differences in a row that increase
    _down: int = 0
    _alternating: int = 0  # consecutive differences that alternate in sign, counted in pairs
    _within1: int = 0  # points in a row within one sigma
    _beyond1: int = 0  # points in a row beyond one sigma (either side)
    _last_high: int = -(10**9)  # index of the last point above +1 sigma
    _last_low: int = -(10**9)

    def update(self, z: float) -> list[int]:
        i = self._n
        self._n += 1
        if self._z:
            d = z - self._z[-1]
            self._up = self._up + 1 if d > 0 else 0
            self._down = self._down + 1 if d < 0 else 0
            pd = self._prev_d
            self._alternating = self._alternating + 1 if pd is not None and d * pd < 0 else 0
            self._prev_d = d
        self._z.append(z)
        self._above = self._above + 1 if z > 0 else 0
        self._below = self._below + 1 if z < 0 else 0
        az = abs(z)
        self._within1 = self._within1 + 1 if az < 1 else 0
        self._beyond1 = self._beyond1 + 1 if az > 1 else 0
        if z > 1:
            self._last_high = i
        elif z < -1:
            self._last_low = i
        out = []
        for r in self.rules:
            if r == 1:
                hit = az > 3
            elif r == 2:
                run = 8 if self.western_electric else 9
                hit = self._above >= run or self._below >= run
            elif r == 3:
                hit = self._up >= 5 or self._down >= 5
            elif r == 4:
                hit = self._alternating >= 12
            elif r == 5:
                hit = _k_of_n_beyond(self._z, 2, 3, 2.0)
            elif r == 6:
                hit = _k_of_n_beyond(self._z, 4, 5, 1.0)
            elif r == 7:
                hit = self._within1 >= 15
            else:
                hit = self._beyond1 >= 8 and self._last_high > i - 8 and self._last_low > i - 8
            if hit:
                out.append(r)
        return out


def _k_of_n_beyond(recent: deque, k: int, n: int, limit: float) -> bool:
    """At least ``k`` of the last ``n`` points beyond ``limit`` on one side, the newest among
    them (so a run is reported when it completes)."""
    if len(recent) < n:
        return False
    z = recent[-1]
    if z > limit:
        return sum(recent[-j] > limit for j in range(1, n + 1)) >= k
    if z < -limit:
        return sum(recent[-j] < -limit for j in range(1, n + 1)) >= k
    return False


@dataclass
class IndividualsChart:
    """Shewhart individuals chart (I-MR) with run rules.

    Phase I: the first ``phase1`` points estimate the center (mean) and ``σ = MR̄ / 1.128``
    (unless ``center`` and ``sigma`` are given). Phase II: :meth:`update` returns the
    violations of each new point.
    """

    phase1: int = 25
    center: float | None = None
    sigma: float | None = None
    rules: RunRules = field(default_factory=RunRules)
    _phase1: list[float] = field(default_factory=list)
    _n: int = 0

    @property
    def ready(self) -> bool:
        return self.center is not None and self.sigma is not None

    @property
    def limits(self) -> tuple[float, float, float]:
        """(LCL, center, UCL)."""
        if not self.ready:
            raise ValueError("the chart is still in phase I")
        return self.center - 3 * self.sigma, self.center, self.center + 3 * self.sigma

    def update(self, x: float) -> list[Violation]:
        if not self.ready:
            self._phase1.append(x)
            if len(self._phase1) >= self.phase1:
                self.center, self.sigma = individuals_limits(self._phase1)
            return []
        z = (x - self.center) / self.sigma if self.sigma > 0 else 0.0
        index = self._n
        self._n += 1
        return [Violation(r, NELSON[r], index, x) for r in self.rules.update(z)]


def individuals_limits(xs: list[float]) -> tuple[float, float]:
    """(center, σ) of an individuals chart: the mean and MR̄ / d2(2)."""
    if len(xs) < 2:
        raise ValueError("need at least two points to estimate limits")
    center = sum(xs) / len(xs)
    mr = [abs(b - a) for a, b in itertools.pairwise(xs)]
    return center, (sum(mr) / len(mr)) / D2[2]


@dataclass
class XbarRChart:
    """X̄-R chart of subgroups of size ``n`` (2..10): limits from the first ``phase1`` subgroups."""

    n: int = 5
    phase1: int = 20
    rules: RunRules = field(default_factory=RunRules)
    center: float | None = None
    rbar: float | None = None
    _groups: list[list[float]] = field(default_factory=list)
    _current: list[float] = field(default_factory=list)
    _k: int = 0

    @property
    def a2(self) -> float:
        return 3 / (D2[self.n] * math.sqrt(self.n))

    def limits(self) -> dict[str, tuple[float, float, float]]:
        if self.center is None or self.rbar is None:
            raise ValueError("the chart is still in phase I")
        return {
            "xbar": (
                self.center - self.a2 * self.rbar,
                self.center,
                self.center + self.a2 * self.rbar,
            ),
            "range": (D3[self.n] * self.rbar, self.rbar, D4[self.n] * self.rbar),
        }

    def update(self, x: float) -> list[Violation]:
        """Add one measurement; returns violations when it completes a subgroup."""
        self._current.append(x)
        if len(self._current) < self.n:
            return []
        group, self._current = self._current, []
        mean, rng = sum(group) / self.n, max(group) - min(group)
        if self.center is None:
            self._groups.append(group)
            if len(self._groups) >= self.phase1:
                self.center = sum(sum(g) / self.n for g in self._groups) / len(self._groups)
                self.rbar = sum(max(g) - min(g) for g in self._groups) / len(self._groups)
            return []
        sigma_xbar = self.a2 * self.rbar / 3
        index = self._k
        self._k += 1
        out = [
            Violation(r, NELSON[r], index, mean)
            for r in self.rules.update((mean - self.center) / sigma_xbar)
        ]
        lo, _, hi = self.limits()["range"]
        if not lo <= rng <= hi:
            out.append(Violation(0, "subgroup range outside its control limits", index, rng))
        return out


@dataclass
class EWMAChart:
    """EWMA chart: ``z = λ x + (1 - λ) z``; signals when z leaves ``μ0 ± L σ_z(t)``."""

    mu0: float
    sigma: float
    lam: float = 0.2
    L: float = 3.0
    z: float | None = None
    t: int = 0

    def update(self, x: float) -> bool:
        self.z = self.mu0 if self.z is None else self.z
        self.z = self.lam * x + (1 - self.lam) * self.z
        self.t += 1
        return abs(self.z - self.mu0) > self.width()

    def width(self) -> float:
        """Half the width of the control limits at the current point (``L σ_z(t)``)."""
        lam = self.lam
        return self.L * self.sigma * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * self.t)))


@dataclass
class CUSUMChart:
    """Tabular CUSUM: ``C+ = max(0, x - (μ0 + kσ) + C+)``, likewise C-; signal when > hσ."""

    mu0: float
    sigma: float
    k: float = 0.5
    h: float = 5.0
    upper: float = 0.0
    lower: float = 0.0

    def update(self, x: float) -> bool:
        self.upper = max(0.0, x - (self.mu0 + self.k * self.sigma) + self.upper)
        self.lower = max(0.0, (self.mu0 - self.k * self.sigma) - x + self.lower)
        return max(self.upper, self.lower) > self.h * self.sigma


@dataclass(frozen=True, slots=True)
class Capability:
    cp: float
    cpk: float
    pp: float
    ppk: float
    mean: float
    sigma_within: float
    sigma_overall: float


def capability(xs: list[float], lsl: float, usl: float) -> Capability:
    """Process capability of individual measurements against spec limits.

    σ within = MR̄ / d2(2) (short-term); σ overall = the sample standard deviation (long-term).
    """
    if len(xs) < 2:
        raise ValueError("need at least two measurements")
    if not lsl < usl:
        raise ValueError(f"need lsl < usl, got {lsl} and {usl}")
    mean, within = individuals_limits(xs)
    overall = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return capability_of(mean, within, overall, lsl, usl)


def capability_of(mean: float, within: float, overall: float, lsl: float, usl: float) -> Capability:
    """Cp, Cpk (σ ``within``) and Pp, Ppk (σ ``overall``) of a process at ``mean``; a ratio
    over a zero σ is infinite."""

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else math.inf

    return Capability(
        cp=ratio(usl - lsl, 6 * within),
        cpk=ratio(min(usl - mean, mean - lsl), 3 * within),
        pp=ratio(usl - lsl, 6 * overall),
        ppk=ratio(min(usl - mean, mean - lsl), 3 * overall),
        mean=mean,
        sigma_within=within,
        sigma_overall=overall,
    )


@dataclass
class ProductCharts:
    """One individuals chart per product: a product's first run is its phase I."""

    make: Callable[[], IndividualsChart] = IndividualsChart
    charts: dict[str, IndividualsChart] = field(default_factory=dict)

    def update(self, product: str, x: float) -> list[Violation]:
        chart = self.charts.get(product)
        if chart is None:
            chart = self.charts[product] = self.make()
        return chart.update(x)
