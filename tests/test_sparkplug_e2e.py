"""Sparkplug B end to end: Eclipse Tahu's own edge node, stock Mosquitto, the pipeline, DuckDB.

An edge node built on Tahu's npm ``sparkplug-client`` (``tests/sparkplug_node/edge_node.js``;
it adds seq and bdSeq itself and leaves its NDEATH as its will) publishes an NBIRTH, a DBIRTH
per press with metric aliases, 40 s of DDATA by alias only, a DDEATH and its NDEATH, to a real
Mosquitto in its stock configuration. The pipeline (``MqttSource`` with the
:class:`SparkplugDecoder`, the whole flow) ends with the feature rows of every device metric,
each window with its full count; the machine states of the births; and a dead letter for a
String metric and for an alias no birth defined.
"""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import timedelta

import polars as pl
import pytest
from bytewax.testing import run_main

from floorsight.pipelines.context import ContextStore, sensor_units
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.mqtt_source import MqttSource
from floorsight.pipelines.sparkplug import SparkplugDecoder
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulators import build_plant
from floorsight.storage import Database
from tests.conftest import T0
from tests.sparkplug_tahu import NODE_DIR, node_binary

pytestmark = pytest.mark.e2e
START = T0 + timedelta(minutes=5)
SECONDS = 40
UNTIL = START + timedelta(seconds=SECONDS)
GROUP, EDGE = "PressShop", "gateway-7"


def ms(t) -> int:
    return int(t.timestamp() * 1000)


def plan_of(plant, host: str, port: int) -> tuple[dict, pl.DataFrame]:
    """The edge node's plan: one value per sensor and second from the simulated plant, sent
    under Sparkplug metric names ('spindle temp c'), and the readings it amounts to."""
    sent = (
        plant.readings(START, UNTIL + timedelta(seconds=2))
        .filter(pl.col("ts").dt.millisecond() == 0)
        .sort("machine_id", "sensor", "ts")
    )
    sensors = sorted(sent["sensor"].unique())
    alias = {s: i + 1 for i, s in enumerate(sensors)}
    devices, data = {}, []
    for (machine,), rows in sent.group_by("machine_id", maintain_order=True):
        first = rows.filter(pl.col("ts") == START)
        devices[machine] = [
            {
                "name": s.replace("_", " "),
                "alias": alias[s],
                "type": "Double",
                "value": v,
                "timestamp": ms(START),
            }
            for s, v in first.select("sensor", "value").iter_rows()
        ] + [{"name": "Recipe", "alias": 90, "type": "String", "value": "P-100"}]
        for (ts,), at in rows.filter(pl.col("ts") > START).group_by("ts", maintain_order=True):
            metrics = [
                {"alias": alias[s], "type": "Double", "value": v}
                for s, v in at.select("sensor", "value").iter_rows()
            ]
            data.append({"device": machine, "timestamp": ms(ts), "metrics": metrics})
    data.sort(key=lambda d: d["timestamp"])
    data.insert(
        5,
        {
            "device": "M01",
            "timestamp": ms(START),
            "metrics": [{"alias": 99, "type": "Double", "value": 1.0}],
        },
    )
    plan = {
        "serverUrl": f"mqtt://{host}:{port}",
        "groupId": GROUP,
        "edgeNode": EDGE,
        "node": [],
        "devices": devices,
        "data": data,
        "deathOf": ["M02"],
    }
    return plan, sent.filter(pl.col("ts") < UNTIL)


def test_a_tahu_edge_node_on_stock_mosquitto_ends_in_the_features(mosquitto, tmp_path):
    node = node_binary()
    host, port = mosquitto
    plant = build_plant(
        2,
        start=T0,
        horizon=timedelta(hours=1),
        seed=5,
        faults=(),
        setup_minutes=(0, 1),
        idle_share=0.0,
    )
    plant.write_context(tmp_path / "erp")
    plan, sent = plan_of(plant, host, port)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    ready = threading.Event()
    source = MqttSource(
        host,
        port,
        client_id="test-sparkplug",
        until=UNTIL,
        units=sensor_units(tmp_path / "erp"),
        ready=ready,
        decoder=lambda: SparkplugDecoder(group=GROUP),
    )
    settings = PipelineSettings(rules=ReadingRules(max_future=timedelta(days=3650)))
    flow = build_flow(source, ContextStore(tmp_path / "erp"), tmp_path / "f.duckdb", settings)
    edge: list[subprocess.CompletedProcess] = []

    def run_edge_node() -> None:
        assert ready.wait(30), "the MQTT source did not subscribe"
        edge.append(
            subprocess.run(
                [node, str(NODE_DIR / "edge_node.js"), str(tmp_path / "plan.json")],
                check=False,  # its exit code and stderr are asserted below
                capture_output=True,
                text=True,
                timeout=60,
            )
        )

    thread = threading.Thread(target=run_edge_node)
    thread.start()
    run_main(flow, epoch_interval=timedelta(seconds=0.5))
    thread.join(timeout=60)
    assert edge and edge[0].returncode == 0, edge and edge[0].stderr

    db = Database(tmp_path / "f.duckdb")
    got = db.query("SELECT machine_id, sensor, window_start, n FROM features ORDER BY ALL")
    expected = (
        sent.group_by("machine_id", "sensor", window_start=pl.col("ts").dt.truncate("10s"))
        .agg(n=pl.len().cast(pl.Int32))
        .sort("machine_id", "sensor", "window_start")
    )
    assert got.height == expected.height == 2 * 4 * (SECONDS // 10)
    assert got["n"].to_list() == expected["n"].to_list() == [10] * got.height
    reasons = db.query("SELECT reason FROM dead_letters")["reason"].to_list()
    assert sum("metric 'Recipe' is a String" in r for r in reasons) == 2  # one per DBIRTH
    assert sum("alias 99 is unknown" in r for r in reasons) == 1
    assert len(reasons) == 3
    states = db.query("SELECT machine_id, text FROM machine_states ORDER BY since, machine_id")
    assert ("M01", "online") in states.rows() and ("M02", "online") in states.rows()
