"""The simulated plant: machines with sensors, ERP context, and faults with ground truth.

A :class:`Plant` generates readings for any time range in one vectorised call
(:meth:`Plant.readings`) or as simulated time passes (:meth:`Plant.stream`), writes its ERP
context and ground truth as files (:meth:`Plant.write_context`), and is deterministic for a seed.
It imports nothing from the rest of floorsight but the shared records.
"""

from __future__ import annotations

from floorsight.simulators.plant import (
    CNC_SENSORS,
    PRODUCTS,
    STATUS_SCHEMA,
    Fault,
    Machine,
    Plant,
    Product,
    Sensor,
    WorkOrder,
    build_plant,
    fault_schedule,
    spec_limits_frame,
)

__all__ = [
    "CNC_SENSORS",
    "PRODUCTS",
    "STATUS_SCHEMA",
    "Fault",
    "Machine",
    "Plant",
    "Product",
    "Sensor",
    "WorkOrder",
    "build_plant",
    "fault_schedule",
    "spec_limits_frame",
]
