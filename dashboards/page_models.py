"""Predictions and models: failure probability and remaining useful life per machine, predicted
vs measured quality, each model's live metrics, and the MLflow champion beside the online models.
"""

from __future__ import annotations

import json

import polars as pl
import streamlit as st

from floorsight.dashboards import charts, queries, registry
from floorsight.dashboards.common import (
    SLOW_REFRESH,
    database,
    literal,
    mlflow_uri,
    since,
    snapshot,
    time_range,
)
from floorsight.storage import Database

FAILURE_MODEL = "failure_risk"


def main() -> None:
    st.title("Predictions and models")
    label = time_range(st, "models_range")
    live(database(), label)
    champion_section()


@st.fragment(run_every=SLOW_REFRESH)
def live(db: Database, label: str) -> None:
    with snapshot(db) as con:
        now = queries.latest_window_end(con)
        latest = queries.latest_scores(con, FAILURE_MODEL)
        series = queries.score_series(con, FAILURE_MODEL, since(now, label))
        metrics = queries.model_metrics(con)
        feedback = queries.alert_feedback(con)
        predicted = queries.lab_vs_predicted(con, now) if now else pl.DataFrame()
        quality = queries.lab_vs_inline(con, now) if now else pl.DataFrame()
    st.subheader("Failure risk and remaining useful life")
    if latest.height:
        st.dataframe(
            failure_table(latest),
            hide_index=True,
            width="stretch",
            column_config={
                "failure probability": st.column_config.NumberColumn(format="percent"),
                "RUL (h)": st.column_config.NumberColumn(format="%.1f"),
            },
        )
        st.plotly_chart(
            charts.score_lines(
                series.select("machine_id", "window_end", value="score"),
                "Failure probability per machine",
                "probability",
            ),
            width="stretch",
        )
    else:
        st.write("No failure-risk scores yet (each machine first learns its baseline).")

    st.subheader("Predicted vs measured quality")
    if predicted.height:
        st.caption(
            "The deviation model's prediction for the window the part was made in (from the "
            "in-line gauge and the process, made hours before the lab measured it), against "
            "the part's lab "
            "result (the results that had arrived by the newest window)."
        )
        source = predicted
    else:
        st.caption(
            "The in-line gauge's window mean when the part was made, against the part's lab "
            "result (no model predictions yet: the deviation model needs 10 lab results)."
        )
        source = quality.rename({"inline": "predicted"}) if quality.height else quality
    if source.height:
        groups = source.partition_by(["product", "characteristic"], as_dict=True)
        cols = st.columns(2)
        for i, ((product, characteristic), part) in enumerate(sorted(groups.items())):
            pairs = part.select("machine_id", "product", "measured", "predicted")
            mae = (pairs["predicted"] - pairs["measured"]).abs().mean()
            title = f"{product} · {characteristic}"
            col = cols[i % 2]
            col.plotly_chart(charts.predicted_vs_measured(pairs, title), width="stretch")
            col.caption(
                f"{literal(title)}: {pairs.height} parts, mean absolute difference {mae:.4g}"
            )
    else:
        st.write("No lab results have arrived yet (they come hours after the part was made).")

    st.subheader("Live model metrics")
    left, right = st.columns(2)
    left.markdown("**Models** (score table; the champion per registered version)")
    left.dataframe(
        metrics,
        hide_index=True,
        width="stretch",
        column_config={
            "flagged_share": st.column_config.NumberColumn("flagged share", format="percent")
        },
    )
    right.markdown("**Alerts and their labels** (from the alerts inbox)")
    right.dataframe(
        feedback.with_columns(
            precision=pl.when(pl.col("true_problems") + pl.col("false_alarms") > 0).then(
                pl.col("true_problems") / (pl.col("true_problems") + pl.col("false_alarms"))
            )
        ),
        hide_index=True,
        width="stretch",
    )


def failure_table(latest: pl.DataFrame) -> pl.DataFrame:
    """Newest failure-risk score per machine: health index, RUL in hours with its interval and
    the sensors that deviate most (the model's evidence)."""
    evidence = [json.loads(e) if e else {} for e in latest["evidence"].to_list()]

    def column(name: str, key: str) -> pl.Series:
        return pl.Series(name, [e.get(key) for e in evidence], pl.Float64)

    return latest.select(
        "machine_id",
        pl.col("window_end").alias("as of"),
        "product",
        pl.col("score").alias("failure probability"),
        column("health index", "health"),
        column("RUL (h)", "rul_hours"),
        column("RUL low (h)", "rul_low_h"),
        column("RUL high (h)", "rul_high_h"),
        pl.Series(
            "sensors", [", ".join(s for s, _ in e.get("sensors", [])) for e in evidence], pl.String
        ),
        pl.col("is_anomaly").alias("alert"),
    )


@st.cache_data(ttl=30, show_spinner=False)
def _champions(uri: str) -> pl.DataFrame:
    return registry.champions(uri)


def champion_section() -> None:
    st.subheader("Champion from MLflow")
    uri = mlflow_uri()
    if uri is None:
        st.write(
            "No MLflow registry configured: start the dashboard with --mlflow URI or set "
            "MLFLOW_TRACKING_URI."
        )
        return
    try:
        table = _champions(uri)
    except Exception as exc:  # the registry is optional: say what is wrong, keep the page
        st.warning(f"MLflow registry at {literal(uri)} could not be read: {literal(exc)}")
        return
    if table.height:
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption(
            "A pipeline started with --champion scores with its champion as model "
            "'champion' (one row per registered version in the model metrics above) and "
            "raises alerts with cause 'champion' (in the alerts and their labels above)."
        )
    else:
        st.write(f"No model in {literal(uri)} has a '{registry.CHAMPION_ALIAS}' alias yet.")


main()
