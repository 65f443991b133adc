"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

The live demo: ``floorsight demo`` (plant, Bytewax pipeline and Streamlit dashboard in their
own processes). The user signs in as ``admin`` with the password the demo prints once, and sees:
the overview's counts grow while the pipeline runs, the alerts inbox shows the alert for the
simulator's injected fault (on the fault's machine, with its reason), acknowledging it there
changes the alert in the database under ``admin``, the SPC chart shows its limits, no page ever
shows an error (a DuckDB lock error would surface as one), and Ctrl-C (SIGINT) stops everything
cleanly. Screenshots of the inbox and the SPC page are kept as test artifacts
(``FLOORSIGHT_ARTIFACTS``, default ``var/test-artifacts/``).

Sign-in and escaping: ``floorsight dashboard`` on a database of known alerts, some on machines
whose ids are HTML and Markdown: a wrong password gets no page, a viewer has no action buttons,
an engineer's acknowledgement is recorded under their user name, and the hostile ids show as
their characters (no image, no link in the page).
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
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest

from floorsight.alerts import ALERT_SCHEMA, ALERTS, lifecycle
from floorsight.dashboards.users import COOKIE_KEY_ENV, COOKIE_KEY_FILE, USERS_ENV
from floorsight.pipelines.flow import TABLES
from floorsight.storage import Database
from tests.dashboard_users import USERS, write_users

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
    # .first: a redraw can show the old and the new overview together for a moment
    value = block.locator('[data-testid="stMetricValue"]').first.inner_text(timeout=10_000)
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


def _alerts_of(home: Path, machine: str) -> int:
    """The faulty machine's anomaly or failure-risk alerts in the demo's database so far."""
    sql = (
        "SELECT count(*) AS n FROM alerts WHERE machine_id = ? "
        "AND cause IN ('anomaly', 'failure_risk')"
    )
    try:
        return Database(home / "floorsight.duckdb", lock_timeout_s=5).query(sql, [machine])["n"][0]
    except Exception:  # not created yet, or held by the pipeline's write for longer
        return 0


def _first_fault(home: Path) -> dict:
    with (home / "erp" / "faults.csv").open() as f:
        return min(csv.DictReader(f), key=lambda r: r["start"])


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make setup installs it)")
def test_live_dashboard_shows_the_faults_alert_in_the_inbox(tmp_path: Path) -> None:
    port = _free_port()
    home = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in (USERS_ENV, COOKIE_KEY_ENV)}
    demo = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "demo", "--speed", "20", "--seed", "4"),
            *("--port", str(port), "--home", str(home)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        # the demo prints the admin's generated password once
        _wait_for(lambda: _printed_password(lines), 120, "the demo to print the admin password")
        password = _printed_password(lines)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            try:
                _drive(page, port, home, password)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
                raise
            browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
        reader.join(timeout=10)
    out = "".join(lines)
    assert demo.returncode == 0, out[-3000:]
    assert "stopping" in out
    log = (home / "dashboard.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert not _reachable(port), "the dashboard still listens after Ctrl-C"
    assert (ARTIFACTS / "alerts_inbox.png").stat().st_size > 10_000


def _printed_password(lines: list[str]) -> str | None:
    found = re.search(r"sign in as admin, password (\S+)", "".join(lines))
    return found.group(1) if found else None


def _sign_in(page, username: str, password: str) -> None:
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _has_sign_in_cookie(page) -> bool:
    return any(c["name"] == "floorsight_dashboard" for c in page.context.cookies())


def _drive(page, port: int, home: Path, password: str) -> None:
    """What the user does and sees, from the overview to the inbox and the SPC chart."""
    _wait_for(lambda: _reachable(port), 60, "the dashboard to listen")
    page.goto(f"http://127.0.0.1:{port}")
    _sign_in(page, "admin", password)
    # a refresh may show the old and the new overview for a moment: wait for either
    page.get_by_text("Feature rows").first.wait_for(timeout=60_000)
    # the browser keeps the sign-in as a cookie: the page loads below need no new sign-in
    _wait_for(lambda: _has_sign_in_cookie(page), 30, "the sign-in cookie")

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
    # the first alert may be another machine's: wait for the faulty machine's own (a loaded
    # machine runs the demo's x20 plant slower than the wall clock)
    _wait_for(lambda: _alerts_of(home, machine) >= 1, 240, f"an alert on {machine}")
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
    page.get_by_role("button", name="Acknowledge").click()
    page.get_by_text(f"{alert_id}: acknowledge recorded by admin").wait_for(timeout=30_000)
    status = Database(home / "floorsight.duckdb").query(
        "SELECT status FROM alerts WHERE alert_id = ?", [alert_id]
    )
    assert status.item() == "acknowledged"
    events = lifecycle.history(home / "floorsight.duckdb", alert_id)
    assert events.select("actor", "action").rows() == [("admin", "acknowledged")]

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


# ----------------------------------------------------------------------------------------------
# sign-in, roles and escaping: `floorsight dashboard` on known alerts

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
#: machine ids that are HTML and Markdown, as a machine or a broken gateway may send them
HOSTILE = ("<img src=x onerror=alert(1)>", "**bold** [link](http://x)")


def _alert(alert_id: str, machine: str, severity: str, minute: int) -> dict:
    raised = T0 + timedelta(minutes=minute)
    return {
        "alert_id": alert_id,
        "machine_id": machine,
        "cause": "anomaly",
        "severity": severity,
        "status": "open",
        "first_seen": raised - timedelta(minutes=1),
        "raised_at": raised,
        "last_seen": raised,
        "cleared_at": None,
        "score": 0.99,
        "windows": 2,
        "reason": f"{machine}: anomaly while running WO-1",
        "evidence": f"{machine}.mean z=9.1",
        "work_order": "WO-1",
        "product": "PA",
        "material_lot": "LOT-1",
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``floorsight dashboard`` on a database of three open alerts (two on hostile machine
    ids), with a users file of an engineer, a viewer and an admin; the cookie key is made by
    the dashboard on first use."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (make setup installs it)")
    folder = tmp_path_factory.mktemp("served")
    path = folder / "floorsight.duckdb"
    db = Database(path, TABLES)
    db.create()
    rows = [_alert("M1:1", "M1", "warning", 1)]
    rows += [_alert(f"{m}:1", m, "critical", 2 + i) for i, m in enumerate(HOSTILE)]
    db.upsert({ALERTS.name: [pl.DataFrame(rows, schema=ALERT_SCHEMA)]})
    users = write_users(folder / "dashboard_users.yaml")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in (USERS_ENV, COOKIE_KEY_ENV)}
    log = (folder / "dashboard.log").open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "dashboard", "--db", str(path)),
            *("--port", str(port), "--users", str(users)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        _wait_for(lambda: _reachable(port), 60, "the dashboard to listen")
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield browser, f"http://127.0.0.1:{port}", path, folder
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert "Traceback" not in (folder / "dashboard.log").read_text()
    # `floorsight dashboard` is the server: stopping it leaves nothing listening behind
    assert not _reachable(port), "a Streamlit server outlived `floorsight dashboard`"


def _signed_in(browser, url: str, username: str, path: str = ""):
    """A new browser context (no cookies), signed in as ``username`` on ``url/path``."""
    page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    page.goto(f"{url}/{path}")
    _sign_in(page, username, USERS[username][0])
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    _wait_for(lambda: _has_sign_in_cookie(page), 30, "the sign-in cookie")
    return page


def _inbox_at(page, url: str, alert_id: str) -> None:
    page.goto(f"{url}/alerts?alert={quote(alert_id, safe='')}")
    page.get_by_text(f"alert {alert_id}", exact=True).wait_for(timeout=60_000)


def test_a_wrong_password_gets_no_page(served) -> None:
    browser, url, _, _ = served
    page = browser.new_context().new_page()
    page.goto(url)
    _sign_in(page, "maria", "not-her-password")
    page.get_by_text("Wrong user name or password.").wait_for(timeout=60_000)
    assert page.get_by_text("Plant overview").count() == 0
    assert page.get_by_text("Feature rows").count() == 0
    # nor does a direct link to a page
    page.goto(f"{url}/alerts")
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
    assert page.get_by_text("Alerts inbox").count() == 0
    page.context.close()


def test_a_viewer_sees_the_inbox_but_no_action(served) -> None:
    browser, url, path, _ = served
    page = _signed_in(browser, url, "vera", "alerts")
    _inbox_at(page, url, "M1:1")
    page.get_by_text("Read only: vera (viewer) may not act on alerts.").wait_for(timeout=30_000)
    for name in ("Acknowledge", "Resolve", "Add comment", "Reopen"):
        assert page.get_by_role("button", name=name).count() == 0
    assert page.get_by_label("Comment").count() == 0
    assert Database(path).query("SELECT status FROM alerts WHERE alert_id = 'M1:1'").item() == (
        "open"
    )
    page.context.close()


def test_an_engineers_acknowledgement_is_recorded_under_their_user_name(served) -> None:
    browser, url, path, folder = served
    page = _signed_in(browser, url, "maria", "alerts")
    _inbox_at(page, url, "M1:1")  # a new page load: signed in by the cookie
    assert page.get_by_role("button", name="Sign in").count() == 0
    page.get_by_label("Comment").fill("checking the spindle")
    page.get_by_role("button", name="Acknowledge").click()
    page.get_by_text("M1:1: acknowledge recorded by maria").wait_for(timeout=30_000)
    rows = Database(path).query(
        "SELECT e.actor, e.action, e.comment, a.status FROM alert_events e "
        "JOIN alerts a USING (alert_id) WHERE alert_id = 'M1:1'"
    )
    assert rows.rows() == [("maria", "acknowledged", "checking the spindle", "acknowledged")]
    # the key that signs the cookie was made on first use, private to the user
    assert (folder / COOKIE_KEY_FILE).stat().st_mode & 0o077 == 0
    page.context.close()


@pytest.mark.parametrize("machine", HOSTILE)
def test_hostile_machine_ids_show_as_their_characters(served, machine) -> None:
    browser, url, _, _ = served
    page = _signed_in(browser, url, "maria", "alerts")
    _inbox_at(page, url, f"{machine}:1")
    main = page.locator('[data-testid="stMain"]')
    page.get_by_role("heading", name=f"Critical · {machine} · anomaly").wait_for(timeout=30_000)
    page.get_by_text(f"Reason: {machine}: anomaly while running WO-1").wait_for(timeout=30_000)
    page.get_by_text(f"{machine}.mean z=9.1", exact=True).wait_for(timeout=30_000)
    # the whole alert is drawn: its context table (st.table renders Markdown) to its history
    table = main.locator('[data-testid="stTable"]')
    table.get_by_text(f"{machine}:1", exact=True).wait_for(timeout=30_000)
    page.get_by_text("No actions yet.").wait_for(timeout=30_000)
    assert main.locator("img").count() == 0
    assert main.locator("strong", has_text="bold").count() == 0
    assert page.locator('a[href^="http://x"]').count() == 0
    assert page.dialogs == []  # no script ran
    page.context.close()
