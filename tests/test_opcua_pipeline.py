"""The pipeline against OPC-UA servers: the simulator's, which restarts mid-run, and one that is
not floorsight's, read through a tag map in subscribe and in poll mode.

The simulator's server writes every sample and keeps a history; the restarted server puts the
readings of the whole run into its history first (store and forward). The feature table must
have every window of every sensor, each with all of its readings: no gap where the server was
down, no duplicate from the readings seen both live and in the history.

The press shop's server (tests/opcua_servers.py, its own namespace registered after two others)
is read through a tag map with ``nsu=`` node ids, scale and offset: every mapped sensor has its
feature rows, whole windows with every value; its state and counter nodes reach the machine
state and part count tables.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from bytewax.testing import run_main

from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.opcua_source import OpcUaSource
from floorsight.pipelines.opcua_tags import read_tag_map
from floorsight.pipelines.validate import Checked, ReadingRules
from floorsight.records import Signals
from floorsight.simulators import build_plant
from floorsight.simulators.opcua_server import PlantServer
from floorsight.storage import Database
from tests.conftest import T0
from tests.opcua_servers import AcmeServer, free_url, serving_plant

pytestmark = pytest.mark.e2e
SPEED = 20.0
START = T0 + timedelta(minutes=5)
UNTIL = START + timedelta(seconds=120)
WINDOW = timedelta(seconds=10)


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
        self.serving.set()
        # the plant's clock starts once the pipeline has subscribed, so a slow first connect
        # (a loaded machine) cannot push the pipeline's first reading past the restart
        subscriptions = a.server.iserver.subscription_service.subscriptions
        deadline = time.monotonic() + 60
        while not subscriptions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        wall0 = time.monotonic()
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
    url = free_url(path="")
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


def _press_shop_context(folder) -> None:
    folder.mkdir()
    (folder / "work_orders.csv").write_text(
        "work_order,machine_id,product,material_lot,start,end\n"
        "WO-7,press-7,P-1,LOT-1,2020-01-01T00:00:00Z,2099-01-01T00:00:00Z\n"
        "WO-8,press-8,P-1,LOT-2,2020-01-01T00:00:00Z,2099-01-01T00:00:00Z\n"
    )
    (folder / "spec_limits.csv").write_text(
        "product,characteristic,lsl,target,usl\nP-1,force,0,100,400\n"
    )


class PressShopWriter(threading.Thread):
    """Writes one value a second of event time to each mapped node, every ``every_s`` wall
    seconds, from ``start`` until ``stop`` is set; once ``ready()`` says the source reads."""

    def __init__(self, server: AcmeServer, start, every_s: float, ready) -> None:
        super().__init__(daemon=True)
        self.server, self.start_ts, self.every_s, self.ready = server, start, every_s, ready
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 60
            while not self.ready() and time.monotonic() < deadline:
                time.sleep(0.05)
            i = 0
            while not self.stop.is_set() and i < 600:
                ts = self.start_ts + timedelta(seconds=i)
                self.server.write("Press7", "Force", 100.0 + i, source_ts=ts)
                self.server.write("Press7", "Strokes", i, source_ts=ts)
                self.server.write("Press 8/B", "Force", 200.0 + i, source_ts=ts)
                self.server.write("Press7", "State", 6 if i % 20 < 10 else 5, source_ts=ts)
                self.server.write("Press7", "GoodParts", 2 * i, source_ts=ts)
                i += 1
                time.sleep(self.every_s)
        except BaseException as e:  # reported by the test
            self.error = e


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
def test_a_tag_mapped_server_of_its_own_gives_every_sensor_its_features(tmp_path, mode) -> None:
    with AcmeServer(extra_namespaces=("urn:other:first", "urn:other:second")) as server:
        assert server.ns == 4
        (tmp_path / "tags.csv").write_text(
            "node_id,machine_id,sensor,unit,line,scale,offset,min,max,kind\n"
            f"{server.node_text('Press7', 'Force')},press-7,force,kN,L1,0.5,10,0,400,\n"
            f"{server.node_text('Press7', 'Strokes')},press-7,strokes,,L1,,,,,\n"
            f"{server.node_text('Press 8/B', 'Force')},press-8,force,kN,L1,,,,,\n"
            f"{server.node_text('Press7', 'State')},press-7,,,L1,,,,,state\n"
            f"{server.node_text('Press7', 'GoodParts')},press-7,,,L1,,,,,good_count\n"
        )
        _press_shop_context(tmp_path / "erp")
        # event time: whole seconds from a whole 10 s, after every value the server holds now
        now = datetime.now(tz=UTC)
        start = (now + timedelta(seconds=20)).replace(microsecond=0, second=0) + timedelta(
            minutes=1
        )
        until = start + timedelta(seconds=40)
        source = OpcUaSource(
            server.url,
            tags=read_tag_map(tmp_path / "tags.csv"),
            until=until,
            mode=mode,
            interval=timedelta(seconds=0.05),
        )
        db = tmp_path / "f.duckdb"
        settings = PipelineSettings(
            window=WINDOW, rules=ReadingRules(max_future=timedelta(hours=1))
        )
        flow = build_flow(source, ContextStore(tmp_path / "erp"), db, settings)
        if mode == "subscribe":  # every value is delivered: write them fast
            writer = PressShopWriter(server, start, 0.05, lambda: server.monitored() >= 5)
        else:  # a value must stand a few polls: write them slower
            writer = PressShopWriter(server, start, 0.2, lambda: True)
        writer.start()
        try:
            run_main(flow)
        finally:
            writer.stop.set()
            writer.join(timeout=30)
    assert writer.error is None, writer.error
    got = Database(db).query(
        "SELECT machine_id, sensor, window_start, n, mean, min, max FROM features "
        "WHERE window_start >= $1 AND window_start < $2 ORDER BY ALL",
        [start, until - WINDOW],
    )
    # every mapped sensor, each whole window (value * scale + offset)
    expected = []
    for machine_id, sensor, value in [
        ("press-7", "force", lambda i: 0.5 * (100.0 + i) + 10),
        ("press-7", "strokes", float),
        ("press-8", "force", lambda i: 200.0 + i),
    ]:
        for w in range(3):
            values = [value(10 * w + k) for k in range(10)]
            expected.append((machine_id, sensor, start + w * WINDOW, values))
    assert got.select("machine_id", "sensor", "window_start").rows() == [e[:3] for e in expected]
    states = Database(db).query(
        "SELECT since, code FROM machine_states WHERE since >= $1 AND since < $2 ORDER BY since",
        [start, until],
    )
    parts = Database(db).query(
        "SELECT sum(parts) FROM part_counts WHERE signal = 'good_count' AND ts > $1 AND ts < $2",
        [start, until],
    )
    if mode == "subscribe":  # every value delivered: each window has all of its 10
        assert got.select("n", "mean").rows() == [(10, sum(v) / 10) for *_, v in expected]
        assert states.rows() == [
            (start + timedelta(seconds=s), float(c)) for s, c in [(0, 6), (10, 5), (20, 6), (30, 5)]
        ]
        assert parts.item() == 2 * 39  # the counter rose by 2 each second after the first
    else:  # polled: the values that stood when read, each once
        for (n, low, high), (*_, values) in zip(
            got.select("n", "min", "max").rows(), expected, strict=True
        ):
            assert 1 <= n <= 10 and min(values) <= low <= high <= max(values)
        assert [code for _, code in states.rows()][:2] in ([6.0, 5.0], [5.0, 6.0])
        assert 0 < parts.item() <= 2 * 39


def test_the_simulators_state_and_counters_are_signals_without_a_tag_map() -> None:
    plant = build_plant(1, start=T0, horizon=timedelta(hours=1), seed=4, faults=())
    with serving_plant(plant, START, SPEED) as url:
        source = OpcUaSource(url)
        part = source.build_part("s", source.list_parts()[0], None)
        kinds, sensors = set(), set()
        deadline = time.monotonic() + 30
        try:
            while (len(kinds) < 3 or not sensors) and time.monotonic() < deadline:
                for item in part.next_batch():
                    if isinstance(item, Signals):
                        kinds |= set(item.frame["signal"])
                    else:
                        frame = item.ok if isinstance(item, Checked) else item
                        sensors |= set(frame["sensor"])
                time.sleep(0.05)
        finally:
            part.close()
    assert kinds == {"state", "good_count", "scrap_count"}
    # the sensors are the variables with EngineeringUnits: none of the signals among them
    assert sensors and not sensors & {"State", "GoodCount", "ScrapCount", "state"}
