"""What the windows' bookkeeping costs per source batch of the bench plant.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/window_bookkeeping.py [--batches 3]

Builds batches of the bench plant (200 machines x 20 sensors at 10 Hz, 60 s a batch: 2.4 M
readings), joins them with the plant's work orders as the flow does, and prints the best of
five of: each machine's newest event time by a group-by on the id and by
:func:`floorsight.features.windows._newest` (the last row of each machine's id hash, for
batches in time order); and the time-order check and the two binary searches of
:func:`~floorsight.features.windows._cuts` on the held rows and the next batch one after the
other (which spares the filtered copy of the rows to emit); and the duplicate gate's count of
distinct keys, by the whole key's hashes and by :func:`~floorsight.features.windows._distinct_keys`
(each time's machine-and-sensor hashes, for batches in time order).
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import polars as pl

from floorsight.bench_plant import BenchPlant
from floorsight.features.windows import _KEY_HASH, _cuts, _distinct_keys, _newest
from floorsight.pipelines.context import ErpContext


def best_ms(batches: list[pl.DataFrame], fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        for batch in batches:
            fn(batch)
        times.append(time.perf_counter() - began)
    return min(times) / len(batches) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    plant = BenchPlant()
    step = timedelta(seconds=60)
    end = plant.start + step * (args.batches + 1)
    context = ErpContext(plant.work_orders(end), plant.spec_limits())
    joined = [
        context.join(plant.readings(plant.start + step * k, plant.start + step * (k + 1)))
        for k in range(args.batches + 1)
    ]
    batches = joined[1:]
    print(f"{len(batches)} batches of {batches[0].height:,} readings, best of 5, ms per batch")
    group_by = best_ms(batches, lambda b: b.group_by("machine_id").agg(pl.col("ts").max()))
    print(
        f"newest per machine: group-by {group_by:.1f}, last row of the id hash "
        f"{best_ms(batches, _newest):.1f}"
    )
    # the held rows of a close (the last 12 s of the batch before) and the next batch
    held = [b.filter(pl.col("ts") >= b["ts"].max() - timedelta(seconds=12)) for b in joined[:-1]]
    data = [pl.concat([h, b]) for h, b in zip(held, batches, strict=True)]
    bound = [b["ts"][0] + timedelta(seconds=48) for b in batches]
    by_data = dict(zip(map(id, data), bound, strict=True))
    check = best_ms(data, lambda d: _cuts(d, by_data[id(d)], by_data[id(d)]))
    print(f"time-order check and cuts {check:.2f}")
    whole = best_ms(batches, lambda b: b.select(_KEY_HASH.n_unique()).item())
    print(
        f"distinct keys: the whole key's hashes {whole:.1f}, per time "
        f"{best_ms(batches, _distinct_keys):.1f}"
    )
    assert all(_distinct_keys(b) == b.height for b in batches), "the plant repeats no reading"


if __name__ == "__main__":
    main()
