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
# # 1 · Explore the feature tables
#
# The pipeline (`floorsight run` or `floorsight demo`) writes one DuckDB file: window features
# per machine and sensor, scores, alerts, the ERP context it joined with (`work_orders`,
# `spec_limits`, `erp_*`) and the results of the data-quality suites (`validation_results`).
# This notebook reads them with DuckDB SQL and polars and looks at the features around the
# failures the maintenance log recorded.
#
# Parameters come from the environment so that CI can point the notebook at a small history:
#
# | variable | default |
# | --- | --- |
# | `FLOORSIGHT_DB` | `var/floorsight.duckdb` (under `FLOORSIGHT_HOME`) |

# %%
import os
from datetime import timedelta

import plotly.express as px
import polars as pl

from floorsight import config
from floorsight.features.expectations import validate_features
from floorsight.models.training import window_matrix
from floorsight.storage import read_frame

DB = os.environ.get("FLOORSIGHT_DB", str(config.default_db_path()))
DB

# %% [markdown]
# Every query goes through `floorsight.storage.read_frame`: it opens the file read-only, runs
# the query and closes the file before returning, so a running pipeline is never kept waiting
# by this notebook, however long it stays open. Never keep a `duckdb.connect()` to the live
# file open here: the pipeline cannot write while it is (see docs/notebooks.md).


# %%
def sql(query: str, params=()) -> pl.DataFrame:
    return read_frame(DB, query, params)


tables = sql("SELECT table_name, estimated_size AS rows FROM duckdb_tables() ORDER BY table_name")
tables

# %%
coverage = sql(
    """
    SELECT machine_id,
           count(DISTINCT window_start) AS windows,
           count(DISTINCT sensor) AS sensors,
           min(window_start) AS first_window,
           max(window_end) AS last_window,
           count(DISTINCT work_order) AS work_orders
    FROM features
    GROUP BY machine_id
    ORDER BY machine_id
    """
)
coverage

# %%
features = sql("SELECT * FROM features ORDER BY window_start, machine_id, sensor")
failures = sql(
    "SELECT machine_id, start AS failed_at, description FROM erp_maintenance_log "
    "WHERE kind = ? ORDER BY start",
    ["failure"],
)
spec_limits = sql("SELECT * FROM spec_limits")
lab = sql("SELECT * FROM erp_lab_results")
has_validation = "validation_results" in set(tables["table_name"])
validation = (
    sql(
        "SELECT validated_at, suite, success, evaluated, failed, report FROM validation_results "
        "ORDER BY validated_at DESC"
    )
    if has_validation
    else None
)
features.shape, failures.height, lab.height

# %% [markdown]
# ## Is the data fit to use?
#
# The pipeline checked every ERP context load with its Great Expectations suites (keys unique,
# LSL < target < USL, times ordered, foreign keys resolve) and stored the results. The feature
# table has its own suite: keys, ranges, nulls, freshness.

# %%
validation.select("validated_at", "suite", "success", "failed") if validation is not None else None

# %%
report = validate_features(features, fresh_since=features["window_end"].max() - timedelta(hours=1))
print(report.report)

# %% [markdown]
# ## Failures in the maintenance log

# %%
failures

# %% [markdown]
# ## Vibration before each failure
#
# Bearing wear shows as vibration rising for hours before the machine stops. Window means,
# smoothed over 5 minutes, for the six hours before each recorded failure:

# %%
vibration = features.filter(pl.col("sensor") == "vibration_mm_s").select(
    "machine_id", "window_end", "product", "mean"
)
before = (
    vibration.join(failures, on="machine_id")
    .filter(
        (pl.col("window_end") <= pl.col("failed_at"))
        & (pl.col("window_end") > pl.col("failed_at") - timedelta(hours=6))
    )
    .with_columns(
        hours_before=(pl.col("failed_at") - pl.col("window_end")).dt.total_seconds() / -3600,
        failure=pl.format("{} {}", "machine_id", pl.col("failed_at").dt.strftime("%d %H:%M")),
    )
    .sort("failure", "window_end")
    .with_columns(smoothed=pl.col("mean").rolling_mean(30).over("failure"))
)
fig = px.line(
    before.to_pandas(),
    x="hours_before",
    y="smoothed",
    color="failure",
    labels={"hours_before": "hours before the failure", "smoothed": "vibration (mm/s, 5 min)"},
    title="Vibration before each recorded failure",
)
fig.show()

# %% [markdown]
# Normal vibration differs by product, so "high" must be judged against the product's own
# level (the training notebook scales each feature by its product's baseline):

# %%
per_product = (
    vibration.join(failures.group_by("machine_id").agg(pl.col("failed_at").min()), on="machine_id", how="left")
    .filter(
        pl.col("failed_at").is_null() | (pl.col("window_end") < pl.col("failed_at") - timedelta(hours=6))
    )
    .group_by("product")
    .agg(
        windows=pl.len(),
        median=pl.col("mean").median(),
        p05=pl.col("mean").quantile(0.05),
        p95=pl.col("mean").quantile(0.95),
    )
    .sort("product")
)
per_product

# %% [markdown]
# ## A quality characteristic against its spec limits
#
# The in-line gauge (window means) and the lab's measurements of sampled parts, against the
# product's LSL and USL from ERP:

# %%
gauge = (
    features.filter(pl.col("sensor").is_in(spec_limits["characteristic"].unique().implode()))
    .join(
        spec_limits,
        left_on=["product", "sensor"],
        right_on=["product", "characteristic"],
    )
    .with_columns(
        tolerance_units=(pl.col("mean") - pl.col("target")) / ((pl.col("usl") - pl.col("lsl")) / 2)
    )
)
fig = px.scatter(
    gauge.sample(min(gauge.height, 5000), seed=0).sort("window_start").to_pandas(),
    x="window_start",
    y="tolerance_units",
    color="machine_id",
    labels={"tolerance_units": "(value - target) / half tolerance"},
    title="In-line gauge in tolerance units: within ±1 is in spec",
)
fig.add_hline(y=1, line_dash="dash")
fig.add_hline(y=-1, line_dash="dash")
fig.show()

# %%
lab_vs_gauge = (
    lab.select("machine_id", "part_made_at", "characteristic", "value", "in_spec")
    .sort("part_made_at")
    .join_asof(
        gauge.select("machine_id", "window_start", "window_end", "mean").sort("window_start"),
        left_on="part_made_at",
        right_on="window_start",
        by="machine_id",
    )
    .filter(pl.col("part_made_at") < pl.col("window_end"))
    .with_columns(gauge_minus_lab=pl.col("mean") - pl.col("value"))
)
lab_vs_gauge.group_by("machine_id", "characteristic").agg(
    samples=pl.len(),
    bias=pl.col("gauge_minus_lab").mean(),
    spread=pl.col("gauge_minus_lab").std(),
    out_of_spec=(~pl.col("in_spec")).sum(),
).sort("machine_id")

# %% [markdown]
# ## The matrix the models read
#
# `window_matrix` turns the long feature table into one row per machine window with a column
# per `sensor.statistic`; the training notebook and the champion in the pipeline's score step
# use the same function, so a model sees the same columns offline and in the stream.

# %%
matrix = window_matrix(features)
matrix.shape, matrix.columns[:10]

# %%
matrix.head()
