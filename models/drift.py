"""Drift detection, with a reference per product so a planned changeover is not drift.

- :class:`ProcessDrift`: univariate drift of each process variable (or model residual) with one
  River detector (ADWIN, KSWIN or Page-Hinkley) per product and variable; a product's detector
  only ever sees that product's values, so switching products changes detectors, not levels.
- :class:`FeatureDrift`: the distribution of window features against a reference window of the
  same product: PSI and the two-sample Kolmogorov-Smirnov statistic per feature, and a
  multivariate statistic (the sum of the PSIs, Σ PSI, against ``k × psi_limit``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from river import drift


def adwin() -> drift.ADWIN:
    return drift.ADWIN(delta=0.002)


@dataclass
class ProcessDrift:
    """One univariate drift detector per (product, variable)."""

    make: Callable[[], object] = adwin
    detectors: dict[tuple[str, str], object] = field(default_factory=dict)

    def update(self, product: str, values: dict[str, float]) -> list[str]:
        """Feed one observation; returns the variables whose detector signalled drift."""
        out = []
        for name, value in values.items():
            key = (product, name)
            detector = self.detectors.get(key)
            if detector is None:
                detector = self.detectors[key] = self.make()
            detector.update(value)
            if detector.drift_detected:
                out.append(name)
        return out


def psi(reference: list[float], current: list[float], bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins)."""
    if len(reference) < bins or not current:
        return 0.0
    edges, ref_shares = psi_sketch(reference, bins)
    counts = [0] * bins
    for x in current:
        counts[_bin(edges, x)] += 1
    return psi_shares(ref_shares, [c / len(current) for c in counts])


def psi_sketch(reference: list[float], bins: int = 10) -> tuple[list[float], list[float]]:
    """A reference as PSI needs it: the ``bins - 1`` inner edges of its quantile bins and the
    share of the reference in each bin (ties can make a bin hold more or less than 1/bins)."""
    ref = sorted(reference)
    edges = [ref[int(len(ref) * i / bins)] for i in range(1, bins)]
    counts = [0] * bins
    for x in ref:
        counts[_bin(edges, x)] += 1
    return edges, [c / len(ref) for c in counts]


def psi_shares(reference: list[float], current: list[float]) -> float:
    """PSI of the bin shares ``current`` against ``reference``: Σ (q - p) ln(q / p), an empty
    bin counting as a share of 1e-4."""
    total = 0.0
    for p, q in zip(reference, current, strict=True):
        a, b = max(p, 1e-4), max(q, 1e-4)
        total += (b - a) * math.log(b / a)
    return total


def _bin(edges: list[float], x: float) -> int:
    lo, hi = 0, len(edges)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < edges[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def ks_statistic(a: list[float], b: list[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two ECDFs."""
    if not a or not b:
        return 0.0
    xs, ys = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(xs) and j < len(ys):
        t = min(xs[i], ys[j])
        while i < len(xs) and xs[i] <= t:
            i += 1
        while j < len(ys) and ys[j] <= t:
            j += 1
        d = max(d, abs(i / len(xs) - j / len(ys)))
    return d


def ks_critical(n: int, m: int, alpha: float) -> float:
    """Asymptotic critical value of the KS statistic at level ``alpha``."""
    c = math.sqrt(-0.5 * math.log(alpha / 2))
    return c * math.sqrt((n + m) / (n * m))


@dataclass
class DriftReport:
    product: str
    psi: dict[str, float]
    ks: dict[str, float]
    drifted: list[str]
    multivariate: float
    multivariate_drift: bool


@dataclass
class FeatureDrift:
    """Feature distributions against a per-product reference window.

    The first ``reference_size`` observations of a product form its reference; after that a
    sliding window of the last ``window`` observations is compared with it (when full). A
    feature drifts when PSI > ``psi_limit`` and the KS statistic exceeds its critical value at
    ``alpha`` (Bonferroni-corrected over features); the multivariate statistic is Σ PSI.
    """

    reference_size: int = 200
    window: int = 100
    psi_limit: float = 0.25
    alpha: float = 0.01
    multivariate_k: float = 2.0
    references: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    recent: dict[str, dict[str, deque]] = field(default_factory=dict)

    def update(self, product: str, features: dict[str, float]) -> DriftReport | None:
        ref = self.references.setdefault(product, {})
        if min((len(v) for v in ref.values()), default=0) < self.reference_size or set(
            features
        ) - set(ref):
            for name, value in features.items():
                values = ref.setdefault(name, [])
                if len(values) < self.reference_size:
                    values.append(value)
            return None
        recent = self.recent.setdefault(product, {})
        for name, value in features.items():
            recent.setdefault(name, deque(maxlen=self.window)).append(value)
        if min(len(v) for v in recent.values()) < self.window:
            return None
        psis = {n: psi(ref[n], list(recent[n])) for n in recent}
        kss = {n: ks_statistic(ref[n], list(recent[n])) for n in recent}
        crit = ks_critical(self.reference_size, self.window, self.alpha / max(len(recent), 1))
        drifted = [n for n in recent if psis[n] > self.psi_limit and kss[n] > crit]
        total = sum(psis.values())
        return DriftReport(
            product,
            psis,
            kss,
            drifted,
            total,
            total > self.multivariate_k * self.psi_limit and bool(drifted),
        )
