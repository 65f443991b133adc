"""How fast the simulator writes history: simulated plant-time per wall second.

    .venv/bin/python benchmarks/history_speed.py --machines 20 --days 7 --hz 1

Builds the plant with the seeded fault mix of ``floorsight simulate``, writes every file that
``floorsight simulate --out`` writes (readings per day, states, parts, truth, ERP as CSV,
Parquet and DuckDB) into a temporary folder, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.history import write_history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=20)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--hz", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    horizon = timedelta(days=args.days)
    began = time.perf_counter()
    plant = make_plant(PlantOptions(args.machines, start, horizon, args.seed, sample_hz=args.hz))
    with tempfile.TemporaryDirectory() as tmp:
        stats = write_history(plant, Path(tmp), start, start + horizon)
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    wall = time.perf_counter() - began
    print(
        json.dumps(
            {
                **stats.as_dict(),
                "hz": args.hz,
                "wall_s": round(wall, 2),
                "readings_per_s": round(stats.readings / wall),
                "megabytes": round(size / 1e6, 1),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
