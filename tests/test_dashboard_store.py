"""The dashboard on a per-process store: the same pages as on one file holding the same rows,
and an acknowledgement written into the partition of the process that owns the alert."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from floorsight.alerts import lifecycle
from floorsight.pipelines.shards import shard_of
from floorsight.storage import CONTEXT_TABLES, COPIED_PREFIX, Database, partition_file
from tests.test_dashboard import build, dashboard_users, metrics, open_app  # noqa: F401

PAGES = (None, "page_alerts.py", "page_spc.py", "page_traceability.py")


def split(db: Path, store: Path, processes: int) -> Path:
    """``db``'s rows as a per-process run over the same plant leaves them: each machine's rows
    in its process's file, the context in every file."""
    store.mkdir()
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{db}' AS one (READ_ONLY)")
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'one'"
        ).fetchall()
        for i in range(processes):
            con.execute(f"ATTACH '{partition_file(store, i)}' AS p{i}")
        for (table,) in tables:
            columns = [r[0] for r in con.execute(f'DESCRIBE one."{table}"').fetchall()]
            context = table in CONTEXT_TABLES or table.startswith(COPIED_PREFIX)
            machines = []
            if not context and "machine_id" in columns:
                machines = [
                    m
                    for (m,) in con.execute(
                        f'SELECT DISTINCT machine_id FROM one."{table}"'
                    ).fetchall()
                ]
            for i in range(processes):
                if machines:  # each machine's rows in its process's file
                    own = [m for m in machines if m is not None and shard_of(m, processes) == i]
                    where, params = "machine_id IN (SELECT unnest(?))", [own]
                else:  # the context in every file; a table without machines in process 0's
                    where, params = ("true" if context or not i else "false"), []
                con.execute(
                    f'CREATE TABLE p{i}."{table}" AS SELECT * FROM one."{table}" WHERE {where}',
                    params,
                )
    finally:
        con.close()
    return store


@pytest.fixture(scope="module")
def plant(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("plant")
    one = build(tmp / "floorsight.duckdb")
    return one, split(one, tmp / "store", 2)


@pytest.mark.parametrize("page", PAGES)
def test_each_page_shows_on_a_store_what_it_shows_on_one_file(monkeypatch, plant, page) -> None:
    one, store = plant
    on_file, on_store = open_app(monkeypatch, one, page), open_app(monkeypatch, store, page)
    assert metrics(on_store) == metrics(on_file)
    assert len(on_store.dataframe) == len(on_file.dataframe) > 0
    for got, expected in zip(on_store.dataframe, on_file.dataframe, strict=True):
        pd.testing.assert_frame_equal(got.value, expected.value)


def test_acknowledging_on_a_store_writes_the_file_of_the_alerts_process(
    monkeypatch, plant, tmp_path
) -> None:
    store = Path(shutil.copytree(plant[1], tmp_path / "store"))
    at = open_app(monkeypatch, store, "page_alerts.py", user="maria")
    at.text_area(key="comment").input("checking")
    at.button(key="acknowledge").click().run()
    assert not at.exception, [e.value for e in at.exception]
    acted = at.success[0].value.split(":")[0]  # "<alert>: acknowledge recorded by maria"
    machine = (
        Database(store).query("SELECT machine_id FROM alerts WHERE alert_id = ?", [acted]).item()
    )
    owner = shard_of(machine, 2)
    assert lifecycle.history(partition_file(store, owner), acted)["action"].to_list() == [
        "acknowledged"
    ]
    assert lifecycle.history(partition_file(store, 1 - owner), acted).height == 0
    status = "SELECT status FROM alerts WHERE alert_id = ?"
    assert Database(partition_file(store, owner)).query(status, [acted]).item() == "acknowledged"
    assert Database(store).query(status, [acted]).item() == "acknowledged"
