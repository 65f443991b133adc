"""The simulated plant: machines with sensors, ERP context, and faults with ground truth.

A :class:`Plant` generates readings for any time range in one vectorised call
(:meth:`Plant.readings`) or as simulated time passes (:meth:`Plant.stream`), reports each
machine's MES status (:meth:`Plant.status_at`), writes its ERP context and ground truth as files
(:meth:`Plant.write_context`), and is deterministic for a seed. It imports nothing from the rest
of floorsight but the shared records.
"""

from __future__ import annotations

from floorsight.simulators.catalog import (
    CNC,
    CNC_SENSORS,
    INJECTION_MOULDING,
    MACHINE_TYPES,
    PRODUCTS,
    MachineType,
    Product,
    Sensor,
    spec_limits_frame,
)
from floorsight.simulators.faults import Fault, fault_scenario, fault_schedule
from floorsight.simulators.plant import (
    STATUS_SCHEMA,
    Downtime,
    Machine,
    MaterialLot,
    Plant,
    State,
    WorkOrder,
    build_plant,
)

__all__ = [
    "CNC",
    "CNC_SENSORS",
    "INJECTION_MOULDING",
    "MACHINE_TYPES",
    "PRODUCTS",
    "STATUS_SCHEMA",
    "Downtime",
    "Fault",
    "Machine",
    "MachineType",
    "MaterialLot",
    "Plant",
    "Product",
    "Sensor",
    "State",
    "WorkOrder",
    "build_plant",
    "fault_scenario",
    "fault_schedule",
    "spec_limits_frame",
]
