"""Operations metrics and health of one pipeline process: Prometheus ``/metrics`` and ``/healthz``.

The counters live where the data is: the dataflow counts what its source delivers, the dead
letters, closed windows and opened alerts (``pipelines/flow.py``), the sink its flushes and the
rows it wrote (``pipelines/sink.py``), the outbox its delivery attempts (``alerts/outbox.py``);
the outbox gauges are read from the outbox file at each scrape. Everything is counted per
batch (a frame's height, one ``group_by`` for the dead letters' reasons), never per reading.

:class:`Health` holds what ``/healthz`` judges: when the source last delivered (a live source
that delivered nothing for ``stuck_after_s`` is *stuck*; a history replay never is) and whether
the sink's writes are failing or hanging for longer than ``sink_stuck_after_s`` (a DuckDB file
held by another process, docs/reliability.md). :func:`serve` starts the HTTP server in a daemon
thread. One :data:`METRICS` and one :data:`HEALTH` per process: Bytewax's workers are threads of
it and share them.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from wsgiref.simple_server import WSGIRequestHandler, make_server

import polars as pl
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer

from floorsight import __version__

#: the bounded set of dead-letter reasons a label may take: the rule a reason's text names
#: (reasons themselves carry values, timestamps and ids, which would make a label per reading)
REASON_KINDS: tuple[tuple[str, str], ...] = (
    ("late", r"^late: "),
    ("timestamp_missing", r"^timestamp missing"),
    ("timestamp_out_of_bounds", r"^timestamp .* is (before|after) "),
    ("timestamp_in_future", r"^timestamp .* in the future"),
    ("timestamp_in_past", r"^timestamp .* in the past"),
    ("value_missing", r"^value missing"),
    ("value_nan", r"^value is NaN"),
    ("value_infinite", r"^value is infinite"),
    ("value_beyond_bound", r"^value .* is beyond "),
    ("value_out_of_range", r" = .* outside \["),
    ("id_missing", r"^(machine_id|sensor) missing"),
    ("id_invalid", r"^(machine_id|sensor) .* is not an id"),
    ("unknown_machine", r"^unknown machine "),
    ("unknown_sensor", r"^unknown sensor "),
)
OTHER_REASON = "other"


def reason_kind(reason: pl.Expr) -> pl.Expr:
    """The :data:`REASON_KINDS` name of each dead letter's ``reason`` (``other`` if none fits)."""
    kinds = pl.when(reason.str.contains(REASON_KINDS[0][1])).then(pl.lit(REASON_KINDS[0][0]))
    for name, pattern in REASON_KINDS[1:]:
        kinds = kinds.when(reason.str.contains(pattern)).then(pl.lit(name))
    return kinds.otherwise(pl.lit(OTHER_REASON))


def reason_counts(dead_letters: pl.DataFrame) -> dict[str, int]:
    """Dead letters per reason kind, in one pass over the frame."""
    counts = dead_letters.group_by(reason_kind(pl.col("reason")).alias("kind")).len()
    return dict(counts.iter_rows())


@dataclass(frozen=True)
class Check:
    """One health check's verdict."""

    ok: bool
    detail: str


class Health:
    """What ``/healthz`` judges: the source's last delivery and the sink's writes.

    ``live`` sources (OPC-UA, MQTT) must deliver within ``stuck_after_s``; a history replay is
    judged only by its sink. The sink fails its check once a write has been failing (the file
    locked) or running for longer than ``sink_stuck_after_s``. Times are monotonic.
    """

    def __init__(
        self, live: bool = False, stuck_after_s: float = 60.0, sink_stuck_after_s: float = 30.0
    ) -> None:
        self._lock = threading.Lock()
        self.configure(live, stuck_after_s, sink_stuck_after_s)

    def configure(self, live: bool, stuck_after_s: float, sink_stuck_after_s: float) -> None:
        with self._lock:
            self.live = live
            self.stuck_after_s = stuck_after_s
            self.sink_stuck_after_s = sink_stuck_after_s
            #: the start counts as a delivery: a live source gets ``stuck_after_s`` to begin
            self._delivered_at = time.monotonic()
            self._writing_since: float | None = None
            self._failing_since: float | None = None
            self._failure = ""
            self._finished = False

    # -- what the pipeline reports ----------------------------------------------------------
    def delivered(self) -> None:
        self._delivered_at = time.monotonic()

    def finished(self) -> None:
        """The run reached its end and every row is written (a history replay's end)."""
        self._finished = True

    @property
    def is_finished(self) -> bool:
        return self._finished

    def write_began(self) -> None:
        self._writing_since = time.monotonic()

    def write_ended(self) -> None:
        self._writing_since = None

    def write_failed(self, why: str) -> None:
        with self._lock:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self._failure = why

    def write_succeeded(self) -> None:
        with self._lock:
            self._failing_since = None
            self._failure = ""

    # -- the verdicts -----------------------------------------------------------------------
    def source_idle_s(self) -> float:
        return time.monotonic() - self._delivered_at

    def checks(self) -> dict[str, Check]:
        now = time.monotonic()
        idle = now - self._delivered_at
        if self._finished:
            source = Check(True, "finished: every reading processed and written")
        elif not self.live:
            source = Check(True, "history replay (never stuck)")
        elif idle > self.stuck_after_s:
            source = Check(
                False, f"no readings for {idle:.0f} s (stuck after {self.stuck_after_s:g} s)"
            )
        else:
            source = Check(True, f"last readings {idle:.1f} s ago")
        with self._lock:
            failing, failure = self._failing_since, self._failure
        writing = self._writing_since
        bound = self.sink_stuck_after_s
        if failing is not None and now - failing > bound:
            sink = Check(
                False, f"writes failing for {now - failing:.0f} s (bound {bound:g} s): {failure}"
            )
        elif writing is not None and now - writing > bound:
            sink = Check(
                False, f"a write has not completed for {now - writing:.0f} s (bound {bound:g} s)"
            )
        else:
            sink = Check(True, "writing" if failing is None else f"retrying: {failure}")
        return {"source": source, "sink": sink}

    def report(self) -> tuple[bool, dict]:
        """(healthy, the JSON body of ``/healthz``)."""
        checks = self.checks()
        failing = [name for name, c in checks.items() if not c.ok]
        body: dict = {"status": "unhealthy" if failing else "ok"}
        if failing:
            body["failing"] = failing
        body["checks"] = {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()}
        return not failing, body


class PipelineMetrics:
    """The pipeline's Prometheus metrics in ``registry``, and what updates them per batch."""

    def __init__(self, registry: CollectorRegistry, health: Health) -> None:
        self.registry = registry
        self.health = health
        self._lock = threading.Lock()
        self._newest: float | None = None  # newest event time seen (Unix seconds)
        #: when the dataflow first asked a history replay for a batch in this process (Unix
        #: seconds): it runs from then on (start-up, the context's load and copy and a cluster's
        #: connection, is over)
        self.first_poll: float | None = None
        self.info = Info("floorsight_process", "This pipeline process.", registry=registry)
        self.info.info({"version": __version__, "process_id": "0"})
        counter = lambda name, doc, *labels: Counter(name, doc, labels, registry=registry)  # noqa: E731
        self.readings = counter(
            "floorsight_readings", "Readings the source delivered, valid or not.", "source"
        )
        self.dead_letters = counter(
            "floorsight_dead_letters",
            "Rows sent to the dead_letters table, by the rule they broke.",
            "reason",
        )
        self.windows = counter(
            "floorsight_windows_closed",
            "Closed windows: feature rows (machine, sensor, window, work order).",
        )
        self.alerts = counter("floorsight_alerts_opened", "Alerts opened, by cause.", "cause")
        self.rows_written = counter(
            "floorsight_sink_rows_written",
            "Rows the sink committed to the database, by table.",
            "table",
        )
        self.notifications = counter(
            "floorsight_notifications",
            "Delivery attempts of the alert outbox by destination and outcome (delivered, failed).",
            "destination",
            "outcome",
        )
        self.flush_seconds = Histogram(
            "floorsight_sink_flush_seconds",
            "Duration of the sink's committed writes (one transaction each).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        # gauges computed at each scrape (NaN until an event time is seen)
        for name, doc, value in (
            (
                "floorsight_event_time_lag_seconds",
                "Wall clock minus the newest event time this process has seen.",
                lambda: time.time() - self._newest if self._newest else math.nan,
            ),
            (
                "floorsight_last_event_time_seconds",
                "The newest event time this process has seen (Unix seconds).",
                lambda: self._newest if self._newest else math.nan,
            ),
            (
                "floorsight_source_idle_seconds",
                "Seconds since the source last delivered readings (or since the start).",
                health.source_idle_s,
            ),
            (
                "floorsight_finished",
                "1 once the run reached its end with every row written (a history replay).",
                lambda: 1.0 if health.is_finished else 0.0,
            ),
        ):
            Gauge(name, doc, registry=registry).set_function(value)
        registry.register(_Collector(lambda: _health_families(health)))

    def set_process(self, process_id: int | None) -> None:
        self.info.info({"version": __version__, "process_id": str(process_id or 0)})

    # -- counted by the dataflow, per batch ------------------------------------------------
    def polled(self) -> None:
        """The dataflow asks the history replay for a batch."""
        if self.first_poll is None:
            self.first_poll = time.time()

    def delivered(self, source: str, rows: int, newest: datetime | None) -> None:
        """A batch from the source: ``rows`` readings, the newest event time among them."""
        if rows:
            self.readings.labels(source).inc(rows)
            self.health.delivered()
        if newest is not None:
            t = newest.timestamp()
            with self._lock:
                if self._newest is None or t > self._newest:
                    self._newest = t

    def table_rows(self, table: str, frame: pl.DataFrame) -> None:
        """Rows the dataflow sends to the sink: closed windows and dead letters are counted."""
        if table == "features":
            self.windows.inc(frame.height)
        elif table == "dead_letters" and frame.height:
            for kind, n in reason_counts(frame).items():
                self.dead_letters.labels(kind).inc(n)

    def alerts_opened(self, alerts: pl.DataFrame | None, features: pl.DataFrame) -> None:
        """The alerts a batch of closed windows opened: those raised at one of the batch's own
        windows (an alert updated or continued later keeps its ``raised_at``)."""
        if alerts is None or alerts.height == 0:
            return
        first_end = features.group_by("machine_id").agg(pl.col("window_end").min().alias("_end"))
        opened = (
            alerts.join(first_end, on="machine_id", how="inner")
            .filter(pl.col("raised_at") >= pl.col("_end"))
            .group_by("cause")
            .len()
        )
        for cause, n in opened.iter_rows():
            self.alerts.labels(cause).inc(n)

    # -- counted by the sink ---------------------------------------------------------------
    def committed(self, frames: Mapping[str, Iterable[pl.DataFrame]], seconds: float) -> None:
        self.flush_seconds.observe(seconds)
        for table, parts in frames.items():
            self.rows_written.labels(table).inc(sum(f.height for f in parts))

    # -- counted by the outbox -------------------------------------------------------------
    def notified(self, destination: str, delivered: int, failed: int) -> None:
        """One delivery round of a destination: notifications accepted, attempts failed."""
        if delivered:
            self.notifications.labels(destination, "delivered").inc(delivered)
        if failed:
            self.notifications.labels(destination, "failed").inc(failed)

    # -- read at each scrape ---------------------------------------------------------------
    def watch_outbox(self, counts: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        """Gauges of the outbox's pending and parked notifications per destination, from
        ``counts()`` (``Outbox.counts``) at each scrape."""
        self.registry.register(_Collector(lambda: _outbox_families(counts)))


class _Collector:
    """A collector whose families ``families()`` computes at each scrape."""

    def __init__(self, families: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self.collect = families


def _health_families(health: Health) -> Iterable[GaugeMetricFamily]:
    """``floorsight_healthy{check}``: 1 while a health check passes, 0 while it fails."""
    family = GaugeMetricFamily(
        "floorsight_healthy", "1 while the health check passes, 0 while it fails.", labels=["check"]
    )
    for name, check in health.checks().items():
        family.add_metric([name], 1.0 if check.ok else 0.0)
    yield family


def _outbox_families(counts: Callable[[], Mapping[str, Mapping[str, int]]]):
    """``floorsight_outbox_pending`` and ``_parked`` per destination, from ``counts()``."""
    families = {
        state: GaugeMetricFamily(
            f"floorsight_outbox_{state}",
            f"Notifications in the outbox {what}, by destination.",
            labels=["destination"],
        )
        for state, what in (
            ("pending", "still to deliver"),
            ("parked", "given up retrying (kept for a re-send)"),
        )
    }
    for destination, n in counts().items():
        for state, family in families.items():
            family.add_metric([destination], n[state])
    yield from families.values()


REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
HEALTH = Health()
METRICS = PipelineMetrics(REGISTRY, HEALTH)


class MetricsServerError(OSError):
    """The metrics address or port cannot be bound."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        """Scrapes every few seconds would flood the log."""


def health_app(health: Health, registry: CollectorRegistry):
    """The WSGI app: ``/metrics`` (Prometheus text), ``/healthz`` (200 or 503, JSON)."""
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            healthy, body = health.report()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics and /healthz are served here\n"]

    return app


def serve(
    address: str,
    port: int,
    health: Health = HEALTH,
    registry: CollectorRegistry = REGISTRY,
) -> ThreadingWSGIServer:
    """Serve ``/metrics`` and ``/healthz`` on ``address:port`` from a daemon thread."""
    # no ``*_created`` series beside every counter: they double the series for a start time
    # that ``process_start_time_seconds`` already gives
    disable_created_metrics()

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    try:
        httpd = make_server(
            address, port, health_app(health, registry), Server, handler_class=_QuietHandler
        )
    except OSError as e:
        raise MetricsServerError(
            e.errno, f"cannot serve metrics on {address}:{port}: {e.strerror}"
        ) from None
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    return httpd
