# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3 · Register the best model and make it the champion
#
# The training notebook logged one MLflow run per candidate. Here the best failure classifier
# on the held-out later part (average precision) is registered in the MLflow model registry
# with what the stream needs to run it (decision threshold, horizon, feature columns, as
# model-version tags), and the `champion` alias is pointed at it.
#
# A pipeline started with `floorsight run ... --champion floorsight-failure` scores every
# machine window with the version behind the alias, beside the online models, and follows the
# alias when it moves (no restart). Its score rows are model `champion` (the registered name
# and version in their evidence) and its flags raise alerts with cause `champion`, like any
# other model's. `floorsight models list` shows the registry; `floorsight models compare --db
# ...` compares the champion's versions and the online models on recent data.
#
# | variable | default |
# | --- | --- |
# | `FLOORSIGHT_DB` | `var/floorsight.duckdb` |
# | `MLFLOW_TRACKING_URI` | `sqlite:///var/mlflow/mlflow.db` |
# | `FLOORSIGHT_MODEL` | `floorsight-failure` |

# %%
import json
import os
from datetime import timedelta

import mlflow
import polars as pl

from floorsight import config
from floorsight.models.champion import (
    experiment,
    load_champion,
    promote,
    register_failure_model,
    registered_models,
)
from floorsight.storage import Database

DB = os.environ.get("FLOORSIGHT_DB", str(config.default_db_path()))
MLFLOW_URI = config.mlflow_tracking_uri()
MODEL = os.environ.get("FLOORSIGHT_MODEL", "floorsight-failure")
MODEL, MLFLOW_URI

# %% [markdown]
# ## The candidates

# %%
experiment("floorsight-failure", MLFLOW_URI)
runs = pl.from_pandas(
    mlflow.search_runs(
        experiment_names=["floorsight-failure"],
        filter_string="params.`data.validation` = 'passed'",
        order_by=["metrics.test_average_precision DESC", "start_time DESC"],
    )
)
runs.select(
    "run_id",
    "params.model",
    "metrics.test_average_precision",
    "metrics.test_positive_rate",
    "metrics.test_roc_auc",
    "metrics.test_brier",
    "metrics.test_brier_base_rate",
    "metrics.test_failures_warned",
    "metrics.test_failures",
    "params.data.sha256",
)

# %% [markdown]
# ## Register the best and promote it
#
# Only a model that beats the base rate on the later part is promoted: a champion must know
# more than "failures happen this often".

# %%
best = runs.row(0, named=True)
skill = best["metrics.test_average_precision"] > best["metrics.test_positive_rate"]
if not skill:
    raise ValueError(f"best run {best['run_id']} has no skill on the held-out period: not promoted")
version = register_failure_model(
    best["tags.model_uri"],
    MODEL,
    feature_columns=json.loads(best["params.feature_columns"]),
    threshold=float(best["params.decision_threshold"]),
    horizon=timedelta(hours=float(best["params.horizon_h"])),
    tracking_uri=MLFLOW_URI,
)
promote(MODEL, version, MLFLOW_URI)
MODEL, version

# %% [markdown]
# The quality regressor is registered too (`floorsight-quality`, alias `champion`), for
# notebooks and dashboards that read it; the stream runs the failure classifier.

# %%
quality_runs = mlflow.search_runs(
    experiment_names=["floorsight-quality"], order_by=["metrics.test_mae ASC", "start_time DESC"]
)
if len(quality_runs):
    quality = mlflow.register_model(quality_runs.iloc[0]["tags.model_uri"], "floorsight-quality")
    mlflow.MlflowClient().set_registered_model_alias(
        "floorsight-quality", "champion", quality.version
    )

# %% [markdown]
# ## What the pipeline will load

# %%
champion = load_champion(MODEL, MLFLOW_URI)
(
    champion.name,
    champion.version,
    champion.threshold,
    champion.horizon_h,
    len(champion.feature_columns),
)

# %% [markdown]
# Score the newest hour of the feature table with it, exactly as the pipeline's score step
# does (same function, same columns):

# %%
db = Database(DB)
newest = db.query("SELECT max(window_end) AS t FROM features")["t"][0]
recent = db.query("SELECT * FROM features WHERE window_end > ?", [newest - timedelta(hours=1)])
scores = champion.score(recent)
scores.group_by("machine_id").agg(
    windows=pl.len(), mean_score=pl.col("score").mean(), alarms=pl.col("is_anomaly").sum()
).sort("machine_id")

# %%
registered_models(MLFLOW_URI)
