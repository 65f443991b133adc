"""Replay a recorded dataset as if it were a machine of the plant (SKAB, or any wide table).

A :class:`RecordedPlant` has the interface the OPC-UA server, the MQTT publisher and the
pipeline's sources use (``machines``, ``readings``, ``stream``, ``status_at``), so a real
dataset goes over the same wires as the simulated plant. Its timeline is shifted so that the
recording's first row is at the ``start`` the caller chooses (``shift_to``).

SKAB (Skoltech Anomaly Benchmark, ``;``-separated, one row per second, see
``../shared/data/skab/README.md``): the eight signals become sensors with their units, and the
``anomaly`` / ``changepoint`` columns are the ground truth (:meth:`RecordedPlant.labels`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from floorsight.records import READING_SCHEMA, empty_readings
from floorsight.simulators.catalog import Sensor
from floorsight.simulators.plant import STATUS_SCHEMA, Machine

SKAB_UNITS = {
    "accelerometer1_rms": "g",
    "accelerometer2_rms": "g",
    "current": "A",
    "pressure": "bar",
    "temperature": "degC",
    "thermocouple": "degC",
    "voltage": "V",
    "volume_flow_rate_rms": "l/min",
}
SKAB_LABELS = ("anomaly", "changepoint")


def snake(name: str) -> str:
    """``Volume Flow RateRMS`` -> ``volume_flow_rate_rms``; ``Accelerometer1RMS`` -> ``..._rms``."""
    name = re.sub(r"RMS$", "_RMS", name.strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


@dataclass
class RecordedPlant:
    """One or more recorded machines: long readings plus optional labels."""

    machines: tuple[Machine, ...]
    data: pl.DataFrame  # READING_SCHEMA, sorted by ts
    label_frame: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def start(self) -> datetime:
        return self.data["ts"].min()

    @property
    def end(self) -> datetime:
        """Just after the last reading."""
        return self.data["ts"].max() + timedelta(microseconds=1)

    @classmethod
    def from_frame(
        cls,
        wide: pl.DataFrame,
        time_col: str,
        machine_id: str,
        line: str = "REPLAY",
        units: dict[str, str] | None = None,
        label_cols: tuple[str, ...] = (),
    ) -> RecordedPlant:
        """A machine from a wide table: one row per time, one numeric column per sensor."""
        if wide[time_col].dtype == pl.String:
            wide = wide.with_columns(pl.col(time_col).str.to_datetime())
        t = pl.col(time_col)
        aware = getattr(wide[time_col].dtype, "time_zone", None) is not None
        utc = t.dt.convert_time_zone("UTC") if aware else t.dt.replace_time_zone("UTC")
        wide = wide.with_columns(utc.cast(READING_SCHEMA["ts"]))
        sensors = [c for c in wide.columns if c not in (time_col, *label_cols)]
        units = units or {}
        machine = Machine(
            machine_id,
            line,
            "recorded",
            tuple(Sensor(s, units.get(s, ""), {}, 0.0) for s in sensors),
        )
        long = (
            wide.select(time_col, *sensors)
            .unpivot(index=time_col, variable_name="sensor", value_name="value")
            .select(
                pl.lit(machine_id).alias("machine_id"),
                "sensor",
                pl.col(time_col).alias("ts"),
                pl.col("value").cast(pl.Float64),
            )
            .sort("ts", "sensor", maintain_order=True)
        )
        labels = pl.DataFrame()
        if label_cols:
            labels = wide.select(
                pl.col(time_col).alias("ts"),
                pl.lit(machine_id).alias("machine_id"),
                *[pl.col(c).cast(pl.Int8) for c in label_cols],
            )
        return cls((machine,), long.cast(READING_SCHEMA), labels)

    @classmethod
    def from_skab(cls, path: Path, machine_id: str = "SKAB-1", line: str = "SKAB") -> RecordedPlant:
        wide = pl.read_csv(path, separator=";")
        wide = wide.rename({c: snake(c) for c in wide.columns})
        wide = wide.with_columns(pl.col("datetime").str.to_datetime("%Y-%m-%d %H:%M:%S"))
        labels = tuple(c for c in SKAB_LABELS if c in wide.columns)
        return cls.from_frame(wide, "datetime", machine_id, line, SKAB_UNITS, labels)

    def shift_to(self, start: datetime) -> RecordedPlant:
        """The same recording with its first reading at ``start``."""
        delta = start - self.start
        shifted = self.data.with_columns(pl.col("ts") + delta)
        labels = (
            self.label_frame.with_columns(pl.col("ts") + delta)
            if self.label_frame.height
            else self.label_frame
        )
        return RecordedPlant(self.machines, shifted, labels)

    def labels(self) -> pl.DataFrame:
        return self.label_frame

    def readings(self, t0: datetime, t1: datetime) -> pl.DataFrame:
        """Every reading with ``t0 <= ts < t1``."""
        lo = self.data["ts"].search_sorted(t0, side="left")
        hi = self.data["ts"].search_sorted(t1, side="left")
        return self.data.slice(lo, hi - lo) if hi > lo else empty_readings()

    def stream(
        self,
        start: datetime,
        speed: float = 1.0,
        end: datetime | None = None,
        tick_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[pl.DataFrame | None]:
        """The recording as time passes, shifted so its first row is at ``start``."""
        shifted = self.shift_to(start)
        end = min(end or shifted.end, shifted.end)
        wall0 = clock()
        cursor = start
        last_wall = wall0 - tick_s
        while cursor < end:
            now = clock()
            if now - last_wall < tick_s:
                yield None
                continue
            last_wall = now
            sim_now = min(start + timedelta(seconds=(now - wall0) * speed), end)
            if sim_now > cursor:
                frame = shifted.readings(cursor, sim_now)
                cursor = sim_now
                yield frame
            else:
                yield None

    def status_at(self, ts: datetime) -> pl.DataFrame:
        running = self.start <= ts < self.end
        return pl.DataFrame(
            [
                {
                    "machine_id": m.machine_id,
                    "line": m.line,
                    "machine_type": m.machine_type,
                    "state": "running" if running else "idle",
                    "work_order": "",
                    "product": "",
                    "material_lot": "",
                    "good_parts": 0,
                    "scrap_parts": 0,
                }
                for m in self.machines
            ],
            schema=STATUS_SCHEMA,
        )
