"""The context mapping file: a plant's own ERP and MES exports read as floorsight's tables.

A TOML file (``floorsight run --context map.toml``) says, per floorsight table, where it comes
from and how its columns read: a CSV or Parquet file (a path or a glob, relative to the map's
folder), a DuckDB file with a table or a query, or a PostgreSQL URL with a table or a query
(its password from an environment variable or a private file, never in the URL); the column
renames (floorsight column = ERP column), the time columns with their format (``iso``,
``epoch_s``, ``epoch_ms`` or a strftime format) and time zone (IANA; naive times need one),
the CSV options of SAP-, Oracle- or Dynamics-style exports (delimiter, decimal comma,
thousands separator, encoding, lines before the header) and constant columns.

Every source is read into a frame, then each goes the same way: renamed, constants set, times
to UTC, numbers to floats; then the row rules and suites of :mod:`floorsight.pipelines.context`
judge the load, which is taken whole or rejected whole. See docs/connect.md.

>>> m = parse_map(b'[tables.work_orders]\\nfile = "AUFK.csv"\\n'
...     b'[tables.spec_limits]\\nfile = "QPMK.parquet"\\n', Path("/erp"))
>>> [str(f.path) for f in m.files()]
['/erp/AUFK.csv', '/erp/QPMK.parquet']
"""

from __future__ import annotations

import glob
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from floorsight.config import SecretError, secret
from floorsight.pipelines.context import (
    RECORD_TABLES,
    REQUIRED,
    ContextLoadError,
    ErpContext,
    Problem,
    _as_text,
    _checked,
    _read_csv,
    read_parquet_bytes,
)
from floorsight.records import TIMESTAMP

#: the time columns of each floorsight table (read as ISO 8601 unless the map says otherwise)
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "work_orders": ("start", "end"),
    "batches": ("start", "setup_end", "end"),
    "material_lots": ("received",),
    "customer_orders": ("due",),
    "shipments": ("shipped_at",),
    "maintenance_log": ("start", "end"),
    "lab_results": ("part_made_at", "available_at"),
}

#: the number columns of each floorsight table (a decimal comma is read in them)
NUMBER_COLUMNS: dict[str, tuple[str, ...]] = {
    "spec_limits": ("lsl", "target", "usl"),
    "products": ("cycle_time_s",),
    "recipes": ("setpoint",),
    "batches": ("good_parts", "scrap_parts"),
    "customer_orders": ("quantity",),
    "lab_results": ("value",),
}

TIME_FORMATS = ("iso", "epoch_s", "epoch_ms")


def _zone(name: str | None) -> str | None:
    if name is not None:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"{name!r} is no IANA time zone (e.g. Europe/Berlin, UTC)") from err
    return name


class TimeColumn(BaseModel):
    """How one time column reads: ``format`` and, for naive times, their ``time_zone``."""

    model_config = ConfigDict(extra="forbid")

    format: str = "iso"
    time_zone: str | None = None

    @model_validator(mode="after")
    def _known(self) -> TimeColumn:
        _zone(self.time_zone)
        if self.format not in TIME_FORMATS and "%" not in self.format:
            raise ValueError(
                f"time format {self.format!r} is none of {', '.join(TIME_FORMATS)} "
                "nor a strftime format (e.g. %d.%m.%Y %H:%M:%S)"
            )
        return self


class TableSource(BaseModel):
    """Where one floorsight table comes from, and how its columns read."""

    model_config = ConfigDict(extra="forbid")

    #: a CSV or Parquet file, or a glob of them (relative to the map's folder)
    file: str | None = None
    #: a DuckDB file (relative to the map's folder), with ``table`` or ``query``
    duckdb: str | None = None
    #: a PostgreSQL URL without a password, with ``table`` or ``query``
    postgresql: str | None = None
    table: str | None = None
    query: str | None = None
    #: the PostgreSQL password: from this environment variable, or the first line of this file
    #: (mode 600); without either, libpq reads PGPASSWORD or ~/.pgpass itself
    password_env: str | None = None
    password_file: str | None = None
    #: floorsight column = ERP column
    columns: dict[str, str] = Field(default_factory=dict)
    #: floorsight time column = its format, or {format, time_zone}
    times: dict[str, str | TimeColumn] = Field(default_factory=dict)
    #: the zone of this table's naive times (else the map's ``time_zone``)
    time_zone: str | None = None
    #: floorsight column = a value for every row (e.g. the machine of a one-machine export)
    constants: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: more columns to read as numbers, besides floorsight's own number columns
    numbers: list[str] = Field(default_factory=list)
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    decimal: Annotated[str, Field(pattern=r"^[.,]$")] = "."
    thousands: Annotated[str, Field(max_length=1)] = ""
    encoding: str = "utf-8"
    #: lines before the header (a report title, an export date)
    skip_rows: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _one_source(self) -> TableSource:
        kinds = [k for k in ("file", "duckdb", "postgresql") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(f"give one of file, duckdb or postgresql (got {kinds or 'none'})")
        if self.file is not None and (self.table or self.query):
            raise ValueError("table and query are for duckdb and postgresql sources")
        if self.file is None and bool(self.table) == bool(self.query):
            raise ValueError(f"a {kinds[0]} source needs one of table or query")
        if self.postgresql is not None and not self.postgresql.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("postgresql is a postgresql:// URL")
        if self.decimal == self.delimiter or (self.thousands and self.thousands == self.decimal):
            raise ValueError("delimiter, decimal and thousands must differ")
        _zone(self.time_zone)
        try:
            "".encode(self.encoding)
        except LookupError as err:
            raise ValueError(f"unknown encoding {self.encoding!r}") from err
        return self

    def time_columns(self, table: str, default_zone: str | None) -> dict[str, TimeColumn]:
        """Every time column of the table with its format and zone."""
        out = {c: TimeColumn() for c in TIME_COLUMNS.get(table, ())}
        for column, spec in self.times.items():
            out[column] = TimeColumn(format=spec) if isinstance(spec, str) else spec
        zone = self.time_zone or default_zone
        return {
            c: t if t.time_zone or not zone else TimeColumn(format=t.format, time_zone=zone)
            for c, t in out.items()
        }


class ContextMap(BaseModel):
    """A mapping file: its default time zone and a source per floorsight table."""

    model_config = ConfigDict(extra="forbid")

    #: the zone of every naive time (a table or column may give its own)
    time_zone: str | None = None
    tables: dict[str, TableSource]
    _folder: Path = PrivateAttr(default=Path())

    @property
    def folder(self) -> Path:
        """The map's folder: relative paths start there (set by :func:`parse_map`)."""
        return self._folder

    @model_validator(mode="after")
    def _known_tables(self) -> ContextMap:
        _zone(self.time_zone)
        known = (*REQUIRED, *RECORD_TABLES)
        unknown = sorted(set(self.tables) - set(known))
        if unknown:
            raise ValueError(f"unknown tables {unknown} (floorsight's are {', '.join(known)})")
        missing = [t for t in REQUIRED if t not in self.tables]
        if missing:
            raise ValueError(
                f"no [tables.{missing[0]}]: the context needs {' and '.join(REQUIRED)}"
            )
        return self

    def files(self) -> list[MappedFile]:
        """The files a load reads now (globs expanded, sorted), DuckDB files with their WAL."""
        out = []
        for name, source in self.tables.items():
            if source.file is not None:
                pattern = str(self.folder / source.file)
                if glob.has_magic(source.file):
                    out += [MappedFile(Path(p), name, False) for p in sorted(glob.glob(pattern))]
                else:
                    out.append(MappedFile(Path(pattern), name, True))
            elif source.duckdb is not None:
                path = self.folder / source.duckdb
                out += [MappedFile(path, name, True), MappedFile(_wal(path), name, False)]
        return out

    @property
    def polled(self) -> bool:
        """Whether a source can change without a file changing (a PostgreSQL table)."""
        return any(s.postgresql is not None for s in self.tables.values())


@dataclass(frozen=True, slots=True)
class MappedFile:
    """A file a load reads: its path, its table, and whether it must be there."""

    path: Path
    table: str
    needed: bool


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def parse_map(text: bytes, folder: Path, name: str = "map.toml") -> ContextMap:
    """The mapping file's ``text`` (``name`` in ``folder``), or :class:`ContextLoadError`
    naming the key that is wrong."""
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ContextLoadError([Problem(name, None, f"not a readable TOML file ({err})")]) from err
    try:
        cmap = ContextMap.model_validate(data)
    except ValidationError as err:
        problems = [
            Problem(
                name,
                None,
                f"{'.'.join(str(p) for p in e['loc'] if not str(p).startswith('function-'))}: "
                f"{e['msg'].removeprefix('Value error, ')}".removeprefix(": "),
            )
            for e in err.errors()
        ]
        raise ContextLoadError(problems) from None
    cmap._folder = folder
    return cmap


def read_map(path: Path) -> ContextMap:
    """The mapping file at ``path``; a missing one raises :class:`FileNotFoundError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"context map {path} does not exist")
    return parse_map(path.read_bytes(), path.parent.resolve(), path.name)


def require_sources(cmap: ContextMap, name: str) -> None:
    """Raise :class:`FileNotFoundError` naming the table and path of a file the map names
    that is not there (a wrong path must not run on no context), or of a required table's
    glob that matches nothing."""
    present = {f.table for f in cmap.files() if f.path.is_file()}
    for f in cmap.files():
        if f.needed and not f.path.is_file():
            raise FileNotFoundError(
                f"{name}: [tables.{f.table}] reads {f.path}, which does not exist"
            )
    for table in REQUIRED:
        source = cmap.tables[table]
        if source.file is not None and table not in present:
            raise FileNotFoundError(
                f"{name}: [tables.{table}] file {source.file!r} matches no file in {cmap.folder}"
            )


def load_mapped_context(path: Path) -> tuple[ErpContext, pl.DataFrame | None]:
    """Read every table the mapping file at ``path`` names, checked as one load."""
    cmap = read_map(path)
    require_sources(cmap, Path(path).name)
    return load_mapped(cmap)


def load_mapped(
    cmap: ContextMap, data: dict[str, bytes] | None = None
) -> tuple[ErpContext, pl.DataFrame | None]:
    """The context of the map's sources; ``data``: the bytes of its files as read (by path),
    so that a store reads each file once and checks it did not change meanwhile."""
    data = data or {}
    frames: dict[str, pl.DataFrame] = {}
    names: dict[str, str] = {}
    problems: list[Problem] = []
    files = cmap.files()
    for table, source in cmap.tables.items():
        try:
            frame, names[table] = _read_source(cmap, table, source, files, data)
        except ContextLoadError as err:
            problems += err.problems
            continue
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, TypeError) as err:
            # e.g. the files of a glob whose columns do not fit together
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            problems.append(Problem(f"{table} ({_described(source)})", None, f"unreadable: {text}"))
            continue
        if frame is not None:
            frames[table] = frame
    if problems:
        raise ContextLoadError(problems)
    records = {t: f for t, f in frames.items() if t not in REQUIRED}
    return _checked(
        _as_text(frames["work_orders"]), _as_text(frames["spec_limits"]), records, names=names
    )


def _described(source: TableSource) -> str:
    return source.file or source.duckdb or f"postgresql:{source.table or 'query'}"


def _read_source(
    cmap: ContextMap,
    table: str,
    source: TableSource,
    files: list[MappedFile],
    data: dict[str, bytes],
) -> tuple[pl.DataFrame | None, str]:
    """Table ``table`` read from its source and put in floorsight's terms (None: a glob that
    matches no file yet), and its name in reports."""
    zone = cmap.time_zone
    if source.file is not None:
        paths = [f.path for f in files if f.table == table and f.path.suffix != ".wal"]
        parts = []
        for path in paths:
            where = _relative(path, cmap.folder)
            raw = data.get(str(path))
            if raw is None:
                try:
                    raw = path.read_bytes()
                except OSError as err:
                    raise ContextLoadError([Problem(where, None, f"unreadable: {err}")]) from err
            frame = _read_file(where, raw, source)
            header = source.skip_rows + 1 if path.suffix.lower() != ".parquet" else 0
            parts.append(_normalised(frame, table, source, zone, where, header))
        where = f"{table} ({source.file})"
        if not parts:  # a record table's drop folder, empty for now: no such table yet
            return None, where
        return pl.concat(parts, how="diagonal_relaxed"), where
    if source.duckdb is not None:
        path = cmap.folder / source.duckdb
        where = f"{_relative(path, cmap.folder)}:{source.table or 'query'}"
        frame = _read_duckdb(path, source, where)
    else:
        where = f"postgresql:{source.table or 'query'} ({table})"
        frame = _read_postgres(source, where, cmap.folder)
    return _normalised(frame, table, source, zone, where, None), where


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _read_file(where: str, data: bytes, source: TableSource) -> pl.DataFrame:
    """A CSV or Parquet file's bytes as a frame (CSV cells as text)."""
    if where.lower().endswith((".parquet", ".pq")):
        return read_parquet_bytes(where, data)
    if source.encoding.lower().replace("_", "-") not in ("utf-8", "utf8") or data[:3] == (
        b"\xef\xbb\xbf"
    ):
        try:
            text = data.decode(source.encoding)
        except UnicodeDecodeError as err:
            rule = f"not {source.encoding} text (byte {err.start}): set encoding in the map"
            raise ContextLoadError([Problem(where, None, rule)]) from err
        data = text.removeprefix("\ufeff").encode("utf-8")
    return _read_csv(
        where,
        data,
        separator=source.delimiter,
        skip_rows=source.skip_rows,
        infer_schema=False,
    )


def _read_duckdb(path: Path, source: TableSource, where: str) -> pl.DataFrame:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        raise ContextLoadError([Problem(where, None, f"cannot be opened: {err}")]) from err
    try:
        if source.table is not None:
            tables = {r[0] for r in con.sql("SHOW TABLES").fetchall()}
            if source.table not in tables:
                rule = f"no table {source.table} (has {sorted(tables)})"
                raise ContextLoadError([Problem(where, None, rule)])
            return con.table(source.table).pl()
        return con.sql(source.query).pl()
    except duckdb.Error as err:
        raise ContextLoadError([Problem(where, None, f"cannot be read: {err}")]) from err
    finally:
        con.close()


def _read_postgres(source: TableSource, where: str, folder: Path) -> pl.DataFrame:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    url = source.postgresql or ""
    try:
        has_password = bool(conninfo_to_dict(url).get("password"))
    except psycopg.ProgrammingError as err:
        raise ContextLoadError([Problem(where, None, f"not a PostgreSQL URL: {err}")]) from err
    if has_password:
        rule = (
            "the URL holds a password: remove it and give password_env or password_file "
            "(mode 600), or let libpq read PGPASSWORD or ~/.pgpass"
        )
        raise ContextLoadError([Problem(where, None, rule)])
    try:
        file = folder / source.password_file if source.password_file else None
        password = secret(source.password_env or "", file)
    except (SecretError, OSError) as err:
        raise ContextLoadError([Problem(where, None, f"no password: {err}")]) from err
    if source.password_env and not password:
        rule = f"no password: set {source.password_env} (or give password_file)"
        raise ContextLoadError([Problem(where, None, rule)])
    extra = {"password": password} if password else {}
    if source.table is not None:
        query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(*source.table.split(".")))
    else:
        query = sql.SQL(source.query or "")
    try:
        with psycopg.connect(url, connect_timeout=10, **extra) as con:
            cur = con.execute(query)
            names = [d.name for d in cur.description or ()]
            rows = cur.fetchall()
    except psycopg.Error as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ContextLoadError([Problem(where, None, f"cannot be read: {text}")]) from err
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)


def _normalised(
    frame: pl.DataFrame,
    table: str,
    source: TableSource,
    zone: str | None,
    where: str,
    header: int | None,
) -> pl.DataFrame:
    """``frame`` in floorsight's terms: renamed, constants set, times as UTC, numbers read.
    ``header``: the lines up to a CSV file's header (problems then name the file's line)."""
    absent = [erp for erp in source.columns.values() if erp not in frame.columns]
    if absent:
        rules = [
            f"has no column {erp!r} (the map's {table}.{fs}; it has {frame.columns[:20]})"
            for fs, erp in source.columns.items()
            if erp in absent
        ]
        raise ContextLoadError([Problem(where, None, r) for r in rules])
    taken = set(source.columns.values()) | set(source.columns) | set(source.constants)
    frame = frame.select(
        *(pl.col(erp).alias(fs) for fs, erp in source.columns.items()),
        *(pl.col(c) for c in frame.columns if c not in taken),
        *(pl.lit(v).alias(c) for c, v in source.constants.items()),
    )

    def row(i: int) -> int:  # the Problem row whose text names the file's line, or data row
        return i + header if header is not None and where.endswith(".csv") else i + 1

    problems = []
    times = source.time_columns(table, zone)
    for column, spec in times.items():
        if column not in frame.columns:
            if column in source.times:
                rule = f"times names column {column!r}, which the table has not"
                problems.append(Problem(where, None, rule))
            continue
        parsed, bad = _parse_times(frame[column], spec)
        if isinstance(bad, str):
            problems.append(Problem(where, None, f"{column}: {bad}"))
            continue
        for i in bad[: ContextLoadError.SHOWN]:
            cell = frame[column][i]
            rule = f"{column} {cell!r} is not a time in format {spec.format}" + (
                f" in {spec.time_zone}" if spec.time_zone else ""
            )
            problems.append(Problem(where, row(i), rule))
        frame = frame.with_columns(parsed.alias(column))
    if problems:
        raise ContextLoadError(problems)
    numbers = [
        c
        for c in (*NUMBER_COLUMNS.get(table, ()), *source.numbers)
        if c in frame.columns and frame[c].dtype == pl.String
    ]
    if numbers and (source.decimal != "." or source.thousands):
        frame = frame.with_columns(_number_text(pl.col(c), source) for c in numbers)
    if table not in REQUIRED:  # the required tables' own checks read their numbers
        frame = frame.with_columns(
            pl.col(c).str.strip_chars().cast(pl.Float64, strict=False)
            for c in numbers
            if frame[c].str.strip_chars().cast(pl.Float64, strict=False).null_count()
            == frame[c].str.strip_chars().replace("", None).null_count()
        )
    return frame


def _number_text(cell: pl.Expr, source: TableSource) -> pl.Expr:
    """A number cell in the usual notation (``1.234,5`` -> ``1234.5``)."""
    if source.thousands:
        cell = cell.str.replace_all(source.thousands, "", literal=True)
    if source.decimal != ".":
        cell = cell.str.replace_all(source.decimal, ".", literal=True)
    return cell


#: a zone offset after a time of day (``06:00Z``, ``06:00:00.5+01:00``, ``06:00+0100``)
_OFFSET = re.compile(r":\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}(?::?\d{2})?)$")
#: ISO 8601 as exports write it (after :func:`_iso_text`), tried in order: no format is
#: guessed from the data, so a bad first cell cannot decide how the others read
_ISO_AWARE = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z")
_ISO_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")


def _iso_text(text: pl.Series) -> pl.Series:
    """ISO 8601 cells in one spelling: ``T`` between date and time, a date alone at midnight,
    ``Z`` as ``+00:00``, an hours-only offset with its minutes."""
    return (
        text.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
        .str.replace(r"^(\d{4}-\d{2}-\d{2})$", "${1}T00:00")
        .str.replace(r"Z$", "+00:00")
        .str.replace(r"(:\d{2}(?:\.\d+)?[+-]\d{2})$", "${1}:00")
    )


def _first_format(cell: pl.Expr, formats: tuple[str, ...], dtype: pl.DataType) -> pl.Expr:
    """``cell`` read with the first of ``formats`` that fits it (null: none does)."""
    return pl.coalesce(cell.str.strptime(dtype, f, strict=False) for f in formats)


def _parse_times(column: pl.Series, spec: TimeColumn) -> tuple[pl.Series, list[int] | str]:
    """``column`` as UTC times, and the rows of cells that are not times in ``spec`` (or a
    sentence why the column as a whole cannot be read)."""
    zone = spec.time_zone
    if column.dtype == pl.Null:
        return pl.Series(column.name, [None] * len(column), dtype=TIMESTAMP), []
    if isinstance(column.dtype, pl.Datetime) or column.dtype == pl.Date:
        times = column.cast(pl.Datetime("us")) if column.dtype == pl.Date else column
        if times.dtype.time_zone is None:
            if zone is None:
                return column, _NEEDS_ZONE
            times = _localized(times, zone)
            missing = (times.is_null() & column.is_not_null()).arg_true().to_list()
            return times.dt.convert_time_zone("UTC").cast(TIMESTAMP), missing
        return times.dt.convert_time_zone("UTC").cast(TIMESTAMP), []
    if spec.format in ("epoch_s", "epoch_ms"):
        scale = 1_000_000 if spec.format == "epoch_s" else 1_000
        text = column.cast(pl.String).str.strip_chars()
        number = text.cast(pl.Float64, strict=False)
        micros = (number * scale).round().cast(pl.Int64, strict=False)
        times = pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC")
        bad = (times.is_null() & text.is_not_null() & (text != "")).arg_true().to_list()
        return times.cast(TIMESTAMP), bad
    text = column.cast(pl.String).str.strip_chars().replace("", None)
    if spec.format == "iso":
        aware = text.str.contains(_OFFSET.pattern).fill_null(False)
        cells = pl.DataFrame({"aware": aware, "text": _iso_text(text)})
        with_offset, naive = cells.select(
            _first_format(
                pl.when("aware").then("text"), _ISO_AWARE, pl.Datetime("us", "UTC")
            ).alias("aware"),
            _first_format(
                pl.when(~pl.col("aware")).then("text"), _ISO_NAIVE, pl.Datetime("us")
            ).alias("naive"),
        ).get_columns()
        if (cells["text"].is_not_null() & ~aware).any() and zone is None:
            return column, _NEEDS_ZONE
        naive = _localized(naive, zone or "UTC").dt.convert_time_zone("UTC").cast(TIMESTAMP)
        times = with_offset.cast(TIMESTAMP).zip_with(aware, naive)
    else:
        has_zone = "%z" in spec.format or "%Z" in spec.format or "%:z" in spec.format
        if not has_zone and zone is None:
            return column, _NEEDS_ZONE
        parsed = text.str.strptime(pl.Datetime("us"), spec.format, strict=False)
        if parsed.dtype.time_zone is None:
            parsed = _localized(parsed, zone or "UTC")
        times = parsed.dt.convert_time_zone("UTC").cast(TIMESTAMP)
    bad = (times.is_null() & text.is_not_null()).arg_true().to_list()
    return times, bad


_NEEDS_ZONE = (
    "times without a zone offset need the zone they were written in: set time_zone (IANA, "
    "e.g. Europe/Berlin) for the map, the table or the column"
)


def _localized(times: pl.Series, zone: str) -> pl.Series:
    """Naive local ``times`` in ``zone``; of a repeated hour (the autumn clock change) the
    first, a time in the skipped hour (spring) is null, reported as not a time."""
    return times.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")


__all__ = [
    "ContextMap",
    "TableSource",
    "TimeColumn",
    "load_mapped",
    "load_mapped_context",
    "parse_map",
    "read_map",
    "require_sources",
]
