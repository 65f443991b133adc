"""Traceability: pick a batch, a material lot or a customer order; see its genealogy (lots →
batches → customer orders, through ``alerts.cascade``) and every alert that touches it.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from floorsight.alerts.cascade import Cascade, batch_cascade, lot_cascade
from floorsight.dashboards import charts, queries
from floorsight.dashboards.common import database, show_page_of, snapshot

KINDS = ("batch", "material lot", "customer order")


def main() -> None:
    st.title("Traceability")
    db = database()
    left, right = st.columns([1, 2])
    kind = left.radio("Trace a", KINDS, key="trace_kind", horizontal=True)
    with snapshot(db) as con:
        ids = queries.trace_ids(con, kind, queries.latest_window_end(con))
        tables = queries.genealogy_tables(con)
    if tables is None:
        st.info("The ERP context has no genealogy (batches, genealogy, customer orders) yet.")
        return
    picked = right.selectbox(
        kind.capitalize(), ids, key="trace_id", help="newest first; type to search"
    )
    if picked is None:
        st.write(f"No {kind} known yet.")
        return
    cascade = trace(kind, picked, tables)
    with snapshot(db) as con:
        now = queries.latest_window_end(con)
        batch_rows = queries.batches(con, cascade.batches)
        lot_rows = queries.lots(con, cascade.lots)
        alerts = queries.alerts_touching(con, cascade.work_orders, cascade.lots)
        lab = queries.lab_summary(con, cascade.work_orders, now) if now else pl.DataFrame()
    m = st.columns(5)
    m[0].metric("Material lots", len(cascade.lots))
    m[1].metric("Batches", len(cascade.batches))
    m[2].metric("Work orders", len(cascade.work_orders))
    m[3].metric("Customer orders", cascade.customer_orders.height)
    m[4].metric("Alerts", alerts.height)
    st.plotly_chart(
        charts.genealogy(cascade.lots, batch_rows, tables["genealogy"]), width="stretch"
    )
    st.subheader("Batches")
    if lab.height:
        batch_rows = batch_rows.join(lab, on="work_order", how="left")
    show_page_of(batch_rows, "trace_batches_page", "No batches.")
    left, right = st.columns(2)
    left.subheader("Material lots")
    left.dataframe(lot_rows, hide_index=True, width="stretch")
    right.subheader("Customer orders")
    right.dataframe(cascade.customer_orders, hide_index=True, width="stretch")
    st.subheader("Alerts that touch it")
    show_page_of(alerts, "trace_alerts_page", "No alerts on these work orders or lots.")


def trace(kind: str, picked: str, tables: dict[str, pl.DataFrame]) -> Cascade:
    """The genealogy of one batch, lot or customer order."""
    if kind == "batch":
        return batch_cascade(picked, tables)
    if kind == "material lot":
        return lot_cascade(picked, tables)
    # a customer order: the batches shipping to it, the lots they were made from
    shipped = tables["batches"].filter(pl.col("customer_order") == picked).sort("batch_id")
    lots = (
        tables["genealogy"]
        .filter(pl.col("batch_id").is_in(shipped["batch_id"].to_list()))["material_lot"]
        .unique()
        .sort()
        .to_list()
    )
    return Cascade(
        lots,
        shipped["batch_id"].to_list(),
        shipped["work_order"].to_list(),
        tables["customer_orders"].filter(pl.col("customer_order") == picked),
    )


main()
