"""Regenerate the dashboard screenshots in ``docs/img/`` from a real run of the plant.

Simulates 13 hours of a 3-machine plant (seed 3, three faults a machine-day), runs the pipeline
over it into a fresh DuckDB file, handles a few alerts through the alert lifecycle (so the
inbox has an audit trail and the models page has labels), serves the app with Streamlit with a
users file of one engineer (``maria``, a password made for the run), signs in and photographs
every page with Debian's Chromium (Playwright)::

    .venv/bin/python scripts/screenshots.py            # writes docs/img/dashboard-*.png
    .venv/bin/python scripts/screenshots.py --keep var/shots   # and keeps the database

Takes about a minute. Nothing is made up: every number on the pictures comes from that run.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from floorsight.alerts import lifecycle
from floorsight.dashboards import streamlit_command
from floorsight.dashboards.users import add_user
from floorsight.storage import Database

ROOT = Path(__file__).resolve().parents[1]
#: (URL path, file name, text that shows the page has drawn, charts on the page)
PAGES = (
    ("", "dashboard-overview.png", "Machines", 2),
    ("alerts", "dashboard-alerts.png", "Act on this alert", 0),
    ("spc", "dashboard-spc.png", "Run-rule violations", 1),
    ("drift", "dashboard-drift.png", "When drift was detected", 2),
    ("models", "dashboard-models.png", "Live model metrics", 3),
    ("traceability", "dashboard-traceability.png", "Alerts that touch it", 1),
    ("data-quality", "dashboard-data-quality.png", "Data quality", 0),
)


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "floorsight.cli", *args], check=True)


def build_database(work: Path) -> Path:
    history, db = work / "history", work / "floorsight.duckdb"
    cli(
        *("simulate", "--out", str(history), "--machines", "3", "--hours", "13"),
        *("--seed", "3", "--faults-per-day", "3"),
    )
    cli(
        "run",
        "--history",
        str(history / "readings"),
        "--context",
        str(history / "erp"),
        "--db",
        str(db),
    )
    handle_alerts(db)
    return db


def handle_alerts(db: Path) -> None:
    """What a shift does with the first alerts: one resolved as a true problem, one as a false
    alarm, one acknowledged with a note (the rest stay open)."""
    ids = Database(db).query("SELECT alert_id FROM alerts ORDER BY raised_at")["alert_id"]
    ids = ids.to_list()
    if len(ids) >= 3:
        lifecycle.acknowledge(db, ids[0], "maria", "checking the spindle")
        lifecycle.resolve(db, ids[0], "maria", "worn insert replaced", "true_problem")
        lifecycle.resolve(db, ids[1], "tom", "operator opened the guard", "false_alarm")
        lifecycle.acknowledge(db, ids[2], "tom", "watching it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"streamlit did not listen on {port}")


def wait_for_charts(page, expected: int, timeout_s: float = 90) -> None:
    """Until ``expected`` plotly charts have drawn (plotly.js loads slowly on a busy machine)."""
    drawn = page.locator('[data-testid="stPlotlyChart"]:has(.main-svg)')
    deadline = time.monotonic() + timeout_s
    while drawn.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{page.url}: {drawn.count()} of {expected} charts drawn")
        time.sleep(0.5)
    time.sleep(2)


def sign_in(page, url: str, username: str, password: str, timeout_s: float = 60) -> None:
    """Sign in with the form and wait for the cookie that keeps the browser signed in."""
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for(timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while not any(c["name"] == "floorsight_dashboard" for c in page.context.cookies()):
        if time.monotonic() > deadline:
            raise RuntimeError("the sign-in cookie was not set")
        time.sleep(0.5)


def photograph(db: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is not installed (make setup installs it)")
    port = free_port()
    users, password = db.with_name("dashboard_users.yaml"), secrets.token_urlsafe(12)
    add_user(users, "maria", password, "engineer", replace=True)
    server = subprocess.Popen(
        streamlit_command(db, port, users=users),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            sign_in(page, f"http://127.0.0.1:{port}", "maria", password)
            for path, name, ready, charts in PAGES:
                page.goto(f"http://127.0.0.1:{port}/{path}")
                page.get_by_text(ready, exact=True).first.wait_for(timeout=60_000)
                wait_for_charts(page, charts)
                # the app scrolls inside its main block: grow the window to the content
                height = page.evaluate(
                    "document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
                )
                page.set_viewport_size({"width": 1600, "height": min(int(height) + 120, 4000)})
                time.sleep(1)
                page.screenshot(path=str(out / name), full_page=True)
                page.set_viewport_size({"width": 1600, "height": 1000})
                print(f"wrote {out / name}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--keep", type=Path, help="keep the simulated history and database here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="floorsight-shots-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        photograph(build_database(work), args.out)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
