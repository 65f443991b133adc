"""CPU time one replay partition spends reading its rows of the bench history, per partition.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/partition_read.py --partitions 2

Writes the bench plant's history (``floorsight/bench_plant.py``: 200 machines x 20 sensors at
10 Hz, 60 s per Parquet file; ``--seconds`` of plant time), then drains every partition of a
``ReplaySource`` of ``--partitions`` partitions, one after the other in this process, as the
worker that owns it would (``next_batch`` until the end), and prints one JSON line per
partition: its readings and the CPU seconds (user + system, best of ``--repeat``) it took. Run
it on another tree (``PYTHONPATH=TREE``) to compare.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from floorsight.bench_plant import BenchPlant
from floorsight.pipelines.replay import ReplaySource


def drain(source: ReplaySource, part: str) -> int:
    """Every batch of one partition; returns its rows (readings and dead letters)."""
    partition, rows = source.build_part("readings", part, None), 0
    try:
        while True:
            for item in partition.next_batch():
                rows += getattr(item, "ok", item).height
    except StopIteration:
        return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--batch-rows", type=int, default=2_400_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    plant = BenchPlant()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "readings"
        plant.write_readings(
            folder, plant.start + timedelta(seconds=args.seconds), timedelta(seconds=60)
        )
        source = ReplaySource(folder, args.partitions, args.batch_rows)
        for part in source.list_parts():
            best, rows = float("inf"), 0
            for _ in range(args.repeat):
                began = time.process_time()
                rows = drain(source, part)
                best = min(best, time.process_time() - began)
            print(json.dumps({"partition": part, "readings": rows, "cpu_s": round(best, 3)}))


if __name__ == "__main__":
    main()
