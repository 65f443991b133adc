"""Retention of the time-series tables and compaction of the DuckDB file.

**Retention** (``floorsight run --retain-days TABLE=DAYS``, ``all=DAYS`` for every time-series
table) deletes the rows whose event time is more than DAYS older than the newest event time the
pipeline has seen (its *watermark*), not older than the wall clock: a history replay of last
year keeps its rows on arrival and loses them only as the replay itself moves DAYS past them.
The sink, the file's only writer, runs it (``pipelines/sink.py``): every ``every_flushes``
flushes, one short transaction of its own that deletes at most ``batch_rows`` rows per table
(the oldest first), so a backlog after turning retention on is worked off over several passes
instead of holding the file for one long delete, and passes take at most ``max_share`` of the
time; at the end of a run one unbounded pass deletes the rest.

**Replays after recovery.** Bytewax replays the items since the last snapshot; a replayed row
older than the horizon must not come back. So the sink drops, before it writes, every row
older than the horizon of its table (:meth:`Retainer.drop_expired`): a deleted row stays
deleted, and a replay can only rewrite rows that are still kept. The watermark never moves
back: it starts from the newest event time already in the file (a resumed run) and grows with
every frame the sink sees, before the frame is filtered.

**Open work is kept.** An alert nobody has resolved (``open`` or ``acknowledged``) stays
whatever its age, and an incident stays while any of its alerts does (:data:`KEPT_WHILE`): a
quality hold nobody has handled does not vanish from the dashboard because its machine was
quiet for DAYS. Resolved alerts go by their ``last_seen`` like any other row.

Tables without an event-time column (the ERP context's mirrors: ``work_orders``,
``spec_limits``, ``erp_*``) are not retainable: :func:`parse_retain_days` refuses them.
``alert_events`` (the people's audit trail, written by the dashboard) is kept.

**Compaction** (``floorsight compact --db FILE``): DuckDB reuses the blocks that deleted rows
free and a ``CHECKPOINT`` gives back part of them, but it never shrinks the file much after a
``DELETE`` and ``VACUUM`` reclaims nothing. :func:`compact` copies the live tables into a new
file (``ATTACH`` + ``COPY FROM DATABASE``) and swaps it in with one ``rename``, while it holds
the file's lock, so the pipeline's sink waits (keeping its rows, as for any other holder) and
then writes into the compacted file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from floorsight.records import AlertStatus
from floorsight.storage import LOCK_TIMEOUT_S, Database, remove_database

log = logging.getLogger(__name__)

#: The event-time column of every time-series table (several: the first that is not null).
#: A row is older than the horizon when that time is.
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "features": ("window_start",),
    "scores": ("window_start",),
    "spc": ("window_start",),
    "capability": ("window_end",),
    "drift": ("window_end",),
    "deviation_checks": ("part_made_at",),
    # an alert or incident goes when its last flagged window is older than the horizon, an
    # alert once it is resolved too, an incident once none of its alerts is left (KEPT_WHILE)
    "alerts": ("last_seen",),
    "incidents": ("last_seen",),
    "machine_states": ("since",),
    "part_counts": ("ts",),
    # a reading too malformed to have a time is judged by when it arrived
    "dead_letters": ("ts", "received_at"),
    # when the suites ran (wall clock)
    "validation_results": ("validated_at",),
}

#: Rows a pass keeps whatever their age (SQL on the table's own columns): an alert nobody has
#: resolved yet is open work, however long ago its last window was flagged; an incident goes
#: with the last of its alerts (``alert_ids``: comma-separated). ``alerts`` is pruned before
#: ``incidents``, so an incident whose alerts that pass deleted goes in the same pass.
KEPT_WHILE: dict[str, str] = {
    "alerts": f"status <> '{AlertStatus.RESOLVED}'",
    # a hash join of the incidents' alert ids with the alerts left: uncorrelated, so it grows
    # with the tables' rows, not with their product as a list_contains per incident and alert
    "incidents": (
        "incident_id IN (SELECT incident_id FROM (SELECT incident_id, "
        "unnest(string_split(alert_ids, ',')) AS alert_id FROM incidents) JOIN alerts "
        "USING (alert_id))"
    ),
}
#: the table each rule of ``KEPT_WHILE`` reads besides its own: pruned first, and without it
#: the rule is not applied
_KEPT_READS: dict[str, str] = {"incidents": "alerts"}

#: Tables whose times are not the plant's event time: they do not move the watermark.
WALL_CLOCK_TABLES = frozenset({"dead_letters", "validation_results"})

#: Tables the pipeline writes that have no event time: copies of the ERP context.
NOT_RETAINABLE = frozenset({"work_orders", "spec_limits", "alert_events"})

#: ``all=DAYS`` sets every time-series table
ALL = "all"


class RetentionError(ValueError):
    """A ``--retain-days`` value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Retention:
    """How long each table keeps its rows, and how the sink deletes them."""

    #: table -> days kept behind the watermark
    days: Mapping[str, float] = field(default_factory=dict)
    #: a retention pass every this many flushes of the sink
    every_flushes: int = 10
    #: at most this many rows deleted per table and pass
    batch_rows: int = 5_000
    #: passes take at most this share of the time: after a pass of X s the next waits X/share
    #: (None: no wait, each pass when due)
    max_share: float | None = 0.1

    def keep(self, table: str) -> timedelta | None:
        days = self.days.get(table)
        return timedelta(days=days) if days is not None else None

    @property
    def alerts_days(self) -> float | None:
        """How long delivered notifications stay in the outbox: the alerts' retention."""
        return self.days.get("alerts")


def parse_retain_days(values: Iterable[str]) -> Retention | None:
    """``["all=30", "features=7"]`` as a :class:`Retention` (None for no values).

    ``all=DAYS`` applies to every time-series table, a table's own value overrides it.
    Raises :class:`RetentionError` naming the value for an unknown or not retainable table, a
    value that is not a number, and a number that is not positive.
    """
    days: dict[str, float] = {}
    default: float | None = None
    for value in values:
        table, sep, number = value.partition("=")
        table = table.strip()
        if not sep or not table:
            raise RetentionError(f"--retain-days {value!r}: expected TABLE=DAYS, e.g. all=30")
        if table in NOT_RETAINABLE or table.startswith("erp_"):
            raise RetentionError(
                f"--retain-days {value!r}: table {table!r} has no event-time column (a copy of "
                f"the ERP context or the alerts' audit trail) and is not retainable"
            )
        if table != ALL and table not in TIME_COLUMNS:
            raise RetentionError(
                f"--retain-days {value!r}: unknown table {table!r} (retainable: "
                f"{ALL}, {', '.join(sorted(TIME_COLUMNS))})"
            )
        try:
            n = float(number)
        except ValueError:
            raise RetentionError(
                f"--retain-days {value!r}: {number.strip()!r} is not a number of days"
            ) from None
        if not n > 0 or n == float("inf"):
            raise RetentionError(
                f"--retain-days {value!r}: days must be a positive number, got {number.strip()}"
            )
        if table == ALL:
            default = n
        else:
            days[table] = n
    if default is None and not days:
        return None
    if default is not None:
        days = {t: days.get(t, default) for t in TIME_COLUMNS}
    return Retention(days)


def _time_sql(table: str) -> str:
    cols = TIME_COLUMNS[table]
    quoted = [f'"{c}"' for c in cols]
    return quoted[0] if len(quoted) == 1 else f"coalesce({', '.join(quoted)})"


def _time_expr(table: str) -> pl.Expr:
    cols = TIME_COLUMNS[table]
    return pl.col(cols[0]) if len(cols) == 1 else pl.coalesce(cols)


@dataclass
class RetentionStats:
    """What retention did in one sink (for logs, tests and benches)."""

    passes: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    #: rows a replay (or a late item) brought that were already older than the horizon
    dropped: int = 0
    #: the last and the longest pass, in seconds
    last_pass_s: float = 0.0
    max_pass_s: float = 0.0


class Retainer:
    """The sink's side of retention: the watermark, the write filter and the delete passes."""

    def __init__(self, retention: Retention) -> None:
        self.retention = retention
        self.watermark: datetime | None = None
        self.stats = RetentionStats()
        self._loaded = False  # the watermark includes what the file held at the start
        self._flushes = 0
        self._next_pass = 0.0  # time.monotonic() before which no pass starts
        #: tables with rows left to delete after the last pass
        self.backlog: set[str] = set(retention.days)

    # -- the watermark ------------------------------------------------------------------------
    def observe(self, frames: Mapping[str, list[pl.DataFrame]]) -> None:
        """Move the watermark to the newest event time in ``frames`` (never back)."""
        for table, parts in frames.items():
            if table not in TIME_COLUMNS or table in WALL_CLOCK_TABLES:
                continue
            for frame in parts:
                if frame.height:
                    self._advance(frame.select(_time_expr(table).max()).item())

    def _advance(self, newest: datetime | None) -> None:
        if newest is not None and (self.watermark is None or newest > self.watermark):
            self.watermark = newest

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Start the watermark from the newest event time already in the file."""
        present = _present_tables(con)
        parts = [
            f"SELECT max({_time_sql(t)}) AS newest FROM {t}"
            for t in TIME_COLUMNS
            if t in present and t not in WALL_CLOCK_TABLES
        ]
        if parts:
            self._advance(
                con.execute(f"SELECT max(newest) FROM ({' UNION ALL '.join(parts)})").fetchone()[0]
            )
        self._loaded = True

    def horizon(self, table: str) -> datetime | None:
        keep = self.retention.keep(table)
        if keep is None or self.watermark is None:
            return None
        return self.watermark - keep

    # -- writing ------------------------------------------------------------------------------
    def drop_expired(
        self, frames: Mapping[str, list[pl.DataFrame]]
    ) -> dict[str, list[pl.DataFrame]]:
        """``frames`` without the rows older than their table's horizon (a replayed row that
        retention deleted stays deleted); rows without an event time are kept."""
        out: dict[str, list[pl.DataFrame]] = {}
        for table, parts in frames.items():
            horizon = self.horizon(table) if table in TIME_COLUMNS else None
            if horizon is None:
                out[table] = parts
                continue
            kept = []
            for frame in parts:
                fresh = frame.filter(_time_expr(table).is_null() | (_time_expr(table) >= horizon))
                self.stats.dropped += frame.height - fresh.height
                if fresh.height:
                    kept.append(fresh)
            out[table] = kept
        return out

    def flushed(self) -> bool:
        """Count one flush; True when a retention pass is due: every ``every_flushes``
        flushes, or at every flush while a backlog is left, but never sooner than the
        ``max_share`` of the time allows after the last pass."""
        self._flushes += 1
        if time.monotonic() < self._next_pass:
            return False
        return bool(self.backlog) or self._flushes % self.retention.every_flushes == 0

    def prune(self, con: duckdb.DuckDBPyConnection, bounded: bool = True) -> dict[str, int]:
        """One pass: deletes at most ``batch_rows`` rows per table, oldest first (every row
        older than the horizon when not ``bounded``: the end of a run, when no flush waits);
        returns the rows deleted per table (the tables with more left stay in ``backlog``)."""
        began = time.monotonic()
        present = _present_tables(con)
        limit = self.retention.batch_rows
        deleted: dict[str, int] = {}
        self.backlog = set()
        # a table a rule of KEPT_WHILE reads goes before the table of the rule
        for table in sorted(self.retention.days, key=lambda t: t in _KEPT_READS):
            horizon = self.horizon(table)
            if horizon is None or table not in present:
                continue
            when = _time_sql(table)
            expired = f"{when} < ?"
            kept = KEPT_WHILE.get(table)
            if kept is not None and _KEPT_READS.get(table, table) in present:
                expired += f" AND NOT ({kept})"
            if bounded:
                sql = (
                    f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                    f"WHERE {expired} ORDER BY {when} LIMIT {limit:d})"
                )
            else:
                sql = f"DELETE FROM {table} WHERE {expired}"
            n = con.execute(sql, [horizon]).fetchone()[0]
            if n:
                deleted[table] = n
                self.stats.deleted[table] = self.stats.deleted.get(table, 0) + n
            if bounded and n >= limit:
                self.backlog.add(table)
        self.stats.passes += 1
        self.stats.last_pass_s = time.monotonic() - began
        self.stats.max_pass_s = max(self.stats.max_pass_s, self.stats.last_pass_s)
        if self.retention.max_share is not None:
            self._next_pass = time.monotonic() + self.stats.last_pass_s / self.retention.max_share
        return deleted


def _present_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SHOW TABLES").fetchall()}


# -- compaction -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompactReport:
    """A compaction: the file's size before and after, and the rows of every table (equal in
    both files: :func:`compact` checks it before the swap)."""

    path: Path
    bytes_before: int
    bytes_after: int
    rows: dict[str, int]
    seconds: float


class CompactionError(RuntimeError):
    """The copy did not hold the rows of the original: the original is left in place."""


def compact(
    path: Path | str, timeout_s: float | None = LOCK_TIMEOUT_S, out: Path | str | None = None
) -> CompactReport:
    """Rewrite the DuckDB file at ``path`` into a fresh file without the space of deleted rows.

    With ``out`` (a backup), the fresh file is written there and ``path`` is left as it is:
    it is opened read-only, so dashboards go on reading while the copy is made, and the copy
    is consistent (every table as of one moment: the sink cannot write meanwhile).

    Holds the file's lock throughout (waiting for it up to ``timeout_s``, None: as long as it
    takes), so it is safe while the pipeline runs: the sink keeps its rows while the file is
    held and writes them into the compacted file afterwards. The new file is written beside
    the old one (``<file>.compact``: as much free disk as the live data), its row counts are
    checked table by table, and it replaces the old file with one atomic ``rename`` before the
    lock is given up.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--db {path}: no such database file")
    if out is not None and Path(out).exists():
        raise FileExistsError(f"--out {out}: the file exists already (a backup never overwrites)")
    began = time.monotonic()
    target = Path(out) if out is not None else path.with_name(path.name + ".compact")
    remove_database(target)  # a compaction that died half-way
    database = Database(path, lock_timeout_s=timeout_s)
    with database.read() if out is not None else database.hold() as con:
        if out is None:
            con.execute("CHECKPOINT")
        bytes_before = path.stat().st_size
        source = con.execute("SELECT current_database()").fetchone()[0]
        tables = sorted(_present_tables(con))
        rows = {t: _count(con, f'"{source}"', t) for t in tables}
        con.execute("ATTACH ? AS compacted (READ_WRITE)", [str(target)])
        try:
            con.execute(f'COPY FROM DATABASE "{source}" TO compacted')
            copied = {t: _count(con, "compacted", t) for t in tables}
        finally:
            con.execute("DETACH compacted")
        if copied != rows:
            target.unlink(missing_ok=True)
            raise CompactionError(f"{path}: the copy holds {copied}, the file {rows}: not swapped")
        _fsync(target)
        if out is None:
            os.replace(target, path)
        _fsync(target.parent if out is not None else path.parent)
    bytes_after = (target if out is not None else path).stat().st_size
    report = CompactReport(
        target if out is not None else path,
        bytes_before,
        bytes_after,
        rows,
        time.monotonic() - began,
    )
    log.info(
        "%s compacted into %s: %.1f MB -> %.1f MB in %.1f s",
        path,
        report.path,
        bytes_before / 1e6,
        bytes_after / 1e6,
        report.seconds,
    )
    return report


def _count(con: duckdb.DuckDBPyConnection, database: str, table: str) -> int:
    quoted = '"' + table.replace('"', '""') + '"'
    return con.execute(f"SELECT count(*) FROM {database}.main.{quoted}").fetchone()[0]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
