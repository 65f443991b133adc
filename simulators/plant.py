"""A small simulated plant: CNC machines with sensors, ERP work orders, and injected faults.

Signals are computed in closed form from the simulated time, the work order running then, and
the faults active then, plus seeded noise drawn in fixed blocks of samples. So any time range
can be generated in one vectorised call, and the same seed gives the same readings however the
range is cut into batches (the live stream and a history file agree sample for sample).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from floorsight.records import READING_SCHEMA, FaultKind, FaultTruth, empty_readings

_US = 1_000_000
#: Samples per noise block; noise for sample k comes from block k // _BLOCK.
_BLOCK = 4096


@dataclass(frozen=True, slots=True)
class Sensor:
    """A sensor of a machine type: unit, nominal value per product, noise and slow wander."""

    name: str
    unit: str
    nominal: dict[str, float]
    noise: float
    wander: float = 0.0
    wander_period_s: float = 1800.0


@dataclass(frozen=True, slots=True)
class Product:
    """A product with the spec limits of its quality characteristics (ERP material master)."""

    product: str
    description: str
    specs: dict[str, tuple[float, float, float]]  # characteristic -> (lsl, target, usl)


PRODUCTS: tuple[Product, ...] = (
    Product("P-100", "Bracket, bore 25 mm", {"bore_diameter_mm": (24.980, 25.000, 25.020)}),
    Product("P-200", "Housing, bore 32 mm", {"bore_diameter_mm": (31.975, 32.000, 32.025)}),
)

CNC_SENSORS: tuple[Sensor, ...] = (
    Sensor("spindle_temp_c", "degC", {"P-100": 42.0, "P-200": 46.0}, 0.25, 0.3, 7200.0),
    Sensor("vibration_mm_s", "mm/s", {"P-100": 1.8, "P-200": 2.1}, 0.08, 0.02, 5400.0),
    Sensor("spindle_current_a", "A", {"P-100": 11.5, "P-200": 13.5}, 0.15, 0.05, 3600.0),
    Sensor("bore_diameter_mm", "mm", {"P-100": 25.000, "P-200": 32.000}, 0.003, 0.0005, 3600.0),
)


#: Columns of :meth:`Plant.status_at` (the MES view of each machine).
STATUS_SCHEMA: dict[str, pl.DataType] = {
    "machine_id": pl.String(),
    "line": pl.String(),
    "machine_type": pl.String(),
    "state": pl.String(),
    "work_order": pl.String(),
    "product": pl.String(),
    "material_lot": pl.String(),
    "good_parts": pl.Int64(),
    "scrap_parts": pl.Int64(),
}


@dataclass(frozen=True, slots=True)
class WorkOrder:
    work_order: str
    machine_id: str
    product: str
    material_lot: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault to inject: which machine, what kind, when it starts and how long it lasts."""

    fault_id: str
    machine_id: str
    kind: FaultKind
    start: datetime
    duration: timedelta

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def sensors(self) -> tuple[str, ...]:
        return {
            FaultKind.BEARING_WEAR: ("vibration_mm_s", "spindle_temp_c"),
            FaultKind.PROCESS_UPSET: ("spindle_current_a", "bore_diameter_mm"),
            FaultKind.TOOL_WEAR: ("bore_diameter_mm", "spindle_current_a"),
        }[self.kind]

    def truth(self) -> FaultTruth:
        return FaultTruth(
            self.fault_id, self.machine_id, self.kind, self.start, self.end, self.sensors
        )

    def effect(self, sensor: str, t_us: np.ndarray) -> np.ndarray | None:
        """Additive effect on ``sensor`` at times ``t_us`` (None when it does not touch it)."""
        if sensor not in self.sensors:
            return None
        start_us = _to_us(self.start)
        dur_us = self.duration / timedelta(microseconds=1)
        # progress 0..1 while the fault lasts, NaN outside it
        progress = np.where(
            (t_us >= start_us) & (t_us < start_us + dur_us), (t_us - start_us) / dur_us, np.nan
        )
        active = ~np.isnan(progress)
        p = np.nan_to_num(progress)
        if self.kind is FaultKind.BEARING_WEAR:
            # vibration grows like a degrading bearing: slowly at first, then faster
            scale = {"vibration_mm_s": 2.5, "spindle_temp_c": 4.0}[sensor]
            out = scale * (0.15 * p + 0.85 * p**2)
        elif self.kind is FaultKind.PROCESS_UPSET:
            out = np.full_like(p, {"spindle_current_a": 1.2, "bore_diameter_mm": 0.012}[sensor])
        else:  # tool wear: the bore drifts towards the spec limit, the cut takes more current
            out = {"bore_diameter_mm": 0.03, "spindle_current_a": 0.8}[sensor] * p
        return np.where(active, out, 0.0)


@dataclass(frozen=True, slots=True)
class Machine:
    machine_id: str
    line: str
    machine_type: str
    sensors: tuple[Sensor, ...]


@dataclass
class Plant:
    """The plant: machines, their ERP work orders and the faults injected into them."""

    machines: tuple[Machine, ...]
    work_orders: tuple[WorkOrder, ...]
    faults: tuple[Fault, ...] = ()
    sample_hz: int = 10
    seed: int = 0
    _wo_index: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if _US % self.sample_hz:
            raise ValueError(f"sample_hz must divide one second in microseconds: {self.sample_hz}")
        for m in self.machines:
            wos = sorted(
                (w for w in self.work_orders if w.machine_id == m.machine_id), key=lambda w: w.start
            )
            starts = np.array([_to_us(w.start) for w in wos], dtype=np.int64)
            self._wo_index[m.machine_id] = (starts, [w.product for w in wos])

    # ----------------------------------------------------------------------------------------
    # signals
    def readings(self, t0: datetime, t1: datetime) -> pl.DataFrame:
        """Every reading with ``t0 <= ts < t1``, sorted by machine, sensor and time."""
        period = _US // self.sample_hz
        k0 = -(-_to_us(t0) // period)
        k1 = -(-_to_us(t1) // period)
        if k1 <= k0:
            return empty_readings()
        k = np.arange(k0, k1, dtype=np.int64)
        t_us = k * period
        t_s = t_us / _US
        parts = []
        for mi, machine in enumerate(self.machines):
            product = self._product_at(machine.machine_id, t_us)
            faults = [f for f in self.faults if f.machine_id == machine.machine_id]
            for si, sensor in enumerate(machine.sensors):
                nominal = np.vectorize(sensor.nominal.get, otypes=[float])(product)
                wander = sensor.wander * np.sin(
                    2 * math.pi * t_s / sensor.wander_period_s + mi + si
                )
                value = nominal + wander + sensor.noise * self._noise(mi, si, k0, k1)
                for fault in faults:
                    effect = fault.effect(sensor.name, t_us)
                    if effect is not None:
                        value = value + effect
                parts.append(
                    pl.DataFrame({"ts": t_us, "value": value}).select(
                        pl.lit(machine.machine_id).alias("machine_id"),
                        pl.lit(sensor.name).alias("sensor"),
                        pl.col("ts").cast(READING_SCHEMA["ts"]),
                        pl.col("value"),
                    )
                )
        return pl.concat(parts)

    def stream(
        self,
        start: datetime,
        speed: float = 1.0,
        end: datetime | None = None,
        tick_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[pl.DataFrame | None]:
        """Readings as simulated time passes: ``speed`` simulated seconds per wall second.

        Yields a frame with the readings since the last one, or None when less than ``tick_s``
        has passed (the caller polls again later), and stops at ``end``.
        """
        wall0 = clock()
        cursor = start
        last_wall = wall0 - tick_s
        while end is None or cursor < end:
            now = clock()
            if now - last_wall < tick_s:
                yield None
                continue
            last_wall = now
            sim_now = start + timedelta(seconds=(now - wall0) * speed)
            if end is not None:
                sim_now = min(sim_now, end)
            if sim_now > cursor:
                frame = self.readings(cursor, sim_now)
                cursor = sim_now
                yield frame
            else:
                yield None

    def status_at(self, ts: datetime) -> pl.DataFrame:
        """MES status of every machine at ``ts``: one row per machine.

        Columns: machine_id, line, machine_type, state (running/idle/setup/down), work_order,
        product, material_lot, good_parts, scrap_parts (counters since the plant's start).
        """
        t_us = np.array([_to_us(ts)], dtype=np.int64)
        rows = []
        for m in self.machines:
            starts, _ = self._wo_index[m.machine_id]
            idx = int(np.searchsorted(starts, t_us, side="right")[0]) - 1
            wos = sorted(
                (w for w in self.work_orders if w.machine_id == m.machine_id),
                key=lambda w: w.start,
            )
            wo = wos[idx] if idx >= 0 else None
            rows.append(
                {
                    "machine_id": m.machine_id,
                    "line": m.line,
                    "machine_type": m.machine_type,
                    "state": "running" if wo else "idle",
                    "work_order": wo.work_order if wo else "",
                    "product": wo.product if wo else "",
                    "material_lot": wo.material_lot if wo else "",
                    "good_parts": 0,
                    "scrap_parts": 0,
                }
            )
        return pl.DataFrame(rows, schema=STATUS_SCHEMA)

    def _product_at(self, machine_id: str, t_us: np.ndarray) -> np.ndarray:
        starts, products = self._wo_index[machine_id]
        idx = np.searchsorted(starts, t_us, side="right") - 1
        if len(starts) == 0 or (idx < 0).any():
            raise ValueError(f"no work order on {machine_id} covers every requested time")
        return np.asarray(products, dtype=object)[idx]

    def _noise(self, machine_idx: int, sensor_idx: int, k0: int, k1: int) -> np.ndarray:
        b0, b1 = k0 // _BLOCK, (k1 - 1) // _BLOCK
        blocks = [
            np.random.default_rng([self.seed, machine_idx, sensor_idx, b]).standard_normal(_BLOCK)
            for b in range(b0, b1 + 1)
        ]
        flat = np.concatenate(blocks)
        return flat[k0 - b0 * _BLOCK : k1 - b0 * _BLOCK]

    # ----------------------------------------------------------------------------------------
    # ERP context and ground truth
    def work_orders_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "work_order": w.work_order,
                    "machine_id": w.machine_id,
                    "product": w.product,
                    "material_lot": w.material_lot,
                    "start": w.start,
                    "end": w.end,
                }
                for w in self.work_orders
            ],
            schema={
                "work_order": pl.String,
                "machine_id": pl.String,
                "product": pl.String,
                "material_lot": pl.String,
                "start": READING_SCHEMA["ts"],
                "end": READING_SCHEMA["ts"],
            },
        )

    def write_context(self, directory: Path) -> None:
        """Write the ERP context (work orders, spec limits) and the ground truth as CSV."""
        directory.mkdir(parents=True, exist_ok=True)
        self.work_orders_frame().write_csv(directory / "work_orders.csv")
        spec_limits_frame().write_csv(directory / "spec_limits.csv")
        self.ground_truth_frame().write_csv(directory / "faults.csv")

    def ground_truth_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "fault_id": f.fault_id,
                    "machine_id": f.machine_id,
                    "kind": str(f.kind),
                    "start": f.start,
                    "end": f.end,
                    "sensors": ",".join(f.sensors),
                }
                for f in self.faults
            ],
            schema={
                "fault_id": pl.String,
                "machine_id": pl.String,
                "kind": pl.String,
                "start": READING_SCHEMA["ts"],
                "end": READING_SCHEMA["ts"],
                "sensors": pl.String,
            },
        )


def spec_limits_frame() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"product": p.product, "characteristic": c, "lsl": lsl, "target": tgt, "usl": usl}
            for p in PRODUCTS
            for c, (lsl, tgt, usl) in p.specs.items()
        ]
    )


def fault_schedule(
    start: datetime,
    machines: list[str],
    horizon: timedelta,
    first_after: timedelta = timedelta(minutes=8),
    every: timedelta = timedelta(minutes=20),
    duration: timedelta = timedelta(minutes=8),
) -> tuple[Fault, ...]:
    """Faults at a steady pace, rotating over machines and fault kinds."""
    kinds = list(FaultKind)
    faults, t, i = [], start + first_after, 0
    while t + duration <= start + horizon:
        faults.append(
            Fault(f"F-{i + 1:03d}", machines[i % len(machines)], kinds[i % len(kinds)], t, duration)
        )
        t += every
        i += 1
    return tuple(faults)


def build_plant(
    machines: int = 3,
    start: datetime | None = None,
    horizon: timedelta = timedelta(hours=8),
    seed: int = 0,
    sample_hz: int = 10,
    faults: tuple[Fault, ...] | None = None,
    work_order_minutes: tuple[int, int] = (45, 120),
) -> Plant:
    """A plant of ``machines`` CNC machines on one line, with work orders covering the horizon.

    Without ``faults`` one bearing-wear fault is injected on a seeded machine, starting at 55 %
    of the horizon and lasting to its end.
    """
    start = (start or datetime.now(tz=UTC)).replace(microsecond=0)
    rng = np.random.default_rng([seed, 7])
    ms = tuple(Machine(f"M{i + 1:02d}", "L1", "cnc", CNC_SENSORS) for i in range(machines))
    orders: list[WorkOrder] = []
    number = 1000 + seed % 1000 * 100
    for m in ms:
        # the first order started before `start`, so every reading has context
        t = start - timedelta(minutes=int(rng.integers(5, 30)))
        while t < start + horizon + timedelta(hours=1):
            minutes = int(rng.integers(*work_order_minutes))
            end = t + timedelta(minutes=minutes)
            number += 1
            orders.append(
                WorkOrder(
                    work_order=f"WO-{number}",
                    machine_id=m.machine_id,
                    product=PRODUCTS[int(rng.integers(len(PRODUCTS)))].product,
                    material_lot=f"LOT-{int(rng.integers(10_000, 99_999))}",
                    start=t,
                    end=end,
                )
            )
            t = end
    if faults is None:
        victim = ms[int(rng.integers(len(ms)))].machine_id
        fault_start = start + horizon * 0.55
        faults = (Fault("F-001", victim, FaultKind.BEARING_WEAR, fault_start, horizon * 0.45),)
    return Plant(ms, tuple(orders), faults, sample_hz=sample_hz, seed=seed)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return (ts - _EPOCH) // timedelta(microseconds=1)
