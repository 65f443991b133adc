"""What a primary-key index costs the sink: the same rows appended with and without it.

    POLARS_MAX_THREADS=1 .venv/bin/python benchmarks/duckdb_appends.py --flushes 1 20

Makes the rows one bench run writes to its largest tables (``features``: 200 machines x 20
sensors, one row per 10 s window, and ``scores``: one row per machine, window and model) for
``--seconds`` of plant time, and writes them to a fresh DuckDB file in ``--flushes`` equal
transactions through :meth:`floorsight.storage.Database.upsert` (what the sink calls per
flush), once with the tables as declared (``TableSpec.time_key``: no index, the key kept unique
by the upsert) and once with the key as ``PRIMARY KEY``. Prints CPU seconds per layout and
flush count as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from floorsight.features import FEATURES
from floorsight.models import SCORES
from floorsight.storage import Database, TableSpec


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rows(spec: TableSpec, keys: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """``keys`` with every other column of ``spec`` filled (numbers and flags random, text
    fixed, times the window's start)."""
    schema = spec.polars_schema
    fill = {}
    for col, dtype in schema.items():
        if col in keys.columns:
            continue
        if dtype.is_numeric():
            fill[col] = pl.Series(rng.normal(size=keys.height)).cast(dtype)
        elif dtype == pl.String:
            fill[col] = pl.repeat("x", keys.height, eager=True)
        elif isinstance(dtype, pl.Datetime):
            fill[col] = keys["window_start"]
        elif dtype == pl.Boolean:
            fill[col] = pl.Series(rng.random(keys.height) < 0.01)
        else:
            fill[col] = pl.repeat(None, keys.height, dtype=dtype, eager=True)
    return keys.with_columns(**fill).select(list(schema)).cast(schema)


def frames(seconds: float, machines: int = 200, sensors: int = 20) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(0)
    starts = pl.datetime_range(
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC) + pl.duration(seconds=seconds - 10),
        "10s",
        eager=True,
    ).alias("window_start")
    ids = pl.DataFrame({"machine_id": [f"M{i:03d}" for i in range(machines)]})
    windows = starts.to_frame().join(ids, how="cross").with_columns(work_order=pl.lit("WO-1"))
    features = windows.join(
        pl.DataFrame({"sensor": [f"s{i:02d}" for i in range(sensors)]}), how="cross"
    )
    scores = windows.join(pl.DataFrame({"model": ["anomaly", "deviation"]}), how="cross")
    return {
        "features": _rows(FEATURES, features.sort("window_start"), rng),
        "scores": _rows(SCORES, scores.sort("window_start"), rng),
    }


def indexed_ddl(spec: TableSpec) -> str:
    """``spec``'s table with its key as PRIMARY KEY (what every table had before)."""
    key = ", ".join(f'"{c}"' for c in spec.key)
    return spec.ddl.rstrip().removesuffix(")").rstrip() + f",\n    PRIMARY KEY ({key})\n)"


def run(tables: dict[str, pl.DataFrame], index: bool, flushes: int, work: Path) -> dict:
    path = work / f"appends-{time.monotonic_ns()}.duckdb"
    specs = [FEATURES, SCORES]
    db = Database(path, specs)
    if index:
        with db.write() as con:
            for spec in specs:
                con.execute(indexed_ddl(spec))
    db.create()
    parts = {
        name: frame.with_columns(_f=pl.int_range(pl.len()) * flushes // pl.len()).partition_by(
            "_f", include_key=False, maintain_order=True
        )
        for name, frame in tables.items()
    }
    began, cpu = time.perf_counter(), _cpu_s()
    for i in range(flushes):
        db.upsert({name: [p[i]] for name, p in parts.items()})
    return {"seconds": round(time.perf_counter() - began, 2), "cpu_s": round(_cpu_s() - cpu, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--flushes", type=int, nargs="+", default=[1, 20])
    args = ap.parse_args()
    tables = frames(args.seconds)
    out: dict = {"rows": {name: f.height for name, f in tables.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        for flushes in args.flushes:
            for layout, index in (("as declared (no index)", False), ("primary key", True)):
                out[f"{layout}, {flushes} flushes"] = run(tables, index, flushes, Path(tmp))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
