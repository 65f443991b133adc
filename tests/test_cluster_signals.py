"""``floorsight run --processes P`` as a service: the command's SIGTERM or SIGINT goes on to
every process it started, which stop their sources and flush, and it exits after them; when
one of them fails it exits non-zero. No child outlives it (a service manager would otherwise
leave them orphaned).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from floorsight.storage import Database
from tests.test_cluster_hosts import FLOORSIGHT, simulate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    return simulate(
        # long enough that the run is still reading when the test stops it, on a loaded machine
        tmp_path_factory.mktemp("history"),
        "--hours",
        "8",
        "--seed",
        "3",
        "--machines",
        "4",
    )


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _features(part: Path) -> int:
    """Feature rows in a partition so far (0: none yet, or its writer holds the file)."""
    if not part.exists():
        return 0
    try:
        return Database(part).query("SELECT count(*) AS n FROM features")["n"][0]
    except Exception:  # the writer holds the file, or has not made the table yet
        return 0


def _start_cluster(history: Path, db: Path, log: Path) -> tuple[subprocess.Popen, list[int]]:
    """A two-process run over the history in small batches; returns once both processes
    have written features to their partitions (so both are running the dataflow), with
    their pids."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *(str(FLOORSIGHT), "run", "--history", str(history / "readings")),
                *("--context", str(history / "erp"), "--db", str(db)),
                *("--db-layout", "per-process", "--processes", "2", "--batch-rows", "500"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if all(_features(db / f"floorsight.p{i}.duckdb") for i in range(2)):
            break
        time.sleep(0.2)
    children = _children(proc.pid)
    assert proc.poll() is None and len(children) == 2, log.read_text()[-3000:]
    return proc, children


def test_sigterm_to_the_command_stops_every_process_cleanly(history, tmp_path) -> None:
    db, log = tmp_path / "db", tmp_path / "run.log"
    proc, children = _start_cluster(history, db, log)
    try:
        # to the command only, as `systemctl stop` does with KillMode=mixed (SIGINT takes the
        # same path)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert not [c for c in children if _alive(c)], "a process outlived the command"
    # each process stopped its source and flushed what it had read: its rows are there
    assert text.count("stopping: flushing the database") == 2, text[-3000:]
    assert all(_features(db / f"floorsight.p{i}.duckdb") for i in range(2))


def test_a_failed_process_makes_the_command_fail(history, tmp_path) -> None:
    db, log = tmp_path / "db", tmp_path / "run.log"
    proc, children = _start_cluster(history, db, log)
    try:
        os.kill(children[1], signal.SIGKILL)
        # the other process loses its peer and ends too; the command reports the failure
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0, log.read_text()[-3000:]
    assert not [c for c in children if _alive(c)], "a process outlived the command"
