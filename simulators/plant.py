"""The simulated plant: lines of CNC and injection-moulding machines, their ERP/MES context,
and injected faults with ground truth.

Signals are computed in closed form from the simulated time, the machine's state and work
order then, the material lot, and the faults active then, plus seeded noise drawn in fixed
blocks of samples. So any time range can be generated in one vectorised call, and the same seed
gives the same readings however the range is cut (the live stream, the OPC-UA server and a
history file agree sample for sample).

Each machine follows a timeline of states: ``setup`` at the start of each work order (the
changeover: new recipe, new spec limits), ``running``, ``idle`` between orders, ``down`` for
planned maintenance, tool changes and repairs after a failure. Process values are published
while the machine is running; in the other states only its state and counters change. Parts
complete once per cycle while running; a part is scrap when its quality characteristic is out of
spec (or, rarely, for other reasons), which feeds the good/scrap counters, batches and OEE.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from floorsight.records import (
    READING_SCHEMA,
    SIGNAL_SCHEMA,
    FaultKind,
    FaultTruth,
    SignalKind,
    Signals,
    empty_readings,
)
from floorsight.simulators.catalog import (
    CNC,
    INJECTION_MOULDING,
    MACHINE_TYPES,
    PRODUCTS,
    MachineType,
    Sensor,
    product,
    products_for,
    spec_limits_frame,
)
from floorsight.simulators.faults import Fault, to_us

_US = 1_000_000
#: Samples per noise block; noise for sample k comes from block k // _BLOCK.
_BLOCK = 4096
#: share of parts scrapped for reasons the sensors do not see
BASE_SCRAP = 0.004
#: a lab sample is taken from every n-th part; its result arrives hours later
LAB_EVERY = 25
LAB_DELAY_H = (2.0, 6.0)
TOOL_CHANGE = timedelta(minutes=10)
_TS = READING_SCHEMA["ts"]


class State(IntEnum):
    RUNNING = 0
    IDLE = 1
    SETUP = 2
    DOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


#: The PackML state number (ISA-TR88.00.02 ``StateCurrent``) the simulated MES reports: Execute
#: while running, Idle between work orders, Stopped during a changeover (a PackML machine changes
#: over outside its Production mode, stopped) ...
PACKML_STATE = {State.RUNNING: 6, State.IDLE: 4, State.SETUP: 2, State.DOWN: 11}
#: ... and while down: Aborted after a failure (repair), Held for a tool change, Stopped for
#: planned maintenance.
PACKML_DOWN = {"repair": 9, "tool_change": 11, "planned_maintenance": 2}


@dataclass(frozen=True, slots=True)
class Machine:
    machine_id: str
    line: str
    machine_type: str
    sensors: tuple[Sensor, ...]

    @property
    def type(self) -> MachineType:
        return MACHINE_TYPES[self.machine_type]


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """A work order (ERP): one product on one machine; it starts with a setup (changeover)."""

    work_order: str
    machine_id: str
    product: str
    material_lot: str
    start: datetime
    end: datetime
    setup: timedelta = timedelta(0)
    customer_order: str = ""

    @property
    def running_from(self) -> datetime:
        return self.start + self.setup


@dataclass(frozen=True, slots=True)
class MaterialLot:
    """A lot of raw material from a supplier; its quality shifts the parts made from it."""

    lot_id: str
    material: str
    supplier: str
    received: datetime
    #: shift of the quality characteristic, as a share of the spec's half tolerance
    quality_offset: float


@dataclass(frozen=True, slots=True)
class Downtime:
    """Planned maintenance (the CMMS schedule); repairs and tool changes follow from faults."""

    machine_id: str
    start: datetime
    end: datetime
    kind: str = "planned_maintenance"
    description: str = "planned maintenance"


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


@dataclass
class _Timeline:
    """Piecewise-constant state of one machine: segment starts, state and work-order index."""

    bounds: np.ndarray  # int64 us, sorted; segment i covers [bounds[i], bounds[i+1])
    states: np.ndarray  # int8 State
    orders: np.ndarray  # int32 index into the machine's work orders, -1 for none

    def at(self, t_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(self.bounds, t_us, side="right") - 1
        inside = i >= 0
        i = np.maximum(i, 0)
        return (
            np.where(inside, self.states[i], State.IDLE).astype(np.int8),
            np.where(inside, self.orders[i], -1),
        )


@dataclass
class Plant:
    """The plant: machines, their ERP context and the faults injected into them."""

    machines: tuple[Machine, ...]
    work_orders: tuple[WorkOrder, ...]
    faults: tuple[Fault, ...] = ()
    sample_hz: int = 10
    seed: int = 0
    lots: tuple[MaterialLot, ...] = ()
    downtimes: tuple[Downtime, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    _orders: dict[str, list[WorkOrder]] = field(default_factory=dict, repr=False)
    _timelines: dict[str, _Timeline] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if _US % self.sample_hz:
            raise ValueError(f"sample_hz must divide one second in microseconds: {self.sample_hz}")
        for m in self.machines:
            self._orders[m.machine_id] = sorted(
                (w for w in self.work_orders if w.machine_id == m.machine_id), key=lambda w: w.start
            )

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name in ("faults", "work_orders", "downtimes", "lots"):
            # these change the state timelines (failures, tool changes) and the parts made
            self.__dict__["_timelines"] = {}
            self.__dict__.pop("parts", None)
            self.__dict__.pop("_counted_parts", None)

    def machine(self, machine_id: str) -> Machine:
        return next(m for m in self.machines if m.machine_id == machine_id)

    # ----------------------------------------------------------------------------------------
    # signals
    def readings(self, t0: datetime, t1: datetime) -> pl.DataFrame:
        """Every reading with ``t0 <= ts < t1``, sorted by machine, sensor and time."""
        period = _US // self.sample_hz
        k0 = -(-to_us(t0) // period)
        k1 = -(-to_us(t1) // period)
        if k1 <= k0:
            return empty_readings()
        k_all = np.arange(k0, k1, dtype=np.int64)
        parts = []
        for mi, machine in enumerate(self.machines):
            state, order = self._timeline(machine.machine_id).at(k_all * period)
            running = state == State.RUNNING
            faults = [f for f in self.faults if f.machine_id == machine.machine_id]
            for si, sensor in enumerate(machine.sensors):
                keep = running
                step = self._step(sensor)
                if step > 1:
                    keep = keep & (k_all % step == 0)
                for f in faults:
                    if f.kind is FaultKind.SENSOR_DROPOUT and sensor.name in f.sensors(
                        machine.type
                    ):
                        keep = keep & ~f.active(k_all * period)
                k = k_all[keep]
                if k.size == 0:
                    continue
                value = self._signal(mi, machine, si, sensor, k, order[keep], faults)
                parts.append(
                    pl.DataFrame({"ts": k * period, "value": value}).select(
                        pl.lit(machine.machine_id).alias("machine_id"),
                        pl.lit(sensor.name).alias("sensor"),
                        pl.col("ts").cast(_TS),
                        pl.col("value"),
                    )
                )
        return pl.concat(parts) if parts else empty_readings()

    def stream(
        self,
        start: datetime,
        speed: float = 1.0,
        end: datetime | None = None,
        tick_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        signals: bool = False,
    ) -> Iterator[pl.DataFrame | Signals | None]:
        """Readings as simulated time passes: ``speed`` simulated seconds per wall second.

        Yields a frame with the readings since the last one, or None when less than ``tick_s``
        has passed (the caller polls again later), and stops at ``end``. With ``signals``,
        each frame is followed by the machines' :meth:`signals` of the same interval (the
        first with the states and counters at ``start``).
        """
        wall0 = clock()
        cursor = start
        first = True
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
                since, cursor = cursor, sim_now
                yield frame
                if signals:
                    yield Signals(self.signals(since, sim_now, initial=first))
                    first = False
            else:
                yield None

    def _step(self, sensor: Sensor) -> int:
        if sensor.rate_hz is None or sensor.rate_hz >= self.sample_hz:
            return 1
        return max(1, round(self.sample_hz / sensor.rate_hz))

    def _signal(
        self,
        mi: int,
        machine: Machine,
        si: int,
        sensor: Sensor,
        k: np.ndarray,
        order: np.ndarray,
        faults: list[Fault],
    ) -> np.ndarray:
        """Value of ``sensor`` at sample indices ``k`` (work-order index ``order``).

        With sensor faults among ``faults`` it is what the sensor reports; with process faults
        only, the process's true value (what the lab would measure on the part).
        """
        period = _US // self.sample_hz
        orders = self._orders[machine.machine_id]
        names = [w.product for w in orders]
        prod_idx = np.maximum(order, 0)
        nominal = np.array([sensor.nominal.get(p, math.nan) for p in names] or [math.nan])
        t_us = k * period
        noise_idx = k
        if sensor.per_cycle:
            # held value of the last completed cycle: one draw per cycle
            cycle_us = np.array([product(p).cycle_time_s * _US for p in names] or [1.0])
            cyc = (t_us // cycle_us[prod_idx]).astype(np.int64)
            t_us = (cyc * cycle_us[prod_idx]).astype(np.int64)
            noise_idx = cyc
        t_s = t_us / _US
        wander = sensor.wander * np.sin(2 * math.pi * t_s / sensor.wander_period_s + mi + si)
        value = nominal[prod_idx] + wander + sensor.noise * self._noise(mi, si, noise_idx)
        if sensor.name == machine.type.quality:
            value = value + self._lot_shift(machine, sensor)[prod_idx]
        for fault in faults:
            if fault.kind is FaultKind.SENSOR_STUCK and sensor.name in fault.sensors(machine.type):
                value = self._stuck(mi, machine, si, sensor, fault, k, value, faults)
                continue
            effect = fault.effect(machine.type, sensor, t_us, k)
            if effect is not None:
                value = value + effect
        return value

    def _stuck(self, mi, machine, si, sensor, fault, k, value, faults) -> np.ndarray:
        active = fault.active(k * (_US // self.sample_hz))
        if not active.any():
            return value
        period = _US // self.sample_hz
        k_start = np.array([-(-to_us(fault.start) // period)], dtype=np.int64)
        _, order = self._timeline(machine.machine_id).at(k_start * period)
        others = [f for f in faults if f is not fault]
        frozen = self._signal(mi, machine, si, sensor, k_start, order, others)[0]
        return np.where(active, frozen, value)

    def _lot_shift(self, machine: Machine, sensor: Sensor) -> np.ndarray:
        """Shift of the quality characteristic per work order from its material lot."""
        lots = {lot.lot_id: lot.quality_offset for lot in self.lots}
        shifts = []
        for w in self._orders[machine.machine_id]:
            lsl, _, usl = product(w.product).specs.get(sensor.name, (0.0, 0.0, 0.0))
            shifts.append(lots.get(w.material_lot, 0.0) * (usl - lsl) / 2)
        return np.array(shifts or [0.0])

    def _noise(self, machine_idx: int, sensor_idx: int, idx: np.ndarray) -> np.ndarray:
        out = np.empty(idx.shape)
        blocks = idx // _BLOCK
        if idx.size and (idx[1:] >= idx[:-1]).all():  # sorted: slice blocks without masks
            b0, b1 = int(blocks[0]), int(blocks[-1])
            flat = np.concatenate(
                [
                    np.random.default_rng([self.seed, machine_idx, sensor_idx, b]).standard_normal(
                        _BLOCK
                    )
                    for b in range(b0, b1 + 1)
                ]
            )
            return flat[idx - b0 * _BLOCK]
        for b in np.unique(blocks):
            draw = np.random.default_rng([self.seed, machine_idx, sensor_idx, int(b)])
            sel = blocks == b
            out[sel] = draw.standard_normal(_BLOCK)[idx[sel] - b * _BLOCK]
        return out

    # ----------------------------------------------------------------------------------------
    # states, parts and counters
    def _timeline(self, machine_id: str) -> _Timeline:
        if machine_id not in self._timelines:
            self._timelines[machine_id] = self._build_timeline(machine_id)
        return self._timelines[machine_id]

    def _build_timeline(self, machine_id: str) -> _Timeline:
        orders = self._orders[machine_id]
        base: list[tuple[int, int, int]] = []  # (start us, state, order index)
        prev_end = None
        for i, w in enumerate(orders):
            if prev_end is not None and to_us(w.start) > prev_end:
                base.append((prev_end, State.IDLE, -1))
            base.append((to_us(w.start), State.SETUP if w.setup else State.RUNNING, i))
            if w.setup:
                base.append((to_us(w.running_from), State.RUNNING, i))
            prev_end = to_us(w.end)
        if prev_end is not None:
            base.append((prev_end, State.IDLE, -1))
        downs = [(to_us(d.start), to_us(d.end)) for d in self.downtime_log(machine_id)]
        bounds = sorted({b[0] for b in base} | {t for d in downs for t in d})
        starts = np.array([b[0] for b in base], dtype=np.int64)
        out_states, out_orders = [], []
        for t in bounds:
            j = int(np.searchsorted(starts, t, side="right")) - 1
            state, order = (base[j][1], base[j][2]) if j >= 0 else (State.IDLE, -1)
            if any(a <= t < b for a, b in downs):
                state = State.DOWN
            out_states.append(state)
            out_orders.append(order)
        return _Timeline(
            np.array(bounds, dtype=np.int64),
            np.array(out_states, dtype=np.int8),
            np.array(out_orders, dtype=np.int32),
        )

    def downtime_log(self, machine_id: str | None = None) -> list[Downtime]:
        """Every period a machine is down: planned maintenance, tool changes, repairs."""
        out = [d for d in self.downtimes if machine_id in (None, d.machine_id)]
        for f in self.faults:
            if machine_id not in (None, f.machine_id):
                continue
            if f.fails:
                out.append(
                    Downtime(f.machine_id, f.end, f.end + f.downtime, "repair", "bearing failure")
                )
            elif f.kind is FaultKind.TOOL_WEAR:
                out.append(
                    Downtime(f.machine_id, f.end, f.end + TOOL_CHANGE, "tool_change", "worn tool")
                )
        return sorted(out, key=lambda d: (d.machine_id, d.start))

    def states(self) -> pl.DataFrame:
        """The state timeline of every machine: one row per segment (MES state log)."""
        frames = []
        for m in self.machines:
            tl = self._timeline(m.machine_id)
            orders = self._orders[m.machine_id]
            frames.append(
                pl.DataFrame(
                    {
                        "machine_id": m.machine_id,
                        "start": tl.bounds,
                        "end": np.append(tl.bounds[1:], to_us(self._end)),
                        "state": [State(s).label for s in tl.states],
                        "work_order": [orders[o].work_order if o >= 0 else "" for o in tl.orders],
                    }
                )
                .with_columns(pl.col("start", "end").cast(_TS))
                .filter(pl.col("start") < pl.col("end"))
            )
        return pl.concat(frames)

    @cached_property
    def parts(self) -> pl.DataFrame:
        """Every part made between the plant's start and end: one row per completed cycle.

        ``value`` is the part's true quality characteristic (what the lab would measure),
        ``good`` whether it is in spec and not otherwise scrapped.
        """
        frames = []
        t0, t1 = to_us(self._start), to_us(self._end)
        for mi, m in enumerate(self.machines):
            tl = self._timeline(m.machine_id)
            orders = self._orders[m.machine_id]
            si = next(i for i, s in enumerate(m.sensors) if s.name == m.type.quality)
            sensor = m.sensors[si]
            ends = np.append(tl.bounds[1:], t1)
            times, order_idx = [], []
            for lo, hi, state, order in zip(tl.bounds, ends, tl.states, tl.orders, strict=True):
                a, b = max(int(lo), t0), min(int(hi), t1)
                if state != State.RUNNING or a >= b:
                    continue
                cycle_us = int(product(orders[order].product).cycle_time_s * _US)
                c = np.arange(a // cycle_us + 1, b // cycle_us + 1, dtype=np.int64)
                times.append(c * cycle_us)
                order_idx.append(np.full(c.size, order, dtype=np.int32))
            if not times:
                continue
            t_us = np.concatenate(times)
            order = np.concatenate(order_idx)
            period = _US // self.sample_hz
            process = [
                f
                for f in self.faults
                if f.machine_id == m.machine_id and not f.kind.is_sensor_fault
            ]
            value = self._signal(mi, m, si, sensor, t_us // period, order, process)
            names = np.array([w.product for w in orders], dtype=object)[order]
            lsl = np.array([product(p).specs[sensor.name][0] for p in names])
            usl = np.array([product(p).specs[sensor.name][2] for p in names])
            cycle = np.arange(t_us.size)
            other = np.random.default_rng([self.seed, mi, 99]).random(t_us.size) < BASE_SCRAP
            in_spec = (value >= lsl) & (value <= usl)
            frames.append(
                pl.DataFrame(
                    {
                        "machine_id": m.machine_id,
                        "ts": t_us,
                        "part_no": cycle,
                        "work_order": np.array([w.work_order for w in orders], dtype=object)[order],
                        "product": names,
                        "material_lot": np.array([w.material_lot for w in orders], dtype=object)[
                            order
                        ],
                        "characteristic": sensor.name,
                        "value": value,
                        "in_spec": in_spec,
                        "good": in_spec & ~other,
                    },
                    schema_overrides={
                        "work_order": pl.String,
                        "product": pl.String,
                        "material_lot": pl.String,
                    },
                ).with_columns(pl.col("ts").cast(_TS))
            )
        return pl.concat(frames) if frames else pl.DataFrame()

    def state_codes(self, machine_id: str) -> pl.DataFrame:
        """The PackML state number the machine reports from each change of its timeline on
        (:data:`PACKML_STATE`, :data:`PACKML_DOWN`): columns ts, code."""
        tl = self._timeline(machine_id)
        downs = self.downtime_log(machine_id)
        codes = []
        for b, state in zip(tl.bounds, tl.states, strict=True):
            code = PACKML_STATE[State(int(state))]
            if state == State.DOWN:
                kind = next((d.kind for d in downs if to_us(d.start) <= b < to_us(d.end)), "")
                code = PACKML_DOWN.get(kind, code)
            codes.append(code)
        return pl.DataFrame(
            {"ts": tl.bounds, "code": codes}, schema={"ts": pl.Int64, "code": pl.Int64}
        ).with_columns(pl.col("ts").cast(_TS))

    def signals(self, t0: datetime, t1: datetime, initial: bool = False) -> pl.DataFrame:
        """The machines' MES signals (:data:`floorsight.records.SIGNAL_SCHEMA`) in
        ``[t0, t1)``: a ``state`` row at each change of state (its PackML number), a
        ``good_count`` row at each good part and a ``scrap_count`` row at each scrapped one
        (the counter since the plant's start, as :meth:`status_at` reports it).

        With ``initial`` the first rows are the state and both counters at ``t0`` (a client that
        subscribes gets the current values first); parts made at ``t0`` are in them.
        """
        a, b = to_us(t0), to_us(t1)
        parts = self._counted_parts
        frames = []
        for m in self.machines:
            codes = self.state_codes(m.machine_id)
            us = pl.col("ts").dt.epoch("us")
            changes = codes.filter(((us > a) if initial else (us >= a)) & (us < b))
            if initial:
                now = codes.filter(us <= a).tail(1)
                code = now["code"][0] if now.height else PACKML_STATE[State.IDLE]
                changes = pl.concat(
                    [pl.DataFrame({"ts": [t0], "code": [code]}, schema=codes.schema), changes]
                )
            frames.append(
                changes.select(
                    pl.lit(m.machine_id).alias("machine_id"),
                    pl.lit(SignalKind.STATE.value).alias("signal"),
                    "ts",
                    pl.col("code").cast(pl.Float64).alias("value"),
                    pl.lit(None, dtype=pl.String).alias("text"),
                )
            )
            if parts.height == 0:
                continue
            mine = parts.filter(pl.col("machine_id") == m.machine_id)
            made = mine.filter(((us > a) if initial else (us >= a)) & (us < b))
            if initial:
                before = mine.filter(us <= a).tail(1)
                good, scrap = (before.row(0)[2:4]) if before.height else (0, 0)
                frames.append(
                    pl.DataFrame(
                        {
                            "machine_id": [m.machine_id] * 2,
                            "signal": [SignalKind.GOOD_COUNT.value, SignalKind.SCRAP_COUNT.value],
                            "ts": [t0, t0],
                            "value": [float(good), float(scrap)],
                            "text": [None, None],
                        },
                        schema=SIGNAL_SCHEMA,
                    )
                )
            frames.append(
                made.select(
                    "machine_id",
                    pl.when("good")
                    .then(pl.lit(SignalKind.GOOD_COUNT.value))
                    .otherwise(pl.lit(SignalKind.SCRAP_COUNT.value))
                    .alias("signal"),
                    "ts",
                    pl.when("good")
                    .then(pl.col("good_count"))
                    .otherwise(pl.col("scrap_count"))
                    .cast(pl.Float64)
                    .alias("value"),
                    pl.lit(None, dtype=pl.String).alias("text"),
                )
            )
        out = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
        return out.cast(SIGNAL_SCHEMA).sort("machine_id", "ts", "signal", maintain_order=True)

    @cached_property
    def _counted_parts(self) -> pl.DataFrame:
        """Every part with the machine's good and scrap counters after it."""
        parts = self.parts
        if parts.height == 0:
            return parts
        return parts.sort("machine_id", "ts").select(
            "machine_id",
            "ts",
            pl.col("good").cast(pl.Int64).cum_sum().over("machine_id").alias("good_count"),
            (~pl.col("good")).cast(pl.Int64).cum_sum().over("machine_id").alias("scrap_count"),
            "good",
        )

    def running_share(self, machine_id: str, start: datetime, end: datetime) -> float:
        """Share of ``start``..``end`` during which the machine was running (0..1).

        Process values exist only while a machine runs, so a fault that falls into a setup, an
        idle gap or maintenance leaves no trace in the data: benchmarks call a fault
        *observable* when its machine ran for at least half of it.
        """
        seg = self.states().filter(
            (pl.col("machine_id") == machine_id)
            & (pl.col("state") == "running")
            & (pl.col("end") > start)
            & (pl.col("start") < end)
        )
        overlap = sum(
            (min(e, end) - max(s, start)).total_seconds()
            for s, e in seg.select("start", "end").iter_rows()
        )
        return overlap / max((end - start).total_seconds(), 1e-9)

    def status_at(self, ts: datetime) -> pl.DataFrame:
        """MES status of every machine at ``ts``: one row per machine.

        Columns: machine_id, line, machine_type, state (running/idle/setup/down), work_order,
        product, material_lot, good_parts, scrap_parts (counters since the plant's start).
        """
        t_us = np.array([to_us(ts)], dtype=np.int64)
        parts = self.parts
        rows = []
        for m in self.machines:
            state, order = self._timeline(m.machine_id).at(t_us)
            wo = self._orders[m.machine_id][order[0]] if order[0] >= 0 else None
            made = parts.filter((pl.col("machine_id") == m.machine_id) & (pl.col("ts") <= ts))
            good = int(made["good"].sum()) if made.height else 0
            rows.append(
                {
                    "machine_id": m.machine_id,
                    "line": m.line,
                    "machine_type": m.machine_type,
                    "state": State(int(state[0])).label,
                    "work_order": wo.work_order if wo else "",
                    "product": wo.product if wo else "",
                    "material_lot": wo.material_lot if wo else "",
                    "good_parts": good,
                    "scrap_parts": made.height - good,
                }
            )
        return pl.DataFrame(rows, schema=STATUS_SCHEMA)

    @property
    def _start(self) -> datetime:
        return self.start or min(w.start for w in self.work_orders)

    @property
    def _end(self) -> datetime:
        return self.end or max(w.end for w in self.work_orders)

    # ----------------------------------------------------------------------------------------
    # ERP context and ground truth
    def work_orders_frame(self) -> pl.DataFrame:
        """Work orders as the pipeline's context join reads them (``work_orders.csv``)."""
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
                "start": _TS,
                "end": _TS,
            },
        )

    def truth(self) -> list[FaultTruth]:
        out = []
        for f in self.faults:
            mtype = self.machine(f.machine_id).type
            out.append(
                FaultTruth(
                    f.fault_id,
                    f.machine_id,
                    f.kind,
                    f.start,
                    f.end,
                    f.sensors(mtype),
                    failure_at=f.end if f.fails else None,
                    repaired_at=f.end + f.downtime if f.fails else None,
                    detail=f.detail or (f.sensor or "" if f.kind.is_sensor_fault else ""),
                )
            )
        return out

    def ground_truth_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "fault_id": t.fault_id,
                    "machine_id": t.machine_id,
                    "kind": str(t.kind),
                    "start": t.start,
                    "end": t.end,
                    "sensors": ",".join(t.sensors),
                    "failure_at": t.failure_at,
                    "repaired_at": t.repaired_at,
                    "detail": t.detail,
                }
                for t in self.truth()
            ],
            schema={
                "fault_id": pl.String,
                "machine_id": pl.String,
                "kind": pl.String,
                "start": _TS,
                "end": _TS,
                "sensors": pl.String,
                "failure_at": _TS,
                "repaired_at": _TS,
                "detail": pl.String,
            },
        )

    def write_context(self, directory: Path, fmt: str = "csv") -> None:
        """Write the ERP/MES context and the ground truth (``faults``) as CSV or Parquet."""
        from floorsight.simulators.erp import erp_tables, write_tables

        directory.mkdir(parents=True, exist_ok=True)
        tables = erp_tables(self)
        tables["faults"] = self.ground_truth_frame()
        write_tables(tables, directory, fmt)


def build_plant(
    machines: int = 3,
    start: datetime | None = None,
    horizon: timedelta = timedelta(hours=8),
    seed: int = 0,
    sample_hz: int = 10,
    faults: tuple[Fault, ...] | None = None,
    work_order_minutes: tuple[int, int] = (45, 120),
    machine_types: tuple[str, ...] | None = None,
    setup_minutes: tuple[int, int] = (5, 15),
    idle_share: float = 0.1,
    planned_maintenance: bool = True,
) -> Plant:
    """A plant of ``machines`` machines with work orders, lots and maintenance over the horizon.

    ``machine_types`` gives each machine's type, cycling (default: two CNC machines to every
    injection-moulding machine; CNC machines on line L1, moulding machines on L2). Without
    ``faults`` one bearing-wear fault is injected on a seeded machine, starting at 55 % of the
    horizon and lasting to its end. Bad-lot faults are attached to the first work order on their
    machine that starts at or after the fault's start: that order gets a bad lot, and the fault
    lasts from its setup's end to its end.
    """
    start = (start or datetime.now(tz=UTC)).replace(microsecond=0)
    rng = np.random.default_rng([seed, 7])
    types = machine_types or (CNC.name, CNC.name, INJECTION_MOULDING.name)
    lines = {CNC.name: "L1", INJECTION_MOULDING.name: "L2"}
    ms = tuple(
        Machine(
            f"M{i + 1:02d}",
            lines.get(types[i % len(types)], "L9"),
            types[i % len(types)],
            MACHINE_TYPES[types[i % len(types)]].sensors,
        )
        for i in range(machines)
    )
    orders: list[WorkOrder] = []
    lots: list[MaterialLot] = []
    number = 1000 + seed % 1000 * 100
    # a material lot lasts one to three work orders of its machine, so a held lot reaches several
    # batches (its own generator: the plant's other draws stay what they were)
    lot_rng = np.random.default_rng([seed, 41])
    for m in ms:
        lot, lot_orders_left = None, 0
        catalog = products_for(m.machine_type)
        # the first order started before `start`, so every reading has context
        t = start - timedelta(minutes=int(rng.integers(5, 30)))
        first = True
        while t < start + horizon + timedelta(hours=1):
            minutes = int(rng.integers(*work_order_minutes))
            end = t + timedelta(minutes=minutes)
            number += 1
            fresh = _lot(rng, m.machine_type, t)
            if lot is None or lot_orders_left <= 0:
                lot, lot_orders_left = fresh, int(lot_rng.integers(1, 4))
                lots.append(lot)
            lot_orders_left -= 1
            setup = timedelta(0) if first else timedelta(minutes=int(rng.integers(*setup_minutes)))
            setup = min(setup, (end - t) / 3)
            orders.append(
                WorkOrder(
                    f"WO-{number}",
                    m.machine_id,
                    catalog[int(rng.integers(len(catalog)))].product,
                    lot.lot_id,
                    t,
                    end,
                    setup,
                )
            )
            first = False
            t = end
            if rng.random() < idle_share:
                t += timedelta(minutes=int(rng.integers(5, 25)))
    downtimes = _planned_maintenance(ms, start, horizon, rng) if planned_maintenance else []
    if faults is None:
        victim = ms[int(rng.integers(len(ms)))].machine_id
        fault_start = start + horizon * 0.55
        faults = (Fault("F-001", victim, FaultKind.BEARING_WEAR, fault_start, horizon * 0.45),)
    plant = Plant(
        ms,
        tuple(orders),
        sample_hz=sample_hz,
        seed=seed,
        lots=tuple(lots),
        downtimes=tuple(downtimes),
        start=start,
        end=start + horizon,
    )
    plant.faults = resolve_bad_lots(plant, faults)
    return plant


def resolve_bad_lots(plant: Plant, faults: tuple[Fault, ...]) -> tuple[Fault, ...]:
    """Attach each bad-lot fault to a work order and give that order a bad lot."""
    out = []
    lots = {lot.lot_id: lot for lot in plant.lots}
    orders = list(plant.work_orders)
    for f in faults:
        if f.kind is not FaultKind.BAD_LOT or f.detail:
            out.append(f)
            continue
        i = next(
            (
                i
                for i, w in enumerate(orders)
                if w.machine_id == f.machine_id and w.start >= f.start
            ),
            None,
        )
        if i is None:
            continue  # no lot change left on that machine: the fault cannot happen
        w = orders[i]
        bad = MaterialLot(
            f"{w.material_lot}-X", lots[w.material_lot].material, "Supplier C", w.start, 0.0
        )
        lots[bad.lot_id] = bad
        orders[i] = WorkOrder(
            w.work_order, w.machine_id, w.product, bad.lot_id, w.start, w.end, w.setup
        )
        out.append(
            Fault(
                f.fault_id,
                f.machine_id,
                f.kind,
                w.running_from,
                w.end - w.running_from,
                detail=bad.lot_id,
            )
        )
    plant.work_orders = tuple(orders)
    plant.lots = tuple(lots.values())
    plant.__post_init__()
    return tuple(out)


_MATERIALS = {CNC.name: "AlMgSi1 bar stock", INJECTION_MOULDING.name: "polymer granulate"}
_SUPPLIERS = ("Supplier A", "Supplier B", "Supplier C")


def _lot(rng: np.random.Generator, machine_type: str, t: datetime) -> MaterialLot:
    supplier = int(rng.integers(len(_SUPPLIERS)))
    # suppliers differ a little in how well they hold the material's properties
    spread = (0.03, 0.06, 0.1)[supplier]
    return MaterialLot(
        f"LOT-{int(rng.integers(100_000, 999_999))}",
        _MATERIALS[machine_type],
        _SUPPLIERS[supplier],
        t - timedelta(days=int(rng.integers(1, 20))),
        float(rng.normal(0.0, spread)),
    )


def _planned_maintenance(
    machines: tuple[Machine, ...], start: datetime, horizon: timedelta, rng: np.random.Generator
) -> list[Downtime]:
    """Two hours of planned maintenance per machine and week, for horizons of a day or more."""
    out = []
    if horizon < timedelta(days=1):
        return out
    weeks = max(1, round(horizon / timedelta(days=7)))
    for m in machines:
        for w in range(weeks):
            day = start + timedelta(days=7 * w + int(rng.integers(0, min(7, horizon.days))))
            t = day.replace(hour=6, minute=0, second=0)
            if start <= t and t + timedelta(hours=2) <= start + horizon:
                out.append(Downtime(m.machine_id, t, t + timedelta(hours=2)))
    return out


__all__ = [
    "PRODUCTS",
    "STATUS_SCHEMA",
    "Downtime",
    "Machine",
    "MaterialLot",
    "Plant",
    "State",
    "WorkOrder",
    "build_plant",
    "spec_limits_frame",
]
