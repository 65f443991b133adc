"""Plant overview: every machine's state, work order and product, OEE of the shift, open alerts.

OEE and machine states are defined in ``dashboards/oee.py`` (and docs/dashboard.md): from the
machines' own states and part counters when the floor reports them, else estimated from the
feature windows; the ``basis`` column says which, per machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl
import streamlit as st

from floorsight.dashboards import charts, oee, queries
from floorsight.dashboards.common import REFRESH, database, shift_plan, snapshot
from floorsight.storage import Database

SEVERITIES = ("critical", "warning", "info")
PERCENT = ("availability", "performance", "quality", "OEE")


@dataclass
class Readout:
    """What the overview reads in one snapshot."""

    now: datetime
    end: datetime  # end of the shift, or now while it runs
    window_s: float
    machines: pl.DataFrame
    planned: pl.DataFrame
    current: pl.DataFrame
    setups: set[str]
    maintenance: dict[str, str]
    last: dict[str, datetime]
    run: pl.DataFrame
    cycles: pl.DataFrame
    quality: pl.DataFrame
    open_alerts: pl.DataFrame
    #: from the floor: states in force in the shift, the newest state now, counted parts
    spans: pl.DataFrame
    states_now: pl.DataFrame
    counts: pl.DataFrame
    counted: set[str]
    ideal: pl.DataFrame


def main() -> None:
    st.title("Plant overview")
    db = database()
    with snapshot(db) as con:
        first, now = queries.first_window(con), queries.latest_window_end(con)
    if now is None:
        st.info("No feature windows yet: the pipeline has not closed a window.")
        waiting(db)
        return
    plan = shift_plan()
    offered = oee.shifts(first, now, plan)
    labels = [s.label for s in offered]
    label = st.selectbox("Shift", labels, help=plan.description)
    live(db, offered[labels.index(label)])


@st.fragment(run_every=REFRESH)
def waiting(db: Database) -> None:
    """The counts while no window has closed yet; the whole page once one has (a page opened
    at the pipeline's start would otherwise wait for a click)."""
    with snapshot(db) as con:
        closed = queries.latest_window_end(con) is not None
    if closed:
        st.rerun(scope="app")
    counts_row(db)


def counts_row(db: Database) -> None:
    with snapshot(db) as con:
        counts = queries.table_counts(con)
    cols = st.columns(4)
    cols[0].metric("Feature rows", counts["feature_rows"])
    cols[1].metric("Active alerts", counts["active_alerts"], help="condition not yet cleared")
    cols[2].metric("Alerts", counts["alerts"])
    cols[3].metric("Dead letters", counts["dead_letters"])


def read(db: Database, shift: oee.Shift) -> Readout:
    with snapshot(db) as con:
        now = queries.latest_window_end(con)
        end = min(shift.end, now)
        return Readout(
            now=now,
            end=end,
            window_s=queries.window_seconds(con),
            machines=queries.machines(con),
            planned=queries.work_orders_between(con, shift.start, end),
            current=queries.work_orders_at(con, now),
            setups=set(queries.setups_at(con, now)),
            maintenance=queries.maintenance_at(con, now),
            last=queries.last_windows(con),
            run=queries.run_windows(con, shift.start, end),
            cycles=queries.cycle_windows(con, shift.start, end),
            quality=queries.quality_windows(con, shift.start, end),
            open_alerts=queries.open_alerts_by_severity(con),
            spans=queries.state_spans(con, shift.start, end),
            states_now=queries.states_at(con, now),
            counts=queries.part_counts_between(con, shift.start, end),
            counted=queries.counted_machines(con, end),
            ideal=queries.ideal_cycle_times(con),
        )


@st.fragment(run_every=REFRESH)
def live(db: Database, shift: oee.Shift) -> None:
    counts_row(db)
    r = read(db, shift)
    running = " (running)" if r.end < shift.end else ""
    st.caption(
        f"Plant time (newest window): {r.now:%Y-%m-%d %H:%M:%S} UTC · shift {shift.label}{running}"
    )
    table = machine_table(r, shift)
    st.subheader("Machines")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={c: st.column_config.NumberColumn(c, format="percent") for c in PERCENT}
        | {
            "basis": st.column_config.TextColumn(
                "basis",
                help="OEE from the machine's own states and part counters (states + counts), "
                "or estimated from the feature windows (windows)",
            )
        },
    )
    left, right = st.columns(2)
    left.plotly_chart(
        charts.oee_bars(table.rename({"machine": "machine_id", "OEE": "oee"})), width="stretch"
    )
    if r.open_alerts.height:
        right.plotly_chart(charts.alert_severity_bars(r.open_alerts), width="stretch")
    else:
        right.write("No open alerts.")


def machine_table(r: Readout, shift: oee.Shift) -> pl.DataFrame:
    """One row per machine: line, state, work order, product, OEE factors and their basis, open
    alerts."""
    windows = oee.oee(r.planned, r.run, r.cycles, r.quality, shift.start, r.end)
    signals = oee.oee_from_signals(
        r.planned, r.spans, r.counts, r.counted, r.ideal, shift.start, r.end
    )
    factors = oee.shift_oee(windows, signals)
    now_orders = {row["machine_id"]: row for row in r.current.iter_rows(named=True)}
    floor = {
        m: oee.floor_state(state, category, m in r.setups, r.maintenance.get(m))
        for m, state, category in r.states_now.select("machine_id", "state", "category").iter_rows()
    }
    states = pl.DataFrame(
        [
            {
                "machine_id": m,
                # the machine's own state when the floor reports it, else guessed from its data
                "state": floor.get(m)
                or oee.machine_state(
                    r.now,
                    r.last.get(m),
                    r.window_s,
                    m in r.setups,
                    r.maintenance.get(m),
                    m in now_orders,
                ),
                "work_order": now_orders.get(m, {}).get("work_order", ""),
                "product": now_orders.get(m, {}).get("product", ""),
            }
            for m in r.machines["machine_id"].to_list()
        ],
        schema={
            "machine_id": pl.String,
            "state": pl.String,
            "work_order": pl.String,
            "product": pl.String,
        },
    )
    severity = (
        r.open_alerts.pivot(on="severity", index="machine_id", values="alerts")
        if r.open_alerts.height
        else pl.DataFrame(schema={"machine_id": pl.String})
    )
    severity = severity.with_columns(
        pl.lit(0).alias(s) for s in SEVERITIES if s not in severity.columns
    )
    return (
        r.machines.join(states, on="machine_id", how="left")
        .join(factors, on="machine_id", how="left")
        .join(severity.select("machine_id", *SEVERITIES), on="machine_id", how="left")
        .select(
            "line",
            pl.col("machine_id").alias("machine"),
            "state",
            "work_order",
            "product",
            "availability",
            "performance",
            "quality",
            pl.col("oee").alias("OEE"),
            pl.col("basis").fill_null("windows"),
            *(pl.col(s).fill_null(0).cast(pl.Int64).alias(f"open {s}") for s in SEVERITIES),
        )
    )


main()
