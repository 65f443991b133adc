"""Who may use the dashboard and what they may do: the users file, sign-in, roles, escaping.

The users file and the cookie key are real files on disk; sign-in runs the real app
(``dashboards/app.py``) in Streamlit's AppTest with streamlit-authenticator and bcrypt; alert
actions write to a real DuckDB file. The browser side (Chromium) is in
``tests/test_dashboard_browser.py``.
"""

from __future__ import annotations

import html
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from floorsight.alerts import ALERT_SCHEMA, ALERTS, lifecycle
from floorsight.cli import app as cli
from floorsight.config import SecretError
from floorsight.dashboards import charts, streamlit_command
from floorsight.dashboards.common import literal
from floorsight.dashboards.users import (
    COOKIE_KEY_ENV,
    COOKIE_KEY_FILE,
    USERS_ENV,
    UsersFileError,
    add_user,
    cookie_key,
    credentials,
    demo_users,
    read_users,
)
from floorsight.pipelines.flow import TABLES
from floorsight.storage import Database
from tests.dashboard_users import COOKIE_KEY, USERS, sign_in, write_users

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
runner = CliRunner()


def _alert(alert_id: str, machine: str, status: str = "open") -> dict:
    return {
        "alert_id": alert_id,
        "machine_id": machine,
        "cause": "anomaly",
        "severity": "critical",
        "status": status,
        "first_seen": T0,
        "raised_at": T0 + timedelta(minutes=1),
        "last_seen": T0 + timedelta(minutes=2),
        "cleared_at": None,
        "score": 0.99,
        "windows": 2,
        "reason": f"{machine}: anomaly",
        "evidence": "vibration_mm_s.mean z=9.1",
        "work_order": "",
        "product": "",
        "material_lot": "",
    }


@pytest.fixture
def plant(tmp_path: Path, monkeypatch) -> Path:
    """A database with one open alert A1, the users file, and the app pointed at both."""
    path = tmp_path / "floorsight.duckdb"
    db = Database(path, TABLES)
    db.create()
    db.upsert({ALERTS.name: [pl.DataFrame([_alert("A1", "M1")], schema=ALERT_SCHEMA)]})
    monkeypatch.setenv("FLOORSIGHT_DB", str(path))
    monkeypatch.setenv(USERS_ENV, str(write_users(tmp_path / "users.yaml")))
    monkeypatch.setenv(COOKIE_KEY_ENV, COOKIE_KEY)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return path


def _status(path: Path, alert_id: str = "A1") -> str:
    return Database(path).query("SELECT status FROM alerts WHERE alert_id = ?", [alert_id]).item()


def _app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ----------------------------------------------------------------------------------------------
# the users file


def test_a_plaintext_password_in_the_users_file_is_refused_naming_the_user(tmp_path):
    path = write_users(tmp_path / "users.yaml")
    raw = yaml.safe_load(path.read_text())
    raw["credentials"]["usernames"]["vera"]["password"] = "vera-password"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UsersFileError, match="password of vera is not a bcrypt hash"):
        read_users(path)
    assert path.read_text().count("vera-password") == 1  # refused, not rewritten


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_users_file_others_can_read_is_refused(tmp_path, mode):
    path = write_users(tmp_path / "users.yaml")
    path.chmod(mode)
    with pytest.raises(UsersFileError, match=r"readable by others.*chmod 600"):
        read_users(path)


def test_an_unknown_role_is_refused(tmp_path):
    path = write_users(tmp_path / "users.yaml", {"bob": ("bob-password", "superuser")})
    with pytest.raises(UsersFileError, match="bob needs roles"):
        read_users(path)


def test_users_file_gives_each_user_their_role_and_the_library_its_credentials(tmp_path):
    path = write_users(tmp_path / "users.yaml")
    users = read_users(path)
    assert {u.username: u.role for u in users.values()} == {
        name: role for name, (_, role) in USERS.items()
    }
    assert not users["vera"].may("acknowledge")
    assert users["maria"].may("resolve") and not users["maria"].may("resend")
    assert users["ada"].may("resend")
    hashed = credentials(path)["usernames"]["maria"]["password"]
    assert bcrypt.checkpw(b"maria-password", hashed.encode())


def test_users_add_reads_the_password_from_stdin_and_stores_only_a_private_hash(tmp_path):
    path = tmp_path / "home" / "dashboard_users.yaml"
    args = ["dashboard", "users", "add", "Maria", "--role", "engineer", "--users", str(path)]
    result = runner.invoke(cli, args, input="a long password\n")
    assert result.exit_code == 0, result.output
    assert "added maria (engineer)" in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "a long password" not in path.read_text()
    entry = yaml.safe_load(path.read_text())["credentials"]["usernames"]["maria"]
    assert entry["roles"] == ["engineer"]
    assert bcrypt.checkpw(b"a long password", entry["password"].encode())
    # the same name again needs --replace; then the new password and role count
    assert runner.invoke(cli, args, input="another password\n").exit_code != 0
    again = [*args[:5], "admin", *args[6:], "--replace"]
    assert runner.invoke(cli, again, input="another password\n").exit_code == 0
    assert read_users(path)["maria"].role == "admin"
    listed = runner.invoke(cli, ["dashboard", "users", "list", "--users", str(path)])
    assert listed.output.split() == ["maria", "admin"]


@pytest.mark.parametrize("password", ["short", " padded password ", "x" * 73])
def test_users_add_refuses_a_password_the_sign_in_could_not_take(tmp_path, password):
    with pytest.raises(UsersFileError):
        add_user(tmp_path / "users.yaml", "maria", password, "engineer")
    assert not (tmp_path / "users.yaml").exists()


def test_dashboard_does_not_start_without_a_users_file(tmp_path):
    missing = tmp_path / "none.yaml"
    result = runner.invoke(
        cli, ["dashboard", "--db", str(tmp_path / "f.duckdb"), "--users", str(missing)]
    )
    assert result.exit_code != 0
    assert "no users file" in result.output and "users add" in result.output


def test_streamlit_listens_where_it_is_told_and_gets_no_secret_on_its_command_line(tmp_path):
    users = tmp_path / "users.yaml"
    default = streamlit_command(tmp_path / "f.duckdb", 8501)
    assert default[default.index("--server.address") + 1] == "127.0.0.1"
    command = streamlit_command(tmp_path / "f.duckdb", 8600, "0.0.0.0", users)
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    assert command[command.index("--users") + 1] == str(users)
    assert not any("key" in part.lower() or "password" in part.lower() for part in command)


def test_cookie_key_is_generated_once_private_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv(COOKIE_KEY_ENV, raising=False)
    users = tmp_path / "users.yaml"
    first = cookie_key(users)
    key_file = tmp_path / COOKIE_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 32 and cookie_key(users) == first
    key_file.chmod(0o644)
    with pytest.raises(SecretError, match="readable by others"):
        cookie_key(users)
    monkeypatch.setenv(COOKIE_KEY_ENV, "e" * 40)
    assert cookie_key(users) == "e" * 40
    monkeypatch.setenv(COOKIE_KEY_ENV, "too short")
    with pytest.raises(SecretError, match="at least 32"):
        cookie_key(users)


def test_the_demo_makes_an_admin_with_a_generated_password(tmp_path, monkeypatch):
    monkeypatch.delenv(USERS_ENV, raising=False)
    path, password = demo_users(tmp_path)
    assert password and len(password) >= 12
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_users(path)["admin"].role == "admin"
    hashed = credentials(path)["usernames"]["admin"]["password"]
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    # a users file the environment names is used as it is, and no password is made
    mine = write_users(tmp_path / "mine.yaml")
    monkeypatch.setenv(USERS_ENV, str(mine))
    assert demo_users(tmp_path / "other") == (mine, None)


# ----------------------------------------------------------------------------------------------
# signing in (the real app in AppTest)


@pytest.mark.parametrize(("username", "password"), [("maria", "wrong"), ("nobody", "x" * 12)])
def test_a_wrong_password_or_unknown_user_gets_no_page(plant, username, password):
    at = _app()
    assert not at.title  # only the sign-in form
    sign_in(at, username, password)
    assert [e.value for e in at.error] == ["Wrong user name or password."]
    assert not at.title and not at.metric
    sign_in(at, "maria")
    assert not at.error
    assert at.title[0].value == "Plant overview"


def test_a_viewer_sees_no_action_buttons_and_an_engineer_does(plant):
    viewer = sign_in(_app(), "vera")
    viewer.switch_page("page_alerts.py").run()
    assert viewer.title[0].value == "Alerts inbox"
    assert viewer.selectbox(key="alert_id").value == "A1"
    assert not [b for b in viewer.button if b.key in {"acknowledge", "resolve", "reopen"}]
    assert not viewer.text_area and not viewer.radio
    assert any("Read only" in c.value for c in viewer.caption)
    engineer = sign_in(_app(), "maria")
    engineer.switch_page("page_alerts.py").run()
    keys = {b.key for b in engineer.button}
    assert {"acknowledge", "resolve", "add_comment", "reopen"} <= keys


def _forge() -> None:
    """An app whose page calls the action function whatever the role: what a forged request
    from a viewer's browser would reach if the page's hiding were the only check."""
    import streamlit as st

    from floorsight.dashboards.actions import act
    from floorsight.dashboards.auth import sign_in
    from floorsight.dashboards.common import database

    if st.session_state.get("forge_unsigned") or sign_in() is not None:
        try:
            user = act(database(), "A1", "acknowledge")
            st.success(f"done by {user.username}")
        except PermissionError as exc:
            st.error(str(exc))


def test_the_action_function_refuses_a_viewer_and_takes_the_engineers_name(plant):
    at = AppTest.from_function(_forge, default_timeout=60)
    at.run()
    sign_in(at, "vera")
    assert [e.value for e in at.error] == ["vera (viewer) may not acknowledge alerts"]
    assert _status(plant) == "open"
    assert lifecycle.history(plant, "A1").height == 0

    at = AppTest.from_function(_forge, default_timeout=60)
    at.session_state["forge_unsigned"] = True  # nobody signed in at all
    at.run()
    assert [e.value for e in at.error] == ["sign in to acknowledge alerts"]
    assert _status(plant) == "open"

    at = AppTest.from_function(_forge, default_timeout=60)
    at.run()
    sign_in(at, "maria")
    assert [s.value for s in at.success] == ["done by maria"]
    assert _status(plant) == "acknowledged"
    assert lifecycle.history(plant, "A1")["actor"].to_list() == ["maria"]


def test_a_user_removed_from_the_file_is_signed_out_at_the_next_click(plant):
    at = sign_in(_app(), "maria")
    assert at.title[0].value == "Plant overview"
    path = Path(os.environ[USERS_ENV])
    write_users(path, {"ada": USERS["ada"]})
    at.run()
    assert not at.title
    assert [t.label for t in at.text_input] == ["User name", "Password"]


def test_the_engineer_acknowledges_under_their_signed_in_name(plant):
    at = sign_in(_app(), "maria")
    at.switch_page("page_alerts.py").run()
    at.text_area(key="comment").input("on it")
    at.button(key="acknowledge").click().run()
    assert not at.exception
    assert at.success[0].value == "A1: acknowledge recorded by maria"
    assert lifecycle.history(plant, "A1").select("actor", "action", "comment").rows() == [
        ("maria", "acknowledged", "on it")
    ]


# ----------------------------------------------------------------------------------------------
# machine and ERP text is shown as text


HOSTILE = ["<img src=x onerror=alert(1)>", "**bold** [link](http://x)", "![t](http://x/t.png)"]


def _as_text(value: str) -> str:
    """What CommonMark shows for a string that is only text."""
    escaped = html.escape(value, quote=False).replace('"', "&quot;")
    return f"<p>{escaped}</p>\n"


@pytest.mark.parametrize("value", HOSTILE)
def test_literal_markdown_renders_hostile_ids_as_their_characters(value):
    md = MarkdownIt("commonmark")
    assert md.render(value) != _as_text(value)  # as Markdown, each of them is markup
    assert md.render(literal(value)) == _as_text(value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1))
def test_literal_markdown_is_always_the_text_itself(value):
    value = value.strip()
    if not value:
        return
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    assert md.render(literal(value)) == _as_text(value)


def test_hostile_machine_ids_are_shown_literally_in_the_inbox(tmp_path, monkeypatch):
    path = tmp_path / "floorsight.duckdb"
    db = Database(path, TABLES)
    db.create()
    rows = [_alert(f"{m}:1", m) for m in HOSTILE]
    db.upsert({ALERTS.name: [pl.DataFrame(rows, schema=ALERT_SCHEMA)]})
    monkeypatch.setenv("FLOORSIGHT_DB", str(path))
    monkeypatch.setenv(USERS_ENV, str(write_users(tmp_path / "users.yaml")))
    monkeypatch.setenv(COOKIE_KEY_ENV, COOKIE_KEY)
    at = sign_in(_app(), "maria")
    at.switch_page("page_alerts.py").run()
    shown = at.selectbox(key="alert_id").value
    machine = shown.removesuffix(":1")
    markdown = [
        *(m.value for m in at.markdown),
        *(h.value for h in at.subheader),
        *(c.value for c in at.caption),
    ]
    assert f"**Reason:** {literal(machine + ': anomaly')}" in markdown
    assert any(literal(machine) in h.value for h in at.subheader)
    assert not any(machine in text for text in markdown)  # never unescaped


def test_plotly_gets_machine_text_escaped_in_titles_legends_and_ticks():
    # plotly reads these strings as a small HTML dialect and makes <a href> a link
    machine = '<a href="http://x">M1</a>'
    ends = [T0, T0 + timedelta(minutes=1)]
    series = pl.DataFrame({"machine_id": [machine] * 2, "window_end": ends, "value": [1.0, 2.0]})
    lines = charts.score_lines(series, f"risk of {machine}", "risk")
    assert lines.layout.title.text == 'risk of &lt;a href="http://x"&gt;M1&lt;/a&gt;'
    assert [t.name for t in lines.data] == ['&lt;a href="http://x"&gt;M1&lt;/a&gt;']
    factors = {"availability": [0.5], "performance": [0.5], "quality": [1.0], "oee": [0.25]}
    table = pl.DataFrame({"machine_id": [machine], **factors})
    bars = charts.oee_bars(table)
    assert {x for t in bars.data for x in t.x} == {'&lt;a href="http://x"&gt;M1&lt;/a&gt;'}
