"""Two worker processes against one when every process keeps its own rows: the pipeline with a
sink that drops them (no process writes the others' rows, and none writes at all).

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/scaling_without_sink.py --seconds 600

Writes the bench plant's history (``floorsight/bench_plant.py``: 200 machines x 20 sensors at
10 Hz) and its ERP context, runs the context suites once, then runs the dataflow of ``floorsight
run`` (the same ``build_flow`` and settings as ``floorsight.runner``, without recovery) with
one process, and as a Bytewax cluster of ``--processes`` processes on 127.0.0.1, each with a
sink that discards what it is given where it is (a ``DynamicSink``: nothing crosses to process 0,
as when every process writes a partition of its own). Each run is timed from the dataflow's
start to its end in every process, as ``floorsight bench`` times its end-to-end runs; prints one
JSON object: readings per second of each, their ratio, CPU seconds per process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from floorsight.bench import _cpu_s, _free_port, judge_context
from floorsight.bench_plant import BenchPlant


class _Discard(StatelessSinkPartition):
    def write_batch(self, items: list) -> None:
        pass


class DiscardSink(DynamicSink):
    """Drops every item on the worker that has it."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard()


def run(work: Path, processes: int, process_id: int | None, addresses: list[str] | None) -> dict:
    """One process of the run: the flow of ``floorsight run`` with the discarding sink."""
    from bytewax.run import cli_main

    from floorsight.pipelines.context import ContextStore
    from floorsight.pipelines.flow import PipelineSettings, build_flow
    from floorsight.pipelines.replay import ReplaySource
    from floorsight.pipelines.validate import ReadingRules

    settings = PipelineSettings(rules=ReadingRules.history(), shards=processes, recovery=False)
    db = work / f"nosink-{processes}-{process_id or 0}.duckdb"  # context copy, feedback
    source = ReplaySource(work / "readings", processes, 2_400_000)
    context = ContextStore(work / "erp", report_first=process_id in (None, 0))
    flow = build_flow(source, context, db, settings, sink=DiscardSink())
    cpu, start = _cpu_s(), time.time()
    cli_main(
        flow,
        workers_per_process=1,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=10),
    )
    end = time.time()
    return {"start": start, "end": end, "cpu_s": _cpu_s() - cpu}


def _spawn(work: Path, processes: int) -> dict:
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(processes)]
    env = {**os.environ, "POLARS_MAX_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--one", json.dumps([str(work), processes, i, addresses])],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"process failed ({p.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "seconds": max(r["end"] for r in results) - min(r["start"] for r in results),
        "cpu_s": [round(r["cpu_s"], 2) for r in results],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # one process of a run
        work, processes, process_id, addresses = json.loads(args.one)
        one = processes == 1
        result = run(Path(work), processes, None if one else process_id, None if one else addresses)
        print(json.dumps(result), flush=True)
        return
    plant = BenchPlant()
    end = plant.start + timedelta(seconds=args.seconds)
    with tempfile.TemporaryDirectory(prefix="floorsight-nosink-") as tmp:
        work = Path(tmp)
        plant.write_context(work / "erp", end)
        readings = plant.write_readings(work / "readings", end, timedelta(seconds=60))
        judge_context(work / "erp")
        load_before = os.getloadavg()
        one = _spawn(work, 1)
        many = _spawn(work, args.processes)
        load_after = os.getloadavg()
    print(
        json.dumps(
            {
                "readings": readings,
                "readings_per_s_1": round(readings / one["seconds"]),
                f"readings_per_s_{args.processes}": round(readings / many["seconds"]),
                "scaling": round(one["seconds"] / many["seconds"], 2),
                "cpu_s_1": one["cpu_s"],
                f"cpu_s_{args.processes}": many["cpu_s"],
                "load_average": {"before": load_before, "after": load_after},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
