"""Multivariate z-score anomaly detector on River's protocol."""

from __future__ import annotations

import math

from river.base import AnomalyDetector


class MultivariateZScore(AnomalyDetector):
    """Largest per-feature z-score against a slowly forgetting baseline, as a calibrated score.

    Each feature keeps an exponentially weighted mean and variance with the given half-life (in
    observations); the first observations are weighted equally, so the baseline is exact while
    it warms up. The score is one minus the Bonferroni-corrected two-sided p-value of the largest
    absolute z-score: under an in-control Gaussian process ``score >= 1 - alpha`` flags about
    ``alpha`` of the observations, and scores of normal data spread evenly over 0..1. Before
    ``grace_period`` observations have been learned the score is 0.

    Parameters
    ----------
    grace_period
        Observations to learn before scoring.
    half_life
        Observations after which an old observation weighs half as much as a new one.
    min_std
        Floor on each feature's standard deviation, so a feature that has not varied yet does
        not turn a rounding error into an anomaly.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(42)
    >>> model = MultivariateZScore(grace_period=20)
    >>> for _ in range(200):
    ...     model.learn_one({"temp": rng.gauss(40, 1), "vib": rng.gauss(2, 0.1)})
    >>> model.score_one({"temp": 40.3, "vib": 2.05}) < 0.9
    True
    >>> model.score_one({"temp": 40.3, "vib": 3.0}) > 0.999
    True
    >>> max(model.explain_one({"temp": 40.3, "vib": 3.0}).items(), key=lambda kv: kv[1])[0]
    'vib'
    """

    def __init__(self, grace_period: int = 30, half_life: float = 360.0, min_std: float = 1e-9):
        self.grace_period = grace_period
        self.half_life = half_life
        self.min_std = min_std
        self._reset()

    def _reset(self) -> None:
        self._alpha = 1.0 - 0.5 ** (1.0 / self.half_life)
        # feature -> [count, mean, variance]
        self._state: dict[str, list[float]] = {}
        self._n = 0

    def learn_one(self, x: dict) -> None:
        for name, value in x.items():
            if value is None or not math.isfinite(value):
                continue
            s = self._state.get(name)
            if s is None:
                self._state[name] = [1.0, float(value), 0.0]
                continue
            s[0] += 1.0
            a = max(1.0 / s[0], self._alpha)
            d = value - s[1]
            s[1] += a * d
            s[2] = (1.0 - a) * (s[2] + a * d * d)
        self._n += 1

    def explain_one(self, x: dict) -> dict[str, float]:
        """Absolute z-score of each feature of ``x`` that has been learned."""
        out = {}
        for name, value in x.items():
            s = self._state.get(name)
            if s is None or value is None or not math.isfinite(value):
                continue
            out[name] = abs(value - s[1]) / max(math.sqrt(s[2]), self.min_std)
        return out

    def score_one(self, x: dict) -> float:
        if self._n < self.grace_period:
            return 0.0
        z = self.explain_one(x)
        if not z:
            return 0.0
        p = min(1.0, len(z) * math.erfc(max(z.values()) / math.sqrt(2)))
        return 1.0 - p

    @classmethod
    def _unit_test_params(cls):
        yield {"grace_period": 5}
