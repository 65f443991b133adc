"""``floorsight run --mqtt --recovery DIR`` SIGKILLed mid-stream and started again: the features
equal those of a run that was never killed (0 readings lost, 0 duplicated), on Mosquitto in its
stock configuration."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.simulators.mqtt_publisher import MqttPublisher
from floorsight.storage import Database
from tests.mqtt_helpers import MqttRun, steady_plant

pytestmark = pytest.mark.e2e
# live sources take event times near the wall clock: the plant runs an hour behind it
START = datetime.now(tz=UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
SECONDS = 40


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(mosquitto, tmp_path) -> None:
    host, port = mosquitto
    broker = f"{host}:{port}"
    plant = steady_plant(tmp_path / "erp", seed=11, start=START - timedelta(minutes=5))
    seconds = [
        plant.readings(START + timedelta(seconds=s), START + timedelta(seconds=s + 1)).sort("ts")
        for s in range(SECONDS)
    ]
    pub = MqttPublisher.for_plant(plant, host, port, client_id="test-crash-pub")

    def publish(frames: list[pl.DataFrame]) -> int:
        n = sum(pub.publish_frame(f) for f in frames)
        pub.flush()
        return n

    try:
        # a clean run over the whole stream
        clean = MqttRun(broker, tmp_path / "erp", tmp_path / "clean.duckdb", tmp_path / "rec-clean")
        clean.has(publish(seconds))
        clean.stop()

        # the same stream, killed in the middle, and while it is down the broker queues
        # (stock limit: 1,000 per client) what comes
        run = MqttRun(broker, tmp_path / "erp", tmp_path / "crash.duckdb", tmp_path / "rec-crash")
        sent = publish(seconds[:20])
        run.has(sent)
        run.kill()
        sent += publish(seconds[20:26])  # 480 readings for the broker to keep
        run = MqttRun(broker, tmp_path / "erp", tmp_path / "crash.duckdb", tmp_path / "rec-crash")
        sent += publish(seconds[26:])
        run.has(sent)  # (more when a replayed message was not acknowledged before the kill)
        run.stop()
    finally:
        pub.close()

    def features(db: Path) -> pl.DataFrame:
        frame = Database(db).query("SELECT * FROM features")
        volatile = [c for c in frame.columns if c.endswith("_at")]
        return frame.drop(volatile).sort("machine_id", "sensor", "window_start")

    want, got = features(tmp_path / "clean.duckdb"), features(tmp_path / "crash.duckdb")
    assert want["n"].sum() == sum(f.height for f in seconds)  # the clean run has every reading
    assert_frame_equal(got, want)
    assert os.listdir(tmp_path / "rec-crash" / "mqtt-journal")  # the journal was in use
