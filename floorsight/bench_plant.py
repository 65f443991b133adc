"""A large synthetic plant for ``floorsight bench``: vectorised readings and their ERP context.

The simulator (``simulators/``) models a few machine types in detail; a benchmark needs a plant of
hundreds of machines with many sensors each, generated faster than the pipeline reads it. Every
machine here has the same ``sensors`` (plant names, the first is ``vibration_mm_s`` so the
failure model has its signal), runs back-to-back work orders of ``order_length`` that rotate
over three products with their own setpoints, and samples every sensor at ``sample_hz``. Values
are setpoint + Gaussian noise (seeded, deterministic per time range, so any slice can be
regenerated on its own). A fault shifts the first ``fault_sensors`` sensors of the faulty
machines by ``fault_shift`` noise standard deviations from ``fault_start`` on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from floorsight.records import READING_SCHEMA, TIMESTAMP

_US = 1_000_000

#: Sensor names of a bench machine (20; fewer are taken from the front for smaller plants).
SENSORS = (
    "vibration_mm_s",
    "spindle_temp_c",
    "spindle_current_a",
    "bore_diameter_mm",
    "coolant_temp_c",
    "coolant_flow_l_min",
    "hydraulic_pressure_bar",
    "axis_x_load_pct",
    "axis_y_load_pct",
    "axis_z_load_pct",
    "feed_rate_mm_min",
    "spindle_speed_rpm",
    "motor_temp_c",
    "ambient_temp_c",
    "air_pressure_bar",
    "power_kw",
    "torque_nm",
    "chip_conveyor_current_a",
    "lube_pressure_bar",
    "cabinet_temp_c",
)

PRODUCTS = ("BENCH-A", "BENCH-B", "BENCH-C")


@dataclass(frozen=True)
class BenchPlant:
    """``machines`` machines x ``sensors`` sensors at ``sample_hz``, from ``start``."""

    machines: int = 200
    sensors: int = 20
    sample_hz: int = 10
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    order_length: timedelta = timedelta(hours=1)
    seed: int = 7
    faulty_machines: tuple[int, ...] = ()
    fault_start: datetime | None = None
    fault_sensors: int = 2
    fault_shift: float = 3.0
    _setpoints: np.ndarray = field(init=False, repr=False, compare=False)
    _noise: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.sensors <= len(SENSORS):
            raise ValueError(f"sensors must be 1..{len(SENSORS)}, got {self.sensors}")
        if _US % self.sample_hz:
            raise ValueError(f"sample_hz must divide one second in microseconds: {self.sample_hz}")
        rng = np.random.default_rng(self.seed)
        # per product and sensor: setpoint; per sensor: noise std (a few % of the setpoint)
        base = rng.uniform(5.0, 500.0, self.sensors)
        setpoints = base[None, :] * rng.uniform(0.9, 1.1, (len(PRODUCTS), self.sensors))
        object.__setattr__(self, "_setpoints", setpoints)
        object.__setattr__(self, "_noise", base * rng.uniform(0.005, 0.02, self.sensors))

    @property
    def machine_ids(self) -> list[str]:
        return [f"B{m:04d}" for m in range(self.machines)]

    @property
    def sensor_names(self) -> list[str]:
        return list(SENSORS[: self.sensors])

    @property
    def readings_per_s(self) -> int:
        """Readings the plant sends per second of plant time."""
        return self.machines * self.sensors * self.sample_hz

    def _order_offset_us(self) -> np.ndarray:
        """Each machine's first changeover, staggered over one order length."""
        step = int(self.order_length.total_seconds() * _US)
        return (np.arange(self.machines, dtype=np.int64) * 7919 * _US) % step

    def work_orders(self, end: datetime) -> pl.DataFrame:
        """Back-to-back work orders of every machine covering ``[start, end)``."""
        step = int(self.order_length.total_seconds() * _US)
        t0, t1 = _to_us(self.start), _to_us(end)
        rows = []
        for m, offset in enumerate(self._order_offset_us()):
            first = (t0 - offset) // step
            k = first
            while offset + k * step < t1:
                begin = max(offset + k * step, t0 - step)
                rows.append(
                    {
                        "work_order": f"WO-{m:04d}-{k - first:05d}",
                        "machine_id": f"B{m:04d}",
                        "product": PRODUCTS[(m + k) % len(PRODUCTS)],
                        "material_lot": f"LOT-{(m + k) % 50:03d}",
                        "start": _from_us(begin),
                        "end": _from_us(offset + (k + 1) * step),
                    }
                )
                k += 1
        return pl.DataFrame(rows).with_columns(pl.col("start", "end").cast(TIMESTAMP))

    def spec_limits(self) -> pl.DataFrame:
        rows = [
            {
                "product": p,
                "characteristic": s,
                "lsl": float(self._setpoints[i, j] - 6 * self._noise[j]),
                "target": float(self._setpoints[i, j]),
                "usl": float(self._setpoints[i, j] + 6 * self._noise[j]),
            }
            for i, p in enumerate(PRODUCTS)
            for j, s in enumerate(self.sensor_names)
        ]
        return pl.DataFrame(rows)

    def write_context(self, directory: Path, end: datetime) -> pl.DataFrame:
        """ERP context files (work orders, spec limits, batches) as the pipeline reads them."""
        directory.mkdir(parents=True, exist_ok=True)
        orders = self.work_orders(end)
        iso = "%Y-%m-%dT%H:%M:%S%z"
        orders.with_columns(pl.col("start", "end").dt.strftime(iso)).write_csv(
            directory / "work_orders.csv"
        )
        self.spec_limits().write_csv(directory / "spec_limits.csv")
        # one batch per order, with the columns an ERP batch has (the context suites check them)
        orders.select(
            pl.concat_str([pl.lit("BATCH-"), pl.col("work_order").str.slice(3)]).alias("batch_id"),
            "work_order",
            pl.col("start").dt.strftime(iso),
            pl.col("start").dt.strftime(iso).alias("setup_end"),
            pl.col("end").dt.strftime(iso),
            pl.lit(0).alias("good_parts"),
            pl.lit(0).alias("scrap_parts"),
        ).write_csv(directory / "batches.csv")
        return orders

    def readings(
        self, t0: datetime, t1: datetime, machines: list[int] | None = None
    ) -> pl.DataFrame:
        """Every reading with ``t0 <= ts < t1`` (of ``machines``, default all), sorted by time."""
        period = _US // self.sample_hz
        k0 = -(-_to_us(t0) // period)
        k1 = -(-_to_us(t1) // period)
        mach = np.arange(self.machines) if machines is None else np.asarray(machines)
        if k1 <= k0 or mach.size == 0:
            return pl.DataFrame(schema=READING_SCHEMA)
        ticks = np.arange(k0, k1, dtype=np.int64) * period
        n_m, n_s = mach.size, self.sensors
        # product of each (tick, machine) from the machine's order rotation
        step = int(self.order_length.total_seconds() * _US)
        order = (ticks[:, None] - self._order_offset_us()[mach][None, :]) // step
        product = (mach[None, :] + order) % len(PRODUCTS)
        value = self._setpoints[product]  # (ticks, machines, sensors)
        # noise seeded by the slice's first tick, so a slice is reproducible on its own
        rng = np.random.default_rng([self.seed, int(k0), int(mach[0]), n_m])
        value = value + rng.standard_normal(value.shape) * self._noise[None, None, :]
        if self.fault_start is not None and self.faulty_machines:
            hit = np.isin(mach, self.faulty_machines)
            after = ticks >= _to_us(self.fault_start)
            if hit.any() and after.any():
                shift = self.fault_shift * self._noise[: self.fault_sensors]
                value[np.ix_(after, hit, np.arange(self.fault_sensors))] += shift
        n = ticks.size * n_m * n_s
        names = pl.Series("machine_id", [f"B{m:04d}" for m in mach], dtype=pl.String)
        sensors = pl.Series("sensor", self.sensor_names, dtype=pl.String)
        return pl.DataFrame(
            {
                "machine_id": names.gather(np.tile(np.repeat(np.arange(n_m), n_s), ticks.size)),
                "sensor": sensors.gather(np.tile(np.arange(n_s), ticks.size * n_m)),
                "ts": pl.Series(np.repeat(ticks, n_m * n_s)).cast(pl.Datetime("us")),
                "value": value.reshape(n),
            }
        ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))

    def write_readings(self, directory: Path, end: datetime, chunk: timedelta) -> int:
        """Readings in ``[start, end)`` as Parquet files of ``chunk`` plant time; returns rows."""
        directory.mkdir(parents=True, exist_ok=True)
        rows, t = 0, self.start
        while t < end:
            t_next = min(t + chunk, end)
            frame = self.readings(t, t_next)
            frame.write_parquet(directory / f"{t:%Y%m%dT%H%M%S}.parquet", compression="lz4")
            rows += frame.height
            t = t_next
        return rows


def _to_us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))
