"""Two processes against one, as ``floorsight bench`` measures them, repeated in one sitting.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/cluster_scaling.py --seconds 600 --repeat 3 \
        [--epoch-s 2 30]

Writes the bench plant's history once (``floorsight/bench_plant.py``, 200 machines x 20 sensors
at 10 Hz), then runs, ``--repeat`` times in turn, the bench's own end-to-end phases
(``floorsight.bench``): one worker process, the cluster of ``--processes`` processes on a
per-process store (``--db-layout per-process``) and, with ``--one-file``, the cluster on one
DuckDB file, at each Bytewax epoch of ``--epoch-s`` (``run --snapshot-s``). Each run is timed
from the dataflow's start to its end in every process, in wall and CPU seconds (user + system,
interpreter start-up excluded). Prints one JSON line per run and a summary per epoch: min and
median of each, and the scaling (wall: one process's time over the cluster's; CPU:
``processes`` x one process's CPU seconds over the cluster's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from floorsight.bench import SIZES, _cluster, _phase, _run_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="plant time of the history")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--epoch-s", type=float, nargs="+", default=[2.0], help="Bytewax epochs to compare"
    )
    parser.add_argument("--one-file", action="store_true", help="also the one-file cluster")
    args = parser.parse_args()
    if args.repeat < 1 or args.processes < 2 or args.seconds <= 0:
        parser.error("--repeat must be >= 1, --processes >= 2 and --seconds > 0")
    settings = replace(SIZES["default"], seconds=args.seconds, processes=args.processes)
    layouts = ("per-process", "file") if args.one_file else ("per-process",)
    # one list of runs per (epoch, one process or a cluster layout)
    runs: dict[tuple[float, str], list[dict]] = {
        (epoch, name): [] for epoch in args.epoch_s for name in ("one", *layouts)
    }
    with tempfile.TemporaryDirectory(prefix="floorsight-scaling-") as tmp:
        work = Path(tmp)
        plant = settings.plant
        end = plant.start + timedelta(seconds=settings.seconds)
        plant.write_context(work / "erp", end)
        readings = plant.write_readings(
            work / "readings", end, timedelta(seconds=settings.file_seconds)
        )
        _phase("suites", settings, work)
        for i in range(args.repeat):
            for epoch in args.epoch_s:
                at = replace(settings, epoch_s=epoch)
                runs[epoch, "one"].append(_run_one(at, work))
                for layout in layouts:
                    runs[epoch, layout].append(_cluster(at, work, layout))
                line = {n: _figures(runs[epoch, n][-1]) for n in ("one", *layouts)}
                print(json.dumps({"repeat": i + 1, "epoch_s": epoch, **line}), flush=True)
    summary: dict = {"readings": readings, "processes": args.processes}
    for epoch in args.epoch_s:
        by_name: dict = {}
        for name in ("one", *layouts):
            done = runs[epoch, name]
            by_name[name] = {
                f"{stat}_{key}": round(fn([r[key] for r in done]), 2)
                for key in ("seconds", "cpu_s")
                for stat, fn in (("min", min), ("median", statistics.median))
            }
        one = by_name["one"]
        for layout in layouts:
            many = by_name[layout]
            many["scaling_wall_median"] = round(one["median_seconds"] / many["median_seconds"], 2)
            many["scaling_cpu_median"] = round(
                args.processes * one["median_cpu_s"] / many["median_cpu_s"], 2
            )
        summary[f"epoch_{epoch:g}s"] = by_name
    print(json.dumps(summary), flush=True)


def _figures(run: dict) -> dict:
    out = {"seconds": round(run["seconds"], 2), "cpu_s": round(run["cpu_s"], 2)}
    if "processes" in run:
        out["cpu_s_each"] = [p["cpu_s"] for p in run["processes"]]
    return out


if __name__ == "__main__":
    sys.exit(main())
