"""DuckDB access under its one-writer-per-file rule.

DuckDB lets one process hold a database file at a time, and a second process cannot even open it
read-only while the first has it open. So nobody keeps the file open: the pipeline buffers rows
and writes them in one short transaction per flush, the dashboard opens it read-only for one
refresh, and each side retries with jittered backoff while the other holds the lock. Table
schemas are declared once, next to the code that writes them, as a :class:`TableSpec`: its
DuckDB DDL and its polars schema both come from that one declaration.

Notebooks and scripts read with :func:`read_frame` (or :meth:`Database.query`): it opens the
file read-only, runs one query, and closes it before returning, so it never holds the file
between calls; a ``duckdb.connect()`` kept open to the live file would stop the pipeline's
writes for as long as it stays open. For long analyses :func:`copy_tables` copies tables out
to Parquet files in one short read.

A cluster can write a *partitioned store* instead of one file: a folder with one file per
pipeline process (``floorsight.p<i>.duckdb``, :func:`partition_file`), each written by its own
process. Every reader here takes the folder where it takes a file: :meth:`Database.read` then
attaches every partition file read-only (waiting on each one's lock as on a single file's) and
shows each table as a view over the partitions, so queries do not change. Writes outside the
pipeline go to one partition: :func:`partition_holding` finds the one that holds a row.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl
from tenacity import (
    RetryCallState,
    Retrying,
    retry,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

#: How long a reader, or a writer other than the pipeline's sink (a dashboard acknowledging an
#: alert), waits for the file lock before it gives up. The sink never gives up: it keeps its
#: rows and retries for as long as the file stays locked (``floorsight.pipelines.sink``).
LOCK_TIMEOUT_S = 60.0

#: Tables named so are copies of external tables (the ERP context's ``erp_lab_results`` ...):
#: they have no :class:`TableSpec`, and a write replaces the whole table with its newest frame.
COPIED_PREFIX = "erp_"

log = logging.getLogger(__name__)

T = TypeVar("T")

_HOLDER_PID = re.compile(r"\(PID (\d+)\)")


class DatabaseLocked(duckdb.IOException):
    """The file stayed locked by another process (or connection) for the whole wait.

    ``holder_pid`` is the process DuckDB names as holding the lock (None when it names none,
    as for a connection of this same process).
    """

    def __init__(self, path: Path, waited_s: float, cause: BaseException) -> None:
        self.path = path
        self.waited_s = waited_s
        self.holder_pid = lock_holder_pid(cause)
        holder = f"PID {self.holder_pid}" if self.holder_pid is not None else "another connection"
        super().__init__(f"{path} is locked by {holder} (waited {waited_s:.1f} s): {cause}")


def lock_holder_pid(exc: BaseException) -> int | None:
    """The PID of the lock holder that DuckDB's lock error names, if it names one."""
    found = _HOLDER_PID.search(str(exc))
    return int(found.group(1)) if found else None


class _LockWaitLog:
    """Logs a wait for the lock without end once it has lasted ``after_s`` (a reader's query
    holds the file for milliseconds: no warning for those), then every ``every_s``."""

    def __init__(self, path: Path, after_s: float = 1.0, every_s: float = 30.0) -> None:
        self.path, self.after_s, self.every_s = path, after_s, every_s
        self.logged_at: float | None = None

    def __call__(self, state: RetryCallState) -> None:
        now = time.monotonic()
        if (state.seconds_since_start or 0.0) < self.after_s:
            return
        if self.logged_at is not None and now - self.logged_at < self.every_s:
            return
        self.logged_at = now
        pid = lock_holder_pid(state.outcome.exception()) if state.outcome else None
        log.warning(
            "%s is locked by %s: waiting for it (%.0f s so far)",
            self.path,
            f"PID {pid}" if pid is not None else "another connection",
            state.seconds_since_start or 0.0,
        )


def _is_lock_conflict(exc: BaseException) -> bool:
    if isinstance(exc, duckdb.IOException):
        return "lock" in str(exc).lower()
    # in one process DuckDB refuses a read-only connection beside an open read-write one (and
    # the reverse); it is as transient as another process's lock
    return isinstance(exc, duckdb.ConnectionException) and "different configuration" in str(exc)


def _locked_retry(path: Path, timeout_s: float | None, open_file: Callable[[], T]) -> T:
    """``open_file()``, retried with jittered backoff while ``path`` is locked, for at most
    ``timeout_s`` (0: one attempt), then :class:`DatabaseLocked`; ``None``: for as long as it
    takes, with a WARNING naming the holder when it starts waiting and every 30 s."""
    retrying = Retrying(
        retry=retry_if_exception(_is_lock_conflict),
        wait=wait_random_exponential(multiplier=0.01, max=0.5 if timeout_s is not None else 2.0),
        stop=stop_after_delay(timeout_s) if timeout_s is not None else stop_never,
        before_sleep=None if timeout_s is not None else _LockWaitLog(path),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                opened = open_file()
    except duckdb.Error as e:
        if _is_lock_conflict(e):
            raise DatabaseLocked(path, timeout_s or 0.0, e) from e
        raise
    return opened


def _connect(path: Path, read_only: bool, timeout_s: float | None) -> duckdb.DuckDBPyConnection:
    """A connection to the file at ``path``, retried while it is locked (:func:`_locked_retry`);
    a partitioned store (a folder) is read through views over all its files."""
    if is_partitioned(path):
        if not read_only:
            raise ValueError(
                f"{path} is a partitioned store (one DuckDB file per pipeline process): write "
                "to one of its files (floorsight.storage.partition_holding finds the file that "
                "holds a row), not to the folder"
            )
        return _connect_partitions(path, timeout_s)
    con = _locked_retry(path, timeout_s, lambda: duckdb.connect(str(path), read_only=read_only))
    con.execute("SET TimeZone = 'UTC'")
    return con


# ---- partitioned stores: one DuckDB file per pipeline process ---------------------------------

#: The file of process ``i``'s partition in a partitioned store (a folder).
PARTITION_FILE = "floorsight.p{}.duckdb"
_PARTITION_NAME = re.compile(r"^floorsight\.p(\d+)\.duckdb$")

#: Tables of the ERP context each process mirrors into its own file (the same files, loaded by
#: every process): the views read them from the lowest-numbered partition that has them.
CONTEXT_TABLES = frozenset({"work_orders", "spec_limits", "validation_results"})

#: Tables where several processes can write the same key: the context's own dead letters
#: (every process that loads a bad context file finds them). The views keep one row per key.
SHARED_KEYS: dict[str, tuple[str, ...]] = {"dead_letters": ("dead_letter_id",)}


def is_partitioned(path: Path | str) -> bool:
    """True when ``path`` is a partitioned store: a folder of ``floorsight.p<i>.duckdb``."""
    return Path(path).is_dir()


def remove_database(path: Path | str) -> None:
    """Delete a DuckDB file and its write-ahead log, where they exist."""
    path = Path(path)
    for part in (path, path.with_name(path.name + ".wal")):
        part.unlink(missing_ok=True)


def partition_file(store: Path | str, process: int) -> Path:
    """The DuckDB file process ``process`` of a cluster writes in the store ``store``."""
    return Path(store) / PARTITION_FILE.format(process)


def partition_files(store: Path | str) -> list[Path]:
    """The store's partition files, by process number."""
    found = [
        (int(m.group(1)), f)
        for f in Path(store).iterdir()
        if (m := _PARTITION_NAME.match(f.name)) and f.is_file()
    ]
    return [f for _, f in sorted(found)]


def partition_holding(store: Path | str, table: str, column: str, value: object) -> Path | None:
    """The file of a partitioned store whose ``table`` has a row with ``column = value`` (the
    partition of the process that owns the row's machine), or None; ``store`` itself when it is
    one file. Writes about an alert (an acknowledgement, a label) go to that file, so the
    process that raised the alert reads them from its own file."""
    if not is_partitioned(store):
        return Path(store)
    quoted, col = '"' + table.replace('"', '""') + '"', '"' + column.replace('"', '""') + '"'
    for path in partition_files(store):
        with Database(path).read() as con:
            try:
                rows = con.execute(f"SELECT 1 FROM {quoted} WHERE {col} = ? LIMIT 1", [value])
                if rows.fetchall():
                    return path
            except duckdb.CatalogException:
                continue  # this partition has no such table yet
    return None


def _connect_partitions(store: Path, timeout_s: float | None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with every partition file of ``store`` attached read-only and one
    view per table, named as the table, over all the files that have it."""
    files = partition_files(store)
    if not files:
        raise FileNotFoundError(
            f"{store} is a folder without partition files ({PARTITION_FILE.format('<i>')}): "
            "give --db a DuckDB file or the folder a per-process run writes"
        )
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        tables: dict[str, list[str]] = {}
        for i, path in enumerate(files):
            alias = f"p{i}"
            literal = "'" + str(path).replace("'", "''") + "'"
            attach = f"ATTACH {literal} AS {alias} (READ_ONLY)"
            _locked_retry(path, timeout_s, lambda sql=attach: con.execute(sql))
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables()"
                " WHERE database_name = ? AND schema_name = 'main' ORDER BY table_name",
                [alias],
            ).fetchall():
                tables.setdefault(name, []).append(alias)
        for name, aliases in tables.items():
            con.execute(f"CREATE VIEW {_ident(name)} AS {_union_sql(name, aliases)}")
    except BaseException:
        con.close()
        raise
    return con


def _union_sql(table: str, aliases: list[str]) -> str:
    """The query of a partitioned table's view over the partitions ``aliases`` that have it."""
    parts = [f"SELECT * FROM {alias}.main.{_ident(table)}" for alias in aliases]
    if table in CONTEXT_TABLES or table.startswith(COPIED_PREFIX):
        return parts[0]  # one copy of the context: the lowest-numbered partition's
    union = " UNION ALL BY NAME ".join(parts)
    if table in SHARED_KEYS:
        return f"SELECT DISTINCT ON ({_quoted(SHARED_KEYS[table])}) * FROM ({union})"
    return union


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: The polars dtype of a column of each DuckDB type, as a frame read back from the file has it
#: (connections are in UTC, so a TIMESTAMPTZ reads as ``floorsight.records.TIMESTAMP``).
POLARS_TYPES: dict[str, pl.DataType] = {
    "VARCHAR": pl.String(),
    "TEXT": pl.String(),
    "DOUBLE": pl.Float64(),
    "DOUBLE PRECISION": pl.Float64(),
    "REAL": pl.Float32(),
    "FLOAT": pl.Float32(),
    "TINYINT": pl.Int8(),
    "SMALLINT": pl.Int16(),
    "INTEGER": pl.Int32(),
    "INT": pl.Int32(),
    "BIGINT": pl.Int64(),
    "UTINYINT": pl.UInt8(),
    "USMALLINT": pl.UInt16(),
    "UINTEGER": pl.UInt32(),
    "UBIGINT": pl.UInt64(),
    "BOOLEAN": pl.Boolean(),
    "DATE": pl.Date(),
    "TIME": pl.Time(),
    "TIMESTAMP": pl.Datetime("us"),
    "TIMESTAMPTZ": pl.Datetime("us", "UTC"),
    "TIMESTAMP WITH TIME ZONE": pl.Datetime("us", "UTC"),
    "BLOB": pl.Binary(),
}

# what follows a column's type in its declaration ("VARCHAR NOT NULL", "DOUBLE DEFAULT 0")
_CONSTRAINT = re.compile(
    r"\s+(NOT\s+NULL|NULL|DEFAULT|CHECK|UNIQUE|PRIMARY\s+KEY|REFERENCES|COLLATE)\b.*$",
    re.IGNORECASE | re.DOTALL,
)


def polars_type(table: str, column: str, declaration: str) -> pl.DataType:
    """The polars dtype of a column declared ``declaration`` (``"VARCHAR NOT NULL"``).

    Raises :class:`ValueError` naming the table and column for a type without one.
    """
    sql_type = " ".join(_CONSTRAINT.sub("", declaration.strip(), count=1).upper().split())
    try:
        return POLARS_TYPES[sql_type]
    except KeyError:
        raise ValueError(
            f"table {table}, column {column}: DuckDB type {sql_type!r} has no polars dtype here "
            f"(known: {', '.join(POLARS_TYPES)})"
        ) from None


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A DuckDB table: its columns with their SQL types, its key, and what a rewrite updates.

    ``update_columns`` empty means a repeated key is ignored (first write wins); otherwise those
    columns take the new values. Either way a write is idempotent, which is what Bytewax's
    at-least-once recovery needs.

    A table that only takes new rows and has a timestamp in its key (features, scores, the
    models' tables: :attr:`time_key`) has no primary-key index: keeping DuckDB's index up to date
    cost more than the appends themselves (``benchmarks/duckdb_appends.py``), and
    :meth:`Database.upsert` keeps a repeated key out without it (rows newer than the table's
    newest are appended, older ones only where their key is missing). Every other table has
    its key as ``PRIMARY KEY``.

    The one declaration of the table: :attr:`ddl` creates it, :attr:`polars_schema` is the
    schema of the frames written to it and read back from it. A column type without a polars
    dtype raises when the spec is made (at import, for a module's tables).

    >>> spec = TableSpec("lots", (("lot", "VARCHAR NOT NULL"), ("made", "TIMESTAMPTZ")), ("lot",))
    >>> spec.polars_schema
    {'lot': String, 'made': Datetime(time_unit='us', time_zone='UTC')}
    """

    name: str
    schema: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    update_columns: tuple[str, ...] = ()
    _polars_schema: dict[str, pl.DataType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        polars_schema = {col: polars_type(self.name, col, decl) for col, decl in self.schema}
        object.__setattr__(self, "_polars_schema", polars_schema)

    @property
    def polars_schema(self) -> dict[str, pl.DataType]:
        """Column name -> polars dtype, in the table's column order (one dict, made once: do not
        mutate it; ``{**spec.polars_schema, ...}`` for a schema that extends it)."""
        return self._polars_schema

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self.schema]

    @property
    def time_key(self) -> str | None:
        """The key's first timestamp column, for an insert-only table (None: the table is
        keyed by its primary-key index)."""
        if self.update_columns:
            return None
        types = dict(self.schema)
        return next((c for c in self.key if types[c].upper().startswith("TIMESTAMP")), None)

    @property
    def ddl(self) -> str:
        if self.time_key is not None:  # no index: Database.upsert keeps the key unique
            # (NOT NULL on the key's columns all the same, as a primary key has it)
            columns = [
                (
                    name,
                    sql_type
                    if name not in self.key or "NOT NULL" in sql_type.upper()
                    else f"{sql_type} NOT NULL",
                )
                for name, sql_type in self.schema
            ]
            key = ""
        else:
            columns, key = list(self.schema), f",\n    PRIMARY KEY ({_quoted(self.key)})"
        cols = ",\n    ".join(f'"{name}" {sql_type}' for name, sql_type in columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {cols}{key}\n)"

    def insert_sql(self, source: str) -> str:
        """Append every row of ``source``, no questions asked."""
        cols = _quoted(self.columns)
        return f"INSERT INTO {self.name} ({cols}) SELECT {cols} FROM {source}"

    def append_new_sql(self, source: str) -> tuple[str, str]:
        """For a :attr:`time_key` table: the statement that appends the rows of ``source``
        newer than ``$1`` (the table's newest time key before the write), and the one that
        appends the others (``$1`` again, and ``$2``, their oldest) where their key is not in
        the table yet. The second reads only the table's rows in that time range."""
        cols, t = _quoted(self.columns), self.time_key
        # (a NULL time goes with the newer rows, to the NOT NULL that refuses it)
        newer = f'{self.insert_sql(source)} WHERE "{t}" > $1 OR "{t}" IS NULL'
        same = " AND ".join(f'old."{c}" = new."{c}"' for c in self.key)
        older = (
            f"INSERT INTO {self.name} ({cols}) SELECT {cols} FROM {source} AS new "
            f'WHERE new."{t}" <= $1 AND NOT EXISTS (SELECT 1 FROM {self.name} AS old '
            f'WHERE old."{t}" BETWEEN $2 AND $1 AND {same})'
        )
        return newer, older

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


def _append_new(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, view: str, frame: pl.DataFrame
) -> None:
    """Append the rows of ``view`` (``frame``, unique on the key) whose key is not in the
    :attr:`~TableSpec.time_key` table yet: those newer than its newest row all at once, the
    others (late rows, or a replay after recovery) against the table's rows of their time."""
    t = spec.time_key
    newest = con.execute(f'SELECT max("{t}") FROM {spec.name}').fetchone()[0]
    if newest is None:
        con.execute(spec.insert_sql(view))
        return
    newer, older = spec.append_new_sql(view)
    con.execute(newer, [newest])
    oldest = frame[t].min()
    if oldest is not None and oldest <= newest:
        con.execute(older, [newest, oldest])


def _quoted(names) -> str:
    return ", ".join(f'"{n}"' for n in names)


class Database:
    """A DuckDB file shared by the pipeline (writer) and dashboards (readers)."""

    def __init__(
        self,
        path: Path | str,
        tables: Sequence[TableSpec] = (),
        lock_timeout_s: float | None = LOCK_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.tables = {t.name: t for t in tables}
        #: how long a connection waits for the file lock before :class:`DatabaseLocked`
        #: (None: for as long as it takes, logging who holds it)
        self.lock_timeout_s = lock_timeout_s

    def create(self) -> None:
        """Create the file and every declared table that is missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.write() as con:
            for spec in self.tables.values():
                con.execute(spec.ddl)

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction with the file lock held; committed on exit, rolled back on error."""
        con = _connect(self.path, read_only=False, timeout_s=self.lock_timeout_s)
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
    def hold(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection outside any transaction, the file lock held until exit (for
        maintenance that needs statements a transaction refuses: ``ATTACH``, ``CHECKPOINT``)."""
        con = _connect(self.path, read_only=False, timeout_s=self.lock_timeout_s)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one query or one page refresh."""
        con = _connect(self.path, read_only=True, timeout_s=self.lock_timeout_s)
        try:
            yield con
        finally:
            con.close()

    def upsert(self, frames: dict[str, list[pl.DataFrame]]) -> int:
        """Write frames to their tables in one transaction; returns rows written.

        Rows of a table keyed by time (:attr:`TableSpec.time_key`) are appended where their key
        is missing (:func:`_append_new`). Rows of the other insert-only tables (no
        ``update_columns``) are appended with a plain ``INSERT``, cheaper than ``INSERT ... ON
        CONFLICT``; only if a key is already there (a replay after recovery) is the whole
        transaction redone with conflict handling.
        """
        batches = {}
        for name, parts in frames.items():
            if parts and name.startswith(COPIED_PREFIX) and name not in self.tables:
                batches[name] = parts[-1]  # a copy: the newest one replaces the table
            elif parts:
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
                spec = self.tables.get(name)
                # views die with the connection (an aborted transaction refuses unregister)
                view = f"_batch_{name}"
                con.register(view, frame.to_arrow())
                if spec is None:  # a copy of an external table (COPIED_PREFIX)
                    con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM {view}')
                elif spec.time_key is not None:
                    _append_new(con, spec, view, frame)
                elif append and not spec.update_columns:
                    con.execute(spec.insert_sql(view))
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
        """Run a parameterised read query and return a polars frame.

        The file is opened read-only for this one query and closed before the frame is
        returned, so a caller never holds it between calls (see :func:`read_frame`).
        """
        with self.read() as con:
            return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()

    def exists(self) -> bool:
        if is_partitioned(self.path):
            return bool(partition_files(self.path))
        return self.path.exists()


def read_frame(
    path: Path | str,
    sql: str,
    params: Sequence[object] | dict[str, object] = (),
    timeout_s: float = LOCK_TIMEOUT_S,
) -> pl.DataFrame:
    """One parameterised query on the DuckDB file at ``path``, as a polars frame.

    The way for notebooks and scripts to read the live pipeline's file: it opens read-only,
    runs, and closes at once, so the pipeline's writer is never kept waiting by it. While the
    writer holds the file (one flush, tens to hundreds of milliseconds) it retries, for at most
    ``timeout_s``, then raises :class:`DatabaseLocked`.
    """
    return Database(path, lock_timeout_s=timeout_s).query(sql, params)


def copy_tables(
    path: Path | str,
    out_dir: Path | str,
    tables: Iterable[str] | None = None,
    timeout_s: float = LOCK_TIMEOUT_S,
) -> dict[str, Path]:
    """Copy tables of the DuckDB file at ``path`` to ``out_dir/<table>.parquet``.

    For analyses longer than one query: work on the copies, not on the live file. All tables
    (default: every table of the file) are copied in one read-only connection, closed at the
    end, so they are consistent with each other; the writer waits for that one copy only.
    Returns each table's Parquet file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    with Database(path, lock_timeout_s=timeout_s).read() as con:
        present = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        wanted = sorted(present) if tables is None else list(tables)
        missing = [t for t in wanted if t not in present]
        if missing:
            raise ValueError(f"{path} has no table {', '.join(missing)} (has {sorted(present)})")
        for name in wanted:
            target = out / f"{name}.parquet"
            # a table name cannot be a parameter: it is one of the file's own tables, quoted
            quoted = '"' + name.replace('"', '""') + '"'
            target_sql = "'" + str(target).replace("'", "''") + "'"
            con.execute(f"COPY (SELECT * FROM {quoted}) TO {target_sql} (FORMAT parquet)")
            written[name] = target
    return written
