"""docs/deploy.md stays true: its command lines parse, its units verify, its backups run.

Every ``floorsight ...`` line in the page's shell blocks and every ``ExecStart=`` of its units
is parsed by the real command-line interface (options, types, sub-commands; a renamed or removed
option fails here); the backup and compaction lines also run for real on a DuckDB file; every
unit and timer passes ``systemd-analyze verify`` where systemd is installed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from floorsight.cli import app
from floorsight.pipelines.sink import DuckDBSink
from floorsight.pipelines.tables import PART_COUNTS
from floorsight.storage import Database
from tests.conftest import T0
from tests.test_retention import _counts

DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
BINARY = "/opt/floorsight/.venv/bin/floorsight"
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in _BLOCK.findall(DOC.read_text()) if kind == lang]


def _joined(body: str) -> list[str]:
    """The block's lines with backslash continuations joined."""
    return body.replace("\\\n", " ").splitlines()


def _units() -> dict[str, str]:
    """Unit files by name (``# /etc/systemd/system/NAME`` on a block's first line)."""
    units = {}
    for body in _blocks("ini"):
        first = body.splitlines()[0]
        assert first.startswith("# /etc/systemd/system/"), first
        units[first.removeprefix("# /etc/systemd/system/")] = body
    return units


def _variables() -> dict[str, str]:
    """``NAME=VALUE`` lines of the shell blocks: the environment files the page shows."""
    found = {}
    for body in _blocks("sh"):
        for line in body.splitlines():
            if re.fullmatch(r"[A-Z_]+=\S+", line) and not line.endswith("..."):
                name, value = line.split("=", 1)
                found[name] = value
    return found


def _expanded(line: str) -> str:
    """A unit's command line as systemd runs it: instance ``%i`` 0, variables from the page."""
    known = _variables()

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert name in known, f"{name} is used in a unit but set nowhere on the page"
        return known[name]

    return _VARIABLE.sub(value, line.replace("%i", "0"))


def _command_lines() -> list[list[str]]:
    """Every floorsight command on the page, as the arguments after ``floorsight``."""
    lines = []
    for body in _blocks("sh"):
        for line in _joined(body):
            words = shlex.split(line, comments=True)
            if words and words[0] == "floorsight":
                lines.append(words[1:])
    for body in _units().values():
        for line in _joined(body):
            command = line.removeprefix("ExecStart=")
            if command != line and command:
                words = shlex.split(_expanded(command))
                assert words[0] == BINARY, words[0]
                lines.append(words[1:])
    return lines


def _rest(ctx) -> list[str]:
    """What a group's context left for its sub-command (click keeps it in two lists)."""
    return [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]


def _parse(args: list[str]) -> list[str]:
    """Parse ``args`` as the CLI does, without running it; returns the command path."""
    group = typer.main.get_command(app)
    ctx = group.make_context("floorsight", list(args))
    path = []
    command, rest = group, _rest(ctx)
    # typer carries its own copy of click: a group is what has sub-commands
    while hasattr(command, "commands") and rest:
        name, command, rest = command.resolve_command(ctx, rest)
        path.append(name)
        ctx = command.make_context(name, rest, parent=ctx)
        rest = _rest(ctx) if hasattr(command, "commands") else []
    return path


def test_the_page_has_the_units_and_commands_it_promises() -> None:
    units = _units()
    for name in (
        "floorsight.service",
        "floorsight@.service",
        "floorsight-dashboard.service",
        "floorsight-notify.service",
        "floorsight-compact.timer",
    ):
        assert name in units, name
    for name, body in units.items():
        if name.endswith(".service") and "/" not in name:
            assert "User=floorsight" in body, name
            assert "Restart=on-failure" in body or "Type=oneshot" in body, name
            assert "EnvironmentFile=/etc/floorsight/floorsight.env" in body, name
    commands = [" ".join(c) for c in _command_lines()]
    assert any("--process-id 0 --addresses" in c for c in commands)
    assert any(c.startswith("run ") and "--recovery" in c and "--opcua" in c for c in commands)
    assert any(c.startswith("run ") and "--mqtt" in c for c in commands)


def test_no_secret_is_on_a_command_line() -> None:
    for args in _command_lines():
        line = " ".join(args)
        assert "--password " not in line and not re.search(r"://[^/@\s]+:[^/@\s]+@", line), line


@pytest.mark.parametrize("args", _command_lines(), ids=lambda a: " ".join(a)[:60])
def test_every_command_line_parses(args) -> None:
    assert _parse(args), args


def test_the_backup_and_compaction_lines_run_on_a_real_file(tmp_path) -> None:
    state, backups = tmp_path / "lib", tmp_path / "backups"
    backups.mkdir()
    db = state / "floorsight.duckdb"
    part = DuckDBSink(db, [PART_COUNTS], flush_interval=timedelta(0)).build_part("d", "", None)
    part.write_batch([("part_counts", _counts(T0, 600))])
    part.close()
    ran = 0
    for args in _command_lines():
        if args[0] not in ("backup", "compact"):
            continue
        local = [
            a.replace("/var/lib/floorsight", str(state)).replace(
                "/var/backups/floorsight", str(backups)
            )
            for a in args
        ]
        result = CliRunner().invoke(app, local)
        assert result.exit_code == 0, (local, result.output)
        assert json.loads(result.stdout)["rows"]["part_counts"] == 600
        ran += 1
    assert ran == 2
    (copy,) = backups.glob("*.duckdb")
    assert Database(copy).query("SELECT count(*) AS n FROM part_counts")["n"][0] == 600


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_every_unit_verifies(tmp_path) -> None:
    floorsight = Path(sys.executable).with_name("floorsight")
    names = []
    for name, body in _units().items():
        if "/" in name:  # a drop-in (name.service.d/x.conf): its command is parsed above
            continue
        # systemd checks that the command exists: point it at this environment's floorsight
        unit = name.replace("@.", "@0.")
        (tmp_path / unit).write_text(body.replace(BINARY, str(floorsight)))
        names.append(str(tmp_path / unit))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
