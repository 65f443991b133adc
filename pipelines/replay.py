"""File replay: readings from Parquet/CSV files in event-time order, partitioned by machine.

A history folder holds one file per day (``floorsight simulate --out``); files are read in name
order and each file sorted by time. The source has ``partitions`` partitions; a machine belongs
to partition ``crc32(machine_id) % partitions``, so each machine's readings stay in order in one
partition and any number of workers share the partitions. Each partition's resume state is its
position (file, row): after a crash Bytewax restarts it from the last snapshot, and what was
replayed since is rewritten idempotently by the sink.
"""

from __future__ import annotations

import logging
import math
import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

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
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise HistoryError(
            f"time zone {time_zone!r} is not an IANA name such as Europe/Berlin or UTC"
        ) from e


def _read_rows(path: Path, time_zone: str | None, tolerance: timedelta) -> pl.DataFrame:
    """Every row of the file, parsed, with ``_reason`` (None for a valid reading)."""
    rows = _parse(_raw_frame(path), path.name, time_zone)
    rows = _outside_range(rows, path.name, tolerance)
    # valid readings in time order (stable), then the dead letters in file order
    return rows.sort(
        pl.when(pl.col("_reason").is_null()).then(pl.col("ts")),
        maintain_order=True,
        nulls_last=True,
    )


def _raw_frame(path: Path, n_rows: int | None = None) -> pl.DataFrame:
    """The required columns of a file as read, untyped for CSV; ``HistoryError`` if unreadable."""
    try:
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
    except HistoryError:
        raise
    except (OSError, pl.exceptions.PolarsError, ValueError) as e:
        raise HistoryError(f"{path}: not a readable readings file: {_short(e)}") from e
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


def _parse(frame: pl.DataFrame, label: str, time_zone: str | None) -> pl.DataFrame:
    """The four reading columns typed, the raw cells kept, ``_reason`` per row (None: valid)."""
    check_time_zone(time_zone)
    n = frame.height
    machine = _as_text(frame, "machine_id", label)
    sensor = _as_text(frame, "sensor", label)
    ts, ts_text, ts_reason = _parse_times(frame["ts"], label, time_zone)
    value, value_text, value_reason = _parse_values(frame["value"])
    row = pl.int_range(1, n + 1, eager=True, dtype=pl.Int64) if n else pl.Series([], dtype=pl.Int64)
    out = pl.DataFrame(
        {
            "machine_id": machine,
            "sensor": sensor,
            "ts": ts,
            "value": value,
            "_row": row,
            "_ts_text": ts_text,
            "_value_text": value_text,
            "_ts_reason": ts_reason,
            "_value_reason": value_reason,
        }
    )
    return out.with_columns(
        _reason=pl.when(pl.col("_ts_reason").is_not_null())
        .then(pl.format("{} row {}: {}", pl.lit(label), "_row", "_ts_reason"))
        .when(pl.col("_value_reason").is_not_null())
        .then(pl.format("{} row {}: {}", pl.lit(label), "_row", "_value_reason"))
    ).drop("_ts_reason", "_value_reason")


def _quoted(text: pl.Expr, limit: int = 60) -> pl.Expr:
    """``'text'`` for a reason, cut to ``limit`` characters."""
    cut = pl.when(text.str.len_chars() > limit).then(
        pl.concat_str(text.str.slice(0, limit), pl.lit("..."))
    )
    return pl.concat_str(pl.lit("'"), cut.otherwise(text), pl.lit("'"))


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
    ts, _, reason = _parse_times(frame[column], label, time_zone, name=column)
    bad = reason.is_not_null()
    if bad.any():
        row = int(bad.arg_max()) + 1
        raise HistoryError(f"{label} row {row}: {reason[row - 1]}")
    return frame.with_columns(ts.alias(column))


def _parse_times(
    column: pl.Series, label: str, time_zone: str | None, name: str = "ts"
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(UTC times, the cells as text, a reason per bad cell)."""
    n = column.len()
    if isinstance(column.dtype, pl.Datetime):
        text = column.cast(_TEXT)
        if column.dtype.time_zone is not None:
            aware = column.dt.convert_time_zone("UTC").cast(TIMESTAMP)
            naive = pl.Series([None] * n, dtype=pl.Datetime("us"))
        else:
            aware = pl.Series([None] * n, dtype=TIMESTAMP)
            naive = column.cast(pl.Datetime("us"))
    else:
        text = _as_text(pl.DataFrame({"ts": column}), "ts", label).str.strip_chars()
        aware, naive = _iso_times(text)
    frame = pl.DataFrame({"text": text, "aware": aware, "naive": naive})
    naive_rows = frame["naive"].is_not_null().sum()
    aware_rows = frame["aware"].is_not_null().sum()
    if time_zone is None and naive_rows > aware_rows:
        first = frame.with_row_index("row", 1).filter(pl.col("naive").is_not_null()).row(0)
        raise HistoryError(
            f"{label}: {name} times have no time zone (row {first[0]}: {first[1]!r}); give "
            "--time-zone with the zone they are in (an IANA name such as Europe/Berlin, or UTC)"
        )
    if time_zone is not None:
        local = (
            pl.col("naive")
            .dt.replace_time_zone(time_zone, ambiguous="null", non_existent="null")
            .dt.convert_time_zone("UTC")
        )
    else:
        local = pl.lit(None, dtype=TIMESTAMP)
    quoted = _quoted(pl.col("text"))
    out = frame.select(
        ts=pl.coalesce(pl.col("aware"), local.cast(TIMESTAMP)),
        text=pl.col("text"),
        reason=pl.when(pl.col("text").is_null() | (pl.col("text") == ""))
        .then(pl.lit(f"{name} missing"))
        .when(pl.col("aware").is_null() & pl.col("naive").is_null())
        .then(pl.concat_str(pl.lit(f"{name} "), quoted, pl.lit(" is not an ISO 8601 time")))
        .when(pl.col("aware").is_null() & pl.lit(time_zone is None))
        .then(
            pl.concat_str(pl.lit(f"{name} "), quoted, pl.lit(" has no time zone (see --time-zone)"))
        )
        .when(pl.col("aware").is_null() & local.is_null())
        .then(
            pl.concat_str(
                pl.lit(f"{name} "),
                quoted,
                pl.lit(f" is skipped or repeated in {time_zone} (a daylight-saving change)"),
            )
        ),
    )
    out = out.with_columns(
        reason=pl.when(
            pl.col("reason").is_null() & ((pl.col("ts") < _FIRST) | (pl.col("ts") > _LAST))
        )
        .then(pl.concat_str(pl.lit(f"{name} "), quoted, pl.lit(" is out of range")))
        .otherwise(pl.col("reason"))
    )
    # a time no Python datetime can hold is dropped from the column (the text keeps it)
    ts = out.select(pl.when(pl.col("reason").is_null()).then(pl.col("ts")).alias("ts"))
    return ts.to_series(), out["text"], out["reason"]


def _iso_times(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(times with an offset, in UTC; naive times) of ISO 8601 texts; both null if neither.

    The common forms are parsed vectorised; the rest (``Z`` without seconds, ``+01``, basic
    format ...) by Python's ``datetime.fromisoformat``, once per distinct text. A text without a
    time part (a bare date) is no time.
    """
    aware = text.str.to_datetime("%+", strict=False, time_zone="UTC", time_unit="us")
    naive = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
    naive = naive.fill_null(
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
    )
    rest = text.filter(aware.is_null() & naive.is_null() & text.is_not_null()).unique()
    if rest.len() == 0:
        return aware, naive
    parsed_aware, parsed_naive = {}, {}
    for cell in rest.to_list():
        when = _fromisoformat(cell)
        if when is None:
            continue
        if when.tzinfo is None:
            parsed_naive[cell] = when
        else:
            try:
                parsed_aware[cell] = when.astimezone(UTC)
            except (OverflowError, ValueError):
                continue
    aware = aware.fill_null(
        text.replace_strict(
            list(parsed_aware), list(parsed_aware.values()), default=None, return_dtype=TIMESTAMP
        )
    )
    naive = naive.fill_null(
        text.replace_strict(
            list(parsed_naive),
            list(parsed_naive.values()),
            default=None,
            return_dtype=pl.Datetime("us"),
        )
    )
    return aware, naive


def _fromisoformat(cell: str) -> datetime | None:
    if not any(sep in cell for sep in "Tt "):
        return None  # a bare date, or no time at all
    try:
        return datetime.fromisoformat(cell)
    except (ValueError, OverflowError):
        return None


def _parse_values(column: pl.Series) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(values as floats, the cells as text, a reason per bad cell)."""
    if column.dtype.is_numeric():
        value = column.cast(pl.Float64, strict=False)
        text = column.cast(_TEXT)
    else:
        text = column.cast(_TEXT, strict=False) if column.dtype != _TEXT else column
        value = text.str.strip_chars().cast(pl.Float64, strict=False)
    frame = pl.DataFrame({"value": value, "text": text})
    reason = frame.select(
        pl.when(pl.col("text").is_null() | (pl.col("text").str.strip_chars() == ""))
        .then(pl.lit("value missing"))
        .when(pl.col("value").is_null())
        .then(pl.concat_str(pl.lit("value "), _quoted(pl.col("text")), pl.lit(" is not a number")))
    ).to_series()
    return value, text, reason


def _outside_range(rows: pl.DataFrame, label: str, tolerance: timedelta) -> pl.DataFrame:
    """Dead-letter the readings outside the file's own time range (see :func:`read_history`)."""
    times = (
        rows.filter(pl.col("_reason").is_null())["ts"].drop_nulls().unique().sort().to_physical()
    )
    n = times.len()
    if n < 3:
        return rows
    tol = int(tolerance / timedelta(microseconds=1))
    stamps = times.to_list()
    # the bulk: without the 0.1 % earliest and latest times, and at least 5 of each when the
    # file has 21 or more (so a few poisoned readings of a small file are outside it too)
    k = max(math.ceil(0.001 * n), min(_BULK_TRIM, (n - 1) // 4))
    lo_i, hi_i = k, n - 1 - k
    gaps = times.diff().to_list()  # gaps[i] = stamps[i] - stamps[i - 1]
    hi = hi_i
    while hi + 1 < n and gaps[hi + 1] <= tol:
        hi += 1
    lo = lo_i
    while lo > 0 and gaps[lo] <= tol:
        lo -= 1
    if lo == 0 and hi == n - 1:
        return rows
    first = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=stamps[lo])
    last = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=stamps[hi])
    outside = pl.col("_reason").is_null() & ((pl.col("ts") < first) | (pl.col("ts") > last))
    text = pl.format(
        "{} row {}: ts {} is outside the file's time range {} .. {} by more than {}",
        pl.lit(label),
        "_row",
        _quoted(pl.col("_ts_text")),
        pl.lit(first.isoformat()),
        pl.lit(last.isoformat()),
        pl.lit(str(tolerance)),
    )
    return rows.with_columns(_reason=pl.when(outside).then(text).otherwise(pl.col("_reason")))


def _split(rows: pl.DataFrame, source: str) -> Checked:
    """Rows with ``_reason`` as a Checked: the readings, and the dead letters (raw cells kept)."""
    bad = pl.col("_reason").is_not_null()
    ok = rows.filter(~bad).select(list(READING_SCHEMA))
    if ok["ts"].is_sorted():
        ok = ok.with_columns(pl.col("ts").set_sorted())
    dead_rows = rows.filter(bad)
    if dead_rows.height == 0:
        return Checked(ok, None)
    raw = dead_rows.select(
        "machine_id",
        "sensor",
        "ts",
        "value",
        "_reason",
        row="_row",
        ts_text="_ts_text",
        value_text="_value_text",
    )
    return Checked(ok, dead_letters(raw, source, reason_col="_reason"))


def partition_of(machine_id: str, partitions: int) -> int:
    return zlib.crc32(machine_id.encode()) % partitions


@dataclass(frozen=True)
class Position:
    """Where a partition is: the next row of the file at ``file``."""

    file: int = 0
    row: int = 0


class ReplaySource(FixedPartitionedSource[Checked, Position]):
    """Batches of readings from history files, ``partitions`` partitions by machine.

    Each item is a :class:`Checked`: the batch's readings and the dead letters of its bad rows
    (see :func:`read_history`). Every file is looked at before the run starts
    (:func:`check_history_file`), so a file that is no readings file, or has naive timestamps
    while no ``time_zone`` is given, stops the run before it starts; a file that turns out to be
    unreadable later on becomes one dead letter naming it, and the replay goes on.
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


class _ReplayPartition(StatefulSourcePartition[Checked, Position]):
    def __init__(self, source: ReplaySource, index: int, position: Position) -> None:
        self._source = source
        self._index = index
        self._pos = position
        self._frame: pl.DataFrame | None = None

    def _load(self) -> pl.DataFrame:
        """This partition's rows of the current file (readings and bad rows, in a fixed order)."""
        if self._frame is None:
            path = self._source.files[self._pos.file]
            try:
                frame = _read_rows(path, self._source.time_zone, self._source.tolerance)
            except HistoryError as e:
                log.warning("%s", e)
                frame = _unreadable(path, str(e))
            if self._source.partitions > 1:
                parts = self._source.partitions
                ids = frame["machine_id"].drop_nulls().unique().to_list()
                mine = [m for m in ids if partition_of(m, parts) == self._index]
                keep = pl.col("machine_id").is_in(mine)
                if self._index == partition_of("", parts):  # rows without a machine: once
                    keep = keep | pl.col("machine_id").is_null()
                frame = frame.filter(keep)
            self._frame = frame
        return self._frame

    def next_batch(self) -> list[Checked]:
        files = self._source.files
        if self._source.stop is not None and self._source.stop.is_set():
            raise StopIteration
        while self._pos.file < len(files):
            frame = self._load()
            if self._pos.row < frame.height:
                # bad rows count in the position too: a resume neither repeats nor skips one
                batch = frame.slice(self._pos.row, self._source.batch_rows)
                self._pos = Position(self._pos.file, self._pos.row + batch.height)
                return [_split(batch, "history")]
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
            "_ts_text": [None],
            "_value_text": [None],
            "_reason": [reason],
        },
        schema={
            **READING_SCHEMA,
            "_row": pl.Int64,
            "_ts_text": pl.String,
            "_value_text": pl.String,
            "_reason": pl.String,
        },
    )
