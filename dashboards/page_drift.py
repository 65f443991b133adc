"""Drift: a machine's feature distribution now against its reference for the product, the drift
statistics over time, and when drift detectors fired.

The reference of a product on a machine is its first windows there (a changeover to another
product is not drift: each product is compared with itself). Statistics are PSI and the KS
statistic of the recent windows against it (``models.drift.FeatureDrift``); "fired" marks
windows where PSI and KS both crossed their limits, and every window a drift model in the score
table flagged (models named ``drift*``) or a drift alert covered.
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
from floorsight.models.drift import FeatureDrift
from floorsight.storage import Database

#: at most this many recent windows are judged per refresh
MAX_WINDOWS = 2000
#: reference size, recent window and PSI limit: the drift model's own defaults
DEFAULTS = FeatureDrift()


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
    with st.expander("Reference and window sizes"):
        k = st.columns(3)
        reference = int(
            k[0].number_input(
                "Reference windows", 10, 5000, DEFAULTS.reference_size, key="drift_ref"
            )
        )
        window = int(
            k[1].number_input("Recent windows compared", 5, 1000, DEFAULTS.window, key="drift_win")
        )
        psi_limit = float(
            k[2].number_input("PSI limit", 0.05, 5.0, DEFAULTS.psi_limit, key="drift_psi")
        )
    if product and sensor:
        live(db, machine, product, sensor, label, (reference, window, psi_limit))


@st.fragment(run_every=SLOW_REFRESH)
def live(db: Database, machine: str, product: str, sensor: str, label: str, sizes) -> None:
    reference_n, window, psi_limit = sizes
    with snapshot(db) as con:
        now = queries.latest_window_end(con)
        start = since(now, label)
        reference = queries.first_windows(con, machine, sensor, product, reference_n)
        current = queries.product_windows(con, machine, sensor, product, start, MAX_WINDOWS)
        models = queries.model_events(con, machine, "drift", start)
        alerts = queries.alerts_of_cause(con, machine, "drift", start)
    stats = analysis.drift_series(reference, current, product, window=window, psi_limit=psi_limit)
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
            onsets(stats).select(
                "window_end", source=pl.format("PSI and KS of {} beyond limits", "feature")
            ),
            models.select("window_end", source=pl.format("model {}", "model")),
            alerts.select(
                pl.col("raised_at").alias("window_end"), source=pl.format("alert {}", "alert_id")
            ),
        ]
    ).sort("window_end")
    right.plotly_chart(
        charts.drift_statistics(stats, psi_limit, fired, f"{machine} · {product} · {sensor}"),
        width="stretch",
    )
    if reference.height < 10:
        st.info(
            f"{literal(product)} has {reference.height} windows on {literal(machine)} so far; "
            "drift statistics "
            "start once it has 10 reference windows."
        )
    latest = stats.group_by("feature").agg(pl.all().sort_by("window_end").last()).sort("feature")
    cols = st.columns(max(latest.height, 1))
    for col, row in zip(cols, latest.iter_rows(named=True), strict=False):
        col.metric(
            f"PSI {literal(row['feature'])}",
            f"{row['psi']:.3f}",
            help=f"KS {row['ks']:.3f}; drifted: {row['drifted']}",
        )
    st.subheader("When drift was detected")
    show_page_of(
        fired.sort("window_end", descending=True),
        "drift_fired_page",
        "No drift detected in this range.",
    )


def onsets(stats: pl.DataFrame) -> pl.DataFrame:
    """The windows where a feature starts drifting (not every window while it drifts)."""
    before = pl.col("drifted").shift(1).over("feature").fill_null(False)
    return stats.filter(pl.col("drifted") & ~before)


main()
