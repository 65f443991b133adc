"""SPC: individuals control charts of window means with ERP spec limits, named run-rule
violations, and Cp/Cpk/Pp/Ppk per product as the stream computed them (``capability`` table).

Limits are per product: each product's phase I is its first windows on the machine, so the
centre line and limits change with the product, like the spec limits from ERP do.
"""

from __future__ import annotations

from datetime import datetime

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
from floorsight.models.capability import CapabilityModel
from floorsight.storage import Database

PHASE1_DEFAULT = 25

#: what the chart plots, per window: one reading (an individual measurement, so Cp/Cpk are
#: those of single measurements) or the mean of the window's readings (smoother, but its σ is
#: that of averages and its Cp/Cpk overstate what single parts achieve)
STATISTICS = {"one reading per window": "last", "window mean": "mean"}


def main() -> None:
    st.title("SPC")
    db = database()
    with snapshot(db) as con:
        machine_ids = queries.machines(con)["machine_id"].to_list()
    if not machine_ids:
        st.info("No machines yet.")
        return
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    machine = c1.selectbox("Machine", machine_ids, key="spc_machine")
    with snapshot(db) as con:
        quality = queries.spec_characteristics(con, machine)
        others = [s for s in queries.sensors(con, machine) if s not in quality]
        products = queries.products_of(con, machine)["product"].to_list()
    product = c2.selectbox(
        "Product", products, key="spc_product", help="the product running most recently first"
    )
    sensor = c3.selectbox(
        "Characteristic",
        [*quality, *others],
        key="spc_sensor",
        help="characteristics with spec limits from ERP come first",
    )
    statistic = STATISTICS[c4.selectbox("Plotted value", list(STATISTICS), key="spc_statistic")]
    label = time_range(c5, "spc_range")
    phase1 = int(
        c6.number_input(
            "Phase I windows",
            min_value=2,
            max_value=500,
            value=PHASE1_DEFAULT,
            key="spc_phase1",
            help="each product's first windows on the machine set its control limits",
        )
    )
    if sensor and product:
        live(db, machine, product, sensor, statistic, label, phase1)


@st.fragment(run_every=SLOW_REFRESH)
def live(
    db: Database, machine: str, product: str, sensor: str, statistic: str, label: str, phase1: int
):
    """The chart of one product (its own limits and specs); capability of every product."""
    with snapshot(db) as con:
        now = queries.latest_window_end(con)
        points = queries.feature_with_specs(con, machine, sensor, since(now, label))
        reference = (
            queries.first_windows(con, machine, sensor, product, phase1)[statistic]
            .drop_nulls()
            .to_list()
        )
    if not points.height:
        st.write("No windows in this time range.")
        return
    points = points.with_columns(value=pl.col(statistic)).drop_nulls("value")
    chart = analysis.control_points(
        points.filter(pl.col("product") == product), {product: reference}
    )
    what = "one reading per window" if statistic == "last" else "window means"
    if chart.height:
        title = f"{machine} · {product} · {sensor}: individuals chart of {what}"
        st.plotly_chart(charts.control_chart(chart, title), width="stretch")
    else:
        st.write(f"{literal(product)} did not run on {literal(machine)} in this time range.")
    if len(reference) < phase1:
        st.caption(
            f"{literal(product)} is still in phase I (fewer than {phase1} windows so far): its "
            "limits come from the windows there are."
        )
    capability(db, machine, product, sensor, since(now, label), now)
    st.subheader("Run-rule violations")
    violations = (
        chart.filter(pl.col("rules") != "")
        .select("window_end", "product", "work_order", "value", "center", "ucl", "lcl", "rules")
        .sort("window_end", descending=True)
    )
    show_page_of(violations, "spc_violations_page", "No run-rule violations in this range.")


def capability(
    db: Database, machine: str, product: str, sensor: str, start: datetime | None, now: datetime
) -> None:
    """Capability as the stream computed it (table ``capability``), beside the lab's parts."""
    with snapshot(db) as con:
        current = queries.capability_now(con, machine, sensor)
        trend = queries.capability_trend(con, machine, product, sensor, start)
        lab = queries.lab_results(con, machine, sensor, now)
    st.subheader("Capability per product")
    st.caption(
        f"In-line: the stream's rolling capability of {literal(sensor)}, as of its newest row: "
        "each product's last windows on the machine, Cp and Cpk from the σ within windows, Pp "
        "and Ppk from the σ of all readings (basis parts: a value held per machine cycle, read "
        "once per part, σ within = MR̄/d2). Lab: single parts measured in the lab, the results "
        "that had arrived by the newest window."
    )
    inline = analysis.stream_capability(current)
    parts = analysis.capability_table(lab) if lab.height else inline.clear()
    st.dataframe(
        pl.concat(
            [
                inline.select(pl.lit("in-line").alias("source"), pl.all()),
                parts.select(pl.lit("lab").alias("source"), pl.all()),
            ],
            how="diagonal",
        ),
        hide_index=True,
        width="stretch",
    )
    if not trend.height:
        st.caption(f"No capability rows of {literal(product)} in this time range yet.")
        return
    level = CapabilityModel.cpk_level
    title = f"{machine} · {product} · {sensor}: rolling Cpk (dotted: the default level {level:g})"
    st.plotly_chart(charts.capability_trend(trend, level, title), width="stretch")
    orders = analysis.work_order_capability(trend)
    st.caption("Per work order: from its first window; final once the order has ended.")
    st.dataframe(orders, hide_index=True, width="stretch")


main()
