"""Anomaly flags from a control limit learned in Phase I, on River's anomaly-filter protocol."""

from __future__ import annotations

import math

from river import stats
from river.base import AnomalyFilter


class ControlLimitFilter(AnomalyFilter):
    """Flags a score above the ``q``-quantile of the detector's own scores in Phase I.

    SPC's two phases, for any anomaly detector. Phase I is the first ``phase_one`` observations
    learned, taken to be in control: each is scored *before* it is learned (so its score is
    honest, not in-sample), and once the detector's scores are live (non-zero) they feed an
    online quantile (River's ``stats.Quantile``). At the end of Phase I that quantile becomes
    the control limit and stays fixed. In Phase II a score at or above the limit is anomalous;
    with ``protect_anomaly_detector`` such observations are not learned, the others are, so the
    detector adapts slowly to normal operation but never to a fault.

    The limit is where the detector's own scores put it, so it absorbs what the detector's
    model gets wrong about the data (autocorrelation, non-Gaussian noise, slow wander): a
    nominal ``score >= 0.999`` can flag far more than 0.1 % of in-control windows, the limit
    flags about ``1 - q`` of Phase I's.

    Parameters
    ----------
    anomaly_detector
        The detector; its scores should grow with abnormality.
    phase_one
        Observations learned before the limit is fixed; nothing is flagged until then.
    q
        Quantile of the Phase I scores taken as the limit.
    protect_anomaly_detector
        In Phase II, do not learn observations that are flagged.

    Examples
    --------
    >>> import random
    >>> from floorsight.models.mahalanobis import RobustMahalanobis
    >>> rng = random.Random(1)
    >>> model = ControlLimitFilter(RobustMahalanobis(grace_period=20), phase_one=300, q=0.99)
    >>> for _ in range(300):
    ...     model.learn_one({"flow_l_min": rng.gauss(32, 0.2)})
    >>> model.in_phase_two, 0.95 < model.limit < 1.0
    (True, True)
    >>> model.classify(model.score_one({"flow_l_min": 32.1}))
    False
    >>> model.classify(model.score_one({"flow_l_min": 30.5}))
    True
    """

    def __init__(
        self,
        anomaly_detector,
        phase_one: int = 400,
        q: float = 0.999,
        protect_anomaly_detector: bool = True,
    ):
        super().__init__(
            anomaly_detector=anomaly_detector,
            protect_anomaly_detector=protect_anomaly_detector,
        )
        self.phase_one = phase_one
        self.q = q
        self._reset()

    def _reset(self) -> None:
        self._quantile = stats.Quantile(q=self.q)
        self._n = 0
        self._live = 0
        self._limit = math.inf

    @property
    def in_phase_two(self) -> bool:
        return self._n >= self.phase_one

    @property
    def limit(self) -> float:
        """The control limit on the score (infinite until Phase I has live scores)."""
        return self._limit

    def classify(self, score: float) -> bool:
        return self.in_phase_two and score >= self._limit

    def learn_one(self, x: dict, **kwargs) -> None:
        score = self.anomaly_detector.score_one(x)
        if not self.in_phase_two:
            self.anomaly_detector.learn_one(x, **kwargs)
            if score > 0.0:
                self._quantile.update(score)
                self._live += 1
            self._n += 1
            if self.in_phase_two and self._live:
                self._limit = self._quantile.get()
            return
        if not (self.protect_anomaly_detector and self.classify(score)):
            self.anomaly_detector.learn_one(x, **kwargs)
        self._n += 1

    @classmethod
    def _unit_test_params(cls):
        from floorsight.models.mahalanobis import RobustMahalanobis

        yield {"anomaly_detector": RobustMahalanobis(grace_period=5), "phase_one": 30}
