"""File replay: readings from Parquet/CSV files in event-time order, partitioned by machine.

A history folder holds one file per day (``floorsight simulate --out``); files are read in name
order and each file sorted by time. :func:`read_history` reads one file: every row is a reading
or a dead letter naming the file, the row and the cell (a bad cell, a naive time among times
with offsets, a time outside the file's own time range); a file that is no readings file, or
whose times have no zone while none is given, is refused whole (``HistoryError``), before the
run starts. A batch with dead letters is emitted as a
:class:`~floorsight.pipelines.validate.Checked`.

The source has ``partitions`` partitions; a machine belongs to partition
``crc32(machine_id) % partitions``, so each machine's readings stay in order in one partition
and any number of workers share the partitions. A partition reads only its own rows of a
Parquet file: it reads the file's machine ids, picks its own, and reads the rows of those
machines (polars' predicate pushdown: the other rows' cells are not materialised) together with
the whole file's times and values, which the file's time range is judged on (so the dead letters
are the same however many partitions read the file). A CSV file has no index to skip by: each
partition reads it whole and keeps its rows. Each partition's resume state is its
position (file, row) within its own rows, counting the dead-lettered rows too: after a crash
Bytewax restarts it from the last snapshot, and what was replayed since is rewritten
idempotently by the sink.
"""

from __future__ import annotations

import logging
import math
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from floorsight.metrics import METRICS
from floorsight.pipelines.validate import Checked, dead_letters
from floorsight.records import READING_SCHEMA, TIMESTAMP

log = logging.getLogger(__name__)


def history_files(path: Path) -> list[Path]:
    """The readings files of ``path`` (a file, or a folder of them) in time (name) order."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".csv"))
        if not files:
            raise FileNotFoundError(f"{path}: no .parquet or .csv readings files")
        return files
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such readings file or folder")
    return [path]


class HistoryError(ValueError):
    """A file that is not a readings file at all (the whole file is refused, with the reason)."""


#: how far a reading may lie outside its file's own time range (see :func:`read_history`)
TOLERANCE = timedelta(minutes=5)
#: the rows the refusal checks of :func:`check_history_file` look at, before a run starts
_PEEK_ROWS = 1000
#: the fewest distinct times left out of each end of a file's bulk (see :func:`read_history`)
_BULK_TRIM = 5
_TEXT = pl.String
# the UTC times a Python datetime can hold: a reading outside them is dead-lettered, not kept
_FIRST, _LAST = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def read_history(
    path: Path, time_zone: str | None = None, *, tolerance: timedelta = TOLERANCE
) -> Checked:
    """One readings file: its valid readings (sorted by time, stable) and its dead letters.

    CSV is read with every column as text and each cell parsed on its own, so a bad cell costs
    its row only: the row becomes a dead letter whose reason names the file, the row (data rows
    count from 1 after the header) and the cell, e.g. ``day.csv row 1234: ts 'noon' is not an
    ISO 8601 time``; the other rows are read. Parquet columns of another type are cast the same
    lenient way (text, then parsed). Every row of the file is either in ``ok`` or in ``dead``.

    Timestamps are ISO 8601. One with an offset (``Z``, ``+01:00``) is converted to UTC. One
    without (naive) is localised to ``time_zone`` (an IANA name such as ``Europe/Berlin``, or
    ``UTC``); a local time that a daylight-saving change skips or repeats is a dead letter.
    Without ``time_zone``, a file whose timestamps are mostly naive is refused (``HistoryError``:
    nothing says which zone they are in), and the few naive ones of a file with offsets are dead
    letters.

    A reading outside the file's own time range by more than ``tolerance`` is a dead letter, so
    one reading of year 2100 cannot move a watermark. The range is robust: it starts from the
    bulk of the file, its distinct timestamps without the 0.1 % earliest and the 0.1 % latest
    (and without at least the 5 earliest and 5 latest when it has 21 or more, a quarter of them
    when fewer), and grows outwards through the readings that follow each other with gaps of at
    most ``tolerance``. A file's first and last minutes, even when sparse, are so in range; a
    reading separated from the rest by more than ``tolerance`` beyond the bulk is not, however
    many such readings share its time. Files of fewer than three distinct times are taken
    whole.

    A file that cannot be read at all, or lacks a required column, raises ``HistoryError``
    naming the file.
    """
    rows = _read_rows(Path(path), time_zone, tolerance)
    return _split(rows, "history")


def read_readings(path: Path, time_zone: str | None = None) -> pl.DataFrame:
    """The valid readings of one file, sorted by time (its dead letters: :func:`read_history`)."""
    return read_history(path, time_zone).ok


def check_history(path: Path, time_zone: str | None = None) -> list[Path]:
    """The readings files of ``path``, each checked by :func:`check_history_file`."""
    check_time_zone(time_zone)
    files = history_files(Path(path))
    for file in files:
        check_history_file(file, time_zone)
    return files


def check_history_file(path: Path, time_zone: str | None = None) -> None:
    """Raise ``HistoryError`` when ``path`` is no readings file, reading only its first rows.

    What is refused here is refused before a run starts: a file that cannot be read, lacks a
    required column, or has naive timestamps while no time zone is given.
    """
    path = Path(path)
    _parse(_raw_frame(path, n_rows=_PEEK_ROWS), path.name, time_zone)


def check_time_zone(time_zone: str | None) -> None:
    """Raise ``HistoryError`` unless ``time_zone`` is None or an IANA time zone name."""
    if time_zone is None:
        return
    try:
        ZoneInfo(time_zone)
        # polars knows the IANA names only (not localtime, posix/..., right/...)
        pl.Series([datetime(2026, 1, 1)]).dt.replace_time_zone(time_zone)
    except (ZoneInfoNotFoundError, ValueError, pl.exceptions.PolarsError) as e:
        raise HistoryError(
            f"time zone {time_zone!r} is not an IANA name such as Europe/Berlin or UTC"
        ) from e


def _read_rows(
    path: Path, time_zone: str | None, tolerance: timedelta, part: Partition | None = None
) -> pl.DataFrame:
    """Every row of the file, or of ``part``'s machines only, parsed: ``_reason`` (None for a
    valid reading) and ``_row`` (its row in the file, from 1; null where the read was clean: no
    reason names a row then). Rows outside the time range of the whole file are dead letters,
    whichever partition reads them."""
    if part is None or part.count == 1:
        # a clean file's rows go without their numbers, as no reason names a row
        rows = _parse(_raw_frame(path), path.name, time_zone, numbered=False)
        span = _time_range(_valid_times(rows["ts"], rows["_reason"]), tolerance)
        if span is not None and rows["_row"].null_count() == rows.height:
            # readings outside the file's range: their reasons name their rows
            rows = rows.with_columns(pl.int_range(1, rows.height + 1, dtype=pl.Int64).alias("_row"))
    else:
        scan = _PartitionScan.of(path, part)
        if scan is not None:  # a Parquet file: this partition's rows, the file's times
            raw = scan.rows()
            # the whole file decides its time range and whether its times are naive
            span = None
            if not scan.within(tolerance):
                whole = scan.whole()
                ts, _, reason = _parse_cells(whole, path.name, time_zone)
                span = _time_range(_valid_times(ts, reason), tolerance)
            rows = _parse(raw, path.name, time_zone, whole_file=False)
            if span is not None or rows["_reason"].null_count() < rows.height:
                # a reason names the row in the file: read the rows' numbers, parse again
                rows = _parse(raw, path.name, time_zone, row=scan.row_numbers(), whole_file=False)
            else:  # clean: no reason names a row, and no other step reads the numbers
                rows = rows.with_columns(
                    pl.repeat(None, rows.height, dtype=pl.Int64, eager=True).alias("_row")
                )
            log.debug("%s: partition %d of %d read %d rows", path.name, *part, raw.height)
        else:  # CSV (no index to skip by) or ids that are no text: the file, then the rows
            rows = _parse(_raw_frame(path), path.name, time_zone)
            log.debug("%s: partition %d of %d read %d rows", path.name, *part, rows.height)
            span = _time_range(_valid_times(rows["ts"], rows["_reason"]), tolerance)
            rows = rows.filter(part.keeps(rows["machine_id"]))
    if rows["_reason"].null_count() == rows.height and rows["ts"].is_sorted():
        rows = rows.with_columns(pl.col("ts").set_sorted())  # written in order: no sort
    else:  # valid readings in time order (stable), then the bad rows in file order
        rows = rows.sort(
            pl.when(pl.col("_reason").is_null()).then(pl.col("ts")),
            maintain_order=True,
            nulls_last=True,
        )
    # readings outside the file's range become dead letters where they are (first or last)
    return _mark_outside(rows, path.name, tolerance, span)


@dataclass(frozen=True)
class _PartitionScan:
    """One partition's read of a Parquet file with text machine ids: its rows (polars pushes
    the machine filter down into the reader), the file's time bounds, and, only when a reason
    has to name a row or the bounds do not settle the time range, the rows' numbers in the
    file and the whole file's times (each an extra pass over the file)."""

    path: Path
    scan: pl.LazyFrame
    keep: pl.Expr
    aware: bool  # the file's ts column holds times with an offset (UTC inside)

    @classmethod
    def of(cls, path: Path, part: Partition) -> _PartitionScan | None:
        """None when the file is no Parquet file with text machine ids (read whole instead)."""
        if path.suffix != ".parquet":
            return None
        with _unreadable_as_history_error(path):
            schema = pl.read_parquet_schema(path)
            _require(path, list(schema))
            if schema["machine_id"] != _TEXT:
                return None
            scan = pl.scan_parquet(path)
            ids = scan.select(pl.col("machine_id").unique()).collect()["machine_id"]
            ts = schema["ts"]
            aware = isinstance(ts, pl.Datetime) and ts.time_zone is not None
            return cls(path, scan, part.keeps(pl.col("machine_id"), ids), aware)

    def rows(self) -> pl.DataFrame:
        with _unreadable_as_history_error(self.path):
            return self.scan.select(list(READING_SCHEMA)).filter(self.keep).collect()

    def row_numbers(self) -> pl.Series:
        """The rows' numbers in the file (from 1), in the order of :meth:`rows`."""
        with _unreadable_as_history_error(self.path):
            return (
                self.scan.select("machine_id")
                .with_row_index("_row", offset=1)
                .filter(self.keep)
                .collect()["_row"]
                .cast(pl.Int64)
            )

    def within(self, tolerance: timedelta) -> bool:
        """True when every time of the file lies within ``tolerance`` of every other (then no
        reading can lie outside the file's time range): judged on its bounds alone."""
        if not self.aware:
            return False
        with _unreadable_as_history_error(self.path):
            bounds = self.scan.select(first=pl.col("ts").min(), last=pl.col("ts").max()).collect()
        first, last = bounds["first"][0], bounds["last"][0]
        return first is None or last - first <= tolerance

    def whole(self) -> pl.DataFrame:
        """The whole file's ``ts`` and ``value``."""
        with _unreadable_as_history_error(self.path):
            return self.scan.select("ts", "value").collect()


@contextmanager
def _unreadable_as_history_error(path: Path):
    try:
        yield
    except HistoryError:
        raise
    except (OSError, pl.exceptions.PolarsError, ValueError) as e:
        raise HistoryError(f"{path}: not a readable readings file: {_short(e)}") from e


def _raw_frame(path: Path, n_rows: int | None = None) -> pl.DataFrame:
    """The required columns of a file as read, untyped for CSV; ``HistoryError`` if unreadable."""
    with _unreadable_as_history_error(path):
        if path.suffix == ".parquet":
            columns = pl.read_parquet_schema(path)
            _require(path, list(columns))
            return pl.read_parquet(path, columns=list(READING_SCHEMA), n_rows=n_rows)
        frame = pl.read_csv(
            path,
            infer_schema=False,  # every column as text: each cell is parsed on its own
            encoding="utf8-lossy",
            truncate_ragged_lines=True,
            n_rows=n_rows,
        )
    _require(path, frame.columns)
    return frame.select(list(READING_SCHEMA))


def _require(path: Path, columns: list[str]) -> None:
    missing = [c for c in READING_SCHEMA if c not in columns]
    if missing:
        raise HistoryError(f"{path}: not a readings file: lacks columns {missing} (has {columns})")


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def _as_text(frame: pl.DataFrame, name: str, label: str) -> pl.Series:
    column = frame[name]
    if column.dtype == _TEXT:
        return column
    try:
        return column.cast(_TEXT, strict=False)
    except pl.exceptions.PolarsError as e:
        raise HistoryError(f"{label}: column {name} of type {column.dtype} is not text") from e


def _parse(
    frame: pl.DataFrame,
    label: str,
    time_zone: str | None,
    row: pl.Series | None = None,
    whole_file: bool = True,
    numbered: bool = True,
) -> pl.DataFrame:
    """The four reading columns typed, the raw cells kept, ``_reason`` per row (None: valid).

    ``row`` is each row's row in the file (default: the frame is the file, from row 1; without
    ``numbered``, null where no cell is bad, as no reason names a row then). A
    ``frame`` that is not the ``whole_file`` (one partition's rows) is not refused for naive
    times: the whole file was judged on that already (:func:`_parse_cells`).

    Clean cells cost vectorised casts only: the slower paths (stripped text, Python's ISO
    parser) and the reasons' text are computed for the cells that need them.
    """
    ts, value, reason = _parse_cells(frame, label, time_zone, whole_file)
    bad = reason.is_not_null()
    clean = not bad.any()
    if row is None:
        row = (
            pl.repeat(None, frame.height, dtype=pl.Int64, eager=True)
            if clean and not numbered
            else pl.int_range(1, frame.height + 1, dtype=pl.Int64, eager=True)
        )
    if not clean:
        named = pl.DataFrame({"row": row.filter(bad), "reason": reason.filter(bad)}).select(
            pl.format("{} row {}: {}", pl.lit(label), "row", "reason")
        )
        reason = reason.scatter(bad.arg_true(), named.to_series())
    return pl.DataFrame(
        {
            "machine_id": _as_text(frame, "machine_id", label),
            "sensor": _as_text(frame, "sensor", label),
            "ts": ts,
            "value": value,
            "_row": row,
            "_ts_raw": frame["ts"],
            "_value_raw": frame["value"],
            "_reason": reason,
        }
    )


def _parse_cells(
    frame: pl.DataFrame, label: str, time_zone: str | None, whole_file: bool = True
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(times, values, the reason per row: None for a valid reading) of ``ts`` and ``value``."""
    check_time_zone(time_zone)
    ts, ts_reason = _parse_times(frame["ts"], label, time_zone, refuse_naive=whole_file)
    value, value_reason = _parse_values(frame["value"])
    return ts, value, ts_reason.fill_null(value_reason)


def _quoted(text: pl.Expr, limit: int = 60) -> pl.Expr:
    """``'text'`` for a reason, cut to ``limit`` characters."""
    cut = pl.when(text.str.len_chars() > limit).then(
        pl.concat_str(text.str.slice(0, limit), pl.lit("..."))
    )
    return pl.concat_str(pl.lit("'"), cut.otherwise(text), pl.lit("'"))


def _where(bad: pl.Series, frame: pl.DataFrame, reason: pl.Expr) -> pl.Series:
    """``reason`` evaluated on the rows of ``frame`` where ``bad`` holds; null elsewhere."""
    out = pl.repeat(None, bad.len(), dtype=pl.String, eager=True)
    if not bad.any():
        return out
    return out.scatter(bad.arg_true(), frame.filter(bad).select(reason).to_series())


def utc_times(
    frame: pl.DataFrame, column: str, label: str, time_zone: str | None = None
) -> pl.DataFrame:
    """``frame`` with its text or datetime ``column`` as UTC times (``floorsight replay``).

    The same rules as :func:`read_history`, but strict: the first cell that is no time raises
    ``HistoryError`` naming the row and the cell (a backtest orders every row, so it cannot
    leave one out). A missing or numeric column is left as it is.
    """
    if column not in frame.columns or frame[column].dtype.is_numeric():
        return frame
    dtype = frame[column].dtype
    if dtype != _TEXT and not isinstance(dtype, pl.Datetime):
        return frame
    check_time_zone(time_zone)
    ts, reason = _parse_times(frame[column], label, time_zone, name=column)
    bad = reason.is_not_null()
    if bad.any():
        row = int(bad.arg_max()) + 1
        raise HistoryError(f"{label} row {row}: {reason[row - 1]}")
    return frame.with_columns(ts.alias(column))


def _parse_times(
    column: pl.Series,
    label: str,
    time_zone: str | None,
    name: str = "ts",
    refuse_naive: bool = True,
) -> tuple[pl.Series, pl.Series]:
    """(UTC times, null where bad; a reason per bad cell). Mostly naive times without
    ``time_zone`` raise ``HistoryError`` when ``refuse_naive``."""
    n = column.len()
    if isinstance(column.dtype, pl.Datetime):
        if column.dtype.time_zone is not None:
            aware = column.dt.convert_time_zone("UTC").cast(TIMESTAMP)
            naive = pl.repeat(None, n, dtype=pl.Datetime("us"), eager=True)
        else:
            aware = pl.repeat(None, n, dtype=TIMESTAMP, eager=True)
            naive = column.cast(pl.Datetime("us"))
    else:
        column = _as_text(pl.DataFrame({name: column}), name, label)
        aware, naive = _iso_times(column)
    naive_times, offset_times = n - naive.null_count(), n - aware.null_count()
    if refuse_naive and time_zone is None and naive_times > offset_times:
        # more naive times than times with an offset: the file's convention is naive
        first = int(naive.is_not_null().arg_max() or 0)
        cell = column.cast(_TEXT)[first]
        raise HistoryError(
            f"{label}: {name} times have no time zone (row {first + 1}: {cell!r}); give "
            "--time-zone with the zone they are in (an IANA name such as Europe/Berlin, or UTC)"
        )
    local = None
    if time_zone is not None and naive.null_count() < n:
        local = naive.dt.replace_time_zone(
            time_zone, ambiguous="null", non_existent="null"
        ).dt.convert_time_zone("UTC")
        ts = aware.fill_null(local.cast(TIMESTAMP))
    else:
        ts = aware
    bad = (ts.is_null() | (ts < _FIRST) | (ts > _LAST)).fill_null(True)
    cells = pl.DataFrame(
        {
            "raw": column,
            "aware": aware.is_not_null(),
            "naive": naive.is_not_null(),
            "local": local.is_not_null() if local is not None else pl.repeat(False, n, eager=True),
        }
    )
    text = pl.col("raw").cast(_TEXT).str.strip_chars()  # evaluated for the bad cells only
    quoted = _quoted(text)
    reason = (
        pl.when(text.is_null() | (text == ""))
        .then(pl.lit(f"{name} missing"))
        .when(~pl.col("aware") & ~pl.col("naive"))
        .then(pl.concat_str(pl.lit(f"{name} "), quoted, pl.lit(" is not an ISO 8601 time")))
        .when(~pl.col("aware") & pl.lit(time_zone is None))
        .then(
            pl.concat_str(pl.lit(f"{name} "), quoted, pl.lit(" has no time zone (see --time-zone)"))
        )
        .when(~pl.col("aware") & ~pl.col("local"))
        .then(
            pl.concat_str(
                pl.lit(f"{name} "),
                quoted,
                pl.lit(f" is skipped or repeated in {time_zone} (a daylight-saving change)"),
            )
        )
        .otherwise(pl.concat_str(pl.lit(f"{name} "), quoted, pl.lit(" is out of range")))
    )
    # a time no Python datetime can hold is dropped from the column (the raw cell keeps it)
    return ts.zip_with(~bad, pl.repeat(None, n, dtype=TIMESTAMP, eager=True)), _where(
        bad, cells, reason
    )


def _iso_times(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(times with an offset, in UTC; naive times) of ISO 8601 texts; both null if neither.

    The common form (RFC 3339, ``T`` or space) is parsed vectorised; a cell it does not take is
    stripped and tried as naive text, then by Python's ``datetime.fromisoformat`` (``Z`` without
    seconds, ``+01``, basic format ...), once per distinct text. A text without a time part (a
    bare date) is no time.
    """
    aware = text.str.to_datetime("%+", strict=False, time_zone="UTC", time_unit="us")
    failed = aware.is_null() & text.is_not_null()
    n = text.len()
    naive = pl.repeat(None, n, dtype=pl.Datetime("us"), eager=True)
    if not failed.any():
        return aware, naive
    where = failed.arg_true()
    rest = text.filter(failed).str.strip_chars()
    rest_aware = rest.str.to_datetime("%+", strict=False, time_zone="UTC", time_unit="us")
    rest_naive = rest.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
    rest_naive = rest_naive.fill_null(
        rest.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
    )
    odd = rest.filter(rest_aware.is_null() & rest_naive.is_null()).unique()
    parsed_aware, parsed_naive = {}, {}
    for cell in odd.to_list():
        when = _fromisoformat(cell)
        if when is None:
            continue
        if when.utcoffset() is None:
            parsed_naive[cell] = when
        else:
            try:
                parsed_aware[cell] = when.astimezone(UTC)
            except (OverflowError, ValueError):
                continue
    if parsed_aware:
        rest_aware = rest_aware.fill_null(
            rest.replace_strict(
                list(parsed_aware),
                list(parsed_aware.values()),
                default=None,
                return_dtype=TIMESTAMP,
            )
        )
    if parsed_naive:
        rest_naive = rest_naive.fill_null(
            rest.replace_strict(
                list(parsed_naive),
                list(parsed_naive.values()),
                default=None,
                return_dtype=pl.Datetime("us"),
            )
        )
    return aware.scatter(where, rest_aware), naive.scatter(where, rest_naive)


def _fromisoformat(cell: str) -> datetime | None:
    if not any(sep in cell for sep in "Tt "):
        return None  # a bare date, or no time at all
    try:
        return datetime.fromisoformat(cell)
    except (ValueError, OverflowError):
        return None


def _parse_values(column: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(values as floats, null where bad; a reason per bad cell)."""
    if column.dtype.is_numeric():
        value = column.cast(pl.Float64, strict=False)
    else:
        text = column if column.dtype == _TEXT else column.cast(_TEXT, strict=False)
        value = text.cast(pl.Float64, strict=False)
        failed = value.is_null() & text.is_not_null()
        if failed.any():  # " 1.5": surrounding blanks are not a reason
            stripped = text.filter(failed).str.strip_chars().cast(pl.Float64, strict=False)
            value = value.scatter(failed.arg_true(), stripped)
    bad = value.is_null()
    text = pl.col("raw").cast(_TEXT)  # evaluated for the bad cells only
    reason = (
        pl.when(text.is_null() | (text.str.strip_chars() == ""))
        .then(pl.lit("value missing"))
        .otherwise(pl.concat_str(pl.lit("value "), _quoted(text), pl.lit(" is not a number")))
    )
    return value, _where(bad, pl.DataFrame({"raw": column}), reason)


def _valid_times(ts: pl.Series, reason: pl.Series) -> pl.Series:
    """The times of the valid readings (those without a reason)."""
    return ts if reason.null_count() == reason.len() else ts.filter(reason.is_null())


def _time_range(times: pl.Series, tolerance: timedelta) -> tuple[datetime, datetime] | None:
    """The file's own time range (see :func:`read_history`) from its valid readings' times;
    None when no reading can lie outside it."""
    if not times.is_sorted():  # rows straight from _parse (the source sorts them first)
        times = times.sort()
    times = times.filter(times.diff().fill_null(timedelta(1)) != timedelta(0))  # distinct
    stamps = times.to_physical()
    n = stamps.len()
    if n < 3:
        return None
    # the bulk: without the 0.1 % earliest and latest times, and at least 5 of each when the
    # file has 21 or more (so a few poisoned readings of a small file are outside it too)
    k = max(math.ceil(0.001 * n), min(_BULK_TRIM, (n - 1) // 4))
    lo_i, hi_i = k, n - 1 - k
    # grown outwards up to the first gap wider than the tolerance on each side
    tol = tolerance // timedelta(microseconds=1)
    wide = (stamps.diff() > tol).arg_true().to_list()  # i: stamps[i] - stamps[i - 1] > tol
    above = [i for i in wide if i > hi_i]
    below = [i for i in wide if i <= lo_i]
    if not above and not below:
        return None
    first = times[below[-1]] if below else times[0]
    last = times[above[0] - 1] if above else times[-1]
    return first, last


def _mark_outside(
    rows: pl.DataFrame, label: str, tolerance: timedelta, span: tuple[datetime, datetime] | None
) -> pl.DataFrame:
    """Dead-letter the valid readings of ``rows`` outside ``span`` (None: none is outside)."""
    if span is None:
        return rows
    first, last = span
    outside = (rows["_reason"].is_null() & ((rows["ts"] < first) | (rows["ts"] > last))).fill_null(
        False
    )
    reason = pl.format(
        "{} row {}: ts {} is outside the file's time range {} .. {} by more than {}",
        pl.lit(label),
        "_row",
        _quoted(pl.col("_ts_raw").cast(_TEXT)),
        pl.lit(first.isoformat()),
        pl.lit(last.isoformat()),
        pl.lit(str(tolerance)),
    )
    return rows.with_columns(_reason=rows["_reason"].fill_null(_where(outside, rows, reason)))


def _split(rows: pl.DataFrame, source: str) -> Checked:
    """Rows with ``_reason`` as a Checked: the readings, and the dead letters (raw cells kept)."""
    bad = rows["_reason"].is_not_null()
    clean = not bad.any()
    # a clean batch is taken as it is: a filter would copy every cell of it
    ok = (rows if clean else rows.filter(~bad)).select(list(READING_SCHEMA))
    if ok["ts"].is_sorted():
        ok = ok.with_columns(ok["ts"].set_sorted())
    if clean:
        return Checked(ok, None)
    raw = rows.filter(bad).select(
        "machine_id",
        "sensor",
        "ts",
        "value",
        "_reason",
        row="_row",
        ts_text=pl.col("_ts_raw").cast(_TEXT),
        value_text=pl.col("_value_raw").cast(_TEXT),
    )
    return Checked(ok, dead_letters(raw, source, reason_col="_reason"))


def partition_of(machine_id: str, partitions: int) -> int:
    return zlib.crc32(machine_id.encode()) % partitions


class Partition(NamedTuple):
    """Partition ``index`` of ``count``: the machines with ``partition_of(id, count) == index``,
    and, in the partition of the empty id, the rows without a machine."""

    index: int
    count: int

    def keeps(self, machine_id: pl.Expr | pl.Series, ids: pl.Series | None = None):
        """A mask (or, for an expression, a predicate) of this partition's rows;
        ``machine_id``'s distinct values are ``ids`` (default: computed from it)."""
        if ids is None:
            ids = machine_id.unique()
        mine = [m for m in ids.drop_nulls().to_list() if partition_of(m, self.count) == self.index]
        keep = machine_id.is_in(pl.Series(mine, dtype=_TEXT).implode())
        if self.index == partition_of("", self.count):  # rows without a machine: once
            keep = keep | machine_id.is_null()
        return keep


@dataclass(frozen=True)
class Position:
    """Where a partition is: the next row of the file at ``file``."""

    file: int = 0
    row: int = 0


class ReplaySource(FixedPartitionedSource[pl.DataFrame | Checked, Position]):
    """Batches of readings from history files, ``partitions`` partitions by machine.

    Each item is a batch of readings, or, when the batch has bad rows, a :class:`Checked` of
    its readings and their dead letters (see :func:`read_history`). Every file is looked at
    before the run starts (:func:`check_history_file`), so a file that is no readings file, or
    has naive timestamps while no ``time_zone`` is given, stops the run before it starts; a file
    that turns out to be unreadable later on becomes one dead letter naming it, and the replay
    goes on.
    """

    def __init__(
        self,
        path: Path,
        partitions: int = 1,
        batch_rows: int = 50_000,
        stop: threading.Event | None = None,
        time_zone: str | None = None,
        tolerance: timedelta = TOLERANCE,
    ) -> None:
        self.files = check_history(Path(path), time_zone)
        self.partitions = partitions
        self.batch_rows = batch_rows
        self.stop = stop  # set it to end the replay early, cleanly (Ctrl-C)
        self.time_zone = time_zone
        self.tolerance = tolerance

    def list_parts(self) -> list[str]:
        return [f"machines-{i}-of-{self.partitions}" for i in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Position | None
    ) -> _ReplayPartition:
        index = int(for_part.split("-")[1])
        if resume_state is not None:
            log.info(
                "%s: resuming at file %d row %d", for_part, resume_state.file, resume_state.row
            )
        return _ReplayPartition(self, index, resume_state or Position())


class _ReplayPartition(StatefulSourcePartition[pl.DataFrame | Checked, Position]):
    def __init__(self, source: ReplaySource, index: int, position: Position) -> None:
        self._source = source
        self._index = index
        self._pos = position
        self._frame: pl.DataFrame | None = None

    def _load(self) -> pl.DataFrame:
        """This partition's rows of the current file (readings and bad rows, in a fixed order)."""
        if self._frame is None:
            path = self._source.files[self._pos.file]
            part = Partition(self._index, self._source.partitions)
            try:
                frame = _read_rows(path, self._source.time_zone, self._source.tolerance, part)
            except HistoryError as e:
                log.warning("%s", e)
                frame = _unreadable(path, str(e))
                frame = frame.filter(part.keeps(frame["machine_id"]))
            self._frame = frame
        return self._frame

    def next_batch(self) -> list[pl.DataFrame | Checked]:
        METRICS.polled()
        files = self._source.files
        if self._source.stop is not None and self._source.stop.is_set():
            raise StopIteration
        while self._pos.file < len(files):
            frame = self._load()
            if self._pos.row < frame.height:
                # bad rows count in the position too: a resume neither repeats nor skips one
                batch = frame.slice(self._pos.row, self._source.batch_rows)
                self._pos = Position(self._pos.file, self._pos.row + batch.height)
                checked = _split(batch, "history")
                # a clean batch goes as the plain frame, as the flow's other sources send theirs
                return [checked if checked.dead is not None else checked.ok]
            self._pos = Position(self._pos.file + 1, 0)
            self._frame = None
        raise StopIteration

    def snapshot(self) -> Position:
        return self._pos


def _unreadable(path: Path, reason: str) -> pl.DataFrame:
    """A file that could not be read, as one dead-letter row (no machine: one partition has it)."""
    return pl.DataFrame(
        {
            "machine_id": [None],
            "sensor": [None],
            "ts": [None],
            "value": [None],
            "_row": [0],
            "_ts_raw": [None],
            "_value_raw": [None],
            "_reason": [reason],
        },
        schema={
            **READING_SCHEMA,
            "_row": pl.Int64,
            "_ts_raw": pl.String,
            "_value_raw": pl.String,
            "_reason": pl.String,
        },
    )
