"""Readings per second through the MQTT source against Mosquitto in its stock configuration.

Starts a Mosquitto on 127.0.0.1 (only a listener, anonymous access and no persistence set, so the
broker's default limits hold: 20 messages in flight, 1,000 queued per client), publishes
``--readings`` readings of a simulated plant as fast as the simulator's publisher can, and runs
the whole pipeline (``build_flow`` on the MQTT source, DuckDB sink) until the source has seen the
end of the stream. Prints how many readings reached the features (the sum of the windows'
counts), how many were lost, and readings per second from the first publish to the pipeline's
end::

    .venv/bin/python benchmarks/mqtt_throughput.py --readings 100000 [--recovery]

With ``--recovery`` the run keeps Bytewax recovery snapshots, as ``floorsight run --mqtt
--recovery DIR`` does (and the source journals what it receives in that folder).
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import polars as pl
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from floorsight.pipelines.context import ContextStore, sensor_units
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.mqtt_source import MqttSource
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulators import build_plant
from floorsight.simulators.mqtt_publisher import MqttPublisher
from floorsight.storage import Database

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
PER_MACHINE_S = 40  # the simulated plant's readings per machine and second (4 sensors, 10 Hz)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stock_mosquitto(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--recovery", action="store_true")
    parser.add_argument("--epoch-s", type=float, default=2.0)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="floorsight-mqtt-bench-"))
    broker, port = stock_mosquitto(folder)
    seconds = max(10, round(args.readings / (args.machines * PER_MACHINE_S) / 10) * 10)
    start = T0 + timedelta(minutes=5)
    until = start + timedelta(seconds=seconds)
    plant = build_plant(
        args.machines,
        start=T0,
        horizon=timedelta(hours=2),
        seed=5,
        faults=(),
        setup_minutes=(0, 1),
        idle_share=0.0,
    )
    plant.write_context(folder / "erp")
    # in event-time order, as a plant publishes: a machine's watermark moves with its readings
    readings = plant.readings(start, until).sort("ts", "machine_id", "sensor")
    stop = threading.Event()
    kw: dict = {"client_id": "bench-pipeline", "until": until, "stop": stop}
    kw["units"] = sensor_units(folder / "erp")
    recovery = None
    if args.recovery:
        (folder / "recovery").mkdir()
        init_db_dir(folder / "recovery", 1)
        recovery = RecoveryConfig(str(folder / "recovery"))
        if "journal" in inspect.signature(MqttSource).parameters:
            kw["journal"] = folder / "recovery" / "mqtt-journal"
    ready = threading.Event()
    if "ready" in inspect.signature(MqttSource).parameters:
        kw["ready"] = ready
    else:  # the source before the journal: its session made beforehand, so the broker queues
        session = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pipeline", clean_session=False
        )
        session.connect("127.0.0.1", port)
        session.subscribe("plant/#", qos=1)
        session.loop(timeout=1.0)
        session.disconnect()
        ready.set()
    source = MqttSource("127.0.0.1", port, **kw)
    settings = PipelineSettings(
        rules=ReadingRules(max_future=timedelta(days=3650)), recovery=args.recovery
    )
    db_path = folder / "f.duckdb"
    flow = build_flow(source, ContextStore(folder / "erp"), db_path, settings)

    published: dict[str, float] = {}

    def publish() -> None:
        ready.wait(60)  # the pipeline is subscribed
        pub = MqttPublisher.for_plant(plant, "127.0.0.1", port, client_id="bench-publisher")
        try:
            published["start"] = time.perf_counter()
            step = 50_000
            for i in range(0, readings.height, step):
                pub.publish_frame(readings.slice(i, step))
                pub.flush(timeout_s=args.timeout_s)
            published["end"] = time.perf_counter()
            # the source stops once it has seen time pass beyond `until`
            pub.publish_frame(plant.readings(until, until + timedelta(seconds=2)).sort("ts"))
            pub.flush(timeout_s=args.timeout_s)
        finally:
            pub.close()

    publisher = threading.Thread(target=publish)
    timer = threading.Timer(args.timeout_s, stop.set)  # a lossy source never sees the end
    timer.start()
    publisher.start()
    run_main(flow, epoch_interval=timedelta(seconds=args.epoch_s), recovery_config=recovery)
    done = time.perf_counter()
    timer.cancel()
    publisher.join(timeout=60)
    broker.terminate()
    _, broker_log = broker.communicate(timeout=10)
    dropped = sum("dropped" in line for line in broker_log.splitlines())

    db = Database(db_path)
    taken = int(db.query("SELECT coalesce(sum(n), 0) AS n FROM features")["n"][0])
    dead = int(db.query("SELECT count(*) AS n FROM dead_letters")["n"][0])
    reasons = db.query(
        "SELECT regexp_replace(reason, '[0-9:.+ -]{6,}', '…', 'g') AS reason, count(*) AS n "
        "FROM dead_letters GROUP BY 1 ORDER BY n DESC LIMIT 5"
    ).rows()
    got = db.query("SELECT machine_id, sensor, window_start, n FROM features")
    expected = (
        readings.group_by("machine_id", "sensor", window_start=pl.col("ts").dt.truncate("10s"))
        .agg(expected=pl.len())
        .join(got, on=["machine_id", "sensor", "window_start"], how="left")
        .filter(pl.col("n").is_null() | (pl.col("n") != pl.col("expected")))
        .sort("window_start")
    )
    elapsed = done - published["start"]
    print(
        json.dumps(
            {
                "readings_published": readings.height,
                "readings_in_features": taken,
                "lost": readings.height - taken,
                "dead_letters": dead,
                "dead_letter_reasons": reasons,
                "publish_s": round(published.get("end", done) - published["start"], 2),
                "elapsed_s": round(elapsed, 2),
                "readings_per_s": round(taken / elapsed),
                "recovery": args.recovery,
                "timed_out": stop.is_set(),
                "windows_short": expected.height,
                "broker_drop_warnings": dropped,
                "first_short": [str(r) for r in expected.head(3).rows()],
            }
        )
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
