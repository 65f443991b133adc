"""Rows per second the DuckDB sink writes into a fresh file (the ``features`` table).

Feeds the sink partition directly, batch by batch, as the dataflow's ``duckdb`` step does, and
times until its close has committed the last row (wall and CPU time)::

    .venv/bin/python benchmarks/sink_throughput.py --rows 1000000 --batch 10000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.features.tables import FEATURES
from floorsight.pipelines.sink import DuckDBSink
from floorsight.storage import Database


def feature_batch(start: int, rows: int) -> pl.DataFrame:
    """``rows`` distinct feature rows (4 machines x 8 sensors x consecutive windows)."""
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    i = pl.col("i")
    return (
        pl.DataFrame({"i": pl.int_range(start, start + rows, eager=True)})
        .select(
            machine_id=pl.format("M{}", i % 4),
            sensor=pl.format("s{}", (i // 4) % 8),
            window_start=pl.lit(t0) + pl.duration(seconds=(i // 32) * 10),
            value=i.cast(pl.Float64),
        )
        .select(
            "machine_id",
            "sensor",
            "window_start",
            window_end=pl.col("window_start") + timedelta(seconds=10),
            work_order=pl.lit("WO-1"),
            product=pl.lit("P1"),
            material_lot=pl.lit("L1"),
            batch=pl.lit(""),
            n=pl.lit(100, dtype=pl.Int32),
            mean="value",
            std="value",
            min="value",
            max="value",
            last="value",
            slope="value",
            rms="value",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    batches = [feature_batch(s, args.batch) for s in range(0, args.rows, args.batch)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sink.duckdb"
        sink = DuckDBSink(path, [FEATURES], recovery=False)
        part = sink.build_part("duckdb", str(path), None)
        began, cpu = time.perf_counter(), time.process_time()
        for frame in batches:
            part.write_batch([("features", frame)])
        part.close()
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        written = Database(path).query("SELECT count(*) AS n FROM features")["n"][0]
    print(
        json.dumps(
            {
                "rows": written,
                "batch_rows": args.batch,
                "seconds": round(elapsed, 2),
                "rows_per_s": round(written / elapsed),
                # CPU seconds of this process (all its threads): less swayed by other load
                "cpu_s": round(cpu, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
