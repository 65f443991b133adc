"""``floorsight simulate``: build a plant (or a replay of a recorded dataset) and serve or write it.

Two clocks: ``write`` computes a history as fast as it can (files), ``serve`` runs the plant on
the wall clock (times ``speed``) over OPC-UA and/or MQTT until its end or until stopped.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from floorsight.records import FaultKind
from floorsight.simulators import Plant, build_plant, fault_scenario
from floorsight.simulators.history import HistoryStats, write_history
from floorsight.simulators.plant import resolve_bad_lots


@dataclass
class PlantOptions:
    machines: int = 3
    start: datetime | None = None
    horizon: timedelta = timedelta(days=1)
    seed: int = 0
    sample_hz: int = 10
    faults_per_machine_day: float = 1.0
    fault_kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    machine_types: tuple[str, ...] | None = None


def make_plant(opts: PlantOptions) -> Plant:
    """A plant with a seeded mix of faults of the given kinds."""
    plant = build_plant(
        opts.machines,
        start=opts.start,
        horizon=opts.horizon,
        seed=opts.seed,
        sample_hz=opts.sample_hz,
        faults=(),
        machine_types=opts.machine_types,
    )
    faults = fault_scenario(
        plant.start,
        {m.machine_id: m.type for m in plant.machines},
        opts.horizon,
        seed=opts.seed,
        per_machine_day=opts.faults_per_machine_day,
        kinds=opts.fault_kinds,
    )
    plant.faults = resolve_bad_lots(plant, faults)
    return plant


def write(plant: Plant, out: Path, fmt: str = "parquet") -> HistoryStats:
    return write_history(plant, out, plant.start, plant.end, fmt=fmt)


@dataclass
class Serving:
    """Where to serve a plant live."""

    opcua: str | None = None
    mqtt: str | None = None  # host:port
    users: dict[str, str] | None = None
    secure: bool = False
    cert_dir: Path | None = None
    mqtt_prefix: str = "plant"
    every_sample: bool = False
    threads: list[threading.Thread] = field(default_factory=list)


def serve(
    plant,
    serving: Serving,
    start: datetime,
    speed: float,
    end: datetime | None,
    stop: threading.Event,
    echo=print,
) -> None:
    """Serve ``plant`` (a Plant or a ReplayPlant) over OPC-UA and/or MQTT until ``end``/``stop``."""
    if serving.opcua is None and serving.mqtt is None:
        raise ValueError("nothing to serve: give an OPC-UA endpoint and/or an MQTT broker")
    if serving.mqtt is not None:
        from floorsight.simulators.mqtt_publisher import publish

        host, _, port = serving.mqtt.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--mqtt must be HOST:PORT, got {serving.mqtt!r}")
        echo(f"publishing to mqtt://{host}:{port}/{serving.mqtt_prefix}/# (QoS 1)")
        t = threading.Thread(
            target=publish,
            kwargs={
                "plant": plant,
                "host": host,
                "port": int(port),
                "start": start,
                "speed": speed,
                "end": end,
                "stop_event": stop,
                "prefix": serving.mqtt_prefix,
            },
            name="mqtt-publisher",
            daemon=True,
        )
        t.start()
        serving.threads.append(t)
    if serving.opcua is not None:
        from floorsight.simulators.opcua_server import serve as serve_opcua

        echo(f"serving OPC-UA at {serving.opcua} (Objects/Plant/<line>/<machine>/<sensor>)")
        serve_opcua(
            plant,
            serving.opcua,
            start,
            speed,
            end=end,
            users=serving.users,
            secure=serving.secure,
            cert_dir=serving.cert_dir,
            stop_event=stop,
            every_sample=serving.every_sample,
        )
    for t in serving.threads:
        with contextlib.suppress(KeyboardInterrupt):
            while t.is_alive():
                t.join(timeout=0.5)
