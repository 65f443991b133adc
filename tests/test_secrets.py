"""Secrets never on a command line; private files and folders only; ``.env`` from the cwd only.

A command line is public: ``/proc/<pid>/cmdline`` shows it to every user of the machine, and
``floorsight run --processes N`` copies its arguments into its child processes. Passwords come
from an environment variable (children inherit it, others cannot read it) or a file only its
owner can read; a PostgreSQL or MLflow URL holding a password is refused with what to use
instead. Recovery snapshots are pickles, so their folder is the user's own and private.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from floorsight import config
from floorsight.cli import OPCUA_PASSWORD_ENV, SIM_PASSWORD_ENV, app
from floorsight.pipelines.context import load_postgres_context
from floorsight.storage import read_frame

runner = CliRunner()
PASSWORD = "Zq7-not-on-argv-93x"
DEADLINE_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _said(result) -> str:
    """The command's output as one line (the error box wraps it)."""
    return " ".join(result.output.replace("│", " ").split())


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_the_opcua_password_reaches_every_process_of_a_cluster_but_no_command_line(
    tmp_path: Path,
) -> None:
    url = f"opc.tcp://127.0.0.1:{_free_port()}/"
    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(seconds=30)
    plant = ("--machines", "2", "--seed", "3", "--start", start.isoformat())
    # the ERP context of the same plant (its work orders cover the live readings)
    made = runner.invoke(
        app, ["simulate", "--out", str(tmp_path / "plant"), "--hours", "1", "--hz", "1", *plant]
    )
    assert made.exit_code == 0, made.output
    env = {
        **os.environ,
        SIM_PASSWORD_ENV: PASSWORD,
        OPCUA_PASSWORD_ENV: PASSWORD,
        "PYTHONUNBUFFERED": "1",
    }
    cli = (sys.executable, "-m", "floorsight.cli")
    server = subprocess.Popen(
        [*cli, "simulate", "--opcua", url, "--user", "quality", "--every-sample", *plant],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db = tmp_path / "out" / "f.duckdb"
    pipeline = None
    try:
        pipeline = subprocess.Popen(
            [
                *(*cli, "run", "--opcua", url, "--user", "quality", "--processes", "2"),
                *("--context", str(tmp_path / "plant" / "erp"), "--db", str(db)),
                *("--window-s", "2"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        # the children log in with the password they got from the environment: features of
        # live readings reach the database
        deadline = time.monotonic() + DEADLINE_S
        rows = 0
        while rows == 0:
            assert pipeline.poll() is None, pipeline.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no features from the password-protected server"
            time.sleep(0.5)
            if db.exists():
                rows = read_frame(db, "SELECT count(*) AS n FROM features")["n"][0]
        processes = [pipeline.pid, *_descendants(pipeline.pid), server.pid]
        cmdlines = {pid: _cmdline(pid) for pid in processes}
        cluster = [c for c in cmdlines.values() if "--process-id" in c]
        assert len(cluster) == 2 and all("--user quality" in c for c in cluster)
        for pid, cmdline in cmdlines.items():
            assert PASSWORD not in cmdline, (pid, cmdline)
    finally:
        if pipeline is not None:
            _stop(pipeline)
        _stop(server)


def test_no_password_option_on_the_command_line() -> None:
    for command in ("run", "simulate"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "--password-file" in result.output
        assert "--password " not in result.output.replace("--password-file", "")
    refused = runner.invoke(
        app, ["simulate", "--opcua", "opc.tcp://127.0.0.1:1/", "--user", "u", "--password", "x"]
    )
    assert refused.exit_code == 2 and "No such option" in refused.output


def test_a_password_file_others_can_read_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(OPCUA_PASSWORD_ENV, raising=False)
    monkeypatch.delenv(SIM_PASSWORD_ENV, raising=False)
    secret = tmp_path / "opcua.password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o644)
    run = [
        *("run", "--opcua", "opc.tcp://127.0.0.1:1/", "--user", "quality"),
        *("--password-file", str(secret), "--context", str(tmp_path)),
    ]
    simulate = ["simulate", "--opcua", "opc.tcp://127.0.0.1:1/", "--user", "quality"]
    simulate += ["--password-file", str(secret)]
    for argv in (run, simulate):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output
        assert "readable by others" in _said(result) and "chmod 600" in _said(result)
        assert PASSWORD not in result.output
    # a user without any password is told where to put it
    missing = runner.invoke(app, [*run[:5], "--context", str(tmp_path)])
    assert missing.exit_code == 2 and OPCUA_PASSWORD_ENV in _said(missing)
    # the same file made private is taken (the first line, without its newline)
    secret.chmod(0o600)
    assert config.secret(OPCUA_PASSWORD_ENV, secret) == PASSWORD


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://erp:{PASSWORD}@127.0.0.1:5432/erp",
        f"postgres://erp:{PASSWORD}@db.plant/erp",
        f"postgresql://erp@127.0.0.1/erp?password={PASSWORD}",
    ],
)
def test_a_dsn_with_a_password_on_the_command_line_is_refused(dsn: str, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", "--history", str(tmp_path), "--context", dsn, "--db", str(tmp_path / "x")]
    )
    assert result.exit_code == 2, result.output
    assert "PGPASSWORD" in _said(result) and ".pgpass" in _said(result)
    assert PASSWORD not in result.output


def test_an_mlflow_uri_with_credentials_is_refused(tmp_path: Path) -> None:
    uri = f"https://ds:{PASSWORD}@mlflow.plant"
    run = runner.invoke(
        app, ["run", "--history", str(tmp_path), "--context", str(tmp_path), "--mlflow-uri", uri]
    )
    listing = runner.invoke(app, ["models", "list", "--mlflow-uri", uri])
    for result in (run, listing):
        assert result.exit_code == 2, result.output
        assert "MLFLOW_TRACKING_PASSWORD" in _said(result)
        assert PASSWORD not in result.output


def test_psycopg_reads_the_password_from_pgpassword_or_pgpassfile(
    postgres: str, tmp_path: Path, monkeypatch
) -> None:
    # the test server trusts everyone: give its user a password and ask for it from now on
    with psycopg.connect(postgres, autocommit=True) as con:
        con.execute(f"ALTER USER postgres PASSWORD '{PASSWORD}'")
        hba = Path(con.execute("SHOW hba_file").fetchone()[0])
        hba.write_text("host all all 127.0.0.1/32 scram-sha-256\n")
        con.execute("SELECT pg_reload_conf()")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(psycopg.OperationalError, match="password"):
        load_postgres_context(postgres)
    # the pipeline's own loader, on a DSN without a password: it gets in (and finds no ERP)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with pytest.raises(ValueError, match="no table work_orders"):
        load_postgres_context(postgres)
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:*:*:postgres:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with pytest.raises(ValueError, match="no table work_orders"):
        load_postgres_context(postgres)


def test_dotenv_is_read_from_the_working_directory_only(tmp_path: Path) -> None:
    # a copy of the package's config module, with a .env in its parent (the project root)
    project = tmp_path / "project"
    (project / "floorsight").mkdir(parents=True)
    (project / "floorsight" / "__init__.py").write_text("")
    source = Path(config.__file__)
    (project / "floorsight" / "config.py").write_text(source.read_text())
    (project / ".env").write_text("FLOORSIGHT_FROM_PACKAGE=yes\n")
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / ".env").write_text("FLOORSIGHT_FROM_CWD=yes\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOORSIGHT_FROM")}
    env["PYTHONPATH"] = str(project)
    # a script, as the `floorsight` console script is (python-dotenv's own search starts from
    # the cwd for `python -c` and from the calling module's folder otherwise)
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, floorsight.config as c\n"
        "assert c.__file__.startswith(os.environ['PYTHONPATH'])\n"
        "print(os.environ.get('FLOORSIGHT_FROM_CWD'), os.environ.get('FLOORSIGHT_FROM_PACKAGE'))\n"
    )
    for where, expected in ((cwd, "yes None"), (project / "floorsight", "None None")):
        out = subprocess.run(
            [sys.executable, str(probe)],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expected


def test_the_recovery_and_outbox_folders_are_private(tmp_path: Path) -> None:
    made = runner.invoke(
        app, ["simulate", "--out", str(tmp_path / "plant"), "--hours", "0.05", "--seed", "4"]
    )
    assert made.exit_code == 0, made.output
    recovery, db = tmp_path / "state" / "recovery", tmp_path / "var" / "f.duckdb"
    argv = [
        *("run", "--history", str(tmp_path / "plant" / "readings")),
        *("--context", str(tmp_path / "plant" / "erp"), "--db", str(db)),
    ]
    result = runner.invoke(app, [*argv, "--recovery", str(recovery)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(recovery.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700  # the outbox lives beside the db
    # an existing recovery folder of ours that others may enter is made private on resume
    recovery.chmod(0o755)
    assert runner.invoke(app, [*argv, "--recovery", str(recovery)]).exit_code == 0
    assert stat.S_IMODE(recovery.stat().st_mode) == 0o700
    # a shared folder (sticky, as /tmp) is refused: it is never chmod-ed
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    refused = runner.invoke(app, [*argv, "--recovery", str(shared)])
    assert refused.exit_code == 2 and "shared folder" in _said(refused)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
