"""``floorsight demo``: the simulated plant, the pipeline and the dashboard on this machine.

The plant runs on a simulated clock ``speed`` times faster than the wall clock, so a few wall
minutes show what a plant does in an hour. Headless, it runs for ``minutes`` wall minutes, then
scores the alerts against the simulator's ground truth and prints a summary.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from bytewax.testing import run_main

from floorsight.alerts.dispatcher import Dispatcher
from floorsight.alerts.hygiene import AlertHygiene, load_alert_hygiene
from floorsight.alerts.outbox import Outbox
from floorsight.alerts.routing import Routing, default_routing, load_routing
from floorsight.dashboards import streamlit_command
from floorsight.dashboards.users import demo_users
from floorsight.models.registry import model_settings
from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import NotifySettings, PipelineSettings, build_flow
from floorsight.pipelines.sources import FrameSource
from floorsight.pipelines.validate import ReadingRules
from floorsight.records import Signals
from floorsight.settings_file import plant_settings
from floorsight.simulators import Plant, build_plant, fault_schedule
from floorsight.storage import Database


@dataclass
class DemoConfig:
    home: Path
    machines: int = 3
    minutes: float | None = None
    speed: float = 10.0
    seed: int = 0
    window_s: float = 10.0
    headless: bool = False
    port: int = 8501
    #: alert routing file (default: every role gets the drop folder <home>/quality_notifications)
    routing: Path | None = None
    #: model settings and ``[alerts]`` (TOML, as ``floorsight run --models``; None: defaults)
    models: Path | None = None
    #: the configuration file (``--config``): its ``[pipeline]`` settings
    config_file: Path | None = None


@dataclass
class Counter:
    readings: int = 0
    batches: int = 0


@dataclass
class DemoSummary:
    events: int
    feature_rows: int
    score_rows: int
    alerts: int
    dead_letters: int
    faults_total: int
    faults_detected: int
    detection_delay_s: list[float]
    false_alerts: int
    simulated_s: float
    speed: float
    faults: list[dict] = field(default_factory=list)
    #: alerts per type (cause)
    alerts_by_type: dict[str, int] = field(default_factory=dict)
    #: notifications per destination: delivered and still pending
    notifications: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def make_plant(cfg: DemoConfig, start: datetime) -> tuple[Plant, datetime | None]:
    if cfg.minutes is not None:
        horizon = timedelta(seconds=cfg.minutes * 60 * cfg.speed)
        return build_plant(cfg.machines, start=start, horizon=horizon, seed=cfg.seed), (
            start + horizon
        )
    horizon = timedelta(days=2)
    plant = build_plant(cfg.machines, start=start, horizon=horizon, seed=cfg.seed, faults=())
    plant.faults = fault_schedule(start, [m.machine_id for m in plant.machines], horizon)
    return plant, None


def counted(
    frames: Iterator[pl.DataFrame | Signals | None], counter: Counter, stop: threading.Event
) -> Iterator[pl.DataFrame | Signals | None]:
    """Count the readings the source emits (machine signals pass uncounted); end the stream
    (a clean EOF) once ``stop`` is set."""
    for frame in frames:
        if stop.is_set():
            return
        if isinstance(frame, pl.DataFrame):
            counter.readings += frame.height
            counter.batches += 1
        yield frame


@contextmanager
def stop_on_signals(
    stop: threading.Event,
    echo,
    message: str = "stopping: closing windows and flushing the database ...",
) -> Iterator[None]:
    """Turn Ctrl-C / SIGTERM into a clean end of input instead of an aborted dataflow.

    The source ends, the dataflow closes its open windows and the sink flushes and closes, so
    the database holds everything read up to that moment.
    """

    def handler(signum, frame) -> None:
        if not stop.is_set():
            echo(message)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(cfg: DemoConfig, echo=print) -> DemoSummary | None:
    """Run the demo; returns the summary when it ran for a fixed time (``minutes``)."""
    if cfg.home.exists():
        shutil.rmtree(cfg.home)
    cfg.home.mkdir(parents=True)
    db_path = cfg.home / "floorsight.duckdb"
    erp_dir = cfg.home / "erp"
    start = datetime.now(tz=UTC).replace(microsecond=0)
    plant, end = make_plant(cfg, start)
    plant.write_context(erp_dir)
    counter = Counter()

    stop = threading.Event()

    def frames(worker_index: int, worker_count: int) -> Iterator[pl.DataFrame | Signals | None]:
        # the machines' MES states and part counters too: the dashboard's OEE comes from them
        return counted(plant.stream(start, speed=cfg.speed, end=end, signals=True), counter, stop)

    # the simulated clock runs ahead of the wall clock, so "future" is relative to the plant
    future = timedelta(days=1) + (end - start if end else timedelta(days=2))
    routing = _routing(cfg)
    outbox_path = cfg.home / "outbox.sqlite"
    plant_cfg = plant_settings(cfg.config_file)  # [pipeline] of the configuration file
    settings = PipelineSettings(
        window=timedelta(seconds=cfg.window_s),
        rules=ReadingRules(max_future=future, ranges=dict(plant_cfg.sensor_ranges)),
        **plant_cfg.pipeline_fields(),
        notify=NotifySettings(outbox_path, routing),
        recovery=False,  # the demo runs once, with no recovery store
        models=model_settings(cfg.models) if cfg.models is not None else {},
        hygiene=load_alert_hygiene(cfg.models) if cfg.models is not None else AlertHygiene(),
    )
    flow = build_flow(FrameSource(frames), ContextStore(erp_dir), db_path, settings)
    dispatcher = Dispatcher(Outbox(outbox_path), routing, db_path=db_path)
    delivery, delivery_stop = dispatcher.start()
    dashboard = None
    if not cfg.headless:
        users, password = demo_users(cfg.home)
        dashboard = start_dashboard(db_path, cfg.port, cfg.home / "dashboard.log", users)
        echo(f"floorsight dashboard: http://127.0.0.1:{cfg.port}  (Ctrl-C stops everything)")
        if password:  # shown once: the users file keeps only its bcrypt hash
            echo(f"  sign in as admin, password {password}  (users file {users})")
    echo(
        f"plant: {cfg.machines} machines, {plant.sample_hz} Hz per sensor, simulated clock x"
        f"{cfg.speed:g}; database {db_path}"
    )
    try:
        with stop_on_signals(stop, echo):
            run_main(flow)
    finally:
        delivery_stop.set()
        delivery.join(timeout=30)
        if dashboard is not None:
            dashboard.send_signal(signal.SIGTERM)
            try:
                dashboard.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dashboard.kill()
    if end is None:
        return None
    ran = end - start
    if stop.is_set():
        ran = min(ran, timedelta(seconds=counter.readings / plant_rate(plant)))
        echo(f"stopped early after {ran.total_seconds() / 60:.1f} simulated minutes")
    summary = summarize(db_path, plant, counter, start, ran, cfg.speed, settings.window)
    summary.notifications = dispatcher.outbox.counts()
    return summary


def _routing(cfg: DemoConfig) -> Routing:
    return load_routing(cfg.routing) if cfg.routing else default_routing(cfg.home)


def plant_rate(plant: Plant) -> float:
    """Readings per simulated second."""
    return plant.sample_hz * sum(len(m.sensors) for m in plant.machines)


def start_dashboard(
    db_path: Path, port: int, log: Path, users: Path | None = None
) -> subprocess.Popen:
    """Streamlit in its own process on 127.0.0.1; its output goes to ``log`` so errors are
    kept, not lost."""
    with log.open("ab") as out:
        return subprocess.Popen(
            streamlit_command(db_path, port, "127.0.0.1", users),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def summarize(
    db_path: Path,
    plant: Plant,
    counter: Counter,
    start: datetime,
    simulated: timedelta,
    speed: float,
    window: timedelta,
) -> DemoSummary:
    """Count what the pipeline wrote and score its alerts against the ground truth.

    An alert detects a fault when it is on the fault's machine and was raised between the
    fault's start and one window after its end; its delay is raised_at - fault start (event
    time). Alerts that detect no fault are false alerts. Faults that had not started when the
    run ended (stopped early) are not counted.
    """
    db = Database(db_path)
    counts = db.query(
        """SELECT (SELECT count(*) FROM features) f, (SELECT count(*) FROM scores) s,
                  (SELECT count(*) FROM alerts) a, (SELECT count(*) FROM dead_letters) d"""
    ).row(0)
    alerts = db.query(
        "SELECT alert_id, machine_id, cause, raised_at FROM alerts ORDER BY raised_at"
    )
    matched: set[str] = set()
    delays, faults = [], []
    started = [f for f in plant.faults if f.start < start + simulated]
    for fault in started:
        hits = alerts.filter(
            (pl.col("machine_id") == fault.machine_id)
            & (pl.col("raised_at") >= fault.start)
            & (pl.col("raised_at") <= fault.end + window)
        )
        entry = {
            "fault_id": fault.fault_id,
            "machine_id": fault.machine_id,
            "kind": str(fault.kind),
            "start": fault.start.isoformat(),
            "detected": False,
        }
        if hits.height:
            delay = (hits["raised_at"][0] - fault.start).total_seconds()
            delays.append(delay)
            matched.update(hits["alert_id"].to_list())
            entry.update(detected=True, delay_s=delay, alert_id=hits["alert_id"][0])
        faults.append(entry)
    return DemoSummary(
        events=counter.readings,
        feature_rows=counts[0],
        score_rows=counts[1],
        alerts=counts[2],
        dead_letters=counts[3],
        faults_total=len(started),
        faults_detected=len(delays),
        detection_delay_s=delays,
        false_alerts=alerts.height - len(matched),
        simulated_s=simulated.total_seconds(),
        speed=speed,
        faults=faults,
        alerts_by_type=dict(alerts.group_by("cause").len().sort("cause").iter_rows()),
    )
