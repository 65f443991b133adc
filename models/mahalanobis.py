"""Robust multivariate Gaussian anomaly detector (Mahalanobis distance) on River's protocol."""

from __future__ import annotations

import math

import numpy as np
from river.base import AnomalyDetector
from scipy import special

from floorsight.models.evidence import TAIL_P, evidence_score


def chi2_survival(d2: float, dof: int) -> float:
    """P(X > d2) for X chi-squared with ``dof`` degrees of freedom (closed form, integer dof).

    >>> round(chi2_survival(3.841458820694124, 1), 6)  # the 95 % point of chi2(1)
    0.05
    >>> round(chi2_survival(5.991464547107979, 2), 6)  # the 95 % point of chi2(2)
    0.05
    >>> chi2_survival(float("inf"), 3)
    0.0
    """
    if d2 <= 0.0:
        return 1.0
    half = d2 / 2.0
    if half > _LOG_SPACE_HALF:  # the terms would overflow (0 * inf): from the logarithm
        return min(1.0, 10.0 ** log10_chi2_survival(d2, dof))
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for j in range(1, dof // 2):
            term *= half / j
            total += term
        return min(1.0, math.exp(-half) * total)
    root = math.sqrt(half)
    term = root / math.gamma(1.5)  # (d2/2)^(1/2) / Gamma(3/2)
    total = 0.0
    for j in range(dof // 2):
        total += term
        term *= half / (j + 1.5)  # Gamma(j + 5/2) = (j + 3/2) Gamma(j + 3/2)
    return min(1.0, math.erfc(root) + math.exp(-half) * total)


#: beyond this half distance :func:`chi2_survival` is taken from its logarithm (e^-600 ~ 1e-261)
_LOG_SPACE_HALF = 600.0


def log10_chi2_survival(d2: float, dof: int) -> float:
    """``log10`` of :func:`chi2_survival`, from the same closed form in log space far out, so
    it never underflows.

    >>> round(log10_chi2_survival(3.841458820694124, 1), 6) == round(math.log10(0.05), 6)
    True
    >>> -11_000 < log10_chi2_survival(50_000.0, 3) < log10_chi2_survival(40_000.0, 3) < -8_000
    True
    """
    half = d2 / 2.0
    if half <= _LOG_SPACE_HALF:
        return math.log10(chi2_survival(d2, dof))
    if math.isinf(d2):
        return -math.inf
    # chi2_survival(d2, dof) = exp(-half) * (the sum of these terms, each as its logarithm)
    log_half = math.log(half)
    if dof % 2 == 0:
        logs = [j * log_half - math.lgamma(j + 1.0) for j in range(dof // 2)]
    else:  # erfc(root) = exp(-half) * erfcx(root)
        logs = [0.5 * log_half + j * log_half - math.lgamma(j + 1.5) for j in range(dof // 2)]
        logs.append(math.log(float(special.erfcx(math.sqrt(half)))))
    top = max(logs)
    log_p = -half + top + math.log(math.fsum(math.exp(v - top) for v in logs))
    return min(0.0, log_p / math.log(10.0))


class RobustMahalanobis(AnomalyDetector):
    """Mahalanobis distance to a robustly learned mean and covariance, as a calibrated score.

    The mean and covariance of the features are learned one observation at a time: equally
    weighted while ``half_life`` is None (the exact sample moments), exponentially forgetting
    with that half-life otherwise. Once ``grace_period`` observations are learned, an
    observation whose distance ``d`` exceeds ``huber`` is learned with weight ``huber / d`` in
    the mean and its square in the covariance (a Huber M-estimate), so a few gross outliers
    slipping into the learning stream barely move the reference. The score is one minus the
    chi-squared p-value of the squared distance, with as many degrees of freedom as features:
    for in-control Gaussian data ``score >= 1 - alpha`` flags about ``alpha`` of the
    observations, and scores spread uniformly over 0..1; below a p-value of 1e-6 the score is
    :func:`~floorsight.models.evidence.evidence_score` of it (it keeps rising, below 1.0).
    Before ``grace_period`` observations have been learned the score is 0.

    The covariance captures how the features move together (a machine's current and vibration
    rise together under load), so a combination that is unusual is flagged even when each
    feature alone is within its range.

    Parameters
    ----------
    grace_period
        Observations to learn before scoring.
    half_life
        Half-life of the moments, in observations; None weighs every learned observation
        equally.
    huber
        Distance beyond which an observation's learning weight is cut to ``huber / d``;
        None learns every observation in full.
    ridge
        Added to each variance, relative to it (plus a tiny absolute floor), so that a constant
        or collinear feature does not make the covariance singular.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> model = RobustMahalanobis(grace_period=20)
    >>> for _ in range(500):
    ...     load = rng.gauss(0, 1)
    ...     model.learn_one({"current": 10 + load, "vibration": 2 + 0.5 * load + rng.gauss(0, 0.1)})
    >>> model.score_one({"current": 11.0, "vibration": 2.5}) < 0.9  # both high together: normal
    True
    >>> model.score_one({"current": 11.0, "vibration": 1.5}) > 0.999  # they disagree
    True
    """

    def __init__(
        self,
        grace_period: int = 30,
        half_life: float | None = None,
        huber: float | None = 3.0,
        ridge: float = 1e-6,
    ):
        self.grace_period = grace_period
        self.half_life = half_life
        self.huber = huber
        self.ridge = ridge
        self._reset()

    def _reset(self) -> None:
        self._alpha = 0.0 if self.half_life is None else 1.0 - 0.5 ** (1.0 / self.half_life)
        self._features: list[str] | None = None
        self._n = 0
        self._mean: np.ndarray | None = None
        self._cov: np.ndarray | None = None
        self._precision: dict[tuple[str, ...], np.ndarray] = {}

    @property
    def n_learned(self) -> int:
        return self._n

    def _vector(self, x: dict) -> tuple[list[int], np.ndarray]:
        """Indices and values of the learned features that ``x`` carries as finite numbers."""
        idx, values = [], []
        for i, name in enumerate(self._features or ()):
            v = x.get(name)
            if v is not None and math.isfinite(v):
                idx.append(i)
                values.append(float(v))
        return idx, np.asarray(values)

    def _distance2(self, idx: list[int], values: np.ndarray) -> float:
        key = tuple(self._features[i] for i in idx)
        precision = self._precision.get(key)
        if precision is None:
            cov = self._cov[np.ix_(idx, idx)]
            cov = cov + np.diag(self.ridge * np.diag(cov) + 1e-12)
            precision = self._precision[key] = np.linalg.pinv(cov, hermitian=True)
        d = values - self._mean[idx]
        return max(0.0, float(d @ precision @ d))

    def learn_one(self, x: dict) -> None:
        if self._features is None:
            names = sorted(k for k, v in x.items() if v is not None and math.isfinite(v))
            if not names:
                return
            self._features = names
            self._mean = np.zeros(len(names))
            self._cov = np.zeros((len(names), len(names)))
        idx, values = self._vector(x)
        if len(idx) < len(self._features):  # learn complete observations only
            return
        weight = 1.0
        if self.huber is not None and self._n >= self.grace_period:
            d = math.sqrt(self._distance2(idx, values))
            if d > self.huber:
                weight = self.huber / d
        self._n += 1
        a = max(1.0 / self._n, self._alpha)
        # Huber: an outlier pulls the mean by at most `huber` and the covariance by at most
        # `huber` squared distances' worth, however far out it is
        a_mean, a_cov = weight * a, weight * weight * a
        delta = values - self._mean
        self._mean += a_mean * delta
        self._cov = (1.0 - a_cov) * (self._cov + a_cov * np.outer(delta, delta))
        self._precision.clear()

    def score_one(self, x: dict) -> float:
        if self._n < self.grace_period:
            return 0.0
        idx, values = self._vector(x)
        if not idx:
            return 0.0
        d2 = self._distance2(idx, values)
        p = chi2_survival(d2, len(idx))
        if p >= TAIL_P:
            return 1.0 - p
        return evidence_score(log10_chi2_survival(d2, len(idx)))  # keeps rising, below 1.0

    def distance(self, x: dict) -> float:
        """The Mahalanobis distance of ``x`` (0 before the grace period)."""
        idx, values = self._vector(x)
        if self._n < self.grace_period or not idx:
            return 0.0
        return math.sqrt(self._distance2(idx, values))

    @classmethod
    def _unit_test_params(cls):
        yield {"grace_period": 5}
