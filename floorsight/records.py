"""Record types that cross folder boundaries.

Every top-level folder (simulators, pipelines, features, models, alerts, dashboards) may import
this module; nothing else is shared sideways. It holds:

- the columns of the frames that sources emit: :data:`READING_SCHEMA` (readings, long format)
  and :data:`SIGNAL_SCHEMA` (machine states and part counters, :class:`SignalKind`, carried as
  :class:`Signals`), and :data:`TIMESTAMP`, the dtype of every timestamp column;
- the words alerts are written in (:class:`AlertStatus`, :class:`Severity`);
- the simulator's ground truth (:class:`FaultKind`, :class:`FaultTruth`).

A table's columns are declared once, by its ``TableSpec`` (``floorsight.storage``) next to the
code that writes it, not here.

All timestamps are timezone-aware UTC. Event time is the source's timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
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


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


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
