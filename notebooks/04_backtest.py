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
# # 4 · Backtest the champion against the online engine, side by side
#
# Before the champion pages anyone, replay a history through both and count what each would
# have done: alerts raised, labelled faults caught, false alarms, lead time before the failure.
#
# - **online engine**: `floorsight.pipelines.backtest.backtest` with the pipeline's defaults
#   (what `floorsight replay` runs): the pipeline's 10-s window features, every model of the
#   registry, the alert rules (open after 2 flagged windows, clear after 3, the 10-min flap
#   hold). Its alerts are every cause the `alert` column holds.
# - **candidate**: the MLflow champion that notebook 03 registered, scored on the same windows
#   (the same window features, `Champion.score`, as the pipeline's score step) and turned into
#   alerts by the same engine (`MachineAlerting` with the champion's rows in
#   `Context.champion`, as `floorsight run --champion` does). Its alerts have cause `champion`.
#
# **Honest evaluation.** The labels are the simulator's ground truth of the history
# (`truth/faults.parquet`: each fault's machine, onset and end, its failure time) and nothing
# else. On the history the champion was trained on (notebook 02's), it learned from the part
# before its training cutoff (the `split.cutoff` of its MLflow run), so both sides are judged
# only on the windows after it: the online engine runs over the whole history (it learns as it
# goes, as in the stream), but only its alerts and windows after the cutoff are counted,
# exactly like the champion's. On a history the champion never saw (another seed), set
# `FLOORSIGHT_JUDGE_FROM=start` to judge all of it.
#
# | variable | default |
# | --- | --- |
# | `FLOORSIGHT_HISTORY` | `var/train` (a `floorsight simulate --out` folder) |
# | `MLFLOW_TRACKING_URI` | `sqlite:///var/mlflow/mlflow.db` |
# | `FLOORSIGHT_MODEL` | `floorsight-failure` |
# | `FLOORSIGHT_JUDGE_FROM` | `cutoff` (the champion's training cutoff) or `start` |

# %%
import math
import os
from datetime import timedelta
from pathlib import Path

import mlflow
import polars as pl
from mlflow import MlflowClient

from floorsight import config
from floorsight.alerts.engine import MachineAlerting
from floorsight.alerts.rules import DEFAULT_HOLD
from floorsight.features import window_features
from floorsight.models.base import Context
from floorsight.models.champion import CHAMPION_ALIAS, experiment, load_champion
from floorsight.models.machine import segments_of
from floorsight.models.training import provenance
from floorsight.pipelines.backtest import BacktestSettings, backtest
from floorsight.pipelines.context import load_context

HISTORY = Path(os.environ.get("FLOORSIGHT_HISTORY", str(config.home() / "train")))
MLFLOW_URI = config.mlflow_tracking_uri()
MODEL = os.environ.get("FLOORSIGHT_MODEL", "floorsight-failure")
#: "cutoff": judge from the champion's training cutoff (its own history); "start": the whole
#: history (one the champion never saw)
JUDGE_FROM = os.environ.get("FLOORSIGHT_JUDGE_FROM", "cutoff")
if JUDGE_FROM not in ("cutoff", "start"):
    raise ValueError(f"FLOORSIGHT_JUDGE_FROM is 'cutoff' or 'start', not {JUDGE_FROM!r}")
SETTINGS = BacktestSettings()  # the pipeline's defaults: the online engine
HISTORY, MLFLOW_URI, MODEL, JUDGE_FROM

# %% [markdown]
# ## The history, with its work orders joined as the pipeline joins them
#
# Each reading gets the work order running on its machine at the reading's own time
# (`ErpContext.join`, the pipeline's as-of join), with its product: a changeover re-bases the
# models in the backtest as it does in the stream.

# %%
readings = pl.read_parquet(HISTORY / "readings" / "*.parquet")
context, rejected = load_context(HISTORY / "erp")
history = context.join(readings)
faults = pl.read_parquet(HISTORY / "truth" / "faults.parquet").sort("machine_id", "start")
data = provenance(history, "readings + erp work orders", time_col="ts")
print(f"{history.height:,} readings of {history['machine_id'].n_unique()} machines")
faults.select("fault_id", "machine_id", "kind", "start", "end", "failure_at", "repaired_at")

# %% [markdown]
# ## The champion and its training cutoff

# %%
champion = load_champion(MODEL, MLFLOW_URI)
if champion is None:
    raise ValueError(f"no {MODEL}@{CHAMPION_ALIAS} in {MLFLOW_URI}: run notebooks 02 and 03 first")
registry = MlflowClient(tracking_uri=MLFLOW_URI, registry_uri=MLFLOW_URI)
trained = registry.get_run(registry.get_model_version(MODEL, str(champion.version)).run_id)
cutoff = pl.Series([trained.data.params["split.cutoff"]]).str.to_datetime(time_zone="UTC")[0]
candidate = f"champion {MODEL} v{champion.version}"
candidate, trained.data.params["model"], champion.threshold, cutoff

# %% [markdown]
# ## The online engine: `backtest` with the pipeline's defaults
#
# One row per reading; `alert` holds the causes of the alerts open in the reading's window.

# %%
online = backtest(history, "ts", settings=SETTINGS)
online.group_by("alert").len().sort("len", descending=True)

# %% [markdown]
# ## The candidate: the champion on the same windows, through the same alert rules

# %%
features = window_features(history, SETTINGS.window)
champion_rows = champion.score(features)
champion_open = []
for (machine,), part in features.partition_by("machine_id", as_dict=True).items():
    rows = champion_rows.filter(pl.col("machine_id") == machine).sort("window_start").to_dicts()
    engine = MachineAlerting(SETTINGS.alert_settings())
    out = engine.update_segments(
        segments_of(part), Context(machine, champion=rows), track_open=True
    )
    champion_open += [(machine, start, is_open) for start, is_open in out.open.get("champion", [])]
champion_open = (
    pl.DataFrame(champion_open, schema=["machine_id", "window_start", "open"], orient="row")
    .group_by("machine_id", "window_start")
    .agg(pl.col("open").any())
)
flagged = int(champion_rows["is_anomaly"].sum())
f"{champion_rows.height:,} windows scored, {flagged:,} at or above the threshold"

# %% [markdown]
# ## The same rows for both
#
# Every window of the backtest (its readings' 10-s window, aligned to the epoch as the
# pipeline's) with, for each side, the causes of the alerts open in it. Only the windows from
# the judged period's start on are judged.

# %%
windows = (
    online.with_columns(window_start=pl.col("ts").dt.truncate(SETTINGS.window))
    .group_by("machine_id", "window_start")
    .agg(pl.col("alert").first())
    .join(champion_open, on=["machine_id", "window_start"], how="left")
    .with_columns(champion=pl.when(pl.col("open")).then(pl.lit("champion")).otherwise(pl.lit("")))
    .with_columns(
        pl.col("alert", "champion")
        .str.split(";")
        .list.eval(pl.element().filter(pl.element() != ""))
        .name.map(lambda c: "online" if c == "alert" else c)
    )
    .select("machine_id", "window_start", "online", "champion")
    .sort("machine_id", "window_start")
)
judged_from = history["ts"].min() if JUDGE_FROM == "start" else cutoff
judged = windows.filter(pl.col("window_start") >= judged_from)
print(f"{windows.height:,} windows, {judged.height:,} judged (from {judged_from})")

# %% [markdown]
# ## Alerts, faults caught, false alarms, lead time
#
# An **alert** is one cause open on one machine over consecutive windows; reopening within the
# flap hold (10 min, the alert rules' default) continues the same alert, as in the `alerts`
# table. An alert raised in the judged period is **true** when it opens inside a labelled
# fault of its machine (onset to end), else a **false alarm**. A labelled fault is judged when
# its machine has windows between the fault's onset (or the judged period's start, if later)
# and its end; it is **caught** when an alert of that side is open in one of them, and the
# **lead time** is its failure time minus the first such window. An alert already open at the
# first judged window of a fault (`open from the start`) caps its lead time there: on the
# champion's own training history, faults that began before the cutoff are judged from the
# cutoff only, and the lead time says "at least".


# %%
def alerts_of(windows: pl.DataFrame, side: str, hold: timedelta = DEFAULT_HOLD) -> pl.DataFrame:
    """One row per alert of ``side``: machine, cause, first and last open window, and whether
    it opened inside a labelled fault of its machine."""
    open_windows = (
        windows.select("machine_id", "window_start", pl.col(side).alias("cause"))
        .explode("cause")
        .drop_nulls("cause")
        .sort("machine_id", "cause", "window_start")
    )
    gap = pl.col("window_start").diff().over("machine_id", "cause")
    alerts = (
        open_windows.with_columns(alert=(gap.is_null() | (gap > hold)).cum_sum())
        .group_by("machine_id", "cause", "alert")
        .agg(first=pl.col("window_start").min(), last=pl.col("window_start").max())
        .drop("alert")
    )
    inside = (
        alerts.join(faults, on="machine_id")
        .filter(pl.col("first").is_between(pl.col("start"), pl.col("end")))
        .select("machine_id", "cause", "first", fault=pl.col("fault_id"))
        .unique(["machine_id", "cause", "first"])
    )
    return alerts.join(inside, on=["machine_id", "cause", "first"], how="left").sort(
        "machine_id", "first", "cause"
    )


def judge(side: str) -> tuple[dict[str, float], pl.DataFrame]:
    """The side's counts on the judged windows, and each judged fault's lead time."""
    # alerts over the whole history: one already open when the judged period starts was
    # raised before it, not in it
    raised = alerts_of(windows, side).filter(pl.col("first") >= judged_from)
    in_faults = judged.join(faults, on="machine_id").filter(
        pl.col("window_start") >= pl.col("start"), pl.col("window_start") < pl.col("end")
    )
    per_fault = (
        in_faults.group_by("fault_id")
        .agg(
            windows=pl.len(),
            first_window=pl.col("window_start").min(),
            first_open=pl.col("window_start").filter(pl.col(side).list.len() > 0).min(),
        )
        .join(faults.select("fault_id", "machine_id", "failure_at"), on="fault_id")
        .select(
            "fault_id",
            "machine_id",
            "failure_at",
            "windows",
            lead_min=(pl.col("failure_at") - pl.col("first_open")).dt.total_seconds() / 60,
            caught=pl.col("first_open").is_not_null(),
            open_from_start=pl.col("first_open") == pl.col("first_window"),
        )
        .sort("fault_id")
    )
    caught = per_fault.filter("caught")
    under_alert = judged.filter(pl.col(side).list.len() > 0)
    outside = under_alert.join(
        in_faults.select("machine_id", "window_start").unique(),
        on=["machine_id", "window_start"],
        how="anti",
    )
    counts = {
        "windows judged": float(judged.height),
        "labelled faults judged": float(per_fault.height),
        "faults caught": float(caught.height),
        "alerts raised": float(raised.height),
        "true alerts": float(raised["fault"].is_not_null().sum()),
        "false alarms": float(raised["fault"].is_null().sum()),
        "median lead (min)": float(caught["lead_min"].median()) if caught.height else math.nan,
        "faults caught with the alert open from the start": float(caught["open_from_start"].sum()),
        "hours under alert outside faults": outside.height * SETTINGS.window.total_seconds() / 3600,
    }
    return counts, per_fault


online_counts, online_faults = judge("online")
champion_counts, champion_faults = judge("champion")
comparison = pl.DataFrame(
    {
        "measure": list(online_counts),
        "online engine": list(online_counts.values()),
        candidate: list(champion_counts.values()),
    }
)
comparison

# %% [markdown]
# Each labelled fault judged, and how long before its failure each side had an alert open
# (empty: not caught):

# %%
fault_table = online_faults.select(
    "fault_id",
    "machine_id",
    "failure_at",
    "windows",
    online_lead_min="lead_min",
    online_open_from_start="open_from_start",
).join(
    champion_faults.select(
        "fault_id", champion_lead_min="lead_min", champion_open_from_start="open_from_start"
    ),
    on="fault_id",
)
fault_table

# %% [markdown]
# The online engine's alerts by cause in the judged period: which of its models raise them,
# and how many opened inside a fault.

# %%
(
    alerts_of(windows, "online")
    .filter(pl.col("first") >= judged_from)
    .group_by("cause")
    .agg(
        alerts=pl.len(),
        true=pl.col("fault").is_not_null().sum(),
        false_alarms=pl.col("fault").is_null().sum(),
    )
    .sort("alerts", descending=True)
)

# %% [markdown]
# ## Log the comparison to MLflow
#
# One run in experiment `floorsight-backtest`: the history's provenance, the engine's
# settings, the champion's name, version and cutoff, both sides' counts as metrics
# (`online.<measure>`, `champion.<measure>`) and the table as an artifact.


# %%
def metric_name(side: str, measure: str) -> str:
    words = measure.replace("(", "").replace(")", "").split()
    return f"{side}." + "_".join(words)


experiment("floorsight-backtest", MLFLOW_URI)
with mlflow.start_run(run_name=f"online engine vs {candidate}") as run:
    mlflow.log_params(
        {
            "history": str(HISTORY),
            "labels": "truth/faults.parquet (the simulator's fault windows)",
            "judged_from": judged_from.isoformat(),
            "candidate.cutoff": cutoff.isoformat(),
            "candidate": candidate,
            "candidate.threshold": champion.threshold,
            "candidate.horizon_h": champion.horizon_h,
            "candidate.training_run": trained.info.run_id,
            "window_s": SETTINGS.window.total_seconds(),
            "open_after": SETTINGS.open_after,
            "clear_after": SETTINGS.clear_after,
            "score_model": SETTINGS.score_model,
            "models": "pipeline defaults",
            **data,
        }
    )
    for side, counts in (("online", online_counts), ("champion", champion_counts)):
        mlflow.log_metrics({metric_name(side, k): v for k, v in counts.items() if math.isfinite(v)})
    mlflow.log_text(comparison.write_csv(), "backtest/comparison.csv")
    mlflow.log_text(fault_table.write_csv(), "backtest/faults.csv")
run.info.run_id
