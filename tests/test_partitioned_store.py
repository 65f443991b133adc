"""The per-process store on real DuckDB files: readers see one set of tables over every
partition, people's actions land in the partition of the process that owns the alert, and
that process's feedback and escalation read them from its own file."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from floorsight.alerts import ALERTS, lifecycle
from floorsight.alerts.dispatcher import Dispatcher
from floorsight.alerts.feedback import FeedbackStore
from floorsight.alerts.notify import notifications
from floorsight.alerts.outbox import Outbox, outboxes_of
from floorsight.alerts.routing import Routing
from floorsight.cli import app
from floorsight.pipelines.shards import shard_key, shard_of, shard_of_key
from floorsight.pipelines.sink import PartitionedDuckDBSink
from floorsight.pipelines.tables import DEAD_LETTERS, WORK_ORDERS
from floorsight.storage import (
    Database,
    copy_tables,
    partition_file,
    partition_files,
    partition_holding,
    read_frame,
)
from tests.test_lifecycle import T0, alert_row
from tests.test_outbox import Receiver, webhook_routing


def _store(tmp_path: Path, processes: int = 2) -> Path:
    """A store as a per-process run leaves it: each partition with its own machine's alert,
    the context's work orders and one dead letter that every process found in the context."""
    store = tmp_path / "store"
    store.mkdir()
    for i in range(processes):
        db = Database(partition_file(store, i), [ALERTS, WORK_ORDERS, DEAD_LETTERS])
        db.create()
        alert = {**alert_row(f"M0{i}:anomaly:1"), "machine_id": f"M0{i}"}
        wo = {
            "work_order": "WO-1",
            "machine_id": "M00",
            "product": "P-100",
            "material_lot": "LOT-1",
            "start": T0,
            "end": T0 + timedelta(hours=8),
        }
        dead = {c: None for c in DEAD_LETTERS.columns} | {
            "dead_letter_id": "context-row-7",
            "source": "context",
            "raw": "{}",
            "reason": "work_orders.csv row 7: no machine",
            "received_at": T0 + timedelta(seconds=i),
        }
        db.upsert(
            {
                "alerts": [pl.DataFrame([alert], schema=ALERTS.polars_schema)],
                "work_orders": [pl.DataFrame([wo], schema=WORK_ORDERS.polars_schema)],
                "dead_letters": [pl.DataFrame([dead], schema=DEAD_LETTERS.polars_schema)],
            }
        )
    return store


def test_readers_see_every_partition_as_one_set_of_tables(tmp_path) -> None:
    store = _store(tmp_path)
    alerts = read_frame(store, "SELECT alert_id, machine_id FROM alerts ORDER BY alert_id")
    assert alerts.rows() == [("M00:anomaly:1", "M00"), ("M01:anomaly:1", "M01")]
    # the context each process mirrored, and what every process found in it, once
    assert read_frame(store, "SELECT work_order FROM work_orders")["work_order"].to_list() == [
        "WO-1"
    ]
    assert read_frame(store, "SELECT count(*) AS n FROM dead_letters")["n"].item() == 1
    # the Parquet copies (floorsight export) hold the same rows
    copies = copy_tables(store, tmp_path / "out")
    assert sorted(copies) == ["alerts", "dead_letters", "work_orders"]
    assert pl.read_parquet(copies["alerts"]).height == 2


def test_a_reader_waits_for_a_partition_that_is_locked(tmp_path) -> None:
    store = _store(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " sys.stdin.readline()",
            str(partition_file(store, 1)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException, match=re.escape("floorsight.p1.duckdb is locked")):
            read_frame(store, "SELECT * FROM alerts", timeout_s=0.0)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert read_frame(store, "SELECT count(*) AS n FROM alerts")["n"].item() == 2


def test_a_folder_without_partitions_and_a_write_to_the_folder_are_refused(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty is a folder without partition files"):
        read_frame(empty, "SELECT 1")
    store = _store(tmp_path)
    with pytest.raises(ValueError, match="store is a partitioned store"), Database(store).write():
        pass


def test_acknowledgements_and_labels_go_to_the_partition_that_owns_the_alert(tmp_path) -> None:
    store = _store(tmp_path)
    owner = partition_file(store, 1)
    assert partition_holding(store, "alerts", "alert_id", "M01:anomaly:1") == owner
    lifecycle.acknowledge(store, "M01:anomaly:1", "maria", "checking")
    lifecycle.resolve(store, "M01:anomaly:1", "maria", "bearing", "true_problem")
    # process 1 reads the label from its own file; process 0 has none
    assert [v.label for v in FeedbackStore(owner).for_machine("M01")] == ["true_problem"]
    assert FeedbackStore(partition_file(store, 0)).for_machine("M01") == []
    assert lifecycle.history(store, "M01:anomaly:1")["action"].to_list() == [
        "acknowledged",
        "resolved",
    ]
    with pytest.raises(ValueError, match="unknown alert 'M09:anomaly:1'"):
        lifecycle.acknowledge(store, "M09:anomaly:1", "maria")


def test_each_process_escalates_its_own_open_alerts_once(tmp_path) -> None:
    store = _store(tmp_path)
    lifecycle.acknowledge(store, "M00:anomaly:1", "maria")  # handled on process 0's file
    receiver = Receiver()
    try:
        routing = Routing.model_validate(
            {
                "destinations": {"hook": {"kind": "webhook", "url": receiver.url}},
                "roles": {"maintenance": ["hook"], "supervisor": ["hook"]},
                "rules": [{"roles": ["maintenance"]}],
                "escalation": {"after_s": 60, "roles": ["supervisor"]},
            }
        )
        for part, box in outboxes_of(store).items():
            outbox = Outbox(box)
            alerts = Database(part).query("SELECT * FROM alerts")
            for n in notifications(alerts, routing, {}):
                outbox.enqueue(n.destination, n.key, n.payload, now=T0)
            dispatcher = Dispatcher(outbox, routing, db_path=part)
            for minutes in (2, 3):
                dispatcher.step(now=T0 + timedelta(minutes=minutes))
            outbox.close()
    finally:
        receiver.close()
    keys = sorted(k for k, _ in receiver.received)
    assert keys == ["M00:anomaly:1/opened", "M01:anomaly:1/escalated", "M01:anomaly:1/opened"]
    assert lifecycle.history(partition_file(store, 1))["action"].to_list() == ["escalated"]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_sink_sends_a_shards_rows_to_the_process_that_reads_its_machines(
    tmp_path, workers
) -> None:
    processes = 3
    sinks = [
        PartitionedDuckDBSink(
            tmp_path, [], process_id=i, processes=processes, workers_per_process=workers
        )
        for i in range(processes)
    ]
    parts = sorted(name for sink in sinks for name in sink.list_parts())
    assert [sink.list_parts() for sink in sinks] == [[p] for p in parts]
    shards = workers * processes
    for machine in (f"M{n:02d}" for n in range(1, 30)):
        shard = shard_of(machine, shards)
        key = shard_key(shard, shards)
        assert shard_of_key(key) == shard
        # worker `shard` is a worker of process shard // workers, on every sending process
        assert {sink.part_fn(key) for sink in sinks} == {shard // workers}
    # rows that are not a shard's (a source batch's dead letters) stay where they were made
    assert [sink.part_fn("dead_letters") for sink in sinks] == list(range(processes))
    assert [sink.path for sink in sinks] == [partition_file(tmp_path, i) for i in range(3)]


def test_notify_finds_every_outbox_of_a_store(tmp_path) -> None:
    store = _store(tmp_path)
    receiver = Receiver()
    try:
        routing = webhook_routing(tmp_path / "routing.toml", receiver.url)
        for part in partition_files(store):
            outbox = Outbox(outboxes_of(store)[part])
            alerts = Database(part).query("SELECT * FROM alerts")
            for n in notifications(alerts, Routing.model_validate(_hook(receiver.url)), {}):
                outbox.enqueue(n.destination, n.key, n.payload)
            outbox.close()
        done = CliRunner().invoke(
            app, ["notify", "--db", str(store), "--routing", str(routing), "--once"]
        )
    finally:
        receiver.close()
    assert done.exit_code == 0, done.output
    assert sorted(k for k, _ in receiver.received) == [
        "M00:anomaly:1/opened",
        "M01:anomaly:1/opened",
    ]


def _hook(url: str) -> dict:
    return {
        "destinations": {"maintenance_hook": {"kind": "webhook", "url": url}},
        "roles": {"maintenance": ["maintenance_hook"]},
        "rules": [{"roles": ["maintenance"]}],
    }


def test_run_refuses_a_layout_that_does_not_fit_the_db_path(tmp_path) -> None:
    folder, file = tmp_path / "store", tmp_path / "f.duckdb"
    folder.mkdir()
    file.write_bytes(b"")
    for args, says in (
        (("--db", str(folder)), "is a folder: give a DuckDB file"),
        (("--db", str(file), "--db-layout", "per-process"), "is a file: --db-layout per-process"),
        (("--db", str(folder), "--db-layout", "sharded"), "'sharded' is not a layout"),
    ):
        done = CliRunner().invoke(
            app, ["run", "--history", str(tmp_path), "--context", str(tmp_path), *args]
        )
        message = " ".join(done.output.replace("│", " ").split())
        assert done.exit_code == 2 and says in message, done.output
