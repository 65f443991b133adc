"""A replay partition reads only its own rows of a Parquet file, and gives what one partition
reading the whole file gives for its machines: the same readings in the same order, the same
dead letters (bad cells, times outside the file's range, rows without a machine), and a resume
position (file, row) that neither repeats nor skips a row.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from floorsight.pipelines.replay import Partition, ReplaySource, partition_of, read_history
from floorsight.records import READING_SCHEMA
from floorsight.simulators import build_plant
from tests.conftest import T0

KINDS = ["csv", "parquet", "typed parquet"]


def _history(folder: Path, kind: str) -> int:
    """Two files of a 6-machine plant with missing values and rows without a machine, as
    ``kind``: ``csv`` or ``parquet`` with text times (and bad and poisoned times among them),
    or ``typed parquet`` (times with their zone, as ``floorsight simulate`` writes them);
    returns their rows."""
    folder.mkdir()
    plant = build_plant(6, start=T0, horizon=timedelta(minutes=4), seed=3)
    rows = 0
    for k in range(2):
        t0 = T0 + timedelta(minutes=2 * k)
        frame = plant.readings(t0, t0 + timedelta(minutes=2)).with_row_index("i")
        frame = frame.with_columns(
            value=pl.when(pl.col("i") % 89 == 3).then(None).otherwise(pl.col("value")),
            machine_id=pl.when(pl.col("i") % 101 == 7).then(None).otherwise("machine_id"),
        )
        if kind != "typed parquet":
            text = pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z")
            frame = frame.with_columns(
                ts=pl.when(pl.col("i") == 50)
                .then(pl.lit("2100-01-01T00:00:00Z"))  # outside the file's time range
                .when(pl.col("i") % 97 == 5)
                .then(pl.lit("noon"))
                .otherwise(text)
            )
        frame = frame.drop("i")
        if kind == "csv":
            frame.write_csv(folder / f"{k}.csv")
        else:
            frame.write_parquet(folder / f"{k}.parquet")
        rows += frame.height
    return rows


def _drain(partition) -> tuple[list, list]:
    """Every item of a partition as (readings, dead letters without their arrival time), and
    the resume position after each."""
    items, positions = [], []
    try:
        while True:
            for item in partition.next_batch():
                ok, dead = (item, None) if isinstance(item, pl.DataFrame) else (item.ok, item.dead)
                items.append((ok, None if dead is None else dead.drop("received_at")))
            positions.append(partition.snapshot())
    except StopIteration:
        return items, positions


def _frames(items: list) -> tuple[pl.DataFrame, pl.DataFrame]:
    oks = pl.concat([ok for ok, _ in items]) if items else pl.DataFrame(schema=READING_SCHEMA)
    deads = [dead for _, dead in items if dead is not None]
    return oks, pl.concat(deads) if deads else pl.DataFrame()


def _mine(frame: pl.DataFrame, part: Partition) -> pl.DataFrame:
    return frame.filter(part.keeps(frame["machine_id"]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("partitions", [2, 3])
def test_each_partition_gives_the_whole_file_reads_rows_of_its_machines(tmp_path, kind, partitions):
    folder = tmp_path / "h"
    _history(folder, kind)
    whole = [read_history(path) for path in sorted(folder.iterdir())]
    source = ReplaySource(folder, partitions=partitions, batch_rows=500)
    total_ok = total_dead = 0
    for i, name in enumerate(source.list_parts()):
        ok, dead = _frames(_drain(source.build_part("s", name, None))[0])
        part = Partition(i, partitions)
        expected_ok = pl.concat([_mine(c.ok, part) for c in whole])
        assert ok.height, f"{name}: no machine of the plant in this partition"
        assert ok.equals(expected_ok), name
        expected_dead = [_mine(c.dead, part).drop("received_at") for c in whole]
        expected_dead = [d for d in expected_dead if d.height]
        if dead.height or expected_dead:
            assert dead.equals(pl.concat(expected_dead)), name
        assert {partition_of(m or "", partitions) for m in ok["machine_id"]} <= {i}
        total_ok, total_dead = total_ok + ok.height, total_dead + dead.height
    assert total_ok == sum(c.ok.height for c in whole)
    dead_all = sum(c.dead.height for c in whole)
    assert total_dead == dead_all
    reasons = pl.concat([c.dead for c in whole])["reason"]
    assert reasons.str.contains("value missing").sum() > 0
    if kind != "typed parquet":
        # the poisoned time is judged on the whole file's range in whichever partition has it
        assert reasons.str.contains("outside the file's time range").sum() == 2
        assert reasons.str.contains("'noon' is not an ISO 8601 time").sum() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_partition_of_a_parquet_file_reads_its_rows_only_and_of_a_csv_the_file(
    tmp_path, kind, caplog
):
    folder = tmp_path / "h"
    rows = _history(folder, kind)
    source = ReplaySource(folder, partitions=3, batch_rows=500)
    caplog.set_level(logging.DEBUG, logger="floorsight.pipelines.replay")
    for name in source.list_parts():
        _drain(source.build_part("s", name, None))
    read = [
        int(r.getMessage().rsplit(" read ", 1)[1].split()[0])
        for r in caplog.records
        if " read " in r.getMessage()
    ]
    assert len(read) == 3 * 2  # every partition, every file
    # Parquet: the partitions together read every row once; CSV: each reads the whole file
    assert sum(read) == (3 * rows if kind == "csv" else rows)


@pytest.mark.parametrize("kind", KINDS)
def test_a_partition_resumed_at_any_position_neither_repeats_nor_skips_a_row(tmp_path, kind):
    folder = tmp_path / "h"
    _history(folder, kind)
    source = ReplaySource(folder, partitions=2, batch_rows=700)
    for name in source.list_parts():
        items, positions = _drain(source.build_part("s", name, None))
        whole_ok, whole_dead = _frames(items)
        assert len(positions) > 3
        for k, position in enumerate(positions[:-1]):
            rest, _ = _drain(source.build_part("s", name, position))
            ok, dead = _frames(items[: k + 1] + rest)
            assert ok.equals(whole_ok), (name, k)
            assert dead.equals(whole_dead), (name, k)
