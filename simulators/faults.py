"""Faults the plant can suffer, how each changes the signals, and schedules of them.

Process faults change the process and so the parts: bearing wear (vibration rises, slowly then
faster, until the bearing fails and the machine is down for repair), tool wear (the quality
dimension drifts linearly until out of spec; a tool change ends it), a sudden process upset (a
mean shift) and a bad material lot (a shift from the lot change to the end of the work order).
Sensor faults change only the measurement of one sensor: stuck value, spikes, dropout,
calibration offset. Every fault is recorded as ground truth (``FaultTruth``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from floorsight.records import FaultKind
from floorsight.simulators.catalog import MachineType, Sensor

#: probability of a spike per sample, and spike height in units of the sensor's noise
SPIKE_PROBABILITY = 0.02
SPIKE_SIGMAS = 12.0
#: calibration offset in units of the sensor's noise
OFFSET_SIGMAS = 6.0
_BLOCK = 4096


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault to inject: which machine, what kind, when it starts and how long it lasts.

    ``sensor`` names the faulty sensor of a sensor fault (default: the machine type's quality
    characteristic). ``downtime`` > 0 makes bearing wear end in a failure at ``end``, after which
    the machine is down for that long. ``detail`` is the bad lot's id for a bad lot.
    """

    fault_id: str
    machine_id: str
    kind: FaultKind
    start: datetime
    duration: timedelta
    sensor: str | None = None
    downtime: timedelta = timedelta(0)
    detail: str = ""

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def fails(self) -> bool:
        return self.kind is FaultKind.BEARING_WEAR and self.downtime > timedelta(0)

    def sensors(self, machine_type: MachineType) -> tuple[str, ...]:
        """The sensors whose readings this fault changes on a machine of ``machine_type``."""
        if self.kind.is_sensor_fault:
            return (self.sensor or machine_type.quality,)
        return tuple(machine_type.fault_effects[str(self.kind)])

    def effect(
        self, machine_type: MachineType, sensor: Sensor, t_us: np.ndarray, k: np.ndarray
    ) -> np.ndarray | None:
        """Additive effect on ``sensor`` at times ``t_us`` (sample indices ``k``), or None.

        Stuck values and dropouts are not additive; the plant applies them (see :meth:`active`).
        """
        if sensor.name not in self.sensors(machine_type) or self.kind in (
            FaultKind.SENSOR_STUCK,
            FaultKind.SENSOR_DROPOUT,
        ):
            return None
        active = self.active(t_us)
        if not active.any():
            return None
        if self.kind is FaultKind.SENSOR_OFFSET:
            return np.where(active, OFFSET_SIGMAS * sensor.noise, 0.0)
        if self.kind is FaultKind.SENSOR_SPIKES:
            return np.where(active, self._spikes(k) * SPIKE_SIGMAS * sensor.noise, 0.0)
        scale = machine_type.fault_effects[str(self.kind)][sensor.name]
        p = np.clip((t_us - to_us(self.start)) / (self.duration / timedelta(microseconds=1)), 0, 1)
        if self.kind is FaultKind.BEARING_WEAR:
            shape = 0.15 * p + 0.85 * p**2  # slowly at first, then faster
        elif self.kind is FaultKind.TOOL_WEAR:
            shape = p
        else:  # process upset, bad lot: a step
            shape = np.ones_like(p)
        return np.where(active, scale * shape, 0.0)

    def active(self, t_us: np.ndarray) -> np.ndarray:
        return (t_us >= to_us(self.start)) & (t_us < to_us(self.end))

    def _spikes(self, k: np.ndarray) -> np.ndarray:
        """+1/-1 where a spike falls on sample ``k``, else 0; seeded by the fault's identity."""
        seed = zlib.crc32(f"{self.fault_id}/{self.machine_id}".encode())
        out = np.zeros(k.shape)
        if k.size == 0:
            return out
        for b in np.unique(k // _BLOCK):
            rng = np.random.default_rng([seed, int(b)])
            hit = rng.random(_BLOCK) < SPIKE_PROBABILITY
            sign = np.where(rng.random(_BLOCK) < 0.5, -1.0, 1.0)
            sel = k // _BLOCK == b
            idx = k[sel] - b * _BLOCK
            out[sel] = np.where(hit[idx], sign[idx], 0.0)
        return out


PROCESS_KINDS = (FaultKind.BEARING_WEAR, FaultKind.PROCESS_UPSET, FaultKind.TOOL_WEAR)


def fault_schedule(
    start: datetime,
    machines: list[str],
    horizon: timedelta,
    first_after: timedelta = timedelta(minutes=8),
    every: timedelta = timedelta(minutes=20),
    duration: timedelta = timedelta(minutes=8),
    kinds: tuple[FaultKind, ...] = PROCESS_KINDS,
) -> tuple[Fault, ...]:
    """Faults at a steady pace, rotating over machines and fault kinds (the live demo's)."""
    faults, t, i = [], start + first_after, 0
    while t + duration <= start + horizon:
        faults.append(
            Fault(f"F-{i + 1:03d}", machines[i % len(machines)], kinds[i % len(kinds)], t, duration)
        )
        t += every
        i += 1
    return tuple(faults)


#: (duration range in hours, downtime range in hours) of each kind in a history scenario
_SCENARIO: dict[FaultKind, tuple[tuple[float, float], tuple[float, float]]] = {
    FaultKind.BEARING_WEAR: ((4.0, 12.0), (2.0, 6.0)),
    FaultKind.TOOL_WEAR: ((1.5, 4.0), (0.0, 0.0)),
    FaultKind.PROCESS_UPSET: ((0.25, 1.0), (0.0, 0.0)),
    # the plant moves a bad lot to the next work order and stretches it over that order (<4.4 h)
    FaultKind.BAD_LOT: ((4.5, 4.5), (0.0, 0.0)),
    FaultKind.SENSOR_STUCK: ((0.5, 2.0), (0.0, 0.0)),
    FaultKind.SENSOR_SPIKES: ((0.5, 2.0), (0.0, 0.0)),
    FaultKind.SENSOR_DROPOUT: ((0.25, 1.0), (0.0, 0.0)),
    FaultKind.SENSOR_OFFSET: ((1.0, 4.0), (0.0, 0.0)),
}


def fault_scenario(
    start: datetime,
    machines: dict[str, MachineType],
    horizon: timedelta,
    seed: int,
    per_machine_day: float = 1.0,
    kinds: tuple[FaultKind, ...] = tuple(FaultKind),
) -> tuple[Fault, ...]:
    """A seeded mix of every fault kind for a history: about ``per_machine_day`` per machine-day.

    Faults on one machine do not overlap (with an hour of calm between), so each has a clean
    ground truth; bearing wear ends in a failure and downtime.
    """
    rng = np.random.default_rng([seed, 31])
    days = horizon / timedelta(days=1)
    faults: list[Fault] = []
    for machine_id, mtype in machines.items():
        n = int(rng.poisson(per_machine_day * days))
        t = start + _seconds(rng.uniform(0.5, 3.0) * 3600)
        for _ in range(n):
            kind = kinds[int(rng.integers(len(kinds)))]
            (d0, d1), (w0, w1) = _SCENARIO[kind]
            duration = _seconds(rng.uniform(d0, d1) * 3600)
            downtime = _seconds(rng.uniform(w0, w1) * 3600)
            if t + duration + downtime > start + horizon:
                break
            sensor = None
            if kind.is_sensor_fault:
                sensor = mtype.sensors[int(rng.integers(len(mtype.sensors)))].name
            faults.append(
                Fault(
                    f"F-{len(faults) + 1:04d}",
                    machine_id,
                    kind,
                    t,
                    duration,
                    sensor=sensor,
                    downtime=downtime,
                )
            )
            gap = _seconds(rng.exponential(24.0 / max(per_machine_day, 1e-9)) * 3600)
            t = t + duration + downtime + timedelta(hours=1) + gap
    return tuple(sorted(faults, key=lambda f: (f.start, f.machine_id)))


def _seconds(s: float) -> timedelta:
    return timedelta(seconds=round(float(s)))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch of an aware timestamp."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return (ts - _EPOCH) // timedelta(microseconds=1)
