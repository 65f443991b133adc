"""Hotelling T²: one multivariate control chart per product on its window means.

Separate I charts judge each characteristic against its own limits; a process whose
characteristics move together (a bore and a depth cut by the same tool) can break that
relation with every one of them inside its limits. T² = (x - x̄)ᵀ S⁻¹ (x - x̄) measures the
window's vector against the product's in-control mean x̄ and covariance S, so it sees both.

The vector is the product's quality characteristics (the sensors with spec limits for it, from
the ERP context): what SPC charts. A product with fewer than two has no multivariate chart
unless ``fallback = "sensors"``, which charts the window means of all the machine's sensors
instead (the process state rather than the parts). That is not the default: on fault-free
simulated windows it flags 56 % of them at alpha 0.27 % (``python benchmarks/spc_rates.py
--seeds 31 32 --days 2 --machines 3``), since a product's work orders run at other levels
than its phase I and consecutive windows are alike, which the F limits do not allow for (the
per-product anomaly model, which re-bases per work order, is the process-state detector).

Phase I: a product's first ``phase1`` complete windows on the machine estimate x̄ and S; the
points beyond the phase I limit (T² against the beta distribution) are left out and the
estimate is made once more, so a disturbed start does not widen the limits. Phase II: the UCL
of a new observation, ``p (m+1)(m-1) / (m (m-p)) F(1-α; p, m-p)`` (Montgomery 11.3), and
``score = 1 - p-value`` from the same F distribution (below a p-value of 1e-6
``models.evidence.evidence_score`` of it, which keeps rising and stays below 1), so on
in-control windows a share ``alpha`` of them is flagged. A flagged window's evidence names the
variables that explain most of its T²: each one's share, T² less the T² of the other
variables (``(S⁻¹d)ⱼ² / (S⁻¹)ⱼⱼ``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy import special, stats

from floorsight.models.base import AlertRule, Context, MachineModel, ModelOutput
from floorsight.models.evidence import TAIL_P, evidence_score, log10_f_sf
from floorsight.models.machine import Segment

FALLBACKS = ("skip", "sensors")


@dataclass
class HotellingModel(MachineModel):
    """Per machine: a Hotelling T² chart per product on its characteristics' window means.

    Two characteristics that move together (correlation 0.9): after phase I, windows in which
    they part (one up by 1.5 σ, the other down by 1.5 σ) are within each one's own limits but
    beyond the T² UCL.

    >>> from datetime import UTC, datetime, timedelta
    >>> import random
    >>> rng = random.Random(7)
    >>> t0 = datetime(2026, 4, 6, tzinfo=UTC)
    >>> def window(i, bore, depth):
    ...     start = t0 + timedelta(seconds=10 * i)
    ...     key = ("cnc-1", start, start + timedelta(seconds=10), "WO-1", "P-100", "LOT-1")
    ...     return Segment(key, {"bore_mm": {"mean": bore}, "depth_mm": {"mean": depth}})
    >>> specs = {("P-100", "bore_mm"): (24.9, 25.0, 25.1), ("P-100", "depth_mm"): (9.9, 10, 10.1)}
    >>> def part(apart=0.0):
    ...     common, own = rng.gauss(0, 0.01), rng.gauss(0, 0.01 * 0.19**0.5)
    ...     return 25.0 + common + apart, 10.0 + 0.9 * common + own - apart
    >>> windows = [part() for _ in range(100)] + [part(apart=0.015) for _ in range(5)]
    >>> model = HotellingModel(phase1=100)
    >>> out = model.score_segments(
    ...     [window(i, *w) for i, w in enumerate(windows)], Context(specs=specs)
    ... )
    >>> [r["is_anomaly"] for r in out.scores[-6:]]
    [False, True, True, True, True, True]
    >>> out.scores[-1]["evidence"]
    'T² 26.7 > UCL 12.8; depth_mm (-1.7σ) 26.4, bore_mm (+0.5σ) 23.8'
    """

    name: ClassVar[str] = "hotelling"
    alert: ClassVar[AlertRule] = AlertRule(
        "quality characteristics jointly out of statistical control (Hotelling T²)"
    )
    needs_coverage: ClassVar[bool] = True

    #: complete windows of a product that estimate its mean and covariance
    phase1: int = 100
    #: the share of in-control windows flagged (0.0027: the rate of a 3 σ Shewhart limit)
    alpha: float = 0.0027
    #: a product with fewer than two characteristics: "skip" it or chart all "sensors"
    fallback: str = "skip"
    #: variables named in a flagged window's evidence
    top: int = 3
    #: product -> its chart
    _charts: dict[str, _T2Chart] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """One score row per complete window of a charted product (phase I: score 0)."""
        by_product: dict[str, list[str]] = {}
        for product, c in context.specs:
            by_product.setdefault(product, []).append(c)
        rows = []
        for seg in segments:
            product = seg.product
            chart = self._charts.get(product)
            values = seg.rows if seg.full is None else seg.full
            if chart is None:
                variables = sorted(by_product.get(product, ()))
                if len(variables) < 2 and self.fallback == "sensors":
                    variables = sorted(s for s, r in values.items() if r["mean"] is not None)
                if len(variables) < 2:
                    continue
                chart = self._charts[product] = _T2Chart(tuple(variables))
            x = []
            for v in chart.variables:
                r = values.get(v)
                if r is None or r["mean"] is None:
                    break
                x.append(r["mean"])
            else:
                rows.append(self._score(seg, chart, x))
        return ModelOutput(rows)

    def _score(self, seg: Segment, chart: _T2Chart, x: list[float]) -> dict:
        if chart.mean is None:
            chart.learn(x, self.phase1, self.alpha)
            return seg.score_row(self.name, 0.0, False, "")
        if chart.inverse is None:  # no variable varied in phase I: nothing to chart
            return seg.score_row(self.name, 0.0, False, "")
        d = np.asarray(x)[chart.kept] - chart.mean
        w = chart.inverse @ d
        t2 = float(d @ w)
        score = float(special.fdtr(chart.p, chart.m - chart.p, t2 / chart.scale))
        if score > 1.0 - TAIL_P:  # the p-value in log space: the score keeps rising, below 1.0
            score = evidence_score(log10_f_sf(t2 / chart.scale, chart.p, chart.m - chart.p))
        flagged = t2 > chart.ucl
        evidence = ""
        if flagged:
            shares = w * w / np.diag(chart.inverse)
            z = d / chart.sigma
            names = [chart.variables[k] for k in chart.kept]
            top = np.argsort(-shares)[: self.top]
            evidence = f"T² {t2:.3g} > UCL {chart.ucl:.3g}; " + ", ".join(
                f"{names[j]} ({z[j]:+.1f}σ) {shares[j]:.3g}" for j in top
            )
        return seg.score_row(self.name, score, flagged, evidence)


@dataclass
class _T2Chart:
    """One product's T² chart: its variables, phase I points, then its estimate and limits."""

    variables: tuple[str, ...]
    points: list[list[float]] = field(default_factory=list)
    mean: np.ndarray | None = None
    inverse: np.ndarray | None = None
    sigma: np.ndarray | None = None
    #: indices of the variables that varied in phase I (the others cannot be charted)
    kept: list[int] = field(default_factory=list)
    p: int = 0
    m: int = 0
    #: T² / scale is F(p, m - p) distributed for a new in-control observation
    scale: float = 1.0
    ucl: float = float("inf")

    def learn(self, x: list[float], n: int, alpha: float) -> None:
        self.points.append(x)
        # the F distribution needs more points than variables + 1
        if len(self.points) < max(n, len(self.variables) + 2):
            return
        data = np.asarray(self.points)
        self.points = []
        self.mean = data.mean(axis=0)
        kept = [j for j in range(data.shape[1]) if np.ptp(data[:, j]) > 0]
        if not kept:
            return
        data = data[:, kept]
        mean, inverse = _estimate(data)
        # phase I: leave out the points beyond its limit (beta distribution), estimate again
        m, p = data.shape
        d = data - mean
        t2 = np.einsum("ij,jk,ik->i", d, inverse, d)
        limit = (m - 1) ** 2 / m * stats.beta.ppf(1 - alpha, p / 2, (m - p - 1) / 2)
        inside = data[t2 <= limit]
        if inside.shape[0] > p + 1 and inside.shape[0] < m:
            data = inside
            mean, inverse = _estimate(data)
        m = data.shape[0]
        self.kept, self.mean, self.inverse = kept, mean, inverse
        self.sigma = data.std(axis=0, ddof=1)
        self.p, self.m = p, m
        self.scale = p * (m + 1) * (m - 1) / (m * (m - p))
        self.ucl = self.scale * float(stats.f.ppf(1 - alpha, p, m - p))


def _estimate(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the (pseudo-)inverse of the sample covariance of phase I points (rows)."""
    cov = np.atleast_2d(np.cov(data, rowvar=False))
    return data.mean(axis=0), np.linalg.pinv(cov, hermitian=True)
