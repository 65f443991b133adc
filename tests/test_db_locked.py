"""Another process holding the DuckDB file (a notebook left open) never stops the pipeline.

The holder is a real second process with a real DuckDB connection to the file. The writer is the
pipeline's DuckDB sink, in a real Bytewax dataflow: it keeps its rows, backpressures the flow
when its buffer is full, warns naming the holder's PID, and once the holder lets go every row
is in the file exactly once. The documented way to read (``floorsight.storage.read_frame``)
opens and closes per query, so a reader using it never makes the writer wait.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from floorsight.alerts.feedback import FeedbackStore
from floorsight.pipelines.sink import DuckDBSink, _DuckDBPartition
from floorsight.storage import Database, DatabaseLocked, TableSpec, copy_tables, read_frame

READINGS = TableSpec(
    name="readings",
    schema=(("k", "INTEGER NOT NULL"), ("v", "DOUBLE NOT NULL")),
    key=("k",),
    update_columns=("v",),
)
ALERTS = TableSpec(name="alerts", schema=(("alert_id", "VARCHAR NOT NULL"),), key=("alert_id",))

HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read")
    print("holding", flush=True)
    sys.stdin.readline()  # until the test lets go
    con.close()
    """
)

#: bound on every wait of these tests (a failing test ends, it never hangs)
DEADLINE_S = 60.0


@contextmanager
def held(path: Path, mode: str = "read") -> Iterator[subprocess.Popen]:
    """A second process holding a DuckDB connection to ``path`` until the block ends (or until
    ``release(proc)``)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "holding", proc.stderr.read()
        yield proc
    finally:
        release(proc)


def release(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=DEADLINE_S)


def until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


class RecordingSink(DuckDBSink):
    """The pipeline's sink, keeping its partitions so the test can watch them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.parts: list[_DuckDBPartition] = []

    def build_part(self, step_id, for_part, resume_state):
        part = super().build_part(step_id, for_part, resume_state)
        self.parts.append(part)
        return part


def batches(n: int, rows: int) -> list[tuple[str, tuple[str, pl.DataFrame]]]:
    """``n`` frames of ``rows`` readings, and an alert after every tenth frame."""
    items = []
    for i in range(n):
        keys = list(range(i * rows, (i + 1) * rows))
        items.append(("k", ("readings", pl.DataFrame({"k": keys, "v": [float(k) for k in keys]}))))
        if i % 10 == 9:
            items.append(("k", ("alerts", pl.DataFrame({"alert_id": [f"A{i}"]}))))
    return items


def test_a_reader_holding_the_file_never_stops_the_writer(tmp_path: Path, caplog) -> None:
    path = tmp_path / "live.duckdb"
    Database(path, [READINGS, ALERTS]).create()
    n, rows = 300, 50
    sink = RecordingSink(
        path,
        [READINGS, ALERTS],
        flush_interval=timedelta(0),
        recovery=False,
        lock_wait=timedelta(milliseconds=50),  # the old give-up time, made short
        max_blocked_rows=2_000,  # a small bound, so the buffer fills and the flow waits
        max_retry_interval=timedelta(milliseconds=100),
        warn_every=timedelta(milliseconds=200),
    )
    flow = Dataflow("locked")
    stream = op.input("in", flow, TestingSource(batches(n, rows)))
    op.output("duckdb", stream, sink)
    caplog.set_level(logging.INFO, logger="floorsight.pipelines.sink")

    with held(path) as holder:

        def let_go_once_blocked_for_long() -> None:
            # held for many times the give-up time, until the flow has been held back too
            until(lambda: sink.parts, "the sink partition")
            part = sink.parts[0]
            until(
                lambda: part.lock_stats.backpressure >= 1 and part._attempts >= 20,
                "the sink to be blocked, full and retrying",
            )
            release(holder)

        watcher = threading.Thread(target=let_go_once_blocked_for_long, daemon=True)
        watcher.start()
        run_main(flow)  # must not raise
        watcher.join(timeout=DEADLINE_S)
        assert not watcher.is_alive()

    stats = sink.parts[0].lock_stats
    assert stats.episodes >= 1 and stats.backpressure >= 1
    assert stats.max_buffered_rows >= 2_000
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"locked by PID {holder.pid}" in warnings[0]
    assert any("still locked" in w for w in warnings)
    assert any("buffer is full" in w for w in warnings)
    assert any("unlocked after" in r.getMessage() for r in caplog.records if r.levelno == 20)
    got = read_frame(path, "SELECT k, v FROM readings ORDER BY k")
    assert got["k"].to_list() == list(range(n * rows))  # every row, exactly once
    assert got["v"].to_list() == [float(k) for k in range(n * rows)]
    alerts = read_frame(path, "SELECT alert_id FROM alerts ORDER BY alert_id")
    assert sorted(alerts["alert_id"]) == sorted(f"A{i}" for i in range(9, n, 10))
    print(
        f"\nblocked {stats.blocked_s:.2f} s in {stats.episodes} episode(s), at most "
        f"{stats.max_buffered_rows} rows buffered, write_batch waited {stats.backpressure} time(s)"
    )


def test_a_snapshot_while_blocked_carries_the_buffered_rows(tmp_path: Path) -> None:
    path = tmp_path / "live.duckdb"
    Database(path, [READINGS, ALERTS]).create()
    sink = DuckDBSink(path, [READINGS, ALERTS], flush_interval=timedelta(0), lock_wait=timedelta(0))
    items = [item for _, item in batches(20, 10)]
    with held(path):
        part = sink.build_part("duckdb", str(path), None)
        part.write_batch(items)
        # Bytewax pickles the snapshot into its recovery store
        state = pickle.loads(pickle.dumps(part.snapshot()))
    # the process dies here (the partition is dropped); a restart resumes from the snapshot
    assert state is not None
    assert sum(f.height for f in state["readings"]) == 200
    resumed = sink.build_part("duckdb", str(path), state)
    resumed.close()
    assert read_frame(path, "SELECT count(*) AS n FROM readings")["n"][0] == 200
    assert read_frame(path, "SELECT count(*) AS n FROM alerts")["n"][0] == 2
    # once written, a snapshot carries nothing: the rows are in the file
    assert resumed.snapshot() is None


def test_a_reader_using_read_frame_never_makes_the_writer_wait(tmp_path: Path) -> None:
    path = tmp_path / "live.duckdb"
    Database(path, [READINGS]).create()
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                from floorsight.storage import read_frame
                print("reading", flush=True)
                for _ in range(50):
                    read_frame(sys.argv[1], "SELECT count(*) AS n FROM readings WHERE k >= ?", [0])
                print("done", flush=True)
                """
            ),
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().strip() == "reading"
    sink = DuckDBSink(path, [READINGS], flush_interval=timedelta(0), lock_wait=timedelta(seconds=5))
    part = sink.build_part("duckdb", str(path), None)
    written, deadline = 0, time.monotonic() + DEADLINE_S
    while True:  # at least one write, however soon the reader is done
        # one flush per batch, with a pause: the writer's lock is free between flushes
        part.write_batch([("readings", pl.DataFrame({"k": [written], "v": [0.0]}))])
        written += 1
        if reader.poll() is not None:
            break
        time.sleep(0.005)
        assert time.monotonic() < deadline, "the reader never finished"
    part.close()
    out, err = reader.communicate(timeout=DEADLINE_S)
    assert reader.returncode == 0 and out.strip() == "done", err[-2000:]
    assert part.lock_stats.episodes == 0  # a per-query reader never held the file for long
    assert read_frame(path, "SELECT count(*) AS n FROM readings")["n"][0] == written > 0


def test_other_writers_give_up_after_their_lock_timeout_naming_the_holder(tmp_path) -> None:
    path = tmp_path / "live.duckdb"
    Database(path, [READINGS]).create()
    with held(path) as holder:
        with pytest.raises(DatabaseLocked) as caught, Database(path, lock_timeout_s=0.2).write():
            pass
        assert caught.value.holder_pid == holder.pid
        assert isinstance(caught.value, duckdb.IOException)  # callers catching it still do
        assert f"PID {holder.pid}" in str(caught.value)


def test_read_frame_waits_for_a_flush_and_then_reads(tmp_path: Path) -> None:
    path = tmp_path / "live.duckdb"
    db = Database(path, [READINGS])
    db.create()
    db.upsert({"readings": [pl.DataFrame({"k": [1, 2, 3], "v": [1.0, 2.0, 3.0]})]})
    with held(path, mode="write") as writer:
        with pytest.raises(DatabaseLocked):
            read_frame(path, "SELECT count(*) AS n FROM readings", timeout_s=0.1)
        result: list[pl.DataFrame] = []
        reading = threading.Thread(
            target=lambda: result.append(
                read_frame(path, "SELECT sum(v) AS s FROM readings WHERE k > ?", [1])
            )
        )
        reading.start()
        release(writer)
        reading.join(timeout=DEADLINE_S)
    assert result and result[0]["s"][0] == 5.0


def test_copy_tables_writes_parquet_copies_for_long_analyses(tmp_path: Path) -> None:
    path = tmp_path / "live.duckdb"
    db = Database(path, [READINGS, ALERTS])
    db.create()
    db.upsert({"readings": [pl.DataFrame({"k": [1, 2], "v": [1.5, 2.5]})]})
    copies = copy_tables(path, tmp_path / "copy")
    assert set(copies) == {"readings", "alerts"}
    assert pl.read_parquet(copies["readings"]).sort("k")["v"].to_list() == [1.5, 2.5]
    # and the file is free again: a writer gets it at the first attempt
    with Database(path, lock_timeout_s=0).write():
        pass
    with pytest.raises(ValueError, match="no table nope"):
        copy_tables(path, tmp_path / "copy", ["nope"])


def test_a_writer_without_a_timeout_waits_for_as_long_as_it_takes(tmp_path, caplog) -> None:
    # what the pipeline's start (mirroring the ERP context) needs: no give-up, a warning
    path = tmp_path / "live.duckdb"
    Database(path, [READINGS]).create()
    caplog.set_level(logging.WARNING, logger="floorsight.storage")
    done = threading.Event()

    def write() -> None:
        Database(path, [READINGS], lock_timeout_s=None).upsert(
            {"readings": [pl.DataFrame({"k": [7], "v": [7.0]})]}
        )
        done.set()

    with held(path) as holder:
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        named = f"locked by PID {holder.pid}"
        until(lambda: any(named in r.getMessage() for r in caplog.records), "the warning")
        assert not done.is_set()  # still waiting, not given up
    writer.join(timeout=DEADLINE_S)
    assert done.is_set()
    assert read_frame(path, "SELECT k FROM readings")["k"].to_list() == [7]


def test_the_score_steps_feedback_read_keeps_its_verdicts_while_a_reader_holds_the_file(
    tmp_path: Path,
) -> None:
    # the score step reads people's labels every few seconds from the live file: a notebook
    # holding it must leave the last verdicts in force, never end the pipeline
    path = tmp_path / "live.duckdb"
    Database(path, [READINGS]).create()
    store = FeedbackStore(path, every_s=0.0)
    with held(path):
        assert store.for_machine("M01") == []  # gave up quickly, raised nothing
    assert store.for_machine("M01") == []  # and reads again once the file is free
