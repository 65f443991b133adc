"""The floorsight Streamlit app: open alerts and a feature against its ERP spec limits.

Run with ``floorsight dashboard --db PATH`` (or ``streamlit run dashboards/app.py -- --db PATH``).
Every refresh opens the database read-only for its queries and closes it again, so the pipeline
can keep writing; a refresh that meets the writer's lock waits and retries.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from floorsight.dashboards import queries
from floorsight.storage import Database

REFRESH = "2s"


def _db_path() -> Path:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default=os.environ.get("FLOORSIGHT_DB", "var/floorsight.duckdb"))
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.db)


def feature_chart(frame, machine_id: str, sensor: str) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=frame["window_end"], y=frame["mean"], mode="lines", name=f"{sensor} mean")
    for col, dash in (("lsl", "dash"), ("target", "dot"), ("usl", "dash")):
        if frame[col].null_count() < frame.height:
            fig.add_scatter(
                x=frame["window_end"],
                y=frame[col],
                mode="lines",
                name=col.upper(),
                line={"dash": dash, "shape": "hv"},
            )
    fig.update_layout(
        title=f"{machine_id} · {sensor} (window mean) with spec limits from ERP",
        height=380,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def main() -> None:
    st.set_page_config(page_title="floorsight", layout="wide")
    db = Database(_db_path())
    st.title("floorsight")
    if not db.exists():
        st.info(f"Waiting for the pipeline to create {db.path} ...")
        return
    machine_list = queries.machines(db)
    sensor_list = queries.sensors(db)
    left, right = st.columns(2)
    machine_id = left.selectbox("Machine", machine_list) if machine_list else None
    default = sensor_list.index("bore_diameter_mm") if "bore_diameter_mm" in sensor_list else 0
    sensor = right.selectbox("Feature", sensor_list, index=default) if sensor_list else None
    live(db, machine_id, sensor)


@st.fragment(run_every=REFRESH)
def live(db: Database, machine_id: str | None, sensor: str | None) -> None:
    counts = queries.table_counts(db)
    cols = st.columns(4)
    cols[0].metric("Feature rows", counts["feature_rows"])
    cols[1].metric("Active alerts", counts["active_alerts"], help="condition not yet cleared")
    cols[2].metric("Alerts", counts["alerts"])
    cols[3].metric("Dead letters", counts["dead_letters"])
    st.subheader("Alerts")
    alerts = queries.alerts(db)
    if alerts.height:
        st.dataframe(alerts, hide_index=True, width="stretch")
    else:
        st.write("No alerts yet.")
    if machine_id and sensor:
        frame = queries.feature_with_specs(db, machine_id, sensor)
        st.plotly_chart(feature_chart(frame, machine_id, sensor), width="stretch")


main()
