"""Data quality: the Great Expectations results the pipeline's validation writes
(``validation_results``), latest per suite and table, and their history."""

from __future__ import annotations

import streamlit as st

from floorsight.dashboards import queries
from floorsight.dashboards.common import REFRESH, database, paged_table, snapshot
from floorsight.storage import Database


def main() -> None:
    st.title("Data quality")
    live(database())


@st.fragment(run_every=REFRESH)
def live(db: Database) -> None:
    with snapshot(db) as con:
        latest = queries.latest_validations(con)
        dead_letters = queries.count_rows(con, "dead_letters")
    if latest is None or latest.height == 0:
        st.info("No validation results yet.")
        st.metric("Dead letters", dead_letters, help="records the pipeline rejected, with reason")
        return
    cols = st.columns(4)
    cols[0].metric("Suites × tables", latest.height)
    cols[1].metric("Failing now", int((~latest["success"]).sum()))
    cols[2].metric("Failed expectations now", int(latest["failed"].sum()))
    cols[3].metric("Dead letters", dead_letters)
    st.subheader("Latest result per suite and table")
    st.dataframe(latest, hide_index=True, width="stretch")
    st.subheader("History")
    paged_table(
        db,
        lambda con: queries.count_rows(con, "validation_results"),
        queries.validation_results,
        key="validation_page",
        empty="No validation results yet.",
    )


main()
