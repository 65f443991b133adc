"""The fleet label model: one online model shared by every entity (machine, engine), learning a
label such as remaining useful life from each entity's own history.

What ``floorsight replay`` and its backtest run for a label column. Each input row, in time
order, goes through :meth:`FleetLabels.step`:

1. the entity's **history features** are updated with the row: ``cycles`` (rows seen of the
   entity, this one included), each sensor's raw value and its exponentially weighted means
   over a few half-lives (``LabelSettings.half_lives``, in rows of the entity), and with
   ``trends`` the difference of the shortest and longest of those means (the recent slope's
   sign and size). A new entity's means start at its first values, so its first row already
   has every feature;
2. the shared model (online standardisation of every feature, River's
   ``preprocessing.StandardScaler``, then the regressor of ``LabelSettings.model``) **predicts**
   the row, before its label is known: a new entity gets a prediction from its first row once
   any label of the fleet was learned. Regression predictions are clipped to the range of the
   labels learned so far;
3. the **interval** is online conformal: ``prediction ± q``, with ``q`` the ``coverage``
   quantile of the absolute errors of the last ``residual_window`` learned rows whose
   prediction fell in the same one of ``interval_bins`` bins of the label range (Mondrian
   conformal: errors are larger far from failure than near it), each error that of the
   prediction made for that row before its label was learned;
4. the row's features and label wait ``label_delay`` rows of the same entity, then are learned
   (progressive validation); an empty label (None) is predicted, never learned. With ``cap``
   the model learns ``min(label, cap)``: the piece-wise linear remaining-useful-life target.

Labels that are all 0/1 (``classify=True``) give a logistic regression on the same features;
its prediction is the probability of 1, without an interval.

State per entity is bounded (a few floats per sensor and the ``label_delay`` pending rows), and
the whole object pickles (the pipeline snapshots it).

>>> import random
>>> rng = random.Random(1)
>>> fleet = FleetLabels(["wear"], classify=False, label_delay=0)
>>> for cycle in range(200):
...     for engine, life in (("e1", 200), ("e2", 150)):
...         if cycle < life:
...             _ = fleet.step(engine, {"wear": cycle / life + rng.gauss(0, 0.01)}, life - cycle)
>>> prediction, low, high = fleet.step("new", {"wear": 0.5}, None)
>>> low <= prediction <= high
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from river import compose, forest, linear_model, neighbors, optim, preprocessing, stats, tree

from floorsight.models.base import fading_factor

#: errors a bin of the prediction needs before its own quantile is used
_MIN_BIN = 50
MODELS = ("linear", "bayes", "hoeffding", "arf", "knn")
OPTIMIZERS = ("sgd", "adam", "adagrad")


@dataclass(frozen=True)
class LabelSettings:
    """Settings of the fleet label model; the defaults are ``floorsight replay``'s.

    The defaults (exact online least squares, ``bayes``, on the entity's exponentially weighted
    means and their trend, no raw values, one conformal bin) are what
    ``benchmarks/cmapss_selection.py`` chose by leave-engines-out cross-validation on the
    C-MAPSS FD001 training engines (docs/accuracy-cmapss.md); ``floorsight replay --label-cap C``
    adds the cap with censoring, as ``floorsight eval cmapss`` runs it (cap 125).

    - ``cap``: learn ``min(label, cap)`` (None: the label itself); with ``censored`` a label at
      the cap means "the cap or more" (right-censored): it is learned only while the row's
      prediction was below the cap, so the model fits the degradation and predicts the cap
      where it sees none, as the piece-wise linear target is;
    - ``half_lives``: the exponentially weighted means of each sensor, in rows of the entity;
      ``raw``: the row's own values as features too; ``trends``: the shortest minus the
      longest mean of each sensor;
    - ``model``, one of :data:`MODELS`: ``linear``, linear regression by SGD (``optimizer``,
      ``learning_rate``) on standardised features and target; ``bayes``, River's Bayesian
      linear regression, the exact online least squares with a Gaussian prior of precision
      ``alpha`` and noise precision ``beta`` on the standardised target; ``hoeffding``,
      River's Hoeffding adaptive tree with linear leaves; ``arf``, an adaptive random forest
      of ``n_models`` such trees; ``knn``, the ``n_neighbors`` nearest of the last ``window``
      learned rows;
    - ``coverage``, ``residual_window`` and ``interval_bins``: the conformal interval;
    - ``seed``: the models that draw at random.
    """

    cap: float | None = None
    censored: bool = False
    half_lives: tuple[float, ...] = (5.0, 20.0)
    raw: bool = False
    trends: bool = True
    model: str = "bayes"
    learning_rate: float = 0.01
    optimizer: str = "sgd"
    alpha: float = 1.0
    beta: float = 1.0
    n_models: int = 5
    n_neighbors: int = 10
    window: int = 2000
    coverage: float = 0.9
    residual_window: int = 2000
    interval_bins: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown label model {self.model!r} (one of {MODELS})")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r} (one of {OPTIMIZERS})")
        if not 0 < self.coverage < 1:
            raise ValueError(f"coverage must be in (0, 1), got {self.coverage}")
        if any(h <= 0 for h in self.half_lives):
            raise ValueError(f"half-lives must be > 0 rows, got {self.half_lives}")
        if self.cap is not None and not math.isfinite(self.cap):
            raise ValueError(f"cap must be finite, got {self.cap}")
        if self.residual_window < 1 or self.window < 1 or self.interval_bins < 1:
            raise ValueError("residual_window, window and interval_bins must be >= 1")


class _History:
    """One entity's history: its row count, EW means per sensor and its rows waiting for
    their labels."""

    __slots__ = ("cycles", "means", "pending")

    def __init__(self) -> None:
        self.cycles = 0
        self.means: dict[str, list[stats.EWMean]] = {}
        self.pending: deque = deque()


class FleetLabels:
    """One label model for the whole fleet; see the module docstring for what a step does."""

    def __init__(
        self,
        sensors: list[str],
        classify: bool,
        label_delay: int,
        settings: LabelSettings | None = None,
    ) -> None:
        if label_delay < 0:
            raise ValueError(f"label delay must be >= 0 rows, got {label_delay}")
        self.sensors = list(sensors)
        self.classify = classify
        self.label_delay = label_delay
        self.settings = settings or LabelSettings()
        self._reset()

    def _reset(self) -> None:
        s = self.settings
        self._alphas = [fading_factor(h) for h in sorted(s.half_lives)]
        self._entities: dict[object, _History] = {}
        self._model = compose.Pipeline(preprocessing.StandardScaler(), self._learner())
        # the conformal quantile of all recent errors, and per bin of the prediction
        self._residuals = stats.RollingQuantile(q=s.coverage, window_size=s.residual_window)
        self._binned = [
            stats.RollingQuantile(q=s.coverage, window_size=s.residual_window)
            for _ in range(s.interval_bins)
        ]
        self._bin_counts = [0] * s.interval_bins
        self._learned = 0
        self._low = math.inf
        self._high = -math.inf

    def _optimizer(self) -> optim.base.Optimizer:
        s = self.settings
        kind = {"sgd": optim.SGD, "adam": optim.Adam, "adagrad": optim.AdaGrad}[s.optimizer]
        return kind(s.learning_rate)

    def _learner(self):
        s = self.settings
        if self.classify:
            return linear_model.LogisticRegression(optimizer=self._optimizer())
        if s.model == "linear":
            return preprocessing.TargetStandardScaler(
                linear_model.LinearRegression(optimizer=self._optimizer())
            )
        if s.model == "bayes":
            return preprocessing.TargetStandardScaler(
                linear_model.BayesianLinearRegression(alpha=s.alpha, beta=s.beta)
            )
        leaf = linear_model.LinearRegression(optimizer=self._optimizer())
        if s.model == "hoeffding":
            return preprocessing.TargetStandardScaler(
                tree.HoeffdingAdaptiveTreeRegressor(leaf_model=leaf, seed=s.seed)
            )
        if s.model == "arf":
            return preprocessing.TargetStandardScaler(
                forest.ARFRegressor(n_models=s.n_models, leaf_model=leaf, seed=s.seed)
            )
        return neighbors.KNNRegressor(
            n_neighbors=s.n_neighbors,
            engine=neighbors.LazySearch(window_size=s.window),
        )

    @property
    def learned(self) -> int:
        """How many labels the model has learned."""
        return self._learned

    def features(self, history: _History, x: dict[str, float]) -> dict[str, float]:
        """Update the entity's history with one row and return that row's features."""
        history.cycles += 1
        out = {"cycles": float(history.cycles)}
        s = self.settings
        for name in self.sensors:
            value = x.get(name)
            means = history.means.get(name)
            if value is not None:
                if s.raw:
                    out[name] = value
                if means is None:
                    means = history.means[name] = [stats.EWMean(a) for a in self._alphas]
                for m in means:
                    m.update(value)
            if means is None:
                continue  # never seen for this entity: left out, as a missing value
            for h, m in zip(sorted(s.half_lives), means, strict=True):
                out[f"{name}_ewm{h:g}"] = m.get()
            if s.trends and len(means) > 1:
                out[f"{name}_trend"] = means[0].get() - means[-1].get()
        return out

    def step(
        self, entity, x: dict[str, float], label
    ) -> tuple[float | None, float | None, float | None]:
        """The row's (prediction, low, high), made before its label is learned.

        ``x``: the row's sensor values (missing ones left out; non-finite ones are dropped
        here); ``label``: the row's label, None when empty (predicted, never learned).
        Before any label was learned the prediction is None.
        """
        history = self._entities.get(entity)
        if history is None:
            history = self._entities[entity] = _History()
        clean = {k: float(v) for k, v in x.items() if v is not None and math.isfinite(v)}
        features = self.features(history, clean)
        prediction, low, high = self._predict(features)
        if label is not None and isinstance(label, float) and math.isnan(label):
            label = None
        history.pending.append((features, label, prediction))
        while len(history.pending) > self.label_delay:
            self._learn(*history.pending.popleft())
        return prediction, low, high

    def _predict(self, features: dict[str, float]):
        if self._learned == 0:
            return None, None, None
        if self.classify:
            proba = self._model.predict_proba_one(features)
            return float(proba.get(True, proba.get(1, 0.0))), None, None
        raw = self._model.predict_one(features)
        prediction = min(max(float(raw), self._low), self._high)
        if not math.isfinite(prediction):
            prediction = (self._low + self._high) / 2
        width = self._width(prediction)
        if width is None:
            return prediction, None, None
        return prediction, prediction - width, prediction + width

    def _bin(self, prediction: float) -> int:
        bins = self.settings.interval_bins
        span = self._high - self._low
        if bins == 1 or not span > 0:
            return 0
        return min(bins - 1, max(0, int((prediction - self._low) / span * bins)))

    def _width(self, prediction: float) -> float | None:
        """The conformal half-width: the errors' quantile among rows whose prediction fell in
        the same bin of the label range (errors grow with the remaining life), or among all
        recent rows while that bin holds fewer than ``_MIN_BIN`` of them."""
        b = self._bin(prediction)
        if self._bin_counts[b] >= _MIN_BIN:
            return self._binned[b].get()
        return self._residuals.get()

    def _learn(self, features: dict[str, float], label, prediction: float | None) -> None:
        if label is None:
            return
        if self.classify:
            self._model.learn_one(features, bool(label))
            self._learned += 1
            return
        y = float(label)
        cap = self.settings.cap
        censored = False
        if cap is not None and y >= cap:
            y = cap
            censored = self.settings.censored and prediction is not None and prediction >= cap
        if prediction is not None:
            self._residuals.update(abs(y - prediction))
            b = self._bin(prediction)
            self._binned[b].update(abs(y - prediction))
            self._bin_counts[b] += 1
        if not censored:
            self._model.learn_one(features, y)
        self._low = min(self._low, y)
        self._high = max(self._high, y)
        self._learned += 1
