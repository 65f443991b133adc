"""Window statistics per reading as the frame grows: grouped at once, and a few windows at a time.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/window_scaling.py

Readings of the bench plant (200 machines x 20 sensors at 10 Hz) joined with their work orders,
then ``window_features`` (10 s windows) on 0.5, 1, 2 and 4 M of them, best of three, CPU time:
once with every reading grouped at once (``CHUNK_ROWS`` larger than the frame) and once as the
pipeline does it (whole windows, about ``CHUNK_ROWS`` readings at a time). Prints JSON.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

from floorsight.bench_plant import BenchPlant
from floorsight.features import windows
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext


def best_cpu_ms(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.process_time()
        fn()
        best = min(best, time.process_time() - began)
    return round(best * 1000, 1)


def main() -> None:
    plant = BenchPlant()
    context = ErpContext(
        plant.work_orders(plant.start + timedelta(minutes=5)),
        plant.spec_limits().cast(SPEC_SCHEMA),
    )
    chunk = windows.CHUNK_ROWS
    out = {"chunk_rows": chunk}
    for seconds in (12.5, 25, 50, 100):
        end = plant.start + timedelta(seconds=seconds)
        readings = context.join(plant.readings(plant.start, end))
        run = lambda r=readings: windows.window_features(r, timedelta(seconds=10))  # noqa: E731
        windows.CHUNK_ROWS = 10**12
        at_once = best_cpu_ms(run)
        windows.CHUNK_ROWS = chunk
        chunked = best_cpu_ms(run)
        out[f"{readings.height:,} readings"] = {"at once ms": at_once, "in chunks ms": chunked}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
