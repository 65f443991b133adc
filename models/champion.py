"""The MLflow champion in the stream: the registered model behind the ``champion`` alias.

A data scientist trains a failure-within-horizon classifier in the notebooks, registers it in
MLflow with its decision threshold, horizon and feature columns as model-version tags
(:func:`log_failure_model`), and points the ``champion`` alias at the version that should run
(:func:`promote`). The pipeline's champion step holds a :class:`ChampionScorer`: it scores each
machine's closed windows with the champion and checks the alias at most every ``poll``; when
the alias moves, the new version is loaded and used from the next batch on, without a restart.

Score rows use the score table's schema: ``model`` is ``champion:<registered name>@v<version>``,
``score`` the calibrated probability of a failure within the horizon, ``is_anomaly`` whether it
reaches the version's decision threshold, ``evidence`` the model, version, threshold, horizon.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import polars as pl

from floorsight.models.machine import SCORE_SCHEMA
from floorsight.models.training import model_input, window_matrix

log = logging.getLogger("floorsight.champion")

CHAMPION_ALIAS = "champion"
#: model-version tags a champion carries
THRESHOLD_TAG = "decision_threshold"
HORIZON_TAG = "horizon_h"
FEATURES_TAG = "feature_columns"
#: types outside scikit-learn that the skops format must be told to trust when loading
TRUSTED_TYPES = ["floorsight.models.training.ProductStandardizer"]


@dataclass(frozen=True)
class Champion:
    """One loaded version of a registered failure classifier."""

    name: str
    version: int
    model: Any  # a fitted scikit-learn classifier reading model_input(...)
    threshold: float
    horizon_h: float
    feature_columns: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"champion:{self.name}@v{self.version}"

    def predict(self, matrix: pl.DataFrame) -> pl.Series:
        """Probability of a failure within the horizon for each row of a window matrix."""
        if matrix.height == 0:
            return pl.Series("score", [], dtype=pl.Float64)
        proba = self.model.predict_proba(model_input(matrix, list(self.feature_columns)))
        return pl.Series("score", proba[:, 1], dtype=pl.Float64)

    def score(self, features: pl.DataFrame) -> pl.DataFrame | None:
        """Score rows (score table schema) for the windows in a ``features`` frame."""
        matrix = window_matrix(features)
        if matrix.height == 0:
            return None
        evidence = json.dumps(
            {
                "model": self.name,
                "version": self.version,
                "threshold": self.threshold,
                "horizon_h": self.horizon_h,
            }
        )
        scored = matrix.select(
            "machine_id", "window_start", "window_end", "work_order", "product", "material_lot"
        ).with_columns(score=self.predict(matrix))
        return scored.select(
            "machine_id",
            "window_start",
            "window_end",
            "work_order",
            "product",
            "material_lot",
            pl.lit(self.label).alias("model"),
            "score",
            (pl.col("score") >= self.threshold).alias("is_anomaly"),
            pl.lit(evidence).alias("evidence"),
        ).cast(SCORE_SCHEMA)


def _client(tracking_uri: str | None):
    from mlflow import MlflowClient

    from floorsight import config

    uri = tracking_uri or config.mlflow_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def load_champion(name: str, tracking_uri: str | None = None, alias: str = CHAMPION_ALIAS):
    """The version of ``name`` behind ``alias``, loaded; None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return _load(client, name, version)


def _load(client, name: str, version) -> Champion:
    import mlflow.sklearn

    tags = version.tags
    missing = [t for t in (THRESHOLD_TAG, HORIZON_TAG, FEATURES_TAG) if t not in tags]
    if missing:
        raise ValueError(
            f"model {name} v{version.version} lacks the tags {missing}: "
            "register it with floorsight.models.champion.log_failure_model"
        )
    model = mlflow.sklearn.load_model(client.get_model_version_download_uri(name, version.version))
    return Champion(
        name=name,
        version=int(version.version),
        model=model,
        threshold=float(tags[THRESHOLD_TAG]),
        horizon_h=float(tags[HORIZON_TAG]),
        feature_columns=tuple(json.loads(tags[FEATURES_TAG])),
    )


class ChampionScorer:
    """Scores feature frames with the current champion of ``name``, swapping in new versions.

    The alias is looked up at most every ``poll`` (wall time) when frames arrive; a changed
    version is loaded before the frame is scored. While no champion is registered, or the
    registry cannot be read, nothing is scored and the scorer keeps looking (the rest of the
    pipeline runs on). Safe to share between worker threads.
    """

    def __init__(
        self,
        name: str,
        tracking_uri: str | None = None,
        poll: timedelta = timedelta(seconds=10),
        alias: str = CHAMPION_ALIAS,
    ) -> None:
        self.name = name
        self.tracking_uri = tracking_uri
        self.poll = poll
        self.alias = alias
        self._champion: Champion | None = None
        self._checked_at = -float("inf")
        self._lock = threading.Lock()
        self._warned = False

    def current(self) -> Champion | None:
        """The champion to score with now (checks the registry when ``poll`` has passed)."""
        with self._lock:
            if time.monotonic() - self._checked_at >= self.poll.total_seconds():
                self._checked_at = time.monotonic()
                self._refresh()
            return self._champion

    def _refresh(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            client = _client(self.tracking_uri)
            version = client.get_model_version_by_alias(self.name, self.alias)
            if self._champion is None or int(version.version) != self._champion.version:
                old = self._champion
                self._champion = _load(client, self.name, version)
                log.info(
                    "champion %s: %s -> v%s",
                    self.name,
                    f"v{old.version}" if old else "none",
                    self._champion.version,
                )
            self._warned = False
        except (MlflowException, OSError, ValueError) as e:
            if not self._warned:
                log.warning("champion %s@%s not available (%s)", self.name, self.alias, e)
                self._warned = True

    def score(self, features: pl.DataFrame) -> pl.DataFrame | None:
        champion = self.current()
        return None if champion is None else champion.score(features)


def experiment(name: str, tracking_uri: str | None = None) -> str:
    """Make ``name`` the active MLflow experiment (created with its artifacts beside the store)."""
    import mlflow

    from floorsight import config

    uri = tracking_uri or config.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        location = config.mlflow_artifact_location(uri)
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_failure_model(
    model,
    name: str,
    feature_columns: list[str],
    threshold: float,
    horizon: timedelta,
    input_example=None,
) -> int:
    """Log ``model`` in the active run, register it as a new version of ``name``, tag it with
    what the stream needs (threshold, horizon, feature columns); returns the version number."""
    import mlflow
    import mlflow.sklearn
    import sklearn

    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=name,
        input_example=input_example,
        skops_trusted_types=TRUSTED_TYPES,
        # pinned here instead of inferred (inference loads the model in a subprocess)
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", "floorsight"],
    )
    version = int(info.registered_model_version)
    client = _client(mlflow.get_registry_uri())
    tags = {
        THRESHOLD_TAG: str(threshold),
        HORIZON_TAG: str(horizon / timedelta(hours=1)),
        FEATURES_TAG: json.dumps(list(feature_columns)),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    return version


def promote(name: str, version: int, tracking_uri: str | None = None) -> None:
    """Point the ``champion`` alias of ``name`` at ``version`` (running pipelines follow)."""
    _client(tracking_uri).set_registered_model_alias(name, CHAMPION_ALIAS, str(version))


__all__ = [
    "CHAMPION_ALIAS",
    "Champion",
    "ChampionScorer",
    "experiment",
    "load_champion",
    "log_failure_model",
    "promote",
]
