"""Recovery of a cluster on several hosts: two processes, each in a Linux network namespace of
its own with its own folders (per-process store, ``--recovery``), SIGKILLed mid-run and started
again with the same arguments.

Bytewax needs the cluster as a whole to hold every recovery partition, not each host:
process 0 creates the store's one partition in its own ``--recovery`` folder and the other
hosts' folders stay without one (they hold only what their own sources journal). Killed all
at once, or one process killed (the other then ends by itself, non-zero), the restarted
cluster writes every table an uninterrupted one-process run writes, and every notification
reaches each destination once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.test_cluster_hosts import (
    UPSETS,
    Hosts,
    _tables,
    network_hosts,
    one_process,
    simulate,
)
from tests.test_outbox import Receiver, webhook_routing

pytestmark = pytest.mark.e2e

#: small batches and frequent snapshots, so that a kill lands mid-run after some snapshots
RECOVERY_ARGS = ("--snapshot-s", "0.2", "--batch-rows", "2000")
#: tables that log each start (the context's validation at its first load): a restart adds
#: the same rows again, with another ``validated_at``
PER_START = {"validation_results"}


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    hours = ("--hours", "2", "--seed", "8", "--machines", "4")
    return simulate(tmp_path_factory.mktemp("history"), *hours, *UPSETS)


@pytest.fixture(scope="module")
def reference(history, tmp_path_factory) -> tuple[dict[str, pl.DataFrame], Counter]:
    """An uninterrupted one-process run without recovery: its tables and notifications."""
    return one_process(history, tmp_path_factory.mktemp("reference"))


def _committed_epoch(recovery: Path) -> int:
    """The latest snapshot epoch committed to the recovery partition (0: none yet)."""
    part = recovery / "part-0.sqlite3"
    if not part.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True) as db:
            row = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()
    except sqlite3.OperationalError:  # being created; look again
        return 0
    return row[0] or 0


def _start_all(hosts: Hosts, tmp: Path, run: str, args: list[str]) -> list[subprocess.Popen]:
    """Every host's process, each with its own folders, logs ``run``-host<i>.log."""
    return [
        hosts.start(
            i,
            tmp / f"{run}-host{i}.log",
            *args,
            *("--db", str(tmp / f"host{i}"), "--recovery", str(tmp / f"recovery{i}")),
            *("--process-id", str(i), "--addresses", hosts.cluster()),
        )
        for i in range(len(hosts.addresses))
    ]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("killed", ["all", "one"])
def test_a_cluster_of_hosts_killed_resumes_to_the_uninterrupted_tables(
    killed, history, reference, tmp_path
) -> None:
    expected_tables, expected_sent = reference
    with network_hosts(2) as hosts:
        receiver = Receiver(host=hosts.bridge_address)
        procs: list[subprocess.Popen] = []
        try:
            routing = webhook_routing(tmp_path / "routing.toml", receiver.url)
            args = [
                *("run", "--history", str(history / "readings")),
                *("--context", str(history / "erp"), "--routing", str(routing)),
                *("--db-layout", "per-process", "-w", "1", *RECOVERY_ARGS),
            ]
            procs = _start_all(hosts, tmp_path, "first", args)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and all(p.poll() is None for p in procs):
                if _committed_epoch(tmp_path / "recovery0") >= 10:
                    break
                time.sleep(0.2)
            running = [p.poll() is None for p in procs]
            assert all(running), "the run ended before it could be killed; make it longer"
            victims = procs if killed == "all" else procs[1:]
            for proc in victims:
                os.kill(proc.pid, signal.SIGKILL)
            # the process left alone does not wait forever for its dead peer: it ends, non-zero
            codes = [p.wait(timeout=120) for p in procs]
            assert all(code != 0 for code in codes), codes
            epoch = _committed_epoch(tmp_path / "recovery0")
            procs = _start_all(hosts, tmp_path, "again", args)
            codes = [p.wait(timeout=600) for p in procs]
        finally:
            _stop(procs)
            receiver.close()
    for i, code in enumerate(codes):
        assert code == 0, f"host {i}: {(tmp_path / f'again-host{i}.log').read_text()[-3000:]}"
    # the store's one partition is on host 0; host 1's folder holds none of it
    assert [p.name for p in (tmp_path / "recovery0").glob("part-*.sqlite3")] == ["part-0.sqlite3"]
    assert not list((tmp_path / "recovery1").glob("part-*.sqlite3"))
    # the second run resumed from a snapshot, not from the start of the history
    assert epoch >= 10
    resumed = [
        line
        for i in range(2)
        for line in (tmp_path / f"again-host{i}.log").read_text().splitlines()
        if "resuming at file" in line
    ]
    assert resumed and not all("row 0" in line for line in resumed), resumed
    store = tmp_path / "store"  # the hosts' partitions brought together
    store.mkdir()
    for i in range(2):
        os.link(
            tmp_path / f"host{i}" / f"floorsight.p{i}.duckdb", store / f"floorsight.p{i}.duckdb"
        )
    got = _tables(store)
    assert sorted(got) == sorted(expected_tables)
    for name, expected in expected_tables.items():
        frame = got[name]
        if name in PER_START:
            frame = frame.unique(maintain_order=True)
        assert_frame_equal(frame, expected, check_exact=False, rel_tol=1e-9), name
    sent = Counter(key for key, _ in receiver.received)
    assert set(sent.values()) == {1}, "a notification was delivered twice"
    assert set(sent) == set(expected_sent)
