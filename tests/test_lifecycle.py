"""The alert lifecycle on a real DuckDB file: status and audit rows change together, or not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from floorsight.alerts import ALERT_SCHEMA, ALERTS, lifecycle
from floorsight.alerts.lifecycle import ALERT_EVENTS, AlertLabel
from floorsight.storage import Database

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def alert_row(alert_id: str, status: str = "open", windows: int = 2) -> dict:
    return {
        "alert_id": alert_id,
        "machine_id": "M01",
        "cause": "anomaly",
        "severity": "warning",
        "status": status,
        "first_seen": T0,
        "raised_at": T0 + timedelta(seconds=20),
        "last_seen": T0 + timedelta(seconds=10 * windows),
        "cleared_at": None,
        "score": 0.99995,
        "windows": windows,
        "reason": "M01: process anomaly",
        "evidence": "vibration_mm_s.mean z=9.1",
        "work_order": "WO-1",
        "product": "P-100",
        "material_lot": "LOT-1",
    }


def write_alerts(path: Path, *rows: dict) -> None:
    db = Database(path, [ALERTS])
    db.create()
    db.upsert({ALERTS.name: [pl.DataFrame(list(rows), schema=ALERT_SCHEMA)]})


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "floorsight.duckdb"
    write_alerts(path, alert_row("A-1"), alert_row("A-2"))
    return path


def status(path: Path, alert_id: str) -> str:
    return Database(path).query("SELECT status FROM alerts WHERE alert_id = ?", [alert_id]).item()


def test_acknowledge_sets_the_status_and_writes_one_audit_row(db_path):
    event_id = lifecycle.acknowledge(db_path, "A-1", "maria", "checking the spindle")
    assert status(db_path, "A-1") == "acknowledged"
    assert status(db_path, "A-2") == "open"
    events = lifecycle.history(db_path, "A-1")
    assert events.select("event_id", "alert_id", "actor", "action", "comment", "label").rows() == [
        (event_id, "A-1", "maria", "acknowledged", "checking the spindle", None)
    ]
    assert events["at"].dtype == pl.Datetime("us", "UTC")
    assert lifecycle.history(db_path, "A-2").is_empty()


def test_resolve_needs_a_known_label_and_records_it(db_path):
    for label in (None, "", "maybe"):
        with pytest.raises(ValueError, match="label"):
            lifecycle.resolve(db_path, "A-1", "maria", "replaced bearing", label)
    assert status(db_path, "A-1") == "open"
    assert lifecycle.history(db_path).is_empty()

    lifecycle.acknowledge(db_path, "A-1", "maria")
    lifecycle.resolve(db_path, "A-1", "tom", "replaced bearing", AlertLabel.TRUE_PROBLEM)
    lifecycle.resolve(db_path, "A-2", "tom", "sensor was being cleaned", "false_alarm")
    assert status(db_path, "A-1") == status(db_path, "A-2") == "resolved"
    trail = lifecycle.history(db_path)
    assert trail.select("alert_id", "actor", "action", "label").rows() == [
        ("A-1", "maria", "acknowledged", None),
        ("A-1", "tom", "resolved", "true_problem"),
        ("A-2", "tom", "resolved", "false_alarm"),
    ]


def test_invalid_transitions_raise_and_change_nothing(db_path):
    lifecycle.resolve(db_path, "A-1", "tom", "fixed", "true_problem")
    with pytest.raises(ValueError, match="it is resolved"):
        lifecycle.acknowledge(db_path, "A-1", "maria")
    with pytest.raises(ValueError, match="it is resolved"):
        lifecycle.resolve(db_path, "A-1", "maria", "again", "false_alarm")
    lifecycle.acknowledge(db_path, "A-2", "maria")
    with pytest.raises(ValueError, match="it is acknowledged"):
        lifecycle.acknowledge(db_path, "A-2", "tom")
    with pytest.raises(ValueError, match="unknown alert 'A-404'"):
        lifecycle.acknowledge(db_path, "A-404", "maria")
    with pytest.raises(ValueError, match="actor is empty"):
        lifecycle.acknowledge(db_path, "A-2", "  ")
    with pytest.raises(ValueError, match="needs some text"):
        lifecycle.comment(db_path, "A-2", "maria", " ")
    with pytest.raises(ValueError, match="no database"):
        lifecycle.acknowledge(db_path.with_name("missing.duckdb"), "A-1", "maria")
    assert (status(db_path, "A-1"), status(db_path, "A-2")) == ("resolved", "acknowledged")
    assert lifecycle.history(db_path)["action"].to_list() == ["resolved", "acknowledged"]


def test_comment_keeps_the_status_and_reopen_goes_back_to_open(db_path):
    lifecycle.resolve(db_path, "A-1", "tom", "looked fine", "false_alarm")
    lifecycle.comment(db_path, "A-1", "maria", "it came back on the night shift")
    assert status(db_path, "A-1") == "resolved"
    lifecycle.reopen(db_path, "A-1", "maria", "vibration rising again")
    assert status(db_path, "A-1") == "open"
    with pytest.raises(ValueError, match="it is open"):
        lifecycle.reopen(db_path, "A-1", "maria")
    assert lifecycle.history(db_path, "A-1")["action"].to_list() == [
        "resolved",
        "commented",
        "reopened",
    ]


def test_the_pipeline_updating_an_alert_does_not_undo_an_acknowledgement(db_path):
    lifecycle.acknowledge(db_path, "A-1", "maria")
    # the pipeline rewrites the alert while the anomaly lasts; its rows always say "open"
    write_alerts(db_path, alert_row("A-1", status="open", windows=7))
    row = Database(db_path).query("SELECT status, windows FROM alerts WHERE alert_id = 'A-1'")
    assert row.row(0) == ("acknowledged", 7)


def test_history_without_events_table_or_database_is_empty(db_path, tmp_path):
    assert lifecycle.history(db_path).schema == lifecycle.EVENT_SCHEMA
    assert lifecycle.history(tmp_path / "none.duckdb").is_empty()
    lifecycle.comment(db_path, "A-1", "maria", "first note")
    columns = Database(db_path).query(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'alert_events'"
    )
    assert columns["column_name"].to_list() == ALERT_EVENTS.columns


def test_an_action_waits_for_the_writer_instead_of_failing(db_path):
    """Another process (the pipeline's sink) holds the file: the action retries, then lands."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys, time
                con = duckdb.connect({str(db_path)!r})
                print("locked", flush=True)
                time.sleep(1.5)
                con.close()
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        lifecycle.acknowledge(db_path, "A-1", "maria")
    finally:
        holder.wait(timeout=30)
    assert status(db_path, "A-1") == "acknowledged"
