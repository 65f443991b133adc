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
# # 2 · Train a failure classifier and a quality regressor
#
# Two scikit-learn models on the pipeline's feature table:
#
# 1. **failure within the horizon**: for a machine window, the probability that the machine
#    fails (a `failure` in the CMMS maintenance log) within `HORIZON_H` hours. Calibrated, so
#    a probability means what it says and a cost ratio gives the alarm threshold;
# 2. **quality characteristic**: the lab's measurement of a part, in tolerance units
#    (`(value - target) / half tolerance`; in spec is -1..1), from the process features of the
#    window in which the part was made.
#
# Honest evaluation: **time-based splits** (train on the earlier part, test on the later part,
# with an embargo of one horizon between them so no training label looks into the test period),
# calibration folds grouped by machine, metrics only on the held-out later part, against
# baselines. Every run is logged to MLflow with its parameters, metrics and data provenance
# (table, time range, row count, content hash). The data must pass its Great Expectations
# suite first: `load_training_features` refuses a feature table that fails it.
#
# | variable | default |
# | --- | --- |
# | `FLOORSIGHT_DB` | `var/floorsight.duckdb` |
# | `MLFLOW_TRACKING_URI` | `sqlite:///var/mlflow/mlflow.db` |
# | `FLOORSIGHT_HORIZON_H` | `1` |
# | `FLOORSIGHT_TEST_SHARE` | `0.35` (the latest 35 % of the time range) |

# %%
import json
import os
from datetime import timedelta

import mlflow
import numpy as np
import polars as pl
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline

from floorsight import config
from floorsight.models.champion import compare_scores, experiment, log_model
from floorsight.models.training import (
    ProductStandardizer,
    failure_labels,
    feature_columns,
    load_training_features,
    model_input,
    provenance,
    quality_targets,
    time_split,
    window_matrix,
)
from floorsight.storage import Database

DB = os.environ.get("FLOORSIGHT_DB", str(config.default_db_path()))
MLFLOW_URI = config.mlflow_tracking_uri()
HORIZON = timedelta(hours=float(os.environ.get("FLOORSIGHT_HORIZON_H", "1")))
TEST_SHARE = float(os.environ.get("FLOORSIGHT_TEST_SHARE", "0.35"))
#: an alarm costs a look at the machine; a missed failure costs a breakdown
COST_FALSE_ALARM, COST_MISSED_FAILURE = 1.0, 4.0
SEED = 0
DB, MLFLOW_URI, HORIZON, TEST_SHARE

# %% [markdown]
# ## Data: checked first

# %%
features, feature_report = load_training_features(DB)  # raises DataValidationError if it fails
print(feature_report.report)
db = Database(DB)
maintenance_log = db.query("SELECT * FROM erp_maintenance_log")
lab_results = db.query("SELECT * FROM erp_lab_results")
spec_limits = db.query("SELECT * FROM spec_limits")
data = provenance(features, "features")
data

# %% [markdown]
# ## Failure within the horizon: labels and a time split

# %%
matrix = window_matrix(features)
columns = feature_columns(matrix)
labelled = failure_labels(matrix, maintenance_log, HORIZON)
split = time_split(labelled, TEST_SHARE, embargo=HORIZON)
parts = pl.DataFrame(
    {
        "part": ["train", "test"],
        "windows": [split.train.height, split.test.height],
        "positives": [int(split.train["failure_within"].sum()), int(split.test["failure_within"].sum())],
        "failing machines": [
            split.train.filter(pl.col("failure_within") == 1)["machine_id"].n_unique(),
            split.test.filter(pl.col("failure_within") == 1)["machine_id"].n_unique(),
        ],
        "from": [split.train["window_end"].min(), split.cutoff],
        "to": [split.cutoff - split.embargo, split.test["window_end"].max()],
    }
)
parts

# %% [markdown]
# Calibration needs predictions on windows the model did not learn from. Folds are grouped by
# machine (a machine's windows are never on both sides) and stratified, so each fold's model
# has seen failures; all of it within the training period.

# %%
x_train, y_train = model_input(split.train, columns), split.train["failure_within"].to_numpy()
x_test, y_test = model_input(split.test, columns), split.test["failure_within"].to_numpy()
failing = split.train.filter(pl.col("failure_within") == 1)["machine_id"].n_unique()
if failing < 2:
    raise ValueError(
        f"the training period holds failures of {failing} machine(s): need 2 or more "
        "(a longer history, or a smaller FLOORSIGHT_TEST_SHARE)"
    )
folds = list(
    StratifiedGroupKFold(n_splits=min(3, failing)).split(
        x_train, y_train, split.train["machine_id"].to_numpy()
    )
)
threshold = COST_FALSE_ALARM / (COST_FALSE_ALARM + COST_MISSED_FAILURE)
threshold  # with calibrated probabilities, the cost-optimal alarm threshold

# %%
candidates = {
    "hist_gradient_boosting": HistGradientBoostingClassifier(
        max_iter=50, learning_rate=0.15, max_leaf_nodes=15, l2_regularization=1.0, random_state=SEED
    ),
    "logistic_regression": LogisticRegression(C=0.1, max_iter=2000),
}


def evaluate(model) -> tuple[dict[str, float], pl.DataFrame]:
    """Held-out metrics of a fitted classifier on the later part, and its reliability table."""
    p = model.predict_proba(x_test)[:, 1]
    base = np.full_like(p, y_train.mean())
    scored = split.test.select("machine_id", "window_start", "window_end").with_columns(
        model=pl.lit("candidate"), score=pl.Series(p), is_anomaly=pl.Series(p >= threshold)
    )
    events = compare_scores(scored, maintenance_log, HORIZON).row(0, named=True)
    metrics = {
        "test_roc_auc": roc_auc_score(y_test, p),
        "test_average_precision": average_precision_score(y_test, p),
        "test_positive_rate": float(y_test.mean()),
        "test_brier": brier_score_loss(y_test, p),
        "test_brier_base_rate": brier_score_loss(y_test, base),
        "test_log_loss": log_loss(y_test, p, labels=[0, 1]),
        "test_precision": events["precision"] or 0.0,
        "test_recall": events["recall"] or 0.0,
        "test_alarms": float(events["alarms"]),
        "test_failures": float(events["failures"]),
        "test_failures_warned": float(events["failures_warned"]),
    }
    if events["median_lead_min"] is not None:
        metrics["test_median_lead_min"] = events["median_lead_min"]
    observed, predicted = calibration_curve(y_test, p, n_bins=8, strategy="quantile")
    reliability = pl.DataFrame({"predicted": predicted, "observed": observed})
    return metrics, reliability


experiment("floorsight-failure", MLFLOW_URI)
results = {}
for name, estimator in candidates.items():
    model = CalibratedClassifierCV(
        make_pipeline(ProductStandardizer(), estimator), method="sigmoid", cv=folds
    ).fit(x_train, y_train)
    metrics, reliability = evaluate(model)
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_params(
            {
                "model": name,
                **{f"model.{k}": v for k, v in estimator.get_params().items() if np.isscalar(v)},
                "calibration": "sigmoid, folds grouped by machine",
                "horizon_h": HORIZON / timedelta(hours=1),
                "decision_threshold": threshold,
                "test_share": TEST_SHARE,
                "embargo_h": HORIZON / timedelta(hours=1),
                "split.cutoff": split.cutoff.isoformat(),
                "train_rows": split.train.height,
                "test_rows": split.test.height,
                "feature_columns": json.dumps(columns),
                **data,
                "data.validation": "passed" if feature_report.success else "failed",
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_text(feature_report.report, "validation/features.txt")
        mlflow.log_text(reliability.write_csv(), "evaluation/reliability.csv")
        mlflow.set_tag("model_uri", log_model(model, input_example=x_train.head(3)))
        results[name] = {"run_id": run.info.run_id, **metrics}
pl.DataFrame([{"candidate": k, **v} for k, v in results.items()])

# %% [markdown]
# Reading the table: `test_average_precision` against `test_positive_rate` (what a coin with
# the base rate would score), `test_brier` against `test_brier_base_rate` (a constant
# prediction of the training base rate); `test_failures_warned` of `test_failures` had an
# alarm within the horizon before them, the first one `test_median_lead_min` minutes ahead.

# %% [markdown]
# ## Quality characteristic from the process
#
# Each lab result joined to the window in which its part was made. A label is only usable once
# the lab has reported it (`available_at`, hours after the part): training rows are the parts
# whose result was known by the cutoff; the test rows are the parts made after it.

# %%
targets = quality_targets(matrix, lab_results, spec_limits)
cutoff = split.cutoff
train_q = targets.filter(pl.col("available_at") < cutoff)
test_q = targets.filter(pl.col("part_made_at") >= cutoff)
x_q, y_q = model_input(train_q, columns), train_q["deviation"].to_numpy()
xt_q, yt_q = model_input(test_q, columns), test_q["deviation"].to_numpy()
regressor = make_pipeline(
    ProductStandardizer(), HistGradientBoostingRegressor(max_iter=200, random_state=SEED)
).fit(x_q, y_q)
predicted = regressor.predict(xt_q)
# the in-line gauge: the characteristic's own sensor, window mean, in tolerance units
gauge = test_q.select(
    pl.coalesce(
        pl.when(pl.col("characteristic") == c).then(pl.col(f"{c}.mean"))
        for c in test_q["characteristic"].unique()
        if f"{c}.mean" in test_q.columns
    )
    .sub(pl.col("target"))
    .truediv((pl.col("usl") - pl.col("lsl")) / 2)
)
quality_metrics = {
    "test_mae": mean_absolute_error(yt_q, predicted),
    "test_mae_on_target": mean_absolute_error(yt_q, np.zeros_like(yt_q)),
    "test_mae_inline_gauge": mean_absolute_error(yt_q, gauge.to_series().fill_null(0).to_numpy()),
    "test_out_of_spec_parts": float((np.abs(yt_q) > 1).sum()),
    "test_out_of_spec_flagged": float(((np.abs(yt_q) > 1) & (np.abs(predicted) > 1)).sum()),
}
experiment("floorsight-quality", MLFLOW_URI)
with mlflow.start_run(run_name="hist_gradient_boosting_regressor") as run:
    mlflow.log_params(
        {
            "model": "hist_gradient_boosting_regressor",
            "target": "lab value in tolerance units",
            "split.cutoff": cutoff.isoformat(),
            "train_rows": train_q.height,
            "test_rows": test_q.height,
            "feature_columns": json.dumps(columns),
            **provenance(targets, "features + erp_lab_results", time_col="part_made_at"),
        }
    )
    mlflow.log_metrics(quality_metrics)
    mlflow.set_tag("model_uri", log_model(regressor, input_example=x_q.head(3)))
quality_metrics

# %% [markdown]
# `test_mae` is in tolerance units (1.0 = half the tolerance band). `test_mae_on_target`
# predicts every part exactly on target; `test_mae_inline_gauge` uses the in-line gauge's window
# mean. Next: `03_register_champion` registers the best failure classifier and makes it the
# pipeline's champion.
