"""Write a plant's history as fast as it can be computed: readings, MES logs, ERP, ground truth.

Layout of ``out``::

    readings/<YYYY-MM-DD>.parquet   one file per simulated day, sorted by ts, machine, sensor
    states.parquet                  MES state log (running, idle, setup, down) per machine
    parts.parquet                   one row per part made (quality value, good or scrap)
    truth/faults.parquet            ground truth of every injected fault
    erp/<table>.parquet, .csv       ERP/MES/CMMS/LIMS context (see simulators.erp), both formats
    erp.duckdb                      the same context tables in one DuckDB database

With ``fmt="csv"`` readings, logs and truth are written as CSV. A day's readings are generated
in one vectorised call, so memory stays bounded by one day of the plant.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.simulators.erp import erp_tables, write_duckdb, write_tables
from floorsight.simulators.plant import Plant


@dataclass(frozen=True)
class HistoryStats:
    machines: int
    sensors: int
    simulated_days: float
    readings: int
    parts: int
    faults: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def write_history(
    plant: Plant,
    out: Path,
    start: datetime,
    end: datetime,
    fmt: str = "parquet",
    chunk: timedelta = timedelta(days=1),
) -> HistoryStats:
    """Write readings in ``[start, end)`` and everything else the plant knows to ``out``."""
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "readings").mkdir(exist_ok=True)
    rows = 0
    t = start
    while t < end:
        t_next = min(t + chunk, end)
        frame = plant.readings(t, t_next).sort("ts", "machine_id", "sensor")
        _write(frame, out / "readings" / f"{t:%Y-%m-%d}{_stamp(t, chunk)}", fmt)
        rows += frame.height
        t = t_next
    _write(plant.states(), out / "states", fmt)
    _write(plant.parts, out / "parts", fmt)
    (out / "truth").mkdir(exist_ok=True)
    _write(plant.ground_truth_frame(), out / "truth" / "faults", fmt)
    tables = erp_tables(plant)
    write_tables(tables, out / "erp", "csv")
    write_tables(tables, out / "erp", "parquet")
    write_duckdb(tables, out / "erp.duckdb")
    return HistoryStats(
        machines=len(plant.machines),
        sensors=sum(len(m.sensors) for m in plant.machines),
        simulated_days=(end - start) / timedelta(days=1),
        readings=rows,
        parts=plant.parts.height,
        faults=len(plant.faults),
        seconds=round(time.perf_counter() - began, 2),
    )


def _stamp(t: datetime, chunk: timedelta) -> str:
    return "" if chunk >= timedelta(days=1) else f"T{t:%H%M%S}"


def _write(frame: pl.DataFrame, stem: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.write_csv(stem.with_suffix(".csv"))
    elif fmt == "parquet":
        frame.write_parquet(stem.with_suffix(".parquet"), compression="zstd")
    else:
        raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
