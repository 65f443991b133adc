"""SPC: the stream's individuals charts of window means with ERP spec limits, named run-rule
violations (table ``spc``), and Cp/Cpk/Pp/Ppk per product as the stream computed them
(``capability`` table).

Limits are per product: each product's phase I is its first windows on the machine, so the
centre line and limits change with the product, like the spec limits from ERP do. The page
draws what the stream judged (``models/spc_monitor.py``: its rule set and phase I are the
``[spc]`` model settings), so a violation here is one the stream saw.
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


def main() -> None:
    st.title("SPC")
    db = database()
    with snapshot(db) as con:
        machine_ids = queries.machines(con)["machine_id"].to_list()
    if not machine_ids:
        st.info("No machines yet.")
        return
    c1, c2, c3, c4 = st.columns(4)
    machine = c1.selectbox("Machine", machine_ids, key="spc_machine")
    with snapshot(db) as con:
        quality = queries.spec_characteristics(con, machine)
        products = queries.products_of(con, machine)["product"].to_list()
    product = c2.selectbox(
        "Product", products, key="spc_product", help="the product running most recently first"
    )
    sensor = c3.selectbox(
        "Characteristic",
        quality,
        key="spc_sensor",
        help="the sensors with spec limits from ERP for a product of the machine: the stream "
        "charts their window means",
    )
    label = time_range(c4, "spc_range")
    if sensor and product:
        live(db, machine, product, sensor, label)
    elif not quality:
        st.write(f"{literal(machine)} has no characteristic with spec limits from ERP.")


@st.fragment(run_every=SLOW_REFRESH)
def live(db: Database, machine: str, product: str, sensor: str, label: str):
    """The stream's chart of one product (its own limits and specs); capability per product."""
    with snapshot(db) as con:
        now = queries.latest_window_end(con)
        chart = queries.spc_points(con, machine, product, sensor, since(now, label))
    if chart.height:
        title = f"{machine} · {product} · {sensor}: individuals chart of window means"
        st.plotly_chart(charts.control_chart(chart, title), width="stretch")
        if chart["center"].null_count():
            st.caption(
                f"Windows without limits are {literal(product)}'s phase I on "
                f"{literal(machine)}: its first windows, which set the limits."
            )
    else:
        st.write(f"No charted windows of {literal(product)} on {literal(machine)} in this range.")
    if now is not None:
        capability(db, machine, product, sensor, since(now, label), now)
    st.subheader("Run-rule violations")
    st.caption(
        "Every rule the stream found violated; those with a severity paged (the ``[spc] page`` "
        "setting), the others are recorded only."
    )
    violations = (
        chart.filter(pl.col("rules") != "")
        .select("window_end", "work_order", "value", "center", "ucl", "lcl", "rules", "severity")
        .sort("window_end", descending=True)
        if chart.height
        else chart
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
