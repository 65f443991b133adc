"""Deviation prediction: the quality characteristic predicted from process features, before the lab.

Parts are made now, their lab results arrive hours later. :class:`DeviationPredictor` predicts
a part's quality characteristic from the process features at the time it was made (an online
linear regression on standardized features, River), with a prediction interval from the
recent absolute residuals (split-conformal: the ``coverage`` quantile of the last ``window``
residuals, each taken before its label was learned; unbounded while there are too few of them
for that quantile), and flags the part **predicted out of spec** when the prediction is outside
[LSL, USL] (the interval says how sure that is).
When the lab result arrives (:meth:`label`), the stored features of that part are learned:
labels are used only once they are known (no look-ahead).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from river import compose, linear_model, optim, preprocessing


@dataclass(frozen=True, slots=True)
class Prediction:
    value: float
    low: float
    high: float
    out_of_spec: bool


@dataclass
class DeviationPredictor:
    coverage: float = 0.9
    window: int = 200
    min_labels: int = 30
    learning_rate: float = 0.02
    model: object = None
    _residuals: deque = field(default_factory=deque)
    _pending: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: int = 0
    #: the interval's half width for the residuals kept (None: to be computed)
    _half: float | None = None

    def __post_init__(self) -> None:
        self._residuals = deque(maxlen=self.window)

    def _regression(self):
        """The online regression, built at first use: a machine has a predictor per product and
        characteristic, most of which never see a lab result."""
        if self.model is None:
            # the target is standardized too: a characteristic of 25 mm must not take the
            # intercept hundreds of SGD steps to reach
            self.model = preprocessing.TargetStandardScaler(
                compose.Pipeline(
                    preprocessing.StandardScaler(),
                    linear_model.LinearRegression(
                        optimizer=optim.SGD(self.learning_rate), intercept_lr=self.learning_rate
                    ),
                )
            )
        return self.model

    def predict(
        self, sample_id: str, x: dict[str, float], lsl: float, usl: float
    ) -> Prediction | None:
        """Predict a part's characteristic; None until ``min_labels`` lab results were learned."""
        self._pending[sample_id] = x
        if self.labels < self.min_labels:
            return None
        value = self._regression().predict_one(x)
        half = self._quantile()
        low, high = value - half, value + half
        return Prediction(value, low, high, not lsl <= value <= usl)

    def predict_only(self, x: dict[str, float], lsl: float, usl: float) -> Prediction | None:
        """Like :meth:`predict` for a part whose features the caller keeps (see :meth:`learn`)."""
        if self.labels < self.min_labels:
            return None
        value = self._regression().predict_one(x)
        half = self._quantile()
        return Prediction(value, value - half, value + half, not lsl <= value <= usl)

    def learn(self, x: dict[str, float], y: float) -> None:
        """Learn one labelled part from its features (its residual feeds the interval first)."""
        residual = y - self._regression().predict_one(x)
        if self.labels >= 1:
            self._residuals.append(abs(residual))
            self._half = None
        self._regression().learn_one(x, y)
        self.labels += 1

    def label(self, sample_id: str, y: float) -> None:
        """The lab result of a predicted part arrived: learn from it."""
        x = self._pending.pop(sample_id, None)
        if x is None:
            return
        self.learn(x, y)

    def _quantile(self) -> float:
        """The split-conformal half width: the ``ceil(coverage * (n + 1))``-th smallest of the
        ``n`` residuals kept. With too few residuals for that rank (fewer than 9 at 90 %) the
        interval is unbounded: few labels give a wide interval, never a falsely narrow one.
        Kept until the next label (a part is predicted far more often than one is learned)."""
        if self._half is None:
            n = len(self._residuals)
            k = math.ceil(self.coverage * (n + 1))
            self._half = math.inf if k > n else sorted(self._residuals)[k - 1]
        return self._half
