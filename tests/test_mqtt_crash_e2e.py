"""``floorsight run --mqtt --recovery DIR`` SIGKILLed mid-stream and started again: the features
equal those of a run that was never killed (0 readings lost, 0 duplicated), on Mosquitto in its
stock configuration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floorsight.pipelines.mqtt_journal import journal_end
from floorsight.simulators import build_plant
from floorsight.simulators.mqtt_publisher import MqttPublisher
from floorsight.storage import Database

pytestmark = pytest.mark.e2e
# live sources take event times near the wall clock: the plant runs an hour behind it
START = datetime.now(tz=UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
SECONDS = 40


def wait_until(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


class Run:
    """One ``floorsight run --mqtt`` process with its recovery folder."""

    def __init__(self, broker: str, erp: Path, db: Path, recovery: Path) -> None:
        self.journal = recovery / "mqtt-journal"
        (self.journal / "subscribed").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "floorsight.cli", "run", "--mqtt", broker),
                *("--context", str(erp), "--db", str(db), "--recovery", str(recovery)),
                *("--snapshot-s", "0.5"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_until(self._subscribed, "the pipeline's subscription")

    def _subscribed(self) -> bool:
        assert self.proc.poll() is None, self.proc.communicate()[0][-3000:]
        return (self.journal / "subscribed").exists()

    def has(self, n: int) -> None:
        wait_until(lambda: journal_end(self.journal) >= n, f"{n} messages in the journal")

    def kill(self) -> None:
        receivers = children(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)
        # the receiver goes with its pipeline (before a new one may open the journal)
        wait_until(lambda: not any(Path(f"/proc/{c}").exists() for c in receivers), "receiver")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, out[-3000:]


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(mosquitto, tmp_path) -> None:
    host, port = mosquitto
    broker = f"{host}:{port}"
    plant = build_plant(
        2,
        start=START - timedelta(minutes=5),
        horizon=timedelta(hours=1),
        seed=11,
        faults=(),
        setup_minutes=(0, 1),
        idle_share=0.0,
    )
    plant.write_context(tmp_path / "erp")
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
        clean = Run(broker, tmp_path / "erp", tmp_path / "clean.duckdb", tmp_path / "rec-clean")
        clean.has(publish(seconds))
        clean.stop()

        # the same stream, killed in the middle, and while it is down the broker queues
        # (stock limit: 1,000 per client) what comes
        run = Run(broker, tmp_path / "erp", tmp_path / "crash.duckdb", tmp_path / "rec-crash")
        sent = publish(seconds[:20])
        run.has(sent)
        run.kill()
        sent += publish(seconds[20:26])  # 480 readings for the broker to keep
        run = Run(broker, tmp_path / "erp", tmp_path / "crash.duckdb", tmp_path / "rec-crash")
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
