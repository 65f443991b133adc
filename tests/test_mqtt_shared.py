"""Shared subscriptions: the MQTT source in several partitions, the broker splitting the messages.

A real Mosquitto in its stock configuration (it serves ``$share/<group>/<filter>``, MQTT 5). The
source runs as two partitions on two workers, each a receiver with its own session and journal;
every reading published ends in the features exactly once, and both partitions took a share.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import polars as pl
import pytest
from bytewax.testing import cluster_main

from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.mqtt_journal import JournalReader, journal_end
from floorsight.pipelines.mqtt_source import MqttSource
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulators import build_plant
from floorsight.simulators.mqtt_publisher import MqttPublisher
from floorsight.storage import Database
from tests.conftest import T0

pytestmark = pytest.mark.e2e
START = T0 + timedelta(minutes=5)
UNTIL = START + timedelta(seconds=20)


def test_two_partitions_share_the_messages_and_every_reading_is_in_the_features_once(
    mosquitto, tmp_path
) -> None:
    host, port = mosquitto
    plant = build_plant(
        2,
        start=T0,
        horizon=timedelta(hours=1),
        seed=7,
        faults=(),
        setup_minutes=(0, 1),
        idle_share=0.0,
    )
    plant.write_context(tmp_path / "erp")
    journal = tmp_path / "journal"
    source = MqttSource(
        host, port, client_id="test-shared", until=UNTIL, journal=journal, share="fs", partitions=2
    )
    assert source.list_parts() == ["mqtt-0", "mqtt-1"]
    # a machine's readings come through both partitions, out of order between them: the
    # allowed lateness covers a publisher far faster than real time
    settings = PipelineSettings(
        rules=ReadingRules(max_future=timedelta(days=3650)),
        lateness=timedelta(minutes=10),
        shards=2,
    )
    flow = build_flow(source, ContextStore(tmp_path / "erp"), tmp_path / "f.duckdb", settings)
    wanted = plant.readings(START, UNTIL).sort("ts")
    tail = plant.readings(UNTIL, UNTIL + timedelta(seconds=2)).sort("ts")
    failures: list[BaseException] = []

    def publish() -> None:
        try:
            deadline = time.monotonic() + 30
            while not all((journal / f"part-{i}" / "subscribed").exists() for i in (0, 1)):
                assert time.monotonic() < deadline, "the partitions did not subscribe"
                time.sleep(0.05)
            pub = MqttPublisher.for_plant(plant, host, port, client_id="test-shared-pub")
            try:
                pub.publish_frame(wanted)
                pub.flush()
                pub.publish_frame(tail)  # both partitions see time pass beyond UNTIL
                pub.flush()
            finally:
                pub.close()
        except BaseException as e:
            failures.append(e)

    publisher = threading.Thread(target=publish)
    publisher.start()
    cluster_main(flow, [], 0, worker_count_per_proc=2, epoch_interval=timedelta(seconds=0.5))
    publisher.join(timeout=60)
    assert not failures, failures

    counts, payloads = [], []
    for i in (0, 1):
        folder = journal / f"part-{i}"
        reader = JournalReader(folder)
        messages = reader.read(reader.first or 0, 1_000_000, journal_end(folder))
        reader.close()
        counts.append(len(messages))
        payloads += [m.payload for m in messages if not m.topic.endswith("/status")]
    assert min(counts) > 0, counts  # each partition took a share
    assert len(payloads) == len(set(payloads)) == wanted.height + tail.height  # none twice

    db = Database(tmp_path / "f.duckdb")
    got = db.query("SELECT machine_id, sensor, window_start, n FROM features ORDER BY ALL")
    expected = (
        wanted.group_by("machine_id", "sensor", window_start=pl.col("ts").dt.truncate("10s"))
        .agg(n=pl.len().cast(pl.Int32))
        .sort("machine_id", "sensor", "window_start")
    )
    assert got.height == expected.height
    assert got["n"].to_list() == expected["n"].to_list()
    assert db.query("SELECT count(*) AS n FROM dead_letters")["n"][0] == 0
