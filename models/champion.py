"""The MLflow champion in the stream: the registered model behind the ``champion`` alias.

A data scientist trains a failure-within-horizon classifier in the notebooks, logs it
(:func:`log_model`), registers it in MLflow with its decision threshold, horizon and feature
columns as model-version tags (:func:`register_failure_model`), and points the ``champion``
alias at the version that should run (:func:`promote`). The pipeline's score step holds a
:class:`ChampionScorer`: it scores a batch's closed windows (all machines of the shard) with the
champion in one call and checks the alias at most every ``poll``; when the alias moves, the new
version is loaded and used from the next batch on, without a restart. The rows reach each
machine's models in ``Context.champion``, where the ``champion`` model
(:class:`~floorsight.models.champion_scores.ChampionModel`) passes them on through its alert
rule: the champion's scores raise alerts (cause ``champion``) like any other model's.

Score rows use the score table's schema: ``model`` is ``champion`` whatever the version (one
name end to end: score rows, alert cause, settings section), ``score`` the calibrated
probability of a failure within the horizon, ``is_anomaly`` whether it reaches the version's
decision threshold, ``evidence`` the registered model name, its version, threshold and horizon
(``{"model", "version", "threshold", "horizon_h"}``): who reads versions apart reads them there.

The score table's key is (machine_id, window_start, work_order, model), so a window holds one
champion row. That is right: the alias names one version at a time and a batch is scored by the
version current when it arrives, so a swap mid-run leaves every window scored by one version
(the one before the swap or the one after), never both; a window scored again (a replay after a
restart, with another version behind the alias by then) is overwritten by the version that
scored it last, which is the one the alerts of that replay read.

Whoever can write the registry chooses what the pipeline loads, so loading never runs code from
the registry. A champion is MLflow's scikit-learn flavor in skops format, as :func:`log_model`
writes it: the model version's artifacts hold ``MLmodel`` (read as plain YAML, only to check
that its ``sklearn`` flavor says ``serialization_format: skops`` and ``pickled_model:
model.skops``) and ``model.skops``. The loader downloads those two files with MLflow's artifact
API, lists the file's types with :func:`skops.io.get_untrusted_types`, refuses any type outside
skops' defaults and this module's :data:`TRUSTED_TYPES` (the trusted types an ``MLmodel``
names are ignored: they come from the registry writer), and only then calls
:func:`skops.io.load` with :data:`TRUSTED_TYPES`. A pickle or cloudpickle flavor, a file that is
not a skops zip, an untrusted type, a missing artifact or missing tags raise
:class:`ChampionRefusedError`; the scorer logs the reason and keeps the champion it had. Nothing
here calls ``mlflow.sklearn.load_model``, pickle, cloudpickle or joblib on registry content.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from floorsight.models.champion_scores import ChampionModel
from floorsight.models.machine import SCORE_SCHEMA
from floorsight.models.training import model_input, window_matrix

log = logging.getLogger("floorsight.champion")

CHAMPION_ALIAS = "champion"
#: the ``model`` of every champion score row, whichever version scored it
MODEL_NAME = ChampionModel.name
#: model-version tags a champion carries
THRESHOLD_TAG = "decision_threshold"
HORIZON_TAG = "horizon_h"
FEATURES_TAG = "feature_columns"
#: the champion's files in a model version's artifacts (MLflow's sklearn flavor, skops format)
MLMODEL_FILE = "MLmodel"
SKOPS_FILE = "model.skops"
#: types skops does not trust by default, in the models floorsight trains itself (our own
#: transformer, calibration and the gradient-boosting trees); the loader trusts these and
#: skops' defaults only, so a model that needs any other type is refused before it is built
TRUSTED_TYPES = [
    "floorsight.models.training.ProductStandardizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


class ChampionRefusedError(ValueError):
    """A model version the loader will not load, with the reason (and the untrusted types)."""

    def __init__(self, name: str, version: int, reason: str, untrusted: tuple[str, ...] = ()):
        self.name, self.version, self.reason, self.untrusted = name, version, reason, untrusted
        super().__init__(f"model {name} v{version} refused: {reason}")


@dataclass(frozen=True)
class Champion:
    """One loaded version of a registered failure classifier."""

    name: str
    version: int
    model: Any  # a fitted scikit-learn classifier reading model_input(...)
    threshold: float
    horizon_h: float
    feature_columns: tuple[str, ...]

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
            pl.lit(MODEL_NAME).alias("model"),
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
    """The version of ``name`` behind ``alias``, loaded; None when the alias is not set.

    Raises :class:`ChampionRefusedError` when that version is not a skops model of trusted types
    with the stream's tags (see the module docstring).
    """
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return _load(client, name, version)


def _load(client, name: str, version) -> Champion:
    number = int(version.version)
    threshold, horizon_h, columns = _stream_tags(name, number, version.tags)
    with tempfile.TemporaryDirectory(prefix="floorsight-champion-") as tmp:
        path = _download_skops(client, name, number, Path(tmp))
        model = _load_skops(name, number, path)
    if not callable(getattr(model, "predict_proba", None)):
        raise ChampionRefusedError(name, number, f"{type(model).__name__} has no predict_proba")
    return Champion(
        name=name,
        version=number,
        model=model,
        threshold=threshold,
        horizon_h=horizon_h,
        feature_columns=columns,
    )


def _stream_tags(name: str, number: int, tags: dict[str, str]):
    missing = [t for t in (THRESHOLD_TAG, HORIZON_TAG, FEATURES_TAG) if t not in tags]
    if missing:
        raise ChampionRefusedError(
            name,
            number,
            f"it lacks the tags {missing}: "
            "register it with floorsight.models.champion.register_failure_model",
        )
    try:
        threshold, horizon_h = float(tags[THRESHOLD_TAG]), float(tags[HORIZON_TAG])
        columns = json.loads(tags[FEATURES_TAG])
    except ValueError as e:
        raise ChampionRefusedError(name, number, f"a tag cannot be read ({e})") from None
    if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
        reason = f"tag {FEATURES_TAG} is not a list of column names"
        raise ChampionRefusedError(name, number, reason)
    return threshold, horizon_h, tuple(columns)


def _download_skops(client, name: str, number: int, folder: Path) -> Path:
    """``model.skops`` of the version, downloaded after its ``MLmodel`` says skops."""
    import mlflow.artifacts
    import yaml
    from mlflow.exceptions import MlflowException

    base = client.get_model_version_download_uri(name, str(number)).rstrip("/")

    def download(file: str) -> Path:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{base}/{file}",
                dst_path=str(folder),
                tracking_uri=client.tracking_uri,
            )
        except (MlflowException, OSError):  # its long message lists every file it tried
            raise ChampionRefusedError(name, number, f"no {file} in {base}") from None
        path = Path(local)
        if not path.is_file():
            raise ChampionRefusedError(name, number, f"no {file} in {base}")
        return path

    try:
        mlmodel = yaml.safe_load(download(MLMODEL_FILE).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ChampionRefusedError(name, number, f"its {MLMODEL_FILE} is not YAML ({e})") from None
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        raise ChampionRefusedError(name, number, f"its {MLMODEL_FILE} has no sklearn flavor")
    serialization = flavor.get("serialization_format", "pickle")
    if serialization != "skops" or flavor.get("pickled_model") != SKOPS_FILE:
        raise ChampionRefusedError(
            name,
            number,
            f"its sklearn flavor is serialized as {serialization!r} in "
            f"{flavor.get('pickled_model')!r}: only skops ({SKOPS_FILE}) is loaded, "
            "a pickle or cloudpickle model could run any code",
        )
    return download(SKOPS_FILE)


def _load_skops(name: str, number: int, path: Path):
    """The model in a skops file, built only if every type in it is trusted."""
    import skops.io

    if not zipfile.is_zipfile(path):
        reason = f"its {SKOPS_FILE} is not a skops file (not a zip)"
        raise ChampionRefusedError(name, number, reason)
    try:
        found = skops.io.get_untrusted_types(file=path)
    except Exception as e:  # a hostile file may break the schema reader in any way
        reason = f"its {SKOPS_FILE} cannot be read ({type(e).__name__}: {e})"
        raise ChampionRefusedError(name, number, reason) from None
    untrusted = tuple(t for t in found if t not in TRUSTED_TYPES)
    if untrusted:
        raise ChampionRefusedError(
            name,
            number,
            f"its {SKOPS_FILE} holds untrusted types {list(untrusted)} "
            "(floorsight trusts skops' defaults and models.champion.TRUSTED_TYPES)",
            untrusted,
        )
    try:
        return skops.io.load(path, trusted=TRUSTED_TYPES)
    except Exception as e:  # e.g. UntrustedTypesFoundException, a corrupt array
        reason = f"its {SKOPS_FILE} cannot be loaded ({type(e).__name__}: {e})"
        raise ChampionRefusedError(name, number, reason) from None


class ChampionScorer:
    """Scores feature frames with the current champion of ``name``, swapping in new versions.

    The alias is looked up at most every ``poll`` (wall time) when frames arrive; a changed
    version is loaded before the frame is scored. While no champion is registered, or the
    registry cannot be read, nothing is scored and the scorer keeps looking (the rest of the
    pipeline runs on); a version that fails to score is logged and skipped the same way. A
    version the loader refuses (:class:`ChampionRefusedError`) is logged once with its reason and
    not fetched again until the alias or the version's tags change; the champion loaded before
    it (or none) goes on scoring. Safe to share between worker threads.
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
        self._failing: int | None = None
        self._refused: tuple | None = None  # (version, tags) last refused

    def current(self) -> Champion | None:
        """The champion to score with now (checks the registry when ``poll`` has passed)."""
        with self._lock:
            if time.monotonic() - self._checked_at >= self.poll.total_seconds():
                self._checked_at = time.monotonic()
                self._refresh()
            return self._champion

    def _refresh(self) -> None:
        from mlflow.exceptions import MlflowException

        old = self._champion
        try:
            client = _client(self.tracking_uri)
            version = client.get_model_version_by_alias(self.name, self.alias)
            self._warned = False
            key = (int(version.version), tuple(sorted(version.tags.items())))
            if old is not None and key[0] == old.version:
                self._refused = None  # the alias is back: a refused version is judged anew
                return
            if key == self._refused:
                return
            self._champion = _load(client, self.name, version)
            self._refused = None
            log.info(
                "champion %s: %s -> v%s",
                self.name,
                f"v{old.version}" if old else "none",
                self._champion.version,
            )
        except ChampionRefusedError as e:
            self._refused = key
            log.error(
                "champion %s@%s: %s; %s",
                self.name,
                self.alias,
                e,
                f"v{old.version} goes on scoring" if old else "no champion scores until then",
            )
        except (MlflowException, OSError, ValueError) as e:
            if not self._warned:
                log.warning("champion %s@%s not available (%s)", self.name, self.alias, e)
                self._warned = True

    def score(self, features: pl.DataFrame) -> pl.DataFrame | None:
        champion = self.current()
        if champion is None:
            return None
        try:
            return champion.score(features)
        except Exception as e:  # a model that cannot score must not stop the pipeline
            if self._failing != champion.version:
                log.exception(
                    "champion %s@v%s cannot score (%s): skipping its rows",
                    champion.name,
                    champion.version,
                    e,
                )
                self._failing = champion.version
            return None


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


def log_model(model, input_example=None) -> str:
    """Log a fitted scikit-learn model in the active MLflow run (skops format); returns its URI."""
    import mlflow.sklearn
    import sklearn

    info = mlflow.sklearn.log_model(
        model,
        name="model",
        input_example=input_example,
        # the one layout the loader reads (MLmodel + model.skops); mlflow checks at once that
        # the file loads with these types
        serialization_format="skops",
        skops_trusted_types=TRUSTED_TYPES,
        # pinned here instead of inferred (inference loads the model in a subprocess)
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", "floorsight"],
    )
    return info.model_uri


def register_failure_model(
    model_uri: str,
    name: str,
    feature_columns: list[str],
    threshold: float,
    horizon: timedelta,
    tracking_uri: str | None = None,
) -> int:
    """Register a logged failure classifier as a new version of ``name``, tagged with what the
    stream needs (decision threshold, horizon, feature columns); returns the version number."""
    import mlflow

    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    version = mlflow.register_model(model_uri, name)
    client = _client(mlflow.get_registry_uri())
    tags = {
        THRESHOLD_TAG: str(threshold),
        HORIZON_TAG: str(horizon / timedelta(hours=1)),
        FEATURES_TAG: json.dumps(list(feature_columns)),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    return int(version.version)


def promote(name: str, version: int, tracking_uri: str | None = None) -> None:
    """Point the ``champion`` alias of ``name`` at ``version`` (running pipelines follow)."""
    _client(tracking_uri).set_registered_model_alias(name, CHAMPION_ALIAS, str(version))


# ---------------------------------------------------------------- comparing models on recent data


def compare_scores(
    scores: pl.DataFrame,
    maintenance_log: pl.DataFrame,
    horizon: timedelta,
    known_until=None,
) -> pl.DataFrame:
    """Every model of a ``scores`` frame against the failures of the maintenance log.

    A window's label is a failure of its machine within ``horizon`` after it (windows whose
    label is not known yet are left out). Per model: windows, positives, alarms
    (``is_anomaly``), window precision and recall, ROC AUC and average precision of ``score``,
    Brier score (meaningful for probabilities), failures in the period, how many had an alarm
    within the horizon before them, and the median lead time of the first such alarm. The
    champion's rows are compared per registered version (``version``: ``<name>@v<n>``, from
    their evidence; None for the other models).
    """
    import numpy as np
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    from floorsight.models.training import failure_labels

    rows = []
    failures = maintenance_log.filter(pl.col("kind") == "failure")
    scores = scores.with_columns(version=champion_version(scores))
    for (model, version), part in scores.partition_by(
        "model", "version", as_dict=True, include_key=False
    ).items():
        labelled = failure_labels(part, maintenance_log, horizon, known_until)
        y = labelled["failure_within"].to_numpy()
        p = labelled["score"].to_numpy()
        alarm = labelled["is_anomaly"].to_numpy()
        both = 0 < y.sum() < len(y)
        in_period = failures.filter(
            pl.col("machine_id").is_in(part["machine_id"].unique().implode())
            & (pl.col("start") > part["window_end"].min())
            & (pl.col("start") <= part["window_end"].max())
        )
        leads = []
        for machine_id, failed_at in in_period.select("machine_id", "start").iter_rows():
            alarms = part.filter(
                (pl.col("machine_id") == machine_id)
                & pl.col("is_anomaly")
                & (pl.col("window_end") <= failed_at)
                & (pl.col("window_end") >= failed_at - horizon)
            )
            if alarms.height:
                leads.append((failed_at - alarms["window_end"].min()) / timedelta(minutes=1))
        tp = int((alarm & (y == 1)).sum())
        rows.append(
            {
                "model": model,
                "version": version,
                "windows": len(y),
                "positives": int(y.sum()),
                "alarms": int(alarm.sum()),
                "precision": tp / alarm.sum() if alarm.sum() else None,
                "recall": tp / y.sum() if y.sum() else None,
                "roc_auc": float(roc_auc_score(y, p)) if both else None,
                "average_precision": float(average_precision_score(y, p)) if both else None,
                "brier": float(brier_score_loss(y, p)) if len(y) else None,
                "failures": in_period.height,
                "failures_warned": len(leads),
                "median_lead_min": float(np.median(leads)) if leads else None,
            }
        )
    schema = {
        "model": pl.String,
        "version": pl.String,
        "windows": pl.Int64,
        "positives": pl.Int64,
        "alarms": pl.Int64,
        "precision": pl.Float64,
        "recall": pl.Float64,
        "roc_auc": pl.Float64,
        "average_precision": pl.Float64,
        "brier": pl.Float64,
        "failures": pl.Int64,
        "failures_warned": pl.Int64,
        "median_lead_min": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort("model", "version", nulls_last=True)


def champion_version(scores: pl.DataFrame) -> pl.Expr:
    """``<registered name>@v<version>`` of a ``scores`` frame's champion rows, from their
    evidence; None for the rows of other models (and for a frame without evidence).

    >>> rows = pl.DataFrame({"model": ["champion", "anomaly"],
    ...     "evidence": ['{"model": "floorsight-failure", "version": 3}', "temp_c z=4.2"]})
    >>> rows.select(champion_version(rows)).to_series().to_list()
    ['floorsight-failure@v3', None]
    """
    if "evidence" not in scores.columns:
        return pl.lit(None, pl.String).alias("version")
    evidence = pl.col("evidence").str
    return (
        pl.when(pl.col("model") == MODEL_NAME)
        .then(
            pl.format(
                "{}@v{}", evidence.json_path_match("$.model"), evidence.json_path_match("$.version")
            )
        )
        .alias("version")
    )


def registered_models(tracking_uri: str | None = None) -> pl.DataFrame:
    """One row per registered model version: aliases, tags the stream reads, its run's metrics."""
    client = _client(tracking_uri)
    rows = []
    for model in client.search_registered_models():
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for v in client.search_model_versions(f"name = '{model.name}'"):
            metrics = client.get_run(v.run_id).data.metrics if v.run_id else {}
            rows.append(
                {
                    "name": model.name,
                    "version": int(v.version),
                    "aliases": ",".join(sorted(aliases.get(str(v.version), []))),
                    "threshold": v.tags.get(THRESHOLD_TAG),
                    "horizon_h": v.tags.get(HORIZON_TAG),
                    "run_id": v.run_id or "",
                    "metrics": json.dumps({k: round(val, 4) for k, val in sorted(metrics.items())}),
                }
            )
    schema = {
        "name": pl.String,
        "version": pl.Int64,
        "aliases": pl.String,
        "threshold": pl.String,
        "horizon_h": pl.String,
        "run_id": pl.String,
        "metrics": pl.String,
    }
    return pl.DataFrame(rows, schema=schema).sort("name", "version")


__all__ = [
    "CHAMPION_ALIAS",
    "Champion",
    "ChampionRefusedError",
    "ChampionScorer",
    "champion_version",
    "compare_scores",
    "experiment",
    "load_champion",
    "log_model",
    "promote",
    "register_failure_model",
    "registered_models",
]
