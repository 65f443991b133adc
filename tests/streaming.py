"""A dataflow fed step by step by a test: the flow keeps running while the test changes the world.

The test's script runs in a thread: it hands frames of readings to the running flow, waits until
their rows are in DuckDB, changes something (promotes a model, rewrites the ERP context) and
feeds more; when the script ends, so does the flow's input. The flow runs in the calling thread
with Bytewax's ``run_main``, as in every other flow test.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import duckdb
import polars as pl
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from floorsight.pipelines.sources import FrameSource
from floorsight.storage import Database

_END = object()


class FedInput:
    """A source whose frames the test hands over while the flow runs."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()

    def source(self) -> FrameSource:
        return FrameSource(lambda worker, workers: self._frames())

    def _frames(self) -> Iterator[pl.DataFrame | None]:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                yield None  # nothing yet: the partition sleeps a little
                continue
            if item is _END:
                return
            yield item

    def feed(self, frame: pl.DataFrame) -> None:
        self._queue.put(frame)

    def run(self, flow: Dataflow, script: Callable[[], None]) -> None:
        """Run ``flow`` until ``script`` (in a thread) is done feeding; re-raise its errors."""
        errors: list[BaseException] = []

        def scripted() -> None:
            try:
                script()
            except BaseException as e:
                errors.append(e)
            finally:
                self._queue.put(_END)

        thread = threading.Thread(target=scripted, name="test-script")
        thread.start()
        run_main(flow)
        thread.join()
        if errors:
            raise errors[0]


def query(db: Database, sql: str, params: list | None = None) -> pl.DataFrame:
    """Read ``db`` from the process that runs the flow.

    DuckDB shares one database instance per file and process, and refuses a read-only
    connection beside the sink's read-write one: in-process readers connect read-write.
    """
    con = duckdb.connect(str(db.path))
    try:
        return con.sql(sql, params=params or []).pl()
    finally:
        con.close()


def wait_for(
    db: Database,
    sql: str,
    params: list | None = None,
    until: Callable[[pl.DataFrame], bool] = lambda f: f.height > 0,
    timeout_s: float = 180.0,
) -> pl.DataFrame:
    """Query ``db`` until ``until(result)`` holds (the flow writes asynchronously)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = query(db, sql, params)
            if until(result):
                return result
            last = result
        except Exception as e:  # the table may not be there yet
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout_s} s for {sql!r}; last: {last}")
