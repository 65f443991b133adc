"""DuckDB access under its one-writer-per-file rule.

DuckDB lets one process hold a database file at a time, and a second process cannot even open it
read-only while the first has it open. So nobody keeps the file open: the pipeline buffers rows
and writes them in one short transaction per flush, the dashboard opens it read-only for one
refresh, and each side retries with jittered backoff while the other holds the lock. Table
schemas are declared next to the code that writes them, as :class:`TableSpec`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

#: How long a writer or reader waits for the file lock before it gives up.
LOCK_TIMEOUT_S = 60.0


def _is_lock_conflict(exc: BaseException) -> bool:
    if isinstance(exc, duckdb.IOException):
        return "lock" in str(exc).lower()
    # in one process DuckDB refuses a read-only connection beside an open read-write one (and
    # the reverse); it is as transient as another process's lock
    return isinstance(exc, duckdb.ConnectionException) and "different configuration" in str(exc)


_retry_on_lock = retry(
    retry=retry_if_exception(_is_lock_conflict),
    wait=wait_random_exponential(multiplier=0.01, max=0.5),
    stop=stop_after_delay(LOCK_TIMEOUT_S),
    reraise=True,
)


@_retry_on_lock
def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    return con


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A DuckDB table: its columns with their SQL types, its key, and what a rewrite updates.

    ``update_columns`` empty means a repeated key is ignored (first write wins); otherwise those
    columns take the new values. Either way a write is idempotent, which is what Bytewax's
    at-least-once recovery needs.
    """

    name: str
    schema: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    update_columns: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self.schema]

    @property
    def ddl(self) -> str:
        cols = ",\n    ".join(f'"{name}" {sql_type}' for name, sql_type in self.schema)
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {cols},\n"
            f"    PRIMARY KEY ({_quoted(self.key)})\n)"
        )

    def upsert_sql(self, source: str) -> str:
        cols = _quoted(self.columns)
        conflict = _quoted(self.key)
        if self.update_columns:
            sets = ", ".join(f'"{c}" = excluded."{c}"' for c in self.update_columns)
            action = f"DO UPDATE SET {sets}"
        else:
            action = "DO NOTHING"
        return (
            f"INSERT INTO {self.name} ({cols}) SELECT {cols} FROM {source} "
            f"ON CONFLICT ({conflict}) {action}"
        )


def _quoted(names) -> str:
    return ", ".join(f'"{n}"' for n in names)


class Database:
    """A DuckDB file shared by the pipeline (writer) and dashboards (readers)."""

    def __init__(self, path: Path | str, tables: Sequence[TableSpec] = ()) -> None:
        self.path = Path(path)
        self.tables = {t.name: t for t in tables}

    def create(self) -> None:
        """Create the file and every declared table that is missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.write() as con:
            for spec in self.tables.values():
                con.execute(spec.ddl)

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction with the file lock held; committed on exit, rolled back on error."""
        con = _connect(self.path, read_only=False)
        try:
            con.begin()
            yield con
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one query or one page refresh."""
        con = _connect(self.path, read_only=True)
        try:
            yield con
        finally:
            con.close()

    def upsert(self, frames: dict[str, list[pl.DataFrame]]) -> int:
        """Write frames to their tables in one transaction; returns rows written.

        Rows of insert-only tables (no ``update_columns``) are appended with a plain ``INSERT``,
        cheaper than ``INSERT ... ON CONFLICT``; only if a key is already there (a replay after
        recovery) is the whole transaction redone with conflict handling.
        """
        batches = {}
        for name, parts in frames.items():
            if parts:
                spec = self.tables[name]
                frame = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
                batches[name] = frame.unique(
                    subset=list(spec.key), keep="last", maintain_order=True
                ).select(spec.columns)
        if not batches:
            return 0
        try:
            self._write(batches, append=True)
        except duckdb.ConstraintException:
            self._write(batches, append=False)
        return sum(frame.height for frame in batches.values())

    @retry(
        # DuckDB can lose its Arrow scan function while another connection of this process
        # closes the database instance at the same moment; the transaction was rolled back,
        # and writing it again is safe (idempotent upserts)
        retry=retry_if_exception(
            lambda e: isinstance(e, duckdb.CatalogException) and "python_arrow_scan" in str(e)
        ),
        wait=wait_random_exponential(multiplier=0.01, max=0.2),
        stop=stop_after_delay(10),
        reraise=True,
    )
    def _write(self, batches: dict[str, pl.DataFrame], append: bool) -> None:
        with self.write() as con:
            for name, frame in batches.items():
                spec = self.tables[name]
                # views die with the connection (an aborted transaction refuses unregister)
                view = f"_batch_{name}"
                con.register(view, frame.to_arrow())
                if append and not spec.update_columns:
                    cols = _quoted(spec.columns)
                    con.execute(f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM {view}")
                else:
                    con.execute(spec.upsert_sql(view))

    def replace_table(self, name: str, frame: pl.DataFrame) -> None:
        """Replace a whole table with ``frame`` (for copies of external tables, e.g. ERP)."""
        with self.write() as con:
            con.register("_frame", frame.to_arrow())
            try:
                con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _frame')
            finally:
                con.unregister("_frame")

    def query(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> pl.DataFrame:
        """Run a parameterised read query and return a polars frame."""
        with self.read() as con:
            return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()

    def exists(self) -> bool:
        return self.path.exists()
