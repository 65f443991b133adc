"""Sparkplug B end to end: Eclipse Tahu's own edge node, stock Mosquitto, the pipeline, DuckDB.

An edge node built on Tahu's npm ``sparkplug-client`` (``tests/sparkplug_node/edge_node.js``;
it adds seq and bdSeq itself and leaves its NDEATH as its will) publishes an NBIRTH, a DBIRTH
per press with metric aliases, 40 s of DDATA by alias only (a quarter of them compressed by
the client, GZIP and DEFLATE), a DDEATH and its NDEATH, to a real
Mosquitto in its stock configuration. The pipeline (``MqttSource`` with the
:class:`SparkplugDecoder`, the whole flow) ends with the feature rows of every device metric,
each window with its full count; the machine states of the births; and a dead letter for a
String metric and for an alias no birth defined.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import sqlite3
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from bytewax.testing import run_main

from floorsight.pipelines.context import sensor_units
from floorsight.pipelines.mqtt_source import MqttSource
from floorsight.pipelines.sparkplug import SparkplugDecoder
from floorsight.storage import Database
from tests.conftest import T0
from tests.mqtt_helpers import (
    FEATURE_COUNTS,
    MqttRun,
    in_background,
    mqtt_flow,
    steady_plant,
    wait_until,
    window_counts,
)
from tests.sparkplug_tahu import NODE_DIR, node_binary

pytestmark = pytest.mark.e2e
START = T0 + timedelta(minutes=5)
SECONDS = 40
UNTIL = START + timedelta(seconds=SECONDS)
GROUP, EDGE = "PressShop", "gateway-7"
#: the options of ``floorsight run --mqtt URL`` that read Sparkplug B
SPARKPLUG = ("--mqtt-format", "sparkplug")


def ms(t) -> int:
    return int(t.timestamp() * 1000)


def plan_of(
    plant, host: str, port: int, start=START, until=UNTIL, pause: int | None = None, past_s=2
) -> tuple[dict, pl.DataFrame]:
    """The edge node's plan: one value per sensor and second from the simulated plant, sent
    under Sparkplug metric names ('spindle temp c'), and the readings it amounts to. With
    ``pause``, the edge node waits for a line on stdin after that many seconds of data. The
    data goes on ``past_s`` seconds past ``until`` (a source with ``until`` stops there)."""
    sent = (
        plant.readings(start, until + timedelta(seconds=past_s))
        .filter(pl.col("ts").dt.millisecond() == 0)
        .sort("machine_id", "sensor", "ts")
    )
    sensors = sorted(sent["sensor"].unique())
    alias = {s: i + 1 for i, s in enumerate(sensors)}
    devices, data = {}, []
    for (machine,), rows in sent.group_by("machine_id", maintain_order=True):
        first = rows.filter(pl.col("ts") == start)
        devices[machine] = [
            {
                "name": s.replace("_", " "),
                "alias": alias[s],
                "type": "Double",
                "value": v,
                "timestamp": ms(start),
            }
            for s, v in first.select("sensor", "value").iter_rows()
        ] + [{"name": "Recipe", "alias": 90, "type": "String", "value": "P-100"}]
        for (ts,), at in rows.filter(pl.col("ts") > start).group_by("ts", maintain_order=True):
            metrics = [
                {"alias": alias[s], "type": "Double", "value": v}
                for s, v in at.select("sensor", "value").iter_rows()
            ]
            data.append({"device": machine, "timestamp": ms(ts), "metrics": metrics})
            if len(data) % 4 == 0:  # some compressed by the client, as Tahu's edge nodes may
                data[-1]["compress"] = "GZIP" if len(data) % 8 else "DEFLATE"
    data.sort(key=lambda d: d["timestamp"])
    if pause is not None:
        at = next(i for i, d in enumerate(data) if d["timestamp"] >= ms(start) + pause * 1000)
        data.insert(at, {"pause": True})
    else:
        unknown = {"alias": 99, "type": "Double", "value": 1.0}
        data.insert(5, {"device": "M01", "timestamp": ms(start), "metrics": [unknown]})
    plan = {
        "serverUrl": f"mqtt://{host}:{port}",
        "groupId": GROUP,
        "edgeNode": EDGE,
        "node": [],
        "devices": devices,
        "data": data,
        "deathOf": ["M02"],
    }
    return plan, sent.filter(pl.col("ts") < until)


def test_a_tahu_edge_node_on_stock_mosquitto_ends_in_the_features(mosquitto, tmp_path):
    node = node_binary()
    host, port = mosquitto
    plant = steady_plant(tmp_path / "erp")
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
    flow = mqtt_flow(source, tmp_path)
    edge: list[subprocess.CompletedProcess] = []

    def run_edge_node() -> None:
        assert ready.wait(30), "the MQTT source did not subscribe"
        edge.append(
            subprocess.run(
                [node, str(NODE_DIR / "edge_node.js"), str(tmp_path / "plan.json")],
                check=False,  # its exit code and stderr are asserted below
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
            )
        )

    with in_background(run_edge_node, timeout_s=60):
        run_main(flow, epoch_interval=timedelta(seconds=0.5))
    assert edge and edge[0].returncode == 0, edge and edge[0].stderr

    db = Database(tmp_path / "f.duckdb")
    got = db.query(FEATURE_COUNTS)
    expected = window_counts(sent)
    assert got.height == expected.height == 2 * 4 * (SECONDS // 10)
    assert got["n"].to_list() == expected["n"].to_list() == [10] * got.height
    reasons = db.query("SELECT reason FROM dead_letters")["reason"].to_list()
    assert sum("metric 'Recipe' is a String" in r for r in reasons) == 2  # one per DBIRTH
    assert sum("alias 99 is unknown" in r for r in reasons) == 1
    assert len(reasons) == 3
    states = db.query("SELECT machine_id, text FROM machine_states ORDER BY since, machine_id")
    assert ("M01", "online") in states.rows() and ("M02", "online") in states.rows()


def resumes_with_births(recovery: Path, position: int) -> bool:
    """Whether a restart now resumes from a snapshot of the MQTT source that is past
    ``position`` and holds the edge node's births (read from Bytewax's recovery database: a
    restart loads each state's last snapshot up to the epoch every partition committed)."""
    parts = sorted(recovery.glob("part-*.sqlite3"))
    commits, snaps = [], []
    try:
        for part in parts:
            with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
                commits += [e for (e,) in db.execute("SELECT commit_epoch FROM commits")]
                snaps += db.execute(
                    "SELECT snap_epoch, ser_change FROM snaps WHERE state_key = 'mqtt'"
                ).fetchall()
    except sqlite3.OperationalError:  # being written: ask again
        return False
    if not parts or len(commits) < len(parts):
        return False
    committed = min(commits)
    for epoch, blob in snaps:
        state = pickle.loads(blob) if epoch <= committed and blob else None  # this test's files
        if isinstance(state, dict) and state["position"] >= position:
            return bool(state["decoder"]["nodes"])
    return False


def test_run_sparkplug_killed_and_restarted_keeps_the_births_aliases(mosquitto, tmp_path):
    """The edge node sends its births once and data by alias on both sides of a SIGKILL of
    ``floorsight run``; the restarted run resolves the aliases from its recovery snapshot (no
    rebirth) and the features hold every reading once."""
    node = node_binary()
    host, port = mosquitto
    start = datetime.now(tz=UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    plant = steady_plant(
        tmp_path / "erp", start=start - timedelta(minutes=5), horizon=timedelta(hours=2)
    )
    until = start + timedelta(seconds=SECONDS)
    plan, sent = plan_of(plant, host, port, start, until, pause=SECONDS // 2, past_s=0)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    # NBIRTH, 2 DBIRTH (the values of second 0), DDATA of seconds 1 .. 19
    first = 1 + 2 + 2 * (SECONDS // 2 - 1)
    url, db, rec = f"mqtt://{host}:{port}", tmp_path / "f.duckdb", tmp_path / "rec"
    run = MqttRun(url, tmp_path / "erp", db, rec, *SPARKPLUG)
    edge = subprocess.Popen(
        [node, str(NODE_DIR / "edge_node.js"), str(tmp_path / "plan.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert edge.stdout.readline().strip() == "paused"
        run.has(first)
        # killed once a restart can no longer replay the births from the journal: the
        # aliases must come back with the decoder's state
        wait_until(lambda: resumes_with_births(rec, first), "a snapshot past the births")
        run.kill()
        run = MqttRun(url, tmp_path / "erp", db, rec, *SPARKPLUG)
        edge.stdin.write("go on\n")
        edge.stdin.flush()
        assert edge.wait(timeout=60) == 0, edge.stderr.read()
        # the second half's DDATA, the DDEATH and the NDEATH
        run.has(first + 2 * (SECONDS - SECONDS // 2) + 2)
        out = run.stop()
    finally:
        edge.kill()
        edge.wait(timeout=10)
    got = Database(db).query(FEATURE_COUNTS)
    expected = window_counts(sent)
    assert got.height == expected.height == 2 * 4 * (SECONDS // 10)
    assert got["n"].to_list() == expected["n"].to_list() == [10] * got.height, out[-2000:]
    reasons = Database(db).query("SELECT reason FROM dead_letters")["reason"].to_list()
    assert not [r for r in reasons if "unknown" in r]
    assert {r.split(": ", 1)[1] for r in reasons} == {
        "metric 'Recipe' is a String, not a number (map it as a signal to read it)"
    }
    # births online; the DDEATH takes M02 offline, the NDEATH (after the restart) M01
    states = Database(db).query("SELECT machine_id, text FROM machine_states ORDER BY since")
    for machine in ("M01", "M02"):
        texts = states.filter(pl.col("machine_id") == machine)["text"].to_list()
        assert texts == ["online", "offline"], (machine, texts)
