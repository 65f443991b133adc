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
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from floorsight.records import READING_SCHEMA

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


def read_readings(path: Path) -> pl.DataFrame:
    """One readings file, with the reading schema, sorted by time (stable)."""
    frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    missing = [c for c in READING_SCHEMA if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: lacks columns {missing} (has {frame.columns})")
    frame = frame.select(list(READING_SCHEMA))
    if frame["ts"].dtype == pl.String:
        frame = frame.with_columns(pl.col("ts").str.to_datetime(time_zone="UTC"))
    # values that do not parse stay as nulls and are dead-lettered by validation
    frame = frame.with_columns(
        pl.col("ts").cast(READING_SCHEMA["ts"], strict=False),
        pl.col("value").cast(pl.Float64, strict=False),
        pl.col("machine_id").cast(pl.String),
        pl.col("sensor").cast(pl.String),
    )
    if frame["ts"].null_count() == 0 and frame["ts"].is_sorted():
        return frame.with_columns(pl.col("ts").set_sorted())  # written in order: no sort
    return frame.sort("ts", maintain_order=True, nulls_last=True)


def partition_of(machine_id: str, partitions: int) -> int:
    return zlib.crc32(machine_id.encode()) % partitions


@dataclass(frozen=True)
class Position:
    """Where a partition is: the next row of the file at ``file``."""

    file: int = 0
    row: int = 0


class ReplaySource(FixedPartitionedSource[pl.DataFrame, Position]):
    """Batches of readings from history files, ``partitions`` partitions by machine."""

    def __init__(
        self,
        path: Path,
        partitions: int = 1,
        batch_rows: int = 50_000,
        stop: threading.Event | None = None,
    ) -> None:
        self.files = history_files(Path(path))
        self.partitions = partitions
        self.batch_rows = batch_rows
        self.stop = stop  # set it to end the replay early, cleanly (Ctrl-C)

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


class _ReplayPartition(StatefulSourcePartition[pl.DataFrame, Position]):
    def __init__(self, source: ReplaySource, index: int, position: Position) -> None:
        self._source = source
        self._index = index
        self._pos = position
        self._frame: pl.DataFrame | None = None

    def _load(self) -> pl.DataFrame:
        if self._frame is None:
            frame = read_readings(self._source.files[self._pos.file])
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

    def next_batch(self) -> list[pl.DataFrame]:
        files = self._source.files
        if self._source.stop is not None and self._source.stop.is_set():
            raise StopIteration
        while self._pos.file < len(files):
            frame = self._load()
            if self._pos.row < frame.height:
                batch = frame.slice(self._pos.row, self._source.batch_rows)
                self._pos = Position(self._pos.file, self._pos.row + batch.height)
                return [batch]
            self._pos = Position(self._pos.file + 1, 0)
            self._frame = None
        raise StopIteration

    def snapshot(self) -> Position:
        return self._pos
