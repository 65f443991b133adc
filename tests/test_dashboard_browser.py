"""The live demo in a real browser: Chromium shows the alerts while the pipeline writes.

Runs ``floorsight demo`` (plant, Bytewax pipeline and Streamlit dashboard in their own
processes) and drives Debian's Chromium with Playwright. It checks what a user would see: the
overview's counts grow while the pipeline runs, the alerts inbox shows the alert for the
simulator's injected fault (on the fault's machine, with its reason), acknowledging it there
changes the alert in the database, the SPC chart shows its limits, no page ever shows an error
(a DuckDB lock error would surface as one), and Ctrl-C (SIGINT) stops everything cleanly.
Screenshots of the inbox and the SPC page are kept as test artifacts (``FLOORSIGHT_ARTIFACTS``,
default ``var/test-artifacts/``).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from floorsight.storage import Database

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
ARTIFACTS = Path(
    os.environ.get(
        "FLOORSIGHT_ARTIFACTS", Path(__file__).resolve().parents[1] / "var" / "test-artifacts"
    )
)
ERROR_TEXT = re.compile(r"Could not set lock|IOException|Traceback", re.IGNORECASE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric(page, label: str) -> int:
    """The value of a Streamlit metric, found by its label."""
    block = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True))
    value = block.locator('[data-testid="stMetricValue"]').inner_text(timeout=10_000)
    return int(value.replace(",", ""))


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    """Poll ``predicate``; one that cannot read the page yet (a refresh is redrawing it on a
    busy machine) counts as not yet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except playwright.Error:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    body = page.inner_text("body")
    assert not ERROR_TEXT.search(body), body


def _first_fault(home: Path) -> dict:
    with (home / "erp" / "faults.csv").open() as f:
        return min(csv.DictReader(f), key=lambda r: r["start"])


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make setup installs it)")
def test_live_dashboard_shows_the_faults_alert_in_the_inbox(tmp_path: Path) -> None:
    port = _free_port()
    home = tmp_path / "demo"
    demo = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "demo", "--speed", "20", "--seed", "4"),
            *("--port", str(port), "--home", str(home)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            try:
                _drive(page, port, home)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
                raise
            browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, out[-3000:]
    assert "stopping" in out
    log = (home / "dashboard.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert not _reachable(port), "the dashboard still listens after Ctrl-C"
    assert (ARTIFACTS / "alerts_inbox.png").stat().st_size > 10_000


def _drive(page, port: int, home: Path) -> None:
    """What the user does and sees, from the overview to the inbox and the SPC chart."""
    _wait_for(lambda: _reachable(port), 60, "the dashboard to listen")
    page.goto(f"http://127.0.0.1:{port}")
    page.get_by_text("Feature rows").wait_for(timeout=60_000)

    first = _metric(page, "Feature rows")
    _wait_for(lambda: _metric(page, "Feature rows") > first, 60, "feature rows to grow")
    # seed 4: the bearing fault starts 5.5 simulated minutes in, ~17 s wall at x20
    _wait_for(lambda: _metric(page, "Alerts") >= 1, 120, "the fault's alert")
    _wait_for(lambda: _metric(page, "Active alerts") >= 1, 60, "an active alert")
    page.get_by_text("Machines", exact=True).wait_for(timeout=30_000)
    _no_errors(page)

    # the inbox lists the alert on the faulty machine, with its reason
    fault = _first_fault(home)
    machine = fault["machine_id"]
    page.goto(f"http://127.0.0.1:{port}/alerts?machine={machine}")
    page.get_by_text("Alerts inbox").first.wait_for(timeout=30_000)
    # the first alert of the list is picked: the anomaly or, for a bearing, the failure risk
    heading = page.get_by_role("heading", name=re.compile(rf"· {machine} · (anomaly|failure_risk)"))
    heading.first.wait_for(timeout=60_000)
    reason = page.get_by_text(re.compile(rf"Reason:\s*{machine}: "))
    reason.first.wait_for(timeout=30_000)
    _wait_for(
        lambda: sum(_metric(page, f"Open {s}") for s in ("critical", "warning", "info")) >= 1,
        60,
        "the inbox to count the open alert",
    )
    _no_errors(page)
    page.screenshot(path=str(ARTIFACTS / "alerts_inbox.png"), full_page=True)

    # acknowledge it in the browser: the alert's status changes in the database
    shown = re.search(rf"alert ({machine}:\S+)", page.inner_text("body"))
    assert shown, page.inner_text("body")
    alert_id = shown.group(1)
    page.get_by_label("Your name").fill("e2e tester")
    page.get_by_label("Your name").press("Enter")
    page.get_by_role("button", name="Acknowledge").click()
    page.get_by_text(f"{alert_id}: acknowledge recorded by e2e tester").wait_for(timeout=30_000)
    status = Database(home / "floorsight.duckdb").query(
        "SELECT status FROM alerts WHERE alert_id = ?", [alert_id]
    )
    assert status.item() == "acknowledged"

    # the SPC chart's legend names its control and spec limits
    page.goto(f"http://127.0.0.1:{port}/spc")
    for name in ("UCL", "LCL", "LSL", "USL"):
        page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
    _no_errors(page)
    page.screenshot(path=str(ARTIFACTS / "spc.png"), full_page=True)


def _reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
