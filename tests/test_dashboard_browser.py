"""The live demo in a real browser: Chromium shows the alerts while the pipeline writes.

Runs ``floorsight demo`` (plant, Bytewax pipeline and Streamlit dashboard in their own
processes) and drives Debian's Chromium with Playwright. It checks what a user would see: the
page renders the metrics and the chart with its spec limits, the feature-row count grows while
the pipeline runs, the injected fault's alert appears, the dashboard never shows an error
(a DuckDB lock error would surface as one), and Ctrl-C (SIGINT) stops everything cleanly.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")


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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make setup installs it)")
def test_live_dashboard_shows_alerts_while_the_pipeline_runs(tmp_path: Path) -> None:
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
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            _wait_for(lambda: _reachable(port), 60, "the dashboard to listen")
            page.goto(f"http://127.0.0.1:{port}")
            page.get_by_text("Feature rows").wait_for(timeout=60_000)

            first = _metric(page, "Feature rows")
            _wait_for(lambda: _metric(page, "Feature rows") > first, 60, "feature rows to grow")
            # seed 4: the bearing fault starts 5.5 simulated minutes in, ~17 s wall at x20
            _wait_for(lambda: _metric(page, "Alerts") >= 1, 120, "the fault's alert")
            assert _metric(page, "Active alerts") >= 1

            # the chart's legend names the spec limits (the page re-renders every 2 s: wait)
            for limit in ("LSL", "TARGET", "USL"):
                page.get_by_text(limit, exact=True).first.wait_for(timeout=30_000)
            body = page.inner_text("body")
            assert page.locator('[data-testid="stException"]').count() == 0
            assert not re.search(r"lock|IOException|Traceback", body, re.IGNORECASE), body
            browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, out[-3000:]
    assert "stopping" in out
    log = (home / "dashboard.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert not _reachable(port), "the dashboard still listens after Ctrl-C"


def _reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
