"""Record types that cross folder boundaries.

Every top-level folder (simulators, pipelines, features, models, alerts, dashboards) may import
this module; nothing else is shared sideways. On the hot path readings travel as polars frames
whose columns are fixed by :data:`READING_SCHEMA`; the dataclasses below are the same records
one at a time, used where a single record is the natural unit (context rows, model scores,
alerts, ground truth).

All timestamps are timezone-aware UTC. Event time is the source's timestamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import polars as pl

#: Polars datetime type used for every timestamp column.
TIMESTAMP = pl.Datetime("us", "UTC")

#: Columns of a batch of sensor readings (long format: one row per reading).
READING_SCHEMA: dict[str, pl.DataType] = {
    "machine_id": pl.String(),
    "sensor": pl.String(),
    "ts": TIMESTAMP,
    "value": pl.Float64(),
}


def empty_readings() -> pl.DataFrame:
    """An empty readings frame with :data:`READING_SCHEMA`."""
    return pl.DataFrame(schema=READING_SCHEMA)


class SignalKind(StrEnum):
    """What a machine signal from the floor (MES / PLC) says, beside its sensors' readings."""

    STATE = "state"  # the machine's state: a code (PackML, OPC UA Machinery ...) or a word
    GOOD_COUNT = "good_count"  # counter of good parts made (monotonic, may reset to 0)
    SCRAP_COUNT = "scrap_count"  # counter of scrapped parts (monotonic, may reset to 0)


#: Columns of a batch of machine signals: one row per value a state or counter node/topic sent.
#: ``value`` holds a numeric state code or a counter; ``text`` a state sent as a word (else null).
SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    "machine_id": pl.String(),
    "signal": pl.String(),  # a SignalKind value
    "ts": TIMESTAMP,
    "value": pl.Float64(),
    "text": pl.String(),
}


@dataclass(frozen=True, slots=True)
class Signals:
    """A batch of machine signals (:data:`SIGNAL_SCHEMA`) that a source emits beside its readings.

    Sources emit it as an item of its own; the flow stores states as state changes and counters
    as counts (the OEE on the dashboard is computed from them).
    """

    frame: pl.DataFrame


@dataclass(frozen=True, slots=True)
class SensorReading:
    """One value of one sensor of one machine at its source timestamp."""

    machine_id: str
    sensor: str
    ts: datetime
    value: float

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError(f"reading {self.machine_id}/{self.sensor}: timestamp must be tz-aware")


@dataclass(frozen=True, slots=True)
class SpecLimits:
    """Specification limits of one quality characteristic of a product (from ERP)."""

    characteristic: str
    lsl: float
    target: float
    usl: float

    def __post_init__(self) -> None:
        if not (self.lsl < self.target < self.usl):
            raise ValueError(
                f"spec limits for {self.characteristic!r} must satisfy LSL < target < USL, "
                f"got {self.lsl} / {self.target} / {self.usl}"
            )

    def contains(self, value: float) -> bool:
        return self.lsl <= value <= self.usl


@dataclass(frozen=True, slots=True)
class MachineContext:
    """What ERP says a machine is doing over an interval: work order, product, specs, lot."""

    machine_id: str
    work_order: str
    product: str
    material_lot: str
    valid_from: datetime
    valid_to: datetime
    spec_limits: tuple[SpecLimits, ...] = ()


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """Window statistics of one sensor of one machine, with the context keys of the window."""

    machine_id: str
    sensor: str
    window_start: datetime
    window_end: datetime
    work_order: str
    product: str
    material_lot: str
    n: int
    mean: float
    std: float
    min: float
    max: float
    last: float
    slope: float
    rms: float


@dataclass(frozen=True, slots=True)
class ModelScore:
    """A model's verdict on one machine window."""

    machine_id: str
    window_start: datetime
    window_end: datetime
    model: str
    score: float
    is_anomaly: bool
    work_order: str = ""

    def __post_init__(self) -> None:
        if not (0.0 <= self.score <= 1.0) or math.isnan(self.score):
            raise ValueError(f"score of {self.model} on {self.machine_id} must be in [0, 1]")


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert on one machine for one cause, open from ``first_seen`` to ``last_seen``.

    ``alert_id`` is derived from machine, cause and first window, so writing the same alert twice
    (at-least-once recovery) updates one row instead of adding another.
    """

    alert_id: str
    machine_id: str
    cause: str
    severity: Severity
    first_seen: datetime
    last_seen: datetime
    score: float
    reason: str
    work_order: str = ""
    product: str = ""
    material_lot: str = ""
    windows: int = 1
    evidence: dict[str, float] = field(default_factory=dict)


class FaultKind(StrEnum):
    """Faults the simulator injects; each is recorded with its ground truth."""

    BEARING_WEAR = "bearing_wear"  # vibration rises over hours, then failure and downtime
    PROCESS_UPSET = "process_upset"  # sudden mean shift
    TOOL_WEAR = "tool_wear"  # slow drift of the quality dimension until out of spec
    BAD_LOT = "bad_lot"  # a shift that starts with a material-lot change
    SENSOR_STUCK = "sensor_stuck"  # the reading freezes at its value when the fault starts
    SENSOR_SPIKES = "sensor_spikes"  # isolated large spikes
    SENSOR_DROPOUT = "sensor_dropout"  # no readings at all
    SENSOR_OFFSET = "sensor_offset"  # calibration offset: a constant bias of the measurement

    @property
    def is_sensor_fault(self) -> bool:
        """True when only the measurement is wrong, not the process or the parts."""
        return self.value.startswith("sensor_")


@dataclass(frozen=True, slots=True)
class FaultTruth:
    """Ground truth of one injected fault, as the simulator recorded it."""

    fault_id: str
    machine_id: str
    kind: FaultKind
    start: datetime
    end: datetime
    sensors: tuple[str, ...] = ()
    #: for failures (bearing wear): when the machine stopped; it is down until ``repaired_at``
    failure_at: datetime | None = None
    repaired_at: datetime | None = None
    #: what else identifies the fault: the bad lot's id, or the faulty sensor
    detail: str = ""


def utc_now() -> datetime:
    return datetime.now(tz=UTC)
