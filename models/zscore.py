"""Multivariate z-score anomaly detector on River's protocol."""

from __future__ import annotations

import math

from river.base import AnomalyDetector
from scipy.special import stdtr

from floorsight.models.evidence import (
    TAIL_P,
    evidence_score,
    log10_normal_two_sided,
    log10_t_two_sided,
)


class MultivariateZScore(AnomalyDetector):
    """Largest per-feature z-score of the deviation from the process level, as a calibrated score.

    Each feature keeps a local level (an exponentially weighted mean with a short half-life, so
    slow process wander is followed), a long-run reference level (half-life ``half_life``, learned
    only from normal observations and never re-based), and the variance of the deviations from
    the local level. A value's z-score is the smaller of its deviations from the two levels,
    divided by that spread: an observation is anomalous only when it departs from where the
    process was a moment ago *and* from where it runs in the long run. The local level alone
    would be fooled after a :meth:`rebase` onto a faulty state; the reference alone by wander.
    The first observations are weighted equally, so both are exact while they warm up.
    The score is one minus the Bonferroni-corrected two-sided p-value of the largest absolute
    z-score: under an in-control Gaussian process ``score >= 1 - alpha`` flags about ``alpha``
    of the observations, and scores of normal data spread over 0..1. Below a p-value of 1e-6
    the score follows :func:`~floorsight.models.evidence.evidence_score` (the p-value in log
    space), so it keeps rising with z and never reaches 1.0. Before ``grace_period``
    observations have been learned the score is 0.

    Parameters
    ----------
    grace_period
        Observations to learn before scoring.
    settle
        Observations that set the level (and are not scored) after the start or a
        :meth:`rebase`; deviations are learned only once the level has settled.
    level_half_life
        Half-life of the local level, in observations.
    half_life
        Half-life of the deviations' variance, in observations.
    clip
        Deviations larger than ``clip`` standard deviations move the level as if they were
        ``clip`` deviations (a Huber-style robust level), so a fault moves it only slowly.
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

    def __init__(
        self,
        grace_period: int = 30,
        settle: int = 6,
        level_half_life: float = 30.0,
        half_life: float = 360.0,
        clip: float = 3.0,
        min_std: float = 1e-9,
    ):
        self.grace_period = grace_period
        self.settle = settle
        self.level_half_life = level_half_life
        self.half_life = half_life
        self.clip = clip
        self.min_std = min_std
        self._reset()

    def _reset(self) -> None:
        self._alpha_level = 1.0 - 0.5 ** (1.0 / self.level_half_life)
        self._alpha = 1.0 - 0.5 ** (1.0 / self.half_life)
        # feature -> [level count, level, deviation count, variance of deviations, reference,
        #             distinct values learned, last value learned]
        self._state: dict[str, list[float]] = {}
        self._n = 0
        self._since_rebase = 0

    def learn_one(self, x: dict) -> None:
        self._update(x, spread=True)

    def track_one(self, x: dict) -> None:
        """Follow the levels with ``x`` but leave the spreads alone (for anomalous ``x``)."""
        self._update(x, spread=False)

    def _update(self, x: dict, spread: bool) -> None:
        # locals: this runs for every feature of every learned window
        state, alpha, alpha_level = self._state, self._alpha, self._alpha_level
        settle, clip, isfinite, sqrt = self.settle, self.clip, math.isfinite, math.sqrt
        for name, value in x.items():
            if value is None or not isfinite(value):
                continue
            s = state.get(name)
            if s is None:
                state[name] = [1.0, float(value), 0.0, 0.0, float(value), 1.0, float(value)]
                continue
            d = value - s[1]
            if spread:
                s[4] += max(1.0 / (s[2] + 1.0), alpha) * (value - s[4])
                if value != s[6]:
                    s[5] += 1.0
                    s[6] = float(value)
            if s[0] >= settle:
                if spread:
                    s[2] += 1.0
                    a = max(1.0 / s[2], alpha)
                    s[3] = (1.0 - a) * s[3] + a * d * d
                if s[2] > 0:
                    limit = clip * sqrt(s[3])
                    d = min(max(d, -limit), limit)
            s[0] += 1.0
            s[1] += max(1.0 / s[0], alpha_level) * d
        self._n += 1
        self._since_rebase += 1

    def rebase(self) -> None:
        """Re-estimate every level from the next ``settle`` observations; keep the spreads.

        For a changeover: the process comes back at a new operating point (new setup, new
        material, the drift of the hours it was away), while its noise stays what it was.
        """
        for s in self._state.values():
            s[0] = 0.0
            s[1] = 0.0
        self._since_rebase = 0

    def explain_one(self, x: dict) -> dict[str, float]:
        """Absolute z-score of each feature of ``x`` that has been learned."""
        out = {}
        for name, value in x.items():
            s = self._state.get(name)
            if s is None or s[2] == 0 or value is None or not math.isfinite(value):
                continue
            deviation = min(abs(value - s[1]), abs(value - s[4]))
            out[name] = deviation / max(math.sqrt(s[3]), self.min_std)
        return out

    def score_one(self, x: dict) -> float:
        if self._n < self.grace_period or self._since_rebase < self.settle:
            return 0.0
        z = self.explain_one(x)
        if not z:
            return 0.0
        # the normal p-value falls with z: of the features it judges only the largest z counts
        state, normal, p, judged_by_t = self._state, 0.0, 1.0, []
        for name, value in z.items():
            if value < 3.0 or state[name][5] > 1000:
                normal = max(normal, value)
            else:
                judged_by_t.append(name)
                p = min(p, self._p_value(name, value))
        p = len(z) * min(p, math.erfc(normal / math.sqrt(2)))
        if p >= TAIL_P:
            return 1.0 - min(1.0, p)
        # beyond 1 - TAIL_P: the Bonferroni-corrected p-value in log space (it never underflows)
        log10_p = log10_normal_two_sided(normal)
        for name in judged_by_t:
            df = max(state[name][5] - 1.0, 1.0)
            log10_p = min(log10_p, log10_t_two_sided(z[name], df))
        return evidence_score(math.log10(len(z)) + log10_p)

    def _p_value(self, name: str, z: float) -> float:
        """Two-sided p-value of ``z``; Student-t while the feature has few distinct values.

        A sensor that holds one value per machine cycle repeats it over several windows, so its
        spread rests on far fewer observations than windows: its z-score is judged against a
        t distribution with (distinct values - 1) degrees of freedom, not a normal one.
        """
        distinct = self._state[name][5]
        if z < 3.0 or distinct > 1000:
            return math.erfc(z / math.sqrt(2))
        return 2.0 * float(stdtr(max(distinct - 1.0, 1.0), -z))

    @classmethod
    def _unit_test_params(cls):
        yield {"grace_period": 5}
