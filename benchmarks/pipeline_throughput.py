"""Pipeline throughput: readings per second through ``floorsight run`` for 1 and 2 workers.

    .venv/bin/python benchmarks/pipeline_throughput.py --machines 6 --hours 6

Writes a simulated history (10 Hz), then runs the whole pipeline (validation, context join,
windows, models, alerts, DuckDB sink) over it as a subprocess per configuration and times it
end to end, start-up included. Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from floorsight.simulate import PlantOptions, make_plant
from floorsight.simulators.history import write_history

CONFIGS = {"1 worker": [], "2 workers (threads)": ["-w", "2"], "2 processes": ["--processes", "2"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=6)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--batch-rows", type=int, default=50_000)
    args = ap.parse_args()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    horizon = timedelta(hours=args.hours)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        plant = make_plant(PlantOptions(args.machines, start, horizon, seed=1, sample_hz=10))
        stats = write_history(plant, out / "h", start, start + horizon)
        for name, extra in CONFIGS.items():
            db = out / f"{len(os.listdir(out))}.duckdb"
            began = time.perf_counter()
            subprocess.run(
                [
                    *(sys.executable, "-m", "floorsight.cli", "run"),
                    *(
                        "--history",
                        str(out / "h" / "readings"),
                        "--context",
                        str(out / "h" / "erp"),
                    ),
                    *("--db", str(db), "--batch-rows", str(args.batch_rows), *extra),
                ],
                check=True,
                capture_output=True,
            )
            wall = time.perf_counter() - began
            print(
                json.dumps(
                    {
                        "config": name,
                        "machines": args.machines,
                        "hours": args.hours,
                        "readings": stats.readings,
                        "wall_s": round(wall, 2),
                        "readings_per_s": round(stats.readings / wall),
                        "cpus": os.cpu_count(),
                    }
                )
            )


if __name__ == "__main__":
    main()
