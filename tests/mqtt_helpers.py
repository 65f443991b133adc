"""What the MQTT end-to-end tests share: a steady plant with its context, the whole flow over an
MQTT source, the 10 s windows a run must end with, a publisher in a thread beside the flow, and
a ``floorsight run --mqtt`` process with its recovery folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.pipelines.context import ContextStore
from floorsight.pipelines.flow import PipelineSettings, build_flow
from floorsight.pipelines.mqtt_journal import journal_end
from floorsight.pipelines.validate import ReadingRules
from floorsight.simulators import Plant, build_plant
from tests.conftest import T0

#: every feature window with its count of readings, in the order ``window_counts`` gives
FEATURE_COUNTS = "SELECT machine_id, sensor, window_start, n FROM features ORDER BY ALL"


def steady_plant(
    erp: Path,
    *,
    seed: int = 5,
    start: datetime = T0,
    horizon: timedelta = timedelta(hours=1),
    machines: int = 2,
) -> Plant:
    """``machines`` machines from ``start`` over ``horizon``, without faults or idle time and
    with setups of at most a minute (they run and sample all the time); the plant's context is
    written to ``erp``."""
    plant = build_plant(
        machines,
        start=start,
        horizon=horizon,
        seed=seed,
        faults=(),
        setup_minutes=(0, 1),
        idle_share=0.0,
    )
    plant.write_context(erp)
    return plant


def mqtt_flow(source, tmp_path: Path, **settings):
    """The whole flow over ``source``, with the context in ``tmp_path / "erp"`` and the
    database ``tmp_path / "f.duckdb"``; event times up to ten years past the wall clock are
    valid, and ``settings`` are the other ``PipelineSettings``."""
    rules = ReadingRules(max_future=timedelta(days=3650))
    return build_flow(
        source,
        ContextStore(tmp_path / "erp"),
        tmp_path / "f.duckdb",
        PipelineSettings(rules=rules, **settings),
    )


def window_counts(readings: pl.DataFrame) -> pl.DataFrame:
    """The 10 s windows per machine and sensor that ``readings`` fall in, each with how many
    readings it holds (``n``, an Int32 as in the features table)."""
    return (
        readings.group_by("machine_id", "sensor", window_start=pl.col("ts").dt.truncate("10s"))
        .agg(n=pl.len().cast(pl.Int32))
        .sort("machine_id", "sensor", "window_start")
    )


@contextmanager
def in_background(work: Callable[[], None], timeout_s: float = 30.0) -> Iterator[None]:
    """Runs ``work`` in a thread while the ``with`` body runs (the flow); then waits up to
    ``timeout_s`` for it to end and raises what it raised, if anything."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as e:
            failures.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    yield
    thread.join(timeout=timeout_s)
    if failures:
        raise failures[0]


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Returns once ``condition()`` holds; fails the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


class MqttRun:
    """One ``floorsight run --mqtt BROKER [OPTIONS] --recovery DIR`` process, started and
    subscribed; it snapshots every 0.5 s."""

    def __init__(self, broker: str, erp: Path, db: Path, recovery: Path, *options: str) -> None:
        self.journal = recovery / "mqtt-journal"
        (self.journal / "subscribed").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "floorsight.cli", "run", "--mqtt", broker, *options),
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
        """Waits until the journal holds ``n`` messages."""
        wait_until(lambda: journal_end(self.journal) >= n, f"{n} messages in the journal")

    def kill(self) -> None:
        """SIGKILLs the run and waits until its receiver process is gone too."""
        receivers = [
            int(c)
            for task in Path(f"/proc/{self.proc.pid}/task").glob("*")
            for c in (task / "children").read_text().split()
        ]
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)
        # the receiver goes with its pipeline (before a new one may open the journal)
        wait_until(lambda: not any(Path(f"/proc/{c}").exists() for c in receivers), "receiver")

    def stop(self) -> str:
        """SIGTERMs the run, asserts it exits cleanly and returns its output."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, out[-3000:]
        return out
