"""``floorsight run --metrics-port``: Prometheus ``/metrics`` and ``/healthz`` of a real run.

Each test starts ``floorsight run`` as a process, scrapes it over HTTP with urllib and parses
the text with prometheus_client's own parser. The counts must equal what the run wrote to its
tables (readings, dead letters by reason, windows, alerts by cause); ``/healthz`` names the
sink while another process holds the DuckDB file, and the source once a live MQTT source stops
delivering.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import polars as pl
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from floorsight.alerts.outbox import Outbox
from floorsight.metrics import REGISTRY, Health, PipelineMetrics, reason_kind
from floorsight.pipelines.flow import TABLES
from floorsight.pipelines.validate import ReadingRules, validate_readings
from floorsight.records import READING_SCHEMA, FaultKind
from floorsight.simulators import Fault, build_plant
from floorsight.simulators.history import write_history
from floorsight.storage import Database
from tests.conftest import T0
from tests.mqtt_helpers import steady_plant, wait_until
from tests.test_db_locked import held, release

pytestmark = pytest.mark.e2e
#: an upset on M02 that the anomaly model alerts on (as in tests/test_flow.py)
UPSET = Fault(
    "F-1", "M02", FaultKind.PROCESS_UPSET, T0 + timedelta(minutes=20), timedelta(minutes=5)
)
#: rows that break one rule each, read after the plant's file; the last one is valid but late
BAD_ROWS = [
    ("M01", "spindle_temp_c", T0 + timedelta(minutes=1), float("nan")),
    ("M01", "vibration_mm_s", T0 + timedelta(minutes=1), float("nan")),
    ("M99", "spindle_temp_c", T0 + timedelta(minutes=1), 40.0),
    ("M01", "no_such_sensor", T0 + timedelta(minutes=1), 1.0),
    ("M01", "spindle_temp_c", T0 + timedelta(minutes=1, seconds=0.05), 40.0),
]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("history")
    plant = build_plant(3, start=T0, horizon=timedelta(minutes=30), seed=2, faults=(UPSET,))
    write_history(plant, out, T0, T0 + timedelta(minutes=30))
    bad = pl.DataFrame(BAD_ROWS, schema=READING_SCHEMA, orient="row")
    bad.write_parquet(out / "readings" / "zz-bad-rows.parquet")  # read after the day's file
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "floorsight.cli", "run", *args),
            *("--metrics-port", str(port), "--metrics-linger-s", "300"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _get(url: str) -> tuple[int, str] | None:
    """(status, body) of a GET, or None while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None


def _scrape(base: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics``, by (name, sorted labels)."""
    got = _get(base + "/metrics")
    assert got is not None and got[0] == 200, got
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(got[1])
        for s in family.samples
    }


def _by_label(samples: dict, name: str, label: str) -> dict[str, int]:
    return {dict(k[1])[label]: int(v) for k, v in samples.items() if k[0] == name and v}


def _until_health(proc: subprocess.Popen, base: str, status: int) -> dict:
    """The JSON of ``/healthz`` once it answers ``status`` (the run must still be alive)."""
    seen: list = []

    def answers() -> bool:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        seen[:] = [_get(base + "/healthz")]
        return seen[0] is not None and seen[0][0] == status

    wait_until(answers, f"/healthz answering {status} (last: {seen})", timeout_s=180)
    return json.loads(seen[0][1])


def _until_finished(proc: subprocess.Popen, base: str) -> dict:
    samples: list = []

    def finished() -> bool:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        if _get(base + "/metrics") is None:
            return False
        samples[:] = [_scrape(base)]
        return samples[0].get(("floorsight_finished", ())) == 1.0

    wait_until(finished, "the run's end", timeout_s=300)
    return samples[0]


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_the_counts_match_the_tables_the_run_wrote(history, tmp_path) -> None:
    db = tmp_path / "m.duckdb"
    proc, base = _start(
        *("--history", str(history / "readings"), "--context", str(history / "erp")),
        *("--db", str(db)),
    )
    try:
        samples = _until_finished(proc, base)
        health = _get(base + "/healthz")
    finally:
        out = _stop(proc)
    assert "metrics on http://127.0.0.1:" in out

    tables = Database(db, TABLES)
    read = pl.read_parquet(history / "readings" / "*.parquet").height
    assert _by_label(samples, "floorsight_readings_total", "source") == {"history": read}

    dead = tables.query("SELECT reason FROM dead_letters")
    by_reason = dict(dead.group_by(reason_kind(pl.col("reason"))).len().iter_rows())
    assert by_reason == {"value_nan": 2, "unknown_machine": 1, "unknown_sensor": 1, "late": 1}
    assert _by_label(samples, "floorsight_dead_letters_total", "reason") == by_reason

    windows = tables.query("SELECT count(*) AS n FROM features")["n"][0]
    assert samples[("floorsight_windows_closed_total", ())] == windows > 0
    assert samples[("floorsight_sink_rows_written_total", (("table", "features"),))] == windows

    alerts = tables.query("SELECT cause, count(*) AS n FROM alerts GROUP BY cause")
    by_cause = dict(alerts.iter_rows())
    assert by_cause, "the upset raised no alert"
    assert _by_label(samples, "floorsight_alerts_opened_total", "cause") == by_cause

    last = tables.query("SELECT max(window_end) AS t FROM features")["t"][0]
    newest = samples[("floorsight_last_event_time_seconds", ())]
    assert last - timedelta(seconds=10) <= datetime.fromtimestamp(newest, tz=UTC) <= last
    assert samples[("floorsight_sink_flush_seconds_count", ())] >= 1
    assert samples[("floorsight_process_info", (("process_id", "0"), ("version", "0.1.0")))] == 1
    assert health is not None and health[0] == 200
    assert json.loads(health[1])["status"] == "ok"


def test_each_process_of_a_cluster_serves_its_own_port(history, tmp_path) -> None:
    """``--processes 2 --metrics-port P``: process 0 on P, process 1 on P + 1, each counting
    what it read; together every reading once."""
    proc, base = _start(
        *("--history", str(history / "readings"), "--context", str(history / "erp")),
        *("--db", str(tmp_path / "c.duckdb"), "--processes", "2"),
    )
    port = int(base.rsplit(":", 1)[1])
    try:
        samples = [_until_finished(proc, f"http://127.0.0.1:{port + i}") for i in range(2)]
    finally:
        children = [
            int(c)
            for task in Path(f"/proc/{proc.pid}/task").glob("*")
            for c in (task / "children").read_text().split()
        ]
        for child in children:
            Path(f"/proc/{child}").exists() and os.kill(child, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    ids = [
        dict(k[1])["process_id"] for s in samples for k in s if k[0] == "floorsight_process_info"
    ]
    assert ids == ["0", "1"]
    read = [s.get(("floorsight_readings_total", (("source", "history"),)), 0) for s in samples]
    assert all(n > 0 for n in read), read  # each process reads its own partition
    assert sum(read) == pl.read_parquet(history / "readings" / "*.parquet").height
    windows = Database(tmp_path / "c.duckdb", TABLES).query("SELECT count(*) AS n FROM features")
    assert sum(s[("floorsight_windows_closed_total", ())] for s in samples) == windows["n"][0]


def test_outbox_gauges_are_read_from_the_outbox_file(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_age=timedelta(hours=1))
    queued = datetime(2026, 1, 5, tzinfo=UTC)
    for key in ("a", "b", "c"):
        outbox.enqueue("ops-webhook", key, {"alert_id": key}, now=queued)
    outbox.enqueue("quality-mail", "a", {"alert_id": "a"}, now=queued)

    def refuse(destination: str, payload: dict) -> None:
        raise ConnectionRefusedError("the receiver is down")

    later = queued + timedelta(hours=2)
    outbox.deliver({"ops-webhook": refuse, "quality-mail": refuse}, now=later)
    outbox.park_expired(later)  # too old, and their destinations failing: all four parked
    outbox.enqueue("ops-webhook", "d", {"alert_id": "d"}, now=later)
    counted = {
        (d, outcome): REGISTRY.get_sample_value(
            "floorsight_notifications_total", {"destination": d, "outcome": outcome}
        )
        for d in ("ops-webhook", "quality-mail")
        for outcome in ("delivered", "failed")
    }
    # one probe per destination and round: one failed attempt each, nothing delivered
    assert counted[("ops-webhook", "failed")] == counted[("quality-mail", "failed")] == 1
    assert counted[("ops-webhook", "delivered")] is None
    registry = CollectorRegistry()
    PipelineMetrics(registry, Health()).watch_outbox(outbox.counts)
    text = generate_latest(registry).decode()
    samples = {
        (s.name, s.labels.get("destination")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("floorsight_outbox_pending", "ops-webhook")] == 1
    assert samples[("floorsight_outbox_parked", "ops-webhook")] == 3
    assert samples[("floorsight_outbox_pending", "quality-mail")] == 0
    assert samples[("floorsight_outbox_parked", "quality-mail")] == 1


def test_every_reason_the_validation_gives_has_a_kind_of_its_own() -> None:
    """Dead-letter reasons carry values and ids; their label is the rule (bounded)."""
    now = datetime.now(tz=UTC)
    rules = ReadingRules.live(
        ranges={"spindle_temp_c": (-50.0, 400.0)}, known_machines=frozenset({"M01", "M 01"})
    )
    T0 = now.replace(microsecond=0)  # noqa: N806 (live rules: event times near the wall clock)
    rows = [
        ("M01", "spindle_temp_c", T0, float("nan")),
        ("M01", "spindle_temp_c", T0, float("inf")),
        ("M01", "spindle_temp_c", T0, None),
        ("M01", "spindle_temp_c", T0, 900.0),
        ("M01", "vibration_mm_s", T0, 1e18),
        ("M01", "vibration_mm_s", None, 1.0),
        ("M01", "vibration_mm_s", datetime(1960, 1, 1, tzinfo=UTC), 1.0),
        ("", "vibration_mm_s", T0, 1.0),
        ("M 01", "vibration_mm_s", T0, 1.0),
        ("M02", "vibration_mm_s", T0, 1.0),
        ("M01", "vibration_mm_s", now + timedelta(days=1), 1.0),
        ("M01", "vibration_mm_s", now - timedelta(days=400), 1.0),
    ]
    readings = pl.DataFrame(rows, schema=READING_SCHEMA, orient="row")
    dead = validate_readings(readings, rules, "readings", now=now).dead
    kinds = dead.select(reason_kind(pl.col("reason")).alias("kind"))["kind"].to_list()
    assert kinds == [
        "value_nan",
        "value_infinite",
        "value_missing",
        "value_out_of_range",
        "value_beyond_bound",
        "timestamp_missing",
        "timestamp_out_of_bounds",
        "id_missing",
        "id_invalid",
        "unknown_machine",
        "timestamp_in_future",
        "timestamp_in_past",
    ], dead["reason"].to_list()


def test_healthz_names_the_sink_while_another_process_holds_the_database(history, tmp_path) -> None:
    db = tmp_path / "held.duckdb"
    with held(db, mode="write") as holder:
        proc, base = _start(
            *("--history", str(history / "readings"), "--context", str(history / "erp")),
            *("--db", str(db), "--sink-stuck-after-s", "0.5"),
        )
        try:
            sick = _until_health(proc, base, 503)
            release(holder)
            _until_finished(proc, base)
            well = _until_health(proc, base, 200)
        finally:
            _stop(proc) if proc.poll() is None else None
    assert sick["failing"] == ["sink"], sick
    assert not sick["checks"]["sink"]["ok"] and sick["checks"]["source"]["ok"]
    assert well["status"] == "ok" and well["checks"]["sink"]["ok"]
    assert Database(db, TABLES).query("SELECT count(*) AS n FROM features")["n"][0] > 0


def test_a_live_run_is_unhealthy_while_its_sink_is_locked_and_once_its_source_stops(
    mosquitto, tmp_path
) -> None:
    """One MQTT run through four phases: readings arrive (healthy); another process holds the
    database while they go on (the sink is named, with the holder's PID); it lets go (healthy
    again); the publisher stops (the source is named)."""
    host, port = mosquitto
    steady_plant(tmp_path / "erp")
    db = tmp_path / "live.duckdb"
    proc, base = _start(
        *("--mqtt", f"{host}:{port}", "--context", str(tmp_path / "erp"), "--db", str(db)),
        *("--stuck-after-s", "3", "--sink-stuck-after-s", "2"),
    )
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-metrics-pub")
    publisher.connect(host, port)
    publisher.loop_start()
    delivered: list = []

    def publishing_until(what: str, holds) -> dict:
        """Publishes a reading and a bad payload (a dead letter: rows for the sink at once)
        per poll until the run has readings and the JSON of ``/healthz`` ``holds``."""
        seen: list = []

        def answers() -> bool:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            now = datetime.now(tz=UTC).isoformat()
            for value in (40.0, "hot"):
                payload = {
                    "machine_id": "M01",
                    "sensor": "spindle_temp_c",
                    "ts": now,
                    "value": value,
                }
                publisher.publish("plant/L1/M01/spindle_temp_c", json.dumps(payload), qos=1)
            if _get(base + "/metrics") is None:
                return False
            delivered[:] = [_scrape(base).get(("floorsight_readings_total", (("source", "mqtt"),)))]
            got = _get(base + "/healthz")
            seen[:] = [got and (got[0], json.loads(got[1]))]
            return delivered[0] is not None and got is not None and holds(*seen[0])

        wait_until(answers, f"{what} (last: {seen})", timeout_s=180)
        return seen[0][1]

    def healthy(status: int, body: dict) -> bool:
        return status == 200 and body["status"] == "ok"

    try:
        publishing_until("a healthy run with readings", healthy)
        with held(db) as holder:
            locked = publishing_until(
                "503 naming the sink",
                lambda status, body: status == 503 and "sink" in body.get("failing", []),
            )
        unlocked = publishing_until("healthy again", healthy)
        stopped = _until_health(proc, base, 503)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        _stop(proc)
    assert delivered[0] >= 1
    assert locked["status"] == "unhealthy" and not locked["checks"]["sink"]["ok"], locked
    assert f"locked by PID {holder.pid}" in locked["checks"]["sink"]["detail"], locked
    assert unlocked["status"] == "ok"
    assert stopped["failing"] == ["source"], stopped
    assert "no readings for" in stopped["checks"]["source"]["detail"]
    assert stopped["checks"]["sink"]["ok"]
