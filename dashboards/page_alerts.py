"""Alerts inbox: open alerts by severity, their reason, evidence and context; act on them.

Links can open it on one machine or one alert (``/alerts?machine=M01``,
``/alerts?alert=<alert id>``), e.g. from an alert notification.

Acknowledge, comment, resolve with a label (true problem / false alarm) or reopen: every action
goes through ``floorsight.alerts.lifecycle`` (one audit row and the alert's status in one short
transaction), the same path as any other client of the alert lifecycle.
"""

from __future__ import annotations

import json
import os

import polars as pl
import streamlit as st

from floorsight.alerts import lifecycle
from floorsight.alerts.cascade import Cascade, batch_cascade, lot_cascade, machine_cascade
from floorsight.dashboards import queries
from floorsight.dashboards.common import FILE_ACCESS, REFRESH, database, paged_table, snapshot
from floorsight.storage import Database

STATUSES = {
    "unresolved": "unresolved",
    "open": "open",
    "acknowledged": "acknowledged",
    "resolved": "resolved",
    "all": None,
}
SEVERITIES = ("critical", "warning", "info")
#: how many alerts the picker offers (the newest that match the filters)
PICKER_LIMIT = 500


def main() -> None:
    st.title("Alerts inbox")
    db = database()
    # drawn top to bottom, but filled after an action has been written, so the counts, the
    # list and the alert's history already show what the click changed
    counts, filters, listing = st.container(), st.container(), st.container()
    with snapshot(db) as con:
        machine_ids = queries.machines(con)["machine_id"].to_list()
    # a link may pick the machine or the alert: /alerts?machine=M01 or /alerts?alert=<id>
    linked_machine, linked_alert = st.query_params.get("machine"), st.query_params.get("alert")
    c1, c2, c3 = filters.columns(3)
    statuses = list(STATUSES)
    status = STATUSES[
        c1.selectbox(
            "Status",
            statuses,
            index=statuses.index("all" if linked_alert else "unresolved"),
            key="alert_status",
        )
    ]
    severity = c2.selectbox("Severity", ["all", *SEVERITIES], key="alert_severity")
    severity = None if severity == "all" else severity
    machines = ["all", *machine_ids]
    machine = c3.selectbox(
        "Machine",
        machines,
        index=machines.index(linked_machine) if linked_machine in machines else 0,
        key="alert_machine",
    )
    machine = None if machine == "all" else machine
    with snapshot(db) as con:
        picks = queries.alerts(con, PICKER_LIMIT, 0, status, severity, machine)
    if picks.height:
        st.divider()
        labels = {
            r["alert_id"]: f"{r['machine_id']} · {r['cause']} · raised {r['raised_at']:%H:%M:%S}"
            f" · {r['alert_id']}"
            for r in picks.iter_rows(named=True)
        }
        ids = list(labels)
        alert_id = st.selectbox(
            "Alert",
            ids,
            format_func=labels.get,
            key="alert_id",
            index=ids.index(linked_alert) if linked_alert in ids else 0,
        )
        details = st.container()
        actions(db, alert_id)
        with details:
            show_alert(db, alert_id)
    with counts:
        severity_metrics(db)
    with listing:
        alert_list(db, status, severity, machine)


@st.fragment(run_every=REFRESH)
def severity_metrics(db: Database) -> None:
    with snapshot(db) as con:
        counts = {s: queries.count_alerts(con, "unresolved", s) for s in SEVERITIES}
        acknowledged = queries.count_alerts(con, "acknowledged")
    cols = st.columns(4)
    for col, s in zip(cols, SEVERITIES, strict=False):
        col.metric(f"Open {s}", counts[s], help="not resolved yet (open or acknowledged)")
    cols[3].metric("Acknowledged", acknowledged)


@st.fragment(run_every=REFRESH)
def alert_list(db: Database, status: str | None, severity: str | None, machine: str | None):
    paged_table(
        db,
        lambda con: queries.count_alerts(con, status, severity, machine),
        lambda con, limit, offset: queries.alerts(con, limit, offset, status, severity, machine),
        key="alerts_page",
        empty="No alerts match these filters.",
    )


def actions(db: Database, alert_id: str) -> None:
    """The action form; a click writes through the lifecycle, then the page shows the result."""
    st.subheader("Act on this alert")
    left, right = st.columns([1, 2])
    actor = left.text_input("Your name", value=os.environ.get("USER", ""), key="actor")
    label = left.radio(
        "Label (to resolve)",
        ["true_problem", "false_alarm"],
        index=None,
        format_func=lambda v: v.replace("_", " "),
        key="label",
        horizontal=True,
    )
    note = right.text_area("Comment", key="comment", height=100)
    b = st.columns(4)
    clicked = {
        "acknowledge": b[0].button("Acknowledge", key="acknowledge"),
        "resolve": b[1].button("Resolve", key="resolve", type="primary"),
        "comment": b[2].button("Add comment", key="add_comment"),
        "reopen": b[3].button("Reopen", key="reopen"),
    }
    if not any(clicked.values()):
        return
    try:
        with FILE_ACCESS.write():
            act(db, alert_id, clicked, actor, note, label)
    except ValueError as exc:
        st.error(str(exc))
        return
    done = next(k for k, v in clicked.items() if v)
    st.success(f"{alert_id}: {done} recorded by {actor.strip()}")


def act(db: Database, alert_id: str, clicked: dict, actor: str, note: str, label) -> None:
    """The lifecycle call behind the button that was clicked."""
    if clicked["acknowledge"]:
        lifecycle.acknowledge(db.path, alert_id, actor, note)
    elif clicked["resolve"]:
        lifecycle.resolve(db.path, alert_id, actor, note, label)
    elif clicked["comment"]:
        lifecycle.comment(db.path, alert_id, actor, note)
    elif clicked["reopen"]:
        lifecycle.reopen(db.path, alert_id, actor, note)


@st.fragment(run_every=REFRESH)
def show_alert(db: Database, alert_id: str) -> None:
    """The alert as the pipeline keeps updating it, its context, who is affected, its history."""
    with snapshot(db) as con:
        a = queries.alert(con, alert_id)
        if a is None:
            st.warning(f"Alert {alert_id} is gone.")
            return
        batch = queries.batch_of(con, a["work_order"])
        tables = queries.genealogy_tables(con)
        events = lifecycle.read_events(con, alert_id)
    st.subheader(f"{a['severity'].capitalize()} · {a['machine_id']} · {a['cause']}")
    st.caption(f"alert {alert_id}")
    st.markdown(f"**Reason:** {a['reason']}")
    st.markdown(f"**Status:** {a['status']}")
    context = {
        "alert": alert_id,
        "status": a["status"],
        "raised at": f"{a['raised_at']:%Y-%m-%d %H:%M:%S} UTC",
        "last seen": f"{a['last_seen']:%Y-%m-%d %H:%M:%S} UTC",
        "condition cleared": (
            f"{a['cleared_at']:%Y-%m-%d %H:%M:%S} UTC" if a["cleared_at"] else "no, still active"
        ),
        "windows": str(a["windows"]),
        "score": f"{a['score']:.6f}",
        "work order": a["work_order"] or "—",
        "product": a["product"] or "—",
        "batch": batch or "—",
        "material lot": a["material_lot"] or "—",
    }
    left, right = st.columns(2)
    left.markdown("**Context**")
    left.table(
        pl.DataFrame({"field": list(context), "value": list(context.values())}),
        hide_index=True,
        hide_header=True,
    )
    right.markdown("**Evidence**")
    evidence(right, a["evidence"])
    cascade = affected(a, batch, tables)
    st.markdown("**Affected customer orders**")
    if cascade is None:
        st.write("No genealogy in the ERP context: customer orders unknown.")
    elif cascade.customer_orders.height:
        st.caption(f"through batches {listed(cascade.batches)} (lots {listed(cascade.lots)})")
        st.dataframe(cascade.customer_orders, hide_index=True, width="stretch")
    else:
        st.write("None found.")
    st.markdown("**History**")
    if events.height:
        st.dataframe(
            events.select("at", "actor", "action", "comment", "label"),
            hide_index=True,
            width="stretch",
        )
    else:
        st.write("No actions yet.")


def listed(names: list[str], most: int = 8) -> str:
    """A readable list of ids: the first few and how many more."""
    if not names:
        return "—"
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def evidence(container, text: str) -> None:
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        container.json(parsed)
    elif text:
        container.markdown("\n".join(f"- {part.strip()}" for part in text.split(";")))
    else:
        container.write("—")


def affected(a: dict, batch: str | None, tables: dict | None) -> Cascade | None:
    """Who must know: a failure risk reaches the machine's open orders, a quality alert the
    batches made from the same lots (alerts.cascade)."""
    if tables is None:
        return None
    if a["cause"] == "failure_risk":
        return machine_cascade(a["machine_id"], a["raised_at"], tables)
    if batch:
        return batch_cascade(batch, tables)
    if a["material_lot"]:
        return lot_cascade(a["material_lot"], tables)
    return None


main()
