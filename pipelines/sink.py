"""The DuckDB sink: every table the pipeline writes, through one writer per database file.

Items are ``(key, (table name, frame))``; the key is ignored. The sink has one partition per
database file, so exactly one worker writes a file and workers never contend for its lock.
Frames are buffered and written in one transaction per flush (every ``flush_interval``, as soon
as rows of an urgent table such as ``alerts`` arrive, before every recovery snapshot, and at the
end), with upserts on each table's key, so replayed items after a restart rewrite the same rows.

A flush opens the file, writes, commits and closes it (so dashboards in other processes can
read between flushes), which costs tens to hundreds of milliseconds however few rows it holds.
When the pipeline runs far faster than real time (a replay), flushes are therefore spaced so
that they take at most ``max_flush_share`` of the time: fewer, larger transactions, while a live
source at plant speed still gets one a ``flush_interval``. Urgent rows are never held back: they
go at once in a small transaction of their own, the other rows at the next flush.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import polars as pl
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from floorsight.storage import Database, TableSpec

#: What the sink writes: rows for one table.
TableRows = tuple[str, pl.DataFrame]

#: Called after each committed flush with the frames it wrote, per table.
CommitHook = Callable[[dict[str, list[pl.DataFrame]]], None]


class DuckDBSink(FixedPartitionedSink[TableRows, None]):
    """Upserts ``(table, frame)`` items into a DuckDB file."""

    def __init__(
        self,
        path: Path,
        tables: list[TableSpec],
        flush_interval: timedelta = timedelta(seconds=1),
        max_buffered_rows: int = 100_000,
        urgent: Sequence[str] = ("alerts",),
        on_commit: CommitHook | None = None,
        recovery: bool = True,
        max_flush_share: float = 0.1,
    ) -> None:
        self.path = Path(path)
        self.tables = tables
        self.flush_interval = flush_interval
        self.max_buffered_rows = max_buffered_rows
        #: tables whose rows are written at once: people wait for an alert, not for a feature
        self.urgent = frozenset(urgent)
        self.on_commit = on_commit
        #: flush before each recovery snapshot (rows must be in the file before their epoch is
        #: recorded as done); without a recovery store the snapshots are not kept
        self.recovery = recovery
        self.max_flush_share = max_flush_share

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _DuckDBPartition:
        db = Database(self.path, self.tables)
        db.create()
        return _DuckDBPartition(db, self)


class _DuckDBPartition(StatefulSinkPartition[TableRows, None]):
    def __init__(self, db: Database, sink: DuckDBSink) -> None:
        self._db = db
        self._flush_s = sink.flush_interval.total_seconds()
        self._max_rows = sink.max_buffered_rows
        self._urgent = sink.urgent
        self._on_commit = sink.on_commit
        self._recovery = sink.recovery
        self._max_share = sink.max_flush_share
        self._flush_cost = 0.0  # seconds the last flush took
        self._buffer: dict[str, list[pl.DataFrame]] = {}
        self._rows = 0
        self._last_flush = time.monotonic()

    def write_batch(self, values: list[TableRows]) -> None:
        urgent = False
        for table, frame in values:
            self._buffer.setdefault(table, []).append(frame)
            self._rows += frame.height
            urgent = urgent or table in self._urgent
        gap = max(self._flush_s, self._flush_cost / self._max_share)
        if self._rows >= self._max_rows or time.monotonic() - self._last_flush >= gap:
            self._flush()
        elif urgent:
            self._flush_urgent()

    def snapshot(self) -> None:
        # rows must be in the file before the runtime records that their epoch is done
        if self._recovery:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush_urgent(self) -> None:
        """Write the urgent tables' rows alone, in a small transaction of their own (an alert
        must not wait for a second's features and scores to be written with it)."""
        urgent = {t: self._buffer.pop(t) for t in list(self._buffer) if t in self._urgent}
        if not urgent:
            return
        self._rows -= sum(f.height for frames in urgent.values() for f in frames)
        self._commit(urgent)

    def _flush(self) -> None:
        if self._rows:
            began = time.monotonic()
            self._commit(self._buffer)
            self._flush_cost = time.monotonic() - began
        self._buffer = {}
        self._rows = 0
        self._last_flush = time.monotonic()

    def _commit(self, frames: dict[str, list[pl.DataFrame]]) -> None:
        self._db.upsert(frames)
        if self._on_commit is not None:
            self._on_commit(frames)
