"""How long ``validate_readings`` takes on a clean batch of 1 M readings, now and at a commit.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/validate_clean_batch.py --ref a6043fd

Builds 1 M clean readings (200 machines x 5 sensors, a minute before "now") and times
``validate_readings`` with live rules: this tree's, with and without the machine/sensor
catalogue, and (with ``--ref``) the ``pipelines/validate.py`` of that commit, interleaved, best
of ``--repeat``. Prints one line each.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from floorsight.pipelines import validate
from floorsight.records import READING_SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def _validate_at(ref: str):
    """``pipelines/validate.py`` as it was at ``ref``, imported as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{ref}:pipelines/validate.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "validate_at_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("validate_at_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["validate_at_ref"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--ref", help="also time pipelines/validate.py of this commit")
    args = ap.parse_args()
    n = args.rows
    now = datetime(2026, 12, 1, tzinfo=UTC)
    machines = [f"M{i:03d}" for i in range(200)]
    sensors = ["spindle_temp_c", "vibration_mm_s", "spindle_current_a", "bore_diameter_mm", "x"]
    rng = np.random.default_rng(1)
    start = now - timedelta(seconds=60)
    batch = pl.DataFrame(
        {
            "machine_id": [machines[i % 200] for i in range(n)],
            "sensor": [sensors[(i // 200) % 5] for i in range(n)],
            "ts": pl.datetime_range(
                start, start + timedelta(microseconds=n - 1), "1us", eager=True, time_zone="UTC"
            ),
            "value": rng.normal(50, 5, n),
        },
        schema=READING_SCHEMA,
    )
    catalogue = validate.Catalogue(frozenset(machines), {m: frozenset(sensors) for m in machines})
    live = validate.ReadingRules.live()
    runs = {
        "this tree": lambda: validate.validate_readings(batch, live, now=now),
        "this tree, catalogue": lambda: validate.validate_readings(
            batch, live, now=now, catalogue=catalogue
        ),
    }
    if args.ref:
        old = _validate_at(args.ref)
        rules = old.ReadingRules(max_future=timedelta(minutes=5), max_past=timedelta(days=30))
        runs[f"at {args.ref}"] = lambda: old.validate_readings(batch, rules, now=now)
    for run in runs.values():
        assert run().dead is None
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeat):
        for name, run in runs.items():
            best[name] = min(best[name], timeit.timeit(run, number=1))
    for name, seconds in best.items():
        print(
            f"{name:24s} {seconds * 1000:7.1f} ms per {n:,} clean rows "
            f"({n / seconds / 1e6:6.1f} M rows/s)"
        )


if __name__ == "__main__":
    main()
