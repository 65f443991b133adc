"""The DuckDB sink: every table the pipeline writes, through one writer per database file.

Items are ``(key, (table name, frame))``. The sink has one partition per database file, so
exactly one worker writes a file and workers never contend for its lock: :class:`DuckDBSink`
writes one file (the key is ignored), :class:`PartitionedDuckDBSink` one file per process of a
cluster, each with the rows of that process's machines (routed by the key).
Frames are buffered and written in one transaction per flush (every ``flush_interval``, as soon
as rows of an urgent table such as ``alerts`` arrive, before every recovery snapshot, and at the
end), with upserts on each table's key, so replayed items after a restart rewrite the same rows.

A flush opens the file, writes, commits and closes it (so dashboards in other processes can
read between flushes), which costs tens to hundreds of milliseconds however few rows it holds.
When the pipeline runs far faster than real time (a replay), flushes are therefore spaced so
that they take at most ``max_flush_share`` of the time: fewer, larger transactions, while a live
source at plant speed still gets one a ``flush_interval``. Urgent rows are never held back: they
go at once in a small transaction of their own, the other rows at the next flush.

**Another process holding the file** (a notebook's open ``duckdb.connect()``: DuckDB lets a
writer in only when no other process has the file open) never stops the pipeline. A flush that
cannot get the lock within ``lock_wait`` keeps its rows in the buffer and the dataflow goes on;
the sink retries with capped, jittered backoff for as long as it takes, logs a WARNING naming
the lock holder's PID when it is first blocked and then every ``warn_every``, and an INFO once
the rows are in. The buffer is bounded (``max_blocked_rows``, ``max_blocked_bytes``): when it is
full, ``write_batch`` itself waits, retrying, which holds the whole dataflow back (backpressure)
instead of growing memory. With recovery, a snapshot taken while blocked carries the buffered
rows, so a crash loses none of them; upserts make the retries and replays idempotent.

**Retention** (``retention``, ``floorsight.retention``): the sink, being the file's only writer,
also deletes the rows older than each table's horizon, in bounded passes after a flush, and
writes no row that is already older than it (so a replay cannot bring a deleted row back).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from floorsight.alerts.outbox import Outbox
from floorsight.metrics import HEALTH, METRICS
from floorsight.pipelines.shards import shard_of_key
from floorsight.retention import Retainer, Retention
from floorsight.storage import Database, DatabaseLocked, TableSpec, partition_file

log = logging.getLogger(__name__)

#: What the sink writes: rows for one table.
TableRows = tuple[str, pl.DataFrame]

#: Frames waiting to be written, per table, in arrival order.
Buffer = dict[str, list[pl.DataFrame]]

#: Called after each committed flush with the frames it wrote, per table.
CommitHook = Callable[[Buffer], None]


@dataclass
class LockStats:
    """What another process's hold on the file cost the sink (for logs, tests and benches)."""

    #: times the sink found the file locked beyond ``lock_wait`` and started buffering
    episodes: int = 0
    #: seconds spent blocked, over all episodes (the current one included once it ends)
    blocked_s: float = 0.0
    #: the most rows buffered at once while blocked
    max_buffered_rows: int = 0
    #: times ``write_batch`` waited because the buffer was full (backpressure)
    backpressure: int = 0


class DuckDBSink(FixedPartitionedSink[TableRows, Buffer | None]):
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
        lock_wait: timedelta = timedelta(seconds=1),
        max_blocked_rows: int = 1_000_000,
        max_blocked_bytes: int = 256 * 2**20,
        max_retry_interval: timedelta = timedelta(seconds=2),
        warn_every: timedelta = timedelta(seconds=30),
        retention: Retention | None = None,
        outbox: Path | None = None,
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
        #: how long one write waits for the file lock before the sink keeps its rows and goes
        #: on (a dashboard refresh holds the file for milliseconds: no warning for those)
        self.lock_wait = lock_wait
        #: bounds of the buffer while the file is locked; beyond them write_batch waits
        self.max_blocked_rows = max_blocked_rows
        self.max_blocked_bytes = max_blocked_bytes
        #: the longest pause between two attempts while the file is locked
        self.max_retry_interval = max_retry_interval
        #: how often the WARNING is repeated while the file stays locked
        self.warn_every = warn_every
        #: delete rows older than their table's horizon (``floorsight.retention``), and the
        #: delivered notifications of ``outbox`` older than the alerts' retention
        self.retention = retention
        self.outbox = outbox

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: Buffer | None
    ) -> _DuckDBPartition:
        part = _DuckDBPartition(self, resume_state)
        # a file locked at the start is no different: the tables are created with the first
        # write that gets the lock
        part.try_create_tables()
        return part


class PartitionedDuckDBSink(DuckDBSink):
    """The sink of a per-process store: process ``i`` writes its own file,
    ``floorsight.p<i>.duckdb`` in the folder ``store``, with the rows of the machines it reads.

    A shard's rows (key ``shard-<s>.<n>``, :func:`floorsight.pipelines.shards.shard_key`) go to
    the partition of the process whose worker holds the shard (worker ``s`` is worker
    ``s % workers_per_process`` of process ``s // workers_per_process``), which is the worker
    that read the shard's machines: rows never cross the cluster's network. Rows keyed
    otherwise (dead letters of a source batch, the context's mirror) were made by this process
    and stay in its own file. Each process lists only its own partition, so Bytewax builds
    partition ``i`` on process ``i``.
    """

    def __init__(
        self,
        store: Path,
        tables: list[TableSpec],
        process_id: int,
        processes: int,
        workers_per_process: int,
        **settings,
    ) -> None:
        if not 0 <= process_id < processes:
            raise ValueError(f"process id {process_id} is not one of 0..{processes - 1}")
        super().__init__(partition_file(store, process_id), tables, **settings)
        self.process_id = process_id
        self.processes = processes
        self.workers_per_process = workers_per_process

    @staticmethod
    def part_name(process: int) -> str:
        # zero-padded: Bytewax indexes part_fn's value into the sorted names of all partitions
        return f"process-{process:05d}"

    def list_parts(self) -> list[str]:
        return [self.part_name(self.process_id)]

    def part_fn(self, item_key: str) -> int:
        shard = shard_of_key(item_key)
        if shard is None:
            return self.process_id
        return (shard // self.workers_per_process) % self.processes


class _DuckDBPartition(StatefulSinkPartition[TableRows, Buffer | None]):
    def __init__(self, sink: DuckDBSink, resume_state: Buffer | None) -> None:
        self._db = Database(sink.path, sink.tables, lock_timeout_s=sink.lock_wait.total_seconds())
        # while blocked, each attempt is one try at the lock: the dataflow does not wait on it
        self._db_once = Database(sink.path, sink.tables, lock_timeout_s=0.0)
        self._flush_s = sink.flush_interval.total_seconds()
        self._max_rows = sink.max_buffered_rows
        self._urgent = sink.urgent
        self._on_commit = sink.on_commit
        self._recovery = sink.recovery
        self._max_share = sink.max_flush_share
        self._max_blocked_rows = sink.max_blocked_rows
        self._max_blocked_bytes = sink.max_blocked_bytes
        self._max_retry_s = sink.max_retry_interval.total_seconds()
        self._warn_s = sink.warn_every.total_seconds()
        self._flush_cost = 0.0  # seconds the last flush took
        self._created = False  # the tables exist in the file
        self._buffer: Buffer = {}
        self._rows = 0
        self._bytes = 0
        self._last_flush = time.monotonic()
        # while the file is locked: since when, attempts so far, next attempt, last warning
        self._blocked_since: float | None = None
        self._attempts = 0
        self._next_try = 0.0
        self._warned_at = 0.0
        self.lock_stats = LockStats()
        self.retainer = Retainer(sink.retention) if sink.retention is not None else None
        self._outbox = sink.outbox
        self._outbox_store: Outbox | None = None
        # rows a snapshot taken while blocked carried (they were not in the file yet)
        for table, frames in (resume_state or {}).items():
            for frame in frames:
                self._add(table, frame)

    def write_batch(self, values: list[TableRows]) -> None:
        urgent = False
        for table, frame in values:
            self._add(table, frame)
            urgent = urgent or table in self._urgent
        if self._blocked_since is not None:
            if self._full():
                # hold the dataflow back rather than grow without bound
                self.lock_stats.backpressure += 1
                self.wait_for(self._flush, "the buffer is full: the dataflow waits")
            elif time.monotonic() >= self._next_try:
                self._try(self._flush)
            return
        gap = max(self._flush_s, self._flush_cost / self._max_share)
        if self._rows >= self._max_rows or time.monotonic() - self._last_flush >= gap:
            self._try(self._flush)
        elif urgent:
            self._try(self._flush_urgent)

    def snapshot(self) -> Buffer | None:
        # rows must be in the file, or in this snapshot, before the runtime records that their
        # epoch is done; without a recovery store nothing is kept, so nothing is flushed here
        if self._recovery and self._rows:
            if self._blocked_since is None or time.monotonic() >= self._next_try:
                self._try(self._flush)
            if self._rows:
                return {table: list(frames) for table, frames in self._buffer.items()}
        return None

    def close(self) -> None:
        if self._rows:
            self.wait_for(self._flush, "closing: the last rows wait for the file")
        if self.retainer is not None:
            self._prune(until_done=True)

    # -- the buffer --------------------------------------------------------------------------
    def _add(self, table: str, frame: pl.DataFrame) -> None:
        self._buffer.setdefault(table, []).append(frame)
        self._rows += frame.height
        self._bytes += frame.estimated_size()

    def _full(self) -> bool:
        return self._rows >= self._max_blocked_rows or self._bytes >= self._max_blocked_bytes

    def _flush_urgent(self) -> None:
        """Write the urgent tables' rows alone, in a small transaction of their own (an alert
        must not wait for a second's features and scores to be written with it)."""
        urgent = {t: frames for t, frames in self._buffer.items() if t in self._urgent}
        if not urgent:
            return
        self._commit(urgent)
        # only once committed: a locked file leaves them in the buffer, in order
        for table in urgent:
            del self._buffer[table]
        self._recount()

    def _flush(self) -> None:
        if self._rows:
            began = time.monotonic()
            self._commit(self._buffer)
            self._flush_cost = time.monotonic() - began
        self._buffer = {}
        self._rows = 0
        self._bytes = 0
        self._last_flush = time.monotonic()
        if self.retainer is not None and self.retainer.flushed():
            self._prune()

    def _recount(self) -> None:
        frames = [f for parts in self._buffer.values() for f in parts]
        self._rows = sum(f.height for f in frames)
        self._bytes = sum(f.estimated_size() for f in frames)

    def try_create_tables(self) -> None:
        self._try(self._create_tables)

    def _create_tables(self) -> None:
        if not self._created:
            self._database().create()
            self._created = True

    def _database(self) -> Database:
        return self._db if self._blocked_since is None else self._db_once

    def _commit(self, frames: Buffer) -> None:
        began = time.monotonic()
        HEALTH.write_began()  # a write that hangs turns /healthz unhealthy (floorsight.metrics)
        try:
            self._create_tables()
            if self.retainer is not None:
                frames = self._retained(frames)
            self._database().upsert(frames)
        finally:
            HEALTH.write_ended()
        METRICS.committed(frames, time.monotonic() - began)
        if self._on_commit is not None:
            self._on_commit(frames)

    # -- retention ----------------------------------------------------------------------------
    def _retained(self, frames: Buffer) -> Buffer:
        """``frames`` without the rows older than the horizon, the watermark moved first."""
        assert self.retainer is not None
        if not self.retainer.loaded:  # a resumed run: the file's newest event time counts
            with self._database().write() as con:
                self.retainer.load(con)
        self.retainer.observe(frames)
        return self.retainer.drop_expired(frames)

    def _prune(self, until_done: bool = False) -> None:
        """One bounded retention pass (an unbounded one with ``until_done``, at the end), in a
        transaction of its own; a locked file skips it (the next pass deletes what this one
        would have)."""
        assert self.retainer is not None
        try:
            with self._database().write() as con:
                deleted = self.retainer.prune(con, bounded=not until_done)
            if deleted:
                log.info(
                    "%s: retention deleted %s (%.0f ms)",
                    self._db.path,
                    deleted,
                    self.retainer.stats.last_pass_s * 1e3,
                )
        except DatabaseLocked:
            log.info("%s is locked: retention waits for the next pass", self._db.path)
        days = self.retainer.retention.alerts_days
        if self._outbox is not None and days is not None and self._outbox.exists():
            if self._outbox_store is None:
                self._outbox_store = Outbox(self._outbox)
            self._outbox_store.remove_delivered(timedelta(days=days))

    # -- another process holding the file ---------------------------------------------------
    def _try(self, write: Callable[[], None]) -> bool:
        """``write()`` once; False (rows kept, next attempt scheduled) if the file is locked."""
        try:
            write()
        except DatabaseLocked as e:
            self._blocked(e)
            return False
        self._unblocked()
        return True

    def wait_for(self, write: Callable[[], None], why: str) -> None:
        """``write()``, retried for as long as the file stays locked (never gives up)."""
        if self._try(write):
            return
        log.warning("%s: %s", self._db.path, why)
        while True:
            time.sleep(max(0.0, self._next_try - time.monotonic()))
            if self._try(write):
                return

    def _blocked(self, e: DatabaseLocked) -> None:
        now = time.monotonic()
        self._attempts += 1
        # capped exponential backoff with jitter (the exponent is capped too: no overflow)
        ceiling = min(self._max_retry_s, 0.05 * 2 ** min(self._attempts, 30))
        self._next_try = now + random.uniform(ceiling / 2, ceiling)
        self.lock_stats.max_buffered_rows = max(self.lock_stats.max_buffered_rows, self._rows)
        holder = f"PID {e.holder_pid}" if e.holder_pid is not None else "another connection"
        HEALTH.write_failed(f"{self._db.path} is locked by {holder}")
        if self._blocked_since is None:
            self._blocked_since = self._warned_at = now
            self.lock_stats.episodes += 1
            log.warning(
                "%s is locked by %s: keeping %d rows in memory (up to %d rows / %d MiB, then "
                "the dataflow waits) and retrying until it is free. Read the live file with "
                "floorsight.storage.read_frame, which never holds it open.",
                self._db.path,
                holder,
                self._rows,
                self._max_blocked_rows,
                self._max_blocked_bytes // 2**20,
            )
        elif now - self._warned_at >= self._warn_s:
            self._warned_at = now
            log.warning(
                "%s still locked by %s after %.0f s: %d rows waiting (%d MiB)",
                self._db.path,
                holder,
                now - self._blocked_since,
                self._rows,
                self._bytes // 2**20,
            )

    def _unblocked(self) -> None:
        if self._blocked_since is None:
            return
        HEALTH.write_succeeded()
        blocked_s = time.monotonic() - self._blocked_since
        self.lock_stats.blocked_s += blocked_s
        log.info(
            "%s unlocked after %.1f s (%d attempts): buffered rows written",
            self._db.path,
            blocked_s,
            self._attempts,
        )
        self._blocked_since = None
        self._attempts = 0
        self._next_try = 0.0
