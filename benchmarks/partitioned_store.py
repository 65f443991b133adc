"""The per-process store against one file: sink write throughput and reader query times.

**Writes.** The same feature rows (4 machines, 2 of them in each of 2 partitions) are written
through the sink's partition, batch by batch as the dataflow's ``duckdb`` step does, until the
close has committed the last row:

- ``one_writer``: one process writes every row into one file (``--db-layout file``: in a
  cluster, the sink's single partition on one worker receives the other processes' rows);
- ``per_process``: two processes at once, each writing only its own machines' rows into its
  own partition file (``--db-layout per-process``).

**Reads.** The queries the dashboard and notebooks run, each timed from open to close (median
of ``--repeat``), on one file and on a store of two partition files holding the same rows::

    .venv/bin/python benchmarks/partitioned_store.py --rows 1000000 --batch 10000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl
from sink_throughput import feature_batch

from floorsight.features.tables import FEATURES
from floorsight.pipelines.shards import shard_of
from floorsight.pipelines.sink import DuckDBSink, PartitionedDuckDBSink
from floorsight.storage import Database, read_frame

#: machine ids two of which fall in each of two partitions (crc32 % 2)
MACHINES = {"M0": "M01", "M1": "M04", "M2": "M02", "M3": "M05"}

QUERIES = {
    "open_close": "SELECT 1",
    "count_features": "SELECT count(*) FROM features",
    "machine_means": "SELECT machine_id, sensor, avg(mean) FROM features GROUP BY ALL",
    "one_machine_last_hour": (
        "SELECT * FROM features WHERE machine_id = 'M04' AND sensor = 's1'"
        " AND window_start >= (SELECT max(window_start) FROM features) - INTERVAL 1 HOUR"
        " ORDER BY window_start"
    ),
}


def batches(rows: int, batch: int) -> list[pl.DataFrame]:
    return [
        feature_batch(s, batch).with_columns(pl.col("machine_id").replace_strict(MACHINES))
        for s in range(0, rows, batch)
    ]


def write(sink: DuckDBSink, frames: list[pl.DataFrame], start=None) -> tuple[float, float]:
    """Write ``frames`` through ``sink``'s partition; (wall, CPU) seconds to the last commit
    (from when ``start``, a barrier, lets every writer go)."""
    part = sink.build_part("duckdb", "bench", None)
    if start is not None:
        start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    for frame in frames:
        part.write_batch([("features", frame)])
    part.close()
    return time.perf_counter() - began, time.process_time() - cpu


def write_partition(store: str, process: int, rows: int, batch: int, start) -> tuple[float, float]:
    """Process ``process``'s share: the rows of its own machines, into its own file."""
    own = [m for m in MACHINES.values() if shard_of(m, 2) == process]
    mine = [f.filter(pl.col("machine_id").is_in(own)) for f in batches(rows, batch)]
    sink = PartitionedDuckDBSink(
        Path(store), [FEATURES], process, 2, workers_per_process=1, recovery=False
    )
    return write(sink, mine, start)


def read_times(path: Path, repeat: int) -> dict[str, float]:
    out = {}
    for name, sql in QUERIES.items():
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            read_frame(path, sql)
            times.append(time.perf_counter() - began)
        out[name] = round(statistics.median(times) * 1000, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one, store = Path(tmp) / "one.duckdb", Path(tmp) / "store"
        store.mkdir()
        frames = batches(args.rows, args.batch)
        wall, cpu = write(DuckDBSink(one, [FEATURES], recovery=False), frames)
        # the two writers start together, in processes of their own (as on two hosts)
        # spawned, not forked: a fork of a process whose polars threads run can hang
        spawn = multiprocessing.get_context("spawn")
        with spawn.Manager() as manager, ProcessPoolExecutor(2, mp_context=spawn) as pool:
            start = manager.Barrier(2)  # both write at once, each after making its batches
            shares = list(
                pool.map(
                    write_partition,
                    *([str(store)] * 2, [0, 1], [args.rows] * 2, [args.batch] * 2, [start] * 2),
                )
            )
        both = max(w for w, _ in shares)
        per_part = [
            Database(f).query("SELECT count(*) AS n FROM features")["n"][0]
            for f in sorted(store.iterdir())
        ]
        result = {
            "rows": args.rows,
            "batch_rows": args.batch,
            "load_average_1m": round(os.getloadavg()[0], 1),
            "one_writer": {
                "seconds": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "rows_per_s": round(args.rows / wall),
            },
            "per_process": {
                "seconds": round(both, 2),
                "rows_per_partition": per_part,
                "partition_seconds": [round(w, 2) for w, _ in shares],
                "partition_cpu_s": [round(c, 2) for _, c in shares],
                "rows_per_s": round(sum(per_part) / both),
            },
            "read_ms_one_file": read_times(one, args.repeat),
            "read_ms_two_partitions": read_times(store, args.repeat),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
