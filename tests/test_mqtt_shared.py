"""Shared subscriptions: the MQTT source in several partitions, the broker splitting the messages.

A real Mosquitto in its stock configuration (it serves ``$share/<group>/<filter>``, MQTT 5). The
source runs as two partitions on two workers, each a receiver with its own session and journal;
every reading published ends in the features exactly once, and both partitions took a share.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from bytewax.testing import cluster_main

from floorsight.pipelines.mqtt_journal import JournalReader, journal_end
from floorsight.pipelines.mqtt_source import MqttSource
from floorsight.simulators.mqtt_publisher import MqttPublisher
from floorsight.storage import Database
from tests.conftest import T0
from tests.mqtt_helpers import (
    FEATURE_COUNTS,
    in_background,
    mqtt_flow,
    steady_plant,
    wait_until,
    window_counts,
)

pytestmark = pytest.mark.e2e
START = T0 + timedelta(minutes=5)
UNTIL = START + timedelta(seconds=20)


def test_two_partitions_share_the_messages_and_every_reading_is_in_the_features_once(
    mosquitto, tmp_path
) -> None:
    host, port = mosquitto
    plant = steady_plant(tmp_path / "erp", seed=7)
    journal = tmp_path / "journal"
    source = MqttSource(
        host, port, client_id="test-shared", until=UNTIL, journal=journal, share="fs", partitions=2
    )
    assert source.list_parts() == ["mqtt-0", "mqtt-1"]
    # a machine's readings come through both partitions, out of order between them: the
    # allowed lateness covers a publisher far faster than real time
    flow = mqtt_flow(source, tmp_path, lateness=timedelta(minutes=10), shards=2)
    wanted = plant.readings(START, UNTIL).sort("ts")
    tail = plant.readings(UNTIL, UNTIL + timedelta(seconds=2)).sort("ts")

    def publish() -> None:
        subscribed = [journal / f"part-{i}" / "subscribed" for i in (0, 1)]
        wait_until(lambda: all(f.exists() for f in subscribed), "both subscriptions", timeout_s=30)
        pub = MqttPublisher.for_plant(plant, host, port, client_id="test-shared-pub")
        try:
            pub.publish_frame(wanted)
            pub.flush()
            pub.publish_frame(tail)  # both partitions see time pass beyond UNTIL
            pub.flush()
        finally:
            pub.close()

    with in_background(publish, timeout_s=60):
        cluster_main(flow, [], 0, worker_count_per_proc=2, epoch_interval=timedelta(seconds=0.5))

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
    got = db.query(FEATURE_COUNTS)
    expected = window_counts(wanted)
    assert got.height == expected.height
    assert got["n"].to_list() == expected["n"].to_list()
    assert db.query("SELECT count(*) AS n FROM dead_letters")["n"][0] == 0
