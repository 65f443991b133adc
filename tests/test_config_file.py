"""The configuration file (``floorsight run|demo|dashboard --config FILE``, ``floorsight config
check FILE``): a real file of every section, a run from a file that writes what the same
command line writes, the order of command line, environment and file, secrets by reference,
and messages that name the key; a fuzzer that nothing but the configuration error escapes."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

import polars as pl
import pytest
import tomli_w
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from floorsight.cli import SECRET_KEYS, app
from floorsight.pipelines.flow import TABLES
from floorsight.settings_file import COMMANDS, SettingsFileError, command_keys, load
from floorsight.storage import Database

runner = CliRunner()
ROOT = typer.main.get_command(app)
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "floorsight.example.toml"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _squeezed(text: str) -> str:
    """``text`` without the box rich draws around a usage error, and without any space (its
    wrapping may break a line anywhere)."""
    return "".join(text.replace("│", "").split())


def _check(path: Path):
    return runner.invoke(app, ["config", "check", str(path)])


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch) -> None:
    """The machine's own FLOORSIGHT_<COMMAND>__ variables and passwords stay out of these
    tests."""
    for name in list(os.environ):
        if name.startswith(tuple(f"FLOORSIGHT_{c.upper()}__" for c in COMMANDS)):
            monkeypatch.delenv(name)
    for name in ("FLOORSIGHT_OPCUA_PASSWORD", "FLOORSIGHT_MQTT_PASSWORD"):
        # recorded as unset, so that one a test's file hands over is removed after it
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


# ---- a file of every section ----


def test_a_file_of_every_section_is_checked_and_summarised(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PLANT_OPCUA_PASSWORD", "s3cret-from-env")
    mqtt_pass = _write(tmp_path / "mqtt.pass", "s3cret-from-file\n")
    mqtt_pass.chmod(0o600)
    path = _write(
        tmp_path / "plant.toml",
        f"""
[run]
opcua = "opc.tcp://plc.local:4840/"
user = "floorsight"
password = {{env = "PLANT_OPCUA_PASSWORD"}}
context = "/srv/erp"
db = "/var/lib/floorsight/floorsight.duckdb"
window_s = 5
workers = 2
topic = ["factory/{{line}}/{{machine_id}}/{{sensor}}"]
mqtt_password = {{file = "{mqtt_pass}"}}

[demo]
machines = 5
json = true

[dashboard]
address = "0.0.0.0"
port = 8600

[models.spc]
rules = "western_electric"
page = {{ 1 = "critical" }}

[alerts]
hold_s = 300
incident_gap_s = 1200

[routing.destinations.erp_drop]
kind = "erp_file"
path = "/srv/erp/quality_notifications"

[routing.roles]
quality = ["erp_drop"]

[retention]
days = {{features = 30, dead_letters = 7}}

[pipeline]
lateness_s = 5
context_hold_s = 60
sensor_ranges = {{spindle_temp_c = [0, 120]}}
""",
    )
    result = _check(path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"OK: {path}")
    for line in (
        "[run] opcua, user, context, db, window_s, workers, topic, "
        "password (secret from $PLANT_OPCUA_PASSWORD), "
        f"mqtt_password (secret from {mqtt_pass})",
        "[demo] machines, json",
        "[dashboard] address, port",
        "[models] spc",
        "[alerts] hold_s, incident_gap_s",
        "[routing] 1 destinations",
        "[retention] features 30 d, dead_letters 7 d",
        "[pipeline] lateness_s, context_hold_s, sensor_ranges",
    ):
        assert line in result.output
    assert "s3cret" not in result.output  # a secret's reference is shown, never its value
    loaded = load(path, ROOT, SECRET_KEYS)
    assert loaded.options["run"]["window_s"] == 5.0
    assert loaded.options["run"]["topic"] == ["factory/{line}/{machine_id}/{sensor}"]
    assert loaded.options["demo"] == {"machines": 5, "as_json": True}  # --json's parameter
    assert loaded.pipeline.sensor_ranges == {"spindle_temp_c": (0.0, 120.0)}


def test_the_example_file_in_the_docs_is_accepted(monkeypatch) -> None:
    monkeypatch.setenv("PLANT_OPCUA_PASSWORD", "only-for-the-check")
    result = _check(EXAMPLE)
    assert result.exit_code == 0, result.output
    document = tomllib.loads(EXAMPLE.read_text())
    # the example shows every section
    assert set(document) == {*COMMANDS, "models", "alerts", "routing", "retention", "pipeline"}


def test_every_option_of_the_commands_is_a_key_and_new_options_are_keys_too(tmp_path) -> None:
    # the keys come from the commands: options another change adds need nothing here
    keys = command_keys(ROOT.commands["run"])
    assert {"window_s", "history", "topic", "workers", "db", "opcua", "mqtt"} <= set(keys)
    assert "config" not in keys and "config_file" not in keys
    plant = typer.Typer()

    @plant.command()
    def run(
        metrics_port: Annotated[int | None, typer.Option()] = None,
        retain_days: Annotated[list[str] | None, typer.Option()] = None,
        level: Annotated[int, typer.Option(min=1, max=3)] = 1,
    ) -> None: ...

    @plant.command()
    def demo() -> None: ...

    @plant.command()
    def dashboard() -> None: ...

    root = typer.main.get_command(plant)
    good = _write(
        tmp_path / "good.toml", "[run]\nmetrics_port = 9100\n[retention.days]\nscores = 90"
    )
    loaded = load(good, root, {})
    assert loaded.options["run"] == {"metrics_port": 9100}
    params = {p.name: p for p in root.commands["run"].params}
    # [retention] becomes --retain-days TABLE=DAYS where the command has that option
    assert loaded.defaults("run", params, {})["retain_days"] == ["scores=90"]
    bad = _write(tmp_path / "bad.toml", "[run]\nmetrics_port = 0\nlevel = 4\n")
    with pytest.raises(SettingsFileError) as e:
        load(bad, root, {})
    assert e.value.problems == ["run.metrics_port: must be >= 1", "run.level: must be <= 3"]


# ---- a run from the file writes what the command line writes ----


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("history")
    result = runner.invoke(
        app,
        [
            *("simulate", "--out", str(out), "--hours", "0.1", "--seed", "5", "--hz", "2"),
            *("--faults-per-day", "0"),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


#: columns that say when a row was written (wall clock), not what it holds
WALL_CLOCK = {"received_at", "validated_at"}


def _tables(db: Path) -> dict[str, pl.DataFrame]:
    """Every table of the database, sorted, without the wall-clock columns."""
    database = Database(db, TABLES)
    out = {}
    for name in database.query("SHOW TABLES")["name"]:
        frame = database.query(f'SELECT * FROM "{name}"')
        frame = frame.drop([c for c in frame.columns if c in WALL_CLOCK])
        out[name] = frame.sort(frame.columns, nulls_last=True)
    return out


MODELS = {"spc": {"rules": "western_electric"}, "alerts": {"severity": {"spc": "critical"}}}


def _config(history: Path, db: Path, extra: str = "") -> str:
    return f"""
[run]
history = "{history / "readings"}"
context = "{history / "erp"}"
db = "{db}"
window_s = 5
batch_rows = 2000

[models.spc]
rules = "western_electric"

[alerts]
severity = {{spc = "critical"}}
{extra}"""


def test_run_from_a_file_writes_the_tables_of_the_same_command_line(history, tmp_path) -> None:
    models = _write(tmp_path / "models.toml", tomli_w.dumps(MODELS))
    by_options = tmp_path / "options.duckdb"
    result = runner.invoke(
        app,
        [
            *("run", "--history", str(history / "readings"), "--context", str(history / "erp")),
            *("--db", str(by_options), "--window-s", "5", "--batch-rows", "2000"),
            *("--models", str(models)),
        ],
    )
    assert result.exit_code == 0, result.output
    by_file = tmp_path / "file.duckdb"
    path = _write(tmp_path / "floorsight.toml", _config(history, by_file))
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 0, result.output
    expected, got = _tables(by_options), _tables(by_file)
    assert got.keys() == expected.keys()
    assert expected["features"].height > 100 and expected["scores"].height > 0
    for name in expected:
        assert_frame_equal(got[name], expected[name]), name


def test_the_command_line_wins_over_the_environment_which_wins_over_the_file(
    history, tmp_path, monkeypatch
) -> None:
    in_file, in_env, on_line = (tmp_path / f"{n}.duckdb" for n in ("file", "env", "line"))
    path = _write(tmp_path / "floorsight.toml", _config(history, in_file))
    monkeypatch.setenv("FLOORSIGHT_RUN__DB", str(in_env))
    result = runner.invoke(app, ["run", "--config", str(path), "--db", str(on_line)])
    assert result.exit_code == 0, result.output
    assert on_line.exists() and not in_env.exists() and not in_file.exists()
    # the [pipeline] section reaches the pipeline: readings beyond a sensor's range are dead
    ranged = _write(
        tmp_path / "ranged.toml",
        _config(history, in_file, "[pipeline]\nsensor_ranges = {spindle_temp_c = [0, 1]}\n"),
    )
    result = runner.invoke(app, ["run", "--config", str(ranged)])
    assert result.exit_code == 0, result.output
    assert in_env.exists() and not in_file.exists()
    dead = Database(in_env).query("SELECT sensor, reason FROM dead_letters")
    assert dead.height > 0 and set(dead["sensor"]) == {"spindle_temp_c"}
    assert dead["reason"].str.contains(r"outside \[0.0, 1.0\]").all()
    features = Database(on_line).query("SELECT DISTINCT sensor FROM features")["sensor"]
    assert "spindle_temp_c" in set(features)  # the run without the range kept them


def test_run_refuses_a_bad_file_before_it_starts(tmp_path) -> None:
    db = tmp_path / "never.duckdb"
    path = _write(
        tmp_path / "bad.toml", f'[run]\ncontext = "x"\nhistory = "y"\ndb = "{db}"\nwndow_s = 5\n'
    )
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    expected = _squeezed("run.wndow_s: unknown key (did you mean window_s?)")
    assert expected in _squeezed(result.output)
    assert not db.exists()
    result = runner.invoke(app, ["dashboard", "--config", str(path)])
    assert result.exit_code == 2 and expected in _squeezed(result.output)


# ---- secrets by reference ----


def test_a_secret_by_env_is_handed_to_the_commands_own_variable(tmp_path, monkeypatch) -> None:
    path = _write(tmp_path / "f.toml", '[run]\npassword = {env = "PLANT_OPCUA_PASSWORD"}\n')
    result = _check(path)
    assert result.exit_code == 2
    assert "run.password: the environment variable PLANT_OPCUA_PASSWORD is not set" in (
        result.output
    )
    monkeypatch.setenv("PLANT_OPCUA_PASSWORD", "from-env")
    loaded = load(path, ROOT, SECRET_KEYS)
    params = {p.name: p for p in ROOT.commands["run"].params}
    loaded.defaults("run", params, SECRET_KEYS)
    # the command (and a cluster's processes) read the password from their own variable
    assert os.environ["FLOORSIGHT_OPCUA_PASSWORD"] == "from-env"
    # one already set wins, as an option given on the command line would
    monkeypatch.setenv("FLOORSIGHT_OPCUA_PASSWORD", "set-by-the-unit")
    loaded.defaults("run", params, SECRET_KEYS)
    assert os.environ["FLOORSIGHT_OPCUA_PASSWORD"] == "set-by-the-unit"


def test_a_secret_by_file_must_be_private(tmp_path) -> None:
    secret = _write(tmp_path / "mqtt.pass", "from-file\n")
    secret.chmod(0o644)
    path = _write(tmp_path / "f.toml", f'[run]\nmqtt_password = {{file = "{secret}"}}\n')
    result = _check(path)
    assert result.exit_code == 2
    assert f"run.mqtt_password: {secret} is readable by others" in result.output
    assert f"chmod 600 {secret}" in result.output
    secret.chmod(0o600)
    loaded = load(path, ROOT, SECRET_KEYS)
    params = {p.name: p for p in ROOT.commands["run"].params}
    # the file becomes the option that names it: the command reads it itself
    assert loaded.defaults("run", params, SECRET_KEYS)["mqtt_password_file"] == str(secret)
    missing = _write(tmp_path / "g.toml", '[run]\npassword = {file = "/nonexistent/p"}\n')
    assert "run.password: cannot read /nonexistent/p" in _check(missing).output


def test_a_secret_written_in_the_file_is_refused_without_repeating_it(tmp_path) -> None:
    path = _write(
        tmp_path / "f.toml",
        '[run]\npassword = "hunter2"\ncontext = "postgresql://erp:hunter3@db.local/erp"\n'
        '[routing.destinations.hook]\nkind = "webhook"\nurl = "https://x.local/"\n'
        'secret = "hunter4"\n',
    )
    result = _check(path)
    assert result.exit_code == 2
    assert "run.password: a secret is never written in the file" in result.output
    assert "run.context: the URL holds a password" in result.output
    assert "routing.destinations.hook" in result.output
    assert "hunter" not in result.output


# ---- messages that name the key ----


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run]\nwndow_s = 5", "run.wndow_s: unknown key (did you mean window_s?)"),
        ('[run]\nwindow_s = "ten"', "run.window_s: input should be a valid number"),
        ("[run]\nwindow_s = 0", "run.window_s: must be > 0"),
        ("[run]\nwindow_s = nan", "run.window_s: input should be a finite number"),
        ('[run]\nworkers = "2"', "run.workers: input should be a valid integer"),
        ('[run]\ntopic = "a/b"', "run.topic: input should be a valid list"),
        ("[demo]\nport = 70000", "demo.port: must be <= 65535"),
        (
            "[dashboard]\nadress = '0.0.0.0'",
            "dashboard.adress: unknown key (did you mean address?)",
        ),
        ("[rnu]\nx = 1", "rnu: unknown section (did you mean run?)"),
        ("run = 3", "run: must be a table ([run])"),
        ("[models.spc]\nrules = 3", "models.spc.rules: must be a string"),
        ("[models.spcc]\nrules = 'nelson'", "no model named 'spcc'"),
        ("[alerts]\nhold_s = -1", "alerts.hold_s: must be >= 0"),
        ("[routing]\nroles = 3", "routing.roles: input should be a valid dictionary"),
        ("[retention]\ndays = {featurs = 3}", "retention.days.featurs: not retainable"),
        ("[retention]\ndays = {features = 0}", "retention.days.features: must be >= 1"),
        ("[pipeline]\nlateness_s = -2", "pipeline.lateness_s: must be >= 0"),
        ("[pipeline]\nsensor_ranges = {t = [5, 1]}", "sensor_ranges.t: low must be below high"),
        ("[pipeline]\nlatenes_s = 2", "pipeline.latenes_s: unknown key (did you mean lateness_s?)"),
        ("[run\n", "not TOML"),
        (
            '[run]\nmodels = "m.toml"\n[alerts]\nhold_s = 60',
            "run.models: give [alerts] or run.models, not both",
        ),
    ],
)
def test_each_bad_entry_is_named(tmp_path, text: str, message: str) -> None:
    result = _check(_write(tmp_path / "f.toml", text))
    assert result.exit_code == 2
    assert message in result.output, result.output


def test_bad_environment_overrides_are_named_by_their_variable(tmp_path, monkeypatch) -> None:
    path = _write(tmp_path / "f.toml", "[run]\nwindow_s = 5\n")
    monkeypatch.setenv("FLOORSIGHT_RUN__WORKRS", "2")
    monkeypatch.setenv("FLOORSIGHT_RUN__BATCH_ROWS", "many")
    output = _check(path).output
    assert "FLOORSIGHT_RUN__WORKRS: run.workrs: unknown key (did you mean workers?)" in output
    assert "FLOORSIGHT_RUN__BATCH_ROWS: run.batch_rows: input should be a valid integer" in output
    monkeypatch.delenv("FLOORSIGHT_RUN__WORKRS")
    monkeypatch.setenv("FLOORSIGHT_RUN__BATCH_ROWS", "500")
    monkeypatch.setenv("FLOORSIGHT_RUN__TOPIC", "a/{sensor}, b/{sensor}")
    loaded = load(path, ROOT, SECRET_KEYS)
    assert loaded.options["run"] == {
        "window_s": 5.0,
        "batch_rows": 500,
        "topic": ["a/{sensor}", "b/{sensor}"],
    }
    assert "batch_rows (FLOORSIGHT_RUN__BATCH_ROWS)" in _check(path).output


def test_a_missing_file_is_named(tmp_path) -> None:
    result = _check(tmp_path / "nowhere.toml")
    assert result.exit_code == 2 and f"{tmp_path / 'nowhere.toml'}: no such file" in result.output


# ---- fuzzing ----

KEYS = sorted(
    {k for c in COMMANDS for k in command_keys(ROOT.commands[c])}
    | {"password", "mqtt_password", "wndow_s", "days", "lateness_s", "sensor_ranges", "rules"}
)
LEAVES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=10),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.sampled_from(["env", "file", "x", "features", "t"]), st.text(max_size=6)),
    # secret references to files that cannot be: ~user of nobody, a NUL, a folder
    st.builds(lambda t: {"file": t}, st.sampled_from(["~nobody-here/p", "/tmp", "a\x00b", "/"])),
)
SECTIONS = st.sampled_from([*COMMANDS, "models", "alerts", "routing", "retention", "pipeline", "x"])
DOCUMENTS = st.dictionaries(
    SECTIONS,
    st.one_of(
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6)),
            st.one_of(LEAVES, st.dictionaries(st.sampled_from(KEYS), LEAVES, max_size=3)),
            max_size=5,
        ),
        LEAVES,
    ),
    max_size=5,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=DOCUMENTS, noise=st.binary(max_size=200))
def test_no_document_raises_anything_but_the_configuration_error(tmp_path, document, noise) -> None:
    for index, data in enumerate((tomli_w.dumps(document).encode(), noise)):
        path = tmp_path / f"fuzz{index}.toml"
        path.write_bytes(data)
        try:
            loaded = load(path, ROOT, SECRET_KEYS, environ={})
        except SettingsFileError as e:
            assert e.problems and all(isinstance(p, str) and p for p in e.problems)
            continue
        for command in COMMANDS:  # a file that is taken becomes each command's defaults
            params = {p.name: p for p in ROOT.commands[command].params}
            defaults = loaded.defaults(command, params, SECRET_KEYS)
            assert set(defaults) <= set(params)


# ---- demo and dashboard take their sections; the plant's own shifts ----


def test_demo_and_dashboard_take_their_sections(tmp_path) -> None:
    path = _write(tmp_path / "f.toml", "[demo]\nheadless = true\n")
    result = runner.invoke(app, ["demo", "--config", str(path)])
    assert result.exit_code == 2
    assert _squeezed("--headless needs --minutes") in _squeezed(result.output)
    users = tmp_path / "nobody.yaml"
    path = _write(tmp_path / "g.toml", f'[dashboard]\nusers = "{users}"\nport = 8700\n')
    result = runner.invoke(app, ["dashboard", "--config", str(path)])
    assert result.exit_code == 2
    assert _squeezed(f"no users file at {users}") in _squeezed(result.output)
    path = _write(tmp_path / "h.toml", '[dashboard]\nshift_start = ["06:00", "14:00"]\n')
    result = runner.invoke(app, ["dashboard", "--config", str(path), "--shift-hours", "12"])
    assert result.exit_code == 2
    assert _squeezed("12-hour shifts overlap") in _squeezed(result.output)


@pytest.mark.e2e
def test_a_headless_demo_takes_the_pipeline_and_models_sections(tmp_path) -> None:
    home = tmp_path / "demo"
    path = _write(
        tmp_path / "demo.toml",
        f'[demo]\nheadless = true\nminutes = 0.15\nspeed = 20\nhome = "{home}"\n'
        "[pipeline]\nsensor_ranges = {spindle_temp_c = [0, 1]}\n"
        "[models.anomaly]\nthreshold = 0.99999\n",
    )
    result = runner.invoke(app, ["demo", "--config", str(path)])
    assert result.exit_code == 0, result.output
    db = home / "floorsight.duckdb"
    dead = Database(db).query("SELECT sensor, reason FROM dead_letters WHERE sensor IS NOT NULL")
    assert dead.height > 0 and set(dead["sensor"]) == {"spindle_temp_c"}
    assert dead["reason"].str.contains(r"outside \[0.0, 1.0\]").all()
    features = Database(db).query("SELECT DISTINCT sensor FROM features")["sensor"]
    assert "spindle_temp_c" not in set(features) and len(features) > 0
    bad = _write(tmp_path / "bad.toml", "[models.anomaly]\ntreshold = 0.5\n")
    result = runner.invoke(app, ["demo", "--config", str(bad), "--headless", "--minutes", "0.05"])
    assert result.exit_code == 2 and _squeezed("models.anomaly.treshold") in _squeezed(
        result.output
    )


def test_a_plan_of_shifts_replaces_the_three_of_eight_hours() -> None:
    from datetime import UTC, datetime, timedelta

    from floorsight.dashboards.oee import ShiftPlan, shift_of, shift_plan, shifts

    t = datetime(2026, 1, 5, 7, 30, tzinfo=UTC)
    default = shift_of(t)
    assert (default.start.hour, default.end.hour) == (6, 14)
    assert shift_plan(["22:00", "06:00", "14:00"], 8) == ShiftPlan()
    two = shift_plan(["06:00", "18:00"], 12)
    assert [s.label for s in shifts(t - timedelta(hours=20), t, two)] == [
        "2026-01-05 06:00–18:00 UTC",
        "2026-01-04 18:00–06:00 UTC",
        "2026-01-04 06:00–18:00 UTC",
    ]
    # a day and a late shift with the night off: 03:00 belongs to the late shift that ended
    two_short = shift_plan(["06:30", "14:30"], 8)
    assert shift_of(datetime(2026, 1, 5, 3, tzinfo=UTC), two_short).label == (
        "2026-01-04 14:30–22:30 UTC"
    )
    for starts, hours, message in (
        (["6am"], 8, "'6am' is no time of day"),
        (["06:00", "14:00"], 12, "12-hour shifts overlap"),
        (["06:00"], 0, "must be more than 0"),
        ([], 8, "at least one shift start"),
    ):
        with pytest.raises(ValueError, match=message):
            shift_plan(starts, hours)


def test_the_dashboard_offers_the_plants_own_shifts(tmp_path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from floorsight.dashboards import APP, streamlit_command
    from floorsight.dashboards.users import COOKIE_KEY_ENV, USERS_ENV
    from tests.dashboard_users import COOKIE_KEY, sign_in, write_users
    from tests.test_dashboard import build

    db = build(tmp_path / "floorsight.duckdb")  # a plant from 06:00 to 07:00 UTC
    monkeypatch.setenv(USERS_ENV, str(write_users(tmp_path / "users.yaml")))
    monkeypatch.setenv(COOKIE_KEY_ENV, COOKIE_KEY)
    command = streamlit_command(db, 8501, shift_starts=["06:00", "18:00"], shift_hours=12)
    # the app's own arguments, after streamlit's `--`, as `floorsight dashboard` passes them
    monkeypatch.setattr("sys.argv", [str(APP), *command[command.index("--") + 1 :]])
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    sign_in(at, "maria")
    assert not at.exception
    assert at.selectbox[0].options == ["2026-01-05 06:00–18:00 UTC"]
