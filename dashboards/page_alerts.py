"""Alerts inbox: open alerts by severity, their reason, evidence and context; act on them.

Links can open it on one machine or one alert (``/alerts?machine=M01``,
``/alerts?alert=<alert id>``), e.g. from an alert notification.

Acknowledge, comment, resolve with a label (true problem / false alarm) or reopen: only for a
signed-in engineer or admin (a viewer sees no buttons), always under the signed-in user's name,
through ``dashboards/actions.py`` (which checks the role again) and
``floorsight.alerts.lifecycle`` (one audit row and the alert's status in one short transaction).

Ids, reasons and evidence come from machines and the ERP: they are shown as text (escaped
Markdown, tables, JSON), never as Markdown of their own.
"""

from __future__ import annotations

import json

import polars as pl
import streamlit as st

from floorsight.alerts import lifecycle
from floorsight.alerts.cascade import Cascade, batch_cascade, lot_cascade, machine_cascade
from floorsight.dashboards import queries
from floorsight.dashboards.actions import ACTIONS, act
from floorsight.dashboards.auth import current_user
from floorsight.dashboards.common import REFRESH, database, literal, paged_table, snapshot
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


#: the buttons of the actions: label, widget key, button type
BUTTONS = {
    "acknowledge": ("Acknowledge", "acknowledge", "secondary"),
    "resolve": ("Resolve", "resolve", "primary"),
    "comment": ("Add comment", "add_comment", "secondary"),
    "reopen": ("Reopen", "reopen", "secondary"),
}


def actions(db: Database, alert_id: str) -> None:
    """The action form for the signed-in user's role; a click writes through
    ``actions.act`` (under the signed-in name), then the page shows the result."""
    user = current_user()
    allowed = [a for a in ACTIONS if user is not None and user.may(a)]
    if not allowed:
        who = f"{user.username} ({user.role})" if user else "nobody signed in"
        st.caption(f"Read only: {literal(who)} may not act on alerts.")
        return
    st.subheader("Act on this alert")
    st.caption(f"as {literal(user.username)}")
    left, right = st.columns([1, 2])
    label = None
    if "resolve" in allowed:
        label = left.radio(
            "Label (to resolve)",
            ["true_problem", "false_alarm"],
            index=None,
            format_func=lambda v: v.replace("_", " "),
            key="label",
            horizontal=True,
        )
    note = right.text_area("Comment", key="comment", height=100)
    b = st.columns(len(BUTTONS))
    clicked = [
        a
        for col, a in zip(b, allowed, strict=False)
        if col.button(BUTTONS[a][0], key=BUTTONS[a][1], type=BUTTONS[a][2])
    ]
    if not clicked:
        return
    try:
        done = act(db, alert_id, clicked[0], note, label)
    except (PermissionError, ValueError) as exc:
        st.error(literal(exc))
        return
    st.success(f"{literal(alert_id)}: {clicked[0]} recorded by {literal(done.username)}")


@st.fragment(run_every=REFRESH)
def show_alert(db: Database, alert_id: str) -> None:
    """The alert as the pipeline keeps updating it, its context, who is affected, its history."""
    with snapshot(db) as con:
        a = queries.alert(con, alert_id)
        if a is None:
            st.warning(f"Alert {literal(alert_id)} is gone.")
            return
        batch = queries.batch_of(con, a["work_order"])
        tables = queries.genealogy_tables(con)
        events = lifecycle.read_events(con, alert_id)
    heading = (a["severity"].capitalize(), a["machine_id"], a["cause"])
    st.subheader(" · ".join(literal(part) for part in heading))
    st.caption(f"alert {literal(alert_id)}")
    st.markdown(f"**Reason:** {literal(a['reason'])}")
    st.markdown(f"**Status:** {literal(a['status'])}")
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
    left.table(  # st.table renders each cell as Markdown
        pl.DataFrame({"field": list(context), "value": [literal(v) for v in context.values()]}),
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
        st.caption(
            f"through batches {literal(listed(cascade.batches))}"
            f" (lots {literal(listed(cascade.lots))})"
        )
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
        container.markdown("\n".join(f"- {literal(part.strip())}" for part in text.split(";")))
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
