"""Drift: a machine's feature distribution now against its reference for the product, the drift
statistics over time, and when drift detectors fired.

Everything shown is what the stream computed (``models.feature_drift``, the ``drift`` table):
PSI of each feature of the chosen sensor against the product's reference and its limit, the
multivariate Σ PSI, and the windows where a statistic crossed its limit or a detector (ADWIN or
KSWIN) fired past its shift limit; beside them, every window a drift model in the score table
flagged (models named ``drift*`` or ``feature_drift``) or a drift alert covered. The histogram
is the product's first windows on the machine against its latest ones, as stored features.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from floorsight.dashboards import analysis, charts, queries
from floorsight.dashboards.common import (
    SLOW_REFRESH,
    database,
    literal,
    show_page_of,
    since,
    snapshot,
    time_range,
)
from floorsight.models.feature_drift import FeatureDriftModel
from floorsight.storage import Database

#: at most this many recent windows are drawn in the histogram
MAX_WINDOWS = 2000
#: the histogram's reference and recent sizes: the drift model's own defaults
DEFAULTS = FeatureDriftModel()


def main() -> None:
    st.title("Drift")
    db = database()
    with snapshot(db) as con:
        machines = queries.machines(con)
    if not machines.height:
        st.info("No machines yet.")
        return
    c = st.columns(5)
    lines = sorted(set(machines["line"].to_list()))
    line = c[0].selectbox("Line", ["all", *lines], key="drift_line")
    if line != "all":
        machines = machines.filter(pl.col("line") == line)
    machine = c[1].selectbox("Machine", machines["machine_id"].to_list(), key="drift_machine")
    if machine is None:
        return
    with snapshot(db) as con:
        products = queries.products_of(con, machine)["product"].to_list()
        sensors = queries.sensors(con, machine)
    product = c[2].selectbox(
        "Product",
        products,
        key="drift_product",
        help="the product running most recently comes first",
    )
    sensor = c[3].selectbox("Feature", sensors, key="drift_sensor")
    label = time_range(c[4], "drift_range")
    with st.expander("Histogram sizes"):
        k = st.columns(2)
        reference = int(
            k[0].number_input(
                "Reference windows", 10, 20000, DEFAULTS.reference_windows, key="drift_ref"
            )
        )
        window = int(
            k[1].number_input("Recent windows", 5, 20000, DEFAULTS.window, key="drift_win")
        )
    if product and sensor:
        live(db, machine, product, sensor, label, (reference, window))


@st.fragment(run_every=SLOW_REFRESH)
def live(db: Database, machine: str, product: str, sensor: str, label: str, sizes) -> None:
    reference_n, window = sizes
    with snapshot(db) as con:
        now = queries.latest_window_end(con)
        start = since(now, label)
        reference = queries.first_windows(con, machine, sensor, product, reference_n)
        current = queries.product_windows(con, machine, sensor, product, start, MAX_WINDOWS)
        rows = queries.drift_rows(con, machine, product, sensor, start)
        models = queries.model_events(con, machine, "drift", start)
        features = queries.model_events(con, machine, "feature_drift", start)
        alerts = queries.alerts_of_cause(con, machine, "drift", start)
    stats = analysis.drift_series(rows)
    recent = (
        current.filter(pl.col("window_end") > reference["window_end"].max()).tail(window)
        if (reference.height)
        else current.tail(window)
    )
    left, right = st.columns(2)
    left.plotly_chart(
        charts.distributions(
            reference["mean"].to_list(),
            recent["mean"].to_list(),
            f"{sensor} window means: reference ({reference.height}) vs now ({recent.height})",
        ),
        width="stretch",
    )
    fired = pl.concat(
        [
            analysis.drift_firings(rows),
            pl.concat([models, features]).select(
                "window_end", source=pl.format("model {}", "model")
            ),
            alerts.select(
                pl.col("raised_at").alias("window_end"), source=pl.format("alert {}", "alert_id")
            ),
        ]
    ).sort("window_end")
    limit = rows.filter(pl.col("detector") == "psi")["limit"].max() or DEFAULTS.psi_limit
    right.plotly_chart(
        charts.drift_statistics(stats, limit, fired, f"{machine} · {product} · {sensor}"),
        width="stretch",
    )
    if not rows.height:
        st.info(
            f"No drift statistics of {literal(sensor)} for {literal(product)} on "
            f"{literal(machine)} in this range: they start once the product has "
            f"{DEFAULTS.reference_windows} complete reference windows on the machine."
        )
    latest = stats.group_by("feature").agg(pl.all().sort_by("window_end").last()).sort("feature")
    cols = st.columns(max(latest.height, 1))
    for col, row in zip(cols, latest.iter_rows(named=True), strict=False):
        col.metric(
            f"PSI {literal(row['feature'])}",
            f"{row['psi']:.3f}",
            help=f"limit {row['limit']:.3f}; drifted: {row['drifted']}",
        )
    st.subheader("When drift was detected")
    show_page_of(
        fired.sort("window_end", descending=True),
        "drift_fired_page",
        "No drift detected in this range.",
    )


main()
