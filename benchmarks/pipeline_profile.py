"""Where the pipeline's time goes: CPU seconds per step of one worker over a bench plant.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/pipeline_profile.py --seconds 600

Writes the bench plant's history (``floorsight/bench_plant.py``: 200 machines x 20 sensors at
10 Hz by default), runs the real dataflow over it in this process (one worker, epochs of 2 s as
``floorsight run``), and counts the CPU time (user + system, this process) spent inside each
step's library call: validation, shard split, context join, windows, the models and alert rules
of the score step, the DuckDB writes, file reading, and the snapshots' deep copies. What is left
is Bytewax, the flow's glue and the allocator. A few parts of those steps are counted on their
own too (marked "within", not added to the rest): the windows' duplicate gate and features,
the score step's segments and feedback reads. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from bytewax.testing import run_main

from floorsight.alerts import engine as alert_engine
from floorsight.alerts import feedback, rules
from floorsight.bench_plant import BenchPlant
from floorsight.features import windows
from floorsight.models import engine
from floorsight.pipelines import context, flow, replay, shards, validate
from floorsight.storage import Database

SPENT: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def count(owner, name: str, label: str) -> None:
    """Wrap ``owner.name`` so the CPU time spent inside it adds to ``SPENT[label]``."""
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        began = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            SPENT[label] += time.process_time() - began
            CALLS[label] += 1

    setattr(owner, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=200)
    ap.add_argument("--sensors", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--batch-rows", type=int, default=2_400_000)
    ap.add_argument("--file-seconds", type=float, default=60.0)
    args = ap.parse_args()
    count(validate, "check_batch", "validate")
    flow.check_batch = validate.check_batch
    count(shards, "by_shard", "shard split")
    flow.by_shard = shards.by_shard
    count(context.ContextHold, "push", "context join")
    count(windows.WindowAggregator, "push", "windows")
    count(engine.MachineModels, "update", "score: models")
    count(rules.AlertTracker, "update_rows", "score: alert rules")
    count(Database, "upsert", "duckdb writes")
    count(replay, "_read_rows", "file reading")
    count(copy, "deepcopy", "snapshots (deep copies)")
    # parts of the steps above (not added to them again): what the limits of `floorsight
    # bench` do not time, beside what they do
    count(windows.WindowAggregator, "_without_duplicates", "windows: duplicate gate (within)")
    count(windows, "window_features", "windows: features (within)")
    count(alert_engine, "segments_of", "score: segments (within)")
    count(feedback.FeedbackStore, "for_machine", "score: feedback (within)")
    plant = BenchPlant(args.machines, args.sensors)
    end = plant.start + timedelta(seconds=args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plant.write_context(work / "erp", end)
        readings = plant.write_readings(
            work / "readings", end, timedelta(seconds=args.file_seconds)
        )
        settings = flow.PipelineSettings(
            rules=validate.ReadingRules(max_future=timedelta(days=36500)),
            recovery=False,  # as `floorsight run` (and its bench runs) without --recovery
        )
        dataflow = flow.build_flow(
            replay.ReplaySource(work / "readings", 1, args.batch_rows),
            context.ContextStore(work / "erp"),
            work / "profile.duckdb",
            settings,
        )
        SPENT.clear()
        CALLS.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        run_main(dataflow, epoch_interval=timedelta(seconds=2))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps = dict(sorted(SPENT.items(), key=lambda kv: -kv[1]))
    outer = sum(v for k, v in SPENT.items() if not k.endswith("(within)"))
    steps["rest (Bytewax, glue, allocator)"] = cpu - outer
    print(
        json.dumps(
            {
                "readings": readings,
                "batch_rows": args.batch_rows,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "readings_per_cpu_s": round(readings / cpu),
                "cpu_ms_per_million_readings": {
                    k: round(v / readings * 1e9) for k, v in steps.items()
                },
                "calls": dict(CALLS),
                "cpu_ms_per_call": {k: round(SPENT[k] / n * 1e3, 2) for k, n in CALLS.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
