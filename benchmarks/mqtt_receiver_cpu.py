"""CPU time per message of the MQTT source's receiver (paho's loop, journal, acknowledgements).

Starts a Mosquitto on 127.0.0.1 in its stock configuration, runs a ``Receiver`` (not durable) in
this process and publishes ``--messages`` QoS 1 messages to it from a paho client; prints the
receiver thread's CPU time per message. ``--shared-tables`` first lets paho's ``Properties``
share their lookup tables, as the receiver's process does (``share_property_tables``)::

    .venv/bin/python benchmarks/mqtt_receiver_cpu.py [--messages 40000] [--shared-tables]

CPU time, so that other work on a shared machine counts less than in wall time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from floorsight.pipelines.mqtt_receiver import Broker, Receiver, share_property_tables


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--shared-tables", action="store_true")
    args = parser.parse_args()
    if args.shared_tables:
        share_property_tables()
    folder = Path(tempfile.mkdtemp(prefix="floorsight-receiver-bench-"))
    port = free_port()
    (folder / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([binary, "-c", str(folder / "mosquitto.conf")])
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
        receiver = Receiver(
            Broker("127.0.0.1", port), ["plant/#"], "bench-receiver", folder / "j", False, 0, 10**8
        )
        body = json.dumps(
            {"machine_id": "M01", "sensor": "s", "ts": "2026-01-05T06:00:00+00:00", "value": 1.5}
        ).encode()

        def publish() -> None:
            while not (folder / "j" / "subscribed").exists():
                time.sleep(0.05)
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
            client.connect("127.0.0.1", port)
            client.loop_start()
            sent = [client.publish("plant/L1/M01/s", body, qos=1) for _ in range(args.messages)]
            for info in sent:
                info.wait_for_publish(120)
            client.loop_stop()
            client.disconnect()

        def stop_when_done() -> None:
            while receiver.journal.end < args.messages:
                time.sleep(0.05)
            receiver.closing.set()

        cpu: dict[str, float] = {}

        def run() -> None:
            start = time.thread_time()
            receiver.run()
            cpu["s"] = time.thread_time() - start

        threads = [threading.Thread(target=f) for f in (publish, stop_when_done, run)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(
            json.dumps(
                {
                    "messages": receiver.journal.end,
                    "shared_tables": args.shared_tables,
                    "receiver_cpu_s": round(cpu["s"], 2),
                    "cpu_us_per_message": round(cpu["s"] / args.messages * 1e6, 1),
                }
            )
        )
    finally:
        broker.terminate()
        broker.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
