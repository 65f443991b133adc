"""What dropping exact duplicates costs the window aggregator.

    .venv/bin/python benchmarks/window_dedup_cost.py [--machines 10] [--minutes 20] [--hz 10]

Feeds a simulated plant's readings (joined with its work orders) to
:class:`~floorsight.features.WindowAggregator` in 50,000-reading batches, with the duplicate
check and with it switched off, and prints the best of five runs of each. The same batches
again (every one delivered twice) show what a duplicate-heavy stream costs: a repeated reading
whose window is still open is a dropped duplicate, one whose window has closed is late.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import polars as pl

from floorsight.features import WindowAggregator
from floorsight.pipelines.context import SPEC_SCHEMA, ErpContext
from floorsight.simulators import build_plant

T0 = datetime(2026, 1, 5, 6, tzinfo=UTC)


def best_of(batches: list[pl.DataFrame], dedup: bool, runs: int = 5) -> tuple[float, int, int]:
    times, dropped, late = [], 0, 0
    for _ in range(runs):
        agg = WindowAggregator(timedelta(seconds=10), lateness=timedelta(seconds=5))
        if not dedup:
            agg._without_duplicates = lambda readings: readings  # type: ignore[method-assign]
        late = 0
        began = time.perf_counter()
        for batch in batches:
            _, too_late = agg.push(batch)
            late += 0 if too_late is None else too_late.height
        times.append(time.perf_counter() - began)
        dropped = agg.duplicates
    return min(times), dropped, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--hz", type=int, default=10)
    args = parser.parse_args()
    horizon = timedelta(minutes=args.minutes)
    plant = build_plant(args.machines, start=T0, horizon=horizon, seed=1, sample_hz=args.hz)
    context = ErpContext(plant.work_orders_frame(), pl.DataFrame(schema=SPEC_SCHEMA))
    data = context.join(plant.readings(T0, T0 + horizon))
    batches = [data.slice(i, 50_000) for i in range(0, data.height, 50_000)]
    twice = [b for batch in batches for b in (batch, batch)]
    for label, feed, dedup in (
        ("duplicate check off", batches, False),
        ("duplicate check on", batches, True),
        ("on, every batch twice", twice, True),
    ):
        seconds, dropped, late = best_of(feed, dedup)
        readings = sum(b.height for b in feed)
        print(
            f"{label:>22}: {readings:,} readings in {len(feed)} batches, best {seconds:.3f} s "
            f"({readings / seconds / 1e6:.2f} M readings/s), {dropped:,} duplicates dropped, "
            f"{late:,} late (a closed window's reading again)"
        )


if __name__ == "__main__":
    main()
