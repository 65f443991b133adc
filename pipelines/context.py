"""ERP/MES context: work orders, spec limits and the record tables, joined as of event time.

The context comes from a folder of CSV or Parquet files, a DuckDB file, a PostgreSQL database
or, through a mapping file, the plant's own exports (``pipelines.context_map``).

Each reading gets the work order that was running on its machine at the reading's own timestamp
(not the latest one), with that order's product and material lot. A reading for which no work
order was valid is held for a bounded event time in case its context arrives late
(:class:`ContextHold`), then gets empty context columns: it is kept and flagged, never dropped.
Every table is re-read when its files change (a database on an interval), so new work orders,
changeovers and lab results reach the pipeline without a restart.

A load is taken whole or rejected whole. It is judged by: the files themselves (present,
readable, the required columns, rows in ``work_orders`` and ``spec_limits``), the row rules
(:func:`check_work_orders`, :func:`check_spec_limits`: a required cell empty, a time or a
number that does not parse, limits out of order, a duplicate or overlapping order; the cells
the models read of lab results and the maintenance log) and the Great Expectations suites of
``features.expectations`` (keys unique, LSL < target < USL, times ordered, foreign keys
resolve). A reload that fails any of them is rejected with a report naming the file, the row
and the rule (``validation_results``, suite ``erp.load``, and a ``context:load`` dead letter),
and the pipeline keeps the last good context; a bad first load stops the start with that
report (:class:`ContextLoadError`). A file that changes while it is read (still being written)
is read again at a later look, never half-read. See docs/data-quality.md.
"""

from __future__ import annotations

import io
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from floorsight.features import CONTEXT_COLUMNS
from floorsight.features.expectations import (
    ValidationReport,
    content_hash,
    validate_context_in_worker,
)
from floorsight.pipelines.tables import SPEC_LIMITS, WORK_ORDERS
from floorsight.pipelines.validate import ID_PATTERN, MAX_ID_CHARS
from floorsight.records import TIMESTAMP

log = logging.getLogger("floorsight.context")

WORK_ORDER_SCHEMA = WORK_ORDERS.polars_schema

#: Context tables read when present, besides work orders and spec limits (the simulator writes
#: all of them: see docs/simulator.md).
RECORD_TABLES = (
    "machines",
    "products",
    "recipes",
    "batches",
    "material_lots",
    "genealogy",
    "customer_orders",
    "shipments",
    "maintenance_log",
    "lab_results",
)

SPEC_SCHEMA = SPEC_LIMITS.polars_schema


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a context load is bad: the file (or table), the data row (1 = the first row after
    the header; None for the file as a whole) and the rule it breaks."""

    source: str
    row: int | None
    rule: str

    def __str__(self) -> str:
        if self.row is None:
            return f"{self.source}: {self.rule}"
        where = f"line {self.row + 1}" if self.source.endswith(".csv") else f"row {self.row}"
        return f"{self.source} {where}: {self.rule}"


class ContextLoadError(ValueError):
    """A context load that is rejected whole; ``problems`` says where and why."""

    #: problems named in the message (all are in ``problems``)
    SHOWN = 20

    def __init__(self, problems: list[Problem], where: str = "") -> None:
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[: self.SHOWN]]
        if len(self.problems) > self.SHOWN:
            lines.append(f"... and {len(self.problems) - self.SHOWN} more")
        head = f"context {where} rejected:" if where else "context rejected:"
        super().__init__("\n".join([head, *(f"  {line}" for line in lines)]))


#: what a CSV file must hold, besides being readable UTF-8 CSV with a header
REQUIRED_FILES = ("work_orders.csv", "spec_limits.csv")
#: the tables every context needs (and that must hold rows)
REQUIRED = ("work_orders", "spec_limits")
#: the kinds of file a context folder holds a table in
FILE_KINDS = (".csv", ".parquet")


def _settle(seconds: float) -> None:
    """The wait between reading a file and checking it did not change meanwhile."""
    time.sleep(seconds)


def _read_csv(name: str, data: bytes, **options) -> pl.DataFrame:
    """``data`` (the bytes of file ``name``) as a frame, or :class:`ContextLoadError`."""
    if not data.strip():
        raise ContextLoadError([Problem(name, None, "the file is empty")])
    try:
        return pl.read_csv(io.BytesIO(data), **options)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ContextLoadError([Problem(name, None, f"not a readable CSV file ({text})")]) from err


@dataclass(frozen=True, slots=True)
class ErpContext:
    """One consistent version of the ERP context.

    ``records`` holds the other context tables found beside the work orders (see
    ``RECORD_TABLES``: lots, genealogy, customer orders, maintenance log, lab results, ...) as
    they were read; the pipeline mirrors them into DuckDB for notebooks and dashboards.
    """

    work_orders: pl.DataFrame
    spec_limits: pl.DataFrame
    records: dict[str, pl.DataFrame] = field(default_factory=dict)
    #: the tables as read (before the row checks): what the context suites judge
    raw: dict[str, pl.DataFrame] = field(default_factory=dict)
    #: content hash of the tables as read: equal loads have equal fingerprints
    fingerprint: str = ""
    #: the rows that broke a row rule (their dead letters are returned beside the context)
    problems: tuple[Problem, ...] = ()

    @classmethod
    def empty(cls) -> ErpContext:
        return cls(pl.DataFrame(schema=WORK_ORDER_SCHEMA), pl.DataFrame(schema=SPEC_SCHEMA))

    @property
    def machines(self) -> frozenset[str]:
        return frozenset(self.work_orders["machine_id"].unique().to_list())

    def join(self, readings: pl.DataFrame) -> pl.DataFrame:
        """Readings with the context valid at each reading's event time (as-of join).

        >>> from datetime import datetime, UTC
        >>> wo = pl.DataFrame({
        ...     "work_order": ["WO-1", "WO-2"], "machine_id": ["M1", "M1"],
        ...     "product": ["A", "B"], "material_lot": ["L1", "L2"],
        ...     "start": [datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 1, 1, 8, tzinfo=UTC)],
        ...     "end": [datetime(2026, 1, 1, 8, tzinfo=UTC), datetime(2026, 1, 1, 9, tzinfo=UTC)],
        ... }, schema=WORK_ORDER_SCHEMA)
        >>> r = pl.DataFrame({"machine_id": ["M1"] * 3, "sensor": ["t"] * 3,
        ...     "ts": [datetime(2026, 1, 1, h, 30, tzinfo=UTC) for h in (7, 8, 9)],
        ...     "value": [1.0, 2.0, 3.0]})
        >>> ErpContext(wo, pl.DataFrame(schema=SPEC_SCHEMA)).join(r)["work_order"].to_list()
        ['WO-1', 'WO-2', '']
        """
        wo = self.work_orders
        if "batch" not in wo.columns:
            wo = wo.with_columns(batch=pl.lit(""))
        wo = wo.select("machine_id", "start", "end", *CONTEXT_COLUMNS)
        joined = _in_time_order(readings).join_asof(
            wo.sort("start"),
            left_on="ts",
            right_on="start",
            by="machine_id",
            strategy="backward",
            check_sortedness=False,  # both sides are sorted just above
        )
        valid = joined["end"].is_not_null() & (joined["ts"] < joined["end"])
        if valid.all():  # the usual case: every reading has its order, nothing to blank
            return joined.drop("start", "end")
        return joined.with_columns(
            pl.when(valid).then(pl.col(c)).otherwise(pl.lit("")).alias(c) for c in CONTEXT_COLUMNS
        ).drop("start", "end")


def _in_time_order(readings: pl.DataFrame) -> pl.DataFrame:
    """``readings`` sorted by time; a frame already in order (the usual case) is not re-sorted."""
    if readings["ts"].is_sorted():
        return readings.with_columns(pl.col("ts").set_sorted())
    return readings.sort("ts", maintain_order=True)


def context_files(directory: Path) -> list[Path]:
    """The files of a context folder that a load reads (the required ones and the record tables
    present, each as ``<table>.csv`` or else ``<table>.parquet``)."""
    present = [f for f in _candidate_files(directory) if f.exists()]
    return [f for f in present if f.suffix == ".csv" or f.with_suffix(".csv") not in present]


def _candidate_files(directory: Path) -> list[Path]:
    """Every file name a context folder may hold a table in, required tables first."""
    return [directory / f"{t}{kind}" for t in (*REQUIRED, *RECORD_TABLES) for kind in FILE_KINDS]


def require_context_files(directory: Path) -> None:
    """Raise :class:`FileNotFoundError` with a sentence unless ``directory`` is a folder with
    the context's required files (a misspelled ``--context`` must not run on no context)."""
    if not directory.exists():
        raise FileNotFoundError(
            f"context folder {directory} does not exist (give a folder with "
            f"{' and '.join(REQUIRED_FILES)}, a .duckdb file, a postgresql:// URL or a mapping "
            "file, .toml)"
        )
    if not directory.is_dir():
        raise FileNotFoundError(
            f"context {directory} is neither a folder of CSV files nor a .duckdb file"
        )
    missing = [
        f"{t}.csv"
        for t in REQUIRED
        if not any((directory / f"{t}{kind}").is_file() for kind in FILE_KINDS)
    ]
    if missing:
        found = sorted(p.name for p in directory.iterdir())[:10]
        raise FileNotFoundError(
            f"context folder {directory} has no {' and no '.join(missing)} "
            f"(it needs {' and '.join(REQUIRED_FILES)}, or the same names as .parquet; "
            f"it holds {found or 'nothing'})"
        )


def load_context(directory: Path) -> tuple[ErpContext, pl.DataFrame | None]:
    """Read ``work_orders.csv``, ``spec_limits.csv`` and the record tables present from
    ``directory``.

    Rows that break a rule (see :func:`check_work_orders`, :func:`check_spec_limits`) are
    returned as dead letters with their reason (and in the context's ``problems``, with their
    row); the valid rows form the context. A folder without its files raises
    :class:`FileNotFoundError`; a file that cannot be read as CSV, or lacks a required column,
    raises :class:`ContextLoadError` naming it. Nothing else escapes.
    """
    directory = Path(directory)
    require_context_files(directory)
    data = {}
    for path in context_files(directory):
        try:
            data[path.name] = path.read_bytes()
        except OSError as err:
            raise ContextLoadError([Problem(path.name, None, f"unreadable: {err}")]) from err
    return parse_context(data)


def parse_context(files: dict[str, bytes]) -> tuple[ErpContext, pl.DataFrame | None]:
    """:func:`load_context` of files given by name and content (``<table>.csv`` or
    ``<table>.parquet``; of a table in both, the CSV file is read)."""
    for table in REQUIRED:
        if not any(f"{table}{kind}" in files for kind in FILE_KINDS):
            raise ContextLoadError([Problem(f"{table}.csv", None, "the file is missing")])
    work_orders = _read_table(files, "work_orders", text=True)
    spec_limits = _read_table(files, "spec_limits", text=True)
    records = {
        name: _read_table(files, name, text=False)
        for name in RECORD_TABLES
        if any(f"{name}{kind}" in files for kind in FILE_KINDS)
    }
    # a row's line number is named only for CSV files
    suffix = ".csv" if "work_orders.csv" in files else ".parquet"
    return _checked(work_orders, spec_limits, records, suffix=suffix)


def _read_table(files: dict[str, bytes], table: str, text: bool) -> pl.DataFrame:
    """Table ``table`` of a folder's files (its CSV or its Parquet file); ``text``: every
    column as text, as the row checks of the required tables take them."""
    # the first kind present (the simulator writes both, the same tables)
    name = next(f"{table}{kind}" for kind in FILE_KINDS if f"{table}{kind}" in files)
    if name.endswith(".csv"):
        if text:
            return _read_csv(name, files[name], infer_schema=False)
        return _read_csv(name, files[name], try_parse_dates=True, infer_schema_length=None)
    frame = read_parquet_bytes(name, files[name])
    return _as_text(frame) if text else frame


def read_parquet_bytes(name: str, data: bytes) -> pl.DataFrame:
    """``data`` (the bytes of Parquet file ``name``) as a frame, or :class:`ContextLoadError`."""
    if not data:
        raise ContextLoadError([Problem(name, None, "the file is empty")])
    try:
        return pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError, ValueError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        rule = f"not a readable Parquet file ({text})"
        raise ContextLoadError([Problem(name, None, rule)]) from err


def load_duckdb_context(path: Path) -> tuple[ErpContext, pl.DataFrame | None]:
    """Read the tables ``work_orders``, ``spec_limits`` and ``batches`` (optional) of a DuckDB
    file, checked like the CSV files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"context database {path} does not exist")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        raise ContextLoadError([Problem(path.name, None, f"cannot be opened: {err}")]) from err
    try:
        tables = {r[0] for r in con.sql("SHOW TABLES").fetchall()}
        for needed in ("work_orders", "spec_limits"):
            if needed not in tables:
                rule = f"no table {needed} (has {sorted(tables)})"
                raise ContextLoadError([Problem(path.name, None, rule)])

        def text(table: str) -> pl.DataFrame:
            return _as_text(con.sql(f'SELECT * FROM "{table}"').pl())

        work_orders, spec_limits = text("work_orders"), text("spec_limits")
        records = {
            name: con.sql(f'SELECT * FROM "{name}"').pl()
            for name in RECORD_TABLES
            if name in tables
        }
    except duckdb.Error as err:
        raise ContextLoadError([Problem(path.name, None, f"cannot be read: {err}")]) from err
    finally:
        con.close()
    return _checked(work_orders, spec_limits, records, prefix=f"{path.name}:")


def load_postgres_context(dsn: str) -> tuple[ErpContext, pl.DataFrame | None]:
    """Read ``work_orders``, ``spec_limits`` and ``batches`` (optional) from PostgreSQL."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as con:
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        }
        for needed in ("work_orders", "spec_limits"):
            if needed not in tables:
                rule = f"no table {needed} (has {sorted(tables)})"
                raise ContextLoadError([Problem(_redact(dsn), None, rule)])

        def read(table: str) -> pl.DataFrame:
            cur = con.execute(f'SELECT * FROM "{table}"')
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
            return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

        work_orders = _as_text(read("work_orders"))
        spec_limits = _as_text(read("spec_limits"))
        records = {name: read(name) for name in RECORD_TABLES if name in tables}
    return _checked(work_orders, spec_limits, records, prefix="postgresql:")


def _redact(dsn: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, times as ISO 8601: the checks parse them like CSV fields."""
    return frame.with_columns(
        pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.f%z")
        if frame[c].dtype == pl.Datetime
        else pl.col(c).cast(pl.String)
        for c in frame.columns
    )


def _checked(
    work_orders: pl.DataFrame,
    spec_limits: pl.DataFrame,
    records: dict[str, pl.DataFrame],
    prefix: str = "",
    suffix: str = "",
    names: dict[str, str] | None = None,
) -> tuple[ErpContext, pl.DataFrame | None]:
    """The context of tables as read; ``prefix`` + table + ``suffix`` names a table in a
    report (``work_orders.csv``, ``erp.duckdb:work_orders``), unless ``names`` names it."""
    names = {t: f"{prefix}{t}{suffix}" for t in ("work_orders", "spec_limits", *RECORD_TABLES)} | (
        names or {}
    )
    batches = records.get("batches")
    if batches is not None:
        _missing(batches, ("batch_id", "work_order"), names["batches"])
        batch_map = batches.select(
            pl.col("work_order").cast(pl.String), pl.col("batch_id").cast(pl.String).alias("batch")
        ).unique("work_order")
    else:
        batch_map = pl.DataFrame(schema={"work_order": pl.String, "batch": pl.String})
    wo, wo_dead = check_work_orders(work_orders, names["work_orders"])
    spec, spec_dead = check_spec_limits(spec_limits, names["spec_limits"])
    empty = [
        Problem(names[table], None, f"holds no {table.replace('_', ' ')}")
        for table, frame in (("work_orders", work_orders), ("spec_limits", spec_limits))
        if frame.height == 0
    ]
    if empty:  # an export cut short or a wrong table: never a run on no context
        raise ContextLoadError(empty)
    records = {**records, **_model_inputs(records, names)}
    wo = wo.join(batch_map, on="work_order", how="left").with_columns(pl.col("batch").fill_null(""))
    dead = [d for d in (wo_dead, spec_dead) if d is not None]
    problems = tuple(
        Problem(name, row + 1, reason)
        for d in dead
        for name, row, reason in d.sort("_row").select("_file", "_row", "reason").iter_rows()
    )
    raw = {"work_orders": work_orders, "spec_limits": spec_limits, **records}
    try:
        fingerprint = "|".join(f"{n}:{content_hash(frame)}" for n, frame in sorted(raw.items()))
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as err:
        raise ContextLoadError([Problem(f"{prefix}context", None, f"unreadable: {err}")]) from err
    context = ErpContext(wo, spec, records, raw, fingerprint, problems)
    dead = [d.drop("_file", "_row") for d in dead]
    return context, (pl.concat(dead) if dead else None)


#: the columns of the record tables that the models read (lab results are the deviation
#: model's delayed labels, the maintenance log re-bases models and labels failures), by type;
#: a load with a row they cannot read is bad as a whole, like a bad work order
MODEL_INPUTS: dict[str, dict[str, str]] = {
    "lab_results": {
        "sample_id": "text",
        "machine_id": "text",
        "characteristic": "text",
        "part_made_at": "time",
        "available_at": "time",
        "value": "number",
    },
    "maintenance_log": {"machine_id": "text", "kind": "text", "start": "time", "end": "time"},
}


def _model_inputs(
    records: dict[str, pl.DataFrame], names: dict[str, str]
) -> dict[str, pl.DataFrame]:
    """The record tables the models read, their columns typed (times UTC, numbers float), or
    :class:`ContextLoadError` naming the table, the row and the cell that does not read."""
    typed: dict[str, pl.DataFrame] = {}
    problems: list[Problem] = []
    for table, columns in MODEL_INPUTS.items():
        frame = records.get(table)
        if frame is None:
            continue
        name = names[table]
        _missing(frame, columns, name)
        try:
            cast = {c: _typed(frame[c], kind) for c, kind in columns.items()}
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as err:
            rule = f"its columns cannot be read as {', '.join(columns)} ({err})"
            raise ContextLoadError([Problem(name, None, rule)]) from err
        for c, kind in columns.items():
            blank = frame[c].is_null()
            if frame[c].dtype == pl.String:
                blank = blank | (frame[c].str.strip_chars() == "")
            unread = cast[c].is_null() & ~blank
            for row in blank.arg_true().to_list():
                problems.append(Problem(name, row + 1, f"{c} missing"))
            for row in unread.arg_true().to_list():
                problems.append(Problem(name, row + 1, f"{c} {frame[c][row]} is not a {kind}"))
        typed[table] = frame.with_columns(cast[c].alias(c) for c in columns)
    if problems:
        raise ContextLoadError(sorted(problems, key=lambda p: (p.source, p.row or 0)))
    return typed


def _typed(column: pl.Series, kind: str) -> pl.Series:
    """``column`` as ``kind`` (text, a UTC time or a float); null where a cell does not read."""
    if kind == "text":
        return column.cast(pl.String)
    if kind == "number":
        if column.dtype == pl.String:
            column = column.str.strip_chars()
        number = pl.DataFrame({"n": column.cast(pl.Float64, strict=False)})
        return number.select(pl.when(pl.col("n").is_finite()).then(pl.col("n")))["n"]
    if isinstance(column.dtype, pl.Datetime):
        if column.dtype.time_zone is None:  # a database's naive time: UTC, as in a CSV cell
            return column.dt.replace_time_zone("UTC").cast(TIMESTAMP)
        return column.dt.convert_time_zone("UTC").cast(TIMESTAMP)
    if column.dtype == pl.Date:
        return column.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(TIMESTAMP)
    frame = pl.DataFrame({"t": column.cast(pl.String)})
    return frame.select(_time("t"))["t"]


def _rejected_load(report: str) -> pl.DataFrame:
    """One dead letter that records a context load rejected as a whole."""
    reason = "context load rejected whole (see raw); the last good context stays in use"
    return pl.DataFrame(
        {
            "source": ["context:load"],
            "machine_id": [None],
            "sensor": [None],
            "ts": [None],
            "value": [None],
            "raw": [report],
            "reason": [reason],
        },
        schema={
            "source": pl.String,
            "machine_id": pl.String,
            "sensor": pl.String,
            "ts": TIMESTAMP,
            "value": pl.Float64,
            "raw": pl.String,
            "reason": pl.String,
        },
    ).with_columns(
        dead_letter_id=pl.concat_str(["source", "raw"], separator="|")
        .hash(seed=17)
        .cast(pl.String),
        received_at=pl.lit(datetime.now(tz=UTC)).cast(TIMESTAMP),
    )


#: the suite of a load's own report in ``validation_results``
LOAD_SUITE = "erp.load"


def _load_report(problems: list[Problem], tables: int = 1) -> ValidationReport:
    """The ``validation_results`` row of one load: taken (no problems), or rejected whole."""
    if not problems:
        return ValidationReport(LOAD_SUITE, "context", True, max(tables, 1), 0)
    failures = (
        "rejected whole: the last good context stays in use",
        *(str(p) for p in problems[: ContextLoadError.SHOWN]),
    )
    if len(problems) > ContextLoadError.SHOWN:
        failures += (f"... and {len(problems) - ContextLoadError.SHOWN} more",)
    sources = {p.source for p in problems}
    return ValidationReport(
        LOAD_SUITE, "context", False, max(tables, len(sources)), len(sources), failures
    )


def _missing(frame: pl.DataFrame, columns, source: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        rule = f"lacks columns {absent} (has {frame.columns[:20]})"
        raise ContextLoadError([Problem(source, None, rule)])


def _strings(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return frame.select(pl.col(c).cast(pl.String) for c in schema)


def _split(
    frame: pl.DataFrame, reasons: list[tuple[pl.Expr, pl.Expr]], source: str, file: str = ""
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Rows that pass every check, and dead letters of the others with the first reason that
    applies (and, as ``_file`` and ``_row``, the file and the 0-based data row)."""
    # a reason whose text comes out null (a null cell in its format) still rejects its row
    reason = pl.when(reasons[0][0].fill_null(False)).then(reasons[0][1].fill_null("invalid row"))
    for cond, text in reasons[1:]:
        reason = reason.when(cond.fill_null(False)).then(text.fill_null("invalid row"))
    flagged = frame.with_columns(_reason=reason.otherwise(None))
    bad = flagged["_reason"].is_not_null()
    ok = flagged.filter(~bad).drop("_reason")
    if not bad.any():
        return ok, None
    rows = flagged.filter(bad)
    raw_cols = [c for c in rows.columns if c != "_reason" and not c.startswith("_")]
    dead = rows.select(
        pl.lit(source).alias("source"),
        (pl.col("machine_id") if "machine_id" in rows.columns else pl.lit(None))
        .cast(pl.String)
        .alias("machine_id"),
        pl.lit(None, dtype=pl.String).alias("sensor"),
        pl.lit(None, dtype=TIMESTAMP).alias("ts"),
        pl.lit(None, dtype=pl.Float64).alias("value"),
        pl.struct(raw_cols).struct.json_encode().alias("raw"),
        pl.col("_reason").alias("reason"),
        pl.lit(file or source).alias("_file"),
        pl.col("_i").alias("_row"),
    ).with_columns(
        dead_letter_id=pl.concat_str(["source", "raw", "reason"], separator="|")
        .hash(seed=17)
        .cast(pl.String),
        received_at=pl.lit(datetime.now(tz=UTC)).cast(TIMESTAMP),
    )
    return ok, dead


def _time(col: str) -> pl.Expr:
    return pl.col(col).str.to_datetime(time_zone="UTC", strict=False).cast(TIMESTAMP)


def _empty(column: str) -> tuple[pl.Expr, pl.Expr]:
    """The check that a required cell holds something."""
    cell = pl.col(column)
    return cell.is_null() | (cell.str.strip_chars() == ""), pl.lit(f"{column} missing")


def _machine_id() -> tuple[pl.Expr, pl.Expr]:
    """The check that a machine id is one a reading can carry (the readings' id rule)."""
    return (
        ~pl.col("machine_id").str.contains(f"^(?:{ID_PATTERN})$"),
        pl.lit(
            "machine_id is not a machine id (a letter or digit, then letters, digits, _ . : -; "
            f"at most {MAX_ID_CHARS} characters)"
        ),
    )


def _text_ids(*columns: str) -> list[tuple[pl.Expr, pl.Expr]]:
    """The checks that ids hold no control character (NUL, a line break, ...) and are at most
    :data:`MAX_ID_CHARS` characters long; empty cells are checked elsewhere."""
    checks = []
    for c in columns:
        cell = pl.col(c).fill_null("")
        checks.append(
            (cell.str.contains(r"[\x00-\x1f\x7f]"), pl.lit(f"{c} holds a control character"))
        )
        checks.append(
            (
                cell.str.len_chars() > MAX_ID_CHARS,
                pl.lit(f"{c} is longer than {MAX_ID_CHARS} characters"),
            )
        )
    return checks


def check_work_orders(
    raw: pl.DataFrame, file: str = "work_orders"
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Valid work orders (typed) and dead letters: missing cells, bad times, duplicates,
    overlaps. A table without a required column raises :class:`ContextLoadError` (``file``
    names it).

    Of two orders that overlap on one machine, the one that starts later is rejected: the
    as-of join needs at most one order per machine at any time.
    """
    source = "context:work_orders"
    _missing(raw, WORK_ORDER_SCHEMA, file)
    text = _strings(raw, WORK_ORDER_SCHEMA)
    frame = text.with_columns(_start=_time("start"), _end=_time("end"), _i=pl.int_range(pl.len()))
    empty = [_empty(c) for c in ("work_order", "machine_id", "product", "start", "end")]
    checks = [
        *empty,
        _machine_id(),
        *_text_ids("work_order", "product", "material_lot"),
        (pl.col("_start").is_null(), pl.format("start {} is not a time", pl.col("start"))),
        (pl.col("_end").is_null(), pl.format("end {} is not a time", pl.col("end"))),
        (
            pl.col("_end") <= pl.col("_start"),
            pl.format("end {} is not after start {}", pl.col("end"), pl.col("start")),
        ),
        (
            pl.col("_i") != pl.col("_i").min().over("work_order"),
            pl.format("duplicate work order {}", pl.col("work_order")),
        ),
    ]
    ok, dead = _split(frame, checks, source, file)
    # overlaps among the rows that passed: reject an order that starts before the previous ends
    ok = ok.sort("machine_id", "_start", "_i")
    kept: list[int] = []
    last_end: dict[str, object] = {}
    reasons: dict[int, str] = {}
    for i, machine, start, end, wo in ok.select(
        "_i", "machine_id", "_start", "_end", "work_order"
    ).iter_rows():
        prev = last_end.get(machine)
        if prev is not None and start < prev[0]:
            reasons[i] = f"overlaps work order {prev[1]} on {machine}"
            continue
        kept.append(i)
        last_end[machine] = (end, wo)
    if reasons:
        overlap = ok.filter(pl.col("_i").is_in(list(reasons)))
        _, more = _split(
            overlap.with_columns(_why=pl.col("_i").replace_strict(reasons, return_dtype=pl.String)),
            [(pl.lit(True), pl.col("_why"))],
            source,
            file,
        )
        dead = more if dead is None else pl.concat([dead, more])
        ok = ok.filter(pl.col("_i").is_in(kept))
    typed = ok.sort("_i").select(
        "work_order",
        "machine_id",
        "product",
        pl.col("material_lot").fill_null(""),
        pl.col("_start").alias("start"),
        pl.col("_end").alias("end"),
    )
    return typed.cast(WORK_ORDER_SCHEMA), dead


def check_spec_limits(
    raw: pl.DataFrame, file: str = "spec_limits"
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Valid spec limits (typed) and dead letters: missing cells, non-numbers, LSL > target >
    USL, duplicates. A table without a required column raises :class:`ContextLoadError`."""
    source = "context:spec_limits"
    _missing(raw, SPEC_SCHEMA, file)
    text = _strings(raw, SPEC_SCHEMA)
    num = {
        c: pl.col(c).str.strip_chars().cast(pl.Float64, strict=False)
        for c in ("lsl", "target", "usl")
    }
    frame = text.with_columns(**{f"_{c}": e for c, e in num.items()}, _i=pl.int_range(pl.len()))
    checks = [_empty(c) for c in ("product", "characteristic", "lsl", "target", "usl")]
    checks += _text_ids("product", "characteristic")
    for c in ("lsl", "target", "usl"):
        checks.append(
            (
                pl.col(f"_{c}").is_null() | ~pl.col(f"_{c}").is_finite(),
                pl.format(f"{c} {{}} is not a finite number", pl.col(c)),
            )
        )
    checks += [
        (
            (pl.col("_lsl") > pl.col("_target")) | (pl.col("_target") > pl.col("_usl")),
            pl.format(
                "limits out of order: lsl {} target {} usl {}",
                pl.col("lsl"),
                pl.col("target"),
                pl.col("usl"),
            ),
        ),
        (
            pl.col("_i") != pl.col("_i").min().over("product", "characteristic"),
            pl.format("duplicate spec {} {}", pl.col("product"), pl.col("characteristic")),
        ),
    ]
    ok, dead = _split(frame, checks, source, file)
    typed = ok.select(
        "product",
        "characteristic",
        pl.col("_lsl").alias("lsl"),
        pl.col("_target").alias("target"),
        pl.col("_usl").alias("usl"),
    )
    return typed.cast(SPEC_SCHEMA), dead


class ContextStore:
    """The current ERP context, re-read when its source changes.

    The source is a folder of CSV files (``work_orders.csv``, ``spec_limits.csv``, optional
    ``batches.csv`` and the other record tables), a DuckDB database file with tables of the
    same names (the simulator's ``erp.duckdb``, or an export of an MES), or a PostgreSQL URL
    (``postgresql://...``) whose tables are re-read at most every ``refresh`` (files are re-read
    when they change).

    Each load is taken whole or rejected whole (see the module's docstring). The first load
    happens at the first :meth:`current`: a source without its files raises
    :class:`FileNotFoundError`, files or rows that break a rule :class:`ContextLoadError`. Its
    suites then run in the background (importing Great Expectations takes seconds, and a live
    source must be reading meanwhile: its client buffers what arrives); every later call waits
    for their verdict and raises :class:`ContextLoadError` if it failed, so a bad first load
    stops the run before any reading is joined with it. A changed file is read, and taken only
    if its size and time are the same ``settle`` later (else it is still being written and is
    read again at a later look).
    """

    FILES = REQUIRED_FILES
    #: how long the first load waits for files that keep changing
    FIRST_LOAD_WAIT = timedelta(seconds=60)

    def __init__(
        self,
        directory: Path | str,
        refresh: timedelta = timedelta(seconds=5),
        report_first: bool = True,
        settle: timedelta = timedelta(milliseconds=100),
    ) -> None:
        """``report_first``: judge the first load by the suites and report their verdict. A
        cluster does so in one process (it stops if they fail); the others check only the
        files and rows of their first load, which saves each of them the suites' start-up.
        """
        self.url = str(directory) if str(directory).startswith("postgresql://") else None
        self.directory = Path(directory) if self.url is None else Path()
        self.refresh = refresh
        self.settle = settle
        self._read_at = -math.inf
        self._stamp: tuple | None = None
        self._context = ErpContext.empty()
        self._loaded = False
        self._first_verdict: threading.Thread | None = None
        #: why the first load failed its suites (raised by every later call)
        self._failed: ContextLoadError | None = None
        self._dead: list[pl.DataFrame] = []
        self._reports: list[ValidationReport] = []
        self._fingerprint: str | None = None
        self._last_rejection: str | None = None
        #: whether the context in use passed its suites (False: not judged by them here)
        self.good = False
        self.rejected_loads = 0
        self._lock = threading.Lock()
        self.report_first = report_first
        #: a mapping file (``.toml``) names the sources (see ``pipelines.context_map``)
        self.map_path = self.directory if self.directory.suffix == ".toml" else None
        self._map = None  # the mapping file as last read: (its stat, ContextMap)

    @property
    def is_duckdb(self) -> bool:
        return self.directory.suffix == ".duckdb"

    def _mapped(self) -> list:
        """The files the mapping file names now (of its last readable version)."""
        from floorsight.pipelines.context_map import parse_map

        try:
            st = self.map_path.stat()
            stamp = (st.st_size, st.st_mtime_ns)
            if self._map is None or self._map[0] != stamp:
                folder = self.map_path.parent.resolve()
                self._map = (stamp, parse_map(self.map_path.read_bytes(), folder))
        except (OSError, ContextLoadError):
            pass  # a load reports it; the files of the last good map are watched meanwhile
        return self._map[1].files() if self._map is not None else []

    def _polled(self) -> bool:
        """Whether a source is re-read every ``refresh`` (a PostgreSQL table in the map)."""
        return self.map_path is not None and self._map is not None and self._map[1].polled

    def _source_name(self) -> str:
        return _redact(self.url) if self.url is not None else str(self.directory)

    def _files(self) -> list[Path]:
        if self.is_duckdb:
            return [self.directory]
        if self.map_path is not None:
            return [self.map_path, *(f.path for f in self._mapped())]
        return _candidate_files(self.directory)

    def _stat(self) -> tuple:
        """(path, size, mtime) of every file a load reads (None: absent)."""
        out = []
        for f in self._files():
            try:
                st = f.stat()
            except OSError:
                out.append(None)
            else:
                out.append((str(f), st.st_size, st.st_mtime_ns))
        return tuple(out)

    def _complete(self, stamp: tuple) -> bool:
        """Whether the required files are all there (each required table in one file kind)."""
        if self.is_duckdb:
            return stamp[0] is not None
        if self.map_path is not None:
            needed = [True, *(f.needed for f in self._mapped())]
            return len(needed) == len(stamp) and all(
                s is not None for s, must in zip(stamp, needed, strict=True) if must
            )
        kinds = len(FILE_KINDS)
        return all(
            any(s is not None for s in stamp[i * kinds : (i + 1) * kinds])
            for i in range(len(REQUIRED))
        )

    def _read_stable(self) -> tuple[tuple, dict[str, bytes] | None]:
        """(stamp, the files' bytes), the bytes None if a file changed while it was read or
        during the ``settle`` after (still being written) or a required file is absent."""
        before = self._stat()
        if not self._complete(before):
            return before, None
        data: dict[str, bytes] = {}
        if not self.is_duckdb:  # a database file is opened by DuckDB itself
            mapped = self.map_path is not None
            for f, st in zip(self._files(), before, strict=True):
                if st is None or f.suffix in (".duckdb", ".wal"):
                    continue
                if not mapped and f.with_suffix(".csv").name in data:  # the CSV file is read
                    continue
                try:
                    data[str(f) if mapped else f.name] = f.read_bytes()
                except FileNotFoundError:
                    return before, None  # replaced just now: read at a later look
                except OSError as err:
                    raise ContextLoadError([Problem(f.name, None, f"unreadable: {err}")]) from err
        _settle(self.settle.total_seconds())
        after = self._stat()
        return after, (data if after == before else None)

    def _parse(self, data: dict[str, bytes]) -> tuple[ErpContext, pl.DataFrame | None]:
        if self.is_duckdb:
            return load_duckdb_context(self.directory)
        if self.map_path is not None:
            from floorsight.pipelines.context_map import load_mapped, parse_map

            path = self.map_path
            folder = path.parent.resolve()
            return load_mapped(parse_map(data[str(path)], folder, path.name), data)
        return parse_context(data)

    def current(self) -> ErpContext:
        if not self._loaded:
            self._first_load()
            return self._context
        if self._first_verdict is not None:
            self._join_first_verdict()
        if self._failed is not None:
            raise self._failed
        if self.url is not None:
            if time.monotonic() - self._read_at >= self.refresh.total_seconds():
                self._read_at = time.monotonic()
                self._reload(lambda: load_postgres_context(self.url))
            return self._context
        stamp = self._stat()
        # a database table in the map changes without a file changing: read every refresh
        due = self._polled() and time.monotonic() - self._read_at >= self.refresh.total_seconds()
        if stamp == self._stamp and not due:
            return self._context
        if not self._complete(stamp):
            return self._context  # a file is being replaced: look again later
        stamp, data = self._read_stable()
        if data is None:
            return self._context  # still being written: look again later
        if due:
            self._read_at = time.monotonic()
        self._reload(lambda: self._parse(data))
        self._stamp = stamp  # judged: not read again until it changes
        return self._context

    def _first_load(self) -> None:
        """Load and take the first context, its suites started in the background; raise if
        there is none or its files or rows are bad."""
        try:
            loaded, dead = self._first_read()
            self._judge(loaded, suites=False)
        except ContextLoadError as err:
            raise ContextLoadError(err.problems, f"{self._source_name()} (first load)") from None
        self._take(loaded, dead)
        self._loaded = True
        if self.report_first:
            # the suites run in a worker process; this thread only waits for them
            self._first_verdict = threading.Thread(
                target=self._judge_first, args=(loaded,), name="context-suites", daemon=True
            )
            self._first_verdict.start()

    def _judge_first(self, loaded: ErpContext) -> None:
        try:
            self._judge(loaded, suites=True)
        except ContextLoadError as err:
            self._failed = ContextLoadError(err.problems, f"{self._source_name()} (first load)")
        except Exception as err:  # a worker that failed: reported by the next call
            problem = Problem(self._source_name(), None, f"could not be judged: {err!r}")
            self._failed = ContextLoadError([problem], f"{self._source_name()} (first load)")
        if self._failed is not None:
            log.error("%s", self._failed)

    def _join_first_verdict(self) -> None:
        if self._first_verdict is not None:
            self._first_verdict.join()
            self._first_verdict = None

    def _require_files(self) -> None:
        if self.map_path is not None:
            from floorsight.pipelines.context_map import read_map, require_sources

            require_sources(read_map(self.map_path), self.map_path.name)
            self._mapped()
        elif not self.is_duckdb:
            require_context_files(self.directory)
        elif not self.directory.is_file():
            raise FileNotFoundError(f"context database {self.directory} does not exist")

    def _first_read(self) -> tuple[ErpContext, pl.DataFrame | None]:
        """The first load as read (waiting while its files are being written)."""
        if self.url is not None:
            self._read_at = time.monotonic()
            loaded, dead = load_postgres_context(self.url)
        else:
            self._require_files()
            deadline = time.monotonic() + self.FIRST_LOAD_WAIT.total_seconds()
            stamp, data = self._read_stable()
            while data is None:
                if time.monotonic() > deadline:
                    wait = self.FIRST_LOAD_WAIT.total_seconds()
                    rule = f"its files kept changing for {wait:g} s (still being written?)"
                    raise ContextLoadError([Problem(str(self.directory), None, rule)])
                if not self._complete(stamp):
                    self._require_files()  # gone for good, or being replaced
                    time.sleep(self.settle.total_seconds())
                stamp, data = self._read_stable()
            self._read_at = time.monotonic()
            loaded, dead = self._parse(data)
            self._stamp = stamp
        return loaded, dead

    def _reload(self, load) -> None:
        """Take a new load whole, or reject it whole and keep the context in use."""
        try:
            loaded, dead = load()
            if loaded.fingerprint and loaded.fingerprint == self._fingerprint:
                return  # the same tables again (a polled source): nothing new
            self._judge(loaded, suites=True)
        except ContextLoadError as err:
            self._reject(err.problems)
            return
        except Exception as err:  # a source that failed to answer (a database down, ...)
            self._reject([Problem(self._source_name(), None, f"could not be loaded: {err!r}")])
            return
        self._take(loaded, dead)

    def _judge(self, loaded: ErpContext, suites: bool) -> None:
        """Raise :class:`ContextLoadError` unless ``loaded`` passes the row rules and (with
        ``suites``) its suites, whose reports are kept for :meth:`take_reports`."""
        if not suites:
            if loaded.problems:
                raise ContextLoadError(list(loaded.problems))
            self.good = False  # judged in the background, or by another process
            return
        # the suites run even when rows broke a rule: their reports (one per table) show on
        # the data-quality page which tables of the load were bad
        try:
            # the suites run in a worker process; GX in a thread here would hold the GIL for
            # seconds and starve the sources' threads
            reports = validate_context_in_worker(loaded.raw)
        except RuntimeError as err:
            judged = Problem(self._source_name(), None, f"could not be judged: {err}")
            raise ContextLoadError([*loaded.problems, judged]) from err
        with self._lock:
            self._reports.extend(reports)
        problems = list(loaded.problems) + [
            Problem(self._table_name(r.table_name), None, failure)
            for r in reports
            if not r.success
            for failure in (r.failures or ("failed",))
        ]
        if problems:
            raise ContextLoadError(problems)
        self.good = True

    def _table_name(self, table: str) -> str:
        if self.url is not None:
            return f"postgresql:{table}"
        if self.map_path is not None:
            return f"{table} ({self.map_path.name})"
        if self.is_duckdb:
            return f"{self.directory.name}:{table}"
        return f"{table}.csv"

    def _reject(self, problems: list[Problem]) -> None:
        """Record a rejected reload (once while the same rejection repeats)."""
        report = str(ContextLoadError(problems, self._source_name()))
        if report == self._last_rejection:
            return
        self._last_rejection = report
        self.rejected_loads += 1
        log.warning("%s; the last good context stays in use", report)
        self._dead.append(_rejected_load(report))
        with self._lock:
            self._reports.append(_load_report(problems))

    def _take(self, loaded: ErpContext, dead: pl.DataFrame | None) -> None:
        self._context = loaded
        self._fingerprint = loaded.fingerprint
        self._last_rejection = None
        if dead is not None:
            self._dead.append(dead)
        with self._lock:
            self._reports.append(_load_report([], len(loaded.raw)))

    def take_reports(self, wait: bool = False) -> list[ValidationReport]:
        """Validation reports of the loads since the last call (accepted or rejected); the
        suites' reports of a table, and one ``erp.load`` report per load (taken or rejected).
        With ``wait``, after the first load's verdict is in (at the end of a run)."""
        if wait:
            self._join_first_verdict()
        with self._lock:
            reports, self._reports = self._reports, []
        return reports

    def take_dead(self) -> pl.DataFrame | None:
        """Context rows rejected since the last call (as dead letters), or None."""
        dead, self._dead = self._dead, []
        return pl.concat(dead) if dead else None

    def join(self, readings: pl.DataFrame) -> pl.DataFrame:
        return self.current().join(readings)


class ContextHold:
    """Per machine: hold readings whose context is not known yet, for a bounded event time.

    The rule: a reading with no work order valid at its event time is held, and so is every
    later reading of its machine (their order matters to the windows). Held readings are joined
    again with each new batch, so context that arrives late (a work order booked after the
    machine started) is applied. A held reading is given up once its machine's newest reading
    is ``hold`` (event time) past it: it is released with empty context columns (flagged:
    ``work_order == ''``), never dropped. At the end of input everything held is released.
    One hold serves any number of machines (each with its own clock) in one vectorised pass;
    state is bounded by ``hold`` of each machine's readings.
    """

    def __init__(self, hold: timedelta) -> None:
        self.hold = hold
        self.held: pl.DataFrame | None = None  # raw readings, sorted by time

    def push(self, context: ErpContext, readings: pl.DataFrame) -> pl.DataFrame | None:
        """Joined readings that can go on now (in time order), or None."""
        data = readings if self.held is None else pl.concat([self.held, readings])
        data = _in_time_order(data)
        joined = context.join(data)
        missing = joined["work_order"] == ""
        if not missing.any():
            self.held = None
            return joined
        ts = pl.col("ts")
        # per machine: the first reading that still waits (missing context, within the hold)
        first = (
            pl.when((pl.col("work_order") == "") & (ts >= ts.max().over("machine_id") - self.hold))
            .then(ts)
            .min()
            .over("machine_id")
        )
        marked = joined.with_columns(_first=first)
        waits = pl.col("_first").is_not_null() & (ts >= pl.col("_first"))
        if not marked["_first"].is_not_null().any():
            self.held = None
            return joined  # the missing ones waited long enough: flagged
        self.held = data.filter(marked.select(waits.alias("w"))["w"])
        out = marked.filter(~waits).drop("_first")
        return out if out.height else None

    def flush(self, context: ErpContext) -> pl.DataFrame | None:
        held, self.held = self.held, None
        return None if held is None else context.join(held)


def sensor_units(context: Path | str) -> dict[str, str]:
    """Sensor -> unit from the context's recipes (``recipes.csv`` or ``.parquet`` of a folder,
    the ``recipes`` table of a DuckDB file, or the recipes a mapping file names)."""
    context = Path(context)
    recipes = None
    if context.suffix == ".toml":
        from floorsight.pipelines.context_map import load_mapped_context

        recipes = load_mapped_context(context)[0].records.get("recipes")
    elif context.suffix == ".duckdb":
        con = duckdb.connect(str(context), read_only=True)
        try:
            if "recipes" in {r[0] for r in con.sql("SHOW TABLES").fetchall()}:
                recipes = con.sql("SELECT parameter, unit FROM recipes").pl()
        finally:
            con.close()
    elif (context / "recipes.csv").exists():
        recipes = pl.read_csv(context / "recipes.csv", columns=["parameter", "unit"])
    elif (context / "recipes.parquet").exists():
        recipes = pl.read_parquet(context / "recipes.parquet", columns=["parameter", "unit"])
    if recipes is None or not {"parameter", "unit"} <= set(recipes.columns):
        return {}
    pairs = recipes.select("parameter", "unit").unique().filter(pl.col("unit").is_not_null())
    return {str(k): str(v) for k, v in pairs.iter_rows()}
