"""Where an alert's time goes at a window boundary: the bench's latency run, steps timed.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/latency_steps.py

Runs ``floorsight bench``'s latency phase (default size: 200 machines x 20 sensors at 10 Hz, a
paced source at the plant's own rate) with wrappers around the context join, the window
statistics, the score step and the DuckDB flushes, and prints the p50 / p99 latency and, over
the last 30 s of the run, each step's calls, median and longest time. At a window boundary all
machines close a window in the same tick, so the longest calls are the boundary's.
"""

from __future__ import annotations

import collections
import json
import tempfile
import time
from pathlib import Path

from floorsight.bench import BenchSettings, phase_latency
from floorsight.features import windows
from floorsight.pipelines import context, flow, sink

calls: list[tuple[str, float, float]] = []


def timed(owner, name: str, label: str) -> None:
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        began = time.monotonic()
        try:
            return inner(*args, **kwargs)
        finally:
            calls.append((label, began, time.monotonic() - began))

    setattr(owner, name, wrapper)


def main() -> None:
    timed(context.ContextHold, "push", "context join")
    timed(windows.WindowAggregator, "push", "window statistics")
    timed(flow, "score_batch", "score step")
    timed(sink._DuckDBPartition, "_flush", "DuckDB flush")
    timed(sink._DuckDBPartition, "_flush_urgent", "DuckDB alert transaction")
    with tempfile.TemporaryDirectory() as tmp:
        result = phase_latency(BenchSettings(), Path(tmp))
    end = max(t for _, t, _ in calls)
    steps: dict[str, list[float]] = collections.defaultdict(list)
    for label, began, seconds in calls:
        if began > end - 30:
            steps[label].append(seconds)
    report = {"latency": result, "last 30 s": {}}
    for label, seconds in steps.items():
        seconds.sort()
        report["last 30 s"][label] = {
            "calls": len(seconds),
            "p50_ms": round(1000 * seconds[len(seconds) // 2], 1),
            "max_ms": round(1000 * seconds[-1], 1),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
