"""The pipeline against the simulator's OPC-UA server, which restarts mid-run.

The server writes every sample and keeps a history; the restarted server puts the readings of
the whole run into its history first (store and forward). The feature table must have every
window of every sensor, each with all of its readings: no gap where the server was down, no
duplicate from the readings seen both live and in the history.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from datetime import timedelta

import polars as pl
import pytest
from bytewax.testing import run_main

from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.opcua_source import OpcUaSource
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulators import build_plant
from floorsight.simulators.opcua_server import PlantServer
from floorsight.storage import Database
from tests.conftest import T0

pytestmark = pytest.mark.e2e
SPEED = 20.0
START = T0 + timedelta(minutes=5)
UNTIL = START + timedelta(seconds=120)
WINDOW = timedelta(seconds=10)


def _url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"opc.tcp://127.0.0.1:{s.getsockname()[1]}/"


class RestartingServer(threading.Thread):
    """Serves the plant, stops after ``up_s`` wall seconds, is down ``down_s``, serves again."""

    def __init__(self, plant, url: str, up_s: float, down_s: float) -> None:
        super().__init__(daemon=True)
        self.plant, self.url, self.up_s, self.down_s = plant, url, up_s, down_s
        self.stop = threading.Event()
        self.serving = threading.Event()
        self.restarted = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported by the test
            self.error = e

    async def _main(self) -> None:
        first_stop = threading.Event()
        a = PlantServer(self.plant, self.url, START, SPEED, every_sample=True)
        await a.start_server()
        wall0 = time.monotonic()  # the plant's clock starts with the first server's stream
        self.serving.set()
        task = asyncio.create_task(a.run(first_stop, echo=lambda _: None))
        await asyncio.sleep(self.up_s)
        first_stop.set()
        await task
        await a.stop()
        await asyncio.sleep(self.down_s)
        # the plant's clock went on while the server was down
        now = START + timedelta(seconds=(time.monotonic() - wall0) * SPEED)
        b = PlantServer(self.plant, self.url, now, SPEED, every_sample=True, backfill_from=START)
        await b.start_server()
        self.restarted.set()
        try:
            await b.run(self.stop, echo=lambda _: None)
        finally:
            await b.stop()


def test_server_restart_leaves_no_gap_and_no_duplicate(tmp_path) -> None:
    plant = build_plant(
        2,
        start=T0,
        horizon=timedelta(hours=1),
        seed=3,
        faults=(),
        setup_minutes=(0, 1),
        idle_share=0.0,
    )
    assert set(plant.states()["state"]) == {"running"}
    plant.write_context(tmp_path / "erp")
    url = _url()
    db = tmp_path / "f.duckdb"
    settings = PipelineSettings(window=WINDOW, rules=ReadingRules(max_future=timedelta(days=3650)))
    flow = build_flow(OpcUaSource(url, until=UNTIL), ContextStore(tmp_path / "erp"), db, settings)
    server = RestartingServer(plant, url, up_s=2.0, down_s=1.5)
    server.start()
    # the pipeline starts once the first server listens: a source that finds no server backs
    # off (0.2, 0.4, 0.8, 1.6 s, ...) and could first connect after the restart, which this
    # test is not about
    assert server.serving.wait(timeout=60), server.error
    try:
        run_main(flow)
    finally:
        server.stop.set()
        server.join(timeout=30)
    assert server.error is None, server.error
    assert server.restarted.is_set()

    got = Database(db).query(
        "SELECT machine_id, sensor, window_start, n, mean FROM features ORDER BY ALL"
    )
    first = got["window_start"].min()
    # whole windows from the first complete one to the last before UNTIL
    lo, hi = first + WINDOW, UNTIL - WINDOW
    expected = (
        plant.readings(lo, hi)
        .with_columns(window_start=pl.col("ts").dt.truncate("10s"))
        .group_by("machine_id", "sensor", "window_start")
        .agg(n=pl.len(), mean=pl.col("value").mean())
        .sort("machine_id", "sensor", "window_start")
    )
    inside = got.filter(pl.col("window_start").is_between(lo, hi, closed="left"))
    # the restart fell well inside the compared range (up 2 s + down 1.5 s at x20 = 70 s)
    assert lo < START + timedelta(seconds=40) and hi > START + timedelta(seconds=80)
    assert inside.select("machine_id", "sensor", "window_start").is_duplicated().sum() == 0
    assert inside["n"].to_list() == expected["n"].cast(pl.Int64).to_list()
    assert inside.height == expected.height == 2 * 4 * (hi - lo) // WINDOW
    diff = (inside["mean"] - expected["mean"]).abs().max()
    assert diff < 1e-9
