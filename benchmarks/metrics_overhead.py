"""CPU cost of the Prometheus counting (``floorsight.metrics``) per batch of the bench plant.

    PYTHONPATH=. POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/metrics_overhead.py

One 60 s batch of the bench plant (200 machines x 20 sensors at 10 Hz: 2.4 M readings, the
bench's batch) through the calls the dataflow makes for it: ``count_in`` (readings and the
newest event time), ``table_rows`` on its closed windows (24,000 feature rows) and on 100 dead
letters (the reasons' ``group_by``), ``alerts_opened`` with 20 alerts, and the sink's
``committed`` of ten tables. Each is timed in CPU seconds (``time.process_time``) over many
calls; the total is set beside the batch's share of the end-to-end run (``--readings-per-s``,
the bench's one-worker figure in docs/performance.md). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta

import polars as pl

from floorsight.bench_plant import BenchPlant
from floorsight.metrics import METRICS
from floorsight.pipelines.flow import _count_in


def cpu_s(call, n: int) -> float:
    began = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - began) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings-per-s", type=float, default=1_353_587)
    args = parser.parse_args()
    plant = BenchPlant()
    t0 = plant.start
    batch = plant.readings(t0, t0 + timedelta(seconds=60))
    windows = 24_000
    features = pl.DataFrame(
        {
            "machine_id": [f"M{i % 200:03d}" for i in range(windows)],
            "window_end": [t0 + timedelta(seconds=10 * (i // 4000 + 1)) for i in range(windows)],
        }
    )
    alerts = pl.DataFrame(
        {
            "machine_id": [f"M{i:03d}" for i in range(20)],
            "cause": ["anomaly"] * 20,
            "raised_at": [t0 + timedelta(seconds=60)] * 20,
        }
    )
    dead = pl.DataFrame({"reason": ["value is NaN", "late: event time is behind a window"] * 50})
    costs = {
        "count_in": cpu_s(lambda: _count_in("history", batch), 50),
        "table_rows_features": cpu_s(lambda: METRICS.table_rows("features", features), 2000),
        "table_rows_dead_letters": cpu_s(lambda: METRICS.table_rows("dead_letters", dead), 500),
        "alerts_opened": cpu_s(lambda: METRICS.alerts_opened(alerts, features), 200),
        "committed": cpu_s(
            lambda: METRICS.committed({f"t{i}": [features] for i in range(10)}, 0.03), 2000
        ),
    }
    total = sum(costs.values())
    batch_s = batch.height / args.readings_per_s
    print(
        json.dumps(
            {
                "batch_readings": batch.height,
                "cpu_ms": {k: round(v * 1e3, 4) for k, v in costs.items()},
                "total_cpu_ms": round(total * 1e3, 3),
                "batch_s_end_to_end": round(batch_s, 3),
                "share_of_batch": round(total / batch_s, 5),
            }
        )
    )


if __name__ == "__main__":
    main()
