"""``floorsight run``: the pipeline over history files or an OPC-UA server, on workers and
processes, with recovery.

Workers (``-w N``) are threads of one process; processes (``--processes P``) are a Bytewax
cluster on 127.0.0.1 that this command starts as child processes (or that you start yourself on
several hosts with ``--process-id`` and ``--addresses``). The source is partitioned by machine;
with ``--db-layout file`` (the default) the DuckDB sink has one partition per database file, so
one worker writes the file and the others send it their rows; with ``--db-layout per-process``
``--db`` is a folder and process ``i`` writes its own machines' rows to ``floorsight.p<i>.duckdb``
in it, queues their alerts in the outbox beside that file and delivers them itself. With
``--recovery DIR`` Bytewax snapshots the state every ``--snapshot-s`` seconds; a run killed at
any point and started again with the same arguments resumes from the last snapshot, and the
idempotent sink rewrites what was replayed. On several hosts each has its own recovery folder
and process 0's holds the store's partition. ``--processes P`` passes SIGTERM and SIGINT on to
the processes it started and exits non-zero when one of them fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from floorsight.alerts.dispatcher import Dispatcher
from floorsight.alerts.hygiene import AlertHygiene, load_alert_hygiene
from floorsight.alerts.outbox import Outbox, outbox_beside
from floorsight.alerts.routing import load_routing
from floorsight.config import private_dir
from floorsight.demo import stop_on_signals
from floorsight.models.registry import model_settings as load_model_settings
from floorsight.peers import wait_for_lower_peers
from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import (
    TABLES,
    NotifySettings,
    PipelineSettings,
    build_flow,
    sink_settings,
)
from floorsight.pipelines.replay import ReplaySource
from floorsight.pipelines.signals import load_states
from floorsight.pipelines.sink import PartitionedDuckDBSink
from floorsight.pipelines.validate import ReadingRules
from floorsight.retention import parse_retain_days
from floorsight.settings_file import plant_settings
from floorsight.storage import partition_file

log = logging.getLogger("floorsight.run")


@dataclass
class RunConfig:
    history: Path | None
    context: Path | str  # a folder, a DuckDB file or a postgresql:// URL
    db: Path
    #: ``file``: one DuckDB file, written by one worker; ``per-process``: ``db`` is a folder
    #: with one file per process (``floorsight.storage.partition_file``)
    db_layout: str = "file"
    opcua: str | None = None
    opcua_user: str | None = None
    #: the OPC-UA password, never in :meth:`args`: a cluster's child processes read it from
    #: the environment (FLOORSIGHT_OPCUA_PASSWORD, inherited) or ``opcua_password_file``
    opcua_password: str | None = field(default=None, repr=False)
    opcua_password_file: Path | None = None
    #: OPC-UA: the tag map (None: the simulator's browse), security POLICY,MODE, the client
    #: certificate and key (None: the generated ones), subscribe or poll every interval
    opcua_tags: Path | None = None
    opcua_security: str | None = None
    opcua_cert: Path | None = None
    opcua_key: Path | None = None
    opcua_mode: str = "subscribe"
    opcua_interval_s: float = 1.0
    mqtt: str | None = None  # mqtt://[user@]host:port, mqtts://..., or host:port
    #: the MQTT password, never in :meth:`args`: a cluster's child processes read it again
    #: from FLOORSIGHT_MQTT_PASSWORD (inherited) or ``mqtt_password_file``
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_password_file: Path | None = None
    mqtt_ca: Path | None = None
    mqtt_cert: Path | None = None
    mqtt_key: Path | None = None
    mqtt_topics: list[str] = field(default_factory=list)  # topic templates (--topic)
    payload_map: Path | None = None
    mqtt_format: str = "json"
    mqtt_share: str | None = None  # shared-subscription group: one partition per worker
    window_s: float = 10.0
    batch_rows: int = 50_000
    workers: int = 1
    processes: int = 1
    recovery: Path | None = None
    snapshot_s: float = 2.0
    process_id: int | None = None
    addresses: list[str] | None = None
    routing: Path | None = None
    champion: str | None = None  # registered model whose `champion` alias is scored too
    mlflow_uri: str | None = None
    champion_poll_s: float = 10.0
    time_zone: str | None = None  # of naive timestamps in history files (IANA name)
    #: live sources: how far ahead of the wall clock an event time may be (None: the default)
    max_future_s: float | None = None
    #: machine states: ``packml`` (default), ``machinery`` or a CSV/TOML file of the plant's own
    states: str | None = None
    #: TOML file of model settings by model name, and ``[alerts]`` (None: the defaults)
    models: Path | None = None
    #: the configuration file (``--config``): its ``[pipeline]`` settings; a cluster's
    #: processes read it again
    config_file: Path | None = None
    #: ``--retain-days TABLE=DAYS`` values (``floorsight.retention``; empty: keep everything)
    retain_days: list[str] = field(default_factory=list)
    #: serve Prometheus /metrics and /healthz on this port (None: don't); with
    #: ``processes`` > 1 process i serves ``metrics_port + i``
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    #: /healthz: a live source that delivered nothing this long is stuck
    stuck_after_s: float = 60.0
    #: /healthz: sink writes failing or not completing this long make the sink unhealthy
    sink_stuck_after_s: float = 30.0
    #: keep serving /metrics this long after a history's end (until SIGTERM), so that a
    #: scraper gets the final counts of a replay
    metrics_linger_s: float = 0.0

    @property
    def per_process(self) -> bool:
        return self.db_layout == "per-process"

    @property
    def local_db(self) -> Path:
        """The DuckDB file this process writes (and reads people's feedback from)."""
        return partition_file(self.db, self.process_id or 0) if self.per_process else self.db

    @property
    def outbox(self) -> Path:
        return outbox_path(self.local_db)

    @property
    def cluster_processes(self) -> int:
        """The processes of the cluster: one per address when they are given."""
        return len(self.addresses) if self.addresses else self.processes

    @property
    def partitions(self) -> int:
        return self.workers * self.cluster_processes

    def args(self) -> list[str]:
        """The command-line arguments that reproduce this configuration."""
        out = [
            *self._source_args(),
            *("--context", str(self.context)),
            *("--db", str(self.db), "--db-layout", self.db_layout),
            *("--window-s", str(self.window_s)),
            *("--batch-rows", str(self.batch_rows), "-w", str(self.workers)),
            *("--processes", str(self.processes), "--snapshot-s", str(self.snapshot_s)),
        ]
        if self.recovery is not None:
            out += ["--recovery", str(self.recovery)]
        if self.routing is not None:
            out += ["--routing", str(self.routing)]
        if self.champion is not None:
            out += ["--champion", self.champion, "--champion-poll-s", str(self.champion_poll_s)]
        if self.mlflow_uri is not None:
            out += ["--mlflow-uri", self.mlflow_uri]
        if self.time_zone is not None:
            out += ["--time-zone", self.time_zone]
        if self.max_future_s is not None:
            out += ["--max-future-s", str(self.max_future_s)]
        if self.states is not None:
            out += ["--states", self.states]
        if self.models is not None:
            out += ["--models", str(self.models)]
        if self.config_file is not None:
            out += ["--config", str(self.config_file)]
        for value in self.retain_days:
            out += ["--retain-days", value]
        if self.metrics_port is not None:
            out += ["--metrics-port", str(self.metrics_port)]
            out += ["--metrics-address", self.metrics_address]
            out += ["--stuck-after-s", str(self.stuck_after_s)]
            out += ["--sink-stuck-after-s", str(self.sink_stuck_after_s)]
            out += ["--metrics-linger-s", str(self.metrics_linger_s)]
        return out

    def _source_args(self) -> tuple[str, ...]:
        if self.history is not None:
            return ("--history", str(self.history))
        if self.opcua is not None:
            login = ("--user", self.opcua_user) if self.opcua_user is not None else ()
            if self.opcua_password_file is not None:
                login += ("--password-file", str(self.opcua_password_file))
            for flag, value in (
                ("--tags", self.opcua_tags),
                ("--security", self.opcua_security),
                ("--cert", self.opcua_cert),
                ("--key", self.opcua_key),
            ):
                if value is not None:
                    login += (flag, str(value))
            login += ("--opcua-mode", self.opcua_mode, "--interval", str(self.opcua_interval_s))
            return ("--opcua", self.opcua, *login)
        out: tuple[str, ...] = ("--mqtt", str(self.mqtt))
        for flag, path in (
            ("--mqtt-password-file", self.mqtt_password_file),
            ("--mqtt-ca", self.mqtt_ca),
            ("--mqtt-cert", self.mqtt_cert),
            ("--mqtt-key", self.mqtt_key),
            ("--payload-map", self.payload_map),
        ):
            if path is not None:
                out += (flag, str(path))
        for template in self.mqtt_topics:
            out += ("--topic", template)
        out += ("--mqtt-format", self.mqtt_format)
        if self.mqtt_share is not None:
            out += ("--mqtt-share", self.mqtt_share)
        return out


def outbox_path(db: Path) -> Path:
    """The alert outbox beside the database (SQLite; see ``floorsight.alerts.outbox``)."""
    return outbox_beside(db)


def run_pipeline(cfg: RunConfig) -> int:
    """Run to the end of the history; returns an exit code."""
    if cfg.recovery is not None:
        # every host needs the folder (Bytewax looks for partitions in it); one process makes
        # the store's partition, which the cluster as a whole holds (docs/deploy.md)
        _init_recovery(cfg.recovery, partition=cfg.process_id in (None, 0))
    if cfg.process_id in (None, 0) and not cfg.db.parent.exists():
        # the database's folder holds the alert outbox too (alert payloads, destinations)
        private_dir(cfg.db.parent)
    if cfg.per_process and not cfg.db.is_dir():
        private_dir(cfg.db)  # each host's processes make their own folder
    if cfg.processes > 1 and cfg.process_id is None:
        return _spawn_cluster(cfg)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.WARNING)

    notify, dispatcher = None, None
    if cfg.routing is not None:
        routing = load_routing(cfg.routing)
        notify = NotifySettings(cfg.outbox, routing)
        # one delivery loop per outbox: per cluster on one file, per process on a per-process store
        if cfg.per_process or cfg.process_id in (None, 0):
            dispatcher = Dispatcher(Outbox(cfg.outbox), routing, db_path=cfg.local_db)
    plant = plant_settings(cfg.config_file)  # [pipeline] of the configuration file
    ranges = dict(plant.sensor_ranges)
    settings = PipelineSettings(
        window=timedelta(seconds=cfg.window_s),
        # live sources: event time within minutes of the wall clock; a history file's own time
        # range is checked by its source (the absolute bounds apply to both)
        rules=ReadingRules.history(ranges=ranges)
        if cfg.history is not None
        else _live_rules(cfg, ranges),
        **plant.pipeline_fields(),
        notify=notify,
        shards=cfg.partitions,  # one shard per source partition: batches stay on their worker
        recovery=cfg.recovery is not None,
        states=load_states(cfg.states),
        models=load_model_settings(cfg.models) if cfg.models is not None else {},
        hygiene=load_alert_hygiene(cfg.models) if cfg.models is not None else AlertHygiene(),
        retention=parse_retain_days(cfg.retain_days),
    )
    if cfg.metrics_port is not None:
        _serve_metrics(cfg)
    stop = threading.Event()
    # a SIGTERM or Ctrl-C from here to the end is a clean stop, also while the run starts (the
    # context's first load) and while it winds down: never a death by the signal, which a
    # service manager (or `run --processes`, which passes it on) would count as a failure
    with stop_on_signals(stop, log.warning, "stopping: flushing the database ..."):
        return _run_started(cfg, stop, settings, dispatcher)


def _run_started(
    cfg: RunConfig, stop: threading.Event, settings: PipelineSettings, dispatcher
) -> int:
    """The run from its source on (:func:`run_pipeline`, which handles the signals)."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    if cfg.opcua is not None:
        from floorsight.pipelines.opcua_source import source_for_run

        # a refused login or an unknown mapped node stops the start (checked by one process)
        source = source_for_run(cfg, stop, check=cfg.process_id in (None, 0))
    elif cfg.mqtt is not None:
        from floorsight.pipelines.context import sensor_units
        from floorsight.pipelines.mqtt_mapping import decoder_factory
        from floorsight.pipelines.mqtt_receiver import Broker, check_broker
        from floorsight.pipelines.mqtt_source import MqttSource

        broker = Broker.from_url(
            cfg.mqtt,
            ca=cfg.mqtt_ca,
            cert=cfg.mqtt_cert,
            key=cfg.mqtt_key,
            password=cfg.mqtt_password,
        )
        # a refused login or an unverifiable certificate stops here (MqttConnectError)
        if (unreachable := check_broker(broker)) is not None:
            log.warning("%s", unreachable)
        # with recovery, what the broker hands over is journaled (fsynced) before it is acked
        journal = cfg.recovery / "mqtt-journal" if cfg.recovery is not None else None
        source = MqttSource(
            broker.host,
            broker.port,
            stop=stop,
            units=sensor_units(cfg.context),
            journal=journal,
            broker=broker,
            decoder=decoder_factory(cfg.mqtt_format, cfg.mqtt_topics, cfg.payload_map),
            share=cfg.mqtt_share,
            partitions=cfg.partitions,
        )
    else:
        source = ReplaySource(
            cfg.history, cfg.partitions, cfg.batch_rows, stop=stop, time_zone=cfg.time_zone
        )
    champion = None
    if cfg.champion is not None:
        from floorsight.models.champion import ChampionScorer

        champion = ChampionScorer(
            cfg.champion, cfg.mlflow_uri, poll=timedelta(seconds=cfg.champion_poll_s)
        )
    # the first context load's suites run and report in one process of a cluster
    context = ContextStore(cfg.context, report_first=cfg.process_id in (None, 0))
    sink = None
    if cfg.per_process:
        sink = PartitionedDuckDBSink(
            cfg.db,
            TABLES,
            process_id=cfg.process_id or 0,
            processes=cfg.cluster_processes,
            workers_per_process=cfg.workers,
            **sink_settings(settings),
        )
    flow = build_flow(
        source,
        context,
        cfg.local_db,
        settings,
        champion=champion,
        sink=sink,
        source_name=_kind(cfg),
    )
    if cfg.process_id and cfg.addresses and not wait_for_lower_peers(cfg.addresses, cfg.process_id):
        log.info("the lower-numbered processes on this host are not listening yet: dialling anyway")
    delivery = dispatcher.start() if dispatcher is not None else None
    try:
        cli_main(
            flow,
            workers_per_process=cfg.workers,
            process_id=cfg.process_id,
            addresses=cfg.addresses,
            epoch_interval=timedelta(seconds=cfg.snapshot_s),
            recovery_config=RecoveryConfig(cfg.recovery) if cfg.recovery else None,
        )
    finally:
        if delivery is not None:
            thread, done = delivery
            done.set()
            thread.join(timeout=60)
    if cfg.metrics_port is not None:
        _linger(cfg, stop)
    return 0


def _linger(cfg: RunConfig, stop: threading.Event) -> None:
    """The run's end in the metrics, and /metrics kept up ``metrics_linger_s`` longer."""
    from floorsight.metrics import HEALTH

    HEALTH.finished()
    if cfg.metrics_linger_s > 0 and not stop.is_set():
        log.info("finished: /metrics stays up %g s (or until SIGTERM)", cfg.metrics_linger_s)
        with stop_on_signals(stop, log.info, "metrics server stopping"):
            stop.wait(cfg.metrics_linger_s)


class RecoveryDirError(ValueError):
    """A recovery folder that others could write (a shared one such as /tmp)."""


def _init_recovery(directory: Path, partition: bool = True) -> None:
    """Make the recovery folder private and, with ``partition``, give it the store's one
    partition unless it has one (a resume)."""
    from bytewax.recovery import init_db_dir

    # the snapshots are pickles: whoever can write this folder runs code as the pipeline at
    # the next resume, so it is the user's own and private (0700), created so or made so
    if directory.exists():
        info = directory.stat()
        if info.st_uid != os.getuid() or info.st_mode & stat.S_ISVTX:
            raise RecoveryDirError(
                f"{directory} is a shared folder (owner uid {info.st_uid}, mode "
                f"{stat.filemode(info.st_mode)}): recovery snapshots are pickles that the "
                "pipeline loads, so give --recovery a folder of its own"
            )
    private_dir(directory)
    if not partition or any(directory.glob("*.sqlite3")):
        return  # already initialised: this run resumes
    init_db_dir(directory, 1)


def _kind(cfg: RunConfig) -> str:
    """The source's name in the metrics' ``source`` label."""
    return "history" if cfg.history is not None else "opcua" if cfg.opcua is not None else "mqtt"


def _serve_metrics(cfg: RunConfig) -> None:
    """Serve /metrics and /healthz of this process (``floorsight.metrics``)."""
    from floorsight.metrics import HEALTH, METRICS, serve

    HEALTH.configure(cfg.history is None, cfg.stuck_after_s, cfg.sink_stuck_after_s)
    METRICS.set_process(cfg.process_id)
    if cfg.routing is not None:
        outbox = Outbox(cfg.outbox)
        METRICS.watch_outbox(outbox.counts)
    serve(cfg.metrics_address, cfg.metrics_port)
    log.info("metrics on http://%s:%d/metrics and /healthz", cfg.metrics_address, cfg.metrics_port)


def _spawn_cluster(cfg: RunConfig) -> int:
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(cfg.processes)]
    # process i serves metrics on the given port + i
    port = cfg.metrics_port
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "floorsight.cli", "run"),
                *replace(cfg, metrics_port=None if port is None else port + i).args(),
                *("--process-id", str(i), "--addresses", ";".join(addresses)),
            ]
        )
        for i in range(cfg.processes)
    ]
    return _wait_forwarding_signals(procs)


def _wait_forwarding_signals(procs: list[subprocess.Popen]) -> int:
    """Wait for the cluster's processes; SIGTERM or SIGINT to this command goes on to each of
    them as SIGTERM (each stops its source and flushes), so that a service manager's stop
    ends the whole cluster instead of orphaning it. A process that fails stops the others.
    Returns the exit code furthest from 0. A process that the passed-on SIGTERM ended by the
    signal itself stopped cleanly: a run handles the signal from its start to its end
    (:func:`run_pipeline`), so it can only have been before the run began or after it had
    written everything (the interpreter's start or exit)."""
    stop = threading.Event()
    message = f"stopping: passing SIGTERM on to the {len(procs)} processes"
    forwarded = False
    with stop_on_signals(stop, log.warning, message):
        while running := [p for p in procs if p.poll() is None]:
            if forwarded:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    running[0].wait(timeout=0.2)
            elif stop.wait(0.2) or any(p.returncode for p in procs):
                for proc in running:
                    proc.terminate()
                forwarded = True
    codes = [0 if forwarded and p.returncode == -signal.SIGTERM else p.returncode for p in procs]
    return max(codes, key=abs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _live_rules(
    cfg: RunConfig, ranges: dict[str, tuple[float, float]] | None = None
) -> ReadingRules:
    """The live sources' rules; ``--max-future-s`` widens the window ahead of the wall clock
    (for a simulator that plays time faster than real time)."""
    if cfg.max_future_s is None:
        return ReadingRules.live(ranges=ranges or {})
    return ReadingRules.live(max_future=timedelta(seconds=cfg.max_future_s), ranges=ranges or {})
