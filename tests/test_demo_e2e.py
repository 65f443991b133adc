"""End to end: the headless demo runs plant, pipeline and models and detects the injected fault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from floorsight.storage import Database

pytestmark = pytest.mark.e2e


def test_headless_demo_detects_the_injected_fault(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    # 0.5 wall minutes at x20: 10 simulated minutes, the fault starts at 5.5 minutes
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "floorsight.cli",
            "demo",
            "--headless",
            "--minutes",
            "0.5",
            "--speed",
            "20",
            "--json",
            "--home",
            str(home),
            "--seed",
            "4",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "events",
        "feature_rows",
        "alerts",
        "faults_total",
        "faults_detected",
        "detection_delay_s",
    ):
        assert key in summary
    assert summary["faults_total"] == 1
    assert summary["faults_detected"] == 1
    assert summary["false_alerts"] == 0
    assert len(summary["detection_delay_s"]) == 1
    assert 0 <= summary["detection_delay_s"][0] <= 180

    db = Database(home / "floorsight.duckdb")
    # 3 machines x 4 sensors, 10 s windows over 10 simulated minutes
    per_machine = db.query(
        "SELECT machine_id, count(DISTINCT window_start) AS windows, sum(n) AS readings "
        "FROM features WHERE sensor = 'vibration_mm_s' GROUP BY 1 ORDER BY 1"
    )
    assert per_machine.height == 3
    assert per_machine["windows"].min() >= 55
    assert summary["events"] == db.query("SELECT sum(n) AS n FROM features")["n"][0]
    fault = summary["faults"][0]
    alert = db.query("SELECT * FROM alerts WHERE alert_id = ?", [fault["alert_id"]]).row(
        0, named=True
    )
    assert alert["machine_id"] == fault["machine_id"]
    assert alert["work_order"].startswith("WO-")
    assert alert["reason"] and alert["evidence"]
    # the summary counts alerts by type and notifications by destination, and they add up
    assert sum(summary["alerts_by_type"].values()) == summary["alerts"]
    assert summary["alerts_by_type"][alert["cause"]] >= 1
    drop = summary["notifications"]["erp_drop"]
    paging = db.query("SELECT count(*) AS n FROM alerts WHERE severity <> 'info'")["n"][0]
    assert drop["pending"] == 0 and drop["delivered"] >= paging
    files = [json.loads(p.read_text()) for p in (home / "quality_notifications").glob("*.json")]
    assert len(files) == drop["delivered"]
    # every alert that pages (an info alert, muted or of a cause that starts at info, is shown)
    assert {f["alert_id"] for f in files} == set(
        db.query("SELECT alert_id FROM alerts WHERE severity <> 'info'")["alert_id"]
    )
